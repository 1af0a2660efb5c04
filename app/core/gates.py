"""The page's subject and the gates of its lazy views: small functions of the events that write
a State (the views wire them; the design: `app/core/wiring.py`).

The subject is the model in use, image A and its true mask, as text: "" while there is no
image. A lazy view (Branches, Attribution, its ablation, Compare) asks `flow.CLAIMS` whether
it must run: when its tab is open, once per subject (and per mode and ticks, per image B).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import gradio as gr

from . import flow
from .flow import CLAIMS, token


def subject_of(key: str | None, image: str | None, truth: str | None) -> tuple:
    """(the mask as it is, the subject's text: "" while there is no image, nothing runs). It
    writes the mask too (leaving it as it is), so that an older `own` finishing later cannot
    take away a mask the user has given since (`flow.freshest`)."""
    return gr.skip(), json.dumps([key or "", image, truth or ""]) if image else ""


def own_image(rows):
    """A user's own image (upload, webcam, paste, clear): an example's or a scene's mask cannot
    be its mask, so it goes (a mask the user gave is kept). Returns (mask, subject)."""
    def own(key: str | None, image: str | None, truth: str | None):
        keep = truth if not example_mask(truth, rows) else None
        return (gr.skip() if keep == truth else keep), subject_of(key, image, keep)[1]
    return own


def require_subject(subject: str) -> None:
    if not subject:
        raise gr.Error("no image", visible=False, print_exception=False)


def gate(view: str, tab_id: str):
    """A lazy view's gate: a new token when its tab is open and it has not been asked for the
    subject yet in this browser tab."""
    def ask(tab: str, subject: str):
        if tab != tab_id or not subject or not CLAIMS.claim(view, subject):
            return gr.skip()
        return token(subject)
    ask.__name__ = f"ask_{view}"
    return ask


def ask_ablation(tab: str, subject: str, mode: str, parts: list[str] | None, force: bool = False):
    """The ablation's gate: its key is the subject, the mode and the ticks."""
    key = json.dumps([subject, mode, sorted(parts or [])])
    if not subject or (not force and (tab != "attribution" or not CLAIMS.claim("ablation", key))):
        return gr.skip()
    if force:
        CLAIMS.claim("ablation", key)
    return token(key)


def press_ablate(tab: str, subject: str, mode: str, parts: list[str] | None):
    """The Ablate button: run it now, even for the same key."""
    return ask_ablation(tab, subject, mode, parts, force=True)


def ask_compare(tab: str, subject: str, image_b: str | None):
    """Compare's gate: while there is a B, for this subject and this B."""
    key = json.dumps([subject, image_b])
    if tab != "compare" or not subject or not image_b or not CLAIMS.claim("compare", key):
        return gr.skip()
    return token(key)


def stop_all() -> None:
    """Stop: the views forget what they were asked for, the running model events end writing
    nothing and the events left over from before it run no more (`flow.stop`)."""
    CLAIMS.forget()
    flow.stop()


def stop_sweep() -> None:
    """The sweep's own Stop: the sweep ends at once (the scales it showed stay); nothing else
    of the tab stops."""
    flow.stop(names={"sweep"})


def opened(tab_id: str):
    """The action of a tab's `select`: the open tab's id, for the gates and the address."""
    def tab_opened() -> str:
        return tab_id
    return tab_opened


def remember_swept(subject: str) -> str:
    return subject


def sweep_note(subject: str, swept: str | None):
    """The sweep's status when A changed after it ran: it shows an earlier image."""
    if not swept or swept == subject:
        return gr.skip()
    return ("⚠️ **This sweep shows an earlier image** (or model): run it again for the image "
            "on screen.")


def example_mask(truth: str | None, rows: Sequence[tuple[str, str | None]]) -> bool:
    """Whether a true-mask file came with an example or a generated scene (by its name)."""
    if not truth:
        return False
    name = Path(truth).name
    return name in {Path(m).name for _, m in rows if m} or (
        name.startswith("scene_") and name.endswith("_mask.png"))
