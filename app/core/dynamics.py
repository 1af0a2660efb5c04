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

from dataclasses import dataclass

import numpy as np

from dmnet import DMNet

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


def reference_data(dataset: str) -> tuple[list[tuple[np.ndarray]], str]:
    """The fixed reference images of a model trained on `dataset` (as `(image,)` items, what
    `training.ablation` reads), and their description."""
    from training.data import SYNTHETIC, build_dataset  # generated here: their val split is at hand

    if dataset in SYNTHETIC:
        val = build_dataset(dataset, "val", None)
        name = type(val).__name__
        return [(val[i][0],) for i in range(min(SCENES, len(val)))], \
            f"the first {min(SCENES, len(val))} {name} validation scenes"
    import skimage.data

    loaders = {"astronaut": skimage.data.astronaut, "coffee": skimage.data.coffee,
               "chelsea": skimage.data.chelsea, "rocket": skimage.data.rocket,
               "motorcycle": lambda: skimage.data.stereo_motorcycle()[0],
               "immunohistochemistry": skimage.data.immunohistochemistry}  # bundled: no download
    names = list(loaders)[:PHOTOS]
    return [(loaders[n](),) for n in names], \
        f"{len(names)} photographs bundled with scikit-image ({', '.join(names)})"


def reference(model: DMNet) -> Reference:
    """Run `model` over its reference inputs once and keep the filters' mean and spread."""
    from training.ablation import generated_filters

    data, description = reference_data(model.preset.dataset)
    banks = {k: b.numpy() for k, b in generated_filters(model, data).items()}  # (R, C, k, k)
    score = {k: input_dependence(b) for k, b in banks.items()}
    mean = {k: b.astype(np.float64).mean(0).astype(np.float32) for k, b in banks.items()}
    return Reference(mean, score, {k: rank_channels(s) for k, s in score.items()}, len(data),
                     description)


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
