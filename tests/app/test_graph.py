"""The event graph, read from the built page (Gradio's own dependency list): no event can start
itself again through its outputs, Stop cancels every model event, the table in app/EVENTS.md is
the page's; and the model events' wrapper (`app.flow`): the freshest event wins each output,
the delay switch, the claims of lazy views."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import pytest
from gradio.context import LocalContext

from app import flow, graph

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def page():
    from app.ui import build

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


def test_stop_cancels_every_model_event_and_they_run_always_last(page):
    config = page.get_config_file()
    model = [d["id"] for d in config["dependencies"]
             if page.fns[d["id"]].concurrency_id == "model"]
    assert len(model) > 30
    stop = [d for d in config["dependencies"] if page.fns[d["id"]].fn is not None
            and page.fns[d["id"]].fn.__name__ == "stop_all"]
    assert len(stop) == 1  # forgets the claims; Gradio adds the cancelling step beside it
    cancels = [d for d in config["dependencies"] if d["types"]["cancel"]
               and d["targets"] == stop[0]["targets"]]
    stateful = [d["id"] for d in config["dependencies"]
                if page.fns[d["id"]].concurrency_id == "page"]  # they start the views
    assert len(cancels) == 1 and set(cancels[0]["cancels"]) == set(model) | set(stateful)
    modes = {d["trigger_mode"] for d in config["dependencies"] if d["id"] in model}
    assert modes == {"always_last"}


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
        "app/EVENTS.md is out of date: python -m app.graph > app/EVENTS.md"


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
        result["old"] = old("old")

    thread = threading.Thread(target=run_old)
    thread.start()
    while not flow._latest.get("tab-1"):  # the old event has started
        threading.Event().wait(0.01)
    token = in_session("tab-1")
    assert new("new") == "new"  # started later, finished first
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
    assert first("b") == "b"  # ...which does not concern tab-b
    LocalContext.request.reset(token)


def test_the_delay_switch_waits_a_random_time_up_to_its_value(monkeypatch, tmp_path):
    waits = []
    monkeypatch.setattr(flow.time, "sleep", waits.append)
    monkeypatch.setenv(flow.DELAY, "3")
    monkeypatch.setenv(flow.LOG, str(tmp_path / "events.log"))
    with gr.Blocks():
        out = gr.Textbox()

    def segment(v):
        return v

    wrapped = flow.model_event(segment, [out])
    for _ in range(20):
        wrapped(1)
    assert len(waits) == 20 and all(0 <= w <= 3 for w in waits) and len(set(waits)) > 1
    lines = (tmp_path / "events.log").read_text().splitlines()
    assert len(lines) == 20 and all('"fn": "segment"' in line for line in lines)
    monkeypatch.delenv(flow.DELAY)
    waits.clear()
    wrapped(1)
    assert waits == []


def test_a_generator_event_is_guarded_at_each_step():
    with gr.Blocks():
        out = gr.Textbox()

    def frames():
        yield "first"
        flow._start([out._id])  # a newer event of the session starts meanwhile
        yield "second"

    token = in_session("tab-g")
    assert list(flow.model_event(frames, [out])()) == ["first", gr.skip()]
    LocalContext.request.reset(token)


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
    from app import gates as events

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
    from app import gates as events

    assert events.sweep_note("s1", None) == gr.skip()  # never swept
    assert events.sweep_note("s1", "s1") == gr.skip()
    assert "earlier image" in events.sweep_note("s2", "s1")
