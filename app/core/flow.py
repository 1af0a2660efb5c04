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
  over from before the Stop (`tabstate`) does not run;
- holds one of `MODEL_SLOTS` slots while it runs the network (all tabs together), which bounds
  the CPU and memory that passes take. Gradio's own queue limit is not used for that: an event
  waiting in Gradio's queue can only be cancelled by the page (`tabstate`).

Stop itself, and why it is not Gradio's `cancels`: `tabstate`.

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
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence

import anyio
import gradio as gr

from .tabstate import (LOCK, USER_EVENTS, Run, Stopped, begin, or_stop, remember, running,
                       session, started_by_user, stop, stopped_since)

__all__ = ["CLAIMS", "DELAY", "LOG", "MODEL_SLOTS", "USER_EVENTS", "Claims", "freshest",
           "model_event", "session", "started_by_user", "stop", "token"]

DELAY = "DMNET_EVENT_DELAY"  # seconds, the most a model event waits before it runs
LOG = "DMNET_EVENT_LOG"  # a file: one JSON line per model event run
MODEL_SLOTS = 2  # model events that run the network at once, all browser tabs together

_tickets = itertools.count(1)
_latest: OrderedDict[str, dict[int, int]] = OrderedDict()  # session -> output id -> ticket


def _nothing(outputs: Sequence[int]):
    """What an event that must write nothing returns."""
    return gr.skip() if len(outputs) == 1 else tuple(gr.skip() for _ in outputs)


def _start(outputs: Sequence[int]) -> tuple[str, int]:
    """Take a ticket for these outputs of this session: the newest event to write each."""
    who, ticket = session(), next(_tickets)
    with LOCK:
        latest = remember(_latest, who)
        for i in outputs:
            latest[i] = ticket
    return who, ticket


def _fresh(value, outputs: Sequence[int], who: str, ticket: int):
    """`value` with gr.skip() for each output that a later-started event of the session owns."""
    with LOCK:
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
        with LOCK, open(path, "a") as f:
            f.write(line + "\n")


_DONE = object()


def _next(it: Iterator):
    return next(it, _DONE)


async def _thread(call: Callable, *args):
    """`call(*args)` in a worker thread, awaited so that Stop (or a cancel) ends the event at
    once: the abandoned work finishes in the background and its result is dropped."""
    return await anyio.to_thread.run_sync(call, *args, abandon_on_cancel=True)


_semaphores: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # event loop -> slots


@contextlib.asynccontextmanager
async def _slot(run: Run):
    """One of the `MODEL_SLOTS`, waited for unless Stop wakes `run`."""
    loop = asyncio.get_running_loop()
    slots = _semaphores.setdefault(loop, asyncio.Semaphore(MODEL_SLOTS))
    acquire = asyncio.ensure_future(slots.acquire())
    try:
        await or_stop(run, acquire)
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
            count, began = begin(stream.by_user), time.time()
            if count is None:
                _log(name, session(), began, "stopped")
                yield _nothing(ids)
                return
            who, ticket = _start(ids)  # in the order the queue started them, before the pause
            status, shown = "cancelled", False
            with running(name) as current:
                try:
                    await or_stop(current, _pause())
                    began = time.time()
                    async with _slot(current):
                        status = "error"
                        steps = await or_stop(current, _thread(functools.partial(fn, *args,
                                                                                  **kwargs)))
                        while (value := await or_stop(current, _thread(_next, steps))) \
                                is not _DONE:
                            if stopped_since(count):
                                raise Stopped
                            shown = True
                            yield _fresh(value, ids, who, ticket)
                    status = "ok"
                except Stopped:
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
        count, began = begin(run.by_user), time.time()
        if count is None:
            _log(name, session(), began, "stopped")
            return _nothing(ids)
        who, ticket = _start(ids)
        status = "cancelled"
        with running(name) as current:
            try:
                await or_stop(current, _pause())
                began = time.time()
                async with _slot(current):
                    if stopped_since(count):
                        raise Stopped
                    status = "error"
                    value = await or_stop(current, _thread(functools.partial(fn, *args,
                                                                              **kwargs)))
                if stopped_since(count):
                    raise Stopped
                status = "ok"
            except Stopped:
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
        if begin(run.by_user) is None:
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
        with LOCK:
            views = remember(self._views, session())
            if views.get(view) == key:
                return False
            views[view] = key
            return True

    def forget(self) -> None:
        """Stop: every view of this browser tab runs again when next shown."""
        with LOCK:
            self._views.pop(session(), None)


CLAIMS = Claims()


def token(key: str) -> str:
    """A new value for a view's hidden trigger (its change starts the view's run)."""
    return f"{key}#{time.monotonic_ns()}"
