"""3x3 convolutions by Winograd's minimal filtering F(m x m, 3x3), for fp32 inference on CPUs.

Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (CVPR 2016). With F(4x4, 3x3),
the eager default, each 6x6 input tile d gives a 4x4 output tile Y = A^T [(G g G^T) . (B^T d B)] A:
the 3x3 convolution's 36 multiplications per output pixel and channel pair become 36 per 16
output pixels (2.25 each), and the per-tile products of all channel pairs are 36 matrix products
(`torch.bmm`). A dilated convolution is d*d interleaved undilated ones (output rows r, r+d, r+2d,
... see only input rows of the same residue mod d), so the tiles are gathered on the dilated
grid; no copy per residue. `toom_cook` builds the matrices of any tile from its points.

Why: oneDNN has no Winograd kernels for AVX2 CPUs, and on the 2-core AVX2 machine this project
runs on, DMHead's 4096 -> 512 bottleneck conv (40% of R-50-D8's FLOPs) takes ~1.0 s direct and
~0.4 s here. Outputs equal the direct convolution to a few 1e-6 of the output's scale in fp32
(the transforms' rounding; tests/dmnet/test_winograd.py). Narrow layers and outputs smaller than
a few tiles lose to the direct kernels; `use_winograd` and `MAX_PADDING_WASTE` say where it pays.
A conv may hold several tiles' filters; `best_tile` picks one per input size.

Eagerly the transforms are matrix products with kron(B^T, B^T) and kron(A^T, A^T), after a
gather of the tiles: with the Winograd products and the other convs at the CPU's rate, they are
what is left to win (R-50-D8, one 769x769 window = 97x97 features, 2-core AMD EPYC with AVX-512,
torch.profiler: oneDNN's convolutions 1.57 s, the 1x1 ones at 219-223 GFLOP/s as alone; the
Winograd products 0.83 s at 195-199 GFLOP/s, as `bmm` alone; the transforms' `mm` 0.20 s, copies
0.11 s). Under torch.compile (`optimize(compile=True)`) the transforms are sums of strided views
times constants (`separable`), which inductor fuses with the gather and the crop, and the tile
is `COMPILED_TILE` = 5, whose fewer products pay once the transforms are cheap: the window at
0.574x of the plain model's time against 0.65x eagerly, for 2.5-4 minutes of compile. The
dilated convs keep F(4) too, for the input sizes whose residue grids F(4) covers with fewer
products (`best_tile`).

Tried and not kept (same window and machine unless said):
- Larger tiles eagerly. Per layer, F(5x5) / F(6x6) against F(4x4): the bottleneck 613 -> 544 /
  532 ms, stage 4's dilation-4 convs 110 -> 81 / 113, stage 3's 31 -> 28 / 30. On the whole
  model (another 2-core AMD EPYC, one pass, the same tile for every layer; F(4) / F(5) / F(6)):
  the window 2.91 / 2.82 / 3.01 s; the ms+flip scales of 512x1024, 256x512 0.66 / 0.73 / 0.73,
  384x768 1.41 / 1.47 / 1.41, 512x1024 2.49 / 2.55 / 2.49, 640x1280 3.73 / 3.71 / 3.77,
  768x1536 5.51 / 5.52 / 5.32, 896x1792 8.14 / 7.42 / 7.48 s: 3-9% on some sizes only, for
  3.6x / 4.5x F(4)'s rounding error (8.5e-6 / 1.1e-5 of the output's maximum) and 1.4x / 1.8x
  the transformed filters' memory (the bottleneck's 302 -> 411 / 537 MB).
- Under compile, F(4) 0.604x and F(6) 0.631x of the plain model (F(6)'s whole tiles cover 102 of
  the 97 feature rows); a compiled fused input transform alone saves ~150 ms a window.
- Other products: `torch.bmm` on these shapes runs at 170-199 GFLOP/s whatever the operand
  layout, a loop of `mm`, a loop of oneDNN 1x1 convs, or a grouped 1x1 conv (145-191).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from fractions import Fraction

import torch
import torch.nn.functional as F
from torch import Tensor, nn

TILE = 4  # the eager path's output tile m of F(m x m, 3 x 3); input tiles are m + 2 wide
# Interpolation points of F(m, 3), besides infinity. F(4, 3)'s are Lavin's 0, +-1, +-2 with the
# -2 / 2 pair replaced by 1/2 / -2, which halves the largest fp32 error (2.7e-6 vs 6.9e-6 of the
# output's maximum, 256 channels; direct: 1.7e-6), as Barabasz et al. found ("Error analysis and
# improving the accuracy of Winograd convolution for deep neural networks", ACM TOMS 2020).
# Larger tiles add the next points of small magnitude: fewer products, larger rounding error.
POINTS = {4: (0, 1, -1, Fraction(1, 2), -2), 5: (0, 1, -1, Fraction(1, 2), -2, 2),
          6: (0, 1, -1, Fraction(1, 2), -2, 2, Fraction(-1, 2))}


@functools.cache
def toom_cook(tile: int) -> tuple[tuple[tuple[float, ...], ...], ...]:
    """B^T (n x n), G (n x 3) and A^T (m x n) of F(m x m, 3 x 3), m = `tile`, n = m + 2:
    Y = A^T [(G g G^T) . (B^T d B)] A, from `POINTS[tile]` and infinity in exact rationals. A^T
    evaluates the output polynomial at the points, G the filter's (over the Lagrange
    denominators), and row j of B^T holds the coefficients x^0 .. x^(n-1) of the product of
    (x - p) over the other finite points (over all of them for infinity's row)."""
    points = [Fraction(p) for p in POINTS[tile]]
    n = tile + 2

    def poly(roots: list[Fraction]) -> list[Fraction]:
        coeffs = [Fraction(1)]  # coeffs[i]: the coefficient of x^i
        for r in roots:  # times (x - r)
            coeffs = [(coeffs[i - 1] if i else 0) - r * (coeffs[i] if i < len(coeffs) else 0)
                      for i in range(len(coeffs) + 1)]
        return coeffs + [Fraction(0)] * (n - len(coeffs))

    others = [[q for q in points if q != p] for p in points]
    bt = [poly(rest) for rest in others] + [poly(points)]
    g = [[p ** k / math.prod(p - q for q in rest) for k in range(3)]
         for p, rest in zip(points, others)] + [[0, 0, 1]]
    at = [[p ** i for p in points] + [int(i == tile - 1)] for i in range(tile)]
    return tuple(tuple(tuple(float(v) for v in row) for row in mat) for mat in (bt, g, at))


COMPILED_TILE = 5  # optimize(compile=True)'s, measured best (module docstring); rounding 1e-5
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

    The filters are transformed once per tile m of `tiles` (U = G g G^T, kept as an
    (n^2, C_in, C_out) buffer `filters{m}`); each input runs by the tile `best_tile` picks for
    its size. The original weight stays for inputs where tiling does not pay (other devices,
    dtypes, autocast, tiny outputs), which run the direct `F.conv2d`.
    """

    def __init__(self, conv: nn.Conv2d, tile: int = TILE, tiles: Sequence[int] = ()) -> None:
        super().__init__()
        if not use_winograd(conv):
            raise ValueError(f"not a dense 3x3 stride-1 'same' conv of >= {MIN_CHANNELS} "
                             f"input channels: {conv}")
        self.tiles = tuple(sorted({tile, *tiles}))
        if not set(self.tiles) <= set(POINTS):
            raise ValueError(f"tiles must be among {sorted(POINTS)}, got {self.tiles}")
        self.dilation = conv.dilation[0]
        self.elementwise = False  # the transforms inductor fuses (`winograd_conv3x3`); compile only
        # constants where torch.compile traces (no call there)
        self.matrices = {m: toom_cook(m) for m in self.tiles}
        weight = conv.weight.detach()
        bias = conv.bias.detach() if conv.bias is not None else weight.new_zeros(len(weight))
        self.register_buffer("weight", weight.clone())
        self.register_buffer("bias", bias.clone())
        for m in self.tiles:
            bt, g, at = (torch.tensor(mat, dtype=torch.float64) for mat in toom_cook(m))
            # (n^2, C_in, C_out), in float64 64 output channels at a time: all at once, DMHead's
            # bottleneck of R-50 held 0.6 GB of float64 while a model loaded
            u = torch.cat([torch.einsum("ai,kcij,bj->abck", g, w.double(), g).flatten(0, 1)
                           .to(weight.dtype) for w in weight.split(64)], dim=-1)
            self.register_buffer(f"filters{m}", u.contiguous())
            self.register_buffer(f"input_transform{m}", torch.kron(bt, bt).to(weight.dtype))
            self.register_buffer(f"output_transform{m}", torch.kron(at, at).to(weight.dtype))

    def extra_repr(self) -> str:
        c_out, c_in = self.weight.shape[:2]
        tiles = " or ".join(f"F({m}x{m}, 3x3)" for m in self.tiles)
        return f"{c_in}, {c_out}, kernel_size=(3, 3), dilation={self.dilation}, {tiles}"

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_concat([x])

    def forward_concat(self, parts: list[Tensor]) -> Tensor:
        """forward(torch.cat(parts, dim=1)), without the concatenated copy (DMHead's bottleneck
        reads the stage-4 features and the four DCM outputs in place)."""
        x, d = parts[0], self.dilation
        m = self.pick_tile(x)
        if m is None:
            x = torch.cat(parts, dim=1) if len(parts) > 1 else x
            return F.conv2d(x, self.weight, self.bias, padding=d, dilation=d)
        filters, into, out = self.transformed(m)
        return winograd_conv3x3(parts, filters, self.bias, d, into, out,
                                self.matrices[m] if self.elementwise else None)

    def partial(self, x: Tensor, start: int, chunk: int | None = None) -> Tensor:
        """One term of `forward_concat`: the conv of `x` taken as input channels start ..
        start + C_x, without the bias (the app's exact split of DMHead's bottleneck). With
        `chunk`, x's channels are transformed `chunk` at a time (their products summed before
        the one output transform), which bounds the transformed tiles' memory."""
        d, stop = self.dilation, start + x.shape[1]
        m = self.pick_tile(x)
        if m is None:
            return F.conv2d(x, self.weight[:, start:stop], None, padding=d, dilation=d)
        filters, into, out = self.transformed(m)
        parts = list(x.split(chunk, dim=1)) if chunk else [x]
        return winograd_conv3x3(parts, filters[:, start:stop], self.bias.new_zeros(()), d, into,
                                out)

    def transformed(self, m: int) -> tuple[Tensor, Tensor, Tensor]:
        """F(m x m, 3 x 3)'s filters G g G^T, kron(B^T, B^T) and kron(A^T, A^T)."""
        return (getattr(self, f"filters{m}"), getattr(self, f"input_transform{m}"),
                getattr(self, f"output_transform{m}"))

    def pick_tile(self, x: Tensor) -> int | None:
        """The tile `x` runs by (`best_tile`), or None for the direct conv: not a CPU fp32 input,
        autocast, or too small for any tile."""
        if (x.device.type != "cpu" or x.dtype != self.weight.dtype
                or torch.is_autocast_enabled(x.device.type)):
            return None
        return best_tile(x.shape[-2:], self.dilation, self.tiles)


def best_tile(size: tuple[int, int], dilation: int, tiles: Sequence[int]) -> int | None:
    """Of `tiles`, the one with the fewest products for an h x w output: ((m + 2) / m)^2 per
    output pixel times the padding waste of whole tiles, in exact rationals, ties to the smaller
    tile (the smaller rounding error); None where every tile's waste is over MAX_PADDING_WASTE.

    A dilated conv's tiles cover each residue grid (h / d x w / d) whole, so a larger tile can
    lose there: stage 4 of R-50-D8 (dilation 4) at 512x1024 has 16x32 per residue, which F(4)
    covers exactly and F(5) by 20x35 (1.37x). The whole compiled model took 2209 ms with that
    stage by F(4) and 2461 ms by F(5) (2-core AMD EPYC, medians of 5); at 384x768 1416 vs 1469
    ms, at 256x512 (where F(5) fell back to the direct conv) 671 vs 740.
    """
    def cost(m: int) -> Fraction:
        h, w = size
        step = dilation * m
        return (Fraction(m + 2, m) ** 2 * math.ceil(h / step) * math.ceil(w / step) * step * step
                / (h * w))

    fits = [m for m in sorted(tiles) if padding_waste(size, dilation, m) <= MAX_PADDING_WASTE]
    return min(fits, key=cost, default=None)


def padding_waste(size: tuple[int, int], dilation: int, tile: int = TILE) -> float:
    """Area of the whole tiles computed for an h x w output, over h * w."""
    h, w = size
    step = dilation * tile
    return math.ceil(h / step) * math.ceil(w / step) * step * step / (h * w)


def separable(matrix: Sequence[Sequence[float]], views: Sequence[Sequence[Tensor]]) -> Tensor:
    """M d M^T for a grid of tensors d[i][j] (one per tile element), as sums of the tensors
    times constants, zero coefficients skipped (what inductor fuses into one pass); stacked in
    the row-major order of the result, as kron(M, M) @ d would give it."""
    def rows(vectors: list[Tensor]) -> list[Tensor]:
        return [sum(c * v for c, v in zip(row, vectors) if c != 0) for row in matrix]

    half = [rows([views[i][j] for i in range(len(views))]) for j in range(len(views[0]))]
    return torch.stack([e for a in range(len(matrix)) for e in rows([h[a] for h in half])])


def winograd_conv3x3(parts: list[Tensor], filters: Tensor, bias: Tensor, dilation: int,
                     input_transform: Tensor, output_transform: Tensor,
                     matrices: tuple | None = None) -> Tensor:
    """conv2d(torch.cat(parts, 1), weight, bias, padding=dilation, dilation=dilation) by
    F(m x m, 3 x 3), m given by the transforms' shapes (n = m + 2).

    The transform is linear, so each part's tiles meet only its own rows of the filters, and the
    products add up (`baddbmm_`): no concatenated copy of the input.
    Args:
        parts: (N, C_i, H, W) each, any memory format; sum of C_i = C_in.
        filters: (n^2, C_in, C_out) transformed weight G g G^T (`WinogradConv2d.filters`).
        input_transform, output_transform: kron(B^T, B^T) (n^2, n^2), kron(A^T, A^T) (m^2, n^2).
        matrices: `toom_cook(m)`, to apply B^T and A^T as sums of strided views times
            constants (`separable`) instead of matrix products with the krons: under
            torch.compile, inductor fuses each transform with the gather or the crop into one
            pass (`optimize(compile=True)`); eagerly that is several times slower.
    Returns (N, C_out, H, W) in channels_last memory.
    """
    n, _, h, w = parts[0].shape
    d, m = dilation, math.isqrt(len(output_transform))
    side, area = m + 2, (m + 2) ** 2  # of an input tile
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
        tiles = xp.as_strided((side, side, n, d, th, d, tw, c),
                              (d * s_h, d * s_w, s_n, s_h, d * m * s_h, s_w, d * m * s_w, 1))
        if matrices:
            v = separable(matrices[0], tiles).view(area, p, c)
        else:
            v = (input_transform @ tiles.reshape(area, p * c)).view(area, p, c)  # B^T d B a tile
        u = filters[:, start:start + c]
        start += c
        # (n^2, P, C_out): one product per tile position, summed over the parts
        prod = torch.bmm(v, u) if prod is None else prod.baddbmm_(v, u)
    k = prod.shape[-1]
    if matrices:
        y = separable(matrices[2], prod.view(side, side, p, k)).view(m, m, n, d, th, d, tw, k)
    else:
        y = (output_transform @ prod.view(area, p * k)).view(m, m, n, d, th, d, tw, k)
    # Output row r + d * (m * t + i)  ->  (N, t, i, r) order; crop the padding tiles.
    y = y.permute(2, 4, 0, 3, 6, 1, 5, 7).reshape(n, th * m * d, tw * m * d, k)
    y = y[:, :h, :w] + bias
    return y.permute(0, 3, 1, 2)  # NCHW view of NHWC memory: channels_last


def winograd_convs(model: nn.Module, tile: int = TILE, dilated: Sequence[int] = ()) -> int:
    """Replace, in place, every conv of `model` that `use_winograd` accepts by F(tile x tile,
    3 x 3), the dilated ones also by the tiles `dilated` (each input by `best_tile`); returns
    how many."""
    count = 0
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.Conv2d) and use_winograd(child):
                tiles = dilated if child.dilation[0] > 1 else ()
                setattr(parent, name, WinogradConv2d(child, tile, tiles))
                count += 1
    return count
