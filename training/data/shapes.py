"""MultiScaleShapes: a synthetic segmentation dataset where scale and shape matter, not colour.

Each image holds 4-12 objects of six shape classes (dmnet.presets.DATASETS["multiscale_shapes"])
whose sizes are log-uniform from a few pixels to half the image, over a textured background
(stripes or checks, 4-12 px period, any angle). Objects are flat colours, drawn upright (the
triangle and the star point up, the square and the cross are axis-aligned), lie wholly inside the
image and do not touch, so every label is a whole, unoccluded shape. Every colour, of the
background and of every class, is drawn from the same distribution, so a per-pixel colour
classifier cannot tell the classes apart (see training/baseline.py): where an object is shows in
the local texture, which class it is only in its shape, at its scale - the case DMNet's
multi-scale filters are made for.
Everything is deterministic from (seed, split, index) and generated on the fly; `export` writes
the standard folder layout (images/, annotations/, classes.json) that `SegFolder("folder")` reads.

    python -m training.data.shapes export data/shapes --train 2000 --val 500 --size 128
    python -m training.data.shapes export data/context --dataset context_shapes  # ContextShapes
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from dmnet.presets import DATASETS

CLASSES, PALETTE = DATASETS["multiscale_shapes"]
SPLIT_SEEDS = {"train": 0, "val": 1}
SIZE = 128  # default scene side: the demo model's scenes and crops (it tests them at 192 px)
# Object-size buckets (circumscribed diameter as a fraction of the image side): at the demo
# model's 128 px, tiny < 8 px <= small < 16 px <= medium < 32 px <= large (<= 64 px).
BUCKETS = {"tiny": (0.0, 1 / 16), "small": (1 / 16, 1 / 8), "medium": (1 / 8, 1 / 4),
           "large": (1 / 4, 1.0)}


@dataclass
class ShapesSample:
    image: np.ndarray  # (H, W, 3) uint8 RGB
    label: np.ndarray  # (H, W) uint8 class ids
    instances: np.ndarray  # (H, W) uint8 object ids, 0 = background; object k is sizes[k - 1]
    sizes: list[float]  # circumscribed diameter of each object, px
    world: int | None = None  # ContextShapes: the frame, STRIPES or CHECKS


STRIPES, CHECKS = range(2)
# Rotation (radians) that puts a shape upright: shape_mask's polygons have a vertex on +u.
UPRIGHT = {"triangle": -math.pi / 2, "star": -math.pi / 2, "square": math.pi / 4}


def _background(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray,
                kind: int | None = None) -> np.ndarray:
    """(h, w, 3) float colours: stripes or checks (period 4-12 px, any angle) blending two
    uniform random colours at least 80 apart (RGB distance), so the texture always shows.
    `kind` (STRIPES or CHECKS) is drawn at random unless given."""
    a, b = rng.uniform(0, 255, size=(2, 3))
    for _ in range(10):
        if np.linalg.norm(a - b) >= 80:
            break
        a, b = rng.uniform(0, 255, size=(2, 3))
    drawn = rng.integers(2)  # drawn even when given: the same stream either way
    kind = drawn if kind is None else kind
    theta = rng.uniform(0, math.pi)
    t = xx * math.cos(theta) + yy * math.sin(theta)
    period = math.exp(rng.uniform(math.log(4), math.log(12)))
    if kind == STRIPES:
        p = 0.5 + 0.5 * np.sin(2 * math.pi * t / period + rng.uniform(0, 2 * math.pi))
    else:
        s = -xx * math.sin(theta) + yy * math.cos(theta)
        p = ((np.floor(t / period) + np.floor(s / period)) % 2).astype(np.float32)
    return a * (1 - p[..., None]) + b * p[..., None]


def _polygon(u: np.ndarray, v: np.ndarray, n: int, inner: float) -> np.ndarray:
    """Inside a regular n-pointed star (or polygon) of outer radius 1 and inner radius `inner`.

    Fold the angle into one half-sector [0, pi/n]: the boundary there is the segment from the
    outer vertex (1, 0) to the inner one at angle pi/n; inside = on the origin's side of it.
    """
    rho, phi = np.hypot(u, v), np.mod(np.arctan2(v, u), 2 * math.pi / n)
    phi = np.minimum(phi, 2 * math.pi / n - phi)
    px, py = rho * np.cos(phi), rho * np.sin(phi)
    ex, ey = inner * math.cos(math.pi / n) - 1, inner * math.sin(math.pi / n)  # outer -> inner
    return ex * py - ey * (px - 1) >= 0  # the origin gives ey > 0: same side


def shape_mask(cls: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside test in the object's frame, coordinates scaled so the circumscribed radius is 1."""
    r = np.hypot(u, v)
    if cls == "disk":
        return r <= 1
    if cls == "ring":
        return (r <= 1) & (r >= 0.55)
    if cls == "square":
        return _polygon(u, v, 4, math.cos(math.pi / 4))
    if cls == "triangle":
        return _polygon(u, v, 3, math.cos(math.pi / 3))
    if cls == "star":
        return _polygon(u, v, 5, 0.42)
    if cls == "cross":
        arm = 0.3
        return (((np.abs(u) <= arm) & (np.abs(v) <= 1)) | ((np.abs(v) <= arm) & (np.abs(u) <= 1)))
    raise ValueError(f"unknown shape class {cls!r}")


def paint(rng: np.random.Generator, layers: tuple[np.ndarray, np.ndarray, np.ndarray],
          grid: tuple[np.ndarray, np.ndarray], circle: tuple[float, float, float], shape: str,
          ids: tuple[int, int]) -> None:
    """Draw one upright `shape` (circumscribed circle (cy, cx, r)) in place: into the (image,
    label, instances) layers, in a flat colour drawn from `rng` that stands out from what it
    covers (a class-independent rejection), with ids (class, instance)."""
    image, label, instances = layers
    (yy, xx), (cy, cx, r) = grid, circle
    size_y, size_x = label.shape
    angle = UPRIGHT.get(shape, 0.0)
    y0, y1 = max(int(cy - r) - 1, 0), min(int(cy + r) + 2, size_y)
    x0, x1 = max(int(cx - r) - 1, 0), min(int(cx + r) + 2, size_x)
    du, dv = (xx[y0:y1, x0:x1] - cx) / r, (yy[y0:y1, x0:x1] - cy) / r
    u = du * math.cos(angle) + dv * math.sin(angle)
    v = -du * math.sin(angle) + dv * math.cos(angle)
    inside = shape_mask(shape, u, v)
    under = image[y0:y1, x0:x1][inside].mean(0) if inside.any() else image[y0, x0]
    fill = rng.uniform(0, 255, 3)
    for _ in range(10):
        if np.linalg.norm(fill - under) > 60:
            break
        fill = rng.uniform(0, 255, 3)
    image[y0:y1, x0:x1][inside] = fill
    label[y0:y1, x0:x1][inside] = ids[0]
    instances[y0:y1, x0:x1][inside] = ids[1]


def render(seed: int, index: int, size: int = SIZE, min_px: float = 5.0,
           objects: tuple[int, int] = (4, 12)) -> ShapesSample:
    """One image, deterministic from (seed, index). Objects lie wholly inside the image and do not
    touch each other (an object that finds no free place in 20 draws is left out)."""
    rng = np.random.default_rng([seed, index])
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    image = _background(rng, yy, xx)
    label = np.zeros((size, size), np.uint8)
    instances = np.zeros((size, size), np.uint8)
    n = int(rng.integers(objects[0], objects[1] + 1))
    wanted = sorted(np.exp(rng.uniform(math.log(min_px), math.log(size / 2), n)), reverse=True)
    placed: list[tuple[float, float, float]] = []  # (cy, cx, r) of the objects drawn
    for diameter in wanted:  # large first: they are the hardest to fit
        r = diameter / 2
        for _ in range(20):
            cy, cx = rng.uniform(r + 1, size - r - 1, 2)
            if all(math.hypot(cy - y, cx - x) > r + q + 2 for y, x, q in placed):
                break
        else:
            continue
        placed.append((cy, cx, r))
        cls = int(rng.integers(1, len(CLASSES)))
        paint(rng, (image, label, instances), (yy, xx), (cy, cx, r), CLASSES[cls],
              (cls, len(placed)))
    image += rng.normal(0, 6, image.shape)
    return ShapesSample(np.clip(image, 0, 255).astype(np.uint8), label, instances,
                        [2 * r for _, _, r in placed])


class MultiScaleShapes(Dataset):
    """MultiScaleShapes generated on the fly: `(image, label)` items like `SegFolder`.

    Args:
        split: "train" or "val" (disjoint streams of images).
        length: number of images (default: 20000 train, the 500 validation images of the demo
            checkpoint's model card); the train stream is as long as you like.
        size: image side in pixels.
        seed: base seed; image i of a split is `render((seed, split), i)`.
    """

    classes = CLASSES

    def __init__(self, split: str = "train", length: int | None = None, size: int = SIZE,
                 seed: int = 0) -> None:
        self.split, self.size = split, size
        self.length = length or {"train": 20000, "val": 500}[split]
        self.seed = seed * 10 + SPLIT_SEEDS[split]

    def __len__(self) -> int:
        return self.length

    def sample(self, i: int) -> ShapesSample:
        return render(self.seed, i, self.size)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        s = self.sample(i)
        return s.image, s.label


class SizeBuckets:
    """Per-object-size metrics: pixel accuracy and the share of objects recognised (more than
    half of the object's visible pixels predicted as its class), per bucket of `BUCKETS`."""

    def __init__(self) -> None:
        self.stats = {b: np.zeros(4, np.int64) for b in BUCKETS}  # pixels, correct, objects, hits

    def update(self, pred: np.ndarray, sample: ShapesSample) -> None:
        side = max(sample.label.shape)
        ids = sample.instances.ravel().astype(np.int64)
        correct = (pred.ravel() == sample.label.ravel())
        pixels = np.bincount(ids, minlength=len(sample.sizes) + 1)[1:]
        hits = np.bincount(ids, weights=correct, minlength=len(sample.sizes) + 1)[1:]
        for diameter, n, h in zip(sample.sizes, pixels, hits):
            if n == 0:  # fully occluded
                continue
            name = next(b for b, (lo, hi) in BUCKETS.items() if lo <= diameter / side < hi)
            self.stats[name] += np.array([n, int(h), 1, int(h * 2 > n)])

    def summary(self) -> dict[str, dict[str, float]]:
        return {b: {"objects": int(s[2]),
                    "pixel_acc": round(100 * s[1] / max(s[0], 1), 2),
                    "objects_recognised": round(100 * s[3] / max(s[2], 1), 2)}
                for b, s in self.stats.items()}


def label_png(label: np.ndarray, palette=PALETTE) -> Image.Image:
    """A (H, W) uint8 label map as a palette PNG image: class ids as pixel values, the dataset's
    colours (`palette`, RGB per class) as the palette (what SegFolder and the app read back as
    class ids)."""
    mask = Image.fromarray(label, mode="P")
    mask.putpalette([c for rgb in palette for c in rgb])
    return mask


def export(out: Path, train: int, val: int, size: int = SIZE, seed: int = 0,
           dataset: str = "multiscale_shapes") -> None:
    """Write images/<split>/*.png, annotations/<split>/*.png (palette PNGs of class ids) and
    classes.json: the folder layout `SegFolder("folder")` reads, for one of the synthetic
    datasets (training.data.SYNTHETIC). (Size-bucket metrics need the object sizes, so they are
    computed on the on-the-fly dataset.)"""
    from . import SYNTHETIC  # the package imports this module

    classes, palette = DATASETS[dataset]
    for split, n in (("train", train), ("val", val)):
        data = SYNTHETIC[dataset](split, n, size, seed)
        for sub in ("images", "annotations"):
            (out / sub / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            s, stem = data.sample(i), f"{i:06d}"
            Image.fromarray(s.image).save(out / "images" / split / f"{stem}.png")
            label_png(s.label, palette).save(out / "annotations" / split / f"{stem}.png")
    meta = {"classes": list(classes), "palette": [list(c) for c in palette],
            "dataset": dataset, "size": size, "seed": seed}
    (out / "classes.json").write_text(json.dumps(meta, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description="Export MultiScaleShapes to a folder dataset.")
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("export", help="write images/, annotations/, classes.json")
    ex.add_argument("out", type=Path)
    ex.add_argument("--train", type=int, default=2000)
    ex.add_argument("--val", type=int, default=500)
    ex.add_argument("--size", type=int, default=SIZE)
    ex.add_argument("--seed", type=int, default=0)
    from . import SYNTHETIC  # the package imports this module

    ex.add_argument("--dataset", choices=sorted(SYNTHETIC), default="multiscale_shapes")
    args = parser.parse_args()
    export(args.out, args.train, args.val, args.size, args.seed, args.dataset)
    print(f"wrote {args.train} train and {args.val} val images to {args.out}")


if __name__ == "__main__":
    main()
