"""The app's inference layer: one fp32 forward pass per image and model, kept as a typed `Analysis`.

Arrays in, dataclasses out, no Gradio. `analyse` runs the model on an image as `dmnet.segment_image`
does (test-scale resize, logits resized back to the image) and keeps only what the views show: the
prediction, the generated filters, the branch outputs as display maps, and the exact split of the
bottleneck (`app.attribution`), from which ablations, margins and per-branch predictions follow.
Every view, the Segmentation view included, reads this one pass.

The pass is lean, so that an official R-50 on a 1024x2048 photo fits a laptop or a 16 GB Space:
- the backbone's earlier stages are freed as the next one has read them (only stage 4 is shown);
- the bottleneck runs once, input by input (`attribution.bottleneck_part`, 512 channels at a
  time), and the logits come from the sum of its parts: no concatenated copy, no second conv for
  the split, and no auxiliary head (no view shows it);
- each branch's output is kept as a bfloat16 display map (its channel mean in float32) and its
  1x1-reduced input is dropped as soon as its part is computed.
The split and the logits stay float32: the ablations and margins computed from them are exact.
"""

from __future__ import annotations

import threading
import time
import weakref
from dataclasses import dataclass, fields

import numpy as np
import torch
from torch import Tensor

from dmnet import DMNet, normalize
from dmnet.backbone import ResNetV1c
from dmnet.fast import optimize
from dmnet.inference import resize

from .attribution import (Classifier, Split, bottleneck_affine, bottleneck_part, logit_parts,
                          margin_parts)
from .images import model_input, scaled

X = "x"  # the name of the skip path: the backbone features concatenated as they are
MAP_DTYPE = torch.bfloat16  # of the branch maps: shown as colours, 3 significant digits are plenty
# DMNet -> its optimized copy (CPU)
_runners: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_runners_lock = threading.Lock()


def runner(model: DMNet) -> DMNet:
    """The model that runs the app's forward passes: on CPU a copy made once per model by
    `dmnet.fast.optimize` (BN folded; the wide 3x3 convs by Winograd: ~30% faster for
    R-50/R-101, outputs equal to a few 1e-6 of their scale). On a GPU the model itself (cuDNN
    picks its own algorithms)."""
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
    """One image seen by one model in fp32: everything the views show, and nothing more."""

    image: np.ndarray  # (H, W, 3) uint8, the image as displayed
    input_size: tuple[int, int]  # (h, w) of the model input (the preset's test scale)
    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    align_corners: bool
    logits: Tensor  # (classes, h8, w8) float32 decode logits
    label: np.ndarray  # (H, W) int64 predicted class per displayed pixel
    seconds: float  # time of the pass
    filters: dict[int, np.ndarray]  # k -> (C, k, k) float32 generated filters
    branches: dict[int, Tensor]  # k -> (C, h8, w8) DCM output (after BN, ReLU), MAP_DTYPE
    branch_means: dict[int, np.ndarray]  # k -> (h8, w8) float32 channel mean of that output
    x_mean: np.ndarray  # (h8, w8) float32 channel mean of the backbone features x
    split: Split  # the bottleneck's pre-ReLU output split into x and each branch, float32
    classifier: Classifier  # conv_seg, to turn (ablated) bottleneck outputs into logits

    @property
    def feature_size(self) -> tuple[int, int]:
        return tuple(self.logits.shape[-2:])

    @property
    def filter_sizes(self) -> tuple[int, ...]:
        return tuple(self.filters)

    @property
    def part_names(self) -> tuple[str, ...]:
        return self.split.names

    @property
    def nbytes(self) -> int:
        """Bytes of every array and tensor it holds (what keeping it in a cache costs)."""
        return sum(_nbytes(getattr(self, f.name)) for f in fields(self))


def _nbytes(value) -> int:  # noqa: ANN001 -- any field of Analysis
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(_nbytes(v) for v in value.values())
    if isinstance(value, (Split, Classifier)):
        return sum(_nbytes(v) for v in vars(value).values())
    return 0


@dataclass
class Lean:
    """What one lean pass of the network computed for a (1, 3, h, w) input (see the module)."""

    filters: dict[int, np.ndarray]  # k -> (C, k, k) float32
    split: Split  # on the CPU, float32
    logits: Tensor  # (classes, h8, w8) float32, on the CPU
    x_mean: np.ndarray | None  # (h8, w8), None unless maps were asked for
    maps: dict[int, Tensor]  # k -> (C, h8, w8) MAP_DTYPE display maps ({} unless asked for)
    means: dict[int, np.ndarray]  # k -> (h8, w8) float32 channel means of the maps' outputs


def last_stage(backbone: ResNetV1c, x: Tensor) -> Tensor:
    """The backbone's stage-4 output; each earlier stage is freed once the next has read it."""
    x = backbone.maxpool(backbone.stem(x))
    for layer in (backbone.layer1, backbone.layer2, backbone.layer3, backbone.layer4):
        x = layer(x)
    return x


@torch.inference_mode()
def lean_pass(model: DMNet, x: Tensor, maps: bool) -> Lean:
    """The fp32 `runner`'s forward pass on a normalized (1, 3, h, w) input, the bottleneck split
    by input, and the branch outputs as display maps when `maps`."""
    fast = runner(model)
    x, _ = fast._prepare(x)  # channels_last on CPU; the fp32 runner has no autocast
    feats = last_stage(fast.backbone, x)
    del x
    head = fast.decode_head
    scale, shift = bottleneck_affine(head.bottleneck)
    parts, filters, shown, means = [bottleneck_part(head.bottleneck, feats, 0, scale)], {}, {}, {}
    start = feats.shape[1]
    for dcm in head.dcm_modules:
        out = dcm(feats)
        k = dcm.filter_size
        filters[k] = out.filters[0].float().cpu().numpy()
        parts.append(bottleneck_part(head.bottleneck, out.out, start, scale))
        start += out.out.shape[1]
        if maps:
            shown[k] = out.out[0].to(MAP_DTYPE).cpu().contiguous()
            means[k] = out.out[0].float().mean(0).cpu().numpy()
        del out  # its 1x1-reduced input and its fp32 output
    x_mean = feats[0].float().mean(0).cpu().numpy() if maps else None
    del feats
    split = Split((X, *(branch_name(k) for k in filters)), torch.stack(parts).cpu(),
                  shift.float().cpu())
    del parts
    logits = Classifier.of(head.conv_seg)(split.total())
    return Lean(filters, split, logits, x_mean, shown, means)


@torch.inference_mode()
def analyse(model: DMNet, image: np.ndarray) -> Analysis:
    """The lean pass of the fp32 `runner` on a uint8 RGB image (H, W, 3) through the test
    pipeline, as every view shows it."""
    start = time.perf_counter()
    inp, x = network_input(model, image)
    found = lean_pass(model, x, maps=True)
    p = model.preset
    return Analysis(
        image=image, input_size=tuple(inp.shape[:2]), classes=p.classes, palette=p.palette,
        align_corners=p.align_corners, logits=found.logits,
        label=labels(found.logits, inp.shape[:2], image.shape[:2], p.align_corners),
        seconds=time.perf_counter() - start, filters=found.filters, branches=found.maps,
        branch_means=found.means,
        x_mean=found.x_mean, split=found.split,
        classifier=Classifier.of(model.decode_head.conv_seg))


@torch.inference_mode()
def generated_filters(model: DMNet, image: np.ndarray) -> dict[int, np.ndarray]:
    """k -> (C, k, k) the filters the DCMs generate for a uint8 RGB image through the test
    pipeline: the backbone and each filter generator only (no head pass)."""
    fast = runner(model)
    x, _ = fast._prepare(network_input(model, image)[1])
    feats = last_stage(fast.backbone, x)
    return {dcm.filter_size: dcm.filter_gen_conv(dcm.pool(feats))[0].float().cpu().numpy()
            for dcm in fast.decode_head.dcm_modules}


def network_input(model: DMNet, image: np.ndarray) -> tuple[np.ndarray, Tensor]:
    """The uint8 model input (h, w, 3) at the preset's test scale, and it normalized (1, 3, h, w)
    on the model's device."""
    inp = model_input(image, model.preset)
    return inp, normalize(inp, model.preset.mean, model.preset.std).to(model.device)


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
    """The model on its input (the image at the test scale) resized by `factor`, fed as it is:
    only what the sweep draws (its pass is freed at once)."""

    factor: float
    input_size: tuple[int, int]
    filters: dict[int, np.ndarray]  # k -> (C, k, k)
    label: np.ndarray  # (H, W) uint8/int16/int32 prediction resized back to the displayed image
    seconds: float


def compact_label(label: np.ndarray, classes: int) -> np.ndarray:
    """The same class ids in the smallest integer type that holds them."""
    return label.astype(np.min_scalar_type(max(classes - 1, 0)))


def frame_of(a: Analysis) -> SweepFrame:
    """The 1x frame of the sweep: the analysis itself (no pass)."""
    return SweepFrame(1.0, a.input_size, a.filters, compact_label(a.label, len(a.classes)),
                      a.seconds)


@torch.inference_mode()
def sweep_frame(model: DMNet, image: np.ndarray, factor: float) -> SweepFrame:
    """One step of the scale sweep: the generated filters and prediction when the model input
    that `analyse` makes is resized by `factor` (at 1 the pass is `analyse`'s)."""
    start = time.perf_counter()
    preset = model.preset
    inp = model_input(image, preset)
    inp = inp if factor == 1 else scaled(inp, factor)
    found = lean_pass(model, normalize(inp, preset.mean, preset.std).to(model.device), maps=False)
    label = labels(found.logits, inp.shape[:2], image.shape[:2], preset.align_corners)
    return SweepFrame(factor, tuple(inp.shape[:2]), found.filters,
                      compact_label(label, preset.num_classes), time.perf_counter() - start)
