"""Whatever the user gives, as the uint8 RGB image the model reads, with a notice for each change.

`read_image` accepts any file Pillow can decode (8/16-bit, grayscale, palette, RGBA, CMYK, float
TIFF) and refuses everything else with an `InputError` whose message is shown in the app as is.
Given the model's preset it decodes a large file no larger than needed (JPEG draft, PNG strips,
`Image.reduce`); `fit_to_test_scale` then downscales images larger than the model's test scale
(mmseg's keep-ratio `Resize` would shrink them anyway), to at least 1 px a side; `model_input` is
the test pipeline's resize of `dmnet.segment_image`.
`generate_scene` draws a synthetic scene (training/data/: ContextShapes by default) with its
true mask.
"""

from __future__ import annotations

import hashlib
import struct
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from dmnet.inference import rescale_size, test_resize
from dmnet.presets import CONTEXT, Preset

MAX_DECODE_PIXELS = 150_000_000  # beyond this, decoding alone could exhaust memory: refuse


NO_IMAGE = "No image yet: upload one, paste one, pick an example or generate a scene."


class InputError(ValueError):
    """An input the app cannot use; the message says why and what to do, for the user."""


@dataclass
class Picture:
    image: np.ndarray  # (H, W, 3) uint8 RGB
    notices: list[str] = field(default_factory=list)  # what was changed, in words
    full_size: tuple[int, int] | None = None  # (h, w) of the file when it was decoded reduced


def read_image(path: str | Path | None, preset: Preset | None = None) -> Picture:
    """Decode an image file into uint8 RGB; every conversion is reported in `notices`.

    With a `preset`, an image more than twice its test scale is decoded reduced (`decode`), so
    that a 9000×9000 file costs the memory of a strip of it, not of its pixels;
    `fit_to_test_scale` then makes the exact size. The pixel limit is checked on the header.
    """
    if path is None or str(path) == "":
        raise InputError(NO_IMAGE)
    path = Path(path)
    if not path.is_file():
        raise InputError(f"Image file not found: {path.name}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # DecompressionBombWarning: the limit is ours
            with Image.open(path) as im:
                w, h = im.size
                if w * h > MAX_DECODE_PIXELS:
                    limit = MAX_DECODE_PIXELS // 1_000_000
                    raise InputError(f"{path.name} is {w}×{h} pixels, too large to decode "
                                     f"safely (limit {limit} MP); downscale it first.")
                target = None if preset is None else rescale_size(h, w, preset.test_scale)
                small = decode(im, path, target)
                turn, mode = TRANSPOSE.get(orientation(im)), im.mode
    except InputError:
        raise
    except UnidentifiedImageError:
        raise InputError(f"{path.name} is not an image Pillow can read (corrupt, or not an image "
                         "file at all). Use a PNG, JPEG, WebP, BMP or TIFF.") from None
    except Image.DecompressionBombError as err:
        raise InputError(f"{path.name} is too large to decode safely: {err}") from None
    except (OSError, ValueError, SyntaxError, zlib.error) as err:
        raise InputError(f"{path.name} could not be decoded (truncated or corrupt file: {err}).") \
            from None
    image, notices = to_rgb(small if turn is None else small.transpose(turn), mode)
    full = None if small.size == (w, h) else ((w, h) if turn in SWAPS else (h, w))
    return Picture(image, notices, full)


REDUCING_GAP = 2  # reduce to no less than twice the target (as Image.thumbnail): LANCZOS finishes
STRIP_BYTES = 8 << 20  # a reduced PNG is decoded this many bytes of scanlines at a time
PNG_CHANNELS = {"L": 1, "LA": 2, "P": 1, "RGB": 3, "RGBA": 4}  # 8-bit PNG modes decoded in strips
ORIENTATION = 0x0112  # the EXIF tag
TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
             4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
             6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
             8: Image.Transpose.ROTATE_90}  # EXIF orientation -> the turn that shows it upright
SWAPS = (Image.Transpose.TRANSPOSE, Image.Transpose.ROTATE_270, Image.Transpose.TRANSVERSE,
         Image.Transpose.ROTATE_90)


def orientation(im: Image.Image) -> int:
    """The EXIF orientation (1: as stored). A PNG's eXIf chunk after its pixels is only seen once
    the pixels are decoded (Pillow would decode the whole image to look for it)."""
    if im.format == "PNG" and "exif" not in im.info:
        return 1
    return int(im.getexif().get(ORIENTATION, 1))


def reduction(size: tuple[int, int], target: tuple[int, int] | None) -> int:
    """The integer factor an image of `size` (w, h) can be reduced by and stay at least
    REDUCING_GAP times the `target` (h, w); 1 without a target."""
    if target is None:
        return 1
    (w, h), (th, tw) = size, target
    return max(1, min(h // (REDUCING_GAP * th), w // (REDUCING_GAP * tw)))


def decode(im: Image.Image, path: Path, target: tuple[int, int] | None) -> Image.Image:
    """The opened image's pixels, reduced by an integer factor when it is much larger than
    `target` (h, w): JPEG decodes at 1/2, 1/4 or 1/8 size (draft), an 8-bit PNG in strips,
    reduced one by one (`png_reduced`), any other file whole, then reduced."""
    factor = reduction(im.size, target)
    if factor > 1 and is_plain_png(im):
        return png_reduced(im, path, factor)
    if factor > 1:
        th, tw = target
        im.draft(None, (REDUCING_GAP * tw, REDUCING_GAP * th))  # no-op except for JPEG
    im.load()
    factor = reduction(im.size, target)
    return im if factor == 1 else reducible(im).reduce(factor)


def reducible(im: Image.Image) -> Image.Image:
    """The image in a mode `Image.reduce` averages correctly (`reducible_mode`)."""
    mode = reducible_mode(im)
    return im if mode == im.mode else im.convert(mode)


def reducible_mode(im: Image.Image) -> str:
    """16-bit as 32-bit integers, palette and transparent images as RGB(A), 1-bit as L (to_rgb
    names the file's mode in its notices)."""
    if im.mode.startswith("I;16"):
        return "I"
    if im.mode == "PA" or "transparency" in im.info:
        return "RGBA"
    return {"P": "RGB", "1": "L"}.get(im.mode, im.mode)


def is_plain_png(im: Image.Image) -> bool:
    """An 8-bit, non-interlaced, single-frame PNG: the kind `png_reduced` decodes in strips."""
    return (im.format == "PNG" and im.mode in PNG_CHANNELS and len(im.tile) == 1
            and im.tile[0][3] == im.mode and not im.info.get("interlace")
            and getattr(im, "n_frames", 1) == 1)  # tile: (decoder, box, data offset, raw mode)


def png_reduced(im: Image.Image, path: Path, factor: int) -> Image.Image:
    """A plain PNG reduced by `factor`, decoded a strip of scanlines at a time.

    Pillow's PNG decoder (`zip`) gets each strip's scanlines as they are in the file, after the
    previous strip's last row stored unfiltered, which the first row's filter refers to."""
    w, h = im.size
    stride = 1 + w * PNG_CHANNELS[im.mode]  # a scanline: its filter byte, then the pixels
    rows = max(1, STRIP_BYTES // stride // factor) * factor  # whole blocks of the reduction
    out = Image.new(reducible_mode(im), (-(-w // factor), -(-h // factor)))
    previous, y = bytes(stride), 0  # the first row's filter sees zeros above it, as in the spec
    for scanlines in inflated(path, im.tile[0][2], rows * stride):
        n = min(len(scanlines) // stride, h - y)  # data past the last row is ignored, as Pillow
        if n == 0:
            break
        raw = previous + memoryview(scanlines)[: n * stride]
        strip = Image.frombytes(im.mode, (w, n + 1), zlib.compress(raw, 0), "zip", im.mode)
        previous = b"\0" + strip.crop((0, n, w, n + 1)).tobytes()
        strip.info = dict(im.info)
        if im.mode == "P":
            strip.putpalette(im.palette)
        out.paste(reducible(strip).reduce(factor, (0, 1, w, n + 1)), (0, y // factor))
        y += n
    if y < h:
        raise ValueError(f"image data ends after {y} of {h} rows")
    return out


def inflated(path: Path, offset: int, size: int) -> Iterator[bytearray]:
    """The decompressed IDAT stream of a PNG whose first IDAT chunk's data starts at `offset`,
    `size` bytes at a time (the last piece shorter); bounded whatever the compression ratio."""
    inflate, piece = zlib.decompressobj(), bytearray()
    with open(path, "rb") as f:
        f.seek(offset - 8)
        while True:
            header = f.read(8)
            length, kind = struct.unpack(">I4s", header) if len(header) == 8 else (0, b"")
            if kind != b"IDAT":
                break
            for start in range(0, length, 1 << 20):
                data = f.read(min(length - start, 1 << 20))
                while True:  # inflate until this data is used up, yielding each full piece
                    piece += inflate.decompress(data, size - len(piece))
                    data = inflate.unconsumed_tail
                    if len(piece) < size:
                        break
                    yield piece
                    piece = bytearray()
            f.read(4)  # CRC
    if piece:
        yield piece


def to_rgb(im: Image.Image, mode: str) -> tuple[np.ndarray, list[str]]:
    """(uint8 RGB array, notices) of a decoded image; the notices name the file's `mode`, which
    `reducible` may have changed."""
    notices: list[str] = []
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        values = np.asarray(im, dtype=np.float64)
        top = float(values.max()) if values.size else 0.0
        scale = 255.0 if im.mode == "F" and top <= 1.0 else 255.0 / max(top, 1.0)
        kind = "float" if mode == "F" else ("16-bit" if mode.startswith("I;16") else "32-bit")
        notices.append(f"{kind} grayscale image scaled to 8 bits (its maximum {top:g} → 255) "
                       "and copied to R, G and B")
        gray = np.clip(values * scale + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2), notices
    has_alpha = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info
    if mode in ("1", "L", "LA", "La"):
        notices.append("grayscale image copied to R, G and B")
    elif mode not in ("RGB", "RGBA", "RGBa", "P", "PA"):
        notices.append(f"{mode} image converted to RGB")
    if has_alpha:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, rgba)
        notices.append("transparency removed (composited over white)")
    return np.array(im.convert("RGB"), dtype=np.uint8), notices


def fit_to_test_scale(picture: Picture, preset: Preset) -> Picture:
    """Downscale an image larger than the preset's test scale to it (keep ratio), with a notice.

    The size is that of the file (`full_size` when it was decoded reduced). Smaller images are
    kept: the model input is made from them by `model_input`, as mmseg does.
    """
    h, w = picture.full_size or picture.image.shape[:2]
    nh, nw = rescale_size(h, w, preset.test_scale)
    if picture.full_size is None and nh >= h and nw >= w:
        return picture
    small = np.array(Image.fromarray(picture.image).resize((nw, nh), Image.Resampling.LANCZOS))
    note = (f"downscaled from {w}×{h} to {nw}×{nh}, the model's test scale "
            f"{preset.test_scale[0]}×{preset.test_scale[1]} (long × short side)")
    return Picture(small, [*picture.notices, note])


def model_input(image: np.ndarray, preset: Preset) -> np.ndarray:
    """The uint8 image resized to the preset's test scale exactly as `dmnet.segment_image` does
    it."""
    return test_resize(image, preset.test_scale).numpy()


def scaled(image: np.ndarray, factor: float) -> np.ndarray:
    """The image resized by `factor` (bilinear, antialiased when shrinking), at least 8 px."""
    h, w = image.shape[:2]
    size = (max(8, round(w * factor)), max(8, round(h * factor)))
    return np.array(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))


def read_mask(path: str | Path | None, shape: tuple[int, int],
              num_classes: int) -> np.ndarray | None:
    """A true mask of class ids (H, W) from a PNG (palette or grayscale); 255 = ignore.

    Resized (nearest) to `shape` when the image was downscaled. None when no file is given.
    """
    if path is None or str(path) == "":
        return None
    name = Path(path).name
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # DecompressionBombWarning: the limit is ours
            im = Image.open(path)
        with im:
            if im.width * im.height > MAX_DECODE_PIXELS:
                raise InputError(f"the true mask {name} is {im.width}×{im.height} pixels, too "
                                 f"large to decode safely (limit {MAX_DECODE_PIXELS // 10**6} MP)")
            if im.mode not in ("P", "L", "I", "I;16"):
                raise InputError(f"the true mask {name} must be a single-channel PNG of "
                                 f"class ids (palette or grayscale), not a {im.mode} image")
            mask = np.asarray(im.resize(shape[::-1], Image.Resampling.NEAREST)
                              if im.size != shape[::-1] else im).astype(np.int64)
    except UnidentifiedImageError:  # its message names the server's temporary path
        raise InputError(f"the true mask {name} is not an image Pillow can read (corrupt, or "
                         "not an image file at all): give a PNG of class ids") from None
    except Image.DecompressionBombError as err:
        raise InputError(f"the true mask {name} is too large to decode safely: {err}") from None
    except OSError as err:
        raise InputError(f"the true mask {name} could not be decoded (truncated or corrupt "
                         f"file: {err})") from None
    bad = (mask >= num_classes) & (mask != 255)
    if bad.any():
        raise InputError(f"the true mask {Path(path).name} has class ids up to "
                         f"{int(mask[bad].max())}, but the model has {num_classes} classes "
                         "(255 = ignore)")
    return mask


def image_key(image: np.ndarray) -> str:
    """A content hash of an image array (shape and pixels), to cache results by."""
    digest = hashlib.blake2b(np.ascontiguousarray(image).tobytes(), digest_size=12)
    digest.update(repr(image.shape).encode())
    return digest.hexdigest()


SCENE_DATASET = CONTEXT.dataset  # the demo model's training data; what other models are shown


def scene_dataset(dataset: str) -> tuple[str, bool]:
    """(the synthetic data "Generate a scene" draws for a model trained on `dataset`, whether the
    scene's true mask is in that model's classes): its own data where it is synthetic, else
    ContextShapes, whose class ids mean nothing to a Cityscapes or ADE20K model."""
    from training.data import SCENES

    return (dataset, True) if dataset in SCENES else (SCENE_DATASET, False)


def generate_scene(seed: int, object_scale: float, size: int | None = None,
                   dataset: str = SCENE_DATASET) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic scene of `dataset` (ContextShapes by default, MultiScaleShapes or
    PatternMatch) and its true mask, (size, size, 3) uint8 and (size, size) uint8.

    `object_scale` zooms the scene: it is rendered at size / object_scale pixels and resized to
    `size`, so every object appears `object_scale` times larger (smaller below 1). The default
    size is that of the synthetic training scenes (`training.data.shapes.SIZE`). PatternMatch
    scenes exist at that size only (their tiles are the feature cells of a 128 px input).
    """
    from training.data import SCENES  # the training data's own generators
    from training.data.shapes import SIZE

    size = size or SIZE
    side = max(64, round(size / object_scale))
    if dataset == "pattern_match" and side != SIZE:
        raise InputError(f"PatternMatch scenes exist at {SIZE} px and zoom 1 only (each tile is "
                         f"one feature cell of a {SIZE} px input): set the zoom to 1")
    sample = SCENES[dataset](int(seed), 0, side)
    if side == size:
        return sample.image, sample.label
    image = Image.fromarray(sample.image).resize((size, size), Image.Resampling.BILINEAR)
    label = Image.fromarray(sample.label).resize((size, size), Image.Resampling.NEAREST)
    return np.array(image), np.array(label)


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
MASK_SUFFIX = "_mask.png"  # assets/examples/<name>.<ext> has its true mask in <name>_mask.png


def list_examples(folder: str | Path) -> list[tuple[str, str | None]]:
    """(image, true mask or None) for each example image in `folder`, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    rows = []
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() not in IMAGE_SUFFIXES or p.name.endswith(MASK_SUFFIX):
            continue
        mask = p.with_name(p.stem + MASK_SUFFIX)
        rows.append((str(p), str(mask) if mask.is_file() else None))
    return rows
