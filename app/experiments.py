"""Actions that change something and watch the effect: ablation, a second image, the input scale.

Same contract as `app.actions`: model key and image file in, display values out, failures as
readable messages. The scale sweep is a generator, so it shows each scale as it is done and a
Stop button can cancel it between scales.
"""

from __future__ import annotations

import gradio as gr
import numpy as np
import torch

from dmnet.heads import summed_taps

from . import overlays
from .analysis import ablated_label, sweep_frame
from .attribution import keep_mask, logit_parts
from .dynamics import dynamic_part, dynamic_parts
from .explain import class_filter, readout
from .figures import cosine_lines, filter_panels, sweep_lines
from .filters import bank_cosine, cosine_per_channel, shared_range
from .metrics import class_changes, mean_iou
from .runtime import (Seen, channel_choices, gpu, kept, ranking, see, segmentation,
                      user_errors, valid_channel)
from .sweep_view import Frame, Panel, sweep_html
from .transplant import with_filters

SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0)
ABLATIONS = ("remove", "keep only", "static filters", "taps summed")  # the modes of `ablate`
STATIC, SUMMED = ABLATIONS[2:]


# --- ablation -------------------------------------------------------------------------------------

def check_ablation(mode: str, parts: list[str] | None) -> None:
    """The message of an ablation with nothing to do, raised before it runs: the UI checks
    first, so that a misclick leaves the last ablation on screen (an error in `ablate` itself
    would mark all its outputs failed)."""
    parts = list(parts or [])
    if mode == "keep only" and not parts:
        raise gr.Error("Tick at least one input to keep.")
    if mode == SUMMED and not any(p.startswith("k=") and p != "k=1" for p in parts):
        raise gr.Error("Tick a branch with k > 1: its filters' taps are summed (k=1's filters "
                       "are 1x1 already).")


PARTS = ("x", "k=1", "k=3", "k=5", "k=7")  # the ticks: the inputs of the bottleneck


def parts_for(mode: str, parts: list[str] | None) -> gr.CheckboxGroup:
    """The ticks as the ablation `mode` reads them: all five to remove or keep; none for static
    filters, which replace every branch's filters (disabled, and it says why); only k > 1 for
    summed taps (x has no filter, k=1's are 1x1 already: those two are hidden by the class
    "summed", app/ui.py's CSS). Neither the choices nor the ticks are written: a new list would
    be drawn anew under a tick the user is making."""
    if mode == STATIC:
        return gr.CheckboxGroup(interactive=False, elem_classes=[],
                                label="inputs of the bottleneck: not used by static filters, "
                                      "which replace the filters of every branch")
    if mode == SUMMED:
        return gr.CheckboxGroup(interactive=True, elem_classes=["summed"],
                                label="branches whose filter taps are summed (k > 1 only: x has "
                                      "no filter, k=1's are 1x1 already)")
    return gr.CheckboxGroup(interactive=True, elem_classes=[], label="inputs of the bottleneck")


def ablated(seen: Seen, key: str, mode: str, parts: list[str]
            ) -> tuple[np.ndarray, torch.Tensor, str, str, tuple[str, ...]]:
    """The prediction under one ablation: (label (H, W), class per feature cell (h, w), what
    changed in words, what was done in words, the inputs removed)."""
    check_ablation(mode, parts)
    a = seen.analysis
    if mode == STATIC:
        static = with_filters(seen.model, a.image, [ranking(key).mean])[0]
        return (static.label, static.logits.argmax(0), "with static filters",
                f"Every generated filter replaced by its mean over {ranking(key).description} "
                f"(x and all branches kept)", ())
    if mode == SUMMED:
        sizes = [k for k in a.filter_sizes if k > 1 and f"k={k}" in parts]
        swap = {k: summed_taps(torch.from_numpy(a.filters[k])) for k in sizes}
        summed = with_filters(seen.model, a.image, [swap])[0]
        names = ", ".join(f"k={k}" for k in sizes)
        return (summed.label, summed.logits.argmax(0), f"with the taps of {names} summed",
                f"The filters of **{names}** made 1x1: each channel keeps its filter's sum (its "
                f"gain for this image) but loses the k×k layout", ())
    keep = keep_mask(a.part_names, parts, mode)
    kept = [n for n, k in zip(a.part_names, keep, strict=True) if k]
    removed = tuple(n for n in a.part_names if n not in kept)
    return (ablated_label(a, keep), a.classifier(a.split.total(keep)).argmax(0),
            f"without {', '.join(removed)}" if removed else "with every input",
            f"Bottleneck computed from **{', '.join(kept) or 'nothing but the BN shift'}**",
            removed)


@user_errors
@gpu
def ablate(key: str, image: str | None, truth: str | None, mode: str, parts: list[str] | None,
           opacity: float = 0.3, shown: str | None = None):
    """Remove inputs of the bottleneck (or keep only some), make every filter static (its mean
    over the reference inputs), or sum the taps of some branches' filters (1x1 filters), and
    show what the prediction becomes: the changed pixels in their new class colour (only those
    of class `shown`, before or after, when given), the image under them at `opacity`."""
    seen = see(key, image, truth)
    a = seen.analysis
    after, cells, change, done, removed = ablated(seen, key, mode, list(parts or []))
    changed = float((after != a.label).mean())
    total = a.label.size
    rows = [[c.name, round(100 * c.before / total, 2), round(100 * c.after / total, 2),
             round(100 * (c.after - c.before) / total, 2),
             None if c.iou_before is None else round(100 * c.iou_before, 1),
             None if c.iou_after is None else round(100 * c.iou_after, 1)]
            for c in class_changes(a.label, after, a.classes, seen.truth)]
    summary = f"{done}: **{100 * changed:.1f}%** of pixels change class."
    if seen.truth is not None:
        k = len(a.classes)
        summary += (f" mIoU {100 * mean_iou(a.label, seen.truth, k):.1f}% → "
                    f"{100 * mean_iou(after, seen.truth, k):.1f}%.")
    present = np.flatnonzero(np.bincount(np.concatenate([a.label.ravel(), after.ravel()]),
                                         minlength=len(a.classes)))
    keep, picker = class_filter(shown, a.label, a.classes, [int(c) for c in present])
    if shown in a.classes:  # pixels that were of the class or became it
        keep |= after == a.classes.index(shown)
    view = overlays.readable(a.image, overlays.colorize(after, a.palette), after != a.label,
                             a.label, opacity, dim=~keep)
    return view, rows, summary, picker, readout(a, logit_parts(a.split, a.classifier),
                                                "#ablation-changes", cells, removed, change)


# --- compare two images ---------------------------------------------------------------------------

@user_errors
def channel_picker(key: str, k: int, channel: int | None) -> gr.Dropdown:
    """The channels of branch k, most input-dependent first (keeps a valid current choice)."""
    r = ranking(key)
    k = int(k)
    if k not in r.order:
        raise gr.Error(f"this model has no branch with filter size {k}")
    return kept(gr.Dropdown, channel_choices(r, k), channel, valid_channel(r, k, channel))


@user_errors
@gpu
def compare(key: str, image_a: str | None, image_b: str | None, k: int, channel: int | None):
    """The same branch and channel's filters for images A and B, split into the mean over the
    reference inputs and each image's dynamic part, and how similar the dynamic parts are."""
    if image_b is None:
        raise gr.Error("Add image B (upload, paste, or generate a scene and use it as B).")
    a, b = see(key, image_a).analysis, see(key, image_b).analysis
    r = ranking(key)
    k = int(k)
    if k not in a.filters:
        raise gr.Error(f"this model has no branch with filter size {k}")
    c = valid_channel(r, k, channel)
    da, db = dynamic_parts(a.filters, r), dynamic_parts(b.filters, r)
    cos = {s: cosine_per_channel(da[s], db[s]) for s in da}
    colors = {s: overlays.part_color(f"k={s}") for s in da}
    rows = [[f"k={s}", round(bank_cosine(a.filters[s], b.filters[s]), 3),
             round(bank_cosine(da[s], db[s]), 3), round(float(cos[s].mean()), 3),
             ", ".join(str(int(i)) for i in np.argsort(cos[s])[:3])] for s in da]
    mean = r.mean[k][c]
    panels = [("mean (both)", mean), ("A: dynamic part", da[k][c]), ("B: dynamic part", db[k][c])]
    pair = filter_panels(panels, shared_range([mean, da[k][c], db[k][c]], 1.0),
                         f"k={k}, channel {c}: cosine of the dynamic parts {cos[k][c]:.3f}")
    return (overlays.overlay(a.image, a.label, a.palette),
            overlays.overlay(b.image, b.label, b.palette),
            pair, cosine_lines(cos, c, colors), rows)


# --- filter transplant ----------------------------------------------------------------------------

ALL_BRANCHES = "all branches"
TRANSPLANTS = ("B with A's filters", "A with B's filters")  # the directions of `transplant`


@user_errors
@gpu
def transplant(key: str, image_a: str | None, image_b: str | None, branch: str, direction: str):
    """Run one image (the host) with the filters generated for the other (the donor), in one
    branch or all; beside it, the host with the static (mean) filters in the same branches."""
    if image_b is None:
        raise gr.Error("Add image B (upload, paste, or generate a scene and use it as B).")
    if direction not in TRANSPLANTS:
        raise gr.Error(f"direction must be one of {', '.join(TRANSPLANTS)}")
    a, b = see(key, image_a), see(key, image_b)
    host, donor = (b, a) if direction == TRANSPLANTS[0] else (a, b)
    h, d = host.analysis, donor.analysis
    ks = list(h.filters) if branch == ALL_BRANCHES else [int(str(branch).removeprefix("k="))]
    if any(k not in h.filters for k in ks):
        raise gr.Error(f"this model has no branch {branch} (its sizes are {h.filter_sizes})")
    r = ranking(key)
    moved, static = with_filters(host.model, h.image, [{k: d.filters[k] for k in ks},
                                                       {k: r.mean[k] for k in ks}])
    hn, dn = ("B", "A") if host is b else ("A", "B")
    where = "every branch" if branch == ALL_BRANCHES else f"branch {branch}"
    moved_share = float((moved.label != h.label).mean())
    static_share = float((static.label != h.label).mean())
    summary = (f"**{hn} with {dn}'s filters** in {where}: **{100 * moved_share:.1f}%** of "
               f"{hn}'s pixels change class. With the static (mean) filters in the same "
               f"branches: **{100 * static_share:.1f}%**. (Mean over {r.description}.)")
    return (overlays.overlay(h.image, h.label, h.palette),
            overlays.changes(h.image, h.label, static.label, h.palette),
            overlays.overlay(h.image, moved.label, h.palette),
            overlays.changes(h.image, h.label, moved.label, h.palette), summary)


# --- scale sweep ----------------------------------------------------------------------------------

def _sweep_outputs(frames: dict, image: np.ndarray, truth, classes, palette, channels, mean,
                   note: str):
    factors = sorted(frames)
    ref = frames[1.0]
    dyn = {f: {k: dynamic_part(frames[f].filters[k], mean[k]) for k in channels}
           for f in factors}
    cos = {k: [bank_cosine(dyn[f][k], dyn[1.0][k]) for f in factors] for k in channels}
    agree = [float((frames[f].label == ref.label).mean()) for f in factors]
    miou = None if truth is None else [mean_iou(frames[f].label, truth, len(classes))
                                       for f in factors]
    colors = {k: overlays.part_color(f"k={k}") for k in channels}
    shown = [Frame(f, overlays.thumbnail(overlays.overlay(image, frames[f].label, palette), 300),
                   f"{f:g}× · model input {frames[f].input_size[1]}×{frames[f].input_size[0]} · "
                   f"{100 * a:.1f}% of pixels as at 1× · {frames[f].seconds:.2f} s",
                   [Panel(k, c, mean[k][c], dyn[f][k][c],
                          None if f == 1.0 else cos[k][factors.index(f)])
                    for k, c in channels.items()])
             for f, a in zip(factors, agree, strict=True)]
    final = len(frames) == len(SCALES)
    status = (f"{len(frames)}/{len(SCALES)} scales done" if not final else
              f"Done: {len(frames)} scales in {sum(f.seconds for f in frames.values()):.1f} s.")
    return (sweep_html(shown, note, len(SCALES)), sweep_lines(factors, cos, agree, miou, colors),
            status)


def segmentation_note(key: str, image: str, label: np.ndarray) -> str:
    """Whether the sweep's 1x prediction is the Segmentation tab's, and why not."""
    seg = segmentation(key, image).prediction
    same = float((seg.label == label).mean())
    if same == 1:
        return "At 1× this is exactly the Segmentation tab's prediction."
    why = (f" The Segmentation tab runs a fast {seg.precision} pass for this model; the sweep "
           "runs fp32, like the other views." if seg.precision != "fp32" else "")
    return f"At 1× this agrees with the Segmentation tab's prediction on {100 * same:.2f}% " \
           f"of pixels.{why}"


@user_errors
@gpu
def sweep(key: str, image: str | None, truth: str | None, ch1: int | None, ch3: int | None,
          ch5: int | None, ch7: int | None, progress: gr.Progress = gr.Progress()):
    """Resize the model input from 0.5x to 2x; yield the filters and prediction at each scale."""
    seen = see(key, image, truth)
    a = seen.analysis
    r = ranking(key)
    wanted = dict(zip((1, 3, 5, 7), (ch1, ch3, ch5, ch7), strict=True))
    channels = {k: valid_channel(r, k, wanted.get(k)) for k in a.filters}
    frames = {}
    note = ""
    order = [1.0, *(f for f in SCALES if f != 1.0)]  # 1x first: the others compare with it
    for i, factor in enumerate(order):
        progress((i, len(order)), desc=f"input at {factor:g}×")
        frames[factor] = sweep_frame(seen.model, a.image, factor)
        if factor == 1.0:
            note = segmentation_note(key, image, frames[1.0].label)
        yield _sweep_outputs(frames, a.image, seen.truth, a.classes, a.palette, channels, r.mean,
                             note)
