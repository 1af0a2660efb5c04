"""The attribution map's hover readout: the margin terms of the feature cell under the pointer.

Gradio 6's `gr.Image` has no hover event, and a server round trip per mouse move would be far too
slow, so the server sends every feature cell's split margin with the map (`cell_table`, the same
numbers `attribution.cell_margin` gives one cell), and a script (gr.HTML's `js_on_load`) draws the
bars of the cell under the pointer and frames that cell on the map as the pointer moves (or the
page scrolls under it). A click still pins a cell (the server marks it and plots its bars).
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence

import torch
from torch import Tensor

from app.core.overlays import hex_color

HINT = "Move the pointer over the map: the bars of the cell under it appear here."

# Listens on the document (the map is another component) and draws into this component's element.
# The cell under the pointer follows `explain.pick_pixel` + `explain.cell_of`: the pixel of the
# displayed map as fractions of the image, times the feature grid.
JS = """
const table = () => {
  const root = element.querySelector('.hv-root');  // its data-map names the map it reads
  if (!root || !root.dataset.cells) return null;
  if (root._cells === undefined) root._cells = JSON.parse(root.dataset.cells);
  return root._cells;
};
const frame = () => {  // a new value re-renders the element's content: make it again if gone
  let f = element.querySelector('.hv-frame');
  if (!f) {
    f = document.createElement('div');
    f.className = 'hv-frame';
    element.appendChild(f);
  }
  return f;
};
const esc = s => String(s).replace(/[&<>"]/g, ch => ({'&': '&amp;', '<': '&lt;', '>': '&gt;',
                                                       '"': '&quot;'})[ch]);
const fmt = v => (v >= 0 ? '+' : '−') + Math.abs(v).toFixed(2);
const content = img => {  // the drawn picture's box inside the <img> (object-fit letterboxes it)
  const r = img.getBoundingClientRect(), nw = img.naturalWidth, nh = img.naturalHeight;
  if (!nw || !nh) return null;
  const fit = getComputedStyle(img).objectFit;
  let sx = r.width / nw, sy = r.height / nh;
  if (fit === 'contain' || fit === 'scale-down') {
    sx = sy = Math.min(sx, sy, fit === 'scale-down' ? 1 : Infinity);
  }
  const w = nw * sx, h = nh * sy;
  return {left: r.left + (r.width - w) / 2, top: r.top + (r.height - h) / 2, w, h, nw, nh};
};
const draw = (t, r, c) => {
  const out = element.querySelector('.hv-bars');
  const i = r * t.w + c, parts = t.names.map((_, j) => t.parts[j][i]);
  const margin = parts.reduce((a, b) => a + b, 0) + t.rest[i];
  const top = Math.max(...parts.map(Math.abs), Math.abs(t.rest[i]), 1e-6);
  const row = (name, v, color, gone) => {
    const w = 50 * Math.abs(v) / top, left = v >= 0 ? 50 : 50 - w;
    return `<div class="hv-row${gone ? ' hv-gone' : ''}"><span class="hv-name">${esc(name)}` +
      `${gone ? ' ✕' : ''}</span><span class="hv-track"><span class="hv-bar" ` +
      `style="left:${left}%;width:${w}%;background:${color}"></span><span class="hv-zero">` +
      `</span></span><span class="hv-value">${fmt(v)}</span></div>`;
  };
  const [a, b] = [t.classes[t.top[i]], t.classes[t.second[i]]].map(esc);
  let title = `<b>${a}</b> beats ${b} by <b>${margin.toFixed(2)}</b>`;
  if (t.after) {  // the changed-pixels map: the class before and after the ablation
    const now = esc(t.classes[t.after[i]]);
    title = t.after[i] === t.top[i] ? `stays <b>${a}</b> ${t.change}` :
      `<b>${a}</b> becomes <b>${now}</b> ${t.change}; before, ${a} beat ${b} by ` +
      `${margin.toFixed(2)}, with these terms`;
  }
  out.innerHTML = `<div class="hv-title">under the pointer: cell (row ${r}, col ${c}): ` +
    `${title}</div>` +
    t.names.map((n, j) => row(n, parts[j], t.colors[j], t.removed.includes(n))).join('') +
    row('shift + bias', t.rest[i], '#bbbbbb', false);
  out.dataset.cell = `${r},${c}`;
};
const leave = () => {
  frame().hidden = true;
  const out = element.querySelector('.hv-bars');
  if (out && out.dataset.cell) { out.innerHTML = `<p class="hv-hint">__HINT__</p>`;
                                 delete out.dataset.cell; }
};
let pointer = null;  // where the pointer last moved, in viewport coordinates
const update = (px, py) => {
  // By geometry, not e.target: Gradio lays other elements over the image.
  const root = element.querySelector('.hv-root');
  const img = root && document.querySelector(root.dataset.map + ' img');
  const t = img && table();
  const box = t && content(img);
  if (!box) { leave(); return; }
  const x = Math.floor((px - box.left) / box.w * box.nw);
  const y = Math.floor((py - box.top) / box.h * box.nh);
  if (x < 0 || y < 0 || x >= box.nw || y >= box.nh) { leave(); return; }
  const fx = Math.min(Math.max((x + 0.5) / box.nw, 0), 1);
  const fy = Math.min(Math.max((y + 0.5) / box.nh, 0), 1);
  const r = Math.min(Math.floor(fy * t.h), t.h - 1), c = Math.min(Math.floor(fx * t.w), t.w - 1);
  const cw = box.w / t.w, ch = box.h / t.h;
  const f = frame();
  Object.assign(f.style, {left: `${box.left + c * cw}px`, top: `${box.top + r * ch}px`,
                              width: `${cw}px`, height: `${ch}px`});
  f.hidden = false;
  draw(t, r, c);
};
document.addEventListener('mousemove', e => {
  pointer = [e.clientX, e.clientY];
  update(...pointer);
});
// A scroll moves the map under a pointer that stays put (the wheel, a loading image above it):
// read the cell now under it, as if the pointer had moved there.
document.addEventListener('scroll', () => pointer ? update(...pointer) : leave(), true);
""".replace("__HINT__", HINT)

CSS = """
.hv-root { font-size: 0.9em; min-height: 150px; }
.hv-title { margin-bottom: 4px; }
.hv-row { display: flex; align-items: center; gap: 6px; height: 20px; }
.hv-name { width: 78px; text-align: right; white-space: nowrap; }
.hv-track { position: relative; flex: 1; height: 14px; background: #f3f3f3; border-radius: 2px; }
.hv-bar { position: absolute; top: 0; height: 100%; border-radius: 2px; }
.hv-zero { position: absolute; left: 50%; top: -2px; height: 18px; border-left: 1px solid #444; }
.hv-value { width: 52px; font-variant-numeric: tabular-nums; }
.hv-gone .hv-name { text-decoration: line-through; }
.hv-gone .hv-bar { background-image: repeating-linear-gradient(45deg, transparent 0 3px,
                                                                #fff8 3px 6px); }
.hv-hint { color: #666; margin: 4px 0; }
.hv-frame { position: fixed; pointer-events: none; z-index: 50; box-sizing: border-box;
            border: 2px solid #000; outline: 1px solid #fff; }
"""


@torch.inference_mode()
def cell_table(parts: Tensor, rest: Tensor) -> dict:
    """Every feature cell's split margin, row-major, from `attribution.logit_parts`' (parts
    (P, classes, h, w), rest (classes, h, w)): top and runner-up class, each input's term and
    the rest (what `attribution.cell_margin` gives for one cell)."""
    logits = parts.sum(0) + rest  # (classes, h, w)
    top2 = logits.topk(2, dim=0).indices  # (2, h, w)
    picked = parts.gather(1, top2.unsqueeze(0).expand(parts.shape[0], -1, -1, -1))  # (P, 2, h, w)
    kept = rest.gather(0, top2)  # (2, h, w)
    h, w = logits.shape[1:]
    return {"h": h, "w": w, "top": top2[0].flatten().tolist(),
            "second": top2[1].flatten().tolist(),
            "parts": (picked[:, 0] - picked[:, 1]).flatten(1).tolist(),
            "rest": (kept[0] - kept[1]).flatten().tolist()}


def readout(parts: Tensor, rest: Tensor, names: Sequence[str],
            colors: Sequence[tuple[int, int, int]], classes: Sequence[str],
            target: str = "#attribution-map", after: Tensor | None = None,
            removed: Sequence[str] = (), change: str = "") -> str:
    """The hover readout's HTML for the map `target` (an elem_id selector): every cell's terms
    (4 decimals) in a data attribute, and a hint until the pointer is on the map.

    For the changed-pixels map, also each cell's class after the ablation (`after`, (h, w)), the
    inputs it removed (their bars are struck through) and its words (`change`, "without k=7").
    """
    table = cell_table(parts, rest)
    table.update(parts=[[round(v, 4) for v in row] for row in table["parts"]],
                 rest=[round(v, 4) for v in table["rest"]],
                 names=list(names), colors=[hex_color(c) for c in colors], classes=list(classes),
                 after=None if after is None else after.flatten().tolist(),
                 removed=list(removed), change=change)
    data = html.escape(json.dumps(table, separators=(",", ":")), quote=True)
    return (f"<div class='hv-root' data-map='{target}' data-cells=\"{data}\"><div class='hv-bars'>"
            f"<p class='hv-hint'>{HINT}</p></div></div>")
