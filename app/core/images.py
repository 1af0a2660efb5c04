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
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from dmnet.inference import rescale_size, test_resize
from dmnet.presets import CONTEXT, Preset

from .decoding import SWAPS, TRANSPOSE, decode, orientation, to_rgb

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
