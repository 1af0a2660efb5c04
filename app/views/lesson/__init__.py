"""The Lesson: back / the step's words / next, above the tabs (its steps: `steps`). A step opens
the tab and element it explains, gives Compare a second image or the ablation its settings; the
gates of the views it opens then run them, once."""

from __future__ import annotations

import gradio as gr

from app.core import models
from app.core.gates import ask_ablation, ask_compare
from app.core.wiring import PRIVATE, QUIET, Graph, on
from app.views.lesson import steps

CSS = """
/* During a lesson (class "following", set by steps.SCROLL) the panel stays in view while its
   step scrolls the page to the view it explains; outside a lesson it covers nothing. Gradio's
   container hides its overflow, which makes it the scroll box a sticky element sticks to (and it
   never scrolls); clip cuts the same overflow without being a scroll box. */
.gradio-container { overflow: clip !important; }
#lesson-panel.following { position: sticky; top: 0; z-index: 60;
                          background: var(--background-fill-primary);
                          box-shadow: 0 2px 6px rgba(0, 0, 0, 0.08); }
#lesson { border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 6px; }
#lesson-step { min-height: 3em; }
"""


def create_lesson() -> dict:
    """The Lesson (app/steps.py): back / the step's words / next, above the tabs."""
    with gr.Accordion("Lesson: how DMNet works, step by step, on your image", open=True,
                      elem_id="lesson-panel"):
        with gr.Row(elem_id="lesson", equal_height=False):
            back = gr.Button("◀ Back", size="sm", scale=0, min_width=90, elem_id="lesson-back")
            words = gr.Markdown(steps.page(0, models.DEMO, None), elem_id="lesson-step")
            forward = gr.Button("Next ▶", size="sm", scale=0, min_width=90, variant="primary",
                                elem_id="lesson-next")
    return dict(lesson_back=back, lesson_words=words, lesson_next=forward,
                lesson_step=gr.State(0),
                lesson_target=gr.Textbox(visible="hidden", elem_id="lesson-target"))


def wire_lesson(g: Graph, inp: dict, att: dict, cmp: dict, page: dict, subject,
                tokens: dict) -> None:
    """Next / Back: the step's words, its tab and element, its image B or ablation settings;
    the gates of the views it opens then run them, once. The words have one writer, serialized
    (`always_last`): the newest step and image."""
    tab = page["tab"]
    g.heavy(on(subject.change, page["lesson_step"].change), steps.page,
            [page["lesson_step"], inp["model"], inp["image"]], [page["lesson_words"]], **PRIVATE)
    shown = [page["lesson_step"], page["tabs"], tab,
             page["lesson_target"], cmp["image_b"], att["mode"], att["parts"]]
    for button, delta in ((page["lesson_next"], 1), (page["lesson_back"], -1)):
        asked = [page["lesson_step"], inp["model"], inp["image"], cmp["image_b"], cmp["seed_b"]]
        went = g.heavy(button.click, steps.stepper(delta), asked, shown, **PRIVATE)
        went.then(None, [page["lesson_target"]], None, js=steps.SCROLL, **QUIET)
        g.fresh(went.success, ask_ablation, [tab, subject, att["mode"], att["parts"]],
              [tokens["ablation"]])
        g.fresh(went.success, ask_compare, [tab, subject, cmp["image_b"]], [tokens["compare"]])
