"""The Compare A/B tab: the same filters generated for image A and image B, the part of each
that adapts to its image, and the filter transplant (run one image with the other's filters).
Lazy: it runs when its tab is open, once per A and B."""

from __future__ import annotations

import gradio as gr

from app.core.gates import ask_compare
from app.core.runtime import require_image
from app.core.widgets import image_input
from app.core.wiring import PRIVATE, QUIET, UNDOC, Graph, on
from app.core.words import PAPER, gloss
from app.views.compare.actions import (ALL_BRANCHES, TRANSPLANTS, channel_picker, compare,
                                       make_scene_b, transplant)
from app.views.sidebar.actions import require_demo

COMPARE = f"""**Adaptation, made visible.** Every generated filter is the sum of two parts:
the **mean** filter (the same for every image: its average over a fixed set of reference
images, named in the model's status line at the top left) and the **dynamic part** (what this
image changed). The panel shows the mean and A's and B's dynamic parts on one colour scale.
The two maps under it show what that channel responds to: its output over A and over B (after
the filter, BN and ReLU), on one colour scale, so a brighter map means a stronger response.

**How much does a filter change from A to B?** The mean is the same for both images, so the
change is the difference of the two dynamic parts, given as a percentage of the filter's size
(its norm): 0% = the same filter for both images, 50% = a change half as large as the filter
itself. The plot gives it for every channel of every branch, and the table names the channels
that change most. The **cosine** of the two dynamic parts comes second (in the plot's hover and
the table): 1 = A and B push the filter the same way, 0 = unrelated ways, −1 = opposite ways. It
says nothing of size: two dynamic parts near zero can have any cosine while the filter hardly
changes, which is why the channels are ranked by the change. For k = 1 the dynamic part is a
single number, so its cosine is only +1 or −1. The raw cosine (whole filters, mean included) is
near 1 for a model whose filters barely adapt: the mean hides the change.

Reference: {PAPER}."""
TRANSPLANT = """**Filter transplant: what do the adapted filters do?** Run image B with the filters
that DMNet generated for image A (in one branch, or in all of them), or the other way round.
Everything else is B's own: its features, its other branches. Pixels that change class (shown in
their new colour) were decided by the adaptation to the image. As a yardstick, the second
picture gives B with the *static* mean filters in the same branches: no adaptation at all. If
A's filters change many pixels, the filters really are specific to the image they came from."""


TABLE = ("branch", "mean change, % of a filter", "channels that change most (%)",
         "their dynamic cosines", "raw cosine", "dynamic cosine")


def create_compare() -> dict:
    with gr.Row():
        image_b = image_input("Image B (image A is the main image)", "input-image-b")
        with gr.Column():
            seed_b = gr.Number(label="scene seed for B", value=1, precision=0, minimum=0)
            scene_b = gr.Button("Generate scene B")
            branch = gr.Radio([1, 3, 5, 7], value=3, label="filter size k", elem_id="compare-k")
            channel = gr.Dropdown(label="channel (most input-dependent first)", choices=[],
                                  allow_custom_value=True, elem_id="compare-channel")
            run = gr.Button("Compare", variant="primary")
    with gr.Row():
        pred_a = gr.Image(label="A: prediction", interactive=False, height=250, format="jpeg")
        pred_b = gr.Image(label="B: prediction", interactive=False, height=250, format="jpeg")
        pair = gr.Plot(show_label=False, elem_id="compare-pair", scale=2)
    with gr.Row():
        act_a = gr.Plot(show_label=False, elem_id="compare-act-a")
        act_b = gr.Plot(show_label=False, elem_id="compare-act-b")
    lines = gr.Plot(show_label=False)
    table = gr.Dataframe(headers=list(TABLE), interactive=False, elem_id="compare-table")
    gr.Markdown(gloss(COMPARE), elem_classes="teach")
    return dict(image_b=image_b, seed_b=seed_b, scene_b=scene_b, branch=branch,
                channel=channel, run=run, pred_a=pred_a, pred_b=pred_b, pair=pair, lines=lines,
                table=table, act_a=act_a, act_b=act_b, **transplant_panel())


def transplant_panel() -> dict:
    gr.Markdown("### Filter transplant")
    with gr.Row():
        direction = gr.Radio(list(TRANSPLANTS), value=TRANSPLANTS[0], label="run",
                             elem_id="transplant-direction")
        where = gr.Radio([ALL_BRANCHES, "k=1", "k=3", "k=5", "k=7"], value=ALL_BRANCHES,
                         label="in", elem_id="transplant-branch")
        go = gr.Button("Transplant", variant="primary", elem_id="transplant-run")
    with gr.Row(elem_id="transplant-images"):
        own = gr.Image(label="its own filters", interactive=False, height=220, format="png")
        moved = gr.Image(label="the other image's filters", interactive=False, height=220,
                         format="png", elem_id="transplant-moved")
    with gr.Row():
        static = gr.Image(label="static (mean) filters: changed pixels", interactive=False,
                          height=220, format="png")
        changed = gr.Image(label="other image's filters: changed pixels", interactive=False,
                           height=220, format="png", elem_id="transplant-changed")
    summary = gr.Markdown(elem_id="transplant-summary")
    gr.Markdown(gloss(TRANSPLANT), elem_classes="teach")
    return dict(direction=direction, where=where, transplant=go,
                transplant_out=[own, static, moved, changed, summary])


def wire_compare(g: Graph, inp: dict, cmp: dict, tab, subject, tok) -> None:
    """Image A is the main image; B is uploaded or generated. Compare and its transplant run
    (lazily, once per A and B) when its tab is open; Compare, another filter size k (after its
    channel list is refreshed) or another channel re-run it; the transplant runs on its button
    and on another direction or branch. The channel list listens on `select` (a pick fires it
    once; `input` fires twice)."""
    cmp["outputs"] = [cmp["pred_a"], cmp["pred_b"], cmp["pair"], cmp["lines"], cmp["table"],
                      cmp["act_a"], cmp["act_b"]]
    model, image, image_b = inp["model"], inp["image"], cmp["image_b"]
    cmp_in = [model, image, image_b, cmp["branch"], cmp["channel"]]
    tp_in = [model, image, image_b, cmp["where"], cmp["direction"]]
    ask = [tab, subject, image_b]  # (the named events first: Gradio numbers a repeated name)
    made = g.heavy(cmp["scene_b"].click, make_scene_b, [cmp["seed_b"], model], [image_b],
                   **PRIVATE)
    g.fresh(made.success, ask_compare, ask, [tok])
    g.fresh(on(subject.change, tab.change), ask_compare, ask, [tok])
    g.fresh(image_b.input, ask_compare, ask, [tok])  # a user's B: apart (it resumes after Stop)
    g.heavy(cmp["run"].click, compare, cmp_in, cmp["outputs"], api_name="compare")
    g.heavy(cmp["transplant"].click, transplant, tp_in, cmp["transplant_out"],
            api_name="transplant")
    compared = g.heavy(tok.change, compare, cmp_in, cmp["outputs"], **UNDOC)
    g.heavy(compared.success, transplant, tp_in, cmp["transplant_out"], **UNDOC)
    listed = g.heavy(cmp["branch"].input, channel_picker,
                     [model, cmp["branch"], cmp["channel"]], [cmp["channel"]], **PRIVATE)
    for event in (listed.success, cmp["channel"].select):
        having_b = event(require_image, [image_b], None, **QUIET)
        g.heavy(having_b.success, compare, cmp_in, cmp["outputs"], **UNDOC)
    for event in (cmp["where"].input, cmp["direction"].input):
        having_b = event(require_image, [image_b], None, **QUIET)
        g.heavy(having_b.success, transplant, tp_in, cmp["transplant_out"], **UNDOC)


def wire_channels(g: Graph, inp: dict, cmp: dict, started, loads: list) -> None:
    """The channel list of the model in use: after its first load (`started`, the demo's only:
    an official model's ranking runs when Compare is first shown) and after each later load."""
    picker = [inp["model"], cmp["branch"], cmp["channel"]]
    g.heavy(started.success(require_demo, [inp["model"]], None, **QUIET).success,
            channel_picker, picker, [cmp["channel"]], **PRIVATE)
    for kept in loads:
        g.heavy(kept.success, channel_picker, picker, [cmp["channel"]], **PRIVATE)
