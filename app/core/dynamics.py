"""The dynamic part of the generated filters: filter = static mean + input-dependent part.

A DCM's filters are computed from the image, but most of each filter is the same for every image:
its mean over many inputs. What adapts is the rest, the *dynamic part*. So every view splits a
generated filter into the mean over a fixed reference set and the dynamic part, and measures
similarity and input-dependence on the dynamic part (where the mean dominates, raw filters of
two images have cosines of 0.95-1.0 however differently the images moved them).

The reference set is fixed per model and stated in the UI (`Reference.description`):
- models trained on a synthetic dataset (MultiScaleShapes, ContextShapes): the first
  `SCENES` scenes of its validation split, as `training.ablation` evaluates them;
- other models (the official Cityscapes / ADE20K checkpoints, whose data is not here): the
  `PHOTOS` photographs bundled with scikit-image.
Both go through the model's single-scale test pipeline (`training.ablation.generated_filters`),
like every image the app analyses. The mean is the "static filters" of the ablations.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from dmnet import DMNet

from .analysis import generated_filters
from .filters import input_dependence, rank_channels

SCENES = 64  # validation scenes in a synthetic model's reference set. Its mean must be the
# ablation's static filters (`training.ablation`: all 500): ContextShapes' first 8 scenes hold 6
# checked frames and 2 striped, and that mean acted as a checked picture's filters, the opposite
# of the ablation's. The first 64 hold 33 and 31: on 10 other scenes, their mean changes the
# class of 1.2-19.3% of the pixels, within 0.4 points of what the 500 scenes' mean changes.
# ~2 s for the demo model on 2 CPU threads, once, when the model loads.
PHOTOS = 4  # scikit-image photographs in the reference set of every other model (at its test
# scale: ~1536x1024 for Cityscapes, each pass tens of seconds for R-50 on 2 CPU threads)


@dataclass
class Reference:
    """The filters of a model over its fixed reference inputs: their mean and spread."""

    mean: dict[int, np.ndarray]  # k -> (C, k, k) float32 mean filter (the static filters)
    score: dict[int, np.ndarray]  # k -> (C,) std of each channel's taps across the inputs: how
    # much its dynamic part varies (the mean does not move a std)
    order: dict[int, np.ndarray]  # k -> channel indices, most input-dependent first
    inputs: int  # how many reference inputs
    description: str  # what they are, for the UI ("the first 12 ContextShapes validation scenes")


PHOTO_LOADERS = ("astronaut", "coffee", "chelsea", "rocket")  # skimage.data's, in this order


def reference_description(dataset: str) -> str:
    """What the fixed reference inputs of a model trained on `dataset` are, in words (nothing is
    computed: the status line says it when the model loads)."""
    from training.data import SYNTHETIC

    if dataset in SYNTHETIC:
        return f"the first {SCENES} {SYNTHETIC[dataset].__name__} validation scenes"
    return (f"{PHOTOS} photographs bundled with scikit-image "
            f"({', '.join(PHOTO_LOADERS[:PHOTOS])})")


def reference_data(dataset: str) -> tuple[list[np.ndarray], str]:
    """The fixed reference images of a model trained on `dataset`, and their description."""
    from training.data import SYNTHETIC, build_dataset  # generated here: their val split is at hand

    if dataset in SYNTHETIC:
        val = build_dataset(dataset, "val", None)
        return [val[i][0] for i in range(SCENES)], reference_description(dataset)
    import skimage.data  # bundled with the package: no download

    return [getattr(skimage.data, name)() for name in PHOTO_LOADERS[:PHOTOS]], \
        reference_description(dataset)


def reference(model: DMNet) -> Reference:
    """Run `model` over its reference inputs once and keep the filters' mean and spread (the
    backbone and the filter generators only: `analysis.generated_filters`)."""
    data, description = reference_data(model.preset.dataset)
    per_image = [generated_filters(model, image)
                 for image in tqdm(data, desc="reference filters", leave=False)]
    banks = {k: np.stack([f[k] for f in per_image]) for k in per_image[0]}  # (R, C, k, k)
    score = {k: input_dependence(b) for k, b in banks.items()}
    mean = {k: b.astype(np.float64).mean(0).astype(np.float32) for k, b in banks.items()}
    return Reference(mean, score, {k: rank_channels(s) for k, s in score.items()}, len(data),
                     description)


def save_reference(ref: Reference, path: Path) -> None:
    """`ref` as an .npz (no pickle), written atomically."""
    arrays = {f"{name}_{k}": getattr(ref, name)[k] for name in ("mean", "score", "order")
              for k in ref.mean}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, inputs=np.int64(ref.inputs), description=np.str_(ref.description), **arrays)
    os.replace(tmp, path)


def load_reference(path: Path) -> Reference | None:
    """The Reference `save_reference` wrote, or None when the file is missing or unreadable."""
    try:
        with np.load(path, allow_pickle=False) as z:
            sizes = sorted(int(n.split("_")[1]) for n in z.files if n.startswith("mean_"))
            got = {name: {k: z[f"{name}_{k}"] for k in sizes}
                   for name in ("mean", "score", "order")}
            return Reference(got["mean"], got["score"], got["order"], int(z["inputs"]),
                             str(z["description"]))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None


def dynamic_part(filters: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """(C, k, k) float64 `filters - mean`, both float32. The difference of two float32 numbers
    is exact in float64 unless their exponents are more than 29 apart (float64 has 53 mantissa
    bits, float32 24), so `mean + dynamic_part(filters, mean)` gives back `filters` exactly."""
    return filters.astype(np.float64) - mean.astype(np.float64)


def dynamic_parts(filters: dict[int, np.ndarray], ref: Reference) -> dict[int, np.ndarray]:
    """k -> (C, k, k) the dynamic part of every branch's generated filters."""
    return {k: dynamic_part(f, ref.mean[k]) for k, f in filters.items()}


def dynamic_share(mean: np.ndarray, dyn: np.ndarray) -> float:
    """|dynamic part| / (|mean| + |dynamic part|) (L2 norms): how much of a filter adapts."""
    d = float(np.linalg.norm(dyn))
    return d / max(float(np.linalg.norm(mean)) + d, 1e-12)
