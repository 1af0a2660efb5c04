"""The Attribution & ablation tab: which input of the bottleneck decides each pixel (a map, its
legend, a class filter, the margin of the pixel under the pointer), branch roles by object size,
and the ablation. Lazy: it runs when its tab is open, once per subject."""

from __future__ import annotations

import gradio as gr

from app.core import overlays
from app.core.gates import ask_ablation, gate, press_ablate
from app.core.wiring import PRIVATE, QUIET, UNDOC, Graph, on
from app.core.words import PAPER, gloss
from app.views.attribution import hover
from app.views.attribution.ablation import ABLATIONS, PARTS, ablate, check_ablation, parts_for
from app.views.attribution.explain import ALL, EVERY_INPUT, attribution, pick_pixel, roles

CSS = """
#attribution-map img, #ablation-changes img { image-rendering: pixelated; }
/* "taps summed" reads only the ticks of k > 1 (parts_for): x and k=1 are hidden */
#ablation-parts.summed label:nth-of-type(-n+2) { display: none; }
""" + "".join(  # the attribution legend's chips in their inputs' colours (after "every input")
    f"#attribution-legend label:nth-of-type({i + 2}) {{ background: {overlays.hex_color(c)} "
    f"!important; color: white !important; }}\n"
    for i, c in enumerate(overlays.PART_COLORS.values()))

ATTRIBUTION = f"""**Which input decides each pixel.** Before the classifier, DMNet adds up
what five inputs say about every pixel: the backbone features **x** and the four branches
**k = 1, 3, 5, 7**. For each pixel the network's vote for its class over the runner-up (the
*margin*) is exactly a sum of one term per input, plus a constant. The map colours each pixel by
the input with the largest term: the one that decided it. It is drawn at the resolution the
head works at (one square per feature cell, 1/8 of the input), in the inputs' own colours; the
slider puts the image under it, a click on an input in the legend shows only the pixels it
decides, the class buttons show only the pixels of one class, and the
table counts, for every class, which input decides its pixels. **Point at a pixel**: the bars
beside the map show each input's term for the cell under the pointer (framed on the map) as you
move; a click pins a cell (the plot below). A tall positive bar pushed the pixel towards its
class, a negative one pushed against it. Pointing at the changed pixels of an ablation says what
the cell was, what it became, and the terms it had (the removed inputs struck through).

**Ablation.** Remove inputs (or keep only some): their share is set to zero, as if the branch
had output nothing, and the rest of the head runs again. Changed pixels are shown in their new
class colour; the table lists each class's share before and after (and IoU with a true mask).
**Static filters** keeps every input but replaces each generated filter by its average over a
few reference images: the same network with ordinary filters that no longer adapt to the
image. What changes then is what adapting to *this* image does. **Taps summed** moves all the
taps of the ticked branches' k×k filters (k > 1) to the centre: each channel keeps its gain for
this image (the filter's sum), not its shape. Where the features are flat across the filter the
shape cannot matter (the output is the sum times the value), so the changes, if any, sit at
edges and textures: what the k×k layout adds.

How it is exact: the bottleneck is a 3×3 conv over the concatenation [x, k=1, k=3, k=5, k=7],
then BatchNorm, then ReLU. A conv is linear, so it splits into one conv per input; BatchNorm (in
evaluation) scales each channel and adds a shift once; for this image the ReLU's on/off pattern
is fixed, and the classifier is linear.

Reference: {PAPER}."""
ROLES = """**Which branch matters for large vs small objects.** With a true mask (a generated scene
or an example that has one), the objects of the image are sorted by size as in the model card:
tiny (under 1/16 of the image side), small (to 1/8), medium (to 1/4) and large. For each size the
left plot shows which input decides their pixels, the right one how much of their pixels stop
being right when one input is removed. An object is a connected patch of one class in the true
mask; its size is twice the largest distance from its centre to its edge."""


def hover_readout(elem_id: str) -> gr.HTML:
    """Bars of the margin of the feature cell under the pointer (`hover`)."""
    return gr.HTML(f"<p class='hv-hint'>{hover.HINT}</p>", elem_id=elem_id, js_on_load=hover.JS,
                   css_template=hover.CSS, min_height=150)


def create_attribution() -> dict:
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
    gr.Markdown(gloss(ROLES), elem_classes="teach")
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
    gr.Markdown(gloss(ATTRIBUTION), elem_classes="teach")
    return dict(dominance=dominance, legend=legend, opacity=opacity, shown=shown, point=point,
                bars=bars, readout=readout, table=table, roles_plot=roles_plot,
                roles_note=roles_note, roles_table=roles_table, mode=mode, parts=parts, run=run,
                summary=summary, changes_opacity=changes_opacity, changes_shown=changes_shown,
                changed=changed, changes_readout=changes_readout, changes=changes)


def wire_attribution(g: Graph, inp: dict, att: dict, tab, subject, tokens: dict) -> None:
    """The Attribution tab (lazy): the map, then branch roles; the ablation on its own gate
    (its key holds the mode and ticks) and its button. The map redraws at once when its opacity,
    class filter or legend changes; a click on the map picks the pixel whose margin the bars
    split. The ticks follow the mode (`parts_for`)."""
    att["outputs"] = [att["dominance"], att["shown"], att["table"], att["legend"], att["bars"],
                      att["readout"]]
    att["roles_outputs"] = [att["roles_table"], att["roles_plot"], att["roles_note"]]
    att["ablation_outputs"] = [att["changed"], att["changes"], att["summary"],
                               att["changes_shown"], att["changes_readout"]]
    model, image, truth = inp["model"], inp["image"], inp["truth"]
    att_in = [model, image, att["opacity"], att["shown"], att["point"], att["legend"]]
    abl_in = [model, image, truth, att["mode"], att["parts"], att["changes_opacity"],
              att["changes_shown"]]
    asked = [tab, subject, att["mode"], att["parts"]]
    tok, abl = tokens["attribution"], tokens["ablation"]
    g.fresh(on(subject.change, tab.change), gate("attribution", "attribution"), [tab, subject],
            [tok])
    drawn = g.heavy(tok.change, attribution, att_in, att["outputs"],
                    api_name="attribution")
    g.heavy(drawn.success, roles, [model, image, truth], att["roles_outputs"],
            api_name="roles")
    g.fresh(on(subject.change, tab.change), ask_ablation, asked, [abl])
    # queued: the message of a `queue=False` event's gr.Error never reaches the page
    pressed = g.fresh(att["run"].click, check_ablation, [att["mode"], att["parts"]],
                      [])
    g.fresh(pressed.success, press_ablate, asked, [abl])
    checked = abl.change(check_ablation, [att["mode"], att["parts"]], None, **QUIET)
    g.heavy(checked.success, ablate, abl_in, att["ablation_outputs"],
            api_name="ablate")
    g.heavy(on(att["opacity"].input, att["shown"].input, att["legend"].input),
            attribution, att_in, att["outputs"], **UNDOC)
    picked = g.heavy(att["dominance"].select, pick_pixel, att_in[:2], [att["point"]],
                     **PRIVATE)
    g.heavy(picked.success, attribution, att_in, att["outputs"], **UNDOC)
    redraw = gr.on([att["changes_opacity"].input, att["changes_shown"].input],
                   check_ablation, [att["mode"], att["parts"]], None, **QUIET)
    g.heavy(redraw.success, ablate, abl_in, att["ablation_outputs"], **UNDOC)
    att["mode"].change(parts_for, [att["mode"], att["parts"]], [att["parts"]],
                       **QUIET)
