"""The page's style and script: the CSS of the whole page (each view adds its own, beside its
layout), and the script that keeps plotly figures sized to their boxes."""

from __future__ import annotations

from app.views import attribution, branches, lesson, sidebar

PAGE_CSS = """
.teach { font-size: 0.92em; background: var(--block-background-fill); padding: 4px 10px;
         border-radius: 8px; }
/* options, gallery captions and legends wrap instead of being cut */
ul.options li, ul[role=listbox] li { white-space: normal !important; }
.caption-label, .caption { white-space: normal !important; overflow: visible !important;
                           text-overflow: clip !important; max-width: 100% !important; }
/* a glossary term (`words.gloss`): its meaning on hover */
abbr.gloss { text-decoration: underline dotted; text-underline-offset: 3px; cursor: help; }
"""
CSS = PAGE_CSS + sidebar.CSS + lesson.CSS + branches.CSS + attribution.CSS  # each view's own
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
