"""PatternMatch: synthetic scenes labelled by the comparison a DCM computes.

What a DCM computes: branch k pools the image to a k x k grid, turns each grid cell into one
filter tap per channel, and runs that k x k filter over every k x k neighbourhood of the
1/8-resolution feature map. So its output at a pixel says how much the neighbourhood there looks
like *the whole picture shrunk to k x k*. PatternMatch makes that the task.

- The picture is a plaid of three **layouts**, one random +/- grid per colour channel: red
  carries a 3x3 grid of large tiles, green a 5x5 grid, blue a 7x7 grid (each tile a full k-th
  of the picture). That is the "whole picture shrunk to k x k", in the channel of size k.
- On it lie three **patterns**, one per size: a 3x3, a 5x5 and a 7x7 grid of 8 px tiles (one
  feature cell per tile), in the same channel as the layout of that size (the other two
  channels dark). Each copies its layout ("matches the picture") or is its negative, every tile
  flipped ("inverted"), with probability one half each.
- The class of the lit tiles among a pattern's central 3x3 (24 px) is its size and whether it
  matches: six classes. Everything else, the rest of a 5x5 or 7x7 pattern and the dark tiles,
  is background: so labelling a pattern needs each tile's sign, which the comparison needs too
  (labelling the whole centre left the network with neither; see below). Nothing local tells
  "matches" from "inverted": both are random-looking grids; only the comparison with the
  picture's layout does. The branch whose grid has the pattern's size lines the two up tap by tap (its filter
  then scores +k*k against -k*k); a larger grid can do it too, less cleanly: the trained run
  compares the 3x3 patterns in branch k=5 (assets/README.md, item 5).

Scenes are 128 px and used without rescaling or cropping (preset ratio_range 1.0, crop 128,
test scale 128), so each pattern tile is one feature cell and each layout tile spans the pooling
cells of its size; flips keep both aligned. Everything is deterministic from (seed, split, index).

An experiment, not a bundled model (assets/README.md, "what was tried", item 5): with the whole
centre labelled, the preset stayed at chance on "matches" vs "inverted" for 3000 iterations (and
with another random grid as the mismatch, for 2000); labelling only the lit tiles made the
features keep the tile signs, and the 3x3 comparison formed (both 3x3 classes at 89-90 IoU by
iteration 3000, the larger ones not yet).
"""

from __future__ import annotations

import numpy as np

from dmnet.presets import DATASETS

from .shapes import MultiScaleShapes, ShapesSample

CLASSES, PALETTE = DATASETS["pattern_match"]
SIZE = 128
TILE = 8  # pattern tile, px: one cell of the 1/8-resolution feature map
GRIDS = (3, 5, 7)  # pattern and layout sizes, one per colour channel (red, green, blue)
LAYOUT_AMPLITUDE = 60.0  # layout tiles: mid grey +/- this in their channel
PATTERN_AMPLITUDE = 100.0  # pattern tiles: mid grey +/- this in their channel
DARK = 25.0  # a pattern's other two channels
NOISE = 6.0


def class_id(k: int, matches: bool) -> int:
    """The class of the centre of a k x k pattern that matches its layout (or is its negative)."""
    return CLASSES.index(f"{k}x{k} pattern, {'matches' if matches else 'inverted'}")


def _grid(rng: np.random.Generator, k: int) -> np.ndarray:
    """A random (k, k) grid of +/-1 that is not all one sign."""
    while True:
        grid = rng.choice(np.array([-1.0, 1.0], np.float32), size=(k, k))
        if abs(grid.sum()) < k * k:
            return grid


def _layouts(rng: np.random.Generator, size: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """((size, size, 3) picture, [3x3, 5x5, 7x7 layouts]): the plaid, one layout per channel."""
    image = np.full((size, size, 3), 128.0, np.float32)
    layouts = [_grid(rng, k) for k in GRIDS]
    edges = np.arange(size)
    for channel, (k, layout) in enumerate(zip(GRIDS, layouts)):
        idx = np.minimum(edges * k // size, k - 1)
        image[..., channel] += LAYOUT_AMPLITUDE * layout[idx[:, None], idx[None, :]]
    return image, layouts


def _place(rng: np.random.Generator, size: int, sides: list[int]) -> list[tuple[int, int]]:
    """Top-left corners on the tile grid for squares of `sides` px, at least a tile apart."""
    slots = size // TILE
    while True:
        boxes: list[tuple[int, int, int]] = []
        for side in sides:
            n = side // TILE
            for _ in range(50):
                ty, tx = rng.integers(0, slots - n + 1, size=2)
                if all(ty + n + 1 <= y or y + m + 1 <= ty or tx + n + 1 <= x or x + m + 1 <= tx
                       for y, x, m in boxes):
                    boxes.append((int(ty), int(tx), n))
                    break
        if len(boxes) == len(sides):
            return [(y * TILE, x * TILE) for y, x, _ in boxes]


def render_patterns(seed: int, index: int, size: int = SIZE) -> ShapesSample:
    """One scene, deterministic from (seed, index). `size` must be 128: the task is defined on
    the feature grid of a 128 px input."""
    if size != SIZE:
        raise ValueError(f"PatternMatch scenes are {SIZE} px (tiles are feature cells), not {size}")
    rng = np.random.default_rng([seed, index, 3])
    image, layouts = _layouts(rng, size)
    label = np.zeros((size, size), np.uint8)
    instances = np.zeros((size, size), np.uint8)
    order = sorted(range(len(GRIDS)), key=lambda c: -GRIDS[c])  # largest first
    corners = _place(rng, size, [GRIDS[c] * TILE for c in order])
    diameters = []
    for number, (channel, (y, x)) in enumerate(zip(order, corners), start=1):
        k, layout = GRIDS[channel], layouts[channel]
        matches = bool(rng.integers(2))
        grid = layout if matches else -layout
        side = k * TILE
        tiles = np.kron(grid, np.ones((TILE, TILE), np.float32))
        image[y:y + side, x:x + side] = DARK
        image[y:y + side, x:x + side, channel] = 128.0 + PATTERN_AMPLITUDE * tiles
        c0 = (k - 3) // 2 * TILE  # the central 3x3 tiles carry the class
        core = (slice(y + c0, y + c0 + 3 * TILE), slice(x + c0, x + c0 + 3 * TILE))
        lit = tiles[c0:c0 + 3 * TILE, c0:c0 + 3 * TILE] > 0  # only its lit tiles
        label[core][lit] = class_id(k, matches)
        instances[core][lit] = number
        diameters.append(3 * TILE * np.sqrt(2))
    image += rng.normal(0, NOISE, image.shape)
    return ShapesSample(np.clip(image, 0, 255).astype(np.uint8), label, instances, diameters)


class PatternMatch(MultiScaleShapes):
    """PatternMatch generated on the fly: `(image, label)` items; the same splits, lengths and
    seeds as `MultiScaleShapes`, other scenes."""

    classes = CLASSES

    def sample(self, i: int) -> ShapesSample:
        return render_patterns(self.seed, i, self.size)
