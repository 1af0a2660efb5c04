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

from dmnet import DMNet
from dmnet.heads import DCM, DCMOutput, DMHead

from .analysis import labels, last_stage, network_input, runner
from .attribution import CHUNK


def dcm_output(dcm: DCM, reduced: Tensor, filters: Tensor) -> Tensor:
    """What `DCM.forward` makes of its 1x1-reduced input (N, C, h, w) with the given filters
    (N, C, k, k) in place of the generated ones."""
    out = dcm.activate(dcm.norm(dcm.convolve(reduced, filters)))
    return out if dcm.fusion_conv is None else dcm.fusion_conv(out)


def head_logits(head: DMHead, x: Tensor, dcm: dict[int, DCMOutput],
                filters: dict[int, Tensor]) -> Tensor:
    """(N, classes, h, w) DMHead's logits for the stage-4 features x and their DCM outputs
    `dcm[k]`, with `filters[k]` (N, C, k, k) in the branches it names and each other branch's
    output as computed. x enters the bottleneck CHUNK channels at a time (its memory)."""
    outs = [dcm_output(m, dcm[m.filter_size].reduced, filters[m.filter_size])
            if m.filter_size in filters else dcm[m.filter_size].out
            for m in head.dcm_modules]
    fused = head.bottleneck.forward_concat([*x.split(CHUNK, dim=1), *outs])
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
    feats = last_stage(fast.backbone, fast._prepare(x)[0])
    dcm = {m.filter_size: m(feats) for m in fast.decode_head.dcm_modules}
    out = []
    for swap in swaps:
        given = {k: torch.as_tensor(f, dtype=torch.float32, device=x.device)[None]
                 for k, f in swap.items()}
        logits = head_logits(fast.decode_head, feats, dcm, given)[0].float().cpu()
        out.append(Transplanted(logits, labels(logits, inp.shape[:2], image.shape[:2],
                                               model.preset.align_corners)))
    return out
