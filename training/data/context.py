"""ContextShapes: synthetic scenes where a pixel's class needs context at the image's own scale.

The demo model's data (`python -m training.data.shapes export DIR --dataset context_shapes`
writes it as a folder).
Three shapes (disk, square, triangle) and two kinds of ground (stripes, checks) make six classes:
"disk on stripes", "disk on checks", ... An object's class is its shape *and* the ground it lies
on, so no local window labels it:

- the shape shows only at the object's own size, and
- the ground shows only beyond the object's edge: from a pixel inside a large object it is as far
  away as the object is big.

Both distances change from image to image. Each scene draws one object size for all its objects
(log-uniform 10-48 px in a 128 px scene, each object within x0.74-1.35 of it, as many objects as
cover about a third of the image), so the context that labels a pixel is a few pixels wide in one
image and half the image in the next: what a fixed (static) filter cannot follow and an
input-dependent one can. Two scenes in three are split by a straight line into two grounds (of
the other kind in 70% of splits), so the right context also differs from place to place within
an image, and the one global average (k=1) is not enough; objects never cross the line.

Colours carry no class (every fill and every ground colour is uniform random, as in
MultiScaleShapes), objects are flat, upright, whole and do not touch. Everything is deterministic
from (seed, split, index).
"""

from __future__ import annotations

import math

import numpy as np

from dmnet.presets import DATASETS

from .shapes import (CHECKS, STRIPES, UPRIGHT, MultiScaleShapes, ShapesSample, _background,
                     shape_mask)

CLASSES, PALETTE = DATASETS["context_shapes"]
SHAPES = ("disk", "square", "triangle")
GROUNDS = {STRIPES: "stripes", CHECKS: "checks"}
SIZE = 128
SCALE_PX = (10.0, 48.0)  # the scene's object size (circumscribed diameter), log-uniform
SPREAD = 0.3  # each object's diameter: scene size x exp(U(-SPREAD, SPREAD))
COVER = 0.33  # objects drawn: as many as cover about this share of the image
SPLIT_P, OTHER_KIND_P = 2 / 3, 0.7


def class_id(shape: str, ground: int) -> int:
    """The class of `shape` on ground `ground` (STRIPES or CHECKS)."""
    return CLASSES.index(f"{shape} on {GROUNDS[ground]}")


def _grounds(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, size: int
             ) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float] | None]:
    """(image, kind map, split line (px, py, angle) or None): one or two textured grounds."""
    first = int(rng.integers(2))
    image = _background(rng, yy, xx, first)
    kinds = np.full(yy.shape, first, np.uint8)
    if rng.uniform() >= SPLIT_P:
        return image, kinds, None
    px, py = rng.uniform(size / 4, 3 * size / 4, 2)
    angle = rng.uniform(0, math.pi)
    second = 1 - first if rng.uniform() < OTHER_KIND_P else first
    other = (xx - px) * math.cos(angle) + (yy - py) * math.sin(angle) > 0
    image[other] = _background(rng, yy, xx, second)[other]
    kinds[other] = second
    return image, kinds, (px, py, angle)


def _line_distance(line: tuple[float, float, float] | None, cy: float, cx: float) -> float:
    if line is None:
        return math.inf
    px, py, angle = line
    return abs((cx - px) * math.cos(angle) + (cy - py) * math.sin(angle))


def render_context(seed: int, index: int, size: int = SIZE) -> ShapesSample:
    """One scene, deterministic from (seed, index); sizes scale with `size` (128 px nominal)."""
    rng = np.random.default_rng([seed, index, 2])
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    image, kinds, line = _grounds(rng, yy, xx, size)
    label = np.zeros((size, size), np.uint8)
    instances = np.zeros((size, size), np.uint8)
    scale = math.exp(rng.uniform(*np.log(SCALE_PX))) * size / SIZE
    count = int(np.clip(round(COVER * size * size / (0.55 * scale * scale)), 2, 16))
    wanted = sorted(scale * np.exp(rng.uniform(-SPREAD, SPREAD, count)), reverse=True)
    placed: list[tuple[float, float, float]] = []
    for diameter in wanted:
        r = diameter / 2
        for _ in range(30):
            cy, cx = rng.uniform(r + 1, size - r - 1, 2)
            if (_line_distance(line, cy, cx) > r + 2
                    and all(math.hypot(cy - y, cx - x) > r + q + 2 for y, x, q in placed)):
                break
        else:
            continue
        placed.append((cy, cx, r))
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        cls = class_id(shape, int(kinds[min(int(cy), size - 1), min(int(cx), size - 1)]))
        angle = UPRIGHT.get(shape, 0.0)
        y0, y1 = max(int(cy - r) - 1, 0), min(int(cy + r) + 2, size)
        x0, x1 = max(int(cx - r) - 1, 0), min(int(cx + r) + 2, size)
        du, dv = (xx[y0:y1, x0:x1] - cx) / r, (yy[y0:y1, x0:x1] - cy) / r
        u = du * math.cos(angle) + dv * math.sin(angle)
        v = -du * math.sin(angle) + dv * math.cos(angle)
        inside = shape_mask(shape, u, v)
        under = image[y0:y1, x0:x1][inside].mean(0) if inside.any() else image[y0, x0]
        fill = rng.uniform(0, 255, 3)
        for _ in range(10):  # a flat colour that stands out from the ground it covers
            if np.linalg.norm(fill - under) > 60:
                break
            fill = rng.uniform(0, 255, 3)
        image[y0:y1, x0:x1][inside] = fill
        label[y0:y1, x0:x1][inside] = cls
        instances[y0:y1, x0:x1][inside] = len(placed)
    image += rng.normal(0, 6, image.shape)
    return ShapesSample(np.clip(image, 0, 255).astype(np.uint8), label, instances,
                        [2 * r for _, _, r in placed], kinds)


class ContextShapes(MultiScaleShapes):
    """ContextShapes generated on the fly: `(image, label)` items; the same splits, lengths and
    seeds as `MultiScaleShapes` (and its per-object-size metrics), other scenes."""

    classes = CLASSES

    def sample(self, i: int) -> ShapesSample:
        return render_context(self.seed, i, self.size)
