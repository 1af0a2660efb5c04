"""The app's inference layer: one forward pass of `DMNet.inspect`, kept as a typed `Analysis`.

Arrays in, dataclasses out, no Gradio. `analyse` runs the model on an image as `dmnet.predict`
does (test-scale resize, logits resized back to the image) and keeps what every view needs: the
prediction, the generated filters, the branch outputs and the exact split of the bottleneck
(`app.attribution`). Ablations, per-branch predictions and the scale sweep are derived from it.
"""

from __future__ import annotations

import threading
import time
import weakref
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from dmnet import DMNet, normalize
from dmnet.fast import optimize
from dmnet.inference import resize

from .attribution import Classifier, Split, logit_parts, margin_parts, split_bottleneck
from .images import model_input, scaled

X = "x"  # the name of the skip path: the backbone features concatenated as they are
_runners: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # DMNet -> its optimized copy
_runners_lock = threading.Lock()


def runner(model: DMNet) -> DMNet:
    """The model that runs the app's forward passes: on CPU a copy made once per model by
    `dmnet.fast.optimize` (BN folded, the wide 3x3 convs by Winograd: ~30% faster for R-50/R-101;
    outputs equal to a few 1e-6 of their scale), on a GPU the model itself (cuDNN picks its own
    algorithms, and on ZeroGPU Spaces tensors made inside a GPU call do not outlive it). The
    attribution split runs on it too; the original stays as loaded for the ablations."""
    if model.device.type != "cpu":
        return model
    with _runners_lock:
        if model not in _runners:
            _runners[model] = optimize(model)
        return _runners[model]


def branch_name(k: int) -> str:
    return f"k={k}"


@dataclass
class Analysis:
    """One image seen by one model: everything the views show."""

    image: np.ndarray  # (H, W, 3) uint8, the image as displayed
    input_size: tuple[int, int]  # (h, w) of the model input (the preset's test scale)
    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    align_corners: bool
    logits: Tensor  # (classes, h8, w8) decode logits
    label: np.ndarray  # (H, W) int64 predicted class per displayed pixel
    filters: dict[int, np.ndarray]  # k -> (C, k, k) generated filters
    branches: dict[int, Tensor]  # k -> (C, h8, w8) DCM outputs (after BN and ReLU)
    x_mean: np.ndarray  # (h8, w8) channel mean of the backbone features x
    split: Split  # the bottleneck's pre-ReLU output split into x and each branch
    classifier: Classifier  # conv_seg, to turn (ablated) bottleneck outputs into logits
    seconds: float  # time of the forward pass and the split

    @property
    def feature_size(self) -> tuple[int, int]:
        return tuple(self.logits.shape[-2:])

    @property
    def filter_sizes(self) -> tuple[int, ...]:
        return tuple(self.filters)

    @property
    def part_names(self) -> tuple[str, ...]:
        return self.split.names


@torch.inference_mode()
def analyse(model: DMNet, image: np.ndarray) -> Analysis:
    """Run `model.inspect` (on its `runner`) on a uint8 RGB image (H, W, 3) through the test
    pipeline."""
    start = time.perf_counter()
    preset = model.preset
    inp = model_input(image, preset)
    x = normalize(inp, preset.mean, preset.std).to(model.device)
    fast = runner(model)
    trace = fast.inspect(x)
    sizes = tuple(trace.filters)
    head = model.decode_head
    feats = trace.features[3]
    split = split_bottleneck(fast.decode_head.bottleneck,
                             [feats, *(trace.branches[k] for k in sizes)],
                             [X, *(branch_name(k) for k in sizes)])
    logits = trace.logits[0].float().cpu()
    split = Split(split.names, split.parts.float().cpu(), split.bias.float().cpu())
    return Analysis(
        image=image, input_size=tuple(inp.shape[:2]), classes=preset.classes,
        palette=preset.palette, align_corners=preset.align_corners, logits=logits,
        label=labels(logits, inp.shape[:2], image.shape[:2], preset.align_corners),
        filters={k: trace.filters[k][0].float().cpu().numpy() for k in sizes},
        branches={k: trace.branches[k][0].float().cpu() for k in sizes},
        x_mean=feats[0].float().mean(0).cpu().numpy(),
        split=split, classifier=Classifier.of(head.conv_seg),
        seconds=time.perf_counter() - start,
    )


def labels(logits: Tensor, input_size: tuple[int, int], size: tuple[int, int],
           align_corners: bool) -> np.ndarray:
    """(H, W) argmax of (classes, h8, w8) logits resized as mmseg's test pipeline: to the model
    input, then to the original image."""
    up = resize(resize(logits.unsqueeze(0), input_size, align_corners), size, align_corners)
    return np.argmax(up[0].numpy(), 0)  # numpy: ~4x faster than torch over dim 0 here


@torch.inference_mode()
def ablated_label(a: Analysis, keep: list[bool]) -> np.ndarray:
    """(H, W) prediction with the bottleneck parts where `keep` is False removed."""
    logits = a.classifier(a.split.total(keep))
    return labels(logits, a.input_size, a.image.shape[:2], a.align_corners)


def alone_label(a: Analysis, name: str) -> np.ndarray:
    """(H, W) prediction from one part alone (x or a branch) plus the BN shift."""
    return ablated_label(a, [n == name for n in a.part_names])


@torch.inference_mode()
def margin_shares(a: Analysis) -> np.ndarray:
    """(P, h8, w8) each part's exact contribution to the top-vs-runner-up logit margin."""
    parts, _ = logit_parts(a.split, a.classifier)
    if a.logits.shape[0] < 2:
        return np.zeros((parts.shape[0], *a.feature_size), np.float32)
    return margin_parts(parts, a.logits).numpy()


@dataclass
class SweepFrame:
    """The model on the image resized by `factor`, fed as it is (no test-scale resize)."""

    factor: float
    input_size: tuple[int, int]
    filters: dict[int, np.ndarray]  # k -> (C, k, k)
    label: np.ndarray  # (H, W) prediction resized back to the displayed image
    seconds: float


@torch.inference_mode()
def sweep_frame(model: DMNet, image: np.ndarray, factor: float) -> SweepFrame:
    """One step of the scale sweep: the generated filters and prediction at `factor`."""
    start = time.perf_counter()
    preset = model.preset
    inp = image if factor == 1 else scaled(image, factor)
    trace = runner(model).inspect(normalize(inp, preset.mean, preset.std).to(model.device))
    logits = trace.logits[0].float().cpu()
    up = resize(logits.unsqueeze(0), image.shape[:2], preset.align_corners)
    return SweepFrame(factor, tuple(inp.shape[:2]),
                      {k: f[0].float().cpu().numpy() for k, f in trace.filters.items()},
                      np.argmax(up[0].numpy(), 0), time.perf_counter() - start)


@torch.inference_mode()
def filter_bank(model: DMNet, images: list[np.ndarray]) -> dict[int, np.ndarray]:
    """k -> (R, C, k, k): the filters generated for each of R images (fed as they are)."""
    preset = model.preset
    banks: dict[int, list[np.ndarray]] = {}
    for image in images:
        trace = runner(model).inspect(normalize(image, preset.mean, preset.std).to(model.device))
        for k, f in trace.filters.items():
            banks.setdefault(k, []).append(f[0].float().cpu().numpy())
    return {k: np.stack(v) for k, v in banks.items()}


def reference_images(dataset: str, count: int = 6, side: int | None = None) -> list[np.ndarray]:
    """Fixed inputs of the model's domain to measure how much each filter channel varies:
    MultiScaleShapes validation scenes (default side: the demo model's scene size), or
    scikit-image's bundled photographs (default long side 256 px)."""
    if dataset == "multiscale_shapes":
        from training.data.shapes import SIZE, MultiScaleShapes

        val = MultiScaleShapes("val", length=count, size=side or SIZE)
        return [val.sample(i).image for i in range(count)]
    import skimage.data

    loaders = (skimage.data.astronaut, skimage.data.coffee, skimage.data.chelsea,
               skimage.data.rocket, lambda: skimage.data.stereo_motorcycle()[0],
               skimage.data.immunohistochemistry)  # all bundled with scikit-image: no download
    photos = [load() for load in loaders[:count]]
    return [scaled(p, (side or 256) / max(p.shape[:2])) for p in photos]
