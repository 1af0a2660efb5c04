"""The app's inference layer: one forward pass of `DMNet.inspect`, kept as a typed `Analysis`.

Arrays in, dataclasses out, no Gradio. `analyse` runs the model on an image as `dmnet.segment_image`
does (test-scale resize, logits resized back to the image) and keeps what every view needs: the
prediction, the generated filters, the branch outputs and the exact split of the bottleneck
(`app.attribution`). Ablations, per-branch predictions and the scale sweep are derived from it.
Those views are always fp32. The Segmentation view of a large model takes its `Prediction` from
`predict`, a plain forward pass at `segmentation_precision` (bf16 where it is native), so that the
first result arrives sooner; the teaching views' fp32 `analyse` runs when one needs it.
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
from dmnet.fast import fast_precision, optimize
from dmnet.inference import resize

from .attribution import Classifier, Split, logit_parts, margin_parts, split_bottleneck
from .images import model_input, scaled

X = "x"  # the name of the skip path: the backbone features concatenated as they are
FAST_MIN_DEPTH = 50  # the Segmentation view's fast path: ResNet-50/101 models (see below)
# DMNet -> {precision: its optimized copy}
_runners: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_runners_lock = threading.Lock()


def runner(model: DMNet, precision: str = "fp32") -> DMNet:
    """The model that runs the app's forward passes: on CPU a copy made once per model and
    precision by `dmnet.fast.optimize` (BN folded; in fp32 the wide 3x3 convs by Winograd: ~30%
    faster for R-50/R-101, outputs equal to a few 1e-6 of their scale). On a GPU the model itself
    in fp32 (cuDNN picks its own algorithms) and a copy made per call in bf16/fp16: on ZeroGPU
    Spaces tensors made inside a GPU call do not outlive it. The attribution split runs on the
    fp32 runner too; the original stays as loaded for the ablations."""
    if model.device.type != "cpu":
        return model if precision == "fp32" else optimize(model, precision=precision)
    with _runners_lock:
        copies = _runners.setdefault(model, {})
        if precision not in copies:
            copies[precision] = optimize(model, precision=precision)
        return copies[precision]


def segmentation_precision(model: DMNet) -> str:
    """The precision of the Segmentation view's pass: `fast_precision` (bf16 on a CPU with native
    bf16 or a GPU, else fp32) for ResNet-50/101 models, fp32 for smaller ones. For the demo model
    (ResNet-18, width 32, 128x128 scenes) a bf16 pass saves ~0.15 s of ~0.35 s on 2 CPU threads,
    but its views would need the fp32 pass after it: 60% more compute for the chain of views."""
    if model.preset.depth < FAST_MIN_DEPTH:
        return "fp32"
    return fast_precision(model.device)


def branch_name(k: int) -> str:
    return f"k={k}"


@dataclass
class Prediction:
    """One image segmented by one model: what the Segmentation view shows."""

    image: np.ndarray  # (H, W, 3) uint8, the image as displayed
    input_size: tuple[int, int]  # (h, w) of the model input (the preset's test scale)
    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    align_corners: bool
    logits: Tensor  # (classes, h8, w8) decode logits, float32
    label: np.ndarray  # (H, W) int64 predicted class per displayed pixel
    precision: str  # of the pass: "fp32", "bf16" or "fp16" (`dmnet.fast.PRECISIONS`)
    seconds: float  # time of the pass (for an Analysis, with the split)

    @property
    def feature_size(self) -> tuple[int, int]:
        return tuple(self.logits.shape[-2:])


@dataclass
class Analysis(Prediction):
    """One image seen by one model in fp32: everything the views show."""

    filters: dict[int, np.ndarray]  # k -> (C, k, k) generated filters
    branches: dict[int, Tensor]  # k -> (C, h8, w8) DCM outputs (after BN and ReLU)
    x_mean: np.ndarray  # (h8, w8) channel mean of the backbone features x
    split: Split  # the bottleneck's pre-ReLU output split into x and each branch
    classifier: Classifier  # conv_seg, to turn (ablated) bottleneck outputs into logits

    @property
    def filter_sizes(self) -> tuple[int, ...]:
        return tuple(self.filters)

    @property
    def part_names(self) -> tuple[str, ...]:
        return self.split.names


@torch.inference_mode()
def analyse(model: DMNet, image: np.ndarray) -> Analysis:
    """Run `model.inspect` (on its fp32 `runner`) on a uint8 RGB image (H, W, 3) through the test
    pipeline."""
    start = time.perf_counter()
    inp, x = network_input(model, image)
    fast = runner(model)
    trace = fast.inspect(x)
    sizes = tuple(trace.filters)
    feats = trace.features[3]
    split = split_bottleneck(fast.decode_head.bottleneck,
                             [feats, *(trace.branches[k] for k in sizes)],
                             [X, *(branch_name(k) for k in sizes)])
    split = Split(split.names, split.parts.float().cpu(), split.bias.float().cpu())
    seen = prediction(model, image, inp, trace.logits[0].float().cpu(), "fp32", start)
    return Analysis(
        **vars(seen), filters={k: trace.filters[k][0].float().cpu().numpy() for k in sizes},
        branches={k: trace.branches[k][0].float().cpu() for k in sizes},
        x_mean=feats[0].float().mean(0).cpu().numpy(),
        split=split, classifier=Classifier.of(model.decode_head.conv_seg))


@torch.inference_mode()
def predict(model: DMNet, image: np.ndarray, precision: str) -> Prediction:
    """A plain forward pass (no intermediates kept) of `runner(model, precision)` on a uint8 RGB
    image (H, W, 3) through the test pipeline."""
    start = time.perf_counter()
    inp, x = network_input(model, image)
    logits = runner(model, precision)(x)[0].cpu()  # float32: the model casts its output
    return prediction(model, image, inp, logits, precision, start)


def network_input(model: DMNet, image: np.ndarray) -> tuple[np.ndarray, Tensor]:
    """The uint8 model input (h, w, 3) at the preset's test scale, and it normalized (1, 3, h, w)
    on the model's device."""
    inp = model_input(image, model.preset)
    return inp, normalize(inp, model.preset.mean, model.preset.std).to(model.device)


def prediction(model: DMNet, image: np.ndarray, inp: np.ndarray, logits: Tensor, precision: str,
               start: float) -> Prediction:
    """The `Prediction` of (classes, h8, w8) float32 logits, timed since `start`."""
    p = model.preset
    return Prediction(image=image, input_size=tuple(inp.shape[:2]), classes=p.classes,
                      palette=p.palette, align_corners=p.align_corners, logits=logits,
                      label=labels(logits, inp.shape[:2], image.shape[:2], p.align_corners),
                      precision=precision, seconds=time.perf_counter() - start)


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


@torch.inference_mode()
def margin_shares(a: Analysis) -> np.ndarray:
    """(P, h8, w8) each part's exact contribution to the top-vs-runner-up logit margin."""
    parts, _ = logit_parts(a.split, a.classifier)
    if a.logits.shape[0] < 2:
        return np.zeros((parts.shape[0], *a.feature_size), np.float32)
    return margin_parts(parts, a.logits).numpy()


@dataclass
class SweepFrame:
    """The model on its input (the image at the test scale) resized by `factor`, fed as it is."""

    factor: float
    input_size: tuple[int, int]
    filters: dict[int, np.ndarray]  # k -> (C, k, k)
    label: np.ndarray  # (H, W) prediction resized back to the displayed image
    seconds: float


@torch.inference_mode()
def sweep_frame(model: DMNet, image: np.ndarray, factor: float) -> SweepFrame:
    """One step of the scale sweep: the generated filters and prediction when the model input
    that `analyse` makes is resized by `factor` (at 1 the pass is `analyse`'s)."""
    start = time.perf_counter()
    preset = model.preset
    inp = model_input(image, preset)
    inp = inp if factor == 1 else scaled(inp, factor)
    trace = runner(model).inspect(normalize(inp, preset.mean, preset.std).to(model.device))
    logits = trace.logits[0].float().cpu()
    return SweepFrame(factor, tuple(inp.shape[:2]),
                      {k: f[0].float().cpu().numpy() for k, f in trace.filters.items()},
                      labels(logits, inp.shape[:2], image.shape[:2], preset.align_corners),
                      time.perf_counter() - start)
