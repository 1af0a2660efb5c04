"""Branch roles by object size: which input decides an object's pixels, and what removing it costs.

Objects are the connected components (8-connected) of each class of the true mask, except a class
named "background" (and ignored pixels, 255). An object's size is its circumscribed diameter,
estimated as twice the largest distance from its centroid to a pixel centre, plus one pixel (for
a disk of radius r this gives 2r). As in the model card, objects fall into `BUCKETS` by that
diameter as a fraction of the image's longer side (tiny < 1/16 <= small < 1/8 <= medium < 1/4 <=
large). Per bucket, over the pixels of its objects:

- **decides**: the share of pixels where each input (x, k=1, ...) has the largest term of the
  logit margin (`app.attribution`, as the attribution map), nearest-upsampled to the image;
- **accuracy** of the full prediction, and with each input removed (the app's "remove"
  ablation: `analysis.ablated_label` with `attribution.keep_mask`).
Pixels of the background class form one more group, so x's role there shows too.

Over a dataset (`dataset_roles`, pixel-weighted), as a command line:

    python -m app.core.roles assets/demo/dmnet_r18-d8_context.pth --limit 100   # -> CKPT.roles.json

It answers what the ablation alone cannot: an input can decide many pixels (have the largest
term of their margin) and still cost little when removed, because the other inputs' terms
without it still keep the same class on top.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from skimage.measure import label as components
from skimage.measure import regionprops

from dmnet import DMNet
from training.data.shapes import BUCKETS  # the model card's object-size buckets

from .analysis import Analysis, ablated_label, analyse, margin_shares
from .attribution import keep_mask
from .metrics import IGNORE
from .overlays import upsample_nearest

BACKGROUND = "background"  # the class whose pixels are not objects (when a model has one)


@dataclass
class Group:
    """One object-size bucket (or the background) of one image."""

    name: str  # "tiny", "small", "medium", "large" or "background"
    diameters: tuple[float, float]  # the bucket's range of diameters in pixels of this image
    objects: int  # how many objects (0 for the background group)
    pixels: int
    decides: np.ndarray  # (P,) share of the pixels where each input decides (sums to 1)
    accuracy: float  # pixel accuracy of the full prediction (NaN without pixels)
    without: np.ndarray  # (P,) pixel accuracy with each input removed

    @property
    def cost(self) -> np.ndarray:
        """(P,) accuracy lost (fraction) when each input is removed."""
        return self.accuracy - self.without


@dataclass
class Roles:
    names: tuple[str, ...]  # the inputs, "x", "k=1", ...
    groups: list[Group]  # the four buckets in order, then the background


@dataclass
class Objects:
    """The true mask's objects: an id map and each object's diameter and bucket."""

    ids: np.ndarray  # (H, W) int, 0 = no object; object i is entry i - 1 below
    diameters: list[float]  # px
    buckets: list[str]


def bucket_of(diameter: float, side: int) -> str:
    """The `BUCKETS` name of an object of `diameter` px in an image whose longer side is `side`."""
    f = diameter / side
    return next((b for b, (lo, hi) in BUCKETS.items() if lo <= f < hi), list(BUCKETS)[-1])


def find_objects(truth: np.ndarray, classes: tuple[str, ...]) -> Objects:
    """The connected components of each non-background class of a true mask."""
    ids = np.zeros(truth.shape, np.int64)
    diameters: list[float] = []
    side = max(truth.shape)
    for c, name in enumerate(classes):
        if name.lower() == BACKGROUND:
            continue
        for region in regionprops(components(truth == c, connectivity=2)):
            coords = region.coords  # (n, 2) row, col
            radius = np.hypot(*(coords - np.asarray(region.centroid)).T).max() + 0.5
            diameters.append(2 * float(radius))
            ids[coords[:, 0], coords[:, 1]] = len(diameters)
    return Objects(ids, diameters, [bucket_of(d, side) for d in diameters])


def removed_labels(a: Analysis) -> dict[str, np.ndarray]:
    """Input name -> (H, W) prediction with that input removed from the bottleneck."""
    return {n: ablated_label(a, keep_mask(a.part_names, [n], "remove")) for n in a.part_names}


def decider(a: Analysis) -> np.ndarray:
    """(H, W) index of the input that decides each displayed pixel (the attribution map)."""
    return upsample_nearest(margin_shares(a).argmax(0), a.image.shape[:2])


def branch_roles(a: Analysis, truth: np.ndarray,
                 removed: dict[str, np.ndarray] | None = None) -> Roles:
    """Per bucket of object size (and the background): which input decides, and the cost of
    removing each input. `removed` (from `removed_labels`) is computed when not given."""
    removed = removed or removed_labels(a)
    names = a.part_names
    objects = find_objects(truth, a.classes)
    winner = decider(a)
    side = max(truth.shape)
    order = list(BUCKETS)
    bucket = np.array([-1, *(order.index(b) for b in objects.buckets)])[objects.ids]  # (H, W)
    background = [c for c, n in enumerate(a.classes) if n.lower() == BACKGROUND]
    groups = []
    for name, (lo, hi) in [*BUCKETS.items(), (BACKGROUND, (0.0, 0.0))]:
        if name == BACKGROUND:
            where = np.isin(truth, background) & (truth != IGNORE)
        else:
            where = bucket == order.index(name)
        n = int(where.sum())
        decides = np.bincount(winner[where], minlength=len(names)) / max(n, 1)
        truth_here = truth[where]
        acc = float((a.label[where] == truth_here).mean()) if n else float("nan")
        without = np.array([float((removed[p][where] == truth_here).mean()) if n
                            else float("nan") for p in names])
        groups.append(Group(name, (lo * side, hi * side), objects.buckets.count(name), n,
                            decides, acc, without))
    return Roles(names, groups)


def changed_share(a: Analysis, removed: dict[str, np.ndarray]) -> dict[str, float]:
    """Input name -> share of the pixels that change class when it is removed."""
    return {n: float((lab != a.label).mean()) for n, lab in removed.items()}


def dataset_roles(model: DMNet, data: Sequence[tuple[np.ndarray, np.ndarray]],
                  limit: int | None = None, progress: bool = False) -> Roles:
    """`branch_roles` over the first `limit` (image, true mask) items of `data` (all by default),
    each group's shares and accuracies weighted by its pixels in every image."""
    from tqdm import tqdm

    n = min(len(data), limit or len(data))
    per_image = [branch_roles(analyse(model, data[i][0]), data[i][1])
                 for i in tqdm(range(n), disable=not progress, desc="roles", leave=False)]
    groups = []
    for g, first in enumerate(per_image[0].groups):
        same = [r.groups[g] for r in per_image]
        w = np.array([x.pixels for x in same], np.float64)
        total = w.sum()

        def weighted(values: list) -> np.ndarray:
            stacked = np.nan_to_num(np.array(values, np.float64))  # groups without pixels: w 0
            return (w.reshape(-1, *[1] * (stacked.ndim - 1)) * stacked).sum(0) / max(total, 1)

        groups.append(Group(first.name, first.diameters, sum(x.objects for x in same),
                            int(total), weighted([x.decides for x in same]),
                            float(weighted([x.accuracy for x in same])) if total else np.nan,
                            weighted([x.without for x in same]) if total
                            else np.full(len(first.without), np.nan)))
    return Roles(per_image[0].names, groups)


def format_roles(roles: Roles) -> str:
    """One row per group: its objects and pixels, the share each input decides (%), and the
    accuracy points lost without each input."""
    names = roles.names
    head = (f"{'group':<10} {'objects':>7} {'pixels':>9} {'acc %':>6} | decides %: "
            + " ".join(f"{n:>5}" for n in names) + " | lost without: "
            + " ".join(f"{n:>5}" for n in names))
    lines = [head]
    for g in roles.groups:
        lines.append(f"{g.name:<10} {g.objects:>7} {g.pixels:>9} {100 * g.accuracy:6.2f} | "
                     + " " * 11 + " ".join(f"{100 * d:5.1f}" for d in g.decides) + " | "
                     + " " * 14 + " ".join(f"{100 * c:5.2f}" for c in g.cost))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    from training.evaluate import checkpoint_and_data, checkpoint_arguments

    parser = argparse.ArgumentParser(description="Which input of DMHead's bottleneck decides the "
                                     "pixels of each object size, and what removing it costs.")
    checkpoint_arguments(parser, ".roles.json")
    args = parser.parse_args(argv)
    model, data = checkpoint_and_data(args.checkpoint, args.data_root, args.split, args.device)
    roles = dataset_roles(model, data, args.limit, progress=True)
    n = min(len(data), args.limit or len(data))
    print(f"{model.preset.name} on {n} {args.split} images\n\n{format_roles(roles)}")
    out = args.out or args.checkpoint.with_suffix(".roles.json")
    groups = [{**asdict(g), "decides": g.decides.tolist(), "without": g.without.tolist(),
               "cost": g.cost.tolist()} for g in roles.groups]
    out.write_text(json.dumps({"checkpoint": str(args.checkpoint), "preset": model.preset.name,
                               "split": args.split, "images": n, "inputs": list(roles.names),
                               "groups": groups}, indent=1))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()


def points(change: float) -> str:
    """An accuracy change (fraction) in signed percentage points, "+0.0" for no change."""
    return f"{round(100 * change, 1) + 0.0:+.1f}"
