"""The Attribution view's actions: which input decides each pixel, the terms of one pixel's
margin, and branch roles by object size.

Model key and image file (and true mask) in, display values out, failures as readable
messages. The maps are drawn to be read (`overlays.readable`): at display size,
nearest-upscaled, in plain colours, with the image under them at the chosen opacity and a
class filter."""

from __future__ import annotations

import gradio as gr
import numpy as np

from app.core import overlays
from app.core.attribution import cell_margin, decisions, logit_parts
from app.core.figures import margin_bars, message_figure, roles_plot
from app.core.roles import BACKGROUND, branch_roles, decider, points
from app.core.runtime import gpu, kept, see, user_errors
from app.views.attribution import hover

ALL = "all classes"  # the class filter's "no filter"
EVERY_INPUT = "every input"  # the legend's "no filter"
NEEDS_TRUTH = ("Needs a true mask: generate a scene, or pick an example that has one "
               "(or upload a mask of class ids).")
ONE_CLASS = "A model with one class has no margin to split."
ROLE_HEADERS = ["objects · count", "size px", "accuracy %"]  # then one column per input


def class_filter(choice: str | None, label: np.ndarray, classes: tuple[str, ...],
                 present: list[int]) -> tuple[np.ndarray, gr.Radio]:
    """(H, W) pixels to show for the chosen class (all for ALL or a class not present), and the
    filter control with the classes present."""
    names = [classes[c] for c in present]
    asked, choice = choice, choice if choice in names else ALL
    keep = np.ones(label.shape, bool) if choice == ALL else label == classes.index(choice)
    return keep, kept(gr.Radio, [ALL, *names], asked, choice)


def cell_of(point: tuple[float, float] | None, cells: tuple[int, int]) -> tuple[int, int]:
    """The feature cell (row, col) under a point given as fractions (x, y) of the image (the
    image's centre when None)."""
    fx, fy = point or (0.5, 0.5)
    h8, w8 = cells
    return min(int(fy * h8), h8 - 1), min(int(fx * w8), w8 - 1)


@user_errors
def pick_pixel(key: str, image: str | None, evt: gr.SelectData) -> tuple[float, float]:
    """A click on the map (pixel (x, y) of the displayed map) as fractions of the image."""
    h, w = overlays.display_size(see(key, image).analysis.image.shape)
    x, y = evt.index
    return (min(max((x + 0.5) / w, 0.0), 1.0), min(max((y + 0.5) / h, 0.0), 1.0))


@user_errors
@gpu
def attribution(key: str, image: str | None, opacity: float, shown: str | None,
                point: tuple[float, float] | None = None, decided: str | None = None):
    """The map of which input decides each pixel, the class filter, a per-class table, the
    legend (click an input: only the pixels it decides, `decided`), and the clicked pixel's
    margin split by input: bars for the clicked cell, and every cell's terms for the hover
    readout."""
    a = see(key, image).analysis
    names = list(a.part_names)
    colors = overlays.part_colors(names)
    winner = decider(a)  # (H, W)
    counts = decisions(a.label, winner, len(a.classes), len(names))  # (classes, P)
    present = [c for c in range(len(a.classes)) if counts[c].sum() > 0]
    keep, picker = class_filter(shown, a.label, a.classes, present)
    if decided in names:
        keep = keep & (winner == names.index(decided))
    lut = np.asarray(colors, np.uint8)
    view = overlays.readable(a.image, lut[winner], keep, a.label, opacity, dim=~keep)
    cell = cell_of(point, a.feature_size)
    view = overlays.mark_cell(view, cell, a.feature_size)
    total = counts.sum(0)
    rows = [[ALL, 100.0, *(round(100 * float(v) / a.label.size, 1) for v in total)]]
    rows += [[a.classes[c], round(100 * float(counts[c].sum()) / a.label.size, 1),
              *(round(100 * float(v) / float(counts[c].sum()), 1) for v in counts[c])]
             for c in present]
    table = gr.Dataframe(value=rows, headers=["class", "pixels %", *names])
    legend = kept(gr.Radio, [(EVERY_INPUT, EVERY_INPUT), *(
        (f"{n} · {100 * v / a.label.size:.0f}%", n) for n, v in zip(names, total, strict=True))],
        decided, decided if decided in names else EVERY_INPUT)
    terms = logit_parts(a.split, a.classifier)  # once, for the clicked cell and every cell
    return (view, picker, table, legend, pixel_bars(a, terms, cell),
            readout(a, terms, "#attribution-map"))


def readout(a, terms: tuple, target: str, after=None, removed: tuple[str, ...] = (),
            change: str = "") -> str:
    """The hover readout of the map `target` (`hover.readout`): every cell's margin terms, from
    `logit_parts`' (parts, rest) `terms`."""
    if len(a.classes) < 2:
        return f"<p>{ONE_CLASS}</p>"
    names = list(a.part_names)
    return hover.readout(*terms, names, overlays.part_colors(names), a.classes, target, after,
                         removed, change)


def pixel_bars(a, terms: tuple, cell: tuple[int, int]) -> object:
    """The bars of one feature cell's margin, split by input (`logit_parts`' `terms`)."""
    if len(a.classes) < 2:
        return message_figure(ONE_CLASS, 300)
    names = list(a.part_names)
    colors = overlays.part_colors(names)
    m = cell_margin(*terms, cell)
    r, c = cell
    title = (f"clicked: feature cell (row {r}, col {c}): <b>{a.classes[m.top]}</b> beats "
             f"{a.classes[m.runner_up]} by {m.margin:.2f}")
    return margin_bars(names, [float(v) for v in m.parts], colors, m.rest, title)


@user_errors
@gpu
def roles(key: str, image: str | None, truth: str | None):
    """Per object-size bucket (true mask needed): which input decides, and the accuracy lost
    when each input is removed. Returns the table, the plot and a one-line reading."""
    seen = see(key, image, truth)
    a = seen.analysis
    names = list(a.part_names)
    headers = [*ROLE_HEADERS, *(f"without {n}" for n in names), "decided most by"]
    if seen.truth is None:
        return (gr.Dataframe(value=[], headers=headers), message_figure(NEEDS_TRUTH),
                NEEDS_TRUTH)
    found = [g for g in branch_roles(a, seen.truth).groups if g.pixels > 0]
    if not found:
        return (gr.Dataframe(value=[], headers=headers),
                message_figure("The true mask holds no pixels of the model's classes."), "")
    rows = [[f"{g.name} · {g.objects}" if g.name != BACKGROUND else "background",
             "" if g.name == BACKGROUND else f"{g.diameters[0]:.0f}–{g.diameters[1]:.0f}",
             round(100 * g.accuracy, 1),
             *(float(points(w - g.accuracy)) for w in g.without),
             names[int(np.argmax(g.decides))]] for g in found]
    colors = overlays.part_colors(names)
    plot = roles_plot([f"{g.name} ({g.objects})" if g.name != BACKGROUND else g.name
                       for g in found], names, np.stack([g.decides for g in found]),
                      np.stack([g.cost for g in found]), colors)
    return gr.Dataframe(value=rows, headers=headers), plot, reading(found, names)


WHY_THEY_DIFFER = ("*Why the two can differ:* \"decides\" asks which input has the largest "
                   "term of a pixel's margin; \"costs\" asks whether the pixel keeps its class "
                   "without that input. An input with the largest term can be removed at little "
                   "cost when the other inputs' terms still keep the right class on top, and an "
                   "input with a smaller term can be the one that tips the balance.")


def reading(groups: list, names: list[str]) -> str:
    """One sentence per object size: the input that decides most of its pixels and the one whose
    removal costs most, and when they differ, a word on why they can."""
    lines, differ = [], False
    for g in groups:
        if g.name == BACKGROUND:
            continue
        decides, worst = int(np.argmax(g.decides)), int(np.nanargmax(g.cost))
        head = (f"**{g.name}** objects ({g.objects}): **{names[decides]}** decides "
                f"{100 * g.decides[decides]:.0f}% of their pixels")
        if g.cost[worst] <= 0:
            lines.append(f"{head}, and removing any one input costs them nothing.")
        elif worst == decides:
            lines.append(f"{head}, and removing it costs the most ({100 * g.accuracy:.1f}% → "
                         f"{100 * g.without[worst]:.1f}% of their pixels right).")
        else:
            differ = True
            lines.append(f"{head}, yet removing **{names[worst]}** costs the most "
                         f"({100 * g.accuracy:.1f}% → {100 * g.without[worst]:.1f}% right; "
                         f"without {names[decides]}: {100 * g.without[decides]:.1f}%).")
    if differ:
        lines.append(WHY_THEY_DIFFER)
    return "  \n".join(lines)
