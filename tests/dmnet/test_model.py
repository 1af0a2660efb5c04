import pytest
import torch
import torch.nn.functional as F

from dmnet import DMNet
from dmnet.heads import dynamic_depthwise_conv, even_aware_padding, summed_taps

from ..conftest import randomize_bn, tiny_preset
from ..tolerance import assert_scaled_close


@pytest.mark.parametrize("depth", [18, 50, 101])
def test_stage_shapes_and_strides(depth):
    m = DMNet(tiny_preset(depth)).eval()
    x = torch.randn(2, 3, 64, 80)
    feats = m.backbone(x)
    e = 1 if depth == 18 else 4
    assert [f.shape[1] for f in feats] == [8 * e, 16 * e, 32 * e, 64 * e]
    assert [tuple(f.shape[-2:]) for f in feats] == [(16, 20), (8, 10), (8, 10), (8, 10)]


def test_contract_dilation():
    m = DMNet(tiny_preset(50))
    dil = lambda layer: [b.conv2.dilation[0] for b in layer]  # noqa: E731
    assert dil(m.backbone.layer3) == [1, 2, 2, 2, 2, 2]
    assert dil(m.backbone.layer4) == [2, 4, 4]
    assert [b.conv2.padding[0] for b in m.backbone.layer4] == [2, 4, 4]
    assert m.backbone.layer2[0].conv2.stride == (2, 2)
    assert m.backbone.layer3[0].downsample[0].stride == (1, 1)


def test_trace_shapes(tiny_model):
    x = torch.randn(2, 3, 97, 129)  # odd sizes: uneven pooling bins
    t = tiny_model.inspect(x)
    h, w = 13, 17  # ceil(97/8), ceil(129/8)
    for k in (1, 3, 5, 7):
        assert t.filters[k].shape == (2, 16, k, k)
        assert t.reduced[k].shape == (2, 16, h, w)
        assert t.branches[k].shape == (2, 16, h, w)
    assert t.fused.shape == (2, 16, h, w)
    assert t.logits.shape == t.aux_logits.shape == (2, 7, h, w)
    assert torch.equal(t.logits, tiny_model(x))


def test_forward_train_matches_inspect(tiny_model):
    x = torch.randn(1, 3, 64, 64)
    logits, aux = tiny_model.forward_train(x)
    t = tiny_model.inspect(x)
    assert torch.equal(logits, t.logits) and torch.equal(aux, t.aux_logits)


def test_dcm_is_reference_formula(tiny_model):
    """Recompute one DCM from its definition (pool -> 1x1 -> per-sample depthwise conv)."""
    x = torch.randn(2, 3, 97, 129)
    t = tiny_model.inspect(x)
    c4 = t.features[3]
    for dcm in tiny_model.decode_head.dcm_modules:
        k = dcm.filter_size
        # adaptive pool bins [floor(i*H/k), ceil((i+1)*H/k)), recomputed by hand
        H, W = c4.shape[-2:]
        rows = [slice((i * H) // k, -(-(i + 1) * H // k)) for i in range(k)]
        cols = [slice((j * W) // k, -(-(j + 1) * W // k)) for j in range(k)]
        pooled = torch.stack([torch.stack([c4[:, :, r, c].mean((2, 3)) for c in cols], -1)
                              for r in rows], -2)
        filters = dcm.filter_gen_conv(pooled)
        torch.testing.assert_close(filters, t.filters[k], rtol=1e-5, atol=1e-6)
        y = t.reduced[k]
        out = torch.stack([
            F.conv2d(F.pad(y[n:n + 1], even_aware_padding(k)), filters[n].unsqueeze(1),
                     groups=y.shape[1])[0] for n in range(2)])
        torch.testing.assert_close(dcm.activate(dcm.norm(out)), t.branches[k])
    cat = torch.cat([c4, *(t.branches[k] for k in (1, 3, 5, 7))], 1)
    torch.testing.assert_close(tiny_model.decode_head.bottleneck(cat), t.fused)


def test_even_filter_padding_is_left_top_heavy():
    assert even_aware_padding(4) == (2, 1, 2, 1)
    assert even_aware_padding(2) == (1, 0, 1, 0)
    assert even_aware_padding(5) == (2, 2, 2, 2)
    # A 2x2 filter with weight only at [0, 0] reads the pixel up-left of each output.
    x = torch.arange(16.0).view(1, 1, 4, 4)
    f = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    out = dynamic_depthwise_conv(x, f)
    assert out[0, 0, 1, 1] == x[0, 0, 0, 0] and out[0, 0, 0, 0] == 0


def test_even_filter_sizes_build_and_run():
    m = randomize_bn(DMNet(tiny_preset(filter_sizes=(2, 4, 6))).eval())
    t = m.inspect(torch.randn(1, 3, 40, 56))
    assert set(t.branches) == {2, 4, 6}
    assert t.branches[4].shape[-2:] == (5, 7)


def test_fusion_conv():
    m = DMNet(tiny_preset(fusion=True))
    assert "decode_head.dcm_modules.0.fusion_conv.conv.weight" in m.state_dict()
    assert m(torch.randn(1, 3, 32, 32)).shape == (1, 7, 4, 4)


def test_init_matches_mmseg():
    m = DMNet(tiny_preset(50))
    m.init_weights()
    assert torch.all(m.backbone.layer1[0].bn3.weight == 0)
    assert torch.all(m.backbone.layer1[0].bn1.weight == 1)
    assert m.decode_head.conv_seg.weight.std() < 0.02
    assert torch.all(m.decode_head.conv_seg.bias == 0)


def test_per_sample_filters_are_independent(tiny_model):
    a, b = torch.randn(1, 3, 64, 64), torch.randn(1, 3, 64, 64)
    both = tiny_model.inspect(torch.cat([a, b]))
    alone = tiny_model.inspect(b)
    for k in (1, 3, 5, 7):
        torch.testing.assert_close(both.filters[k][1:], alone.filters[k], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(both.branches[k][1:], alone.branches[k], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("k", [2, 3, 4, 7])
def test_summed_taps_make_a_1x1_filter_of_the_same_sum(k):
    # The centre tap is the one of offset 0, even k included (padded one more left and top):
    # convolving with the summed taps multiplies each channel by its filter's sum.
    x, filters = torch.randn(2, 3, 9, 11), torch.randn(2, 3, k, k)
    summed = summed_taps(filters)
    assert_scaled_close(summed.sum((-2, -1)), filters.sum((-2, -1)))
    assert torch.count_nonzero(summed) == 6
    assert_scaled_close(dynamic_depthwise_conv(x, summed),
                        x * filters.sum((-2, -1))[..., None, None])
