"""Every kind of input file becomes uint8 RGB with a notice, or a clear InputError."""

import numpy as np
import pytest
from PIL import Image

import dmnet
from app.images import (InputError, Picture, fit_to_test_scale, generate_scene, image_key,
                        list_examples, model_input, read_image, read_mask)

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


@pytest.mark.parametrize("content,match", [
    (b"this is not an image at all", "not an image"),
    (b"", "not an image"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "not an image|could not be decoded"),
])
def test_corrupt_files_give_clear_errors(tmp_path, content, match):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(InputError, match=match):
        read_image(path)


def test_truncated_and_missing_files(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    full = save(tmp_path, "full.jpg", rgb).read_bytes()
    (tmp_path / "cut.jpg").write_bytes(full[: len(full) // 3])
    with pytest.raises(InputError, match="truncated or corrupt"):
        read_image(tmp_path / "cut.jpg")
    with pytest.raises(InputError, match="not found"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(InputError, match="No image"):
        read_image(None)


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
    with pytest.raises(InputError, match="class ids up to 3"):
        read_mask(path, (8, 8), 3)
    rgb = save(tmp_path, "rgb.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(InputError, match="single-channel"):
        read_mask(rgb, (8, 8), 7)


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


def test_list_examples_pairs_images_with_masks(tmp_path):
    assert list_examples(tmp_path / "none") == []
    for name in ("b.png", "b_mask.png", "a.jpg", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert list_examples(tmp_path) == [(str(tmp_path / "a.jpg"), None),
                                       (str(tmp_path / "b.png"), str(tmp_path / "b_mask.png"))]
