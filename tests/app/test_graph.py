"""The event graph, read from the built page (Gradio's own dependency list): no event can start
itself again through its outputs, Stop cancels every model event, the table in app/EVENTS.md is
the page's; and the model events' wrapper (`app.flow`): the freshest event wins each output,
the delay switch, the claims of lazy views."""

from __future__ import annotations

import asyncio
import contextvars
import json
import threading
import time
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import gradio as gr
import pytest
from gradio.context import LocalContext

from app.core import flow
from app.tools import graph

ROOT = Path(__file__).resolve().parents[2]


def run(coroutine):
    """Run an event to its end on a loop of its own, in this context (the browser tab set here).

    pytest-playwright's sync API keeps an event loop running in the main thread for the whole
    session, so `asyncio.run` there fails once a browser test has run: use a thread of its own."""
    context = contextvars.copy_context()
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(context.run, asyncio.run, coroutine).result()


@pytest.fixture(scope="module")
def page():
    from app.page import build

    return build()


def test_no_event_can_start_itself_again_through_its_outputs(page):
    assert graph.loops(page) == []


def test_a_loop_through_a_change_listener_is_found():
    with gr.Blocks() as demo:
        a, b = gr.Textbox(), gr.Textbox()
        a.change(lambda v: v, a, b).then(lambda v: v, b, a)  # a -> b, then back into a
        c = gr.Textbox()
        c.input(lambda v: v, c, c)  # `input` is the user's: writing c does not fire it
    found = graph.loops(demo)
    assert found and all(path[0] == path[-1] for path in found)
    ids = {i for path in found for i in path}
    assert ids == {0, 1}  # the chain a -> b -> a; not the `input` listener


def test_a_listener_that_writes_its_own_trigger_is_a_loop():
    with gr.Blocks() as demo:
        t = gr.Number()
        t.change(lambda v: v + 1, t, t)
    assert graph.loops(demo) == [[0, 0]]


def test_stop_is_a_direct_event_and_the_page_cancels_nothing(page):
    """Stop ends the events on the server (`flow.stop`): a cancel by the page can leave an
    output showing "Error" for good (Gradio 6.31, see `app.core.flow`), so no event of the page
    cancels another; and every model event starts at once in Gradio's queue, where Stop
    reaches it (the wrapper bounds the passes that run together)."""
    config = page.get_config_file()
    by_name = {}
    for d in config["dependencies"]:
        fn = page.fns[d["id"]].fn
        by_name.setdefault(getattr(fn, "__name__", None), []).append(d)
    assert [d["cancels"] for d in config["dependencies"] if d["cancels"]] == []
    assert not [d for d in config["dependencies"] if d["types"]["cancel"]]
    for name in ("stop_all", "stop_sweep"):
        (stop,) = by_name[name]
        assert stop["queue"] is False and stop["trigger_after"] is None
    model = [page.fns[d["id"]] for d in config["dependencies"]
             if page.fns[d["id"]].concurrency_id == "model"]
    assert len(model) > 30
    assert {fn.concurrency_limit for fn in model} == {None}
    assert {fn.trigger_mode for fn in model} == {"always_last"}


def test_nothing_listens_to_the_change_of_an_image_or_a_hidden_textbox(page):
    """Gradio's Image fires `change` whenever its value object is replaced (no new image); a
    hidden Textbox's fired with no event writing it. The page's triggers are States."""
    config = page.get_config_file()
    images = {c["id"] for c in config["components"] if c["type"] == "image"
              and c["props"].get("interactive") is not False
              or c["type"] == "textbox" and c["props"].get("visible") in ("hidden", False)}
    assert len(images) >= 3  # A, B and the address's textbox
    for d in config["dependencies"]:
        assert not [t for t in d["targets"] if t[0] in images and t[1] == "change"], d


def test_the_events_table_is_the_pages(page):
    assert (ROOT / "app" / "EVENTS.md").read_text() == graph.markdown(page), \
        "app/EVENTS.md is out of date: python -m app.tools.graph > app/EVENTS.md"


def test_the_table_names_every_endpoint(page):
    apis = {r.api for r in graph.rows(page) if r.api}
    assert {"/load_model", "/upload_checkpoint", "/generate_scene", "/segment", "/branches",
            "/branch_column", "/removals", "/attribution", "/roles", "/ablate", "/compare",
            "/transplant", "/sweep"} <= apis


# --- app.flow ----------------------------------------------------------------------------------

def in_session(name: str):
    return LocalContext.request.set(SimpleNamespace(session_hash=name))


def test_a_late_event_leaves_the_outputs_of_a_later_started_one_alone():
    with gr.Blocks():
        shared, own = gr.Textbox(), gr.Textbox()
    release = threading.Event()

    def slow(v):
        release.wait(10)
        return v, v

    old = flow.model_event(slow, [shared, own])
    new = flow.model_event(lambda v: v, [shared])
    result = {}

    def run_old():
        in_session("tab-1")
        result["old"] = run(old("old"))

    thread = threading.Thread(target=run_old)
    thread.start()
    while not flow._latest.get("tab-1"):  # the old event has started
        threading.Event().wait(0.01)
    token = in_session("tab-1")
    assert run(new("new")) == "new"  # started later, finished first
    LocalContext.request.reset(token)
    release.set()
    thread.join()
    skipped, kept = result["old"]
    assert skipped == gr.skip() and kept == "old"  # only the output the newer one wrote


def test_another_browser_tab_is_not_affected():
    with gr.Blocks():
        out = gr.Textbox()
    first = flow.model_event(lambda v: v, [out])
    token = in_session("tab-a")
    flow._start([out._id])  # a newer event of tab-a owns `out`...
    LocalContext.request.reset(token)
    token = in_session("tab-b")
    assert run(first("b")) == "b"  # ...which does not concern tab-b
    LocalContext.request.reset(token)


def test_the_delay_switch_waits_a_random_time_up_to_its_value(monkeypatch, tmp_path):
    waits = []

    async def sleep(seconds):
        waits.append(seconds)
    monkeypatch.setattr(flow.asyncio, "sleep", sleep)
    monkeypatch.setenv(flow.DELAY, "3")
    monkeypatch.setenv(flow.LOG, str(tmp_path / "events.log"))
    with gr.Blocks():
        out = gr.Textbox()

    def segment(v):
        return v

    wrapped = flow.model_event(segment, [out])
    for _ in range(20):
        run(wrapped(1))
    assert len(waits) == 20 and all(0 <= w <= 3 for w in waits) and len(set(waits)) > 1
    lines = (tmp_path / "events.log").read_text().splitlines()
    assert len(lines) == 20 and all('"fn": "segment"' in line for line in lines)
    monkeypatch.delenv(flow.DELAY)
    waits.clear()
    run(wrapped(1))
    assert waits == []


def test_a_generator_event_is_guarded_at_each_step():
    with gr.Blocks():
        out = gr.Textbox()

    def frames():
        yield "first"
        flow._start([out._id])  # a newer event of the session starts meanwhile
        yield "second"

    async def steps():
        return [v async for v in flow.model_event(frames, [out])()]

    token = in_session("tab-g")
    assert run(steps()) == ["first", gr.skip()]
    LocalContext.request.reset(token)


def blocked(kind: str, first: bool = True):
    """A model event whose pass blocks until released; `busy` is set while it runs. As a
    generator, it yields "first" before the blocking step (unless `first` is False)."""
    busy, release = threading.Event(), threading.Event()

    def work():
        busy.set()
        release.wait(30)
        return "late"

    def frames():
        if first:
            yield "first"
        yield work()

    return (work if kind == "function" else frames), busy, release


@pytest.mark.parametrize("kind", ["function", "generator"])
def test_a_cancel_ends_a_model_event_at_once_in_its_delay_or_its_pass(monkeypatch, tmp_path,
                                                                      kind):
    """A cancel (a client that left) ends the event at once: in the switch's delay, and while
    the pass runs in its thread, whose result is then dropped."""
    monkeypatch.setenv(flow.LOG, str(tmp_path / "events.log"))
    monkeypatch.setattr(flow.random, "uniform", lambda low, high: high)
    with gr.Blocks():
        out = gr.Textbox()
    fn, busy, release = blocked(kind, first=False)
    wrapped = flow.model_event(fn, [out])

    async def cancelled(delay: str) -> float:
        monkeypatch.setenv(flow.DELAY, delay)
        busy.clear()
        if kind == "function":
            task = asyncio.ensure_future(wrapped())
        else:
            task = asyncio.ensure_future(anext(wrapped()))
        await asyncio.sleep(0.3)
        assert busy.is_set() == (delay == "0")  # in the pass, or still in the delay
        began = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic() - began

    try:
        assert run(cancelled("0")) < 0.5
        assert run(cancelled("100")) < 0.5
    finally:
        release.set()
    lines = (tmp_path / "events.log").read_text().splitlines()
    assert [json.loads(line)["status"] for line in lines] == ["cancelled", "cancelled"]


async def outcome(wrapped, kind: str):
    if kind == "function":
        return await wrapped()
    return [value async for value in wrapped()]


@pytest.mark.parametrize("kind", ["function", "generator"])
@pytest.mark.parametrize("where", ["delay", "pass", "slot"])
def test_stop_ends_a_running_model_event_at_once_writing_nothing(monkeypatch, tmp_path, kind,
                                                                 where):
    """Stop (the page's direct event, `flow.stop`) wakes the tab's running events: in the
    switch's delay, while the pass runs in its thread (its result is dropped), or while it waits
    for a slot; each ends at once, normally, writing nothing."""
    monkeypatch.setenv(flow.LOG, str(tmp_path / "events.log"))
    monkeypatch.setattr(flow.random, "uniform", lambda low, high: high)
    monkeypatch.setenv(flow.DELAY, "100" if where == "delay" else "0")
    with gr.Blocks():
        out = gr.Textbox()
    fn, busy, release = blocked(kind)
    wrapped = flow.model_event(fn, [out])
    hog, hog_busy, hog_release = blocked("function")  # holds every slot for "slot"
    hogs = flow.model_event(hog, [gr.Textbox()])

    async def scenario():
        holders = []
        if where == "slot":
            monkeypatch.setattr(flow, "MODEL_SLOTS", 1)
            token = in_session("tab-hog")
            holders.append(asyncio.ensure_future(hogs()))
            LocalContext.request.reset(token)
            while not hog_busy.is_set():
                await asyncio.sleep(0.01)
        task = asyncio.ensure_future(outcome(wrapped, kind))
        await asyncio.sleep(0.3)
        assert busy.is_set() == (where == "pass")
        began = time.monotonic()
        flow.stop()
        result = await task
        ended = time.monotonic() - began
        hog_release.set()
        others = await asyncio.gather(*holders)
        return result, ended, others

    token = in_session(f"tab-stop-{kind}-{where}")
    try:
        result, ended, others = run(scenario())
    finally:
        release.set()
        hog_release.set()
        LocalContext.request.reset(token)
    assert ended < 0.5
    if kind == "function":
        assert result == gr.skip()
    else:
        assert result == (["first"] if where == "pass" else [gr.skip()])  # nothing after Stop
    assert others == (["late"] if where == "slot" else [])  # another tab's event is not stopped
    lines = [json.loads(line) for line in (tmp_path / "events.log").read_text().splitlines()]
    assert [(line["fn"], line["status"]) for line in lines
            if line["session"] == f"tab-stop-{kind}-{where}"] == [(fn.__name__, "stopped")]


def test_the_sweeps_stop_ends_only_the_sweep(monkeypatch, tmp_path):
    monkeypatch.setenv(flow.LOG, str(tmp_path / "events.log"))
    with gr.Blocks():
        one, two = gr.Textbox(), gr.Textbox()
    work, busy, release = blocked("function")

    def sweep():
        yield "0.5x"
        yield work()

    def segment():
        busy.wait(30)
        return "segmented"

    swept, other = flow.model_event(sweep, [one]), flow.model_event(segment, [two])

    async def scenario():
        frames = asyncio.ensure_future(outcome(swept, "generator"))
        segmented = asyncio.ensure_future(other())
        while not busy.is_set():
            await asyncio.sleep(0.01)
        flow.stop(names={"sweep"})
        shown = await frames
        return shown, await segmented

    token = in_session("tab-sweep")
    try:
        shown, segmented = run(scenario())
        assert shown == ["0.5x"]  # it ended at once, the scale it had shown stays
        assert segmented == "segmented"  # the other event wrote its output
        later = flow.model_event(lambda: "runs", [two])
        assert run(later()) == "runs"  # the tab is not stopped: a follow-up still runs
    finally:
        release.set()
        LocalContext.request.reset(token)


def test_at_most_model_slots_passes_run_at_once(monkeypatch):
    with gr.Blocks():
        outs = [gr.Textbox() for _ in range(5)]
    lock, now, most = threading.Lock(), [0], [0]

    def work():
        with lock:
            now[0] += 1
            most[0] = max(most[0], now[0])
        time.sleep(0.2)
        with lock:
            now[0] -= 1
        return "done"

    async def scenario():
        events = [flow.model_event(work, [out]) for out in outs]
        return await asyncio.gather(*(event() for event in events))

    token = in_session("tab-slots")
    assert run(scenario()) == ["done"] * 5
    LocalContext.request.reset(token)
    assert most[0] == flow.MODEL_SLOTS == 2


def test_claims_run_a_view_once_per_key_until_stop():
    claims = flow.Claims()
    token = in_session("tab-c")
    assert claims.claim("branches", "subject 1")
    assert not claims.claim("branches", "subject 1")  # a second trigger of the same action
    assert claims.claim("attribution", "subject 1")  # another view
    assert claims.claim("branches", "subject 2")
    claims.forget()  # Stop
    assert claims.claim("branches", "subject 2")
    LocalContext.request.reset(token)
    token = in_session("tab-d")
    assert claims.claim("branches", "subject 2")  # each browser tab its own
    LocalContext.request.reset(token)


def test_a_lazy_view_runs_when_its_tab_is_open_once_per_subject():
    from app.core import gates as events

    ask = events.gate("branches", "branches")
    token = in_session("tab-lazy")
    assert ask("attribution", "s1") == gr.skip()  # its tab is closed
    assert ask("branches", "") == gr.skip()  # no image
    first = ask("branches", "s1")
    assert first.startswith("s1#")
    assert ask("branches", "s1") == gr.skip()  # the tab switch of the same action
    assert ask("branches", "s2").startswith("s2#")  # a new image
    assert events.ask_compare("compare", "s2", None) == gr.skip()  # no B
    assert events.ask_compare("compare", "s2", "b.png") != gr.skip()
    events.stop_all()
    assert ask("branches", "s2").startswith("s2#")  # after Stop it runs again
    LocalContext.request.reset(token)


def test_a_sweep_of_an_earlier_image_says_so():
    from app.core import gates as events

    assert events.sweep_note("s1", None) == gr.skip()  # never swept
    assert events.sweep_note("s1", "s1") == gr.skip()
    assert "earlier image" in events.sweep_note("s2", "s1")


def test_the_page_knows_which_events_a_user_starts(page):
    """After Stop, only an event a user's action starts runs (and resumes the tab): the
    classification of the built page, checked on the events it must get right."""
    kinds = {}
    for fn in page.fns.values():
        if hasattr(fn.fn, "by_user"):
            triggers = tuple(event for _, event in fn.targets)
            kinds.setdefault(fn.fn.__name__, set()).add((triggers, fn.trigger_after is None,
                                                         fn.fn.by_user))
    assert kinds["own"] == {(("input",), True, True)}  # the user's image
    assert kinds["tab_opened"] == {(("select",), True, True)}
    assert {by for _, root, by in kinds["segment"] if not root} == {False, True}  # the
    # subject's follow-up is not a user's; a click in the overlay (through a direct event) is
    assert all(not by for *_, by in kinds["branches"] | kinds["removals"] | kinds["roles"])
    assert {by for _, _, by in kinds["ask_compare"]} == {False, True}  # B's upload is apart
    assert {by for *_, by in kinds["startup"]} == {True}  # a page's load starts it


def test_a_trigger_mixing_a_users_event_and_a_states_change_is_refused():
    with gr.Blocks():
        state, image, out = gr.State(""), gr.Image(), gr.Textbox()
        with pytest.raises(ValueError, match="both kinds"):
            flow.started_by_user(gr.on([state.change, image.input], lambda *a: "", None, out))


def test_after_stop_only_a_users_event_runs_and_it_resumes_the_tab(monkeypatch, tmp_path):
    monkeypatch.setenv(flow.LOG, str(tmp_path / "events.log"))
    with gr.Blocks():
        out = gr.Textbox()
    left, user = flow.model_event(lambda: "left", [out]), flow.model_event(lambda: "user", [out])
    user.by_user = True
    token = in_session("tab-s")
    assert run(left()) == "left"  # not stopped: it runs
    flow.stop()
    assert run(left()) == gr.skip()  # left over from before Stop: writes nothing
    assert run(user()) == "user"  # a user's action resumes the tab...
    assert run(left()) == "left"  # ...and its follow-ups run
    LocalContext.request.reset(token)
    statuses = [json.loads(line)["status"] for line in
                (tmp_path / "events.log").read_text().splitlines()]
    assert statuses == ["ok", "stopped", "ok", "ok"]


def test_an_event_running_at_stop_writes_nothing(monkeypatch):
    """The event began before Stop and Stop's cancel did not reach it (the page cancels by an
    id that had not come back): it ends writing nothing."""
    with gr.Blocks():
        one, two = gr.Textbox(), gr.Textbox()
    running, release = threading.Event(), threading.Event()

    def work():
        running.set()
        release.wait(10)
        return "a", "b"

    wrapped = flow.model_event(work, [one, two])

    async def scenario():
        task = asyncio.ensure_future(wrapped())
        while not running.is_set():
            await asyncio.sleep(0.01)
        flow.stop()
        release.set()
        return await task

    token = in_session("tab-r")
    assert run(scenario()) == (gr.skip(), gr.skip())
    LocalContext.request.reset(token)
