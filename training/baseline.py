"""The colour-only baseline of a synthetic dataset: the best per-pixel classifier that sees colour.

A lookup table from quantized RGB (16 levels per channel) to the class most often seen with that
colour on the training images: the Bayes-optimal per-pixel colour classifier up to quantization.
Its mIoU shows how much of the task colour alone solves; on MultiScaleShapes and ContextShapes it
should be about that of predicting "background" everywhere, far below a model that sees shape,
scale and context.

    python -m training.baseline --train 200 --val 100 --dataset context_shapes
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from dmnet.presets import DATASETS

from .data import SYNTHETIC, MultiScaleShapes
from .data.shapes import SIZE, SizeBuckets
from .evaluate import Metrics, confusion_matrix, format_table, summarize

LEVELS = 16


def colour_index(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W) int64 index of the quantized colour."""
    q = image.astype(np.int64) * LEVELS // 256
    return (q[..., 0] * LEVELS + q[..., 1]) * LEVELS + q[..., 2]


def fit(data: MultiScaleShapes, n: int, num_classes: int) -> np.ndarray:
    """(LEVELS**3,) class per colour, from the first n images; unseen colours -> class 0."""
    counts = np.zeros(LEVELS ** 3 * num_classes, np.int64)
    for i in range(n):
        image, label = data[i]
        counts += np.bincount((colour_index(image) * num_classes + label).ravel(),
                              minlength=counts.size)
    return counts.reshape(-1, num_classes).argmax(1)


def evaluate_table(table: np.ndarray, data: MultiScaleShapes, n: int,
                   classes: tuple[str, ...]) -> tuple[Metrics, dict]:
    cm = torch.zeros(len(classes), len(classes), dtype=torch.int64)
    buckets = SizeBuckets()
    for i in range(n):
        sample = data.sample(i)
        pred = table[colour_index(sample.image)]
        cm += confusion_matrix(torch.from_numpy(pred), torch.from_numpy(sample.label),
                               len(classes))
        buckets.update(pred, sample)
    return summarize(cm, classes), buckets.summary()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train", type=int, default=200, help="images to fit the table on")
    parser.add_argument("--val", type=int, default=500, help="validation images")
    parser.add_argument("--size", type=int, default=SIZE)
    parser.add_argument("--dataset", choices=sorted(SYNTHETIC), default="context_shapes")
    args = parser.parse_args()
    classes, data = DATASETS[args.dataset][0], SYNTHETIC[args.dataset]
    table = fit(data("train", size=args.size), args.train, len(classes))
    metrics, buckets = evaluate_table(table, data("val", size=args.size), args.val, classes)
    print(f"colour-only baseline of {args.dataset} ({args.train} train / {args.val} val images)\n")
    print(format_table(metrics, buckets))


if __name__ == "__main__":
    main()
