"""mIoU / mAcc / aAcc like mmsegmentation's IoUMetric, in whole, slide and multi-scale+flip modes.

    python -m training.evaluate work_dirs/context/iter_6000.pth              # ContextShapes
    python -m training.evaluate CKPT --data-root data/cityscapes [--mode slide] [--aug-test]

Prints a per-class table and writes the numbers as JSON (default: next to the checkpoint).
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor
from torch.utils.data import Dataset
from tqdm import tqdm

from dmnet import TTA_RATIOS
from dmnet.checkpoint import load_checkpoint
from dmnet.fast import keep_freed_memory, optimize
from dmnet.inference import segment_image
from dmnet.model import DMNet

from .data import MultiScaleShapes, build_dataset
from .data.shapes import SizeBuckets
from .transforms import IGNORE_INDEX


def confusion_matrix(pred: Tensor, label: Tensor, num_classes: int) -> Tensor:
    """(C, C) int64 counts of (label, prediction) over non-ignored pixels."""
    keep = label != IGNORE_INDEX
    idx = label[keep].long() * num_classes + pred[keep].long()
    return torch.bincount(idx, minlength=num_classes ** 2).reshape(num_classes, num_classes)


@dataclass
class Metrics:
    """Percentages, as mmseg prints them. Classes absent from both labels and predictions have
    NaN IoU (and classes absent from the labels NaN Acc); the means skip NaNs (np.nanmean)."""

    aAcc: float
    mIoU: float
    mAcc: float
    IoU: dict[str, float]
    Acc: dict[str, float]


def summarize(cm: Tensor, classes: tuple[str, ...]) -> Metrics:
    cm = cm.double()
    inter, area_label, area_pred = cm.diag(), cm.sum(1), cm.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = (inter / (area_label + area_pred - inter)).numpy() * 100
        acc = (inter / area_label).numpy() * 100
    aacc = float(inter.sum() / area_label.sum() * 100) if area_label.sum() > 0 else math.nan
    return Metrics(aacc, _nanmean(iou), _nanmean(acc), dict(zip(classes, iou.tolist())),
                   dict(zip(classes, acc.tolist())))


def _nanmean(v: np.ndarray) -> float:
    return float(np.nanmean(v)) if not np.isnan(v).all() else math.nan


@torch.inference_mode()
def evaluate(model: DMNet, data: Dataset, mode: str | None = None, aug_test: bool = False,
             limit: int | None = None, rank: int = 0, world: int = 1,
             progress: bool = False) -> tuple[Metrics, dict | None]:
    """Metrics of `model` (eval mode) on `data`, sharded over ranks and all-reduced.

    Each image goes through mmseg's test pipeline (`dmnet.segment_image`: keep-ratio Resize to the
    preset's test scale, or with --aug-test the dmnet.TTA_RATIOS of the original image + flip as
    mmseg 1.x's TTA; scores resized back to the label's size) and is argmaxed. On
    MultiScaleShapes or ContextShapes, also returns per-object-size metrics (`SizeBuckets`).
    """
    preset = model.preset
    n = min(len(data), limit or len(data))
    cm = torch.zeros(preset.num_classes, preset.num_classes, dtype=torch.int64)
    buckets = SizeBuckets() if isinstance(data, MultiScaleShapes) else None
    for i in tqdm(range(rank, n, world), disable=not progress, desc="evaluate", leave=False):
        sample = data.sample(i) if buckets else None
        image, label = (sample.image, sample.label) if sample else data[i]
        scores = segment_image(model, image, mode, TTA_RATIOS if aug_test else None, flip=aug_test)
        pred = scores.argmax(0).cpu()
        cm += confusion_matrix(pred, torch.from_numpy(label), preset.num_classes)
        if buckets:
            buckets.update(pred.numpy(), sample)
    if world > 1:
        dist.all_reduce(cm)
        if buckets:
            stats = torch.from_numpy(np.stack(list(buckets.stats.values())))
            dist.all_reduce(stats)
            buckets.stats = dict(zip(buckets.stats, stats.numpy()))
    return summarize(cm, preset.classes), buckets.summary() if buckets else None


def format_table(m: Metrics, size_buckets: dict | None = None) -> str:
    width = max(12, *(len(c) for c in m.IoU))
    lines = [f"{'class':<{width}}  {'IoU':>6}  {'Acc':>6}"]
    lines += [f"{c:<{width}}  {m.IoU[c]:6.2f}  {m.Acc[c]:6.2f}" for c in m.IoU]
    lines.append(f"\naAcc {m.aAcc:.2f}   mIoU {m.mIoU:.2f}   mAcc {m.mAcc:.2f}")
    if size_buckets:
        lines.append("\nobject size   objects  pixel acc  recognised")
        lines += [f"{b:<12}  {s['objects']:>7}  {s['pixel_acc']:9.2f}  "
                  f"{s['objects_recognised']:10.2f}" for b, s in size_buckets.items()]
    return "\n".join(lines)


def checkpoint_arguments(parser: argparse.ArgumentParser, out_suffix: str) -> None:
    """The arguments of the command lines that read a checkpoint and its dataset (this one,
    `training.ablation`, `app.roles`): `checkpoint_and_data` takes them."""
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--data-root", help="the dataset's folder (none: a synthetic dataset "
                                            "generated on the fly)")
    parser.add_argument("--split", default="val")
    parser.add_argument("--limit", type=int, help="the first N images only")
    parser.add_argument("--out", type=Path, help=f"JSON file (default: CHECKPOINT{out_suffix})")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")


def checkpoint_and_data(checkpoint: Path, data_root: str | None, split: str,
                        device: str) -> tuple[DMNet, Dataset]:
    """A checkpoint's model and the `split` of its preset's dataset (the CLIs' shared start)."""
    model = load_checkpoint(checkpoint, map_location=device)
    p = model.preset
    return model, build_dataset(p.dataset, split, data_root)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Evaluate a DMNet checkpoint (mIoU, mAcc, aAcc).")
    checkpoint_arguments(parser, ".eval.json")
    parser.add_argument("--mode", choices=["whole", "slide"], help="default: the preset's")
    parser.add_argument("--aug-test", action="store_true", help="multi-scale (0.5-1.75) + flip")
    parser.add_argument("--compile", action="store_true",
                        help="optimize(model, compile=True): the first image of each size "
                             "compiles for minutes, then, on a CPU, F(5x5) Winograd with fused "
                             "transforms (a 769x769 R-50 window at ~0.57x of the plain model's "
                             "time, 0.65x without); for long runs of one size, as slide windows")
    args = parser.parse_args(argv)
    keep_freed_memory()  # large activations reused, not page-faulted afresh per image

    model, data = checkpoint_and_data(args.checkpoint, args.data_root, args.split, args.device)
    p = model.preset
    # Inference copy (BN folded, Winograd convs on CPU: ~30% faster for, same
    # predictions to float rounding; tests/dmnet/test_fast.py, test_winograd.py).
    metrics, buckets = evaluate(optimize(model, compile=args.compile), data, args.mode,
                                args.aug_test, args.limit, progress=True)
    print(f"{p.name} on {len(data) if not args.limit else args.limit} {args.split} images, "
          f"mode {args.mode or p.test_mode}{' + ms/flip' if args.aug_test else ''}\n")
    print(format_table(metrics, buckets))
    out = args.out or args.checkpoint.with_suffix(".eval.json")
    out.write_text(json.dumps({"checkpoint": str(args.checkpoint), "preset": p.name,
                               "split": args.split, "mode": args.mode or p.test_mode,
                               "aug_test": args.aug_test, **asdict(metrics),
                               "size_buckets": buckets}, indent=1))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
