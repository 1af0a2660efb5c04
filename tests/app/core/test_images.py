"""Every kind of input file becomes uint8 RGB with a notice, or a clear InputError; every size
decodes no larger than the model needs, and segments."""

import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import dmnet
from app.core import decoding, images, overlays
from app.core.analysis import analyse, sweep_frame
from app.core.figures import pooling_grid
from app.core.images import (InputError, Picture, fit_to_test_scale, generate_scene, image_key,
                             list_examples, model_input, read_image, read_mask, scene_dataset)

from ..conftest import rgb_noise, short_message, tiny_model, written

SMALL = dmnet.PRESETS["dmnet_r18w32-d8_1xb8-7k_shapes-128x128"]
CITYSCAPES = dmnet.PRESETS["dmnet_r50-d8_4xb2-40k_cityscapes-512x1024"]


def save(tmp_path, name, array, mode=None, **kw):
    path = tmp_path / name
    Image.fromarray(array, mode=mode).save(path, **kw) if mode else \
        Image.fromarray(array).save(path, **kw)
    return path


def test_rgb_is_read_as_it_is(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    pic = read_image(save(tmp_path, "a.png", rgb))
    np.testing.assert_array_equal(pic.image, rgb)
    assert pic.image.dtype == np.uint8 and pic.notices == []


def test_grayscale_rgba_palette_16bit_and_float(tmp_path):
    gray = np.arange(200, dtype=np.uint8).reshape(10, 20)
    pic = read_image(save(tmp_path, "g.png", gray))
    assert pic.image.shape == (10, 20, 3) and "grayscale" in pic.notices[0]
    np.testing.assert_array_equal(pic.image[..., 1], gray)

    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:4, :, 3] = 255  # top half opaque red, bottom half transparent
    pic = read_image(save(tmp_path, "t.png", rgba))
    assert "transparency" in pic.notices[0]
    assert tuple(pic.image[0, 0]) == (200, 0, 0) and tuple(pic.image[7, 0]) == (255, 255, 255)

    deep = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)  # up to 63000
    pic = read_image(save(tmp_path, "d.png", deep))
    assert "16-bit" in pic.notices[0] and pic.image.max() == 255 and pic.image.min() == 0

    floats = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    pic = read_image(save(tmp_path, "f.tiff", floats, mode="F"))
    assert "float" in pic.notices[0] and pic.image.max() == 255

    pal = Image.fromarray(np.arange(16, dtype=np.uint8).reshape(4, 4), mode="P")
    pal.putpalette([v for i in range(256) for v in (i, 255 - i, 0)])
    pal.save(tmp_path / "p.png")
    pic = read_image(tmp_path / "p.png")
    assert tuple(pic.image[0, 1]) == (1, 254, 0)


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header(w: int, h: int) -> bytes:
    """The signature and IHDR of an 8-bit RGB PNG."""
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))


def cut_jpeg(folder: Path) -> Path:
    full = save(folder, "full.jpg", rgb_noise(64, 64)).read_bytes()
    return written(full[: len(full) // 3], "cut.jpg")(folder)


def cut_mask(folder: Path) -> Path:
    full = save(folder, "full_mask.png", rgb_noise(40, 60)[..., 0]).read_bytes()
    return written(full[: len(full) // 2], "cut.png")(folder)


def mask(array: np.ndarray, name: str):
    return lambda folder: save(folder, name, array)


IMAGE = lambda folder: save(folder, "ok.png", rgb_noise(40, 60))  # noqa: E731 -- a good image
LABELS = np.zeros((40, 60), np.uint8)
LABELS[10:20, 10:30] = 9
BAD_INPUTS = {  # what the user gives: (image, true mask or None) -> words of the one message
    "no image": (lambda folder: None, None, "No image yet"),
    "a missing file": (lambda folder: folder / "gone.png", None, "not found: gone.png"),
    "text named .png": (written(b"this is not an image at all", "notes.png"), None,
                        "notes.png is not an image Pillow can read"),
    "an empty file": (written(b"", "empty.png"), None, "empty.png is not an image"),
    "an HTML page": (written(b"<!DOCTYPE html><html>404</html>", "page.jpg"), None,
                     "page.jpg is not an image"),
    "a PNG header only": (written(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "head.png"), None,
                          "head.png"),
    "a truncated JPEG": (cut_jpeg, None, "cut.jpg could not be decoded (truncated or corrupt"),
    "a pixel bomb": (written(png_header(100_000, 100_000) + chunk(b"IEND", b""), "bomb.png"),
                     None, "bomb.png is too large to decode safely"),
    "a truncated true mask": (IMAGE, cut_mask,
                              "the true mask cut.png could not be decoded (truncated"),
    "an RGB true mask": (IMAGE, mask(np.zeros((40, 60, 3), np.uint8), "rgb_mask.png"),
                         "rgb_mask.png must be a single-channel PNG of class ids"),
    "a mask with unknown classes": (IMAGE, mask(LABELS, "classes_mask.png"),
                                    "classes_mask.png has class ids up to 9"),
    "a mask that is no image": (IMAGE, written(b"nope", "text_mask.png"),
                                "the true mask text_mask.png is not an image Pillow can read"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_every_bad_image_or_mask_gets_one_short_message(demo_env, tmp_path, case):
    """Through the action the user triggers (`/segment`): the message words, short, no
    traceback, no server path."""
    from app.views import segmentation

    image, truth, words = BAD_INPUTS[case]
    image, truth = image(tmp_path), truth and truth(tmp_path)
    text = short_message(segmentation.segment, "demo", image and str(image),
                         truth and str(truth), 0.6, None)
    assert words in text
    assert str(tmp_path) not in text


def test_huge_images_are_downscaled_to_the_test_scale_with_a_notice():
    pic = fit_to_test_scale(Picture(np.zeros((1200, 1800, 3), np.uint8)), SMALL)
    assert pic.image.shape == (128, 192, 3)
    assert "downscaled from 1800×1200 to 192×128" in pic.notices[0]
    small = Picture(np.zeros((80, 120, 3), np.uint8))
    assert fit_to_test_scale(small, SMALL) is small  # smaller: kept, upscaled only for the model


def test_model_input_is_the_test_pipeline_of_predict():
    image = np.random.default_rng(0).integers(0, 256, (100, 150, 3), dtype=np.uint8)
    assert model_input(image, SMALL).shape == (128, 192, 3)
    assert model_input(image, CITYSCAPES).shape == (1024, 1536, 3)  # short side to 1024
    # a generated scene (128 px) goes to the demo model at its 192 px test scale
    assert model_input(np.zeros((128, 128, 3), np.uint8), SMALL).shape == (192, 192, 3)


def test_read_mask(tmp_path):
    label = np.zeros((8, 8), np.uint8)
    label[2:4] = 3
    label[5] = 255
    path = save(tmp_path, "m.png", label)
    np.testing.assert_array_equal(read_mask(path, (8, 8), 7), label)
    assert read_mask(path, (4, 4), 7).shape == (4, 4)
    assert read_mask(None, (8, 8), 7) is None


def test_generated_scenes_are_deterministic_and_zoomable():
    a, la = generate_scene(5, 1.0)
    b, lb = generate_scene(5, 1.0)
    assert a.shape == (128, 128, 3) and la.shape == (128, 128)
    assert image_key(a) == image_key(b) and (la == lb).all()
    assert image_key(generate_scene(6, 1.0)[0]) != image_key(a)
    big, lbig = generate_scene(5, 2.0)
    assert big.shape == (128, 128, 3) and set(np.unique(lbig)) <= set(range(7))
    # zoomed in, the background (class 0) covers less of the frame in expectation
    assert (lbig > 0).mean() > 0 and (la > 0).mean() > 0


def test_scenes_of_each_synthetic_dataset_and_what_other_models_get():
    from training.data import SCENES

    for dataset in SCENES:
        image, label = generate_scene(2, 1.0, dataset=dataset)
        sample = SCENES[dataset](2, 0, 128)
        assert np.array_equal(image, sample.image) and np.array_equal(label, sample.label)
    assert scene_dataset("pattern_match") == ("pattern_match", True)
    assert scene_dataset("cityscapes") == ("context_shapes", False)  # its classes are not ours
    with pytest.raises(InputError, match="zoom 1 only"):
        generate_scene(2, 1.5, dataset="pattern_match")  # tiles are the cells of a 128 px input


def test_list_examples_pairs_images_with_masks(tmp_path):
    assert list_examples(tmp_path / "none") == []
    for name in ("b.png", "b_mask.png", "a.jpg", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert list_examples(tmp_path) == [(str(tmp_path / "a.jpg"), None),
                                       (str(tmp_path / "b.png"), str(tmp_path / "b_mask.png"))]


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.mark.parametrize("h,w,shown,note", [
    (1, 1, (1, 1), None),
    (1, 7, (1, 7), None),
    (7, 1, (7, 1), None),
    (3, 2000, (1, 192), "downscaled from 2000×3 to 192×1"),
    (2000, 3, (192, 1), "downscaled from 3×2000 to 1×192"),
    (1, 10000, (1, 192), "downscaled from 10000×1 to 192×1"),
    (1200, 1800, (128, 192), "downscaled from 1800×1200 to 192×128"),  # decoded in strips
])
def test_every_size_and_aspect_segments(tmp_path, model, h, w, shown, note):
    pic = fit_to_test_scale(read_image(save(tmp_path, "a.png", rgb_noise(h, w)), model.preset),
                            model.preset)
    assert pic.image.shape == (*shown, 3)
    assert [n.split(",")[0] for n in pic.notices] == ([note] if note else [])
    a = analyse(model, pic.image)
    assert a.label.shape == shown and a.label.max() < model.preset.num_classes
    assert min(a.input_size) >= 1 and max(a.input_size) == 192
    assert overlays.overlay(pic.image, a.label, a.palette).shape == (*shown, 3)
    thumb = overlays.thumbnail(pic.image, 64)
    assert min(thumb.shape[:2]) >= 1
    assert len(pooling_grid(thumb, a.feature_size, 7).data) > 1
    assert sweep_frame(model, pic.image, 0.5).label.shape == shown


def big_jpeg(tmp_path, orientation: int = 1):
    """A 4000×3000 JPEG (smooth colours), with this EXIF orientation."""
    array = np.asarray(Image.fromarray(rgb_noise(30, 40)).resize((4000, 3000)))
    exif = Image.Exif()
    exif[0x0112] = orientation
    return save(tmp_path, f"big{orientation}.jpg", array, quality=85, exif=exif)


def test_a_large_jpeg_is_decoded_at_an_eighth_of_its_size(tmp_path):
    path = big_jpeg(tmp_path)
    pic = read_image(path, SMALL)
    assert pic.full_size == (3000, 4000) and pic.image.shape == (375, 500, 3)  # draft: 1/8
    fitted = fit_to_test_scale(pic, SMALL)
    assert fitted.image.shape == (144, 192, 3)
    assert fitted.notices[0].startswith("downscaled from 4000×3000 to 192×144")
    whole = fit_to_test_scale(read_image(path), SMALL)  # decoded whole, then downscaled
    assert np.abs(fitted.image.astype(int) - whole.image).mean() < 2


@pytest.mark.parametrize("size", [(40, 30), (4000, 3000)])
def test_exif_orientation_is_applied_reduced_or_not(tmp_path, size):
    array = np.zeros((size[1], size[0], 3), np.uint8)
    array[: size[1] // 4, : size[0] // 4] = (255, 0, 0)  # red top-left corner, as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned: shown after a quarter turn clockwise
    path = save(tmp_path, "turned.jpg", array, quality=95, exif=exif)
    pic = fit_to_test_scale(read_image(path, SMALL), SMALL)
    h, w = pic.image.shape[:2]
    assert h > w  # portrait, as shown
    assert pic.image[1, -2, 0] > 200 and pic.image[-2, 1, 0] < 50  # the corner is now top-right
    if size[0] > 1000:
        assert pic.notices[0].startswith("downscaled from 3000×4000")


@pytest.mark.parametrize("mode,transparency", [("RGB", None), ("RGBA", None), ("L", None),
                                               ("LA", None), ("P", None),
                                               ("P", bytes(range(0, 256, 2)))])
def test_png_strips_reduce_like_the_whole_image(tmp_path, monkeypatch, mode, transparency):
    rng = np.random.default_rng(0)
    channels = len(Image.new(mode, (1, 1)).getbands())
    array = (np.cumsum(rng.integers(0, 9, (301, 257, channels)), axis=1) % 256).astype(np.uint8)
    im = Image.fromarray(array[..., 0] if channels == 1 else array).convert(mode) \
        if mode != "P" else Image.fromarray(array[..., 0]).convert("L").point(lambda v: v // 16)
    if mode == "P":
        im = im.convert("P")
        im.putpalette([v for i in range(256) for v in (i * 16 % 256, 255 - i, 7)])
    im.save(tmp_path / "s.png", **({"transparency": transparency} if transparency else {}))
    monkeypatch.setattr(decoding, "STRIP_BYTES", 5000)  # many strips: 6 scanlines each
    with Image.open(tmp_path / "s.png") as opened:
        assert decoding.is_plain_png(opened)
        strips = decoding.png_reduced(opened, tmp_path / "s.png", 3)
    with Image.open(tmp_path / "s.png") as whole:
        whole.load()
        np.testing.assert_array_equal(np.asarray(strips),
                                      np.asarray(decoding.reducible(whole).reduce(3)))


@pytest.mark.parametrize("w,h", [(100_000, 100_000), (13_000, 12_000)])
def test_pixel_bombs_are_refused_from_the_header(tmp_path, w, h):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header(w, h) + chunk(b"IEND", b""))  # no pixels at all
    with pytest.raises(InputError, match="too large to decode safely"):
        read_image(path, SMALL)


def test_a_truncated_png_decoded_in_strips_is_refused(tmp_path):
    full = save(tmp_path, "full.png", rgb_noise(1200, 900)).read_bytes()
    (tmp_path / "cut.png").write_bytes(full[: len(full) // 2])
    with pytest.raises(InputError, match="truncated or corrupt"):
        read_image(tmp_path / "cut.png", SMALL)


def test_a_9000_px_png_is_decoded_in_little_memory(tmp_path):
    """9000×9000 RGB decoded whole takes 324 MB in Pillow; decoded in strips, a small part."""
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux's /proc to reset and read the peak memory")
    path = tmp_path / "big.png"
    row = b"\0" + rgb_noise(1, 9000).tobytes()  # filter 0; every scanline the same
    deflate = zlib.compressobj(1)
    with open(path, "wb") as f:
        f.write(png_header(9000, 9000))
        for _ in range(90):
            f.write(chunk(b"IDAT", deflate.compress(row * 100)))
        f.write(chunk(b"IDAT", deflate.flush()) + chunk(b"IEND", b""))
    code = f"""
import dmnet
from app.core.images import read_image
def status(key):
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(key))
open("/proc/self/clear_refs", "w").write("5")  # the peak so far is the current size
before = status("VmRSS")
pic = read_image({str(path)!r}, dmnet.PRESETS["{SMALL.name}"])
print(pic.image.shape, (status("VmHWM") - before) // 1024)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(images.__file__).parents[2]).stdout.split()
    assert out[:3] == ["(392,", "392,", "3)"]  # 9000 / 23, rounded up
    assert int(out[3]) < 100, f"decoding took {out[3]} MB"


def test_the_true_mask_is_shown_in_the_models_class_colours(demo_env, scene, tmp_path):
    from app.core import models
    from app.views.sidebar import actions

    image, truth = scene
    shown = actions.true_mask("demo", str(image), str(truth))
    label = np.asarray(Image.open(truth))
    palette = np.asarray(models.get_model("demo").preset.palette, np.uint8)
    assert shown.visible  # the update's value, before the page's component encodes it
    np.testing.assert_array_equal(shown.constructor_args["value"], palette[label])
    assert not actions.true_mask("demo", str(image), None).visible
    bad = save(tmp_path, "rgb_mask.png", np.zeros((*label.shape, 3), np.uint8))
    assert not actions.true_mask("demo", str(image), str(bad)).visible  # /segment says why
