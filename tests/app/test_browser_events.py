"""The app stays in the user's hands on a slow server: every model event is delayed by a random
0-3 s (`DMNET_EVENT_DELAY`) and a busy process runs on one core beside the server. After the
user's last action the page goes quiet (no request for 30 s, within 60 s), each pick the user
made stays on screen through every late event, each view runs at most once per action, and
Stop ends everything at once. Driven in headless Chromium (Debian's, through Playwright)."""

from __future__ import annotations

import collections
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from playwright.sync_api import Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from .conftest import BUSY, serve, tiny_model

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestRemovedIn10Warning")
TIMEOUT = 120_000  # ms: every model event waits up to 3 s, on a loaded CPU
expect.set_options(timeout=TIMEOUT)
SIZES = [(1400, 1000), (1280, 800)]
QUIET_S, WITHIN_S = 30, 60
VIEWS = ("segment", "branches", "removals", "attribution", "roles", "ablate", "compare",
         "transplant", "sweep")

# In the page: every 50 ms, each watched pick (a JS expression) is compared with the value the
# user gave it; any other value seen on screen is recorded.
WATCH = """picks => {
  window.__picks = picks; window.__seen = window.__seen || [];
  if (window.__watch) clearInterval(window.__watch);
  window.__watch = setInterval(() => {
    for (const [name, [js, want]] of Object.entries(window.__picks)) {
      const got = String(eval(js));
      if (got !== want) window.__seen.push(`${name}: ${got} (picked ${want})`);
    }
  }, 50);
}"""
LEGEND = ("[...document.querySelectorAll('#attribution-legend input')]"
          ".find(i => i.checked)?.value")
RADIO = "[...document.querySelectorAll('{} input')].find(i => i.checked)?.value"
STEP = "document.querySelector('#lesson-step')?.innerText.match(/Step \\d+/)?.[0]"
MODEL = "document.querySelector('#model-picker input')?.value.split(':')[0]"
CHANNEL = "document.querySelector('#compare-channel input')?.value.match(/ch (\\d+)/)?.[1]"
BUSY_OUTPUTS = """sel => [...document.querySelectorAll(sel)].map(w => {
  const box = w.closest('[id]');
  return `${box ? box.id : '?'}: ${w.innerText.replace(/\\s+/g, ' ')}`;
})"""
TICKS = ("[...document.querySelectorAll('#ablation-parts label')]"
         ".filter(l => l.querySelector('input').checked).map(l => l.innerText.trim()).join()")


@pytest.fixture(scope="module")
def busy_core():
    """A CPU-bound process beside the server for the whole module."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    yield
    proc.kill()
    proc.wait()


@pytest.fixture(scope="module")
def slow_server(demo_checkpoint, examples, busy_core, tmp_path_factory):
    """The app with every model event delayed by 0-3 s, a second model to pick, and the log of
    every model event run."""
    folder = tmp_path_factory.mktemp("slow")
    torch.manual_seed(1)
    other = folder / "other_shapes.pth"
    torch.save(tiny_model().state_dict(), other)
    log = folder / "events.log"
    env = {"DMNET_EVENT_DELAY": "3", "DMNET_EVENT_LOG": str(log)}
    with serve(demo_checkpoint, examples, folder / "app.log", ("--checkpoint", str(other)),
               env) as url:
        yield url, log


class Watch:
    """The requests a page sends to the server, the model events run, and the picks."""

    def __init__(self, page: Page, server: str, log: Path) -> None:
        self.page, self.log, self.last = page, log, time.monotonic()
        self.requests: list[tuple[float, str]] = []

        def seen(request) -> None:
            if request.url.startswith(server):
                self.last = time.monotonic()
                what = request.url[len(server):].split("?")[0]
                if request.method == "POST" and "/upload" not in what and request.post_data:
                    body = json.loads(request.post_data)  # an event's: which and from where
                    what += f" fn {body.get('fn_index')} from {body.get('trigger_id')}"
                self.requests.append((self.last, what))
        page.on("request", seen)
        self.picks: dict[str, list[str]] = {}
        self.mark = self.runs_now()

    def runs_now(self) -> int:
        return len(self.log.read_text().splitlines()) if self.log.exists() else 0

    def runs(self) -> collections.Counter:
        """The model events run since the last `quiet`, by function."""
        lines = self.log.read_text().splitlines()[self.mark:]
        return collections.Counter(json.loads(line)["fn"] for line in lines)

    def ran(self, name: str, since: float) -> None:
        """Wait until the model event `name` has run to its end, begun after `since` (wall
        clock): its outputs are on their way to the page."""
        deadline = time.monotonic() + TIMEOUT / 1000
        while time.monotonic() < deadline:
            lines = self.log.read_text().splitlines() if self.log.exists() else []
            if any(run["fn"] == name and run["start"] >= since and run["status"] == "ok"
                   for run in map(json.loads, lines[self.mark:])):
                return
            self.page.wait_for_timeout(100)
        raise AssertionError(f"{name} did not run")

    def pick(self, name: str, js: str, value: str) -> None:
        """From now on the pick `name` (read by `js`) must stay `value` on screen."""
        self.page.wait_for_function(f"want => String({js}) === want", arg=value)
        self.picks[name] = [js, value]
        self.page.evaluate(WATCH, self.picks)

    def quiet(self, since: float, seconds: float = QUIET_S) -> collections.Counter:
        """After the last action (at `since`): no request for `seconds`, beginning within
        WITHIN_S of it, no busy output, and every pick kept. Returns the model events run."""
        while time.monotonic() - self.last < seconds:
            assert self.last - since <= WITHIN_S, (
                f"requests still going {time.monotonic() - since:.0f} s after the last action: "
                + "; ".join(f"{t - since:.1f} s {r}" for t, r in self.requests[-12:]))
            self.page.wait_for_timeout(500)
        busy = self.page.evaluate(BUSY_OUTPUTS, BUSY)
        assert not busy, f"busy with no request for {seconds} s: {busy}"
        assert self.page.evaluate("window.__seen || []") == [], "a pick was overwritten"
        runs = self.runs()
        self.mark = self.runs_now()
        print("since the action:", "; ".join(f"{t - since:.1f} s {r}" for t, r in self.requests
                                             if t >= since - 5))  # shown when a test fails
        print("model events:", dict(runs))
        return runs


def opened(page: Page, url: str, width: int, height: int, log: Path) -> Watch:
    page.set_viewport_size({"width": width, "height": height})
    page.set_default_timeout(TIMEOUT)
    watch = Watch(page, url, log)
    page.goto(url)
    expect(page.locator("#model-info")).to_contain_text("loaded")
    expect(page.locator("#input-notes")).to_contain_text("mIoU against the true mask")
    watch.quiet(time.monotonic(), 5)  # the first page's events are done: the scenario starts
    return watch


def upload(page: Page, selector: str, path: Path) -> None:
    if selector == "#true-mask-file" and not page.locator(selector).is_visible():
        page.get_by_text("True mask (optional").click()  # its accordion
    page.locator(f"{selector} input[type=file]").set_input_files(str(path))


@pytest.mark.parametrize("width,height", SIZES)
def test_image_mask_attribution_pick_then_quiet(page: Page, slow_server, examples, width,
                                               height):
    """The race of the runaway chain: an upload, its mask, the Attribution tab and a legend
    pick in quick succession."""
    url, log = slow_server
    watch = opened(page, url, width, height, log)
    upload(page, "#input-image", examples / "scene7.png")
    upload(page, "#true-mask-file", examples / "scene7_mask.png")
    page.get_by_role("tab", name="Attribution & ablation").click()
    legend = page.locator("#attribution-legend label")
    expect(legend.nth(3)).to_contain_text("k=3")
    legend.nth(3).click()
    watch.pick("legend", LEGEND, "k=3")
    runs = watch.quiet(time.monotonic())
    # at most once per action: two subjects (upload, mask: each may come before or after the
    # tab opened), the tab, the pick
    assert runs["segment"] <= 2 and runs["attribution"] <= 4, runs
    assert runs["roles"] <= 3 and runs["ablate"] <= 3, runs
    assert runs["branches"] == runs["compare"] == 0, runs  # their tabs are closed
    expect(page.locator("#ablation-summary")).to_contain_text("of pixels change class")

    shown = page.locator("#attribution-class label")  # a class filter pick, then a tab switch
    shown.nth(1).click()
    value = page.evaluate(RADIO.format("#attribution-class"))
    watch.pick("class", RADIO.format("#attribution-class"), value)
    page.get_by_role("tab", name="Branches").click()
    runs = watch.quiet(time.monotonic())
    assert runs["branches"] == runs["removals"] == 1 and runs["attribution"] == 1, runs
    assert runs["segment"] == 0, runs


@pytest.mark.parametrize("width,height", SIZES)
def test_b_in_compare_and_a_lesson_step_during_a_chain(page: Page, slow_server, examples, photo,
                                                      width, height):
    url, log = slow_server
    watch = opened(page, url, width, height, log)
    page.get_by_role("tab", name="Compare A/B").click()
    picked_k = time.time()
    page.locator("#compare-k label").filter(has_text="5").click()
    watch.pick("k", RADIO.format("#compare-k"), "5")
    upload(page, "#input-image-b", photo)
    # the channel list of k=5 drawn (as a user waits for the list to change: a list re-drawn
    # under an open menu loses the click), then a channel pick while B's chain runs
    watch.ran("channel_picker", picked_k)
    page.wait_for_function("sel => !document.querySelector(sel)",
                           arg=" ".join(f"#compare-channel {b}," for b in BUSY.split(","))[:-1])
    page.locator("#compare-channel input").click()
    option = page.locator("ul[role=listbox] li").nth(2)
    channel = option.inner_text().split()[1]  # "ch 37 · varies 0.12": the score is k's
    option.click()
    watch.pick("channel", CHANNEL, channel)
    runs = watch.quiet(time.monotonic())
    # three actions: k (its channel list may end after B came), B, the channel pick
    assert runs["compare"] <= 3 and runs["transplant"] <= 1, runs
    expect(page.locator("#compare-pair")).to_contain_text(f"k=5, channel {channel}:")

    upload(page, "#input-image", examples / "scene7.png")  # A changes: Compare runs again
    page.locator("#lesson-next").click()  # and a lesson step while that chain runs
    watch.pick("step", STEP, "Step 1")
    runs = watch.quiet(time.monotonic())
    assert runs["compare"] <= 1 and runs["segment"] == 1, runs  # (the step may leave the tab)


@pytest.mark.parametrize("width,height", SIZES)
def test_a_model_pick_during_a_chain(page: Page, slow_server, examples, width, height):
    url, log = slow_server
    watch = opened(page, url, width, height, log)
    page.get_by_role("tab", name="Attribution & ablation").click()
    upload(page, "#input-image", examples / "coffee.jpg")  # a chain on two tabs' views
    picker = page.get_by_label("Model", exact=True)
    picker.click()
    page.locator("ul[role=listbox] li").filter(has_text="other_shapes.pth").click()
    watch.pick("model", MODEL, "local")
    page.locator("#ablation-mode label").filter(has_text="keep only").click()
    watch.pick("mode", RADIO.format("#ablation-mode"), "keep only")
    page.locator("#ablation-parts").get_by_label("k=3", exact=True).check()
    watch.pick("ticks", TICKS, "k=3,k=7")
    runs = watch.quiet(time.monotonic())
    assert runs["load_model"] == 1 and runs["segment"] <= 2, runs
    expect(page.locator("#model-info")).to_contain_text("other_shapes.pth")


@pytest.mark.parametrize("width,height", SIZES)
def test_stop_during_a_chain_ends_everything(page: Page, slow_server, examples, width, height):
    url, log = slow_server
    # A busy machine can answer the page's `/reset` before the cancel's message reaches it:
    # Gradio 6.31's page then shows "Error" on the cancelled output for good. Answered at once
    # here, so a Stop made of cancels fails on every run (`app.core.flow`).
    page.route("**/gradio_api/reset", lambda route: route.fulfill(
        status=200, content_type="application/json", body='{"success": true}'))
    watch = opened(page, url, width, height, log)
    page.get_by_role("tab", name="Attribution & ablation").click()
    upload(page, "#input-image", examples / "scene7.png")
    expect(page.locator(BUSY).first).to_be_visible()
    page.locator("#stop").click()
    stopped = time.monotonic()  # the click has landed: 2 s for every event to end
    try:
        page.wait_for_function(f"() => !document.querySelector('{BUSY}')", timeout=2_000)
    except PlaywrightTimeout:
        busy = page.evaluate(BUSY_OUTPUTS, BUSY)
        raise AssertionError(f"busy 2 s after Stop: {busy}; requests since: " + "; ".join(
            f"{t - stopped:.1f} s {r}" for t, r in watch.requests if t >= stopped)) from None
    watch.quiet(stopped)
