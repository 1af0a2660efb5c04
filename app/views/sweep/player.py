"""The scale sweep's animation: plain HTML frames, a slider and a play button (for gr.HTML).

Every frame is in the page at once (the prediction as a JPEG data URI, the filter panels as
coloured cells); the slider and ▶ only show one frame and hide the others. The script is gr.HTML's
`js_on_load`, which runs once when the component mounts: it listens on the component's own
element, so it keeps working when a new sweep replaces the frames (a <script> inside the value
would not run: Gradio sets the value as innerHTML).
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import numpy as np

from app.core.overlays import data_uri

# The ends and middle of plotly's RdBu_r (the app's filter colour scale): blue < 0 < red.
NEGATIVE, ZERO, POSITIVE = (5, 48, 97), (247, 247, 247), (103, 0, 31)
PLAY, PAUSE = "▶ play", "⏸ pause"
PLACEHOLDER = "<p class='sw-note'>Run the sweep: a slider and ▶ will step through the scales.</p>"

JS = """
const show = (root, i) => {
  const frames = root.querySelectorAll('.sw-frame');
  const n = frames.length;
  if (!n) return;
  i = ((i % n) + n) % n;
  frames.forEach((f, j) => { f.hidden = j !== i; });
  root.querySelector('.sw-slider').value = String(i);
  root.querySelector('.sw-label').textContent = frames[i].dataset.label;
};
const stop = () => {
  clearInterval(element._sweepTimer);
  element._sweepTimer = null;
  element.querySelectorAll('.sw-play').forEach(b => { b.textContent = '__PLAY__'; });
};
element.addEventListener('input', e => {
  const s = e.target.closest('.sw-slider');
  if (s) show(s.closest('.sw-root'), Number(s.value));
});
element.addEventListener('click', e => {
  const b = e.target.closest('.sw-play');
  if (!b) return;
  if (element._sweepTimer) { stop(); return; }
  element._sweepTimer = setInterval(() => {
    const root = element.querySelector('.sw-root');
    if (!root) { stop(); return; }
    root.querySelector('.sw-play').textContent = '__PAUSE__';
    show(root, Number(root.querySelector('.sw-slider').value) + 1);
  }, __INTERVAL__);
  b.textContent = '__PAUSE__';
  show(b.closest('.sw-root'), Number(b.closest('.sw-root').querySelector('.sw-slider').value) + 1);
});
""".replace("__PLAY__", PLAY).replace("__PAUSE__", PAUSE).replace("__INTERVAL__", "900")

CSS = """
.sw-controls { display: flex; align-items: center; gap: 12px; margin: 4px 0 8px; }
.sw-slider { flex: 1; max-width: 520px; }
.sw-label { font-weight: 600; min-width: 230px; }
.sw-frame { display: flex; gap: 18px; align-items: flex-start; flex-wrap: wrap; }
.sw-frame[hidden] { display: none; }
.sw-pred img { width: 300px; height: auto; image-rendering: auto; border-radius: 4px; }
.sw-pred figcaption, .sw-branch figcaption { font-size: 0.85em; margin-top: 2px; }
.sw-branches { display: grid; grid-template-columns: repeat(2, auto); gap: 10px 22px; }
.sw-branch { margin: 0; }
.sw-bar { display: inline-block; width: 90px; height: 10px; vertical-align: middle;
          background: linear-gradient(90deg, #053061, #f7f7f7, #67001f); border-radius: 2px; }
.sw-pair { display: flex; gap: 8px; }
.sw-grid { border-collapse: collapse; }
.sw-grid td { width: var(--cell); height: var(--cell); padding: 0; border: 1px solid #fff; }
.sw-sub { font-size: 0.8em; text-align: center; }
.sw-note { font-size: 0.9em; margin-top: 8px; }
"""


@dataclass
class Panel:
    """One branch's filter panel in one frame: the chosen channel's mean and dynamic part."""

    k: int
    channel: int
    mean: np.ndarray  # (k, k)
    dynamic: np.ndarray  # (k, k)
    cosine: float | None  # of this scale's dynamic part (whole bank) to 1x's; None at 1x


@dataclass
class Frame:
    factor: float
    prediction: np.ndarray  # (h, w, 3) uint8 thumbnail of the prediction overlay
    caption: str
    panels: list[Panel]


def cell_color(value: float, zmax: float) -> str:
    """The colour of a filter tap on the symmetric scale [-zmax, zmax] (blue, white, red)."""
    t = float(np.clip(value / zmax, -1, 1)) if zmax > 0 else 0.0
    end = POSITIVE if t > 0 else NEGATIVE
    rgb = [round(z + abs(t) * (e - z)) for z, e in zip(ZERO, end, strict=True)]
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def grid(taps: np.ndarray, zmax: float, name: str) -> str:
    """A k x k filter as a table of coloured cells (the value in each cell's tooltip)."""
    k = taps.shape[-1]
    rows = "".join(
        "<tr>" + "".join(f"<td style='background:{cell_color(v, zmax)}' "
                         f"title='{name} tap ({i}, {j}): {v:.4f}'></td>"
                         for j, v in enumerate(row)) + "</tr>"
        for i, row in enumerate(taps))
    return f"<table class='sw-grid' style='--cell:{max(8, 84 // k)}px'>{rows}</table>"


def panel_html(p: Panel, zmax: float) -> str:
    cos = "this is 1×" if p.cosine is None else f"dynamic part vs 1×: cos {p.cosine:.2f}"
    return (f"<figure class='sw-branch' data-k='{p.k}'><div class='sw-pair'>"
            f"<div>{grid(p.mean, zmax, 'mean')}<div class='sw-sub'>mean</div></div>"
            f"<div>{grid(p.dynamic, zmax, 'dynamic part')}<div class='sw-sub'>dynamic part</div>"
            f"</div></div><figcaption>k={p.k}, ch {p.channel} · {cos}</figcaption></figure>")


def sweep_html(frames: list[Frame], note: str, scales: int) -> str:
    """The animation: a slider over the frames done so far (of `scales`), starting at 1x."""
    if not frames:
        return ""
    ks = [p.k for p in frames[0].panels]
    zmax = {k: max(max(float(np.abs(p.mean).max()), float(np.abs(p.dynamic).max()))
                   for f in frames for p in f.panels if p.k == k) for k in ks}  # per branch
    start = next((i for i, f in enumerate(frames) if f.factor == 1), 0)
    body = []
    for i, f in enumerate(frames):
        label = f"input scale {f.factor:g}× ({i + 1}/{len(frames)})"
        panels = "".join(panel_html(p, zmax[p.k]) for p in f.panels)
        body.append(
            f"<div class='sw-frame' data-factor='{f.factor:g}' data-label='{label}'"
            f"{'' if i == start else ' hidden'}><figure class='sw-pred'>"
            f"<img alt='prediction at {f.factor:g}×' src='{data_uri(f.prediction)}'>"
            f"<figcaption>{html.escape(f.caption)}</figcaption></figure>"
            f"<div class='sw-branches'>{panels}</div></div>")
    scale = " · ".join(f"k={k}: ±{zmax[k]:.3g}" for k in ks)
    done = "" if len(frames) == scales else f" · {len(frames)}/{scales} scales so far"
    return (f"<div class='sw-root'><div class='sw-controls'>"
            f"<button class='sw-play' type='button'>{PLAY}</button>"
            f"<input class='sw-slider' type='range' min='0' max='{len(frames) - 1}' step='1' "
            f"value='{start}' aria-label='input scale'>"
            f"<span class='sw-label'>input scale {frames[start].factor:g}× "
            f"({start + 1}/{len(frames)})</span></div>{''.join(body)}"
            f"<p class='sw-note'>Filter colours: − <span class='sw-bar'></span> + (white = 0), "
            f"one scale per branch "
            f"shared by the mean and every scale's dynamic part ({scale}){done}. "
            f"{html.escape(note, quote=False)}</p></div>")
