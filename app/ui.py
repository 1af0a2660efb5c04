"""The Gradio app: lays out `gr.Blocks` and wires events to `app.actions` / `app.experiments`.

Nothing is computed here. Every main action is a named API endpoint (see README, "The app").
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

import gradio as gr

from . import actions, hover, lesson, models, overlays, sweep_view, text
from .diagram import architecture_svg
from .events import wire
from .experiments import ABLATIONS, ALL_BRANCHES, PARTS, TRANSPLANTS
from .explain import ALL, EVERY_INPUT
from .images import list_examples

EXAMPLES_DIR = models.ROOT / "assets" / "examples"  # or $DMNET_EXAMPLES
CSS = """
.teach { font-size: 0.92em; background: var(--block-background-fill); padding: 4px 10px;
         border-radius: 8px; }
.col-head { text-align: center; font-weight: 600; }
/* The x column has no channel picker, filter or pooling grid: its text takes their height, so
   its activation maps and "removed" panel line up with those of the k columns. */
.skip-top { min-height: 627px; }
#attribution-map img, #ablation-changes img { image-rendering: pixelated; }
""" + "".join(  # the attribution legend's chips in their inputs' colours (after "every input")
    f"#attribution-legend label:nth-of-type({i + 2}) {{ background: {overlays.hex_color(c)} "
    f"!important; color: white !important; }}\n"
    for i, c in enumerate(overlays.PART_COLORS.values())) + """
/* Branches: x and the four k columns stay in one row; a narrow screen scrolls it sideways. */
div:has(> #column-x) { flex-wrap: nowrap !important; overflow-x: auto; gap: 8px; }
div:has(> #column-x) > .column { min-width: 170px !important; flex: 1 1 0 !important; }
div:has(> #column-x) > #column-x { min-width: 130px !important; flex: 0.7 1 0 !important; }
/* Long names: the model picker's text stops before its icon (the full name is under it and in
   a tooltip); options, gallery captions and legends wrap instead of being cut. */
#model-picker input { text-overflow: ellipsis; padding-right: 28px; }
ul.options li, ul[role=listbox] li { white-space: normal !important; }
.caption-label, .caption { white-space: normal !important; overflow: visible !important;
                           text-overflow: clip !important; max-width: 100% !important; }
/* During a lesson (class "following", set by lesson.SCROLL) the panel stays in view while its
   step scrolls the page to the view it explains; outside a lesson it covers nothing. Gradio's
   container hides its overflow, which makes it the scroll box a sticky element sticks to (and it
   never scrolls); clip cuts the same overflow without being a scroll box. */
.gradio-container { overflow: clip !important; }
#lesson-panel.following { position: sticky; top: 0; z-index: 60;
                          background: var(--background-fill-primary);
                          box-shadow: 0 2px 6px rgba(0, 0, 0, 0.08); }
#lesson { border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 6px; }
#lesson-step { min-height: 3em; }
#domain-note { color: var(--body-text-color); background: #fff4e5; border-radius: 8px; }
#domain-note:empty { display: none; }
/* "taps summed" reads only the ticks of k > 1 (experiments.parts_for): x and k=1 are hidden */
#ablation-parts.summed label:nth-of-type(-n+2) { display: none; }
"""
# Every plotly figure is resized whenever its box changes size: Gradio draws a plot when it
# mounts (a tab opening, a new value) and plotly then listens only to window resizes, so a plot
# mounted in a box that was still growing stayed squeezed until the next window resize.
PAGE_JS = """() => {
  const watch = new ResizeObserver((entries) => {
    for (const e of entries) {
      const plot = e.target.querySelector(".js-plotly-plot");
      if (plot && window.Plotly && e.contentRect.width > 0) window.Plotly.Plots.resize(plot);
    }
  });
  const seen = new WeakSet();
  const attach = () => document.querySelectorAll("[data-testid=plotly]").forEach((plot) => {
    const box = plot.parentElement;  // the plot's own width may be fixed by a first bad draw
    if (box && !seen.has(box)) { seen.add(box); watch.observe(box); }
  });
  new MutationObserver(attach).observe(document.body, {childList: true, subtree: true});
  attach();
  document.addEventListener("mouseover", (e) => {  // a tooltip with the full model name
    const t = e.target;
    if (t.matches && t.matches("#model-picker input")) t.title = t.value;
  });
}"""


@dataclass
class Column:
    """The components of one column of the Branches tab."""

    channel: gr.Dropdown | None
    plots: list[gr.Plot]
    removed: gr.Image  # what removing this input changes (`explain.removals`)
    removed_note: gr.Markdown

    @property
    def outputs(self) -> list:
        return [c for c in [self.channel, *self.plots] if c is not None]


def image_input(label: str, elem_id: str) -> gr.Image:
    """An image input (upload, webcam, clipboard) that hands the file over undecoded, so that
    `app.images.read_image` turns any bad file into a clear message. (An instance override,
    not a subclass: Gradio writes a .pyi stub next to every module that subclasses a component.)
    """
    image = gr.Image(label=label, type="filepath", image_mode=None, format="png", height=300,
                     sources=["upload", "webcam", "clipboard"], elem_id=elem_id)
    decode = image.preprocess

    def undecoded(payload):  # noqa: ANN001, ANN202 -- Gradio's FileData payload
        return payload.path if payload is not None and payload.path else decode(payload)

    image.preprocess = undecoded
    return image


def branch_column(name: str, k: int | None) -> Column:
    gr.Markdown(name, elem_classes="col-head")
    channel = None
    plots = []
    if k is None:
        gr.Markdown(text.SKIP_COLUMN, elem_classes=["teach", "skip-top"])
    else:
        channel = gr.Dropdown(label="channel (most input-dependent first)", choices=[],
                              allow_custom_value=True)
        plots += [gr.Plot(show_label=False), gr.Plot(show_label=False)]
    plots += [gr.Plot(show_label=False), gr.Plot(show_label=False)]
    key = "x" if k is None else k
    removed = gr.Image(label=f"without {name.split()[0]}", interactive=False,
                       height=220, format="png", elem_id=f"removed-{key}")
    return Column(channel, plots, removed, gr.Markdown(elem_id=f"removed-note-{key}"))


def build() -> gr.Blocks:
    rows = list_examples(os.environ.get("DMNET_EXAMPLES") or EXAMPLES_DIR)
    with gr.Blocks(title="DMNet Explorer", fill_width=True) as demo:
        gr.Markdown(text.INTRO)
        with gr.Row():
            with gr.Column(scale=1, min_width=300):
                inputs = input_panel(rows)
            with gr.Column(scale=4):
                page = lesson_panel()
                with gr.Tabs() as tabs:
                    with gr.Tab("Segmentation", id="segmentation") as tab_seg:
                        seg = segmentation_tab()
                    with gr.Tab("Branches", id="branches") as tab_br:
                        br = branches_tab()
                    with gr.Tab("Attribution & ablation", id="attribution") as tab_att:
                        att = attribution_tab()
                    with gr.Tab("Compare A/B", id="compare") as tab_cmp:
                        cmp = compare_tab()
                    with gr.Tab("Scale sweep", id="sweep") as tab_sw:
                        sw = sweep_tab()
                    with gr.Tab("About DMNet", id="about") as tab_about:
                        gr.HTML(architecture_svg(), elem_id="architecture")
                        gr.Markdown(text.ABOUT)
        tab = gr.State("segmentation")  # the open tab's id, for the views' gates and the address
        page.update(tabs=tabs, tab=tab, rows=rows, tab_items={
            "segmentation": tab_seg, "branches": tab_br, "attribution": tab_att,
            "compare": tab_cmp, "sweep": tab_sw, "about": tab_about})
        wire(demo, inputs, seg, br, att, cmp, sw, page)
    return demo


def lesson_panel() -> dict:
    """The Lesson (app/lesson.py): back / the step's words / next, above the tabs."""
    with gr.Accordion("Lesson: how DMNet works, step by step, on your image", open=True,
                      elem_id="lesson-panel"):
        with gr.Row(elem_id="lesson", equal_height=False):
            back = gr.Button("◀ Back", size="sm", scale=0, min_width=90, elem_id="lesson-back")
            words = gr.Markdown(lesson.page(0, models.DEMO, None), elem_id="lesson-step")
            forward = gr.Button("Next ▶", size="sm", scale=0, min_width=90, variant="primary",
                                elem_id="lesson-next")
    return dict(lesson_back=back, lesson_words=words, lesson_next=forward,
                lesson_step=gr.State(0),
                lesson_target=gr.Textbox(visible="hidden", elem_id="lesson-target"))


def input_panel(rows: list[tuple[str, str | None]]) -> dict:
    model = gr.Dropdown(label="Model", choices=models.choices(), value=models.DEMO,
                        allow_custom_value=True, elem_id="model-picker")  # uploads join later
    info = gr.Markdown(actions.model_status(), elem_id="model-info")
    with gr.Accordion("Model card: what this model learned, and how well", open=False,
                      elem_id="model-card-panel"):
        card = gr.Markdown(elem_id="model-card")
    in_use = gr.State(models.DEMO)  # the last model this session loaded (the picker returns to it)
    with gr.Row():
        stop = gr.Button("Stop loading / analysing", size="sm", variant="stop", elem_id="stop")
        copy = gr.Button("Copy link to this view", size="sm", elem_id="copy-link")
    link = gr.Textbox(visible="hidden", elem_id="link")  # the view's query string (app/urlstate.py)
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
    domain = gr.Markdown(elem_id="domain-note")  # out of the model's domain (app/card.py)
    notes = gr.Markdown(elem_id="input-notes")
    examples = None
    if rows:
        examples = gr.Examples([[i, m] for i, m in rows], inputs=[image, truth],
                               label="Examples")
    else:
        gr.Markdown("*No example images in `assets/examples/` yet: generate a scene.*")
    with gr.Group():
        seed = gr.Number(label="scene seed", value=0, precision=0, minimum=0)
        scale = gr.Slider(0.5, 2.0, value=1.0, step=0.25, label=actions.ZOOM_LABEL)
        scene = gr.Button("Generate a scene", variant="secondary")
    gr.Markdown(text.INPUTS, elem_classes="teach")
    return dict(model=model, info=info, in_use=in_use, ckpt=ckpt, image=image, truth=truth,
                truth_view=truth_view, notes=notes, seed=seed, scale=scale, scene=scene,
                examples=examples, stop=stop, card=card, copy=copy, link=link, domain=domain)


def segmentation_tab() -> dict:
    with gr.Row():
        with gr.Column(scale=3):
            overlay = gr.AnnotatedImage(label="prediction", height=480, show_legend=True,
                                        elem_id="overlay")
            with gr.Row():
                opacity = gr.Slider(0, 1, value=0.6, step=0.05, label="opacity",
                                    elem_id="opacity")
                highlight = gr.Dropdown(label="highlight class", choices=[actions.NO_HIGHLIGHT],
                                        value=actions.NO_HIGHLIGHT, elem_id="highlight")
        with gr.Column(scale=2):
            bars = gr.Plot(show_label=False, elem_id="class-bars")
            table = gr.Dataframe(headers=["class", "pixels %", "IoU %"], interactive=False,
                                 label="per class", elem_id="class-table")
    gr.Markdown(text.SEGMENT, elem_classes="teach")
    return dict(overlay=overlay, opacity=opacity, highlight=highlight, bars=bars, table=table)


def branches_tab() -> dict:
    with gr.Row():
        fused = gr.Image(label="fused prediction (all inputs)", interactive=False, height=260,
                         format="jpeg", scale=1)
        gr.Markdown(text.BRANCHES, elem_classes="teach")
    columns = {}
    with gr.Row(equal_height=False):
        for name, k in [("x (skip path)", None), *((f"k={k}", k) for k in actions.FILTER_SIZES)]:
            with gr.Column(min_width=200, elem_id=f"column-{'x' if k is None else k}"):
                columns[k] = branch_column(name, k)
    return dict(fused=fused, columns=columns)


def hover_readout(elem_id: str) -> gr.HTML:
    """Bars of the margin of the feature cell under the pointer (`app.hover`)."""
    return gr.HTML(f"<p class='hv-hint'>{hover.HINT}</p>", elem_id=elem_id, js_on_load=hover.JS,
                   css_template=hover.CSS, min_height=150)


def attribution_tab() -> dict:
    with gr.Row():
        with gr.Column(scale=3):
            dominance = gr.Image(label="which input decides each pixel (point at a pixel, or "
                                       "click it)", interactive=False, height=530, format="png",
                                 elem_id="attribution-map")
        with gr.Column(scale=2):
            readout = hover_readout("pixel-hover")
            bars = gr.Plot(show_label=False, elem_id="pixel-bars")
            legend = gr.Radio([EVERY_INPUT], value=EVERY_INPUT, elem_id="attribution-legend",
                              label="legend: click an input to see only the pixels it decides")
            opacity = gr.Slider(0, 1, value=0, step=0.05, elem_id="attribution-opacity",
                                label="image under the map: 0 = map only, 1 = image only")
            shown = gr.Radio([ALL], value=ALL, label="show only the pixels of class",
                             elem_id="attribution-class")
    table = gr.Dataframe(headers=["class", "pixels %", "x", "k=1", "k=3", "k=5", "k=7"],
                         interactive=False, elem_id="attribution-classes",
                         label="which input decides, per predicted class (% of its pixels)")
    point = gr.State(None)  # the clicked pixel, as fractions (x, y) of the image
    gr.Markdown("### Branch roles by object size", elem_id="roles")
    gr.Markdown(text.ROLES, elem_classes="teach")
    with gr.Row():
        with gr.Column(scale=3):
            roles_plot = gr.Plot(show_label=False, elem_id="roles-plot")
        with gr.Column(scale=2):
            roles_note = gr.Markdown(elem_id="roles-note")
    roles_table = gr.Dataframe(interactive=False, elem_id="roles-table",
                               label="per object size (from the true mask): pixel accuracy, "
                                     "and its change without each input (points)")
    with gr.Row():
        with gr.Column(scale=2):
            mode = gr.Radio(list(ABLATIONS), value="remove", label="ablation",
                            elem_id="ablation-mode")
            parts = gr.CheckboxGroup(list(PARTS), value=["k=7"],
                                     label="inputs of the bottleneck", elem_id="ablation-parts")
            run = gr.Button("Ablate", variant="primary")
            summary = gr.Markdown(elem_id="ablation-summary")
            changes_opacity = gr.Slider(0, 1, value=0.3, step=0.05,
                                        elem_id="ablation-opacity",
                                        label="image under the changes: 0 = changes only")
            changes_shown = gr.Radio([ALL], value=ALL, elem_id="ablation-class",
                                     label="show only the changes from or to class")
        with gr.Column(scale=3):
            changed = gr.Image(label="changed pixels (in their new class colour)",
                               interactive=False, height=530, format="png",
                               elem_id="ablation-changes")
            changes_readout = hover_readout("changes-hover")
    changes = gr.Dataframe(headers=["class", "before %", "after %", "Δ %", "IoU before %",
                                    "IoU after %"], interactive=False, label="per class")
    gr.Markdown(text.ATTRIBUTION, elem_classes="teach")
    return dict(dominance=dominance, legend=legend, opacity=opacity, shown=shown, point=point,
                bars=bars, readout=readout, table=table, roles_plot=roles_plot,
                roles_note=roles_note, roles_table=roles_table, mode=mode, parts=parts, run=run,
                summary=summary, changes_opacity=changes_opacity, changes_shown=changes_shown,
                changed=changed, changes_readout=changes_readout, changes=changes)


def compare_tab() -> dict:
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
    lines = gr.Plot(show_label=False)
    table = gr.Dataframe(headers=["branch", "raw cosine", "dynamic cosine",
                                  "mean per-channel cosine (dynamic)", "least similar channels"],
                         interactive=False)
    gr.Markdown(text.COMPARE, elem_classes="teach")
    return dict(image_b=image_b, seed_b=seed_b, scene_b=scene_b, branch=branch,
                channel=channel, run=run, pred_a=pred_a, pred_b=pred_b, pair=pair, lines=lines,
                table=table, **transplant_panel())


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
    gr.Markdown(text.TRANSPLANT, elem_classes="teach")
    return dict(direction=direction, where=where, transplant=go,
                transplant_out=[own, static, moved, changed, summary])


def sweep_tab() -> dict:
    with gr.Row():
        run = gr.Button("Run the scale sweep (0.5× … 2×)", variant="primary")
        stop = gr.Button("Stop", variant="stop")
    status = gr.Markdown()
    animation = gr.HTML(sweep_view.PLACEHOLDER, elem_id="sweep-animation",
                        js_on_load=sweep_view.JS, css_template=sweep_view.CSS, min_height=120)
    lines = gr.Plot(show_label=False)
    gr.Markdown(text.SWEEP, elem_classes="teach")
    return dict(run=run, stop=stop, status=status, animation=animation, lines=lines,
                swept=gr.State(None))  # the subject it last swept (`events.sweep_note`)


def max_upload_mb() -> int:
    """The largest upload accepted, in MB: `$DMNET_MAX_UPLOAD_MB`, else 1024 (an official R-101
    checkpoint is ~360 MB). Gradio streams uploads to temporary files, so size costs no memory."""
    value = os.environ.get("DMNET_MAX_UPLOAD_MB") or "1024"
    if not value.isdigit():
        raise SystemExit(f"DMNET_MAX_UPLOAD_MB must be a whole number of MB, not {value!r}")
    return int(value)


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
