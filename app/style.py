"""The page's style and script: CSS for what Gradio's themes do not say, and the script that
keeps plotly figures sized to their boxes."""

from __future__ import annotations

from app.core import overlays

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
/* "taps summed" reads only the ticks of k > 1 (parts_for): x and k=1 are hidden */
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
