"""The Scale sweep tab: the model input resized from 0.5x to 2x, streamed one scale at a time
(its Stop ends it at once; the scales shown stay): the filters and the prediction at each
scale, played back by `player`, and how much they move. It never starts by itself: its status
says when it shows an earlier image."""

from __future__ import annotations

import os

import gradio as gr
import numpy as np

from app.core import overlays
from app.core.analysis import frame_of, sweep_frame
from app.core.dynamics import dynamic_part
from app.core.figures import sweep_lines
from app.core.filters import bank_cosine
from app.core.gates import remember_swept, stop_sweep, sweep_note
from app.core.metrics import mean_iou
from app.core.runtime import gpu, ranking, release_memory, see, user_errors, valid_channel
from app.core.wiring import QUIET, Graph
from app.core.words import PAPER, gloss
from app.views.sweep import player
from app.views.sweep.player import Frame, Panel, sweep_html

SWEEP = f"""**Scale sweep.** The model input (the image at the model's test scale, exactly as the
Segmentation tab feeds it) is resized from 0.5× to 2×, so objects really appear smaller or
larger. The pooled context changes with the scale, so the generated filters change. Move the
slider (or press ▶) to step through the scales: the prediction, and for each branch the chosen
channel (from the Branches tab) as its mean filter and its dynamic part at that scale, with the
cosine of that scale's dynamic part to the one at 1×. The line plots give the same cosine for
every branch and how many pixels keep their 1× class (and the mIoU against a true mask). Stop
ends the sweep at once; the scales it showed stay.

Reference: {PAPER}."""
SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0)


def create_sweep() -> dict:
    with gr.Row():
        run = gr.Button("Run the scale sweep (0.5× … 2×)", variant="primary")
        stop = gr.Button("Stop", variant="stop")
    status = gr.Markdown()
    animation = gr.HTML(player.PLACEHOLDER, elem_id="sweep-animation",
                        js_on_load=player.JS, css_template=player.CSS, min_height=120)
    lines = gr.Plot(show_label=False)
    gr.Markdown(gloss(SWEEP), elem_classes="teach")
    return dict(run=run, stop=stop, status=status, animation=animation, lines=lines,
                swept=gr.State(None))  # the subject it last swept (`events.sweep_note`)


def wire_sweep(g: Graph, inp: dict, sw: dict, channels: list, subject) -> None:
    """The sweep is a generator: it streams each scale; its Stop ends it at once. It
    remembers the subject it swept, so a new image marks it as showing an earlier one."""
    subject.change(sweep_note, [subject, sw["swept"]], [sw["status"]], **QUIET)
    began = g.fresh(sw["run"].click, remember_swept, [subject], [sw["swept"]])
    g.heavy(began.then, sweep,
            [inp["model"], inp["image"], inp["truth"], *channels],
            [sw["animation"], sw["lines"], sw["status"]], api_name="sweep")
    sw["stop"].click(stop_sweep, None, None, **QUIET)


def _sweep_outputs(frames: dict, image: np.ndarray, truth, classes, palette, channels, mean,
                   note: str, total: int):
    factors = sorted(frames)
    ref = frames[1.0]
    dyn = {f: {k: dynamic_part(frames[f].filters[k], mean[k]) for k in channels}
           for f in factors}
    cos = {k: [bank_cosine(dyn[f][k], dyn[1.0][k]) for f in factors] for k in channels}
    agree = [float((frames[f].label == ref.label).mean()) for f in factors]
    miou = None if truth is None else [mean_iou(frames[f].label, truth, len(classes))
                                       for f in factors]
    colors = {k: overlays.part_color(f"k={k}") for k in channels}
    shown = [Frame(f, overlays.thumbnail(overlays.overlay(image, frames[f].label, palette), 300),
                   f"{f:g}× · model input {frames[f].input_size[1]}×{frames[f].input_size[0]} · "
                   f"{100 * a:.1f}% of pixels as at 1× · {frames[f].seconds:.2f} s",
                   [Panel(k, c, mean[k][c], dyn[f][k][c],
                          None if f == 1.0 else cos[k][factors.index(f)])
                    for k, c in channels.items()])
             for f, a in zip(factors, agree, strict=True)]
    final = len(frames) == total
    status = (f"{len(frames)}/{total} scales done" if not final else
              f"Done: {len(frames)} scales in {sum(f.seconds for f in frames.values()):.1f} s.")
    return (sweep_html(shown, note, total), sweep_lines(factors, cos, agree, miou, colors),
            status)


def max_pixels() -> int:
    """The largest model input a sweep runs: `$DMNET_SWEEP_MAX_MP` megapixels (default 1.2). A
    pass costs time and memory in proportion to its pixels: an official R-50's 2048x1024 input
    takes one pass (F); at 2x it would take 4 F and ~8 GB more, too much for a laptop or a
    16 GB Space serving several users."""
    return int(float(os.environ.get("DMNET_SWEEP_MAX_MP", 1.2)) * 1e6)


def plan(input_size: tuple[int, int]) -> tuple[list[float], str]:
    """The scales a sweep of this model input runs (1x first: the others compare with it; it is
    the analysis every view shares, so it costs no pass), and a note naming the scales left out
    because their input would be over `max_pixels`."""
    h, w = input_size
    side = {f: (max(8, round(h * f)), max(8, round(w * f))) for f in SCALES}  # as `scaled`
    run = [f for f in SCALES if f == 1.0 or side[f][0] * side[f][1] <= max_pixels()]
    out = [f for f in SCALES if f not in run]
    if not out:
        return [1.0, *(f for f in run if f != 1.0)], ""
    big = side[out[0]]
    note = (f"Scales {', '.join(f'{f:g}×' for f in out)} are left out: their model input would "
            f"be over {max_pixels() / 1e6:g} MP ({out[0]:g}× is {big[1]}×{big[0]}), too slow and "
            "too large for this server (`DMNET_SWEEP_MAX_MP` sets the cap).")
    return [1.0, *(f for f in run if f != 1.0)], note


@user_errors
@gpu
def sweep(key: str, image: str | None, truth: str | None, ch1: int | None, ch3: int | None,
          ch5: int | None, ch7: int | None, progress: gr.Progress = gr.Progress()):
    """Resize the model input from 0.5x to 2x; yield the filters and prediction at each scale."""
    seen = see(key, image, truth)
    a = seen.analysis
    r = ranking(key)
    wanted = dict(zip((1, 3, 5, 7), (ch1, ch3, ch5, ch7), strict=True))
    channels = {k: valid_channel(r, k, wanted.get(k)) for k in a.filters}
    frames = {1.0: frame_of(a)}  # the pass every view shares
    order, capped = plan(a.input_size)
    note = " ".join(filter(None, ["At 1× this is the Segmentation tab's prediction (the same "
                                  "pass).", capped]))
    for i, factor in enumerate(order):
        if factor != 1.0:
            progress((i, len(order)), desc=f"input at {factor:g}×")
            try:
                frames[factor] = sweep_frame(seen.model, a.image, factor)
            except BaseException:
                release_memory()
                raise
            release_memory(frames[factor].input_size[0] * frames[factor].input_size[1])
        yield _sweep_outputs(frames, a.image, seen.truth, a.classes, a.palette, channels, r.mean,
                             note, len(order))
