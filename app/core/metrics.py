"""Per-class numbers of label maps: pixel share, IoU against a true mask, change after ablation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IGNORE = 255


def pixel_share(label: np.ndarray, num_classes: int) -> np.ndarray:
    """(classes,) fraction of pixels predicted as each class."""
    counts = np.bincount(label.ravel(), minlength=num_classes)[:num_classes]
    return counts / max(label.size, 1)


def confusion(pred: np.ndarray, truth: np.ndarray, num_classes: int) -> np.ndarray:
    """(classes, classes) counts, rows = truth, columns = prediction; IGNORE pixels skipped."""
    valid = truth != IGNORE
    idx = truth[valid].astype(np.int64) * num_classes + pred[valid].astype(np.int64)
    return np.bincount(idx, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def iou(pred: np.ndarray, truth: np.ndarray, num_classes: int) -> np.ndarray:
    """(classes,) IoU per class; NaN for classes absent from both prediction and truth."""
    cm = confusion(pred, truth, num_classes)
    inter = np.diag(cm).astype(np.float64)
    union = cm.sum(0) + cm.sum(1) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, np.nan)


def mean_iou(pred: np.ndarray, truth: np.ndarray, num_classes: int) -> float:
    """mIoU over the classes present in the prediction or the truth (as mmseg's nanmean)."""
    values = iou(pred, truth, num_classes)
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


@dataclass
class ClassChange:
    name: str
    before: int  # pixels of this class before the ablation
    after: int
    iou_before: float | None  # None without a true mask
    iou_after: float | None


def class_changes(before: np.ndarray, after: np.ndarray, classes: tuple[str, ...],
                  truth: np.ndarray | None = None) -> list[ClassChange]:
    """Per-class pixel counts (and IoU with a truth) before and after, for classes that occur."""
    k = len(classes)
    nb = np.bincount(before.ravel(), minlength=k)
    na = np.bincount(after.ravel(), minlength=k)
    ib = iou(before, truth, k) if truth is not None else None
    ia = iou(after, truth, k) if truth is not None else None
    present = np.flatnonzero((nb + na) > 0)
    return [ClassChange(classes[c], int(nb[c]), int(na[c]),
                        None if ib is None else float(ib[c]), None if ia is None else float(ia[c]))
            for c in present]
