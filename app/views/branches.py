"""The Branches tab: one column per input of the bottleneck (the skip path x and each filter
size k): the pooled grid, the generated filters, the activations and what the input adds to the
fused prediction; then what removing each input changes. One column's channel redraws it."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
import numpy as np

from app.core import overlays
from app.core.analysis import X, branch_name
from app.core.dynamics import dynamic_part, dynamic_share
from app.core.figures import activation_overlay, filter_panels, pooling_grid
from app.core.filters import shared_range
from app.core.gates import gate
from app.core.roles import BACKGROUND, branch_roles, changed_share, points, removed_labels
from app.core.runtime import (FILTER_SIZES, THUMB, channel_choices, gpu, kept, ranking, see,
                              user_errors, valid_channel)
from app.core.wiring import UNDOC, Graph, on
from app.core.words import PAPER, gloss

CSS = """
.col-head { text-align: center; font-weight: 600; }
/* The x column has no channel picker, filter or pooling grid: its text takes their height, so
   its activation maps and "removed" panel line up with those of the k columns. */
.skip-top { min-height: 627px; }
/* x and the four k columns stay in one row; a narrow screen scrolls it sideways. */
div:has(> #column-x) { flex-wrap: nowrap !important; overflow-x: auto; gap: 8px; }
div:has(> #column-x) > .column { min-width: 170px !important; flex: 1 1 0 !important; }
div:has(> #column-x) > #column-x { min-width: 130px !important; flex: 0.7 1 0 !important; }
"""

BRANCHES = f"""**One column per input of the bottleneck.** DMNet concatenates the backbone
features **x** with the outputs of four Dynamic Convolutional Modules (DCMs), one per filter size
k = 1, 3, 5, 7. In each DCM:
1. **Pooling grid** — x is average-pooled to k×k. The grid over the image shows the bins; where
   the feature size is not divisible by k the bins overlap (darker bands), exactly as
   `adaptive_avg_pool2d` does.
2. **Generated filters** — a 1×1 conv maps each pooled cell to one tap of a k×k filter *per
   channel*. The heatmap shows one channel's filter; the colour scale is shared by all columns.
   The two panels split it: the **mean** filter (its average over the model's fixed reference
   images, the same for every image) and the **dynamic part** (what this image adds), on one
   colour scale. The channel picker lists channels by how much their dynamic part varies
   across the reference images: the top ones are the most *dynamic*.
3. **Activations** — x, reduced by a 1×1 conv, is convolved depthwise: channel c with its own
   filter, the same at every position. The maps show the output's channel mean and the chosen
   channel, over the pixels each feature cell sees. (The chosen channel's map is drawn from a
   bfloat16 copy, within 0.4% of each value, so that an official model's 2048 maps fit in
   memory; everything else here, and every number, is the fp32 pass.)
4. **Without it** — the pixels that change class when this input is taken away (set to zero)
   and the rest of the network runs as before, drawn in their new class colour over a faded
   image. The line under it says how many pixels change and, with a true mask, how much the
   accuracy on small and large objects drops: a branch that matters for large objects costs
   accuracy there.

For k = 1 the "filter" is one number per channel: a gain computed from the global average of the
image. Larger k keep more of the layout of the context in the filter, but the layout shows only
where the features vary: over a patch where a channel is flat, a k×k filter gives that value
times the sum of its taps, and the taps sum to a gain from the mean of the k×k grid, which is
(close to) the global average of k = 1. So what only a larger k adds lies at edges and textures.

Reference: {PAPER}."""
SKIP_COLUMN = """**x** is the backbone's last feature map. It reaches the bottleneck
unchanged, next to the four DCM outputs: no filter is generated for it. Below: its channel
mean, the size of its contribution to the bottleneck, and what changes without it."""
COLUMNS = (X, *(branch_name(k) for k in (1, 3, 5, 7)))  # the Branches tab's columns


@dataclass
class Column:
    """The components of one column of the Branches tab."""

    channel: gr.Dropdown | None
    plots: list[gr.Plot]
    removed: gr.Image  # what removing this input changes (`removals`)
    removed_note: gr.Markdown

    @property
    def outputs(self) -> list:
        return [c for c in [self.channel, *self.plots] if c is not None]


def layout_column(name: str, k: int | None) -> Column:
    gr.Markdown(name, elem_classes="col-head")
    channel = None
    plots = []
    if k is None:
        gr.Markdown(SKIP_COLUMN, elem_classes=["teach", "skip-top"])
    else:
        channel = gr.Dropdown(label="channel (most input-dependent first)", choices=[],
                              allow_custom_value=True)
        plots += [gr.Plot(show_label=False), gr.Plot(show_label=False)]
    plots += [gr.Plot(show_label=False), gr.Plot(show_label=False)]
    key = "x" if k is None else k
    removed = gr.Image(label=f"without {name.split()[0]}", interactive=False,
                       height=220, format="png", elem_id=f"removed-{key}")
    return Column(channel, plots, removed, gr.Markdown(elem_id=f"removed-note-{key}"))


def create_branches() -> dict:
    with gr.Row():
        fused = gr.Image(label="fused prediction (all inputs)", interactive=False, height=260,
                         format="jpeg", scale=1)
        gr.Markdown(gloss(BRANCHES), elem_classes="teach")
    columns = {}
    with gr.Row(equal_height=False):
        for name, k in [("x (skip path)", None), *((f"k={k}", k) for k in FILTER_SIZES)]:
            with gr.Column(min_width=200, elem_id=f"column-{'x' if k is None else k}"):
                columns[k] = layout_column(name, k)
    return dict(fused=fused, columns=columns)


def wire_branches(g: Graph, inp: dict, br: dict, tab, subject, tok) -> None:
    """The Branches tab (lazy): the columns, then what removing each input changes; one
    column's channel redraws that column."""
    br["outputs"] = [br["fused"], *(c for col in br["columns"].values() for c in col.outputs)]
    br["removed"] = [c for col in br["columns"].values() for c in (col.removed, col.removed_note)]
    model, image = inp["model"], inp["image"]
    channels = [br["columns"][k].channel for k in FILTER_SIZES]
    g.fresh(on(subject.change, tab.change), gate("branches", "branches"), [tab, subject], [tok])
    branched = g.heavy(tok.change, branches, [model, image, *channels], br["outputs"],
                       api_name="branches")
    g.heavy(branched.success, removals, [model, image, inp["truth"]], br["removed"],
            api_name="removals")
    for i, k in enumerate(FILTER_SIZES):
        col = br["columns"][k]
        size = gr.Number(k, visible=False)
        g.heavy(col.channel.input, branch_column, [model, image, size, col.channel],
                col.outputs, **(dict(api_name="branch_column") if i == 0 else UNDOC))


@user_errors
@gpu
def branch_column(key: str, image: str | None, k: int, channel: int | None):
    """One branch's column: channel picker, filter, pooling grid, activations (what removing the
    branch changes is `removals`)."""
    seen = see(key, image)
    a = seen.analysis
    r = ranking(key)
    k = int(k)
    if k not in a.filters:
        raise gr.Error(f"this model has no branch with filter size {k} "
                       f"(its sizes are {a.filter_sizes})")
    c = valid_channel(r, k, channel)
    thumb = overlays.thumbnail(a.image, THUMB)
    mean = r.mean[k][c]
    dyn = dynamic_part(a.filters[k][c], mean)
    rank = int(np.flatnonzero(r.order[k] == c)[0]) + 1
    return (
        kept(gr.Dropdown, channel_choices(r, k), channel, c),
        filter_panels([("mean (static)", mean), ("dynamic part", dyn)],
                      shared_range([mean, dyn], 1.0),
                      f"ch {c} (#{rank}) · {dynamic_share(mean, dyn):.0%} dynamic"),
        pooling_grid(thumb, a.feature_size, k),
        activation_overlay(thumb, a.branch_means[k], f"k={k} output: channel mean"),
        activation_overlay(thumb, a.branches[k][c].float().numpy(), f"k={k} output: channel {c}"),
    )


@user_errors
@gpu
def skip_column(key: str, image: str | None):
    """The x column: the backbone features that skip the DCMs."""
    seen = see(key, image)
    a = seen.analysis
    thumb = overlays.thumbnail(a.image, THUMB)
    norm = a.split.parts[a.part_names.index(X)].norm(dim=0).numpy()
    return (
        activation_overlay(thumb, a.x_mean, "x: channel mean"),
        activation_overlay(thumb, norm, "x → bottleneck (L2 norm)"),
    )


@user_errors
@gpu
def fused(key: str, image: str | None):
    """The fused prediction (all branches), to compare the columns with."""
    a = see(key, image).analysis
    return overlays.overlay(a.image, a.label, a.palette)


@user_errors
@gpu
def branches(key: str, image: str | None, ch1: int | None, ch3: int | None, ch5: int | None,
             ch7: int | None):
    """The whole Branches tab: fused prediction, the x column, then one column per filter size."""
    out = [fused(key, image), *skip_column(key, image)]
    for k, channel in zip(FILTER_SIZES, (ch1, ch3, ch5, ch7), strict=True):
        out += branch_column(key, image, k, channel)
    return tuple(out)


@user_errors
@gpu
def removals(key: str, image: str | None, truth: str | None):
    """Per column of the Branches tab (x, k=1, 3, 5, 7): the pixels that change class when that
    input is removed (new class colour over the dimmed image), and a sentence of what it costs."""
    seen = see(key, image, truth)
    a = seen.analysis
    removed = removed_labels(a)
    changed = changed_share(a, removed)
    groups = None if seen.truth is None else [
        g for g in branch_roles(a, seen.truth, removed).groups
        if g.pixels > 0 and g.name != BACKGROUND]
    out = []
    for name in COLUMNS:
        if name not in removed:
            out += [None, f"this model has no input {name}"]
            continue
        view = overlays.changes(a.image, a.label, removed[name], a.palette)
        out.append(overlays.upsample_nearest(view, overlays.display_size(view.shape, 256)))
        out.append(removal_note(name, changed[name], groups, a.part_names.index(name)))
    return tuple(out)


def removal_note(name: str, changed: float, groups: list | None, j: int) -> str:
    """"removing k=3 changes 4.1% of pixels", and per object size the accuracy it costs."""
    note = f"removing **{name}** changes **{100 * changed:.1f}%** of pixels"
    if groups is None:
        return note + " (a true mask adds the accuracy per object size)"
    costs = [f"{g.name}: {100 * g.accuracy:.0f} → {100 * g.without[j]:.0f}% "
             f"(**{points(g.without[j] - g.accuracy)}**)" for g in groups]
    return note + ("  \nAccuracy on objects, by size:  \n" + "  \n".join(costs) if costs else "")
