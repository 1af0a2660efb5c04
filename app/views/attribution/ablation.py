"""The ablation: remove inputs of the bottleneck, keep only some, give the branches their static
(mean) filters, or sum each filter's taps; then what changes, per pixel and per class."""

from __future__ import annotations

import gradio as gr
import numpy as np
import torch

from app.core import overlays
from app.core.analysis import ablated_label
from app.core.attribution import keep_mask, logit_parts
from app.core.metrics import class_changes, mean_iou
from app.core.runtime import Seen, gpu, ranking, see, user_errors
from app.core.transplant import with_filters
from app.views.attribution.explain import class_filter, readout
from dmnet.heads import summed_taps

ABLATIONS = ("remove", "keep only", "static filters", "taps summed")  # the modes of `ablate`
STATIC, SUMMED = ABLATIONS[2:]


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
    "summed", app/style.py's CSS). Neither the choices nor the ticks are written: a new list would
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
