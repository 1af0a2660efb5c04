import numpy as np
import pytest
import torch

from app.core.attribution import keep_mask, split_bottleneck
from dmnet import DMNet
from dmnet.inference import normalize
from training.ablation import (ablate, format_rows, mean_filters, part_names, with_static_filters,
                               with_summed_taps, without_part)
from training.data import MultiScaleShapes

from ..conftest import randomize_bn, tiny_preset
from ..tolerance import assert_scaled_close


@pytest.fixture
def model():
    return randomize_bn(DMNet(tiny_preset(test_scale=(64, 64))).eval())


@pytest.mark.parametrize("name", ["x", "k=1", "k=5"])
def test_without_part_equals_removing_that_input_before_the_bottleneck(model, name):
    x = torch.randn(1, 3, 64, 80)
    t = model.inspect(x)
    head = model.decode_head
    inputs = [t.features[3], *(t.branches[k] for k in head.filter_sizes)]
    split = split_bottleneck(head.bottleneck, inputs, part_names(model))
    expected = torch.relu(split.total(keep_mask(split.names, [name], "remove")))
    got = without_part(model, name).inspect(x).fused[0]
    assert_scaled_close(got, expected)
    assert not torch.allclose(got, t.fused[0], atol=1e-3)  # the part did contribute
    torch.testing.assert_close(model.inspect(x).fused, t.fused)  # the original is untouched


def test_without_part_rejects_unknown_names(model):
    with pytest.raises(ValueError, match=r"unknown part 'k=9'.*'x', 'k=1'"):
        without_part(model, "k=9")


def test_static_filters_of_one_image_reproduce_that_image_and_differ_on_another(model):
    data = MultiScaleShapes("val", length=2, size=64)
    filters = mean_filters(model, [data[0]])
    static = with_static_filters(model, filters)
    p = model.preset
    first, second = (normalize(data[i][0], p.mean, p.std) for i in range(2))
    assert_scaled_close(static(first), model(first))
    trace = static.inspect(second)
    for k, f in filters.items():  # the same filters whatever the input
        torch.testing.assert_close(trace.filters[k][0], f)
    assert not torch.allclose(static(second), model(second), atol=1e-4)


def test_mean_filters_average_over_the_images(model):
    data = MultiScaleShapes("val", length=3, size=64)
    p = model.preset
    each = [model.inspect(normalize(data[i][0], p.mean, p.std)).filters for i in range(3)]
    means = mean_filters(model, data)
    for k in p.filter_sizes:
        assert_scaled_close(means[k], torch.stack([e[k][0] for e in each]).mean(0))
        assert means[k].shape == (p.head_channels, k, k)


def test_with_summed_taps_changes_only_that_branch(model):
    x = torch.randn(1, 3, 64, 80)
    t = model.inspect(x)
    got = with_summed_taps(model, [5]).inspect(x)
    dcm = next(m for m in model.decode_head.dcm_modules if m.filter_size == 5)
    gain = t.filters[5].sum((-2, -1))[..., None, None]
    assert_scaled_close(got.branches[5], dcm.activate(dcm.norm(t.reduced[5] * gain)))
    assert not torch.allclose(got.branches[5], t.branches[5], atol=1e-3)  # the layout mattered
    for k in (1, 3, 7):
        torch.testing.assert_close(got.branches[k], t.branches[k])
    torch.testing.assert_close(model.inspect(x).fused, t.fused)  # the original is untouched
    with pytest.raises(ValueError, match=r"no DCM of filter size \[9\]"):
        with_summed_taps(model, [3, 9])


def test_ablate_reports_every_variant_against_full(model):
    data = MultiScaleShapes("val", length=2, size=64)
    rows = ablate(model, data)
    assert [r.variant for r in rows] == ["full", "without x", "without k=1", "without k=3",
                                         "without k=5", "without k=7", "static filters",
                                         "k=3 taps summed", "k=5 taps summed", "k=7 taps summed",
                                         "all taps summed"]
    assert rows[0].drop == 0
    for r in rows:
        assert r.drop == pytest.approx(rows[0].mIoU - r.mIoU)
        assert set(r.size_buckets) == {"tiny", "small", "medium", "large"}
    assert np.isfinite([r.mIoU for r in rows]).all()
    table = format_rows(rows)
    assert table.splitlines()[0].split()[:3] == ["variant", "mIoU", "drop"]
    shown = [line.split("  ")[0].strip() for line in table.splitlines()[1:]]
    assert shown == [r.variant for r in rows]  # one line per variant, in order
