"""The real app in headless Chromium (Debian's, through Playwright): what a visitor sees.

Screenshots of every tab land in artifacts/screenshots/ (gitignored) as test artifacts.
"""

import io
import re

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Page, expect

from app.core.images import generate_scene

from .conftest import serve, settle

# pytest-playwright 0.10 defines base_url as an instance method, which pytest 9 deprecates.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestRemovedIn10Warning")
TIMEOUT = 60_000  # ms; the CPU is shared
expect.set_options(timeout=TIMEOUT)


@pytest.fixture
def app_page(page: Page, server) -> Page:
    page.set_viewport_size({"width": 1600, "height": 1100})
    page.set_default_timeout(TIMEOUT)
    page.goto(server)
    expect(page.locator("#model-info")).to_contain_text("loaded")  # the demo model is ready
    settle(page)
    return page


def test_example_overlay_and_the_four_branch_columns(app_page: Page, screenshots):
    page = app_page
    page.screenshot(path=screenshots / "00_start.png", full_page=True)
    page.get_by_text("scene7_mask.png").click()  # an example row: a scene with its true mask
    legend = page.locator("#overlay").get_by_text("background", exact=True)
    expect(legend).to_be_visible()
    expect(page.locator("#overlay img").first).to_be_visible()
    expect(page.locator("#input-notes")).to_contain_text("mIoU against the true mask")
    expect(page.locator("#true-mask img")).to_be_visible()  # the example's mask, as an image
    page.screenshot(path=screenshots / "01_segmentation.png", full_page=True)
    settle(page)  # the example's later outputs; a click on a busy one lands on its overlay
    legend.click()  # selecting a class in the legend highlights it
    expect(page.locator("#highlight input")).to_have_value("background")

    page.get_by_role("tab", name="Branches").click()
    for k in ("x", "1", "3", "5", "7"):
        column = page.locator(f"#column-{k}")
        expect(column).to_be_visible()
        expect(column.locator(".js-plotly-plot").first).to_be_visible()
        expect(column.get_by_text(re.compile(r"changes [\d.]+% of pixels"))).to_be_visible()
    for k in ("1", "3", "5", "7"):  # filter heatmap, pooling grid, two activation maps
        expect(page.locator(f"#column-{k} .js-plotly-plot")).to_have_count(4)
    page.screenshot(path=screenshots / "02_branches.png", full_page=True)

    page.get_by_role("tab", name="Attribution & ablation").click()
    expect(page.get_by_text(re.compile(r"of pixels change class"))).to_be_visible()
    page.screenshot(path=screenshots / "03_attribution.png", full_page=True)


def test_upload_compare_sweep_and_about(app_page: Page, screenshots, scene, photo, tmp_path):
    page = app_page
    page.locator("#input-image input[type=file]").set_input_files(str(photo))
    expect(page.locator("#overlay img").first).to_be_visible()
    expect(page.locator("#input-notes")).to_contain_text("downscaled from 600×400 to 192×128")

    page.get_by_role("tab", name="Compare A/B").click()
    page.locator("#input-image-b input[type=file]").set_input_files(str(scene[0]))
    expect(page.get_by_text("dynamic cosine", exact=True)).to_be_visible()
    expect(page.locator("#compare-pair .js-plotly-plot")).to_be_visible()
    page.screenshot(path=screenshots / "04_compare.png", full_page=True)

    page.get_by_role("tab", name="Scale sweep").click()
    page.get_by_role("button", name=re.compile("Run the scale sweep")).click()
    expect(page.get_by_text(re.compile(r"Done: 6 scales"))).to_be_visible()
    expect(page.locator("#sweep-animation .sw-frame:not([hidden]) img")).to_be_visible()
    page.screenshot(path=screenshots / "05_sweep.png", full_page=True)

    page.get_by_role("tab", name="About DMNet").click()
    expect(page.locator("svg[aria-label='DMNet architecture']")).to_be_visible()
    page.screenshot(path=screenshots / "06_about.png", full_page=True)

    # an image of the user's own (not an example's file): a link cannot carry it, so "Copy link"
    # says so, and the page the link opens says so too
    own = tmp_path / "my_photo.png"
    Image.open(photo).crop((0, 0, 300, 200)).save(own)
    page.get_by_role("tab", name="Segmentation").click()
    page.locator("#input-image input[type=file]").set_input_files(str(own))
    expect(page).to_have_url(re.compile(r"image=yours"))
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.locator("#copy-link").click()
    expect(page.locator("#copy-link")).to_contain_text("without your image")
    opened = page.context.new_page()
    opened.goto(page.url)
    expect(opened.locator("#link-note")).to_contain_text("cannot carry")
    opened.close()


def test_a_corrupt_upload_shows_a_message_not_a_traceback(app_page: Page, tmp_path, screenshots):
    bad = tmp_path / "corrupt.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 50)
    app_page.locator("#input-image input[type=file]").set_input_files(str(bad))
    toast = app_page.locator(".toast-body").filter(
        has_text=re.compile(r"corrupt\.png (is not an image|could not be decoded)"))
    expect(toast.first).to_be_visible()
    expect(app_page.get_by_text("Traceback")).to_have_count(0)
    app_page.wait_for_timeout(600)  # the toast slides in
    app_page.screenshot(path=screenshots / "07_bad_input.png")


@pytest.fixture(scope="module")
def server_with_a_broken_checkpoint(demo_checkpoint, tmp_path_factory):
    """The app with a server checkpoint that is an HTML error page saved as .pth."""
    folder = tmp_path_factory.mktemp("broken")
    (folder / "broken.pth").write_bytes(b"<html>502 Bad Gateway</html>")
    with serve(demo_checkpoint, None, folder / "app.log",
               ("--checkpoint", str(folder / "broken.pth"))) as url:
        yield url


@pytest.mark.parametrize("width,height", [(1400, 1000), (1280, 800)])
def test_a_failed_pick_shows_one_message_and_goes_back_to_the_model_in_use(
        page: Page, server_with_a_broken_checkpoint, screenshots, width, height):
    page.set_viewport_size({"width": width, "height": height})
    page.set_default_timeout(TIMEOUT)
    page.goto(server_with_a_broken_checkpoint)
    info = page.locator("#model-info")
    expect(info).to_contain_text("loaded")
    picker = page.get_by_label("Model", exact=True)
    expect(picker).to_have_value(re.compile(r"^demo: .* · loaded$"))  # the picker has settled
    in_use = picker.input_value()
    settle(page)
    picker.click()
    page.locator("ul[role=listbox] li").filter(has_text="local: broken.pth").click()
    toast = page.locator(".toast-body")
    expect(toast.filter(has_text="broken.pth is not a PyTorch checkpoint")).to_have_count(1)
    page.wait_for_timeout(3000)  # any second message would be here by now
    expect(toast).to_have_count(1)
    expect(picker).to_have_value(in_use)  # back to the demo, which is still the one in use
    expect(info).to_contain_text("demo: small DMNet")
    expect(page.locator("[data-testid=status-tracker]").filter(has_text="Error")).to_have_count(0)
    page.screenshot(path=screenshots / f"08_failed_pick_{width}x{height}.png")


def overlay_sources(page: Page) -> list[str]:
    return page.locator("#overlay img").evaluate_all("imgs => imgs.map(i => i.src)")


def first_page(page: Page, server: str, width: int, height: int) -> list[str]:
    """Open the app at this size, wait for the first example's overlay; its image sources."""
    page.set_viewport_size({"width": width, "height": height})
    page.set_default_timeout(TIMEOUT)
    page.goto(server)
    expect(page.locator("#model-info")).to_contain_text("loaded")
    expect(page.locator("#overlay img").nth(1)).to_be_visible()  # the first page's example
    settle(page)
    return overlay_sources(page)


@pytest.mark.parametrize("width,height", [(1400, 1000), (1280, 800)])
def test_typing_an_opacity_redraws_the_overlay_at_once(page: Page, server, scene, width, height):
    first = first_page(page, server, width, height)
    page.locator("#input-image input[type=file]").set_input_files(str(scene[0]))
    page.wait_for_function("first => document.querySelector('#overlay img')?.src !== first[0]",
                           arg=first)  # the uploaded image and its masks
    expect(page.locator("#overlay img").nth(1)).to_be_visible()
    before = overlay_sources(page)
    page.locator("#opacity input[type=number]").fill("0.1")  # typed, the box keeps the focus
    page.wait_for_function("before => [...document.querySelectorAll('#overlay img')]"
                           ".map(i => i.src).join() !== before.join()", arg=before)
    after = overlay_sources(page)
    assert after[0] == before[0] and after[1:] != before[1:]  # same image, fainter class masks


@pytest.mark.parametrize("width,height", [(1400, 1000), (1280, 800)])
def test_compare_redraws_on_another_k_or_channel(page: Page, server, scene, photo, width, height):
    page.set_viewport_size({"width": width, "height": height})
    page.set_default_timeout(TIMEOUT)
    page.goto(server)
    expect(page.locator("#model-info")).to_contain_text("loaded")
    page.locator("#input-image input[type=file]").set_input_files(str(photo))
    expect(page.locator("#overlay img").first).to_be_visible()
    page.get_by_role("tab", name="Compare A/B").click()
    page.locator("#input-image-b input[type=file]").set_input_files(str(scene[0]))
    pair = page.locator("#compare-pair")
    expect(pair).to_contain_text(re.compile(r"k=3, channel \d+"))
    responses = [page.locator(f"#compare-act-{x}") for x in "ab"]  # the channel over A and B
    for name, shown in zip("AB", responses, strict=True):
        expect(shown).to_contain_text(re.compile(name + r": what k=3 channel \d+ responds to"))
    page.get_by_label("5", exact=True).check()  # another filter size: no Compare click
    expect(pair).to_contain_text(re.compile(r"k=5, channel \d+"))
    expect(responses[0]).to_contain_text(re.compile(r"A: what k=5 channel \d+"))
    picker = page.get_by_label("channel (most input-dependent first)")
    settle(page)
    picker.click()
    option = page.locator("ul[role=listbox] li").nth(2)  # the third most input-dependent
    channel = re.match(r"ch (\d+)", option.inner_text()).group(1)
    option.click()
    expect(pair).to_contain_text(f"k=5, channel {channel}:")
    expect(responses[1]).to_contain_text(f"B: what k=5 channel {channel} responds to")


@pytest.mark.parametrize("width,height", [(1400, 1000), (1280, 800)])
def test_generate_a_scene_of_the_models_own_data(page: Page, server, screenshots, width, height):
    """A seed and "Generate a scene" give a new picture with its true mask, segmented against it,
    and the address names the scene (the served demo is read as a MultiScaleShapes model)."""
    first = first_page(page, server, width, height)
    seed = page.get_by_label("scene seed", exact=True)
    seed.fill("5")
    seed.press("Enter")
    page.get_by_role("button", name="Generate a scene").click()
    page.wait_for_function("first => document.querySelector('#overlay img')?.src !== first[0]",
                           arg=first)
    expect(page.locator("#true-mask img")).to_be_visible()
    expect(page.locator("#input-notes")).to_contain_text("mIoU against the true mask")
    expect(page).to_have_url(re.compile(r"seed=5"))
    shown = page.locator("#input-image img").first.get_attribute("src")
    with Image.open(io.BytesIO(page.request.get(shown).body())) as im:
        pixels = np.asarray(im.convert("RGB"))
    assert np.array_equal(pixels, generate_scene(5, 1.0, dataset="multiscale_shapes")[0])
    page.locator("#input-image").scroll_into_view_if_needed()
    page.screenshot(path=screenshots / f"09_generated_scene_{width}x{height}.png")
