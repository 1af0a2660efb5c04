"""Whatever the user gives, as the uint8 RGB image the model reads, with a notice for each change.

`read_image` accepts any file Pillow can decode (8/16-bit, grayscale, palette, RGBA, CMYK, float
TIFF) and refuses everything else with an `InputError` whose message is shown in the app as is.
`fit_to_test_scale` downscales images larger than the model's test scale (mmseg's keep-ratio
`Resize` would shrink them anyway); `model_input` is the test pipeline's resize of `dmnet.predict`.
`generate_scene` draws a MultiScaleShapes scene (training/data/shapes.py) with its true mask.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from dmnet.inference import rescale_size, test_resize
from dmnet.presets import Preset

MAX_DECODE_PIXELS = 150_000_000  # beyond this, decoding alone could exhaust memory: refuse


NO_IMAGE = "No image yet: upload one, paste one, pick an example or generate a scene."


class InputError(ValueError):
    """An input the app cannot use; the message says why and what to do, for the user."""


@dataclass
class Picture:
    image: np.ndarray  # (H, W, 3) uint8 RGB
    notices: list[str] = field(default_factory=list)  # what was changed, in words


def read_image(path: str | Path | None) -> Picture:
    """Decode an image file into uint8 RGB; every conversion is reported in `notices`."""
    if path is None or str(path) == "":
        raise InputError(NO_IMAGE)
    path = Path(path)
    if not path.is_file():
        raise InputError(f"Image file not found: {path.name}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im = Image.open(path)
            w, h = im.size
            if w * h > MAX_DECODE_PIXELS:
                limit = MAX_DECODE_PIXELS // 1_000_000
                raise InputError(f"{path.name} is {w}×{h} pixels, too large to decode safely "
                                 f"(limit {limit} MP); downscale it first.")
            im.draft("RGB", (4096, 4096))  # JPEG: decode at a reduced size when it is huge
            im.load()
            im = ImageOps.exif_transpose(im)
    except InputError:
        raise
    except UnidentifiedImageError:
        raise InputError(f"{path.name} is not an image Pillow can read (corrupt, or not an image "
                         "file at all). Use a PNG, JPEG, WebP, BMP or TIFF.") from None
    except Image.DecompressionBombError as err:
        raise InputError(f"{path.name} is too large to decode safely: {err}") from None
    except (OSError, ValueError, SyntaxError) as err:
        raise InputError(f"{path.name} could not be decoded (truncated or corrupt file: {err}).") \
            from None
    return Picture(*to_rgb(im))


def to_rgb(im: Image.Image) -> tuple[np.ndarray, list[str]]:
    """(uint8 RGB array, notices) for any Pillow mode."""
    notices: list[str] = []
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        values = np.asarray(im, dtype=np.float64)
        top = float(values.max()) if values.size else 0.0
        scale = 255.0 if im.mode == "F" and top <= 1.0 else 255.0 / max(top, 1.0)
        kind = "float" if im.mode == "F" else ("16-bit" if im.mode.startswith("I;16") else "32-bit")
        notices.append(f"{kind} grayscale image scaled to 8 bits (its maximum {top:g} → 255) "
                       "and copied to R, G and B")
        gray = np.clip(values * scale + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2), notices
    has_alpha = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info
    if im.mode in ("1", "L", "LA", "La"):
        notices.append("grayscale image copied to R, G and B")
    elif im.mode not in ("RGB", "RGBA", "RGBa", "P", "PA"):
        notices.append(f"{im.mode} image converted to RGB")
    if has_alpha:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, rgba)
        notices.append("transparency removed (composited over white)")
    return np.array(im.convert("RGB"), dtype=np.uint8), notices


def fit_to_test_scale(picture: Picture, preset: Preset) -> Picture:
    """Downscale an image larger than the preset's test scale to it (keep ratio), with a notice.

    Smaller images are kept: the model input is made from them by `model_input`, as mmseg does.
    """
    h, w = picture.image.shape[:2]
    nh, nw = rescale_size(h, w, preset.test_scale)
    if nh >= h and nw >= w:
        return picture
    small = np.array(Image.fromarray(picture.image).resize((nw, nh), Image.Resampling.LANCZOS))
    note = (f"downscaled from {w}×{h} to {nw}×{nh}, the model's test scale "
            f"{preset.test_scale[0]}×{preset.test_scale[1]} (long × short side)")
    return Picture(small, [*picture.notices, note])


def model_input(image: np.ndarray, preset: Preset) -> np.ndarray:
    """The uint8 image resized to the preset's test scale exactly as `dmnet.predict` does it."""
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
    try:
        with Image.open(path) as im:
            if im.mode not in ("P", "L", "I", "I;16"):
                raise InputError(f"the true mask {Path(path).name} must be a single-channel PNG of "
                                 f"class ids (palette or grayscale), not a {im.mode} image")
            mask = np.asarray(im.resize(shape[::-1], Image.Resampling.NEAREST)
                              if im.size != shape[::-1] else im).astype(np.int64)
    except (UnidentifiedImageError, OSError) as err:
        raise InputError(f"the true mask {Path(path).name} could not be read: {err}") from None
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


def generate_scene(seed: int, object_scale: float,
                   size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A MultiScaleShapes scene and its true mask, (size, size, 3) uint8 and (size, size) uint8.

    `object_scale` zooms the scene: it is rendered at size / object_scale pixels and resized to
    `size`, so every object appears `object_scale` times larger (smaller below 1). The default
    size is that of the demo model's training scenes (`training.data.shapes.SIZE`).
    """
    from training.data.shapes import SIZE, render  # the training data's own generator

    size = size or SIZE
    side = max(64, round(size / object_scale))
    sample = render(int(seed), 0, side)
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
