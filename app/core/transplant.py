"""Filter transplant: run an image through the head with filters generated for another image.

A DCM generates its k x k filters from the image it sees, then convolves that image's reduced
features with them. Handing one image's features another image's filters shows what the
filters *do*: every pixel whose class changes was decided by the adaptation. The backbone runs
once per image; each set of filters costs one more head pass. Nothing in the model is swapped
or copied, so concurrent requests on the same model are safe.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from dmnet import DMNet, Trace
from dmnet.heads import DCM, DMHead

from .analysis import labels, network_input, runner


def dcm_output(dcm: DCM, reduced: Tensor, filters: Tensor) -> Tensor:
    """What `DCM.forward` makes of its 1x1-reduced input (N, C, h, w) with the given filters
    (N, C, k, k) in place of the generated ones."""
    out = dcm.activate(dcm.norm(dcm.convolve(reduced, filters)))
    return out if dcm.fusion_conv is None else dcm.fusion_conv(out)


def head_logits(head: DMHead, trace: Trace, filters: dict[int, Tensor]) -> Tensor:
    """(N, classes, h, w) DMHead's logits for the traced input, with `filters[k]` (N, C, k, k)
    in the branches it names and each other branch's output as traced."""
    outs = [dcm_output(m, trace.reduced[m.filter_size], filters[m.filter_size])
            if m.filter_size in filters else trace.branches[m.filter_size]
            for m in head.dcm_modules]
    fused = head.bottleneck.forward_concat([trace.features[3], *outs])
    return head.conv_seg(head.dropout(fused))


@dataclass
class Transplanted:
    """One image through the head with given filters: what the transplant view shows."""

    logits: Tensor  # (classes, h8, w8) float32
    label: np.ndarray  # (H, W) prediction at the image's size


@torch.inference_mode()
def with_filters(model: DMNet, image: np.ndarray,
                 swaps: list[dict[int, np.ndarray]]) -> list[Transplanted]:
    """The uint8 image (H, W, 3) through the test pipeline and the fp32 `runner` (as `analyse`
    sees it), its head run once per entry of `swaps`: k -> (C, k, k) filters that replace the
    generated ones in branch k. An empty entry gives the image's own prediction."""
    inp, x = network_input(model, image)
    fast = runner(model)
    trace = fast.inspect(x)
    out = []
    for swap in swaps:
        given = {k: torch.as_tensor(f, dtype=torch.float32, device=x.device)[None]
                 for k, f in swap.items()}
        logits = head_logits(fast.decode_head, trace, given)[0].float().cpu()
        out.append(Transplanted(logits, labels(logits, inp.shape[:2], image.shape[:2],
                                               model.preset.align_corners)))
    return out
