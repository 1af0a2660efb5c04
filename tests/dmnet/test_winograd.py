import math

import pytest
import torch
import torch.nn.functional as F

from dmnet import winograd
from dmnet.fast import optimize
from dmnet.winograd import (
    WinogradConv2d,
    best_tile,
    padding_waste,
    use_winograd,
    winograd_convs,
)

from ..tolerance import assert_scaled_close


def wide_conv(cin=256, cout=24, dilation=1, bias=True, seed=0):
    torch.manual_seed(seed)
    conv = torch.nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation, bias=bias)
    with torch.no_grad():
        conv.weight.normal_(0, 1 / math.sqrt(9 * cin))
    return conv


@pytest.mark.parametrize("tile", [4, 5, 6])
def test_toom_cook_matrices_compute_a_1d_correlation_exactly(tile):
    """F(m, 3) in float64: A^T [(G g) . (B^T d)] = the m outputs of correlating d with g; F(4, 3)
    is Lavin's with the points -2 / 2 replaced by 1/2 / -2 (B^T's first row is known)."""
    bt, g, at = (torch.tensor(mat, dtype=torch.float64) for mat in winograd.toom_cook(tile))
    assert bt.shape == (tile + 2, tile + 2) and g.shape == (tile + 2, 3)
    d, k = torch.randn(tile + 2, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    want = torch.stack([d[i:i + 3] @ k for i in range(tile)])
    assert torch.allclose(at @ ((g @ k) * (bt @ d)), want, rtol=0, atol=1e-12)
    if tile == 4:
        assert bt[0].tolist() == [1, -1.5, -2, 1.5, 1, 0]


@pytest.mark.parametrize("dilation", [1, 2, 4])
@pytest.mark.parametrize("size", [(16, 16), (37, 29), (9, 50)])
@pytest.mark.parametrize("tile, elementwise", [(4, False), (4, True), (5, True), (6, False)])
def test_equals_direct_conv(dilation, size, tile, elementwise, monkeypatch):
    """Odd sizes and sizes that are not whole tiles: padding, residues and crop are exact, with
    each tile size and either way of applying the transforms (matrix products, or the
    elementwise sums that torch.compile fuses, here run eagerly)."""
    monkeypatch.setattr(winograd, "MAX_PADDING_WASTE", math.inf)  # never fall back here
    conv = wide_conv(dilation=dilation)
    x = torch.randn(2, 256, *size)
    exact = F.conv2d(x.double(), conv.weight.double(), conv.bias.double(), padding=dilation,
                     dilation=dilation)
    wino = WinogradConv2d(conv, tile)
    wino.elementwise = elementwise
    with torch.inference_mode():
        y = wino(x)
    assert y.shape == exact.shape and y.is_contiguous(memory_format=torch.channels_last)
    # Rounding of the transforms: ~1e-6 of the largest output for F(4), like the direct conv's
    # own; F(5) / F(6) ~1e-5 (their points reach +-2 on both sides).
    assert_scaled_close(y.double(), exact, tol=2e-5 if tile == 4 else 6e-5)
    assert_scaled_close(y, conv(x))


@pytest.mark.parametrize("size, dilation, tiles, best", [
    ((64, 128), 4, (4, 5), 4),  # R-50 stage 4 at 512x1024: 16x32 per residue, F(4) exactly
    ((80, 160), 4, (4, 5), 5),  # 20x40: F(5) exactly, fewer products
    ((97, 97), 4, (4, 5), 5),  # a 769 slide window: F(4)'s tiles overshoot more
    ((112, 224), 4, (4, 5), 4),  # 2.25 products per output either way: the smaller tile
    ((32, 64), 4, (5,), None),  # F(5) alone overshoots by 1.56x: the direct conv
    ((32, 64), 4, (4, 5), 4),
    ((64, 128), 1, (5,), 5),
])
def test_best_tile_has_the_fewest_products(size, dilation, tiles, best):
    assert best_tile(size, dilation, tiles) == best


def test_a_conv_with_two_tiles_runs_each_input_by_its_best(monkeypatch):
    conv = wide_conv(dilation=4)
    wino = WinogradConv2d(conv, 5, (4,))
    assert wino.tiles == (4, 5) and "F(4x4, 3x3) or F(5x5, 3x3)" in repr(wino)
    with torch.inference_mode():
        for size, tile in (((64, 128), 4), ((80, 160), 5), ((6, 6), None)):
            x = torch.randn(1, 256, *size)
            assert wino.pick_tile(x) == tile
            assert_scaled_close(wino(x), conv(x))
        calls = []
        monkeypatch.setattr(winograd, "winograd_conv3x3",
                            lambda parts, filters, *rest: calls.append(filters) or conv(parts[0]))
        wino(torch.randn(1, 256, 64, 128))
    assert calls[0] is wino.filters4  # the transformed filters of the tile it picked


def test_channels_last_input_and_no_bias():
    conv = wide_conv(dilation=2, bias=False)
    x = torch.randn(1, 256, 32, 32).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        assert_scaled_close(WinogradConv2d(conv)(x), conv(x))


def test_falls_back_to_the_direct_conv_where_tiles_do_not_pay():
    conv = wide_conv(dilation=4)
    wino = WinogradConv2d(conv)
    x = torch.randn(1, 256, 6, 6)  # one 16 x 16 tile block for 36 outputs
    assert padding_waste((6, 6), 4) > winograd.MAX_PADDING_WASTE
    with torch.inference_mode():
        assert torch.equal(wino(x), conv(x))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            lo = wino(torch.randn(1, 256, 32, 32))
    assert lo.dtype == torch.bfloat16  # autocast ran the direct conv in bf16


@pytest.mark.parametrize("conv, ok", [
    (torch.nn.Conv2d(256, 64, 3, padding=1), True),
    (torch.nn.Conv2d(256, 64, 3, padding=4, dilation=4), True),
    (torch.nn.Conv2d(128, 64, 3, padding=1), False),  # narrow: oneDNN is as fast
    (torch.nn.Conv2d(256, 64, 3, stride=2, padding=1), False),
    (torch.nn.Conv2d(256, 64, 1), False),
    (torch.nn.Conv2d(256, 256, 3, padding=1, groups=2), False),
    (torch.nn.Conv2d(256, 64, 3, padding=0), False),  # not "same"
    (torch.nn.Conv2d(256, 64, 3, padding=1, padding_mode="reflect"), False),
])
def test_which_convs_are_replaced(conv, ok):
    assert use_winograd(conv) is ok
    if not ok:
        with pytest.raises(ValueError, match="3x3 stride-1"):
            WinogradConv2d(conv)


def test_optimize_replaces_the_wide_convs_of_r50():
    """R-50-D8: 16 bottleneck 3x3s of stages 2-4 (>= 256 in), DMHead's bottleneck, FCN's conv."""
    from dmnet import build_model
    model = build_model("dmnet_r50-d8_4xb2-40k_cityscapes-512x1024")
    fast = optimize(model)
    names = [n for n, m in fast.named_modules() if isinstance(m, WinogradConv2d)]
    assert len(names) == 6 + 3 + 2  # stage 3, stage 4, the two heads
    assert "decode_head.bottleneck.conv" in names and "auxiliary_head.convs.0.conv" in names
    assert "backbone.layer4.0.conv2" in names and "backbone.layer1.0.conv2" not in names
    assert not any(isinstance(m, WinogradConv2d)
                   for m in optimize(model, winograd=False).modules())
    assert not any(isinstance(m, WinogradConv2d)
                   for m in optimize(model, precision="bf16").modules())


def test_winograd_convs_counts_and_leaves_others():
    net = torch.nn.Sequential(wide_conv(), torch.nn.ReLU(), torch.nn.Conv2d(24, 24, 3, padding=1))
    assert winograd_convs(net) == 1
    assert isinstance(net[0], WinogradConv2d) and isinstance(net[2], torch.nn.Conv2d)


def test_forward_concat_equals_the_conv_of_the_concatenation():
    """DMHead's bottleneck: the parts' products are summed, no concatenated copy is made."""
    conv = wide_conv(cin=256 + 3 * 32, dilation=1)
    wino = WinogradConv2d(conv)
    parts = [torch.randn(2, 256, 20, 28), *(torch.randn(2, 32, 20, 28) for _ in range(3))]
    with torch.inference_mode():
        want = conv(torch.cat(parts, dim=1))
        assert_scaled_close(wino.forward_concat(parts), want)
        small = [p[:, :, :5, :5] for p in parts]  # too small for tiles: the direct conv of the cat
        assert torch.equal(wino.forward_concat(small), conv(torch.cat(small, dim=1)))


def test_partial_terms_add_up_to_forward_concat():
    """`partial` (the app's split of the bottleneck): each part's conv, without the bias."""
    conv = wide_conv(cin=256 + 32, dilation=2)
    wino = WinogradConv2d(conv)
    for size in ((24, 40), (5, 5)):  # by tiles, and small enough for the direct conv
        parts = [torch.randn(1, 256, *size), torch.randn(1, 32, *size)]
        with torch.inference_mode():
            terms = wino.partial(parts[0], 0) + wino.partial(parts[1], 256)
            assert_scaled_close(terms + conv.bias.view(1, -1, 1, 1), wino.forward_concat(parts))
            direct = F.conv2d(parts[1], conv.weight[:, 256:], None, padding=2, dilation=2)
            assert_scaled_close(wino.partial(parts[1], 256), direct)
