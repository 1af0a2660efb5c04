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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from skimage.measure import label as components
from skimage.measure import regionprops

from training.data.shapes import BUCKETS  # the model card's object-size buckets

from .analysis import Analysis, ablated_label, margin_shares
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
