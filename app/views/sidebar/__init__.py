"""The sidebar: the model (pick, upload, its card), Stop and the link, image A (upload, an
example, a generated scene) and its true mask. Its events make the page's *subject* (model,
image, mask): every view starts from it."""

from __future__ import annotations

import os

import gradio as gr

from app.core import models
from app.core.gates import own_image, require_subject, subject_of
from app.core.widgets import image_input
from app.core.wiring import PRIVATE, QUIET, UNDOC, Graph, on
from app.core.words import gloss
from app.views.sidebar.actions import (ZOOM_LABEL, back_to, class_ids, load_model, make_scene,
                                       model_status, refresh_choices, startup, true_mask,
                                       upload_checkpoint, zoom_slider)

CSS = """
/* Long names: the model picker's text stops before its icon (the full name is under it and in
   a tooltip). */
#model-picker input { text-overflow: ellipsis; padding-right: 28px; }
#domain-note { color: var(--body-text-color); background: #fff4e5; border-radius: 8px; }
#domain-note:empty { display: none; }
/* The legend of class ids: compact columns, scrolled on its own for 150 classes (ADE20K). */
#class-ids { font-size: 13px; }
#class-ids ol.class-ids { list-style: none; padding: 0; margin: 6px 0 0; columns: 2;
  max-height: 260px; overflow-y: auto; }
#class-ids li { break-inside: avoid; white-space: nowrap; overflow: hidden;
  text-overflow: ellipsis; }
#class-ids .swatch { display: inline-block; width: 10px; height: 10px; margin: 0 4px;
  border: 1px solid #8886; vertical-align: middle; }
"""

INPUTS = """Upload, paste or photograph an image, pick an example, or **generate a scene** from
ContextShapes, the demo model's synthetic data: pictures in a striped or a checked frame, and an
object's class is its shape *and* the frame ("disk, striped frame" is not "disk, checked
frame"). The frame is far from most objects, so the model must carry what it sees there to every
pixel: that is what DMNet's image-dependent filters do. Each scene has its own object size, and
colours do not give the class away. A generated scene comes with its **true mask**, so every
view can show where the prediction is right. (A model trained on other synthetic data,
MultiScaleShapes or PatternMatch, gets scenes of its own data; a model of a real dataset gets a
ContextShapes picture without a mask.)"""


def max_upload_mb() -> int:
    """The largest upload accepted, in MB: `$DMNET_MAX_UPLOAD_MB`, else 1024 (an official R-101
    checkpoint is ~360 MB). Gradio streams uploads to temporary files, so size costs no memory."""
    value = os.environ.get("DMNET_MAX_UPLOAD_MB") or "1024"
    if not value.isdigit():
        raise SystemExit(f"DMNET_MAX_UPLOAD_MB must be a whole number of MB, not {value!r}")
    return int(value)


def create_sidebar(rows: list[tuple[str, str | None]]) -> dict:
    model = gr.Dropdown(label="Model", choices=models.choices(), value=models.DEMO,
                        allow_custom_value=True, elem_id="model-picker")  # uploads join later
    info = gr.Markdown(model_status(), elem_id="model-info")
    with gr.Accordion("Model card: what this model learned, and how well", open=False,
                      elem_id="model-card-panel"):
        card = gr.Markdown(elem_id="model-card")
    in_use = gr.State(models.DEMO)  # the last model this session loaded (the picker returns to it)
    with gr.Row():
        stop = gr.Button("Stop loading / analysing", size="sm", variant="stop", elem_id="stop")
        copy = gr.Button("Copy link to this view", size="sm", elem_id="copy-link")
    link = gr.Textbox(visible="hidden", elem_id="link")  # the view's query string (app/urlstate.py)
    link_note = gr.Markdown(visible=False, elem_id="link-note")  # a link made with an upload
    with gr.Accordion(f"Upload a DMNet checkpoint (.pth, up to {max_upload_mb():,} MB)",
                      open=False):
        ckpt = gr.File(label="checkpoint", file_types=list(models.SUFFIXES), type="filepath",
                       elem_id="checkpoint")
        gr.Markdown("Larger files, or no upload: `python app.py --checkpoint PATH` lists "
                    "checkpoints on the server here (`DMNET_MAX_UPLOAD_MB` sets the limit).",
                    elem_classes="teach")
    image = image_input("Image", "input-image")
    truth_view = gr.Image(label="true mask", visible=False,
                          interactive=False, height=200, format="png", elem_id="true-mask")
    with gr.Accordion("True mask (optional: a PNG of class ids)", open=False):
        truth = gr.File(label="true mask", file_types=[".png"], type="filepath",
                        elem_id="true-mask-file")
        ids = gr.HTML(elem_id="class-ids")  # the legend of ids (`class_ids`), per model
    domain = gr.Markdown(elem_id="domain-note")  # out of the model's domain (views/about/card.py)
    notes = gr.Markdown(elem_id="input-notes")
    examples = None
    if rows:
        examples = gr.Examples([[i, m] for i, m in rows], inputs=[image, truth],
                               label="Examples")
    else:
        gr.Markdown("*No example images in `assets/examples/` yet: generate a scene.*")
    with gr.Group():
        seed = gr.Number(label="scene seed", value=0, precision=0, minimum=0)
        scale = gr.Slider(0.5, 2.0, value=1.0, step=0.25, label=ZOOM_LABEL)
        scene = gr.Button("Generate a scene", variant="secondary")
    gr.Markdown(gloss(INPUTS), elem_classes="teach")
    return dict(model=model, info=info, in_use=in_use, ckpt=ckpt, image=image, truth=truth,
                truth_view=truth_view, notes=notes, seed=seed, scale=scale, scene=scene,
                examples=examples, stop=stop, card=card, copy=copy, link=link, link_note=link_note,
                domain=domain, ids=ids)


def wire_subject(g: Graph, inp: dict, rows: list, subject) -> object:
    """A new subject (`subject`, a State) from the user's image, mask, an example or a generated
    scene. Returns the event of a new subject with an image (`ready`): the views that show every
    subject start after it."""
    model, image, truth = inp["model"], inp["image"], inp["truth"]
    found, made = [model, image, truth], [truth, subject]
    g.fresh(image.input, own_image(rows), found, made)
    g.fresh(on(truth.upload, truth.clear), subject_of, found, made)
    scene = g.heavy(inp["scene"].click, make_scene, [inp["seed"], inp["scale"], model],
                    [image, truth], api_name="generate_scene")
    g.fresh(scene.success, subject_of, found, made)
    if inp["examples"] is not None:
        g.fresh(inp["examples"].load_input_event.then, subject_of, found, made)
    return subject.change(require_subject, [subject], None, **QUIET)


def wire_truth(g: Graph, inp: dict, ready) -> None:
    """The true mask, shown under the image for every subject that has one."""
    g.heavy(ready.success, true_mask, [inp["model"], inp["image"], inp["truth"]],
            [inp["truth_view"]], **PRIVATE)


def wire_models(g: Graph, start, inp: dict, subject) -> tuple:
    """Load the model on start (after the page has set the view of its address: `start`), on a
    pick and on an upload; an uploaded checkpoint joins the picker. A failed load says why once
    (its gr.Error) and the picker goes back to the model in use, so no other event runs on the
    failed key. A model that loaded makes a new subject. Returns (the first load's event, the
    events of each later load) for the views that show the model itself."""
    model, info, in_use = inp["model"], inp["info"], inp["in_use"]
    found = [model, inp["image"], inp["truth"]]
    loaded = g.heavy(start.then, startup, [model], [info], **PRIVATE)
    started = loaded.success(refresh_choices, [model], [model, in_use], **QUIET)
    g.fresh(started.success, subject_of, found, [inp["truth"], subject])
    started.success(zoom_slider, [model], [inp["scale"]], **QUIET)
    started.success(class_ids, [model], [inp["ids"]], **QUIET)
    # `select`, not `input`: Gradio 6.31's dropdown fires `input` twice per pick (two loads,
    # two messages on a failure); `select` fires once, and only on the user's pick.
    picked = g.heavy(model.select, load_model, [model], [info], api_name="load_model")
    uploaded = g.heavy(inp["ckpt"].upload, upload_checkpoint, [inp["ckpt"]], [model],
                       api_name="upload_checkpoint")
    g.heavy(uploaded.failure, back_to, [in_use], [model, info], **PRIVATE)
    loads = [picked, g.heavy(uploaded.success, load_model, [model], [info], **UNDOC)]
    later = []
    for load in loads:
        g.heavy(load.failure, back_to, [in_use], [model, info], **PRIVATE)
        kept = load.success(refresh_choices, [model], [model, in_use], **QUIET)
        g.fresh(kept.success, subject_of, found, [inp["truth"], subject])
        kept.success(zoom_slider, [model], [inp["scale"]], **QUIET)
        kept.success(class_ids, [model], [inp["ids"]], **QUIET)
        later.append(kept)
    return started, later
