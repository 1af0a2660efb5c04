"""Images made from arrays: coloured label maps, blends, highlights, thumbnails, data URIs."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

# Colours of the bottleneck's inputs in every view: the skip path x, then k = 1, 3, 5, 7.
PART_COLORS = {"x": (130, 130, 130), "k=1": (31, 119, 180), "k=3": (44, 160, 44),
               "k=5": (255, 127, 14), "k=7": (148, 103, 189)}
EXTRA_COLORS = [(23, 190, 207), (188, 189, 34), (227, 119, 194), (140, 86, 75)]
DISPLAY = 512  # long side of the maps made to be read (`readable`), in pixels
FILTERED = 235  # gray of the pixels a map leaves out (another class, an unchanged pixel)
EDGE = (30, 30, 30)  # the class boundaries drawn over such maps
LEFT_OUT = 0.35  # how much of the image shows under the pixels a map leaves out


def part_color(name: str, index: int = 0) -> tuple[int, int, int]:
    return PART_COLORS.get(name, EXTRA_COLORS[index % len(EXTRA_COLORS)])


def part_colors(names) -> list[tuple[int, int, int]]:
    """The colours of the bottleneck's inputs `names` (in order), as on every map and plot."""
    return [part_color(n, i) for i, n in enumerate(names)]


def hex_color(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def colorize(label: np.ndarray, palette: tuple[tuple[int, int, int], ...]) -> np.ndarray:
    """(H, W, 3) uint8 colours of a label map; ids outside the palette (255 = ignore) are black."""
    lut = np.zeros((256, 3), np.uint8)
    lut[:len(palette)] = np.asarray(palette, np.uint8)
    return lut[np.clip(label, 0, 255).astype(np.uint8)]


def blend(image: np.ndarray, color: np.ndarray, alpha: float | np.ndarray) -> np.ndarray:
    """image * (1 - alpha) + color * alpha, as uint8; alpha a number or an (H, W) map."""
    a = np.asarray(alpha, np.float32)
    a = a[..., None] if a.ndim == 2 else a
    return (image * (1 - a) + color * a + 0.5).astype(np.uint8)


def overlay(image: np.ndarray, label: np.ndarray, palette: tuple[tuple[int, int, int], ...],
            alpha: float = 0.6) -> np.ndarray:
    """The image with its label map's colours blended in."""
    return blend(image, colorize(label, palette), alpha)


def changes(image: np.ndarray, before: np.ndarray, after: np.ndarray,
            palette: tuple[tuple[int, int, int], ...]) -> np.ndarray:
    """Changed pixels in their new class colour; the rest of the image in faded gray."""
    gray = image.mean(-1, keepdims=True).repeat(3, -1) * 0.35 + 150  # faint: changes stand out
    changed = before != after
    return np.where(changed[..., None], colorize(after, palette), gray).astype(np.uint8)


def upsample_nearest(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(h, w) -> (H, W) by nearest neighbour, each input cell covering its share of the output."""
    h, w = values.shape[:2]
    rows = np.minimum((np.arange(size[0]) * h) // size[0], h - 1)
    cols = np.minimum((np.arange(size[1]) * w) // size[1], w - 1)
    return values[rows][:, cols]


def display_size(shape: tuple[int, ...], side: int = DISPLAY) -> tuple[int, int]:
    """(H, W) with the long side `side` and the ratio of `shape` (H, W, ...), at least 1 px."""
    h, w = shape[:2]
    f = side / max(h, w)
    return max(1, round(h * f)), max(1, round(w * f))


def readable(image: np.ndarray, layer: np.ndarray, show: np.ndarray, label: np.ndarray,
             opacity: float, dim: np.ndarray | None = None, side: int = DISPLAY) -> np.ndarray:
    """A map to be read at display size (long side `side`): `layer` (H, W, 3) colours where `show`
    (H, W) is true and light gray elsewhere, upscaled by nearest neighbour (one map cell = one
    flat block), with the image under it at `opacity` (0 = the map only, 1 = the image only),
    the pixels of `dim` (H, W; those a class filter leaves out) light gray with the image at
    `LEFT_OUT` of that, and the class boundaries of `label` (H, W) as thin dark lines."""
    size = display_size(image.shape, side)
    dim = np.zeros(label.shape, bool) if dim is None else dim
    shown = np.where((show & ~dim)[..., None], layer, np.uint8(FILTERED))
    under = np.array(Image.fromarray(image).resize(size[::-1], Image.Resampling.BILINEAR))
    opacity = float(np.clip(opacity, 0, 1))
    alpha = np.where(upsample_nearest(dim, size), opacity * LEFT_OUT, opacity)
    out = blend(upsample_nearest(shown, size), under, alpha)
    up = upsample_nearest(label, size)
    edge = np.zeros(size, bool)
    edge[:, 1:] |= up[:, 1:] != up[:, :-1]
    edge[1:, :] |= up[1:, :] != up[:-1, :]
    out[edge] = EDGE
    return out


def mark_cell(view: np.ndarray, cell: tuple[int, int], cells: tuple[int, int]) -> np.ndarray:
    """`view` with a black-and-white frame around feature cell (row, col) of a (h8, w8) grid."""
    out = view.copy()
    h, w = view.shape[:2]
    (r, c), (h8, w8) = cell, cells
    y0, y1 = r * h // h8, max(r * h // h8 + 1, (r + 1) * h // h8) - 1
    x0, x1 = c * w // w8, max(c * w // w8 + 1, (c + 1) * w // w8) - 1
    for pad, color in ((0, 0), (1, 255), (2, 0)):
        t, b, lft, rgt = max(y0 - pad, 0), min(y1 + pad, h - 1), max(x0 - pad, 0), min(x1 + pad,
                                                                                      w - 1)
        out[t, lft:rgt + 1] = out[b, lft:rgt + 1] = color
        out[t:b + 1, lft] = out[t:b + 1, rgt] = color
    return out


def thumbnail(image: np.ndarray, side: int = 256) -> np.ndarray:
    """The image with its long side at most `side` pixels."""
    h, w = image.shape[:2]
    if max(h, w) <= side:
        return image
    f = side / max(h, w)
    size = (max(1, round(w * f)), max(1, round(h * f)))
    return np.array(Image.fromarray(image).resize(size, Image.Resampling.LANCZOS))


def data_uri(image: np.ndarray, fmt: str = "JPEG") -> str:
    """A data: URI of the image, for plotly's Image trace (small thumbnails keep figures light)."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format=fmt, quality=88)
    mime = "jpeg" if fmt == "JPEG" else fmt.lower()
    return f"data:image/{mime};base64," + base64.b64encode(buf.getvalue()).decode()
