"""Wiring of the app's events: which action runs on what, with which API name.

Named endpoints (`api_name`): load_model, upload_checkpoint, generate_scene, segment, branches,
branch_column, removals, attribution, roles, ablate, compare, transplant, sweep. Events that run
the network share one concurrency group (`HEAVY`), so users queue for the model instead of
overloading it. The same action wired to several triggers is named once and "undocumented"
elsewhere (Gradio would
otherwise number the names), so the named events are wired first.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from . import actions, card, experiments, explain, lesson, urlstate

HEAVY = dict(concurrency_id="model", concurrency_limit=2)  # events that run the network
QUIET = dict(queue=False, api_visibility="private")  # gates and UI-only helpers


@dataclass
class Chain:
    """segment -> branches -> attribution -> ablation, run whenever the image or model changes."""

    inp: dict
    seg: dict
    br: dict
    att: dict

    def __post_init__(self) -> None:
        inp, seg, br, att = self.inp, self.seg, self.br, self.att
        self.running: list = []  # events the Stop button cancels
        self.channels = [br["columns"][k].channel for k in actions.FILTER_SIZES]
        self.seg_in = [inp["model"], inp["image"], inp["truth"], seg["opacity"], seg["highlight"]]
        self.seg_out = [seg["overlay"], seg["highlight"], seg["bars"], seg["table"], inp["notes"]]
        self.br_out = [br["fused"]] + [c for col in br["columns"].values() for c in col.outputs]
        truth = [inp["model"], inp["image"], inp["truth"]]
        self.rm_in, self.roles_in = truth, truth
        self.rm_out = [c for col in br["columns"].values() for c in (col.removed,
                                                                     col.removed_note)]
        self.att_in = [inp["model"], inp["image"], att["opacity"], att["shown"], att["point"],
                       att["legend"]]
        self.att_out = [att["dominance"], att["shown"], att["table"], att["legend"], att["bars"],
                        att["readout"]]
        self.roles_out = [att["roles_table"], att["roles_plot"], att["roles_note"]]
        self.abl_in = [*truth, att["mode"], att["parts"], att["changes_opacity"],
                       att["changes_shown"]]
        self.abl_check = [att["mode"], att["parts"]]  # what `check_ablation` reads
        self.abl_out = [att["changed"], att["changes"], att["summary"], att["changes_shown"],
                        att["changes_readout"]]

    def after(self, event, named: bool = False):
        """Run the chain after `event` succeeds (and only while there is an image)."""
        def api(name: str) -> dict:
            return dict(api_name=name) if named else dict(api_visibility="undocumented")

        model, image = self.inp["model"], self.inp["image"]
        gate = event.success(actions.require_image, [image], None, **QUIET)
        gate.success(actions.true_mask, [model, image, self.inp["truth"]],
                     [self.inp["truth_view"]], api_visibility="private")
        segmented = gate.success(actions.segment, self.seg_in, self.seg_out, **HEAVY,
                                 **api("segment"))
        branched = segmented.success(actions.branches, [model, image, *self.channels],
                                     self.br_out, **HEAVY, **api("branches"))
        self.running += [segmented, branched]
        removed = branched.success(explain.removals, self.rm_in, self.rm_out, **HEAVY,
                                   **api("removals"))
        attributed = removed.success(explain.attribution, self.att_in, self.att_out, **HEAVY,
                                     **api("attribution"))
        return (attributed.success(explain.roles, self.roles_in, self.roles_out, **HEAVY,
                                   **api("roles"))
                .success(experiments.check_ablation, self.abl_check, None,
                         api_visibility="private")
                .success(experiments.ablate, self.abl_in, self.abl_out, **HEAVY,
                         api_visibility="undocumented"))


def wire(demo: gr.Blocks, inp: dict, seg: dict, br: dict, att: dict, cmp: dict, sw: dict,
         page: dict) -> None:
    chain = Chain(inp, seg, br, att)
    att["run"].click(experiments.check_ablation, chain.abl_check, None,
                     api_visibility="private").success(
        experiments.ablate, chain.abl_in, chain.abl_out, api_name="ablate", **HEAVY)
    wire_inputs(inp, chain)
    start = wire_page(demo, inp, att, cmp, page, chain)
    wire_models(start, inp, cmp, chain)
    wire_views(inp, seg, br, chain)
    wire_attribution(att, chain)
    wire_compare(inp, cmp)
    wire_sweep(inp, sw, chain)
    inp["stop"].click(None, None, None, cancels=chain.running, api_visibility="private")


def wire_inputs(inp: dict, chain: Chain) -> None:
    """A new image or mask (upload, paste, example, generated scene) re-runs the views."""
    image, truth = inp["image"], inp["truth"]
    inp["scene"].click(actions.make_scene, [inp["seed"], inp["scale"], inp["model"]],
                       [image, truth], api_name="generate_scene")
    # The mask's user events only: a generated scene sets image and mask, one run is enough.
    changed = gr.on([image.change, truth.upload, truth.clear], lambda: None, None, None, **QUIET)
    chain.after(changed, named=True)
    if inp["examples"] is not None:  # the change events of an example's values see no image yet
        chain.after(inp["examples"].load_input_event)


def wire_models(start, inp: dict, cmp: dict, chain: Chain) -> None:
    """Load the model on start (after the page has set the view of its address: `start`), on a
    pick and on an upload; an uploaded checkpoint joins the picker. A failed load says why once
    (its gr.Error) and the picker goes back to the model in use, so no other event runs on the
    failed key."""
    model, info, in_use = inp["model"], inp["info"], inp["in_use"]
    picker = [model, cmp["branch"], cmp["channel"]]
    loaded = start.then(actions.startup, [model], [info], api_visibility="private", **HEAVY)
    started = loaded.success(actions.refresh_choices, [model], [model, in_use], **QUIET)
    started.success(actions.zoom_slider, [model], [inp["scale"]], **QUIET)
    started.success(actions.require_demo, [model], None, **QUIET).success(
        experiments.channel_picker, picker, [cmp["channel"]], api_visibility="private", **HEAVY)
    # `select`, not `input`: Gradio 6.31's dropdown fires `input` twice per pick (two loads,
    # two messages on a failure); `select` fires once, and only on the user's pick.
    picked = model.select(actions.load_model, [model], [info], api_name="load_model", **HEAVY)
    uploaded = inp["ckpt"].upload(actions.upload_checkpoint, [inp["ckpt"]], [model],
                                  api_name="upload_checkpoint", **HEAVY)
    uploaded.failure(actions.back_to, [in_use], [model, info], api_visibility="private", **HEAVY)
    chain.running += [picked, uploaded]
    for load in (picked, uploaded.success(actions.load_model, [model], [info],
                                          api_visibility="undocumented", **HEAVY)):
        load.failure(actions.back_to, [in_use], [model, info], api_visibility="private", **HEAVY)
        kept = load.success(actions.refresh_choices, [model], [model, in_use], **QUIET)
        kept.success(actions.zoom_slider, [model], [inp["scale"]], **QUIET)
        kept.success(card.model_card_or_note, [model], [inp["card"]], api_visibility="private",
                     **HEAVY)
        kept.success(card.domain_note, [model, inp["image"]], [inp["domain"]],
                     api_visibility="private", **HEAVY)
        kept.success(experiments.channel_picker, picker, [cmp["channel"]],
                     api_visibility="private", **HEAVY)
        chain.after(kept)


def wire_views(inp: dict, seg: dict, br: dict, chain: Chain) -> None:
    """Re-draws from the cached analysis: opacity, highlighted class, one branch's channel.
    The opacity redraws on `input`: a drag and a number typed in its box both fire it (`release`
    fires for the box only when it loses focus); `always_last` drops the steps of a drag that a
    newer one overtook."""
    gr.on([seg["opacity"].input, seg["highlight"].input], actions.segment, chain.seg_in,
          chain.seg_out, trigger_mode="always_last", api_visibility="undocumented", **HEAVY)
    seg["overlay"].select(actions.select_class, None, [seg["highlight"]], **QUIET).then(
        actions.segment, chain.seg_in, chain.seg_out, api_visibility="undocumented", **HEAVY)
    for i, k in enumerate(actions.FILTER_SIZES):
        col = br["columns"][k]
        size = gr.Number(k, visible=False)
        col.channel.input(actions.branch_column, [inp["model"], inp["image"], size, col.channel],
                          col.outputs, api_name="branch_column" if i == 0 else None,
                          api_visibility="public" if i == 0 else "undocumented", **HEAVY)


def wire_attribution(att: dict, chain: Chain) -> None:
    """The attribution map and the ablation's changed pixels redraw at once when their opacity,
    class filter or (the map's) legend changes (`input`: a drag, a typed number, a pick); a
    click on the map picks the pixel whose margin the bars split."""
    gr.on([att["opacity"].input, att["shown"].input, att["legend"].input], explain.attribution,
          chain.att_in, chain.att_out, trigger_mode="always_last",
          api_visibility="undocumented", **HEAVY)
    att["dominance"].select(explain.pick_pixel, chain.att_in[:2], [att["point"]],
                            api_visibility="private").success(
        explain.attribution, chain.att_in, chain.att_out, api_visibility="undocumented",
        **HEAVY)
    gr.on([att["changes_opacity"].input, att["changes_shown"].input], experiments.check_ablation,
          chain.abl_check, None, trigger_mode="always_last", api_visibility="private").success(
        experiments.ablate, chain.abl_in, chain.abl_out, api_visibility="undocumented", **HEAVY)


def wire_compare(inp: dict, cmp: dict) -> None:
    """Image A is the main image; B is uploaded or generated. Compare, a new B, another filter
    size k (after its channel list is refreshed) or another channel re-run it while there is a B;
    the channel list listens on `select` (a pick fires it once; `input` fires twice). The
    transplant runs on its button, a new B (after Compare) and another direction or branch."""
    cmp["scene_b"].click(lambda seed, key: actions.make_scene(seed, 1.0, key)[0],
                         [cmp["seed_b"], inp["model"]], [cmp["image_b"]],
                         api_visibility="private")
    cmp_in = [inp["model"], inp["image"], cmp["image_b"], cmp["branch"], cmp["channel"]]
    cmp_out = [cmp["pred_a"], cmp["pred_b"], cmp["pair"], cmp["lines"], cmp["table"]]
    cmp["run"].click(experiments.compare, cmp_in, cmp_out, api_name="compare", **HEAVY)
    branch = cmp["branch"].change(experiments.channel_picker,
                                  [inp["model"], cmp["branch"], cmp["channel"]],
                                  [cmp["channel"]], api_visibility="private", **HEAVY)
    tp_in = [inp["model"], inp["image"], cmp["image_b"], cmp["where"], cmp["direction"]]
    tp_out = cmp["transplant_out"]
    cmp["transplant"].click(experiments.transplant, tp_in, tp_out, api_name="transplant",
                            **HEAVY)
    # a new B: its transplant too, once Compare has analysed it
    for event, then in ((cmp["image_b"].change, True), (branch.success, False),
                        (cmp["channel"].select, False)):
        compared = event(actions.require_image, [cmp["image_b"]], None, **QUIET).success(
            experiments.compare, cmp_in, cmp_out, api_visibility="undocumented", **HEAVY)
        if then:
            compared.success(experiments.transplant, tp_in, tp_out,
                             api_visibility="undocumented", **HEAVY)
    for event in (cmp["where"].input, cmp["direction"].input):
        event(actions.require_image, [cmp["image_b"]], None, **QUIET).success(
            experiments.transplant, tp_in, tp_out, api_visibility="undocumented", **HEAVY)


def wire_sweep(inp: dict, sw: dict, chain: Chain) -> None:
    """The sweep is a generator: it streams each scale, and Stop cancels it between scales."""
    swept = sw["run"].click(experiments.sweep,
                            [inp["model"], inp["image"], inp["truth"], *chain.channels],
                            [sw["animation"], sw["lines"], sw["status"]],
                            api_name="sweep", **HEAVY)
    sw["stop"].click(None, None, None, cancels=[swept], api_visibility="private")


def wire_page(demo: gr.Blocks, inp: dict, att: dict, cmp: dict, page: dict, chain: Chain):
    """The page's own events: the view of its address on load (the first example when there is
    none: the image's change runs the chain, so the first page is segmented with no click), the
    address kept up to date with what is on screen, "copy link", the model card, the notice for
    an image out of the model's domain, and the Lesson's next / back. Returns the load event."""
    model, image, tab = inp["model"], inp["image"], page["tab"]
    channels = chain.channels
    rows = page["rows"]
    view = [model, image, inp["truth"], inp["seed"], inp["scale"], page["tabs"], tab, *channels,
            cmp["branch"], cmp["channel"], att["mode"], att["parts"], att["legend"],
            att["opacity"], page["lesson_step"], cmp["image_b"], page["lesson_target"]]
    start = demo.load(urlstate.restorer(rows), None, view, **QUIET)
    start.then(None, [page["lesson_target"]], None, js=lesson.SCROLL, **QUIET)  # a step's link
    for tab_id, item in page["tab_items"].items():
        item.select(lambda t=tab_id: t, None, [tab], **QUIET)
    shown = [model, image, inp["seed"], inp["scale"], tab, *channels, cmp["branch"],
             cmp["channel"], att["mode"], att["parts"], att["legend"], att["opacity"],
             page["lesson_step"]]
    names = [r[0] for r in rows]
    def address(*values) -> str:  # the view's query string (computes nothing on the model)
        return urlstate.link(*values, examples=names)

    gr.on([c.change for c in shown], address, shown, [inp["link"]], **QUIET).then(
        None, [inp["link"]], None, js=urlstate.SHOW_LINK, **QUIET)
    inp["copy"].click(None, None, None, js=urlstate.COPY_LINK, **QUIET)
    forgot = image.upload(urlstate.forget_example_mask(rows), [inp["truth"]], [inp["truth"]],
                          **QUIET)
    chain.after(forgot)  # the run the image's change started still had the old mask
    # After a pick, the card and the domain notice follow the load (wire_models): a pick that
    # fails runs nothing on its key.
    start.then(card.model_card_or_note, [model], [inp["card"]], api_visibility="private", **HEAVY)
    image.change(card.domain_note, [model, image], [inp["domain"]], api_visibility="private",
                 **HEAVY)
    steps = [page["lesson_step"], page["lesson_words"], page["tabs"], tab,
             page["lesson_target"], cmp["image_b"], att["mode"], att["parts"]]
    for button, delta in ((page["lesson_next"], 1), (page["lesson_back"], -1)):
        went = button.click(lambda n, key, a, b, seed, d=delta: lesson.go(n, d, key, a, b, seed),
                            [page["lesson_step"], model, image, cmp["image_b"], cmp["seed_b"]],
                            steps, api_visibility="private", **HEAVY)
        went.then(None, [page["lesson_target"]], None, js=lesson.SCROLL, **QUIET)
        went.success(lesson.require_ablation_step, [page["lesson_step"]], None, **QUIET).success(
            experiments.ablate, chain.abl_in, chain.abl_out, api_visibility="undocumented",
            **HEAVY)
    image.change(lesson.page, [page["lesson_step"], model, image], [page["lesson_words"]],
                 api_visibility="private", **HEAVY)  # the step's numbers are the new image's
    return start
