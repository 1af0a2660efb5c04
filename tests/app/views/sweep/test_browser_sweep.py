"""The scale sweep's animation and the filter transplant, in Debian's Chromium (Playwright).

What a user does: run the sweep, drag the slider, press play; pick a transplant direction and
branch. Each step checks that what is on screen changed (image sources, filter cell colours,
labels), at 1400x1000 and 1280x800. Screenshots land in artifacts/screenshots/.
"""

import re

import pytest
from playwright.sync_api import Page, expect

from ...conftest import settle

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestRemovedIn10Warning")
TIMEOUT = 90_000  # ms; the CPU is shared
SIZES = [(1400, 1000), (1280, 800)]
VISIBLE = "#sweep-animation .sw-frame:not([hidden])"


def open_app(page: Page, server: str, width: int, height: int, image) -> None:
    page.set_viewport_size({"width": width, "height": height})
    page.set_default_timeout(TIMEOUT)
    page.goto(server)
    expect(page.locator("#model-info")).to_contain_text("loaded", timeout=TIMEOUT)
    page.locator("#input-image input[type=file]").set_input_files(str(image))
    expect(page.locator("#overlay img").first).to_be_visible(timeout=TIMEOUT)
    settle(page)  # the upload's later outputs: a click on a busy one lands on its overlay


def shown(page: Page) -> dict:
    """What the visible frame shows: its scale, prediction image and the filter cells' colours."""
    return page.locator(VISIBLE).evaluate(
        "f => ({factor: f.dataset.factor, src: f.querySelector('img').src,"
        " cells: [...f.querySelectorAll('.sw-branch .sw-pair > div:nth-child(2) td')]"
        ".map(td => td.style.background).join(), caption: f.innerText})")


@pytest.mark.parametrize("width,height", SIZES)
def test_the_sweep_slider_and_play_step_through_every_scale(page: Page, server, scene,
                                                           screenshots, width, height):
    open_app(page, server, width, height, scene[0])
    page.get_by_role("tab", name="Scale sweep").click()
    page.get_by_role("button", name=re.compile("Run the scale sweep")).click()
    expect(page.get_by_text(re.compile(r"Done: 6 scales"))).to_be_visible(timeout=TIMEOUT)
    view = page.locator("#sweep-animation")
    expect(view.locator(".sw-frame")).to_have_count(6)
    expect(view.locator(VISIBLE.split(" ", 1)[1])).to_have_count(1)
    start = shown(page)
    assert start["factor"] == "1" and "this is 1×" in start["caption"]
    expect(view.locator(".sw-note")).to_contain_text("Segmentation tab")

    slider = view.locator(".sw-slider")
    box = slider.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()  # drag the thumb to the left end: 0.5x
    page.mouse.move(box["x"] + 1, box["y"] + box["height"] / 2, steps=8)
    page.mouse.up()
    expect(view.locator(".sw-label")).to_contain_text("0.5×")
    small = shown(page)
    assert small["factor"] == "0.5"
    assert small["src"] != start["src"] and small["cells"] != start["cells"]
    assert re.search(r"dynamic part vs 1×: cos -?\d\.\d\d", small["caption"])

    seen = [small["factor"]]
    for _ in range(5):  # the keyboard steps through every other scale
        slider.press("ArrowRight")
        seen.append(shown(page)["factor"])
    assert seen == ["0.5", "0.75", "1", "1.25", "1.5", "2"]
    page.screenshot(path=screenshots / f"10_sweep_slider_{width}x{height}.png", full_page=True)

    play = view.locator(".sw-play")
    # Record every frame the page shows, in order, so that a slow, loaded CPU (which may read
    # the page less often than the timer ticks) still sees each step the timer made.
    view.evaluate(
        "v => { window._sweepSeen = []; new MutationObserver(() => {"
        " const f = v.querySelector('.sw-frame:not([hidden])');"
        " const seen = window._sweepSeen;"
        " if (f && seen[seen.length - 1] !== f.dataset.factor) seen.push(f.dataset.factor); })"
        ".observe(v, {subtree: true, attributes: true, attributeFilter: ['hidden']}); }")
    play.click()
    expect(play).to_have_text(re.compile("pause"))
    page.wait_for_function("() => window._sweepSeen.length >= 4", timeout=30_000)
    played = page.evaluate("() => window._sweepSeen.slice()")
    scales = ["0.5", "0.75", "1", "1.25", "1.5", "2"]
    steps = [(scales.index(b) - scales.index(a)) % len(scales) for a, b in zip(played, played[1:])]
    assert played[0] == "0.5" and steps == [1] * len(steps), played  # from 2x it wraps to 0.5x
    play.click()
    expect(play).to_have_text(re.compile("play"))
    paused = shown(page)["factor"]
    page.wait_for_timeout(2000)
    assert shown(page)["factor"] == paused  # paused stays put
    page.screenshot(path=screenshots / f"11_sweep_played_{width}x{height}.png", full_page=True)


@pytest.mark.parametrize("width,height", SIZES)
def test_transplant_shows_what_the_other_images_filters_change(page: Page, server, scene, photo,
                                                              screenshots, width, height):
    open_app(page, server, width, height, photo)
    page.get_by_role("tab", name="Compare A/B").click()
    page.locator("#input-image-b input[type=file]").set_input_files(str(scene[0]))
    summary = page.locator("#transplant-summary")
    expect(summary).to_contain_text("B with A's filters** in every branch".replace("**", ""),
                                    timeout=TIMEOUT)
    # the panel is far down the tab: its image (loaded lazily) draws once the user scrolls to it
    page.locator("#transplant-moved").scroll_into_view_if_needed()
    expect(page.locator("#transplant-moved img")).to_be_visible()
    before = page.locator("#transplant-moved img").get_attribute("src")
    page.locator("#transplant-direction").get_by_label("A with B's filters").check()
    expect(summary).to_contain_text("A with B's filters in every branch")
    after = page.locator("#transplant-moved img").get_attribute("src")
    assert after != before  # now A (the photo) with B's filters
    page.locator("#transplant-branch").get_by_label("k=7").check()
    expect(summary).to_contain_text("A with B's filters in branch k=7")
    expect(summary).to_contain_text(re.compile(r"\d+\.\d% of A's pixels change class"))
    page.locator("#transplant-summary").scroll_into_view_if_needed()
    page.screenshot(path=screenshots / f"12_transplant_{width}x{height}.png", full_page=True)
