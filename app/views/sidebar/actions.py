"""The sidebar's actions: load a model (picked or uploaded), generate a scene, show the true
mask. Model key and files in, display values out; failures as readable messages."""

from __future__ import annotations

import html

import tempfile
from pathlib import Path

import gradio as gr
import numpy as np

from app.core import models, overlays
from app.core.images import SCENE_DATASET, generate_scene, read_mask, scene_dataset
from app.core.analysis import runner
from app.core.dynamics import reference_description
from app.core.runtime import USER_ERRORS, gpu, image_file, picture, user_errors
from dmnet.presets import DATASETS

SCENES = Path(tempfile.gettempdir()) / "dmnet-explorer-scenes"  # true masks of generated scenes


@user_errors
@gpu
def load_model(key: str, progress: gr.Progress = gr.Progress(track_tqdm=True)) -> str:
    """Load a model (downloading an official one on first use) and describe it."""
    progress(0, desc="loading the model")
    model = models.get_model(key)
    runner(model)  # the optimized copy every pass runs on, made now rather than in a view
    p = model.preset
    notes = "".join(f"\n\n> {n}" for n in models.load_notes(key))
    published = f" · published mIoU {p.miou:.2f}" if p.miou else ""
    return (f"**{models.label_of(key)}** on {models.device_note()}  \n"
            f"preset `{p.name}`{published} · {p.num_classes} classes · filter sizes "
            f"{', '.join(map(str, p.filter_sizes))} · head width {p.head_channels}  \n"
            f"mean (static) filters over {reference_description(p.dataset)}{notes}")


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


def class_ids(key: str) -> str:
    """The legend of a true mask for this model: each class id, its colour and its name (a
    pixel of the PNG holds the id; 255 = ignore), in the model's own class order; a name cut
    by its column shows whole on hover."""
    preset = models.get_model(key).preset
    rows = "".join(
        f"<li title='{i}: {html.escape(name, quote=True)}'><code>{i}</code> <span "
        f"class='swatch' style='background:rgb{tuple(rgb)}'></span>{html.escape(name)}</li>"
        for i, (name, rgb) in enumerate(zip(preset.classes, preset.palette, strict=False)))
    return (f"A true mask is a single-channel PNG (grayscale or palette) whose pixels hold this "
            f"model's class ids; <code>255</code> = ignore (not scored). The "
            f"{len(preset.classes)} ids of <b>{html.escape(preset.dataset)}</b>:"
            f"<ol class='class-ids'>{rows}</ol>")


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
