"""PatternMatch: synthetic scenes labelled by the comparison a DCM computes.

What a DCM computes: branch k pools the image to a k x k grid, turns each grid cell into one
filter tap per channel, and runs that k x k filter over every k x k neighbourhood of the
1/8-resolution feature map. So its output at a pixel says how much the neighbourhood there looks
like *the whole picture shrunk to k x k*. PatternMatch makes that the task.

- The picture is a plaid of three **layouts**, one random +/- grid per colour channel: red
  carries a 3x3 grid of large tiles, green a 5x5 grid, blue a 7x7 grid. Each is drawn on the
  pooling bins of its size: torch's adaptive pooling of the 16 x 16 feature map to k x k gives
  bin i the cells floor(16 i / k) to ceil(16 (i + 1) / k), neighbouring bins share a cell where
  k does not divide 16, and those shared cells stay mid grey. Pooled to k x k the channel is
  then exactly its layout (each bin holds its own tile and grey, never a neighbour's tile), the
  "whole picture shrunk to k x k" in the channel of size k; pooled to another size, tiles mix.
- On it lie three **patterns**, one per size: a 3x3, a 5x5 and a 7x7 grid of 8 px tiles (one
  feature cell per tile), in the same channel as the layout of that size, the other two
  channels mid grey. Each copies its layout ("matches the picture") or is its negative, every
  tile flipped ("inverted"), with probability one half each.
- The class of the lit tiles among a pattern's central 3x3 (24 px) is its size and whether it
  matches: six classes. Everything else, the rest of a 5x5 or 7x7 pattern and the dark tiles,
  is background: so labelling a pattern needs each tile's sign, which the comparison needs too
  (labelling the whole centre left the network with neither; see below). Nothing local tells
  "matches" from "inverted": both are random-looking grids; only the comparison with the
  picture's layout does. The branch whose grid has the pattern's size lines the two up tap by
  tap (its filter then scores +k*k against -k*k); a larger grid sees the layout resampled, which
  can stand in less cleanly (an earlier version of this data, whose layout tiles were plain
  k-ths of the picture, had its 3x3 patterns compared in branch k=5: assets/README.md, item 5).

Scenes are 128 px and used without rescaling or cropping (preset ratio_range 1.0, crop 128,
test scale 128), so each pattern tile is one feature cell and each layout tile lies on its
pooling bins; flips keep both aligned (the bins are symmetric). The preset also leaves out
PhotoMetricDistortion, whose hue rotation mixes the channels that keep the layouts apart.
Everything is deterministic from (seed, split, index).

An experiment, not a bundled model (assets/README.md, "what was tried", items 5 and 6): with
the whole centre labelled, an earlier version stayed at chance on "matches" vs "inverted"; with
only the lit tiles labelled, the 3x3 comparison forms (by iteration 1500 with this version),
in all four branches at once, while the 5x5 and 7x7 ones had not started by iteration 6500.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dmnet.presets import DATASETS

from .shapes import MultiScaleShapes, ShapesSample

CLASSES, PALETTE = DATASETS["pattern_match"]
SIZE = 128
TILE = 8  # pattern tile, px: one cell of the 1/8-resolution feature map
CELLS = SIZE // TILE  # the feature map's side (16)
GRIDS = (3, 5, 7)  # pattern and layout sizes, one per colour channel (red, green, blue)
LAYOUT_AMPLITUDE = 60.0  # layout tiles: mid grey +/- this in their channel
PATTERN_AMPLITUDE = 100.0  # pattern tiles: mid grey +/- this in their channel
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


def bin_owner(k: int, cells: int = CELLS) -> np.ndarray:
    """Per feature cell along one axis, the k x k pooling bin it falls in, or -1 for a cell that
    two bins share: torch's adaptive_avg_pool2d gives bin i the cells floor(i * n / k) up to
    ceil((i + 1) * n / k), and these overlap where k does not divide n (16 cells: 3, 5 and 7)."""
    owner = np.full(cells, -1)
    count = np.zeros(cells, int)
    for i in range(k):
        lo, hi = i * cells // k, -(-(i + 1) * cells // k)
        owner[lo:hi] = i
        count[lo:hi] += 1
    owner[count > 1] = -1
    return owner


def plaid(rng: np.random.Generator) -> tuple[np.ndarray, list[np.ndarray]]:
    """((SIZE, SIZE, 3) picture, [3x3, 5x5, 7x7 layouts]): the plaid, one layout per channel.
    Tile (i, j) of a k x k layout is drawn on the cells that only pooling bin (i, j) holds, and
    the cells two bins share stay mid grey: pooled to k x k the channel is exactly the layout
    (times the share of each bin that is its own); pooled to another size, tiles mix."""
    image = np.full((SIZE, SIZE, 3), 128.0, np.float32)
    layouts = [_grid(rng, k) for k in GRIDS]
    for channel, (k, layout) in enumerate(zip(GRIDS, layouts)):
        owner = bin_owner(k)[np.arange(SIZE) // TILE]
        own = (owner[:, None] >= 0) & (owner[None, :] >= 0)
        tiles = layout[np.maximum(owner, 0)[:, None], np.maximum(owner, 0)[None, :]]
        image[..., channel] += LAYOUT_AMPLITUDE * np.where(own, tiles, 0.0)
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


@dataclass(frozen=True)
class Pattern:
    k: int  # its size: k x k tiles
    top: int  # its top-left corner, px (a multiple of TILE)
    left: int
    matches: bool  # copies its layout (else the layout's negative)


def compose(rng: np.random.Generator) -> tuple[np.ndarray, list[np.ndarray], list[Pattern]]:
    """A noiseless scene: (float (SIZE, SIZE, 3) picture, [3x3, 5x5, 7x7 layouts], patterns)."""
    image, layouts = plaid(rng)
    order = sorted(range(len(GRIDS)), key=lambda c: -GRIDS[c])  # largest first
    corners = _place(rng, SIZE, [GRIDS[c] * TILE for c in order])
    patterns = []
    for channel, (y, x) in zip(order, corners):
        k = GRIDS[channel]
        pattern = Pattern(k, y, x, matches=bool(rng.integers(2)))
        grid = layouts[channel] if pattern.matches else -layouts[channel]
        side = k * TILE
        image[y:y + side, x:x + side] = 128.0  # its other two channels mid grey
        image[y:y + side, x:x + side, channel] += PATTERN_AMPLITUDE * _tiles(grid)
        patterns.append(pattern)
    return image, layouts, patterns


def _tiles(grid: np.ndarray) -> np.ndarray:
    """A grid of values drawn as TILE x TILE px tiles."""
    return np.kron(grid, np.ones((TILE, TILE), np.float32))


def render_patterns(seed: int, index: int, size: int = SIZE) -> ShapesSample:
    """One scene, deterministic from (seed, index). `size` must be 128: the task is defined on
    the feature grid of a 128 px input."""
    if size != SIZE:
        raise ValueError(f"PatternMatch scenes are {SIZE} px (tiles are feature cells), not {size}")
    rng = np.random.default_rng([seed, index, 3])
    image, layouts, patterns = compose(rng)
    label = np.zeros((size, size), np.uint8)
    instances = np.zeros((size, size), np.uint8)
    for number, pattern in enumerate(patterns, start=1):
        k, c0 = pattern.k, (pattern.k - 3) // 2  # the central 3x3 tiles carry the class ...
        grid = layouts[GRIDS.index(k)] * (1 if pattern.matches else -1)
        lit = _tiles(grid[c0:c0 + 3, c0:c0 + 3]) > 0
        y, x = pattern.top + c0 * TILE, pattern.left + c0 * TILE
        core = (slice(y, y + 3 * TILE), slice(x, x + 3 * TILE))
        label[core][lit] = class_id(k, pattern.matches)  # ... on their lit tiles only
        instances[core][lit] = number
    image += rng.normal(0, NOISE, image.shape)
    diameters = [3 * TILE * np.sqrt(2)] * len(patterns)
    return ShapesSample(np.clip(image, 0, 255).astype(np.uint8), label, instances, diameters)


class PatternMatch(MultiScaleShapes):
    """PatternMatch generated on the fly: `(image, label)` items; the same splits, lengths and
    seeds as `MultiScaleShapes`, other scenes."""

    classes = CLASSES

    def sample(self, i: int) -> ShapesSample:
        return render_patterns(self.seed, i, self.size)
