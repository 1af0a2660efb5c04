"""Exact attribution of DMHead's bottleneck to its inputs, and ablations built on it.

The bottleneck is conv3x3 -> BN -> ReLU over cat([x, branch_1, branch_3, branch_5, branch_7]).
The conv is linear without bias, so conv(cat) = sum over inputs j of conv(input_j, W[:, slice_j]);
BN in eval mode is y = scale * pre + shift per channel. Hence, exactly (up to float rounding),

    bn(conv(cat)) = sum_j scale * conv(input_j, W_j) + shift    (`Split.parts`, `Split.bias`).

Removing an input (zeroing its slice of the concatenation, as if the branch output were 0) removes
its part; keeping only one keeps only its part. The prediction after ReLU and `conv_seg` follows.
For one input the ReLU's on/off pattern is fixed, which also splits the logits exactly:
logits = sum_j W_seg (on * part_j) + W_seg (on * shift) + b_seg (`logit_parts`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dmnet.heads import ConvModule
from dmnet.winograd import WinogradConv2d


@dataclass
class Split:
    """The pre-ReLU bottleneck output of one image, split by input."""

    names: tuple[str, ...]  # "x", then "k=1", "k=3", ... in concatenation order
    parts: Tensor  # (P, C, h, w): scale * conv(input_j, W_j)
    bias: Tensor  # (C,): BN shift (+ scale * conv bias, if any), counted once

    def total(self, keep: Sequence[bool] | None = None) -> Tensor:
        """(C, h, w) pre-ReLU output with the parts where `keep` is False removed."""
        parts = self.parts if keep is None else self.parts[torch.as_tensor(keep, dtype=torch.bool)]
        return parts.sum(0) + self.bias.view(-1, 1, 1)


CHUNK = 512  # input channels a Winograd bottleneck transforms at a time: the 2048 channels of
# x at once made its transformed tiles 1.2 GB for a 1024x2048 R-50 input; 512 at a time, 0.3 GB


def bottleneck_affine(bottleneck: ConvModule) -> tuple[Tensor, Tensor]:
    """(scale, shift), each (C,): the BN after the bottleneck's conv as y = scale * conv + shift
    (scale 1 and shift the conv's bias when `dmnet.fast.optimize` folded the BN into the conv)."""
    conv, bn = bottleneck.conv, bottleneck.bn
    if isinstance(bn, nn.Identity):  # folded by dmnet.fast.optimize: weight = scale * W
        return conv.weight.new_ones(len(conv.weight)), conv.bias
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    shift = bn.bias - bn.running_mean * scale
    if conv.bias is not None:
        shift = shift + conv.bias * scale
    return scale, shift


@torch.inference_mode()
def bottleneck_part(bottleneck: ConvModule, inp: Tensor, start: int, scale: Tensor) -> Tensor:
    """(C, h, w) scale * conv(inp, W[:, start:start + C_inp]) for one image (1, C_inp, h, w): the
    input's part of the bottleneck's pre-ReLU output, in float32 (in the conv's memory layout:
    `torch.stack` of the parts makes them contiguous)."""
    conv = bottleneck.conv
    if isinstance(conv, WinogradConv2d):
        part = conv.partial(inp, start, chunk=CHUNK)
    else:
        weight = conv.weight[:, start:start + inp.shape[1]]  # (C, C_inp, 3, 3)
        part = F.conv2d(inp, weight, None, conv.stride, conv.padding, conv.dilation)
    return (part[0] * scale.view(-1, 1, 1)).float()


@torch.inference_mode()
def split_bottleneck(bottleneck: ConvModule, inputs: Sequence[Tensor],
                     names: Sequence[str]) -> Split:
    """Split `bottleneck.bn(bottleneck.conv(cat(inputs)))` of one image into per-input parts.

    Args:
        bottleneck: DMHead's ConvModule (conv without bias, then BN in eval mode), or that of
            `dmnet.fast.optimize(model)` (BN folded into the conv, which may be a Winograd one).
        inputs: the concatenated tensors, each (1, C_j, h, w), in order.
        names: one name per input.
    """
    in_channels, channels = bottleneck.conv.weight.shape[1], sum(i.shape[1] for i in inputs)
    if channels != in_channels:
        raise ValueError(f"inputs have {channels} channels, the bottleneck expects {in_channels}")
    scale, shift = bottleneck_affine(bottleneck)
    starts = np.cumsum([0, *(i.shape[1] for i in inputs)])[:-1]
    parts = [bottleneck_part(bottleneck, inp, int(s), scale) for inp, s in zip(inputs, starts,
                                                                              strict=True)]
    return Split(tuple(names), torch.stack(parts), shift.float())


@dataclass
class Classifier:
    """DMHead's `conv_seg` (a 1x1 conv) as a matrix; dropout is off at test time."""

    weight: Tensor  # (classes, C)
    bias: Tensor  # (classes,)

    @classmethod
    def of(cls, conv_seg: nn.Conv2d) -> "Classifier":
        return cls(conv_seg.weight.detach()[:, :, 0, 0].float().cpu(),
                   conv_seg.bias.detach().float().cpu())

    def __call__(self, pre_relu: Tensor) -> Tensor:
        """(classes, h, w) logits of a (C, h, w) pre-ReLU bottleneck output."""
        return torch.einsum("kc,chw->khw", self.weight, torch.relu(pre_relu)) \
            + self.bias.view(-1, 1, 1)


@torch.inference_mode()
def logit_parts(split: Split, classifier: Classifier) -> tuple[Tensor, Tensor]:
    """(parts (P, classes, h, w), rest (classes, h, w)) with parts.sum(0) + rest == logits.

    Exact for this input: the ReLU passes each part through where the full pre-ReLU output is
    positive, and the classifier is linear.
    """
    on = (split.total() > 0).to(split.parts.dtype)  # (C, h, w) the ReLU's pattern
    parts = torch.einsum("kc,pchw->pkhw", classifier.weight, split.parts * on)
    rest = torch.einsum("kc,chw->khw", classifier.weight, split.bias.view(-1, 1, 1) * on)
    return parts, rest + classifier.bias.view(-1, 1, 1)


def margin_parts(parts: Tensor, logits: Tensor) -> Tensor:
    """(P, h, w) each part's share of the margin between the top and the runner-up class.

    Positive: the part pushes the pixel towards its predicted class. Needs >= 2 classes.
    """
    top2 = logits.topk(2, dim=0).indices  # (2, h, w)
    picked = parts.gather(1, top2.unsqueeze(0).expand(parts.shape[0], -1, -1, -1))  # (P, 2, h, w)
    return picked[:, 0] - picked[:, 1]


def keep_mask(names: Sequence[str], selected: Sequence[str], mode: str) -> list[bool]:
    """Which parts to keep: mode "remove" drops `selected`, mode "keep only" keeps just them."""
    unknown = set(selected) - set(names)
    if unknown:
        raise ValueError(f"unknown parts {sorted(unknown)}; the parts are {list(names)}")
    if mode == "remove":
        return [n not in selected for n in names]
    if mode == "keep only":
        return [n in selected for n in names]
    raise ValueError(f"mode must be 'remove' or 'keep only', got {mode!r}")


@dataclass
class CellMargin:
    """One feature cell's margin (top class minus runner-up) split into its inputs' terms."""

    top: int  # the predicted class
    runner_up: int
    parts: Tensor  # (P,) each input's term; parts.sum() + rest == margin
    rest: float  # the BN shift and the classifier's bias: the same terms at every input

    @property
    def margin(self) -> float:
        return float(self.parts.sum()) + self.rest


@torch.inference_mode()
def cell_margin(parts: Tensor, rest: Tensor, cell: tuple[int, int]) -> CellMargin:
    """The split margin of feature cell (row, col), from `logit_parts`' (parts, rest)."""
    r, c = cell
    logits = parts[:, :, r, c].sum(0) + rest[:, r, c]  # (classes,)
    top, second = logits.topk(2).indices.tolist()
    return CellMargin(top, second, parts[:, top, r, c] - parts[:, second, r, c],
                      float(rest[top, r, c] - rest[second, r, c]))


def decisions(label: np.ndarray, winner: np.ndarray, classes: int, parts: int) -> np.ndarray:
    """(classes, parts) pixel counts: of the pixels of each class (in `label`), how many each
    input decides (`winner`, the index of the input with the largest margin term, same shape)."""
    idx = label.astype(np.int64).ravel() * parts + winner.astype(np.int64).ravel()
    return np.bincount(idx, minlength=classes * parts)[:classes * parts].reshape(classes, parts)
