"""Actions that change something and watch the effect: ablation, a second image, the input scale.

Same contract as `app.actions`: model key and image file in, display values out, failures as
readable messages. The scale sweep is a generator, so it shows each scale as it is done and a
Stop button can cancel it between scales.
"""

from __future__ import annotations

import gradio as gr
import numpy as np

from . import overlays
from .analysis import ablated_label, analyse, sweep_frame
from .attribution import keep_mask
from .explain import class_filter
from .figures import cosine_lines, filter_pair, sweep_animation, sweep_lines
from .filters import bank_cosine, cosine_per_channel, shared_range
from .metrics import class_changes, mean_iou
from .runtime import (channel_choices, gpu, ranking, see, static_model, user_errors,
                      valid_channel)

SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0)
ABLATIONS = ("remove", "keep only", "static filters")  # the modes of `ablate`
STATIC = ABLATIONS[2]


# --- ablation -------------------------------------------------------------------------------------

@user_errors
@gpu
def ablate(key: str, image: str | None, truth: str | None, mode: str, parts: list[str] | None,
           opacity: float = 0.3, shown: str | None = None):
    """Remove inputs of the bottleneck (or keep only some), or make every filter static (its mean
    over the reference inputs), and show what the prediction becomes: the changed pixels in their
    new class colour (only those of class `shown`, before or after, when given), the image under
    them at `opacity`."""
    seen = see(key, image, truth)
    a = seen.analysis
    parts = list(parts or [])
    if mode == STATIC:
        after = analyse(static_model(key), a.image).label
        done = (f"Every generated filter replaced by its mean over the "
                f"{ranking(key).inputs} reference inputs (x and all branches kept)")
    else:
        if mode == "keep only" and not parts:
            raise gr.Error("Tick at least one input to keep.")
        keep = keep_mask(a.part_names, parts, mode)
        after = ablated_label(a, keep)
        kept = [n for n, k in zip(a.part_names, keep, strict=True) if k]
        done = f"Bottleneck computed from **{', '.join(kept) or 'nothing but the BN shift'}**"
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
    return view, rows, summary, picker


# --- compare two images ---------------------------------------------------------------------------

@user_errors
def channel_picker(key: str, k: int, channel: int | None) -> gr.Dropdown:
    """The channels of branch k, most input-dependent first (keeps a valid current choice)."""
    r = ranking(key)
    k = int(k)
    if k not in r.order:
        raise gr.Error(f"this model has no branch with filter size {k}")
    return gr.Dropdown(choices=channel_choices(r, k), value=valid_channel(r, k, channel))


@user_errors
@gpu
def compare(key: str, image_a: str | None, image_b: str | None, k: int, channel: int | None):
    """The same branch and channel's filters for images A and B, and their similarity."""
    if image_b is None:
        raise gr.Error("Add image B (upload, paste, or generate a scene and use it as B).")
    a, b = see(key, image_a).analysis, see(key, image_b).analysis
    fa, fb = a.filters, b.filters
    r = ranking(key)
    k = int(k)
    if k not in fa:
        raise gr.Error(f"this model has no branch with filter size {k}")
    c = valid_channel(r, k, channel)
    zmax = shared_range([fa[k], fb[k]])
    cos = {s: cosine_per_channel(fa[s], fb[s]) for s in fa if s > 1}
    colors = {s: overlays.part_color(f"k={s}") for s in fa}
    rows = []
    for s in fa:
        per = cosine_per_channel(fa[s], fb[s])
        least = np.argsort(per)[:3] if s > 1 else []
        rows.append([f"k={s}", round(bank_cosine(fa[s], fb[s]), 3),
                     round(float(per.mean()), 3) if s > 1 else None,
                     ", ".join(str(int(i)) for i in least)])
    pair = filter_pair(fa[k][c], fb[k][c], zmax,
                       f"k={k}, channel {c}: cosine {cosine_per_channel(fa[k], fb[k])[c]:.3f}")
    return (overlays.overlay(a.image, a.label, a.palette), overlays.overlay(b.image, b.label,
                                                                           b.palette),
            pair, cosine_lines(cos, c if k > 1 else None, colors), rows)


# --- scale sweep ----------------------------------------------------------------------------------

def _sweep_outputs(frames: dict, image: np.ndarray, truth, classes, palette, channels, final):
    factors = sorted(frames)
    ref = frames[1.0]
    cos = {k: [bank_cosine(frames[f].filters[k], ref.filters[k]) for f in factors]
           for k in ref.filters}
    agree = [float((frames[f].label == ref.label).mean()) for f in factors]
    miou = None if truth is None else [mean_iou(frames[f].label, truth, len(classes))
                                       for f in factors]
    colors = {k: overlays.part_color(f"k={k}") for k in ref.filters}
    gallery = [(overlays.overlay(image, frames[f].label, palette),
                f"{f:g}× · input {frames[f].input_size[1]}×{frames[f].input_size[0]} · "
                f"{frames[f].seconds:.2f} s") for f in factors]
    animation = gr.skip()  # built once, at the end
    if final:
        thumbs = [overlays.thumbnail(overlays.overlay(image, frames[f].label, palette), 256)
                  for f in factors]
        zmax = shared_range([b for fr in frames.values() for b in fr.filters.values()])
        animation = sweep_animation(factors, thumbs, [frames[f].filters for f in factors],
                                    channels, zmax)
    status = (f"{len(frames)}/{len(SCALES)} scales done" if not final else
              f"Done: {len(frames)} scales in {sum(f.seconds for f in frames.values()):.1f} s.")
    return animation, sweep_lines(factors, cos, agree, miou, colors), gallery, status


@user_errors
@gpu
def sweep(key: str, image: str | None, truth: str | None, ch1: int | None, ch3: int | None,
          ch5: int | None, ch7: int | None, progress: gr.Progress = gr.Progress()):
    """Resize the input from 0.5x to 2x; yield the filters and prediction at each scale."""
    seen = see(key, image, truth)
    a = seen.analysis
    r = ranking(key)
    wanted = dict(zip((1, 3, 5, 7), (ch1, ch3, ch5, ch7), strict=True))
    channels = {k: valid_channel(r, k, wanted.get(k)) for k in a.filters}
    frames = {}
    order = [1.0, *(f for f in SCALES if f != 1.0)]  # 1x first: the others compare with it
    for i, factor in enumerate(order):
        progress((i, len(order)), desc=f"input at {factor:g}×")
        frames[factor] = sweep_frame(seen.model, a.image, factor)
        done = i == len(order) - 1
        yield _sweep_outputs(frames, a.image, seen.truth, a.classes, a.palette, channels, done)
