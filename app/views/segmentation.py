"""The Segmentation tab: the whole network's prediction over the image, with its opacity, a
highlighted class (picked, or clicked in the overlay or its legend), the share of each class
and, with a true mask, its IoU. Redrawn from the cached pass."""

from __future__ import annotations

import math

import gradio as gr
import numpy as np

from app.core import models, overlays
from app.core.figures import class_bars
from app.core.metrics import iou, mean_iou, pixel_share
from app.core.runtime import USER_ERRORS, Seen, gpu, kept, see, user_errors
from app.core.wiring import QUIET, UNDOC, Graph, on
from app.core.words import PAPER, gloss

NO_HIGHLIGHT = "(none)"
SEGMENT = f"""**What you see.** The prediction of the whole network, blended over the image.
Hover a class in the legend to highlight it, or click it (or pick it below) to dim the others.
The bars give each class's share of the pixels and, with a true mask, its IoU (intersection over
union of predicted and true pixels).

**How it is computed.** As mmsegmentation's test pipeline: the image is resized to the model's
test scale, the decode head's logits (at 1/8 resolution) are resized back bilinearly, and each
pixel takes its highest-scoring class. Images larger than the test scale are downscaled first.

Reference: {PAPER}."""


def create_segmentation() -> dict:
    with gr.Row():
        with gr.Column(scale=3):
            overlay = gr.AnnotatedImage(label="prediction", height=480, show_legend=True,
                                        elem_id="overlay")
            with gr.Row():
                opacity = gr.Slider(0, 1, value=0.6, step=0.05, label="opacity",
                                    elem_id="opacity")
                highlight = gr.Dropdown(label="highlight class", choices=[NO_HIGHLIGHT],
                                        value=NO_HIGHLIGHT, elem_id="highlight")
        with gr.Column(scale=2):
            bars = gr.Plot(show_label=False, elem_id="class-bars")
            table = gr.Dataframe(headers=["class", "pixels %", "IoU %"], interactive=False,
                                 label="per class", elem_id="class-table")
    gr.Markdown(gloss(SEGMENT), elem_classes="teach")
    return dict(overlay=overlay, opacity=opacity, highlight=highlight, bars=bars, table=table)


def wire_segmentation(g: Graph, inp: dict, seg: dict, ready) -> None:
    """Runs for every new subject (`ready`); re-draws from the cached pass: opacity, highlighted
    class (picked, or clicked in the overlay or its legend). The opacity redraws on `input`: a
    drag and a number typed in its box both fire it; `always_last` drops the steps of a drag
    that a newer one overtook. The overlay's colours (keyed by class name) reach the page by a
    UI-only event: in `/segment`'s output a client would take ADE20K's class `path` for a file."""
    seg["outputs"] = [seg["overlay"], seg["highlight"], seg["bars"], seg["table"], inp["notes"]]
    seg_in = [inp["model"], inp["image"], inp["truth"], seg["opacity"], seg["highlight"]]
    g.heavy(ready.success, segment, seg_in, seg["outputs"], api_name="segment")
    ready.success(overlay_colors, [inp["model"]], [seg["overlay"]], **QUIET)  # not a ticket
    g.heavy(on(seg["opacity"].input, seg["highlight"].input), segment, seg_in,
            seg["outputs"], **UNDOC)
    clicked = seg["overlay"].select(select_class, None, [seg["highlight"]], **QUIET)
    g.heavy(clicked.then, segment, seg_in, seg["outputs"], **UNDOC)


def describe(seen: Seen) -> str:
    """Markdown: what ran on what, how long it took, and what was done to the input."""
    a = seen.analysis
    h, w = a.image.shape[:2]
    lines = [f"{w}×{h} image → model input {a.input_size[1]}×{a.input_size[0]} → features "
             f"{a.feature_size[1]}×{a.feature_size[0]} · one fp32 forward pass "
             f"{a.seconds * 1000:.0f} ms on {models.device_note()}, shared by every view"]
    if seen.truth is not None:
        m = mean_iou(a.label, seen.truth, len(a.classes))
        lines.append(f"mIoU against the true mask: **{100 * m:.1f}%**")
    lines += [f"ℹ️ {n}" for n in seen.notices]
    return "  \n".join(lines)


@user_errors
@gpu
def segment(key: str, image: str | None, truth: str | None, opacity: float, highlight: str | None,
            progress: gr.Progress = gr.Progress()):
    """The overlay, the classes' pixel share (and IoU), and a description."""
    progress(0, desc="running the network (large official models take a while on CPU)")
    seen = see(key, image, truth)
    a = seen.analysis
    k = len(a.classes)
    share = pixel_share(a.label, k)
    present = [c for c in range(k) if share[c] > 0 or (seen.truth is not None
                                                        and (seen.truth == c).any())]
    names = [a.classes[c] for c in present]
    asked, highlight = highlight, highlight if highlight in names else None
    annotations = []
    for c in present:
        alpha = opacity if highlight is None else (0.9 if a.classes[c] == highlight
                                                   else opacity * 0.15)
        annotations.append(((a.label == c).astype(np.float32) * alpha, a.classes[c]))
    per_iou = iou(a.label, seen.truth, k) if seen.truth is not None else None
    bars = class_bars(names, [a.palette[c] for c in present], [float(share[c]) for c in present],
                      None if per_iou is None else [float(per_iou[c]) for c in present])
    rows = [[a.classes[c], round(100 * float(share[c]), 2),
             None if per_iou is None or not math.isfinite(per_iou[c])
             else round(100 * float(per_iou[c]), 1)] for c in present]
    picker = kept(gr.Dropdown, [NO_HIGHLIGHT, *names], asked, highlight or NO_HIGHLIGHT)
    return (gr.AnnotatedImage(value=(a.image, annotations)), picker,
            bars, rows, describe(seen))


def overlay_colors(key: str) -> gr.AnnotatedImage:
    """The Segmentation overlay's colours: the model's palette by class name. A UI-only event:
    a class named "path" (ADE20K has one) makes {"path": colour}, which an API client takes
    for a file, so no endpoint returns the colour map."""
    try:
        p = models.get_model(key).preset
    except USER_ERRORS:  # the model's own events say why
        return gr.skip()
    return gr.AnnotatedImage(color_map={name: overlays.hex_color(p.palette[c])
                                        for c, name in enumerate(p.classes)})


def select_class(evt: gr.SelectData) -> str:
    """Clicking a class in the overlay or its legend highlights it."""
    value = evt.value
    if isinstance(value, (list, tuple)) and value:
        value = value[-1]
    return value if isinstance(value, str) else NO_HIGHLIGHT
