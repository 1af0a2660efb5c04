"""How the app's model events run: their wrapper, the per-tab claims of lazy views, and Stop.

Every event that runs the network goes through `model_event`, which
- delays it by a random 0 to `$DMNET_EVENT_DELAY` seconds when that switch is set (the browser
  tests of a slow server set it: races that a fast machine hides show up on every run);
- lets the freshest event of a browser tab win: an event that finishes after a later-started
  event with the same output (same session) leaves that output alone (`gr.skip()`), so a late
  event can never draw an older view over a newer one, nor put back a control's older value;
- appends one JSON line per run to `$DMNET_EVENT_LOG` when set (the tests count runs with it);
- obeys Stop (`stop`), on the server: Stop wakes every model event its browser tab has running,
  in its delay, waiting for a slot or while its pass runs in a thread, and it ends at once
  writing nothing (the pass finishes in the background, its result dropped); and an event left
  over from before the Stop (see below) does not run;
- holds one of `MODEL_SLOTS` slots while it runs the network (all tabs together), which bounds
  the CPU and memory that passes take. Gradio's own queue limit is not used for that: an event
  waiting in Gradio's queue can only be cancelled by the page, see below.

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

A lazy view (a tab's computations) runs only while its tab is open, once per subject (model,
image, true mask): `Claims` records per browser tab what each view was last asked to show, so
that two triggers of one user action (a tab switch and a new image at once) run it once. Stop
forgets the claims, so the next look at a view runs it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import itertools
import json
import os
import random
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterator, Sequence

import anyio
import gradio as gr
from gradio.context import LocalContext

DELAY = "DMNET_EVENT_DELAY"  # seconds, the most a model event waits before it runs
LOG = "DMNET_EVENT_LOG"  # a file: one JSON line per model event run
SESSIONS_KEPT = 4096  # browser tabs whose last outputs and claims are remembered
MODEL_SLOTS = 2  # model events that run the network at once, all browser tabs together

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


_stops: OrderedDict[str, dict] = OrderedDict()  # session -> {"count": Stops, "stopped": bool}
USER_EVENTS = ("click", "input", "select", "upload", "clear", "load", "submit", "release")


class _Run:
    """A model event running now: Stop wakes it (from any thread)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.loop = asyncio.get_running_loop()
        self.woken = asyncio.Event()

    def wake(self) -> None:
        self.loop.call_soon_threadsafe(self.woken.set)


_runs: dict[str, set[_Run]] = {}  # session -> its model events running now


@contextlib.contextmanager
def _running(name: str):
    """Register the model event being run, so that Stop can wake it, for as long as it runs."""
    current, who = _Run(name), session()
    with _lock:
        _runs.setdefault(who, set()).add(current)
    try:
        yield current
    finally:
        with _lock:
            runs = _runs.get(who, set())
            runs.discard(current)
            if not runs:
                _runs.pop(who, None)


def stop(names: Collection[str] | None = None) -> None:
    """Stop, for the browser tab of the event being run (see the module's docstring): its
    running model events end at once writing nothing, and what is left over from before does
    not run. With `names`, only the running events of those functions end (a view's own Stop,
    the sweep's), and the tab is not stopped."""
    with _lock:
        who = session()
        if names is None:
            state = _remember(_stops, who)
            state["count"] = state.get("count", 0) + 1
            state["stopped"] = True
        woken = [r for r in _runs.get(who, ()) if names is None or r.name in names]
    for run in woken:
        run.wake()


def _begin(by_user: bool) -> int | None:
    """The tab's count of Stops as an event begins, or None when it must not run: left over
    from before a Stop. An event a user's action started resumes the tab."""
    with _lock:
        state = _remember(_stops, session())
        if by_user:
            state["stopped"] = False
        elif state.get("stopped"):
            return None
        return state.get("count", 0)


def _stopped_since(count: int) -> bool:
    with _lock:
        return _stops.get(session(), {}).get("count", 0) != count


def started_by_user(dependency: dict) -> bool:
    """Whether an event (Gradio's dependency, as registered) starts on a user's action: its
    triggers are user events, or it follows a direct (unqueued) event that does. A queued
    event's follow-up does not: Gradio's page runs it after a cancel too. A trigger that mixes
    both kinds is refused (its kind would depend on which fired): register them apart."""
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


def _nothing(outputs: Sequence[int]):
    """What an event that must write nothing returns."""
    return gr.skip() if len(outputs) == 1 else tuple(gr.skip() for _ in outputs)


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


async def _pause() -> None:
    """The switch's random delay."""
    most = float(os.environ.get(DELAY) or 0)
    if most > 0:
        await asyncio.sleep(random.uniform(0, most))


def _log(name: str, who: str, began: float, status: str) -> None:
    path = os.environ.get(LOG)
    if path:
        line = json.dumps(dict(fn=name, session=who, start=began, end=time.time(),
                               status=status))
        with _lock, open(path, "a") as f:
            f.write(line + "\n")


_DONE = object()


def _next(it: Iterator):
    return next(it, _DONE)


async def _thread(call: Callable, *args):
    """`call(*args)` in a worker thread, awaited so that Stop (or a cancel) ends the event at
    once: the abandoned work finishes in the background and its result is dropped."""
    return await anyio.to_thread.run_sync(call, *args, abandon_on_cancel=True)


class _Stopped(Exception):
    """Stop woke the event: it ends writing nothing."""


async def _or_stop(run: _Run, awaitable):
    """What `awaitable` gives, unless Stop wakes `run` first (then `_Stopped`; the awaitable is
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
        raise _Stopped
    return task.result()


_semaphores: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # event loop -> slots


@contextlib.asynccontextmanager
async def _slot(run: _Run):
    """One of the `MODEL_SLOTS`, waited for unless Stop wakes `run`."""
    loop = asyncio.get_running_loop()
    slots = _semaphores.setdefault(loop, asyncio.Semaphore(MODEL_SLOTS))
    acquire = asyncio.ensure_future(slots.acquire())
    try:
        await _or_stop(run, acquire)
    except BaseException:
        if acquire.done() and not acquire.cancelled():
            slots.release()
        raise
    try:
        yield
    finally:
        slots.release()


def model_event(fn: Callable, outputs: Sequence[gr.components.Component]) -> Callable:
    """`fn` as a model event writing `outputs` (see the module's docstring): an async function
    (an async generator for a generator) that Stop ends at once, in its delay, while it waits
    for a slot, while a pass runs in its thread, or between steps. Gradio reads the parameters
    (gr.Progress, gr.SelectData) of `fn` itself through `functools.wraps`."""
    ids = [c._id for c in outputs]
    name = fn.__name__

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        async def stream(*args, **kwargs):
            count, began = _begin(stream.by_user), time.time()
            if count is None:
                _log(name, session(), began, "stopped")
                yield _nothing(ids)
                return
            who, ticket = _start(ids)  # in the order the queue started them, before the pause
            status, shown = "cancelled", False
            with _running(name) as current:
                try:
                    await _or_stop(current, _pause())
                    began = time.time()
                    async with _slot(current):
                        status = "error"
                        steps = await _or_stop(current, _thread(functools.partial(fn, *args,
                                                                                  **kwargs)))
                        while (value := await _or_stop(current, _thread(_next, steps))) \
                                is not _DONE:
                            if _stopped_since(count):
                                raise _Stopped
                            shown = True
                            yield _fresh(value, ids, who, ticket)
                    status = "ok"
                except _Stopped:
                    status = "stopped"
                except (GeneratorExit, asyncio.CancelledError):
                    status = "cancelled"
                    raise
                finally:
                    _log(name, who, began, status)
            if status == "stopped" and not shown:
                yield _nothing(ids)  # a generator that yields nothing sends None to each output
        stream.by_user = False  # set where it is registered: `started_by_user`
        return stream

    @functools.wraps(fn)
    async def run(*args, **kwargs):
        count, began = _begin(run.by_user), time.time()
        if count is None:
            _log(name, session(), began, "stopped")
            return _nothing(ids)
        who, ticket = _start(ids)
        status = "cancelled"
        with _running(name) as current:
            try:
                await _or_stop(current, _pause())
                began = time.time()
                async with _slot(current):
                    if _stopped_since(count):
                        raise _Stopped
                    status = "error"
                    value = await _or_stop(current, _thread(functools.partial(fn, *args,
                                                                              **kwargs)))
                if _stopped_since(count):
                    raise _Stopped
                status = "ok"
            except _Stopped:
                status = "stopped"
            except asyncio.CancelledError:
                status = "cancelled"
                raise
            finally:
                _log(name, who, began, status)
        return _nothing(ids) if status == "stopped" else _fresh(value, ids, who, ticket)
    run.by_user = False  # set where it is registered: `started_by_user`
    return run


def freshest(fn: Callable, outputs: Sequence[gr.components.Component]) -> Callable:
    """`fn` (an event that writes a State, no model) with the freshest-wins guard and the Stop
    of `model_event`."""
    ids = [c._id for c in outputs]

    @functools.wraps(fn)
    def run(*args, **kwargs):
        if _begin(run.by_user) is None:
            return _nothing(ids)
        who, ticket = _start(ids)
        return _fresh(fn(*args, **kwargs), ids, who, ticket)
    run.by_user = False  # set where it is registered: `started_by_user`
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
