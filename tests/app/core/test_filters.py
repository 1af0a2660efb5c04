"""Pooling bins, channel ranking by input-dependence, cosine similarities, metrics."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from app.core.filters import (bank_cosine, cosine_per_channel, input_dependence, pool_bins,
                              rank_channels, relative_change, shared_range)
from app.core.metrics import class_changes, iou, mean_iou, pixel_share


@pytest.mark.parametrize("n,k", [(64, 1), (64, 3), (64, 4), (46, 5), (33, 7), (7, 7), (5, 7)])
def test_pool_bins_are_those_of_adaptive_avg_pool2d(n, k):
    x = torch.randn(1, 1, n, n)
    pooled = F.adaptive_avg_pool2d(x, k)[0, 0]
    bins = pool_bins(n, k)
    assert len(bins) == k and bins[0][0] == 0 and bins[-1][1] == n
    for i, (r0, r1) in enumerate(bins):
        for j, (c0, c1) in enumerate(bins):
            torch.testing.assert_close(pooled[i, j], x[0, 0, r0:r1, c0:c1].mean())


def test_pool_bins_overlap_exactly_when_not_divisible():
    assert pool_bins(64, 4) == [(0, 16), (16, 32), (32, 48), (48, 64)]
    assert pool_bins(64, 3) == [(0, 22), (21, 43), (42, 64)]  # one shared cell between bins


def test_input_dependence_and_ranking():
    rng = np.random.default_rng(0)
    bank = np.zeros((5, 4, 3, 3))
    bank[:, 2] = rng.normal(0, 1.0, (5, 3, 3))  # channel 2 varies most
    bank[:, 0] = rng.normal(0, 0.1, (5, 3, 3))
    bank[:, 3] = 7.0  # large but static
    score = input_dependence(bank)
    assert score.shape == (4,)
    assert list(rank_channels(score)) == [2, 0, 1, 3]
    assert list(rank_channels(np.zeros(3))) == [0, 1, 2]  # ties keep channel order
    with pytest.raises(ValueError):
        input_dependence(bank[:1])


def test_cosines():
    a = np.random.default_rng(1).normal(size=(6, 3, 3))
    np.testing.assert_allclose(cosine_per_channel(a, 2 * a), 1.0)
    np.testing.assert_allclose(cosine_per_channel(a, -a), -1.0)
    assert cosine_per_channel(np.ones((2, 1, 1)), -np.ones((2, 1, 1))).tolist() == [-1, -1]
    assert bank_cosine(a, a) == pytest.approx(1.0)
    assert cosine_per_channel(np.zeros((2, 3, 3)), a[:2]).tolist() == [0.0, 0.0]
    assert shared_range([a, -3 * a]) == pytest.approx(np.quantile(np.abs(np.r_[a, 3 * a]), 0.995))


def test_relative_change_is_the_size_of_the_change_against_the_filter():
    rng = np.random.default_rng(2)
    mean = rng.normal(size=(4, 3, 3))
    small, large = 0.01 * rng.normal(size=(4, 3, 3)), rng.normal(size=(4, 3, 3))
    a, b = mean + small, mean - small  # dynamic parts of opposite sign, both tiny
    np.testing.assert_allclose(cosine_per_channel(small, -small), -1.0)  # the cosine: opposite
    change = relative_change(a, b)  # the change: small against the filter
    expected = np.linalg.norm((2 * small).reshape(4, -1), axis=1) / np.linalg.norm(
        mean.reshape(4, -1), axis=1)
    np.testing.assert_allclose(change, expected, rtol=1e-3)
    assert change.max() < 0.1 and relative_change(mean, mean + large).min() > 0.3
    np.testing.assert_allclose(relative_change(a, -a), 2.0)  # opposite filters
    np.testing.assert_allclose(relative_change(a, a), 0.0)
    assert relative_change(np.zeros((2, 1, 1)), np.zeros((2, 1, 1))).tolist() == [0.0, 0.0]


def test_metrics():
    truth = np.array([[0, 0, 1, 1], [2, 2, 255, 255]])
    pred = np.array([[0, 1, 1, 1], [2, 0, 0, 1]])
    np.testing.assert_allclose(pixel_share(pred, 3), [3 / 8, 4 / 8, 1 / 8])
    np.testing.assert_allclose(iou(pred, truth, 4), [1 / 3, 2 / 3, 1 / 2, np.nan])
    assert mean_iou(pred, truth, 4) == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    rows = class_changes(pred, truth.clip(0, 2), ("a", "b", "c"), truth)
    assert [(r.name, r.before, r.after) for r in rows] == [("a", 3, 2), ("b", 4, 2), ("c", 1, 4)]
    assert rows[0].iou_after == 1.0
    assert class_changes(pred, pred, ("a", "b", "c"))[0].iou_before is None
