"""Wiring of the app's events: which action runs on what, with which API name.

The design (the generated table of every trigger -> action -> outputs: `app/EVENTS.md`,
`python -m app.graph`):

- **One subject.** The model in use, image A and its true mask make the *subject*, a
  `gr.State` written only by `subject_of` / `own_image` after a user's upload, an example, a
  generated scene, the page's address or a model load. Views start on the subject's `change`,
  which a State fires only when an event changed its value on the server: two triggers of one
  action start nothing twice. Nothing listens to a component's own `change` where Gradio fires
  it by itself: its Image fires it whenever its value object is replaced, with no new image
  (dozens of times a second under load), and a hidden Textbox that held the open tab fired it
  twice a second with no event writing it (seen under load); the open tab and the views'
  tokens are States too.
- **Lazy views** (`app/gates.py`). The Segmentation view (and the sidebar's mask, notices and
  lesson words) runs for every new subject. Branches, Attribution (and its ablation) and
  Compare run when their tab is open, once per subject (`flow.CLAIMS`), each through a *token*
  (a State) whose change starts its chain. The sweep never starts by itself: its status says
  when it shows another image.
- **Controls are the user's.** An event never writes a control's value back (only its
  choices, and a value only when the old one no longer exists); every model event passes
  through `flow.model_event`, where the freshest event of a browser tab wins each output.
- **Stop** cancels every model event of the tab (queued, and streaming ones between steps) and
  forgets the claims, so a view shown later runs again.

Named endpoints (`api_name`): load_model, upload_checkpoint, generate_scene, segment, branches,
branch_column, removals, attribution, roles, ablate, compare, transplant, sweep. Model events
share one concurrency group (`HEAVY`), so users queue for the model instead of overloading it.
"""

from __future__ import annotations

import gradio as gr

from . import actions, card, experiments, explain, lesson, urlstate
from .flow import freshest, model_event, started_by_user
from .gates import (ask_ablation, ask_compare, gate, opened, own_image, press_ablate,
                    remember_swept, require_subject, stop_all, subject_of, sweep_note)

HEAVY = dict(concurrency_id="model", concurrency_limit=2, trigger_mode="always_last")
QUIET = dict(queue=False, api_visibility="private")  # UI-only helpers that write no State
# Events that write a State (the subject, the open tab, a view's token): queued, as Gradio
# 6.31 fires a State's `change` only for queued events; a group of their own, unlimited, so
# they never wait for the model.
STATEFUL = dict(concurrency_id="page", concurrency_limit=None, show_progress="hidden",
                trigger_mode="always_last", api_visibility="private")
UNDOC = dict(api_visibility="undocumented")
PRIVATE = dict(api_visibility="private")


class Graph:
    """The model events of the page (Stop cancels them all) and the hidden triggers."""

    def __init__(self) -> None:
        self.running: list = []

    def fresh(self, trigger, fn, inputs: list, outputs: list, **kw):
        """An event that writes a State (`STATEFUL`), whose outputs a later-started one of the
        browser tab may own (`flow.freshest`); Stop cancels it too (a subject written after
        Stop would start every view again)."""
        guarded = freshest(fn, outputs)
        event = trigger(guarded, inputs, outputs, **{**STATEFUL, **kw})
        guarded.by_user = started_by_user(event)
        self.running.append(event)
        return event

    def heavy(self, trigger, fn, inputs: list, outputs: list, **kw):
        """A model event: `trigger(fn, inputs, outputs, ...)` with `fn` through `model_event`."""
        guarded = model_event(fn, outputs)
        event = trigger(guarded, inputs, outputs, **{**HEAVY, **kw})
        guarded.by_user = started_by_user(event)
        self.running.append(event)
        return event


def on(*triggers):
    """A trigger for `Graph.heavy` made of several events (`gr.on`)."""
    return lambda fn, inputs, outputs, **kw: gr.on(list(triggers), fn, inputs, outputs, **kw)


# --- wiring ---------------------------------------------------------------------------------------

def wire(demo: gr.Blocks, inp: dict, seg: dict, br: dict, att: dict, cmp: dict, sw: dict,
         page: dict) -> None:
    g = Graph()
    # States: their `change` fires when an event changed their value on the server, never by
    # itself (a hidden Textbox's did, re-mounted in the page: a loop of the views' gates)
    subject = gr.State("")
    tokens = {view: gr.State("") for view in ("branches", "attribution", "ablation", "compare")}
    columns = [br["columns"][k] for k in actions.FILTER_SIZES]
    seg["outputs"] = [seg["overlay"], seg["highlight"], seg["bars"], seg["table"], inp["notes"]]
    br["outputs"] = [br["fused"], *(c for col in br["columns"].values() for c in col.outputs)]
    br["removed"] = [c for col in br["columns"].values() for c in (col.removed, col.removed_note)]
    page["channels"] = [col.channel for col in columns]
    att["outputs"] = [att["dominance"], att["shown"], att["table"], att["legend"], att["bars"],
                      att["readout"]]
    att["roles_outputs"] = [att["roles_table"], att["roles_plot"], att["roles_note"]]
    att["ablation_outputs"] = [att["changed"], att["changes"], att["summary"],
                               att["changes_shown"], att["changes_readout"]]
    cmp["outputs"] = [cmp["pred_a"], cmp["pred_b"], cmp["pair"], cmp["lines"], cmp["table"]]
    start = wire_page(g, demo, inp, att, cmp, page, subject)
    wire_subject(g, inp, seg, page, subject, sw)
    wire_models(g, start, inp, cmp, subject)
    wire_segmentation(g, inp, seg)
    wire_branches(g, inp, br, page["tab"], subject, tokens["branches"])
    wire_attribution(g, inp, att, page["tab"], subject, tokens)
    wire_compare(g, inp, cmp, page["tab"], subject, tokens["compare"])
    wire_lesson(g, inp, att, cmp, page, subject, tokens)
    wire_sweep(g, inp, sw, page["channels"], subject)
    inp["stop"].click(stop_all, None, None, cancels=g.running, **QUIET)


def wire_subject(g: Graph, inp: dict, seg: dict, page: dict, subject, sw: dict) -> None:
    """A new subject: the Segmentation view and the sidebar's mask, notices and lesson words."""
    model, image, truth = inp["model"], inp["image"], inp["truth"]
    found, made = [model, image, truth], [truth, subject]
    g.fresh(image.input, own_image(page["rows"]), found, made)
    g.fresh(on(truth.upload, truth.clear), subject_of, found, made)
    scene = g.heavy(inp["scene"].click, actions.make_scene, [inp["seed"], inp["scale"], model],
                    [image, truth], api_name="generate_scene")
    g.fresh(scene.success, subject_of, found, made)
    if inp["examples"] is not None:
        g.fresh(inp["examples"].load_input_event.then, subject_of, found, made)
    ready = subject.change(require_subject, [subject], None, **QUIET)
    g.heavy(ready.success, actions.segment, [*found, seg["opacity"], seg["highlight"]],
            seg["outputs"], api_name="segment")
    g.heavy(ready.success, actions.true_mask, found, [inp["truth_view"]], **PRIVATE)
    ready.success(actions.overlay_colors, [model], [seg["overlay"]], **QUIET)  # not a ticket
    g.heavy(ready.success, card.domain_note, [model, image], [inp["domain"]], **PRIVATE)
    # one writer of the step's words, serialized (`always_last`): the newest step and image
    g.heavy(on(subject.change, page["lesson_step"].change), lesson.page,
            [page["lesson_step"], model, image], [page["lesson_words"]], **PRIVATE)
    subject.change(sweep_note, [subject, sw["swept"]], [sw["status"]], **QUIET)


def wire_models(g: Graph, start, inp: dict, cmp: dict, subject) -> None:
    """Load the model on start (after the page has set the view of its address: `start`), on a
    pick and on an upload; an uploaded checkpoint joins the picker. A failed load says why once
    (its gr.Error) and the picker goes back to the model in use, so no other event runs on the
    failed key. A model that loaded makes a new subject."""
    model, info, in_use = inp["model"], inp["info"], inp["in_use"]
    found = [model, inp["image"], inp["truth"]]
    picker = [model, cmp["branch"], cmp["channel"]]
    loaded = g.heavy(start.then, actions.startup, [model], [info], **PRIVATE)
    started = loaded.success(actions.refresh_choices, [model], [model, in_use], **QUIET)
    g.fresh(started.success, subject_of, found, [inp["truth"], subject])
    started.success(actions.zoom_slider, [model], [inp["scale"]], **QUIET)
    g.heavy(started.success(actions.require_demo, [model], None, **QUIET).success,
            experiments.channel_picker, picker, [cmp["channel"]], **PRIVATE)
    g.heavy(start.then, card.model_card_or_note, [model], [inp["card"]], **PRIVATE)
    # `select`, not `input`: Gradio 6.31's dropdown fires `input` twice per pick (two loads,
    # two messages on a failure); `select` fires once, and only on the user's pick.
    picked = g.heavy(model.select, actions.load_model, [model], [info], api_name="load_model")
    uploaded = g.heavy(inp["ckpt"].upload, actions.upload_checkpoint, [inp["ckpt"]], [model],
                       api_name="upload_checkpoint")
    g.heavy(uploaded.failure, actions.back_to, [in_use], [model, info], **PRIVATE)
    loads = [picked, g.heavy(uploaded.success, actions.load_model, [model], [info], **UNDOC)]
    for load in loads:
        g.heavy(load.failure, actions.back_to, [in_use], [model, info], **PRIVATE)
        kept = load.success(actions.refresh_choices, [model], [model, in_use], **QUIET)
        g.fresh(kept.success, subject_of, found, [inp["truth"], subject])
        kept.success(actions.zoom_slider, [model], [inp["scale"]], **QUIET)
        g.heavy(kept.success, card.model_card_or_note, [model], [inp["card"]], **PRIVATE)
        g.heavy(kept.success, experiments.channel_picker, picker, [cmp["channel"]], **PRIVATE)


def wire_segmentation(g: Graph, inp: dict, seg: dict) -> None:
    """Re-draws from the cached pass: opacity, highlighted class (picked, or clicked in the
    overlay or its legend). The opacity redraws on `input`: a drag and a number typed in its box
    both fire it; `always_last` drops the steps of a drag that a newer one overtook."""
    seg_in = [inp["model"], inp["image"], inp["truth"], seg["opacity"], seg["highlight"]]
    g.heavy(on(seg["opacity"].input, seg["highlight"].input), actions.segment, seg_in,
            seg["outputs"], **UNDOC)
    clicked = seg["overlay"].select(actions.select_class, None, [seg["highlight"]], **QUIET)
    g.heavy(clicked.then, actions.segment, seg_in, seg["outputs"], **UNDOC)


def wire_branches(g: Graph, inp: dict, br: dict, tab, subject, tok) -> None:
    """The Branches tab (lazy): the columns, then what removing each input changes; one
    column's channel redraws that column."""
    model, image = inp["model"], inp["image"]
    channels = [br["columns"][k].channel for k in actions.FILTER_SIZES]
    g.fresh(on(subject.change, tab.change), gate("branches", "branches"), [tab, subject], [tok])
    branched = g.heavy(tok.change, actions.branches, [model, image, *channels], br["outputs"],
                       api_name="branches")
    g.heavy(branched.success, explain.removals, [model, image, inp["truth"]], br["removed"],
            api_name="removals")
    for i, k in enumerate(actions.FILTER_SIZES):
        col = br["columns"][k]
        size = gr.Number(k, visible=False)
        g.heavy(col.channel.input, actions.branch_column, [model, image, size, col.channel],
                col.outputs, **(dict(api_name="branch_column") if i == 0 else UNDOC))


def wire_attribution(g: Graph, inp: dict, att: dict, tab, subject, tokens: dict) -> None:
    """The Attribution tab (lazy): the map, then branch roles; the ablation on its own gate
    (its key holds the mode and ticks) and its button. The map redraws at once when its opacity,
    class filter or legend changes; a click on the map picks the pixel whose margin the bars
    split. The ticks follow the mode (`experiments.parts_for`)."""
    model, image, truth = inp["model"], inp["image"], inp["truth"]
    att_in = [model, image, att["opacity"], att["shown"], att["point"], att["legend"]]
    abl_in = [model, image, truth, att["mode"], att["parts"], att["changes_opacity"],
              att["changes_shown"]]
    asked = [tab, subject, att["mode"], att["parts"]]
    tok, abl = tokens["attribution"], tokens["ablation"]
    g.fresh(on(subject.change, tab.change), gate("attribution", "attribution"), [tab, subject],
            [tok])
    drawn = g.heavy(tok.change, explain.attribution, att_in, att["outputs"],
                    api_name="attribution")
    g.heavy(drawn.success, explain.roles, [model, image, truth], att["roles_outputs"],
            api_name="roles")
    g.fresh(on(subject.change, tab.change), ask_ablation, asked, [abl])
    # queued: the message of a `queue=False` event's gr.Error never reaches the page
    pressed = g.fresh(att["run"].click, experiments.check_ablation, [att["mode"], att["parts"]],
                      [])
    g.fresh(pressed.success, press_ablate, asked, [abl])
    checked = abl.change(experiments.check_ablation, [att["mode"], att["parts"]], None, **QUIET)
    g.heavy(checked.success, experiments.ablate, abl_in, att["ablation_outputs"],
            api_name="ablate")
    g.heavy(on(att["opacity"].input, att["shown"].input, att["legend"].input),
            explain.attribution, att_in, att["outputs"], **UNDOC)
    picked = g.heavy(att["dominance"].select, explain.pick_pixel, att_in[:2], [att["point"]],
                     **PRIVATE)
    g.heavy(picked.success, explain.attribution, att_in, att["outputs"], **UNDOC)
    redraw = gr.on([att["changes_opacity"].input, att["changes_shown"].input],
                   experiments.check_ablation, [att["mode"], att["parts"]], None, **QUIET)
    g.heavy(redraw.success, experiments.ablate, abl_in, att["ablation_outputs"], **UNDOC)
    att["mode"].change(experiments.parts_for, [att["mode"], att["parts"]], [att["parts"]],
                       **QUIET)


def wire_lesson(g: Graph, inp: dict, att: dict, cmp: dict, page: dict, subject,
                tokens: dict) -> None:
    """Next / Back: the step's words, its tab and element, its image B or ablation settings;
    the gates of the views it opens then run them, once."""
    tab = page["tab"]
    steps = [page["lesson_step"], page["tabs"], tab,
             page["lesson_target"], cmp["image_b"], att["mode"], att["parts"]]
    for button, delta in ((page["lesson_next"], 1), (page["lesson_back"], -1)):
        asked = [page["lesson_step"], inp["model"], inp["image"], cmp["image_b"], cmp["seed_b"]]
        went = g.heavy(button.click, lesson.stepper(delta), asked, steps, **PRIVATE)
        went.then(None, [page["lesson_target"]], None, js=lesson.SCROLL, **QUIET)
        g.fresh(went.success, ask_ablation, [tab, subject, att["mode"], att["parts"]],
              [tokens["ablation"]])
        g.fresh(went.success, ask_compare, [tab, subject, cmp["image_b"]], [tokens["compare"]])


def wire_compare(g: Graph, inp: dict, cmp: dict, tab, subject, tok) -> None:
    """Image A is the main image; B is uploaded or generated. Compare and its transplant run
    (lazily, once per A and B) when its tab is open; Compare, another filter size k (after its
    channel list is refreshed) or another channel re-run it; the transplant runs on its button
    and on another direction or branch. The channel list listens on `select` (a pick fires it
    once; `input` fires twice)."""
    model, image, image_b = inp["model"], inp["image"], cmp["image_b"]
    cmp_in = [model, image, image_b, cmp["branch"], cmp["channel"]]
    tp_in = [model, image, image_b, cmp["where"], cmp["direction"]]
    ask = [tab, subject, image_b]  # (the named events first: Gradio numbers a repeated name)
    made = g.heavy(cmp["scene_b"].click, actions.make_scene_b, [cmp["seed_b"], model], [image_b],
                   **PRIVATE)
    g.fresh(made.success, ask_compare, ask, [tok])
    g.fresh(on(subject.change, tab.change), ask_compare, ask, [tok])
    g.fresh(image_b.input, ask_compare, ask, [tok])  # a user's B: apart (it resumes after Stop)
    g.heavy(cmp["run"].click, experiments.compare, cmp_in, cmp["outputs"], api_name="compare")
    g.heavy(cmp["transplant"].click, experiments.transplant, tp_in, cmp["transplant_out"],
            api_name="transplant")
    compared = g.heavy(tok.change, experiments.compare, cmp_in, cmp["outputs"], **UNDOC)
    g.heavy(compared.success, experiments.transplant, tp_in, cmp["transplant_out"], **UNDOC)
    listed = g.heavy(cmp["branch"].input, experiments.channel_picker,
                     [model, cmp["branch"], cmp["channel"]], [cmp["channel"]], **PRIVATE)
    for event in (listed.success, cmp["channel"].select):
        having_b = event(actions.require_image, [image_b], None, **QUIET)
        g.heavy(having_b.success, experiments.compare, cmp_in, cmp["outputs"], **UNDOC)
    for event in (cmp["where"].input, cmp["direction"].input):
        having_b = event(actions.require_image, [image_b], None, **QUIET)
        g.heavy(having_b.success, experiments.transplant, tp_in, cmp["transplant_out"], **UNDOC)


def wire_sweep(g: Graph, inp: dict, sw: dict, channels: list, subject) -> None:
    """The sweep is a generator: it streams each scale; Stop cancels it between scales. It
    remembers the subject it swept, so a new image marks it as showing an earlier one."""
    began = g.fresh(sw["run"].click, remember_swept, [subject], [sw["swept"]])
    swept = g.heavy(began.then, experiments.sweep,
                    [inp["model"], inp["image"], inp["truth"], *channels],
                    [sw["animation"], sw["lines"], sw["status"]], api_name="sweep")
    sw["stop"].click(None, None, None, cancels=[swept], **QUIET)


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
            att["opacity"], page["lesson_step"], cmp["image_b"], page["lesson_target"]]
    start = demo.load(urlstate.restorer(rows), None, view, **QUIET)
    start.then(None, [page["lesson_target"]], None, js=lesson.SCROLL, **QUIET)  # a step's link
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
    return start
