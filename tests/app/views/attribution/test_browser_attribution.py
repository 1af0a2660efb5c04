"""The attribution map, its pixel readout and filters, branch roles, and the removal panels, as a
visitor uses them in headless Chromium (Debian's, through Playwright)."""

import re

import pytest
from playwright.sync_api import Page, expect

from ...conftest import settle

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestRemovedIn10Warning")
TIMEOUT = 90_000  # ms; the CPU is shared
expect.set_options(timeout=TIMEOUT)
SIZES = [(1400, 1000), (1280, 800)]

SRC = "sel => document.querySelector(sel + ' img')?.src || ''"
BARS = "() => JSON.stringify(document.querySelector('#pixel-bars .js-plotly-plot')?.data?.[0]?.y)"
# Share of a removal panel's pixels drawn as changed: not the dimmed input, which is a light
# gray (r = g = b >= 150, `overlays.changes`) in this lossless PNG.
CHANGED = """async sel => { const img = document.querySelector(sel + ' img');
  img.loading = 'eager'; await img.decode();  // images below the fold load lazily
  const c = document.createElement('canvas'); c.width = img.naturalWidth;
  c.height = img.naturalHeight; const g = c.getContext('2d'); g.drawImage(img, 0, 0);
  const d = g.getImageData(0, 0, c.width, c.height).data; let n = 0;
  for (let i = 0; i < d.length; i += 4) {
    if (d[i] !== d[i + 1] || d[i + 1] !== d[i + 2] || d[i] < 150) n++; }
  return n / (c.width * c.height); }"""


def changed(page: Page, js: str, arg, before: str) -> str:
    """Wait until `js(arg)` differs from `before`; return the new value."""
    page.wait_for_function(f"([a, b]) => ({js})(a) !== b", arg=[arg, before])
    return page.evaluate(js, arg)


@pytest.fixture
def opened(page: Page, server):
    def open_at(width: int, height: int) -> Page:
        page.set_viewport_size({"width": width, "height": height})
        page.set_default_timeout(TIMEOUT)
        page.goto(server)
        expect(page.locator("#model-info")).to_contain_text("loaded")
        page.get_by_text("scene7_mask.png").click()  # an example with its true mask
        expect(page.locator("#input-notes")).to_contain_text("mIoU against the true mask")
        page.get_by_role("tab", name="Attribution & ablation").click()
        expect(page.locator("#ablation-summary")).to_contain_text("of pixels change class")
        settle(page)  # the example's events may still run after the first summary
        return page
    return open_at


@pytest.mark.parametrize("width,height", SIZES)
def test_a_pixel_click_splits_its_margin_and_the_filters_redraw(opened, screenshots, width,
                                                                height):
    page = opened(width, height)
    bars = page.locator("#pixel-bars")
    expect(bars).to_contain_text(re.compile(r"feature cell \(row \d+, col \d+\)"))
    before = page.evaluate(BARS, None)
    image = page.locator("#attribution-map img")
    box = image.bounding_box()
    assert box["width"] >= 380  # shown large, not 128 px
    image.click(position={"x": box["width"] * 0.15, "y": box["height"] * 0.2})
    first = changed(page, BARS, None, before)
    title = bars.locator(".gtitle").text_content()
    image.click(position={"x": box["width"] * 0.8, "y": box["height"] * 0.75})
    second = changed(page, BARS, None, first)
    assert len(eval(first)) == len(eval(second)) == 6  # x, k=1, 3, 5, 7 and the shift
    assert bars.locator(".gtitle").text_content() != title  # another cell
    page.screenshot(path=screenshots / f"20_attribution_{width}x{height}.png", full_page=True)

    src = page.evaluate(SRC, "#attribution-map")
    page.locator("#attribution-class label").nth(1).click()  # the first class present
    src = changed(page, SRC, "#attribution-map", src)
    table = page.locator("#attribution-classes")
    expect(table).to_contain_text("all classes")
    page.locator("#attribution-opacity input[type=number]").fill("0.7")
    src = changed(page, SRC, "#attribution-map", src)
    legend = page.locator("#attribution-legend label")
    expect(legend).to_have_count(6)  # every input, x, k=1, 3, 5, 7: chips with their shares
    expect(legend.nth(3)).to_contain_text(re.compile(r"k=3 · \d+%"))
    legend.nth(3).click()  # k=3 in the legend: only the pixels k=3 decides
    src = changed(page, SRC, "#attribution-map", src)
    expect(page.locator("#attribution-legend input:checked")).to_have_value("k=3")
    page.screenshot(path=screenshots / f"21_attribution_filtered_{width}x{height}.png",
                    full_page=True)
    legend.first.click()  # every input again
    changed(page, SRC, "#attribution-map", src)

    src = page.evaluate(SRC, "#ablation-changes")
    page.locator("#ablation-class label").last.click()  # the other classes' pixels dim
    src = changed(page, SRC, "#ablation-changes", src)
    page.locator("#ablation-opacity input[type=number]").fill("0")
    changed(page, SRC, "#ablation-changes", src)


@pytest.mark.parametrize("width,height", SIZES)
def test_roles_by_object_size_and_the_branch_removal_panels(opened, screenshots, width, height):
    page = opened(width, height)
    table = page.locator("#roles-table")
    expect(table).to_contain_text("without k=3")
    expect(table).to_contain_text(re.compile(r"tiny|small|medium|large"))
    expect(page.locator("#roles-plot .js-plotly-plot")).to_be_visible()
    expect(page.locator("#roles-note")).to_contain_text(  # one sentence per object size
        re.compile(r"(tiny|small|medium|large) objects \(\d+\): \S+ decides \d+% of their pixels"))
    page.locator("#roles").scroll_into_view_if_needed()
    page.screenshot(path=screenshots / f"22_roles_{width}x{height}.png", full_page=True)

    page.get_by_role("tab", name="Branches").click()
    shares = {}
    for key, name in (("x", "x"), ("1", "k=1"), ("3", "k=3"), ("5", "k=5"), ("7", "k=7")):
        note = page.locator(f"#removed-note-{key}")
        expect(note).to_contain_text(re.compile(rf"removing {name} changes [\d.]+% of pixels"))
        expect(note).to_contain_text("Accuracy on objects")
        said = float(re.search(r"changes ([\d.]+)%", note.inner_text()).group(1))
        shares[key] = (said, 100 * page.evaluate(CHANGED, f"#removed-{key}"))
    assert max(said for said, _ in shares.values()) > 0  # some removal changes something
    for said, drawn in shares.values():  # and the panel draws just the pixels it counts
        assert drawn == pytest.approx(said, abs=0.06)
    page.locator("#column-3").scroll_into_view_if_needed()
    page.screenshot(path=screenshots / f"23_branch_removals_{width}x{height}.png",
                    full_page=True)


def hover(image, fx: float, fy: float) -> tuple[float, float]:
    """Put the pointer on an `image` at fractions (fx, fy) of its size, as a user does; returns
    that point on the page. Gradio's images load lazily: one below the fold has no size until
    it comes near the viewport, and grows when it loads, so a box read before that would send
    the pointer past it. So the image is loaded first, and Playwright's hover scrolls it into
    view and waits until it stands still and nothing covers that point."""
    image.evaluate("async img => { img.loading = 'eager'; await img.decode(); }")
    box = image.bounding_box()
    image.hover(position={"x": box["width"] * fx, "y": box["height"] * fy})
    box = image.bounding_box()
    return box["x"] + box["width"] * fx, box["y"] + box["height"] * fy


READOUT = "() => [...document.querySelectorAll('#pixel-hover .hv-value')].map(e => e.textContent)"


@pytest.mark.parametrize("width,height", SIZES)
def test_hovering_the_map_reads_out_the_cell_under_the_pointer(opened, screenshots, width,
                                                               height):
    page = opened(width, height)
    readout = page.locator("#pixel-hover")
    expect(readout).to_contain_text("Move the pointer over the map")
    image = page.locator("#attribution-map img")
    title = readout.locator(".hv-title")
    cell = re.compile(r"cell \(row (\d+), col (\d+)\): .+ beats .+ by [\d.]+")
    hover(image, 0.8, 0.2)
    expect(title).to_have_text(cell)
    first = title.text_content()
    frame = page.locator("#pixel-hover .hv-frame").bounding_box()
    box = image.bounding_box()
    assert box["x"] + box["width"] / 2 < frame["x"] + frame["width"] / 2 < box["x"] + box["width"]
    at = hover(image, 0.3, 0.65)  # another cell: other bars, the frame follows the pointer
    expect(title).not_to_have_text(first)
    hovered = cell.search(title.text_content()).groups()
    moved = page.locator("#pixel-hover .hv-frame").bounding_box()
    assert moved["x"] <= at[0] <= moved["x"] + moved["width"]
    assert moved["y"] <= at[1] <= moved["y"] + moved["height"]
    values = [float(v.replace("−", "-")) for v in page.evaluate(READOUT)]
    assert len(values) == 6  # x, k=1, 3, 5, 7 and the shift
    page.screenshot(path=screenshots / f"24_attribution_hover_{width}x{height}.png")

    before = page.evaluate(BARS, None)
    page.mouse.click(*at)  # the click pins the same cell: the server's bars agree
    clicked = eval(changed(page, BARS, None, before))
    expect(page.locator("#pixel-bars .gtitle")).to_contain_text(
        f"(row {hovered[0]}, col {hovered[1]})")
    assert clicked == pytest.approx(values, abs=0.011)
    page.mouse.move(1, 1)  # off the map: the hint again
    expect(readout).to_contain_text("Move the pointer over the map")
    expect(page.locator("#pixel-hover .hv-frame")).to_be_hidden()


@pytest.mark.parametrize("width,height", SIZES)
def test_hovering_the_changed_pixels_says_what_the_removal_did_there(opened, screenshots, width,
                                                                     height):
    page = opened(width, height)  # the ablation shown: k=7 removed
    readout = page.locator("#changes-hover")
    image = page.locator("#ablation-changes img")
    expect(readout).to_contain_text("Move the pointer over the map")
    title = readout.locator(".hv-title")
    readout_of_a_cell = re.compile(
        r"cell \(row \d+, col \d+\): (stays .+|.+ becomes .+) without k=7")
    seen = set()
    for fx, fy in ((0.2, 0.2), (0.5, 0.5), (0.8, 0.7)):
        hover(image, fx, fy)
        expect(title).to_have_text(readout_of_a_cell)
        seen.add(title.text_content())
        expect(readout.locator(".hv-gone .hv-name")).to_have_text("k=7 ✕")  # struck through
        expect(readout.locator(".hv-row")).to_have_count(6)
    assert len(seen) == 3  # each cell its own readout
    last = title.text_content()
    # The wheel scrolls the map under the still pointer: the readout follows to the cell now
    # under it (three cells' worth of pixels away), it does not vanish.
    page.mouse.wheel(0, -60 if page.evaluate("scrollY") >= 60 else 60)
    expect(title).not_to_have_text(last)
    expect(title).to_have_text(readout_of_a_cell)
    page.screenshot(path=screenshots / f"25_changes_hover_{width}x{height}.png")


@pytest.mark.parametrize("width,height", SIZES)
def test_taps_summed_makes_the_ticked_branches_1x1(opened, screenshots, width, height):
    page = opened(width, height)  # the ablation shown: k=7 removed
    summary = page.locator("#ablation-summary")
    src = page.evaluate(SRC, "#ablation-changes")
    page.locator("#ablation-mode").get_by_label("taps summed").check()
    page.locator("#ablation-parts").get_by_label("k=3", exact=True).check()
    page.get_by_role("button", name="Ablate").click()
    expect(summary).to_contain_text(re.compile(
        r"The filters of k=3, k=7 made 1x1: .* [\d.]+% of pixels change class"))
    summed = changed(page, SRC, "#ablation-changes", src)  # the map shows this ablation
    expect(page).to_have_url(re.compile(r"ablation=taps"))
    settle(page)
    page.locator("#ablation-parts").get_by_label("k=3", exact=True).uncheck()
    page.locator("#ablation-parts").get_by_label("k=7", exact=True).uncheck()
    page.get_by_role("button", name="Ablate").click()  # no branch ticked: nothing to sum
    expect(page.locator(".toast-body").filter(has_text="Tick a branch with k > 1")).to_be_visible()
    settle(page)  # a message, and the last ablation stays on screen
    assert page.evaluate(SRC, "#ablation-changes") == summed
    expect(summary).to_contain_text("made 1x1")
    expect(page.locator("[data-testid=status-tracker]").filter(has_text="Error")).to_have_count(0)
    summary.scroll_into_view_if_needed()
    page.screenshot(path=screenshots / f"26_taps_summed_{width}x{height}.png")
