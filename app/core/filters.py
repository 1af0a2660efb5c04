"""Pure functions about the generated filters: pooling bins, input-dependence, similarity.

A DCM with filter size k pools its input to k x k with `adaptive_avg_pool2d`, whose bin i along an
axis of length n covers [floor(i n / k), ceil((i + 1) n / k)): bins overlap by a cell wherever n is
not divisible by k. A 1x1 conv turns each pooled cell into one tap of every channel's k x k filter.
"""

from __future__ import annotations

import math

import numpy as np


def pool_bins(n: int, k: int) -> list[tuple[int, int]]:
    """The [start, stop) cells of each of the k bins of adaptive average pooling over length n."""
    return [(math.floor(i * n / k), math.ceil((i + 1) * n / k)) for i in range(k)]


def input_dependence(bank: np.ndarray) -> np.ndarray:
    """(C,) how much each channel's filter varies across R inputs: the std over the inputs,
    averaged over the k x k taps. `bank` is (R, C, k, k), the filters generated for R images."""
    if bank.shape[0] < 2:
        raise ValueError("input-dependence needs the filters of at least two inputs")
    return bank.std(axis=0).mean(axis=(-2, -1))


def rank_channels(score: np.ndarray) -> np.ndarray:
    """Channel indices, the highest score first (ties: lower index first)."""
    return np.argsort(-score, kind="stable")


def cosine_per_channel(a: np.ndarray, b: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """(C,) cosine similarity of each channel's filter in `a` and `b`, both (C, k, k).

    For k = 1 a filter is one number, so its cosine is only its sign agreement (+1 or -1).
    """
    a2, b2 = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
    num = (a2 * b2).sum(1)
    den = np.linalg.norm(a2, axis=1) * np.linalg.norm(b2, axis=1)
    return num / np.maximum(den, eps)


def relative_change(a: np.ndarray, b: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """(C,) how much each channel's filter changes from `a` to `b`, both (C, k, k): the norm of
    the difference over the mean norm of the two filters (0 = the same filter, 0.5 = a change
    half the filter's size, 2 = opposite filters). The mean filter cancels in the difference, so
    it is also the change of the dynamic parts, measured against the filter they belong to; it
    gives the size the cosine leaves out (two near-zero dynamic parts can have any cosine)."""
    a2, b2 = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
    size = (np.linalg.norm(a2, axis=1) + np.linalg.norm(b2, axis=1)) / 2
    return np.linalg.norm(a2 - b2, axis=1) / np.maximum(size, eps)


def bank_cosine(a: np.ndarray, b: np.ndarray, eps: float = 1e-12) -> float:
    """Cosine similarity of two whole filter banks (every channel's taps in one vector)."""
    a1, b1 = a.ravel(), b.ravel()
    return float(a1 @ b1 / max(np.linalg.norm(a1) * np.linalg.norm(b1), eps))


def shared_range(banks: list[np.ndarray], quantile: float = 0.995) -> float:
    """A symmetric colour limit shared by several filter banks: the `quantile` of |value|."""
    values = np.concatenate([np.abs(b).ravel() for b in banks])
    return float(max(np.quantile(values, quantile), 1e-6)) if values.size else 1.0
