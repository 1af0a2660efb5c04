"""3x3 convolutions by Winograd's minimal filtering F(4x4, 3x3), for fp32 inference on CPUs.

Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (CVPR 2016). Each 6x6 input
tile d gives a 4x4 output tile Y = A^T [(G g G^T) . (B^T d B)] A: the 3x3 convolution's 36
multiplications per output pixel and channel pair become 36 per 16 output pixels (2.25 each), and
the per-tile products of all channel pairs are 36 matrix products (`torch.bmm`). A dilated
convolution is d*d interleaved undilated ones (output rows r, r+d, r+2d, ... see only input rows
of the same residue mod d), so the tiles are gathered on the dilated grid; no copy per residue.

Why: oneDNN has no Winograd kernels for AVX2 CPUs, and on the 2-core AVX2 machine this project
runs on, DMHead's 4096 -> 512 bottleneck conv (40% of R-50-D8's FLOPs) takes ~1.0 s direct and
~0.4 s here. Outputs equal the direct convolution to a few 1e-6 of the output's scale in fp32
(the transforms' rounding; tests/dmnet/test_winograd.py). Narrow layers and outputs smaller than
a few tiles lose to the direct kernels; `use_winograd` and `MAX_PADDING_WASTE` say where it pays.

Tried and not kept (R-50-D8, one 769x769 window = 97x97 features, 2-core AMD EPYC with AVX-512):
- Larger tiles. F(5x5, 3x3) / F(6x6, 3x3) (Toom-Cook points 0, 1, -1, 1/2, -2, 2 [, -1/2])
  against F(4x4): the bottleneck 613 -> 544 / 532 ms, stage 4's dilation-4 convs 110 -> 81 / 113,
  stage 3's 31 -> 28 / 30; the best tile per layer saves ~170 ms of the window's 2.84 s (0.66x
  -> ~0.62x of the plain model), at 3.6x / 4.5x F(4)'s rounding error (8.5e-6 / 1.1e-5 of the
  output's maximum, 512 input channels) and 1.4x / 1.8x the transformed filters' memory (the
  bottleneck's: 302 -> 411 / 537 MB).
- A fused input transform. Written as sums of strided views and compiled by inductor, the
  gather and B^T d B of the bottleneck's 2048 channels take 11 ms instead of 57 (the other
  layers' 3-4x faster too: ~150 ms saved a window, ~0.62x), but each shape compiles for 15-30 s;
  compiling the whole function, output transform included, gained nothing (625 -> 634 ms).
- Other products: `torch.bmm` on these shapes runs at 170-190 GFLOP/s whatever the operand
  layout, a loop of `mm`, or a grouped 1x1 conv (191); oneDNN's 1x1 convs reach ~210.
- Larger tiles, whole model (another 2-core AMD EPYC, one forward pass, best of 2 after a
  warm-up, the same tile for every layer; F(4) / F(5) / F(6)): a 769x769 window 2.91 / 2.82 /
  3.01 s; the ms+flip scales of 512x1024, 256x512 0.66 / 0.73 / 0.73, 384x768 1.41 / 1.47 /
  1.41, 512x1024 2.49 / 2.55 / 2.49, 640x1280 3.73 / 3.71 / 3.77, 768x1536 5.51 / 5.52 / 5.32,
  896x1792 8.14 / 7.42 / 7.48. At most 3-9% of a pass, on some sizes only, for 3.6-4.5x the
  error.
- Where the rest of a window goes (same machine, torch.profiler): oneDNN's convolutions 1.57 s
  (the 1x1 ones at 219-223 GFLOP/s, what they reach alone), the Winograd products 0.83 s (at
  195-199, what `bmm` reaches alone), the transforms' `mm` 0.20 s, copies 0.11 s, residual adds
  and ReLUs 0.06 s. The products and the other convs run at the CPU's rate, so even free
  transforms would leave a window at ~0.57x of the plain model's 4.3 s.
- Transparent huge pages for large tensors (`THP_MEM_ALLOC_ENABLE=1`, with
  `keep_freed_memory()`; the kernel's default here is madvise): 2.90 -> 2.81 s a window, plain
  4.34 -> 4.31 (means of 3 runs, each spread over +-0.06 s): 0.667x -> 0.651x.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

TILE = 4  # output tile m of F(m x m, 3 x 3); input tiles are m + 2 = 6 wide
# F(4, 3) from the interpolation points 0, 1, -1, 1/2, -2 and infinity: Lavin's 0, +-1, +-2 with
# the -2 / 2 pair replaced by 1/2 / -2 halves the largest fp32 error (2.7e-6 vs 6.9e-6 of the
# output's maximum, 256 channels; direct: 1.7e-6), as Barabasz et al. found ("Error analysis and
# improving the accuracy of Winograd convolution for deep neural networks", ACM TOMS 2020).
# Row j of B^T holds the coefficients (x^0 .. x^4) of prod over the other points of (x - p).
_BT = [[1, -3 / 2, -2, 3 / 2, 1, 0], [0, -1, 1 / 2, 5 / 2, 1, 0], [0, 1, -5 / 2, 1 / 2, 1, 0],
       [0, -2, -1, 2, 1, 0], [0, 1 / 2, -1, -1 / 2, 1, 0], [0, 1, -3 / 2, -2, 3 / 2, 1]]
_G = [[1, 0, 0], [1 / 3, 1 / 3, 1 / 3], [-1 / 3, 1 / 3, -1 / 3],
      [-16 / 15, -8 / 15, -4 / 15], [1 / 15, -2 / 15, 4 / 15], [0, 0, 1]]
_AT = [[1, 1, 1, 1, 1, 0], [0, 1, -1, 1 / 2, -2, 0], [0, 1, 1, 1 / 4, 4, 0],
       [0, 1, -1, 1 / 8, -8, 1]]
# Measured on the 2-core AVX2 CPU (fp32, 64x64 outputs): 128 -> 128 channels ties with oneDNN,
# 256 -> 256 takes half its time, 64 -> 64 at 128x128 takes 1.6x. Narrower convs stay direct.
MIN_CHANNELS = 256
MAX_PADDING_WASTE = 1.5  # computed tile area / output area above which the direct conv wins


def use_winograd(conv: nn.Conv2d) -> bool:
    """Whether `conv` is a dense 3x3 stride-1 "same" convolution wide enough to pay."""
    return (conv.kernel_size == (3, 3) and conv.stride == (1, 1) and conv.groups == 1
            and conv.dilation[0] == conv.dilation[1] and conv.padding == conv.dilation
            and conv.padding_mode == "zeros" and conv.in_channels >= MIN_CHANNELS)


class WinogradConv2d(nn.Module):
    """A replacement for a 3x3 stride-1 conv (any dilation, padding = dilation) on CPU.

    The filters are transformed once (U = G g G^T, kept as a (36, C_in, C_out) buffer); the
    original weight stays for inputs where tiling does not pay (other devices, dtypes, autocast,
    tiny outputs), which run the direct `F.conv2d`.
    """

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        if not use_winograd(conv):
            raise ValueError(f"not a dense 3x3 stride-1 'same' conv of >= {MIN_CHANNELS} "
                             f"input channels: {conv}")
        self.dilation = conv.dilation[0]
        weight = conv.weight.detach()
        bias = conv.bias.detach() if conv.bias is not None else weight.new_zeros(len(weight))
        self.register_buffer("weight", weight.clone())
        self.register_buffer("bias", bias.clone())
        g = torch.tensor(_G, dtype=torch.float64)
        u = torch.einsum("ai,kcij,bj->abck", g, weight.double(), g)  # (6, 6, C_in, C_out)
        self.register_buffer("filters", u.reshape(36, *u.shape[2:]).to(weight.dtype).contiguous())
        bt, at = torch.tensor(_BT, dtype=torch.float64), torch.tensor(_AT, dtype=torch.float64)
        self.register_buffer("input_transform", torch.kron(bt, bt).to(weight.dtype))  # (36, 36)
        self.register_buffer("output_transform", torch.kron(at, at).to(weight.dtype))  # (16, 36)

    def extra_repr(self) -> str:
        c_out, c_in = self.weight.shape[:2]
        return f"{c_in}, {c_out}, kernel_size=(3, 3), dilation={self.dilation}, F(4x4, 3x3)"

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_concat([x])

    def forward_concat(self, parts: list[Tensor]) -> Tensor:
        """forward(torch.cat(parts, dim=1)), without the concatenated copy (DMHead's bottleneck
        reads the stage-4 features and the four DCM outputs in place)."""
        x, d = parts[0], self.dilation
        if self._direct(x):
            x = torch.cat(parts, dim=1) if len(parts) > 1 else x
            return F.conv2d(x, self.weight, self.bias, padding=d, dilation=d)
        return winograd_conv3x3(parts, self.filters, self.bias, d, self.input_transform,
                                self.output_transform)

    def partial(self, x: Tensor, start: int) -> Tensor:
        """One term of `forward_concat`: the conv of `x` taken as input channels start ..
        start + C_x, without the bias (the app's exact split of DMHead's bottleneck)."""
        d, stop = self.dilation, start + x.shape[1]
        if self._direct(x):
            return F.conv2d(x, self.weight[:, start:stop], None, padding=d, dilation=d)
        return winograd_conv3x3([x], self.filters[:, start:stop], self.bias.new_zeros(()), d,
                                self.input_transform, self.output_transform)

    def _direct(self, x: Tensor) -> bool:
        """Whether `x` runs by the direct conv: not a CPU fp32 input, autocast, or too small."""
        return (x.device.type != "cpu" or x.dtype != self.filters.dtype
                or torch.is_autocast_enabled(x.device.type)
                or padding_waste(x.shape[-2:], self.dilation) > MAX_PADDING_WASTE)


def padding_waste(size: tuple[int, int], dilation: int) -> float:
    """Area of the whole tiles computed for an h x w output, over h * w."""
    h, w = size
    step = dilation * TILE
    return math.ceil(h / step) * math.ceil(w / step) * step * step / (h * w)


def winograd_conv3x3(parts: list[Tensor], filters: Tensor, bias: Tensor, dilation: int,
                     input_transform: Tensor, output_transform: Tensor) -> Tensor:
    """conv2d(torch.cat(parts, 1), weight, bias, padding=dilation, dilation=dilation) by F(4x4, 3x3).

    The transform is linear, so each part's tiles meet only its own rows of the filters, and the
    products add up (`baddbmm_`): no concatenated copy of the input.
    Args:
        parts: (N, C_i, H, W) each, any memory format; sum of C_i = C_in.
        filters: (36, C_in, C_out) transformed weight G g G^T (`WinogradConv2d.filters`).
        input_transform, output_transform: kron(B^T, B^T) (36, 36) and kron(A^T, A^T) (16, 36).
    Returns (N, C_out, H, W) in channels_last memory.
    """
    n, _, h, w = parts[0].shape
    d, m = dilation, TILE
    th, tw = math.ceil(h / (d * m)), math.ceil(w / (d * m))  # tiles per residue
    p = n * d * d * th * tw
    prod, start = None, 0
    for x in parts:
        c = x.shape[1]
        # Zero-padded NHWC input, d on the top/left, the rest to whole tiles on the bottom/right.
        xp = x.new_zeros(n, d * (m * th + 2), d * (m * tw + 2), c)
        xp[:, d:d + h, d:d + w] = x.permute(0, 2, 3, 1)
        s_n, s_h, s_w, _ = xp.stride()
        # Input row of tile row i, residue r, tile t: r + d * (m * t + i); columns alike.
        tiles = xp.as_strided((6, 6, n, d, th, d, tw, c),
                              (d * s_h, d * s_w, s_n, s_h, d * m * s_h, s_w, d * m * s_w, 1))
        v = (input_transform @ tiles.reshape(36, p * c)).view(36, p, c)  # B^T d B per tile
        u = filters[:, start:start + c]
        start += c
        # (36, P, C_out): one product per tile position, summed over the parts
        prod = torch.bmm(v, u) if prod is None else prod.baddbmm_(v, u)
    k = prod.shape[-1]
    y = (output_transform @ prod.view(36, p * k)).view(m, m, n, d, th, d, tw, k)
    # Output row r + d * (m * t + i)  ->  (N, t, i, r) order; crop the padding tiles.
    y = y.permute(2, 4, 0, 3, 6, 1, 5, 7).reshape(n, th * m * d, tw * m * d, k)
    y = y[:, :h, :w] + bias
    return y.permute(0, 3, 1, 2)  # NCHW view of NHWC memory: channels_last


def winograd_convs(model: nn.Module) -> int:
    """Replace, in place, every conv of `model` that `use_winograd` accepts; returns how many."""
    count = 0
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.Conv2d) and use_winograd(child):
                setattr(parent, name, WinogradConv2d(child))
                count += 1
    return count
