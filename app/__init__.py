"""DMNet Explorer, the Gradio app: how DMNet's dynamic multi-scale filters adapt to each input.

Arranged by what the user sees: `views/` holds one module or package per view (the sidebar,
Segmentation, Branches, Attribution & ablation, Compare, Scale sweep, the Lesson, Model card /
About), each with its layout, its events and its actions; `core/` below them holds what they
share (models and loading, images, the one analysis pass and its cache, attribution math,
overlays and plots, the events' plumbing) and imports no view. `page.py` assembles the views
and the page's address (`urlstate.py`); `tools/` holds what is not served (the event graph's
table, the load test). `python app.py` at the repository root serves it.
"""
