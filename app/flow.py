"""How the app's model events run: their wrapper, the per-tab claims of lazy views, and Stop.

Every event that runs the network goes through `model_event`, which
- delays it by a random 0 to `$DMNET_EVENT_DELAY` seconds when that switch is set (the browser
  tests of a slow server set it: races that a fast machine hides show up on every run);
- lets the freshest event of a browser tab win: an event that finishes after a later-started
  event with the same output (same session) leaves that output alone (`gr.skip()`), so a late
  event can never draw an older view over a newer one, nor put back a control's older value;
- appends one JSON line per run to `$DMNET_EVENT_LOG` when set (the tests count runs with it).

A lazy view (a tab's computations) runs only while its tab is open, once per subject (model,
image, true mask): `Claims` records per browser tab what each view was last asked to show, so
that two triggers of one user action (a tab switch and a new image at once) run it once. Stop
forgets the claims, so the next look at a view runs it again.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import json
import os
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

import gradio as gr
from gradio.context import LocalContext

DELAY = "DMNET_EVENT_DELAY"  # seconds, the most a model event waits before it runs
LOG = "DMNET_EVENT_LOG"  # a file: one JSON line per model event run
SESSIONS_KEPT = 4096  # browser tabs whose last outputs and claims are remembered

_tickets = itertools.count(1)
_lock = threading.Lock()
_latest: OrderedDict[str, dict[int, int]] = OrderedDict()  # session -> output id -> ticket


def session() -> str:
    """The browser tab (Gradio session) of the event being run; "" outside an event."""
    request = LocalContext.request.get(None)
    return (getattr(request, "session_hash", None) or "") if request is not None else ""


def _remember(table: OrderedDict, key: str) -> dict:
    """The entry of `key` in a table of recent sessions (the oldest is dropped past the limit)."""
    entry = table.setdefault(key, {})
    table.move_to_end(key)
    while len(table) > SESSIONS_KEPT:
        table.popitem(last=False)
    return entry


def _start(outputs: Sequence[int]) -> tuple[str, int]:
    """Take a ticket for these outputs of this session: the newest event to write each."""
    who, ticket = session(), next(_tickets)
    with _lock:
        latest = _remember(_latest, who)
        for i in outputs:
            latest[i] = ticket
    return who, ticket


def _fresh(value, outputs: Sequence[int], who: str, ticket: int):
    """`value` with gr.skip() for each output that a later-started event of the session owns."""
    with _lock:
        latest = dict(_latest.get(who, {}))
    stale = [latest.get(i, ticket) != ticket for i in outputs]
    if not any(stale):
        return value
    if len(outputs) == 1:
        return gr.skip()
    return tuple(gr.skip() if s else v for v, s in zip(value, stale, strict=True))


def _pause() -> None:
    most = float(os.environ.get(DELAY) or 0)
    if most > 0:
        time.sleep(random.uniform(0, most))


def _log(name: str, who: str, began: float, status: str) -> None:
    path = os.environ.get(LOG)
    if path:
        line = json.dumps(dict(fn=name, session=who, start=began, end=time.time(),
                               status=status))
        with _lock, open(path, "a") as f:
            f.write(line + "\n")


def model_event(fn: Callable, outputs: Sequence[gr.components.Component]) -> Callable:
    """`fn` as a model event writing `outputs` (see the module's docstring). Gradio reads the
    parameters (gr.Progress, gr.SelectData) of `fn` itself through `functools.wraps`."""
    ids = [c._id for c in outputs]
    name = fn.__name__

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def stream(*args, **kwargs):
            who, ticket = _start(ids)  # in the order the queue started them, before the pause
            _pause()
            began, status = time.time(), "error"
            try:
                for value in fn(*args, **kwargs):
                    yield _fresh(value, ids, who, ticket)
                status = "ok"
            except GeneratorExit:
                status = "cancelled"
                raise
            finally:
                _log(name, who, began, status)
        return stream

    @functools.wraps(fn)
    def run(*args, **kwargs):
        who, ticket = _start(ids)
        _pause()
        began, status = time.time(), "error"
        try:
            value = fn(*args, **kwargs)
            status = "ok"
        finally:
            _log(name, who, began, status)
        return _fresh(value, ids, who, ticket)
    return run


def freshest(fn: Callable, outputs: Sequence[gr.components.Component]) -> Callable:
    """`fn` (a direct event, no model) with only the freshest-wins guard of `model_event`."""
    ids = [c._id for c in outputs]

    @functools.wraps(fn)
    def run(*args, **kwargs):
        who, ticket = _start(ids)
        return _fresh(fn(*args, **kwargs), ids, who, ticket)
    return run


class Claims:
    """What each lazy view of each browser tab was last asked to show (a key: the subject, and
    for the ablation its mode and ticks). `claim` is atomic: of two triggers of one action that
    ask for the same key, one wins."""

    def __init__(self) -> None:
        self._views: OrderedDict[str, dict[str, str]] = OrderedDict()

    def claim(self, view: str, key: str) -> bool:
        """Whether `view` must run for `key` now (and from now on it counts as asked for)."""
        with _lock:
            views = _remember(self._views, session())
            if views.get(view) == key:
                return False
            views[view] = key
            return True

    def forget(self) -> None:
        """Stop: every view of this browser tab runs again when next shown."""
        with _lock:
            self._views.pop(session(), None)


CLAIMS = Claims()


def token(key: str) -> str:
    """A new value for a view's hidden trigger (its change starts the view's run)."""
    return f"{key}#{time.monotonic_ns()}"
