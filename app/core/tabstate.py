"""What the server keeps per browser tab (Gradio session), and Stop.

- `session()`: the tab of the event being run; `remember`: a bounded table of recent tabs.
- **Stop** (`stop`, called by the page's direct Stop event, `gates.stop_all`): it wakes every
  model event the tab has running (`running` registers one, `or_stop` awaits a step of it unless
  Stop wakes it first), and each ends at once, normally, writing nothing (`flow.model_event`).

**Why not Gradio's `cancels`**, as found in Gradio 6.31's page: a cancelled event's output can
be left showing "Error" for good. The page sends `/cancel`, then `/reset`, then marks the output
done; the server answers the cancel with an empty "completed" message, and when that message
reaches the page after `/reset` has answered (a busy machine), the page fails to read it and
marks the output as failed. A cancel also reaches only events whose id the queue has sent back,
and starts the follow-ups of the events it cancels. So Stop is a direct event (`gates.stop_all`)
that ends the events here: each ends normally, writing nothing, and no cancel races.

What Stop cannot reach: the listeners of one trigger run one after another on the page (a later
one starts after Stop, when the earlier ends); the follow-ups (`.then`, `.success`) of an event
that Stop ended run; and an `always_last` event that waited runs when the one before it ends.
So the server keeps, per browser tab, whether it is stopped: after Stop, an event that a *user's
action* did not start (a State's change, or a follow-up of a queued event) returns at once
writing nothing; the next event a user's action starts (a click, a pick, an upload, a page
load; `started_by_user`) resumes the tab.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import OrderedDict
from collections.abc import Collection

from gradio.context import LocalContext

SESSIONS_KEPT = 4096  # browser tabs whose last outputs and claims are remembered
LOCK = threading.Lock()  # guards every per-tab table (here and in `flow`)


def session() -> str:
    """The browser tab (Gradio session) of the event being run; "" outside an event."""
    request = LocalContext.request.get(None)
    return (getattr(request, "session_hash", None) or "") if request is not None else ""


def remember(table: OrderedDict, key: str) -> dict:
    """The entry of `key` in a table of recent sessions (the oldest is dropped past the limit)."""
    entry = table.setdefault(key, {})
    table.move_to_end(key)
    while len(table) > SESSIONS_KEPT:
        table.popitem(last=False)
    return entry


_stops: OrderedDict[str, dict] = OrderedDict()  # session -> {"count": Stops, "stopped": bool}
USER_EVENTS = ("click", "input", "select", "upload", "clear", "load", "submit", "release")


class Run:
    """A model event running now: Stop wakes it (from any thread)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.loop = asyncio.get_running_loop()
        self.woken = asyncio.Event()

    def wake(self) -> None:
        self.loop.call_soon_threadsafe(self.woken.set)


_runs: dict[str, set[Run]] = {}  # session -> its model events running now


@contextlib.contextmanager
def running(name: str):
    """Register the model event being run, so that Stop can wake it, for as long as it runs."""
    current, who = Run(name), session()
    with LOCK:
        _runs.setdefault(who, set()).add(current)
    try:
        yield current
    finally:
        with LOCK:
            runs = _runs.get(who, set())
            runs.discard(current)
            if not runs:
                _runs.pop(who, None)


def stop(names: Collection[str] | None = None) -> None:
    """Stop, for the browser tab of the event being run (see the module's docstring): its
    running model events end at once writing nothing, and what is left over from before does
    not run. With `names`, only the running events of those functions end (a view's own Stop,
    the sweep's), and the tab is not stopped."""
    with LOCK:
        who = session()
        if names is None:
            state = remember(_stops, who)
            state["count"] = state.get("count", 0) + 1
            state["stopped"] = True
        woken = [r for r in _runs.get(who, ()) if names is None or r.name in names]
    for run in woken:
        run.wake()


def begin(by_user: bool) -> int | None:
    """The tab's count of Stops as an event begins, or None when it must not run: left over
    from before a Stop. An event a user's action started resumes the tab."""
    with LOCK:
        state = remember(_stops, session())
        if by_user:
            state["stopped"] = False
        elif state.get("stopped"):
            return None
        return state.get("count", 0)


def stopped_since(count: int) -> bool:
    with LOCK:
        return _stops.get(session(), {}).get("count", 0) != count


def started_by_user(dependency: dict) -> bool:
    """Whether an event (Gradio's dependency, as registered) starts on a user's action: its
    triggers are user events, or it follows a direct (unqueued) event that does. A queued
    event's follow-up does not: Gradio's page runs it after Stop ended the event too. A trigger
    that mixes both kinds is refused (its kind would depend on which fired): register them
    apart."""
    from gradio.context import get_blocks_context

    fns = get_blocks_context().fns
    after, targets = dependency["trigger_after"], dependency["targets"]
    if after is None:
        kinds = {event in USER_EVENTS for _, event in targets}
        if len(kinds) > 1:
            raise ValueError(f"triggers of both kinds in one event: {targets}")
        return kinds == {True}
    parent = fns[after]
    return not parent.queue and started_by_user(dict(trigger_after=parent.trigger_after,
                                                     targets=parent.targets))


class Stopped(Exception):
    """Stop woke the event: it ends writing nothing."""


async def or_stop(run: Run, awaitable):
    """What `awaitable` gives, unless Stop wakes `run` first (then `Stopped`; the awaitable is
    cancelled)."""
    task = asyncio.ensure_future(awaitable)
    woken = asyncio.ensure_future(run.woken.wait())
    try:
        await asyncio.wait({task, woken}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        woken.cancel()
        if not task.done():
            task.cancel()
    if run.woken.is_set():
        raise Stopped
    return task.result()
