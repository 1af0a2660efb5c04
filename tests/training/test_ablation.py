import numpy as np
import pytest
import torch

from app.attribution import keep_mask, split_bottleneck
from dmnet import DMNet
from dmnet.inference import normalize
from training.ablation import (
    ablate,
    format_rows,
    mean_filters,
    part_names,
    with_static_filters,
    without_part,
)
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


def test_ablate_reports_every_variant_against_full(model):
    data = MultiScaleShapes("val", length=2, size=64)
    rows = ablate(model, data)
    assert [r.variant for r in rows] == ["full", "without x", "without k=1", "without k=3",
                                         "without k=5", "without k=7", "static filters"]
    assert rows[0].drop == 0
    for r in rows:
        assert r.drop == pytest.approx(rows[0].mIoU - r.mIoU)
        assert set(r.size_buckets) == {"tiny", "small", "medium", "large"}
    assert np.isfinite([r.mIoU for r in rows]).all()
    table = format_rows(rows)
    assert table.splitlines()[0].split()[:3] == ["variant", "mIoU", "drop"]
    assert "static filters" in table.splitlines()[-1]
