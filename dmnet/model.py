"""The DMNet segmentor: ResNetV1c-D8 backbone, DMHead, FCN auxiliary head.

`DMNet(x)` returns decode logits at 1/8 resolution; `DMNet.inspect(x)` returns a `Trace` with
every intermediate the app shows, from the same single forward pass. State-dict keys equal
mmsegmentation's (`backbone.*`, `decode_head.*`, `auxiliary_head.*`), so official checkpoints load
with `strict=True` and no renaming.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .backbone import ResNetV1c
from .heads import DMHead, FCNHead
from .presets import Preset, get_preset


@dataclass
class Trace:
    """Everything one forward pass computed, for a batch of N images.

    Per filter size k: `filters[k]` (N, C, k, k) the generated filters, `reduced[k]` (N, C, h, w)
    the reduced input they are applied to, `branches[k]` (N, C, h, w) the DCM output.
    Feature maps are at 1/8 of the input (h, w), except `features[0]` at 1/4.
    """

    features: tuple[Tensor, Tensor, Tensor, Tensor]  # the four backbone stages
    filters: dict[int, Tensor]
    reduced: dict[int, Tensor]
    branches: dict[int, Tensor]
    fused: Tensor  # (N, C, h, w) bottleneck output, the input of the classifier
    logits: Tensor  # (N, classes, h, w) decode head
    aux_logits: Tensor  # (N, classes, h, w) auxiliary FCN head on stage 3

    def float(self) -> "Trace":
        """The same trace with every tensor in float32 (after reduced-precision inference)."""
        return Trace(
            features=tuple(f.float() for f in self.features),
            filters={k: v.float() for k, v in self.filters.items()},
            reduced={k: v.float() for k, v in self.reduced.items()},
            branches={k: v.float() for k, v in self.branches.items()},
            fused=self.fused.float(), logits=self.logits.float(),
            aux_logits=self.aux_logits.float(),
        )


class DMNet(nn.Module):
    """Dynamic Multi-scale Network (He, Deng, Qiao, ICCV 2019) as configured by a `Preset`.

    Args:
        preset: architecture, classes and test settings (see `dmnet.presets`).
    """

    def __init__(self, preset: Preset) -> None:
        super().__init__()
        self.preset = preset
        self.backbone = ResNetV1c(preset.depth, preset.stem_channels, preset.base_channels)
        c = self.backbone.out_channels
        self.decode_head = DMHead(c[3], preset.head_channels, preset.num_classes,
                                  preset.filter_sizes, preset.fusion, preset.dropout_ratio)
        self.auxiliary_head = FCNHead(c[2], preset.aux_channels, preset.num_classes,
                                      preset.dropout_ratio)
        # Inference settings, set by `dmnet.fast.optimize`: NHWC activations, autocast dtype.
        self.channels_last = False
        self.autocast_dtype: torch.dtype | None = None

    def _prepare(self, x: Tensor) -> tuple[Tensor, contextlib.AbstractContextManager]:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.autocast_dtype is None:
            return x, contextlib.nullcontext()
        return x, torch.autocast(x.device.type, dtype=self.autocast_dtype)

    def forward(self, x: Tensor) -> Tensor:
        """Normalized (N, 3, H, W) -> decode logits (N, classes, ceil(H/8), ceil(W/8))."""
        x, autocast = self._prepare(x)
        with autocast:
            return self.decode_head(self.backbone(x)[3]).logits.float()

    def forward_train(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(decode logits, auxiliary logits), both at 1/8 resolution; losses live in training/."""
        feats = self.backbone(x)
        return self.decode_head(feats[3]).logits, self.auxiliary_head(feats[2])

    def inspect(self, x: Tensor) -> Trace:
        """One forward pass that keeps every intermediate (see `Trace`)."""
        x, autocast = self._prepare(x)
        with autocast:
            trace = self._trace(x)
        return trace if self.autocast_dtype is None else trace.float()

    def _trace(self, x: Tensor) -> Trace:
        feats = self.backbone(x)
        head = self.decode_head(feats[3])
        return Trace(
            features=feats,
            filters={k: o.filters for k, o in head.dcm.items()},
            reduced={k: o.reduced for k, o in head.dcm.items()},
            branches={k: o.out for k, o in head.dcm.items()},
            fused=head.fused,
            logits=head.logits,
            aux_logits=self.auxiliary_head(feats[2]),
        )

    def init_weights(self) -> None:
        """mmsegmentation's random initialisation (no ImageNet weights)."""
        self.backbone.init_weights()
        self.decode_head.init_weights()
        self.auxiliary_head.init_weights()

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device


def build_model(preset: Preset | str) -> DMNet:
    """A randomly initialised DMNet (mmseg's init) for a preset or preset name, in eval mode."""
    model = DMNet(get_preset(preset) if isinstance(preset, str) else preset)
    model.init_weights()
    return model.eval()
