"""Decoding a large image file no larger than the model needs (JPEG draft, PNG in strips,
`Image.reduce`), its EXIF orientation, and any Pillow mode to uint8 RGB with a notice for each
change. `images.read_image` is the entry."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

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
