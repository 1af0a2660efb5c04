"""One function per user action and API endpoint: Gradio values in, display values out.

Each takes the model key and the image file (so API calls stand alone), finds the cached
`Analysis` through `runtime.see`, and returns figures and images from `app.figures` and
`app.overlays`. Failures become readable messages (`runtime.user_errors`).
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import gradio as gr
import numpy as np

from dmnet.presets import DATASETS

from . import models, overlays
from .analysis import X
from .dynamics import dynamic_part, dynamic_share
from .figures import activation_overlay, class_bars, filter_panels, pooling_grid
from .filters import shared_range
from .images import SCENE_DATASET, generate_scene, read_mask, scene_dataset
from .metrics import iou, mean_iou, pixel_share
from .runtime import (USER_ERRORS, Segmented, channel_choices, gpu, image_file, kept, picture,
                      ranking, see, segmentation, user_errors, valid_channel)

NO_HIGHLIGHT = "(none)"
FILTER_SIZES = (1, 3, 5, 7)  # the columns of the Branches tab (every published DMNet's sizes)
THUMB = 256  # side of the images inside plotly figures
SCENES = Path(tempfile.gettempdir()) / "dmnet-explorer-scenes"  # true masks of generated scenes


# --- models ---------------------------------------------------------------------------------------

@user_errors
@gpu
def load_model(key: str, progress: gr.Progress = gr.Progress(track_tqdm=True)) -> str:
    """Load a model (downloading an official one on first use) and describe it."""
    progress(0, desc="loading the model")
    model = models.get_model(key)
    progress(0.6, desc="ranking filter channels on reference inputs")
    ref = ranking(key)
    p = model.preset
    notes = "".join(f"\n\n> {n}" for n in models.load_notes(key))
    published = f" · published mIoU {p.miou:.2f}" if p.miou else ""
    return (f"**{models.label_of(key)}** on {models.device_note()}  \n"
            f"preset `{p.name}`{published} · {p.num_classes} classes · filter sizes "
            f"{', '.join(map(str, p.filter_sizes))} · head width {p.head_channels}  \n"
            f"mean (static) filters over {ref.description}{notes}")


def startup(key: str) -> str:
    """Page load: load the picked model, or say that the demo checkpoint is missing."""
    if key == models.DEMO and not models.demo_checkpoint().is_file():
        return model_status()
    return load_model(key)


def require_demo(key: str) -> None:
    """Stop the page-load chain quietly when the demo checkpoint is missing (already said)."""
    if key == models.DEMO and not models.demo_checkpoint().is_file():
        raise gr.Error("demo checkpoint missing", visible=False, print_exception=False)


def model_status() -> str:
    """The status line shown before any model is loaded."""
    if not models.demo_checkpoint().is_file():
        return "⚠️ " + models.demo_missing_message()
    return f"Models run on {models.device_note()}."


def refresh_choices(key: str) -> tuple[gr.Dropdown, str]:
    """After a model loaded: the picker's labels (" · loaded"), and the key as the model in use.
    The picker's value stays the user's (they may have picked another model meanwhile)."""
    return gr.Dropdown(choices=models.choices()), key


def back_to(key: str) -> tuple[gr.Dropdown, str]:
    """After a failed load or upload (already said once): the picker and the status line return
    to the model still in use."""
    return gr.Dropdown(choices=models.choices(), value=key), startup(key)


@user_errors
def upload_checkpoint(path: str | None) -> gr.Dropdown:
    """Check an uploaded .pth (it must be a DMNet checkpoint) and select it in the picker."""
    if not path:
        raise gr.Error("Choose a .pth file first.")
    key = models.register_upload(path, Path(path).name)
    return gr.Dropdown(choices=models.choices(), value=key)


def require_image(path: str | None) -> None:
    """Stop an event chain quietly while there is no image (e.g. the image was cleared)."""
    if not path:
        raise gr.Error("no image", visible=False, print_exception=False)


# --- inputs ---------------------------------------------------------------------------------------

ZOOM_LABEL = "object size (zoom)"


def trained_on(key: str | None) -> str:
    """The dataset of the model `key`, as the scenes drawn for it take it: the demo's data when
    the model does not load (its own events say why), so a page or a link still opens on one."""
    try:
        return models.dataset_of(key or models.DEMO)
    except USER_ERRORS:
        return SCENE_DATASET


def zoom_slider(key: str | None) -> gr.Slider:
    """The scene zoom for the model `key`: held at 1 for one whose scenes exist at one size only
    (PatternMatch: its tiles are the feature cells of a 128 px input), free for the others."""
    if scene_dataset(trained_on(key))[0] == "pattern_match":
        return gr.Slider(value=1.0, interactive=False, label=f"{ZOOM_LABEL}: 1 only for "
                         "PatternMatch")
    return gr.Slider(interactive=True, label=ZOOM_LABEL)


@user_errors
def make_scene(seed: float, object_scale: float, key: str = models.DEMO
               ) -> tuple[np.ndarray, str | None]:
    """A scene of the synthetic data the model `key` was trained on (ContextShapes for the demo
    model) and its true mask, a palette PNG of class ids; a model of a real dataset gets a
    ContextShapes picture and no mask (its classes are not the model's)."""
    from training.data.shapes import label_png  # the dataset's own mask writer

    dataset, labelled = scene_dataset(trained_on(key))
    image, label = generate_scene(int(seed), float(object_scale), dataset=dataset)
    if not labelled:
        gr.Info(f"A ContextShapes scene: this model was trained on {trained_on(key)}, whose "
                "classes these shapes are not, so it comes without a true mask.")
        return image, None
    name = f"scene_{dataset}_{int(seed)}_x{float(object_scale):g}_mask"
    mask = label_png(label, DATASETS[dataset][1])
    return image, image_file(mask, SCENES, name, "png")  # two users, same seed


def make_scene_b(seed: float, key: str = models.DEMO) -> np.ndarray:
    """Compare's image B: a generated scene of the model's data at zoom 1 (no mask)."""
    return make_scene(seed, 1.0, key)[0]


def true_mask(key: str, image: str | None, truth: str | None) -> gr.Image:
    """The true mask in the model's class colours, shown beside the input; hidden without one,
    or when it cannot be read (the segmentation then says why, once)."""
    if not image or not truth:
        return gr.Image(value=None, visible=False)
    try:
        model = models.get_model(key)
        mask = read_mask(truth, picture(model, image).image.shape[:2], model.preset.num_classes)
    except USER_ERRORS:
        return gr.Image(value=None, visible=False)
    return gr.Image(value=overlays.colorize(mask, model.preset.palette), visible=True)


def describe(seg: Segmented) -> str:
    """Markdown: what ran on what, in which precision (and how far a fast pass agrees with the
    fp32 one of the other views), how long it took, and what was done to the input."""
    a = seg.prediction
    h, w = a.image.shape[:2]
    what = "forward pass + split" if a.precision == "fp32" else "forward pass"
    lines = [f"{w}×{h} image → model input {a.input_size[1]}×{a.input_size[0]} → features "
             f"{a.feature_size[1]}×{a.feature_size[0]} · {what} "
             f"{a.seconds * 1000:.0f} ms on {models.device_note()}"]
    if a.precision == "fp32":
        lines.append("prediction in fp32, from the pass every view shares")
    else:
        fast = (f"prediction in **{a.precision}** (fast path: BN folded, {a.precision} autocast); "
                "the other views run in fp32")
        lines.append(fast + (" (how far the two agree is shown here once their pass has run)"
                             if seg.agreement is None else
                             f": **{100 * seg.agreement:.2f}%** of pixels agree with it"))
    if seg.truth is not None:
        m = mean_iou(a.label, seg.truth, len(a.classes))
        lines.append(f"mIoU against the true mask: **{100 * m:.1f}%**")
    lines += [f"ℹ️ {n}" for n in seg.notices]
    return "  \n".join(lines)


# --- segmentation ---------------------------------------------------------------------------------

@user_errors
@gpu
def segment(key: str, image: str | None, truth: str | None, opacity: float, highlight: str | None,
            progress: gr.Progress = gr.Progress()):
    """The overlay, the classes' pixel share (and IoU), and a description."""
    progress(0, desc="running the network (large official models take a while on CPU)")
    seen = segmentation(key, image, truth)
    a = seen.prediction
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


# --- branches -------------------------------------------------------------------------------------

@user_errors
@gpu
def branch_column(key: str, image: str | None, k: int, channel: int | None):
    """One branch's column: channel picker, filter, pooling grid, activations (what removing the
    branch changes is `explain.removals`)."""
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
    act = a.branches[k]
    rank = int(np.flatnonzero(r.order[k] == c)[0]) + 1
    return (
        kept(gr.Dropdown, channel_choices(r, k), channel, c),
        filter_panels([("mean (static)", mean), ("dynamic part", dyn)],
                      shared_range([mean, dyn], 1.0),
                      f"ch {c} (#{rank}) · {dynamic_share(mean, dyn):.0%} dynamic"),
        pooling_grid(thumb, a.feature_size, k),
        activation_overlay(thumb, act.mean(0).numpy(), f"k={k} output: channel mean"),
        activation_overlay(thumb, act[c].numpy(), f"k={k} output: channel {c}"),
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


# --- the whole Branches tab ---------------------------------------------------------------------

@user_errors
@gpu
def branches(key: str, image: str | None, ch1: int | None, ch3: int | None, ch5: int | None,
             ch7: int | None):
    """The whole Branches tab: fused prediction, the x column, then one column per filter size."""
    out = [fused(key, image), *skip_column(key, image)]
    for k, channel in zip(FILTER_SIZES, (ch1, ch3, ch5, ch7), strict=True):
        out += branch_column(key, image, k, channel)
    return tuple(out)
