"""The page: assembles the views (sidebar, Lesson, six tabs), the subject and the open tab they
share, Stop, and the page's address; serves it (`launch`, `python app.py`). Nothing is computed
here. Every main action is a named API endpoint (see README, "The app")."""

from __future__ import annotations

import argparse
import os

import gradio as gr

from app import urlstate
from app.core import models
from app.core.gates import opened, stop_all
from app.core.images import list_examples
from app.core.runtime import FILTER_SIZES
from app.core.wiring import QUIET, Graph
from app.core.words import PAPER
from app.style import CSS, PAGE_JS
from app.views import about, attribution, branches, compare, lesson, segmentation, sidebar, sweep
from app.views.lesson.steps import SCROLL
from app.views.sidebar import max_upload_mb

EXAMPLES_DIR = models.ROOT / "assets" / "examples"  # or $DMNET_EXAMPLES
INTRO = f"""# DMNet Explorer
How DMNet's **dynamic multi-scale filters** adapt to *your* image. For each filter size k, DMNet
pools the image's features to k×k, turns the pooled map into one k×k filter per channel, and
convolves the features with those filters. The filters are computed from the image: a different
image gets different filters. — {PAPER}"""


def build() -> gr.Blocks:
    """The page: the sidebar beside the Lesson and the tabs, each laid out by its view."""
    rows = list_examples(os.environ.get("DMNET_EXAMPLES") or EXAMPLES_DIR)
    with gr.Blocks(title="DMNet Explorer", fill_width=True) as demo:
        gr.Markdown(INTRO)
        with gr.Row():
            with gr.Column(scale=1, min_width=300):
                inputs = sidebar.create_sidebar(rows)
            with gr.Column(scale=4):
                page = lesson.create_lesson()
                with gr.Tabs() as tabs:
                    with gr.Tab("Segmentation", id="segmentation") as tab_seg:
                        seg = segmentation.create_segmentation()
                    with gr.Tab("Branches", id="branches") as tab_br:
                        br = branches.create_branches()
                    with gr.Tab("Attribution & ablation", id="attribution") as tab_att:
                        att = attribution.create_attribution()
                    with gr.Tab("Compare A/B", id="compare") as tab_cmp:
                        cmp = compare.create_compare()
                    with gr.Tab("Scale sweep", id="sweep") as tab_sw:
                        sw = sweep.create_sweep()
                    with gr.Tab("About DMNet", id="about") as tab_about:
                        about.create_about()
        tab = gr.State("segmentation")  # the open tab's id, for the views' gates and the address
        page.update(tabs=tabs, tab=tab, rows=rows, tab_items={
            "segmentation": tab_seg, "branches": tab_br, "attribution": tab_att,
            "compare": tab_cmp, "sweep": tab_sw, "about": tab_about})
        wire(demo, inputs, seg, br, att, cmp, sw, page)
    return demo


def wire(demo: gr.Blocks, inp: dict, seg: dict, br: dict, att: dict, cmp: dict, sw: dict,
         page: dict) -> None:
    """Each view wires its own events, over what they share: the subject, the open tab, the
    views' tokens (States: their `change` fires only when an event changed their value on the
    server) and Stop. The order is the order of the listeners of one trigger, which Gradio's
    page runs one after another: the quick gates of the lazy views before the Lesson's words."""
    g = Graph()
    subject = gr.State("")
    tokens = {view: gr.State("") for view in ("branches", "attribution", "ablation", "compare")}
    tab = page["tab"]
    page["channels"] = [br["columns"][k].channel for k in FILTER_SIZES]
    start = wire_page(g, demo, inp, att, cmp, page, subject)
    ready = sidebar.wire_subject(g, inp, page["rows"], subject)
    started, loads = sidebar.wire_models(g, start, inp, subject)
    segmentation.wire_segmentation(g, inp, seg, ready)
    sidebar.wire_truth(g, inp, ready)
    about.wire_about(g, inp, start, loads, ready)
    compare.wire_channels(g, inp, cmp, started, loads)
    branches.wire_branches(g, inp, br, tab, subject, tokens["branches"])
    attribution.wire_attribution(g, inp, att, tab, subject, tokens)
    compare.wire_compare(g, inp, cmp, tab, subject, tokens["compare"])
    sweep.wire_sweep(g, inp, sw, page["channels"], subject)
    lesson.wire_lesson(g, inp, att, cmp, page, subject, tokens)
    inp["stop"].click(stop_all, None, None, **QUIET)


def wire_page(g: Graph, demo: gr.Blocks, inp: dict, att: dict, cmp: dict, page: dict, subject):
    """The page's own events: the view of its address on load (the first example when there is
    none; the model's load then makes the subject, so the first page is segmented with no
    click), the address kept up to date with what is on screen, "copy link" and the tabs.
    Returns the load event."""
    model, image, tab = inp["model"], inp["image"], page["tab"]
    channels = page["channels"]
    rows = page["rows"]
    view = [model, image, inp["truth"], inp["seed"], inp["scale"], page["tabs"], tab, *channels,
            cmp["branch"], cmp["channel"], att["mode"], att["parts"], att["legend"],
            att["opacity"], page["lesson_step"], cmp["image_b"], page["lesson_target"],
            inp["link_note"]]
    start = demo.load(urlstate.restorer(rows), None, view, **QUIET)
    start.then(None, [page["lesson_target"]], None, js=SCROLL, **QUIET)  # a step's link
    for tab_id, item in page["tab_items"].items():
        g.fresh(item.select, opened(tab_id), [], [tab])
    shown = [model, image, inp["seed"], inp["scale"], tab, *channels, cmp["branch"],
             cmp["channel"], att["mode"], att["parts"], att["legend"], att["opacity"],
             page["lesson_step"]]
    names = [r[0] for r in rows]

    def address(*values) -> str:  # the view's query string (computes nothing on the model)
        return urlstate.link(*values, examples=names)

    # the image's own `change` is not a new image (see the module's docstring): the subject is
    triggers = [subject.change, *(c.change for c in shown if c is not image)]
    gr.on(triggers, address, shown, [inp["link"]], **QUIET).then(
        None, [inp["link"]], None, js=urlstate.SHOW_LINK, **QUIET)
    inp["copy"].click(None, None, None, js=urlstate.COPY_LINK, **QUIET)
    image.input(lambda: gr.Markdown(visible=False), None, [inp["link_note"]], **QUIET)
    return start


def launch(argv: list[str] | None = None) -> None:
    """Serve the app: `python app.py [--checkpoint PATH ...]`. Host and port from
    GRADIO_SERVER_NAME / GRADIO_SERVER_PORT."""
    parser = argparse.ArgumentParser(description="Serve DMNet Explorer.")
    parser.add_argument("--checkpoint", nargs="+", default=[], metavar="PATH",
                        help="checkpoint files, or folders of them, to offer in the model picker "
                             "(read when picked); $DMNET_CHECKPOINTS names one more")
    args = parser.parse_args(argv)
    models.add_local([*args.checkpoint, *filter(None, [os.environ.get("DMNET_CHECKPOINTS")])])
    demo = build()
    demo.queue(default_concurrency_limit=2, max_size=64)
    demo.launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
                theme=gr.themes.Soft(), css=CSS, js=PAGE_JS, max_file_size=f"{max_upload_mb()}mb")
