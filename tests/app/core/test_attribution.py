"""The exact split of the bottleneck, the logit split, and ablations built on them."""

import math

import numpy as np
import pytest
import torch

import dmnet
from app.core.analysis import ablated_label, analyse, labels, margin_shares
from app.core.attribution import (Classifier, cell_margin, decisions, keep_mask, logit_parts,
                                  margin_parts, split_bottleneck)
from app.core.images import model_input
from dmnet import winograd
from dmnet.fast import optimize

from ..conftest import rgb_noise, tiny_model


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def trace(model):
    x = dmnet.normalize(model_input(rgb_noise(90, 130), model.preset))
    return model.inspect(x)


def inputs_of(trace):
    return [trace.features[3], *trace.branches.values()]


def test_parts_sum_exactly_to_the_pre_relu_bottleneck_output(model, trace):
    head = model.decode_head
    split = split_bottleneck(head.bottleneck, inputs_of(trace), ["x", "k=1", "k=3", "k=5", "k=7"])
    with torch.inference_mode():
        pre = head.bottleneck.bn(head.bottleneck.conv(torch.cat(inputs_of(trace), 1)))[0]
    assert split.parts.shape == (5, *pre.shape)
    torch.testing.assert_close(split.total(), pre, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.relu(split.total()), trace.fused[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("wino", [False, True])
def test_the_optimized_bottleneck_splits_alike(model, trace, wino, monkeypatch):
    """The app splits the bottleneck of `optimize(model)`: BN folded into the conv, and for wide
    heads a Winograd conv (forced here onto the tiny head)."""
    if wino:
        monkeypatch.setattr(winograd, "MIN_CHANNELS", 1)
        monkeypatch.setattr(winograd, "MAX_PADDING_WASTE", math.inf)
    fast = optimize(model).decode_head.bottleneck
    assert isinstance(fast.conv, winograd.WinogradConv2d) is wino
    names = ["x", "k=1", "k=3", "k=5", "k=7"]
    want = split_bottleneck(model.decode_head.bottleneck, inputs_of(trace), names)
    got = split_bottleneck(fast, inputs_of(trace), names)
    torch.testing.assert_close(got.parts, want.parts, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got.bias, want.bias, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="channels"):
        split_bottleneck(fast, inputs_of(trace)[:4], list("abcd"))


def test_a_conv_bias_is_counted_once_in_the_bias(model, trace):
    bottleneck = model.decode_head.bottleneck
    conv = bottleneck.conv
    with_bias = torch.nn.Conv2d(conv.in_channels, conv.out_channels, 3, padding=1, bias=True)
    with torch.no_grad():
        with_bias.weight.copy_(conv.weight)
        with_bias.bias.normal_()
    bottleneck.conv = with_bias
    try:
        split = split_bottleneck(bottleneck, inputs_of(trace), list("xabcd"))
        with torch.inference_mode():
            pre = bottleneck.bn(with_bias(torch.cat(inputs_of(trace), 1)))[0]
        torch.testing.assert_close(split.total(), pre, rtol=1e-5, atol=1e-5)
    finally:
        bottleneck.conv = conv


def test_split_refuses_inputs_of_the_wrong_width(model, trace):
    with pytest.raises(ValueError, match="channels"):
        split_bottleneck(model.decode_head.bottleneck, inputs_of(trace)[:4], list("abcd"))


def test_logit_parts_sum_exactly_to_the_logits(model):
    a = analyse(model, rgb_noise(96, 96))
    parts, rest = logit_parts(a.split, a.classifier)
    torch.testing.assert_close(parts.sum(0) + rest, a.logits, rtol=1e-5, atol=1e-5)
    margins = margin_shares(a)
    assert margins.shape == (5, *a.feature_size)
    top2 = a.logits.topk(2, dim=0).values
    total_margin = torch.from_numpy(margins).sum(0)
    rest_margin = margin_parts(rest.unsqueeze(0), a.logits)[0]
    torch.testing.assert_close(total_margin + rest_margin, top2[0] - top2[1], rtol=1e-4,
                               atol=1e-5)


def test_classifier_matches_conv_seg(model, trace):
    c = Classifier.of(model.decode_head.conv_seg)
    with torch.inference_mode():
        expected = model.decode_head.conv_seg(trace.fused)[0]
    pre = torch.randn_like(trace.fused[0]).abs()  # positive: the ReLU passes it unchanged
    torch.testing.assert_close(c(trace.fused[0]), expected, rtol=1e-5, atol=1e-5)
    assert c(-pre).sub(c.bias.view(-1, 1, 1)).abs().max() == 0  # all negative -> bias only


def test_keep_mask_modes():
    names = ("x", "k=1", "k=3", "k=5", "k=7")
    assert keep_mask(names, ["k=7"], "remove") == [True, True, True, True, False]
    assert keep_mask(names, ["x", "k=3"], "keep only") == [True, False, True, False, False]
    assert keep_mask(names, [], "remove") == [True] * 5
    with pytest.raises(ValueError, match="unknown parts"):
        keep_mask(names, ["k=9"], "remove")
    with pytest.raises(ValueError, match="mode"):
        keep_mask(names, [], "drop")


def test_ablation_keeping_everything_is_the_prediction(model):
    a = analyse(model, rgb_noise(80, 120, seed=1))
    np.testing.assert_array_equal(ablated_label(a, [True] * 5), a.label)


def test_ablation_removing_a_branch_equals_zeroing_its_output(model):
    """Removing k=7's part == running the real head with branch 7's output set to zero."""
    image = rgb_noise(80, 120, seed=2)
    a = analyse(model, image)
    x = dmnet.normalize(model_input(image, model.preset))
    with torch.inference_mode():
        trace = model.inspect(x)
        branches = [trace.branches[k] for k in (1, 3, 5)] + [torch.zeros_like(trace.branches[7])]
        head = model.decode_head
        logits = head.conv_seg(head.bottleneck(torch.cat([trace.features[3], *branches], 1)))
    expected = labels(logits[0], a.input_size, image.shape[:2], a.align_corners)
    np.testing.assert_array_equal(ablated_label(a, [True, True, True, True, False]), expected)
    keep_only = ablated_label(a, keep_mask(a.part_names, ["k=3"], "keep only"))
    assert keep_only.shape == image.shape[:2]


def test_one_cells_margin_splits_into_its_inputs_terms(model):
    a = analyse(model, rgb_noise(96, 96, seed=3))
    parts, rest = logit_parts(a.split, a.classifier)
    margins = margin_shares(a)
    for cell in ((0, 0), (5, 7), (11, 11)):
        m = cell_margin(parts, rest, cell)
        top2 = a.logits[:, cell[0], cell[1]].topk(2)
        assert [m.top, m.runner_up] == top2.indices.tolist()
        scale = float(top2.values.abs().max())
        assert abs(m.margin - float(top2.values[0] - top2.values[1])) <= 1e-4 * scale
        np.testing.assert_allclose(m.parts.numpy(), margins[:, cell[0], cell[1]],
                                   atol=1e-5 * scale)


def test_decisions_count_each_inputs_pixels_per_class():
    label = np.array([[0, 0, 1], [2, 2, 2]])
    winner = np.array([[1, 1, 0], [3, 0, 3]])
    counts = decisions(label, winner, 3, 4)
    np.testing.assert_array_equal(counts, [[0, 2, 0, 0], [1, 0, 0, 0], [1, 0, 0, 2]])
