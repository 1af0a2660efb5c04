"""ContextShapes: synthetic scenes where a pixel's class depends on something far away.

The demo model's data (`python -m training.data.shapes export DIR --dataset context_shapes`
writes it as a folder). Each scene is a picture in a frame: a band around the border (12 px of
128) of stripes or of checks, the scene's "world". Inside the frame, over a smooth two-colour
gradient, lie disks, squares and triangles. Three shapes in two worlds make six classes, "disk,
striped frame", "disk, checked frame", ...: an object's class is its shape *and* the frame.

- The shape shows only at the object's own size; each scene draws one object size for all its
  objects (log-uniform 10-40 px, each object within x0.74-1.35 of it, as many objects as cover
  about a third of the picture), so the right filter size changes from image to image.
- The frame never shows near the objects: from the middle of the picture it is 40-50 px away,
  beyond any 7x7 filter at 1/8 resolution. What labels a pixel there is a property of the whole
  image, the same for every pixel of it and different from image to image: what a fixed (static)
  filter cannot carry and an input-dependent one can. DMNet's DCMs pool the whole image (k=1:
  one cell, k=3: a 3x3 grid, ...) and generate their filters from it; averaged over many images
  those filters forget the frame (`python -m training.ablation`, "static filters").

Colours carry no class (every fill, gradient and frame colour is uniform random, as in
MultiScaleShapes); objects are flat, upright, whole, inside the frame and do not touch.
Everything is deterministic from (seed, split, index).
"""

from __future__ import annotations

import math

import numpy as np

from dmnet.presets import DATASETS

from .shapes import CHECKS, STRIPES, MultiScaleShapes, ShapesSample, _background, paint

CLASSES, PALETTE = DATASETS["context_shapes"]
SHAPES = ("disk", "square", "triangle")
WORLDS = {STRIPES: "striped", CHECKS: "checked"}
SIZE = 128
FRAME = 12  # frame band width at 128 px
SCALE_PX = (10.0, 40.0)  # the scene's object size (circumscribed diameter), log-uniform
SPREAD = 0.3  # each object's diameter: scene size x exp(U(-SPREAD, SPREAD))
COVER = 0.33  # objects drawn: as many as cover about this share of the picture


def class_id(shape: str, world: int) -> int:
    """The class of `shape` in a picture whose frame is `world` (STRIPES or CHECKS)."""
    return CLASSES.index(f"{shape}, {WORLDS[world]} frame")


def _picture(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, size: int, band: int
             ) -> tuple[np.ndarray, int]:
    """((h, w, 3) float colours, world): a smooth gradient inside a textured frame."""
    world = int(rng.integers(2))
    frame = _background(rng, yy, xx, world)
    a, b = rng.uniform(0, 255, size=(2, 3))
    theta = rng.uniform(0, 2 * math.pi)
    t = ((xx - size / 2) * math.cos(theta) + (yy - size / 2) * math.sin(theta)) / size + 0.5
    image = a * (1 - t[..., None]) + b * t[..., None]
    edge = np.minimum(np.minimum(yy, xx), np.minimum(size - yy, size - xx))
    image[edge < band] = frame[edge < band]
    return image, world


def render_context(seed: int, index: int, size: int = SIZE) -> ShapesSample:
    """One scene, deterministic from (seed, index); sizes scale with `size` (128 px nominal)."""
    rng = np.random.default_rng([seed, index, 2])
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    band = FRAME * size / SIZE
    image, world = _picture(rng, yy, xx, size, band)
    label = np.zeros((size, size), np.uint8)
    instances = np.zeros((size, size), np.uint8)
    scale = math.exp(rng.uniform(*np.log(SCALE_PX))) * size / SIZE
    inner = size - 2 * band
    count = int(np.clip(round(COVER * inner * inner / (0.55 * scale * scale)), 2, 16))
    wanted = sorted(scale * np.exp(rng.uniform(-SPREAD, SPREAD, count)), reverse=True)
    placed: list[tuple[float, float, float]] = []
    for diameter in wanted:
        r = diameter / 2
        for _ in range(30):
            cy, cx = rng.uniform(band + r + 2, size - band - r - 2, 2)
            if all(math.hypot(cy - y, cx - x) > r + q + 2 for y, x, q in placed):
                break
        else:
            continue
        placed.append((cy, cx, r))
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        paint(rng, (image, label, instances), (yy, xx), (cy, cx, r), shape,
              (class_id(shape, world), len(placed)))
    image += rng.normal(0, 6, image.shape)
    return ShapesSample(np.clip(image, 0, 255).astype(np.uint8), label, instances,
                        [2 * r for _, _, r in placed], world)


class ContextShapes(MultiScaleShapes):
    """ContextShapes generated on the fly: `(image, label)` items; the same splits, lengths and
    seeds as `MultiScaleShapes` (and its per-object-size metrics), other scenes."""

    classes = CLASSES

    def sample(self, i: int) -> ShapesSample:
        return render_context(self.seed, i, self.size)
