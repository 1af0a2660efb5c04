import io
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import dmnet
from dmnet import predict as cli
from dmnet.inference import segment_image

ROOT = Path(__file__).resolve().parents[2]
CHECKPOINT = str(ROOT / "assets" / "demo" / "dmnet_r18-d8_context.pth")
EXAMPLES = ROOT / "assets" / "examples"
SHAPES = sorted(EXAMPLES.glob("context_?.png"))  # four 128x128 scenes


@pytest.fixture(scope="module")
def model():
    return dmnet.load_checkpoint(CHECKPOINT)


def run(*args, out: Path) -> int:
    return cli.main([*map(str, args), "--checkpoint", CHECKPOINT, "--out", str(out)])


def mask(out: Path, name: str) -> np.ndarray:
    with Image.open(out / "masks" / f"{name}.png") as im:
        assert im.mode == "P"
        return np.array(im)


def expected_mask(model, image: np.ndarray, **kw) -> np.ndarray:
    return segment_image(model, image, **kw).argmax(0).numpy()


def test_examples_masks_equal_predict_with_the_palette_and_overlays(model, tmp_path):
    assert run(EXAMPLES, out=tmp_path) == 0
    files = sorted(p for p in EXAMPLES.iterdir() if p.suffix in (".png", ".jpg"))
    assert len(files) == 2 * len(SHAPES) + 3  # scenes, their masks, three photographs
    palette = [v for rgb in model.preset.palette for v in rgb]
    for path in files:
        image = cli.read_image(path)
        got = mask(tmp_path, path.stem)
        np.testing.assert_array_equal(got, expected_mask(model, image), err_msg=path.name)
        with Image.open(tmp_path / "masks" / f"{path.stem}.png") as im:
            assert im.getpalette()[:len(palette)] == palette
        with Image.open(tmp_path / "overlays" / f"{path.stem}.jpg") as im:
            assert im.size == (image.shape[1], image.shape[0])
    assert not (tmp_path / "logits").exists()


def test_overlay_blends_the_image_with_the_class_colours(model, tmp_path):
    assert run(SHAPES[0], out=tmp_path) == 0
    image, label = cli.read_image(SHAPES[0]), mask(tmp_path, SHAPES[0].stem)
    want = image * (1 - cli.ALPHA) + np.asarray(model.preset.palette)[label] * cli.ALPHA
    got = np.array(Image.open(tmp_path / "overlays" / f"{SHAPES[0].stem}.jpg"), np.float32)
    for c in np.unique(label):  # JPEG's errors average out over a region; a wrong colour does not
        np.testing.assert_allclose(got[label == c].mean(0), want[label == c].mean(0), atol=1.5)


def test_folder_mirrors_subfolders_and_globs_name_by_stem(tmp_path):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    shutil.copy(SHAPES[0], src / "a.png")
    shutil.copy(SHAPES[1], src / "sub" / "b.png")
    (src / "notes.txt").write_text("not an input: a folder's other files are left alone")
    out = tmp_path / "out"
    assert run(src, f"{src}/**/*.png", out=out) == 0
    names = sorted(p.relative_to(out / "masks").as_posix() for p in (out / "masks").rglob("*.png"))
    assert names == ["a-2.png", "a.png", "b.png", "sub/b.png"]  # the glob's a.png came second
    np.testing.assert_array_equal(mask(out, "a"), mask(out, "a-2"))


def png_claiming(width: int, height: int) -> bytes:
    """A 1x1 PNG whose header says width x height: a pixel bomb as far as the header goes."""
    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    data[16:24] = struct.pack(">II", width, height)  # IHDR's data starts after 8 + 4 + 4 bytes
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def float_tiff() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((4, 4), np.float32)).save(buf, "TIFF")
    return buf.getvalue()


BAD_FILES = {
    "text.png": (b"<html>404</html>", "not an image Pillow can read"),
    "truncated.png": (SHAPES[0].read_bytes()[:2000], "could not be decoded"),
    "bomb.png": (png_claiming(12_500, 12_500), "12500x12500 pixels is over the limit of 150 MP"),
    "huge.png": (png_claiming(40_000, 40_000), "too large to decode safely"),
    "clip.mp4": (b"\x00" * 64, "could not be decoded as a video"),
    "float.tif": (float_tiff(), "a floating-point image; convert it to 8-bit first"),
}


def test_bad_files_are_reported_and_skipped_with_exit_status_1(tmp_path, capsys):
    for name, (data, _) in BAD_FILES.items():
        (tmp_path / name).write_bytes(data)
    out = tmp_path / "out"
    bad = [tmp_path / name for name in BAD_FILES]
    assert run(*bad, SHAPES[0], tmp_path / "missing.png", out=out) == 1
    err = capsys.readouterr().err
    for name, (_, message) in BAD_FILES.items():
        assert f"skipped {tmp_path / name}: {message}" in err
    assert f"skipped {tmp_path / 'missing.png'}: no such file" in err
    assert "1 images predicted" in err and "7 inputs skipped" in err
    assert [p.name for p in (out / "masks").iterdir()] == [f"{SHAPES[0].stem}.png"]


def test_exif_orientation_is_applied(model, tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: shown turned 90 degrees clockwise
    Image.open(SHAPES[0]).crop((0, 0, 128, 64)).save(tmp_path / "turned.jpg", exif=exif)
    assert run(tmp_path / "turned.jpg", out=tmp_path / "out") == 0
    assert mask(tmp_path / "out", "turned").shape == (128, 64)


def test_16_bit_grey_keeps_its_high_byte(tmp_path):
    grey = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16
    Image.fromarray(grey).save(tmp_path / "deep.png")
    image = cli.read_image(tmp_path / "deep.png")
    assert image.dtype == np.uint8 and image.shape == (64, 64, 3)
    np.testing.assert_array_equal(image[..., 1], grey >> 8)


def test_batch_equals_unbatched_and_logits_have_the_scores(model, tmp_path):
    assert run(*SHAPES, EXAMPLES / "coffee.jpg", "--logits", out=tmp_path / "one") == 0
    assert run(*SHAPES, EXAMPLES / "coffee.jpg", "--logits", "--batch", "2",
               out=tmp_path / "two") == 0
    for path in [*SHAPES, EXAMPLES / "coffee.jpg"]:
        one, two = (np.load(tmp_path / d / "logits" / f"{path.stem}.npy") for d in ("one", "two"))
        image = cli.read_image(path)
        assert one.shape == (model.preset.num_classes, *image.shape[:2]) and one.dtype == np.float32
        np.testing.assert_array_equal(one, segment_image(model, image).numpy())
        np.testing.assert_allclose(two, one, rtol=0, atol=1e-4 * np.abs(one).max())
        np.testing.assert_array_equal(mask(tmp_path / "two", path.stem), one.argmax(0))


def test_batches_group_consecutive_images_of_one_size():
    items = [cli.Item(str(i), np.zeros(shape, np.uint8))
             for i, shape in enumerate([(4, 4, 3)] * 3 + [(4, 5, 3)] + [(4, 4, 3)])]
    assert [[it.name for it in b] for b in cli.batches(items, 2)] == [
        ["0", "1"], ["2"], ["3"], ["4"]]


def test_tta_and_slide_masks_equal_predict(model, tmp_path):
    image = cli.read_image(SHAPES[1])
    assert run(SHAPES[1], "--tta", out=tmp_path / "tta") == 0
    want = expected_mask(model, image, scales=dmnet.TTA_RATIOS, flip=True)
    np.testing.assert_array_equal(mask(tmp_path / "tta", SHAPES[1].stem), want)
    assert run(SHAPES[1], "--mode", "slide", out=tmp_path / "slide") == 0
    want = expected_mask(model, image, mode="slide")
    np.testing.assert_array_equal(mask(tmp_path / "slide", SHAPES[1].stem), want)


def test_fast_prints_its_pixel_agreement(model, tmp_path, capsys):
    assert run(*SHAPES, "--fast", out=tmp_path) == 0
    err = capsys.readouterr().err
    assert f"--fast: {dmnet.fast.fast_precision(torch.device('cpu'))}" in err
    agree = float(err.split("% of the first batch's pixels")[0].rsplit(" ", 1)[1])
    assert agree > 99
    assert len(list((tmp_path / "masks").iterdir())) == len(SHAPES)


def write_video(path: Path, frames: list[np.ndarray]) -> None:
    av = pytest.importorskip("av")
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=5)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def read_frames(path: Path) -> list[np.ndarray]:
    import av
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def test_video_frames_go_to_a_subfolder(model, tmp_path):
    write_video(tmp_path / "clip.mp4", [cli.read_image(p) for p in SHAPES])
    assert run(tmp_path / "clip.mp4", "--batch", "2", out=tmp_path / "out") == 0
    frames = read_frames(tmp_path / "clip.mp4")
    assert len(frames) == len(SHAPES)
    for i, frame in enumerate(frames):
        np.testing.assert_array_equal(mask(tmp_path / "out", f"clip/{i:06d}"),
                                      expected_mask(model, frame))
        assert (tmp_path / "out" / "overlays" / "clip" / f"{i:06d}.jpg").is_file()


def test_without_pyav_videos_are_skipped_and_images_go_on(tmp_path, capsys, monkeypatch):
    write_video(tmp_path / "clip.mp4", [cli.read_image(SHAPES[0])] * 2)
    monkeypatch.setattr(cli, "av", None)
    assert run(tmp_path / "clip.mp4", SHAPES[0], out=tmp_path / "out") == 1
    assert "reading videos needs PyAV (pip install av)" in capsys.readouterr().err
    assert (tmp_path / "out" / "masks" / f"{SHAPES[0].stem}.png").is_file()


def test_command_line_runs_as_a_module(model, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    cmd = [sys.executable, "-m", "dmnet.predict", str(SHAPES[2]), str(bad),
           "--checkpoint", CHECKPOINT, "--out", str(tmp_path / "out")]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    assert "img/s" in done.stderr and f"skipped {bad}: not an image" in done.stderr
    np.testing.assert_array_equal(mask(tmp_path / "out", SHAPES[2].stem),
                                  expected_mask(model, cli.read_image(SHAPES[2])))


def test_an_unloadable_checkpoint_exits_2(tmp_path, capsys):
    (tmp_path / "ck.pth").write_bytes(b"")
    assert cli.main([str(SHAPES[0]), "--checkpoint", str(tmp_path / "ck.pth"),
                     "--out", str(tmp_path)]) == 2
    assert "is empty" in capsys.readouterr().err
