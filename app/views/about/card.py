"""The model card shown in the app, and the notice for an image outside the model's domain.

The card is read from the model's preset, the checkpoint's meta and the JSON files beside the
checkpoint that `training.evaluate` and `training.ablation` write (`<stem>.eval.json`,
`<stem>.ablation.json`); official checkpoints give their published mIoU (dmnet/presets.py).

The domain test ("is this one of the synthetic scenes?") looks at the grain of the image. The
scenes of `training.data` get a fine Gaussian noise (sigma 6, every channel on its own) on top of
flat colours and two-colour textures: within any 8x8 block, the colours vary along at most one
or two directions, and in the others only the noise is left, the same in each. A photograph's
grain is far weaker (JPEG and camera processing smooth it) and not the same in every colour
direction (it follows brightness).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from app.core import models
from app.core.runtime import USER_ERRORS, picture
from dmnet import DMNet
from dmnet.presets import Preset

SYNTHETIC = {  # datasets of generated scenes -> their words
    "multiscale_shapes": "MultiScaleShapes, this project's generated scenes: flat shapes of six "
                         "kinds at every size over stripes or checks (training/data/shapes.py)",
    "context_shapes": "ContextShapes, this project's generated scenes: a shape's class is its "
                      "shape and the picture's frame (stripes or checks), one object size per "
                      "scene (training/data/context.py)",
    "pattern_match": "PatternMatch, this project's generated scenes: a k×k pattern's class is "
                     "whether it copies the picture's k×k layout (training/data/patterns.py)",
}
PHOTOS = {
    "cityscapes": "Cityscapes: street photos from 50 German cities, 19 classes (2,975 training, "
                  "500 validation images)",
    "ade20k": "ADE20K: photos of indoor and outdoor scenes, 150 classes (20,210 training, 2,000 "
              "validation images)",
}
BLOCK = 8  # px side of the blocks whose colour grain is measured
GRAIN = (1.5, 12.0)  # the scenes' grain (sigma, 0-255 scale) lies in here at every zoom
EVENNESS = 2.0  # ... and is about as strong in its two weakest colour directions (ratio <=)


# --- the domain test ------------------------------------------------------------------------------

@dataclass
class Grain:
    """The colour noise left in an image's blocks once their main colour directions are gone."""

    sigma: float  # median over blocks of the weakest colour direction's std (0-255 scale)
    evenness: float  # median over blocks of std(second weakest) / std(weakest), >= 1

    @property
    def synthetic(self) -> bool:
        """Whether the grain is that of this project's generated scenes."""
        return GRAIN[0] <= self.sigma <= GRAIN[1] and self.evenness <= EVENNESS


def grain(image: np.ndarray) -> Grain:
    """The colour grain of an (H, W, 3) or (H, W) uint8 image (at least 8x8)."""
    x = image.astype(np.float64)
    if x.ndim == 2:
        x = np.repeat(x[..., None], 3, axis=-1)
    h, w = x.shape[0] // BLOCK * BLOCK, x.shape[1] // BLOCK * BLOCK
    if h == 0 or w == 0:
        return Grain(0.0, 1.0)
    blocks = (x[:h, :w, :3].reshape(h // BLOCK, BLOCK, w // BLOCK, BLOCK, 3)
              .transpose(0, 2, 1, 3, 4).reshape(-1, BLOCK * BLOCK, 3))  # (N, 64, 3)
    blocks = blocks - blocks.mean(1, keepdims=True)
    cov = np.einsum("nki,nkj->nij", blocks, blocks) / (BLOCK * BLOCK - 1)  # (N, 3, 3)
    var = np.maximum(np.linalg.eigvalsh(cov), 0.0)  # ascending per block
    sigma = float(np.sqrt(np.median(var[:, 0])))
    evenness = float(np.median(np.sqrt((var[:, 1] + 1e-3) / (var[:, 0] + 1e-3))))
    return Grain(sigma, evenness)


def domain_notice(preset: Preset, image: np.ndarray) -> str | None:
    """A warning when the image is clearly not of the kind the model was trained on: a photo for
    a model of generated scenes, a generated scene for a model of photos; else None."""
    synthetic = grain(image).synthetic
    if preset.dataset in SYNTHETIC and not synthetic:
        return ("**Out of this model's domain.** It was trained only on generated scenes "
                f"({SYNTHETIC[preset.dataset].split(',')[0]}); this image does not look like "
                "one, so its prediction says little about the image. The views still show how "
                "the filters react to it. Generate a scene or pick a shapes example to see "
                "the model at work.")
    if preset.dataset in PHOTOS and synthetic:
        return (f"**Out of this model's domain.** It was trained on photos "
                f"({PHOTOS[preset.dataset].split(':')[0]}); this looks like one of this "
                "project's generated scenes.")
    return None


# --- the model card -------------------------------------------------------------------------------

def sidecars(checkpoint: Path | None) -> tuple[dict | None, dict | None]:
    """The evaluation and ablation JSON files beside a checkpoint (None where missing or bad)."""
    found = []
    for suffix in (".eval.json", ".ablation.json"):
        path = None if checkpoint is None else checkpoint.with_suffix(suffix)
        try:
            found.append(json.loads(path.read_text()) if path and path.is_file() else None)
        except (OSError, ValueError):
            found.append(None)
    return found[0], found[1]


def read_meta(checkpoint: Path | None) -> dict:
    """The checkpoint's `meta` (training iterations, time, ...), {} if it has none."""
    if checkpoint is None or not checkpoint.is_file():
        return {}
    try:
        obj = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 -- an official file in an old format: the preset says it
        return {}
    meta = obj.get("meta") if isinstance(obj, dict) else None
    return dict(meta) if isinstance(meta, dict) else {}


def _data_words(p: Preset) -> str:
    words = SYNTHETIC.get(p.dataset) or PHOTOS.get(p.dataset) or p.dataset
    return f"{words}; trained on {p.crop_size[0]}×{p.crop_size[1]} crops"


def _iou_table(iou: dict[str, float]) -> list[str]:
    rows = ["| class | IoU % |", "| --- | ---: |"]
    return rows + [f"| {name} | {value:.1f} |" for name, value in iou.items()]


def _sizes_table(buckets: dict[str, dict]) -> list[str]:
    rows = ["| object size | objects | pixels right % | objects recognised % |",
            "| --- | ---: | ---: | ---: |"]
    return rows + [f"| {name} | {b.get('objects', '')} | {b.get('pixel_acc', '')} | "
                   f"{b.get('objects_recognised', '')} |" for name, b in buckets.items()]


def _ablation_table(ablation: dict) -> list[str]:
    rows = ["| variant | mIoU % | cost (mIoU points) |", "| --- | ---: | ---: |"]
    return rows + [f"| {r['variant']} | {r['mIoU']:.2f} | {r['drop']:+.2f} |"
                   for r in ablation.get("rows", [])]


def card_markdown(model: DMNet, label: str, checkpoint: Path | None) -> str:
    """The model card: preset, training data, validation mIoU, per-class IoU, ablation."""
    p = model.preset
    meta = read_meta(checkpoint)
    evaluation, ablation = sidecars(checkpoint)
    params = sum(t.numel() for t in model.parameters())
    trained = f" · {meta['iter']:,} training iterations" if isinstance(meta.get("iter"), int) \
        else ""
    lines = [f"**{label}**", "",
             f"- **preset** `{p.name}`: ResNet-{p.depth} backbone, filter sizes "
             f"{', '.join(map(str, p.filter_sizes))}, head width {p.head_channels}, "
             f"{params:,} weights{trained}",
             f"- **training data** {_data_words(p)}"]
    if p.miou:
        ms = f", {p.miou_ms_flip:.2f} with multi-scale + flip" if p.miou_ms_flip else ""
        lines.append(f"- **published mIoU** {p.miou:.2f} (single scale){ms}, on the validation "
                     "set (mmsegmentation's model zoo)")
    if evaluation:
        images = f" on {evaluation['images']} images" if evaluation.get("images") else ""
        lines += [f"- **validation mIoU {evaluation['mIoU']:.2f}**{images} (split "
                  f"`{evaluation.get('split', 'val')}`, `python -m training.evaluate`)", ""]
        lines += _iou_table(evaluation.get("IoU", {}))
        if evaluation.get("size_buckets"):
            lines += ["", *_sizes_table(evaluation["size_buckets"])]
    elif not p.miou:
        lines.append("- no evaluation beside this checkpoint (`python -m training.evaluate "
                     "CHECKPOINT` writes `<name>.eval.json`)")
    if ablation and ablation.get("rows"):
        lines += ["", "**What each part is worth** (`python -m training.ablation`: the "
                  "validation mIoU with one input of the bottleneck removed, or with static "
                  "filters):", "", *_ablation_table(ablation)]
    return "\n".join(lines)


def model_card(key: str) -> str:
    """The card of the model behind a picker key (loading it if needed)."""
    model = models.get_model(key)
    return card_markdown(model, models.label_of(key), models.checkpoint_path(key))


# --- the app's events -----------------------------------------------------------------------------

def model_card_or_note(key: str) -> str:
    """The card of the picked model, or why there is none (e.g. the demo checkpoint missing)."""
    try:
        return model_card(key)
    except USER_ERRORS as err:
        return f"No model card: {err}"


def domain_note(key: str, image: str | None) -> str:
    """The out-of-domain notice for the image on screen ("" when it fits, or cannot be read)."""
    if not image:
        return ""
    try:
        model = models.get_model(key)
        notice = domain_notice(model.preset, picture(model, image).image)
    except USER_ERRORS:
        return ""
    return f"⚠️ {notice}" if notice else ""
