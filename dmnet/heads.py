"""DMHead (Dynamic Convolutional Modules) and the FCN auxiliary head, with mmseg's names.

He, Deng, Qiao, "Dynamic Multi-Scale Filters for Semantic Segmentation", ICCV 2019.
Each DCM pools its input to k x k, turns the pooled map into one k x k filter per channel with a
1x1 conv, and convolves the 1x1-reduced input depthwise with those filters, per sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ConvModule(nn.Module):
    """Conv (no bias) -> BN -> ReLU, named `conv` / `bn` / `activate` like mmcv's ConvModule."""

    def __init__(self, cin: int, cout: int, kernel_size: int, padding: int = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.activate = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.activate(self.bn(self.conv(x)))

    def forward_concat(self, parts: list[Tensor]) -> Tensor:
        """forward(torch.cat(parts, dim=1)). A conv with its own `forward_concat` (the Winograd
        conv of dmnet.winograd, put in by `optimize()`) reads the parts without the copy."""
        if hasattr(self.conv, "forward_concat"):
            return self.activate(self.bn(self.conv.forward_concat(parts)))
        return self(torch.cat(parts, dim=1))


def even_aware_padding(k: int) -> tuple[int, int, int, int]:
    """F.pad amounts (left, right, top, bottom) of a k x k DCM: even k pads one more left/top."""
    pad = (k - 1) // 2
    return (pad, pad, pad, pad) if k % 2 == 1 else (pad + 1, pad, pad + 1, pad)


def dynamic_depthwise_conv(x: Tensor, filters: Tensor) -> Tensor:
    """Convolve each sample's channel c with its own filter: (N,C,H,W) * (N,C,k,k) -> (N,C,H,W).

    The batch is folded into the channels so one grouped conv does every sample at once.
    Odd k uses the conv's own zero padding (same result as DCM's explicit F.pad, no copy).
    """
    n, c, h, w = x.shape
    k = filters.shape[-1]
    x = x.reshape(1, n * c, h, w)
    weight = filters.reshape(n * c, 1, k, k)  # (N*C, 1, k, k)
    if k % 2 == 1:
        out = F.conv2d(x, weight, padding=(k - 1) // 2, groups=n * c)
    else:
        out = F.conv2d(F.pad(x, even_aware_padding(k)), weight, groups=n * c)
    return out.reshape(n, c, h, w)



def summed_taps(filters: Tensor) -> Tensor:
    """(..., k, k) filters with every tap's weight moved to the centre tap, index k // 2 on both
    axes: the tap of offset 0, for odd k and for the even k that `even_aware_padding` pads one
    more on the left and top. Convolving with them scales each channel by its filter's sum (the
    ablation "taps summed": a branch's gain without its k x k layout)."""
    k = filters.shape[-1]
    out = torch.zeros_like(filters)
    out[..., k // 2, k // 2] = filters.sum((-2, -1))
    return out

@dataclass
class DCMOutput:
    filters: Tensor  # (N, C, k, k) generated filters, the output of filter_gen_conv
    reduced: Tensor  # (N, C, h, w) the 1x1-reduced input the filters are applied to
    out: Tensor  # (N, C, h, w) ReLU(BN(filters * reduced)), then the optional fusion conv


class DCM(nn.Module):
    """One Dynamic Convolutional Module with filter size k."""

    def __init__(self, filter_size: int, fusion: bool, in_channels: int, channels: int) -> None:
        super().__init__()
        self.filter_size = filter_size
        self.filter_gen_conv = nn.Conv2d(in_channels, channels, 1)
        self.input_redu_conv = ConvModule(in_channels, channels, 1)
        self.norm = nn.BatchNorm2d(channels)
        self.activate = nn.ReLU()
        self.fusion_conv = ConvModule(channels, channels, 1) if fusion else None

    def pool(self, x: Tensor) -> Tensor:
        """The input pooled to k x k (the filter generator's input)."""
        return F.adaptive_avg_pool2d(x, self.filter_size)

    def convolve(self, x: Tensor, filters: Tensor) -> Tensor:
        """Each sample's channels convolved with its own generated filters."""
        return dynamic_depthwise_conv(x, filters)

    def forward(self, x: Tensor) -> DCMOutput:
        filters = self.filter_gen_conv(self.pool(x))
        reduced = self.input_redu_conv(x)
        out = self.activate(self.norm(self.convolve(reduced, filters)))
        if self.fusion_conv is not None:
            out = self.fusion_conv(out)
        return DCMOutput(filters, reduced, out)


@dataclass
class DMHeadOutput:
    logits: Tensor  # (N, classes, h, w)
    fused: Tensor  # (N, channels, h, w) bottleneck output (before dropout and conv_seg)
    dcm: dict[int, DCMOutput]  # per filter size k


class DMHead(nn.Module):
    """Concatenate the input with every DCM's output, fuse with a 3x3 conv, classify.

    Args:
        in_channels: channels of the backbone's last stage (2048 for R-50/101).
        channels: width of every DCM and of the bottleneck (512 in the configs).
        num_classes: classifier outputs.
        filter_sizes: one DCM per size, concatenated in this order after the input.
    """

    def __init__(self, in_channels: int, channels: int, num_classes: int,
                 filter_sizes: tuple[int, ...] = (1, 3, 5, 7), fusion: bool = False,
                 dropout_ratio: float = 0.1) -> None:
        super().__init__()
        # Registration order = mmseg's state_dict order: conv_seg comes first.
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)
        self.dropout = nn.Dropout2d(dropout_ratio) if dropout_ratio > 0 else nn.Identity()
        self.filter_sizes = tuple(filter_sizes)
        self.dcm_modules = nn.ModuleList(
            DCM(k, fusion, in_channels, channels) for k in self.filter_sizes)
        fused_in = in_channels + len(self.filter_sizes) * channels  # x and every branch
        self.bottleneck = ConvModule(fused_in, channels, 3, 1)

    def forward(self, x: Tensor) -> DMHeadOutput:
        dcm = {m.filter_size: m(x) for m in self.dcm_modules}
        fused = self.bottleneck.forward_concat([x, *(o.out for o in dcm.values())])
        return DMHeadOutput(self.conv_seg(self.dropout(fused)), fused, dcm)

    def init_weights(self) -> None:
        """mmseg's init: ConvModule convs Kaiming (fan_out), BN 1/0, conv_seg N(0, 0.01)."""
        init_conv_modules(self)


class FCNHead(nn.Module):
    """The auxiliary head: 3x3 ConvModule -> dropout -> 1x1 classifier (concat_input=False)."""

    def __init__(self, in_channels: int, channels: int, num_classes: int,
                 dropout_ratio: float = 0.1) -> None:
        super().__init__()
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)
        self.dropout = nn.Dropout2d(dropout_ratio) if dropout_ratio > 0 else nn.Identity()
        self.convs = nn.Sequential(ConvModule(in_channels, channels, 3, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.conv_seg(self.dropout(self.convs(x)))

    def init_weights(self) -> None:
        init_conv_modules(self)


def init_conv_modules(head: nn.Module) -> None:
    """Initialise a head as mmseg does; filter_gen_conv keeps PyTorch's default init."""
    for m in head.modules():
        if isinstance(m, ConvModule):
            nn.init.kaiming_normal_(m.conv.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    nn.init.normal_(head.conv_seg.weight, 0, 0.01)
    nn.init.zeros_(head.conv_seg.bias)

