"""How the page's events are registered: `Graph` (model events and the events that write a
State) and the keyword sets of each kind. Each view wires its own events
with it. The design of the whole (`app/EVENTS.md` is its generated table, `python -m
app.tools.graph`):

- **One subject.** The model in use, image A and its true mask make the *subject*, a
  `gr.State` written only by `subject_of` / `own_image` after a user's upload, an example, a
  generated scene, the page's address or a model load. Views start on the subject's `change`,
  which a State fires only when an event changed its value on the server: two triggers of one
  action start nothing twice. Nothing listens to a component's own `change` where Gradio fires
  it by itself: its Image fires it whenever its value object is replaced, with no new image
  (dozens of times a second under load), and a hidden Textbox that held the open tab fired it
  twice a second with no event writing it (seen under load); the open tab and the views'
  tokens are States too.
- **Lazy views** (`gates`). The Segmentation view (and the sidebar's mask, notices and
  lesson words) runs for every new subject. Branches, Attribution (and its ablation) and
  Compare run when their tab is open, once per subject (`flow.CLAIMS`), each through a *token*
  (a State) whose change starts its chain. The sweep never starts by itself: its status says
  when it shows another image.
- **Controls are the user's.** An event never writes a control's value back (only its
  choices, and a value only when the old one no longer exists); every model event passes
  through `flow.model_event`, where the freshest event of a browser tab wins each output.
- **Stop** is a direct event that ends every model event of the tab on the server (each ends
  writing nothing; what is left over from before it does not run, `flow`) and forgets the
  claims, so a view shown later runs again. Gradio's `cancels` is not used: it can leave an
  output showing "Error" (see `flow`).
"""

from __future__ import annotations

import gradio as gr

from .flow import freshest, model_event, started_by_user

# Model events: unlimited in Gradio's queue, so that Stop reaches each on the server; the
# wrapper holds one of `flow.MODEL_SLOTS` while it runs the network.
HEAVY = dict(concurrency_id="model", concurrency_limit=None, trigger_mode="always_last")
QUIET = dict(queue=False, api_visibility="private")  # UI-only helpers that write no State
# Events that write a State (the subject, the open tab, a view's token): queued, as Gradio
# 6.31 fires a State's `change` only for queued events; a group of their own, unlimited, so
# they never wait for the model.
STATEFUL = dict(concurrency_id="page", concurrency_limit=None, show_progress="hidden",
                trigger_mode="always_last", api_visibility="private")
UNDOC = dict(api_visibility="undocumented")
PRIVATE = dict(api_visibility="private")


class Graph:
    """Registers the model events of the page and the events that write a State."""

    def fresh(self, trigger, fn, inputs: list, outputs: list, **kw):
        """An event that writes a State (`STATEFUL`), whose outputs a later-started one of the
        browser tab may own (`flow.freshest`); after Stop, one left over from before it writes
        nothing (a subject written after Stop would start every view again)."""
        guarded = freshest(fn, outputs)
        event = trigger(guarded, inputs, outputs, **{**STATEFUL, **kw})
        guarded.by_user = started_by_user(event)
        return event

    def heavy(self, trigger, fn, inputs: list, outputs: list, **kw):
        """A model event: `trigger(fn, inputs, outputs, ...)` with `fn` through `model_event`."""
        guarded = model_event(fn, outputs)
        event = trigger(guarded, inputs, outputs, **{**HEAVY, **kw})
        guarded.by_user = started_by_user(event)
        return event


def on(*triggers):
    """A trigger for `Graph.heavy` made of several events (`gr.on`)."""
    return lambda fn, inputs, outputs, **kw: gr.on(list(triggers), fn, inputs, outputs, **kw)
