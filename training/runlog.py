"""What a user sees of a run: a tqdm bar (iteration, loss, lr, ETA), metrics.jsonl, TensorBoard."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm


def read_jsonl(path: Path) -> list[dict]:
    """The records of a metrics.jsonl; a last line cut short by a killed run is skipped."""
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


class RunLog:
    """tqdm progress bar, metrics.jsonl and (if installed) TensorBoard scalars, on rank 0."""

    def __init__(self, work_dir: Path, start: int, total: int, enabled: bool) -> None:
        self.enabled, self.path = enabled, work_dir / "metrics.jsonl"
        self.window: list[list[float]] = []
        self.tick = time.perf_counter()
        if not enabled:
            return
        if self.path.exists():  # resuming: drop what was logged after the checkpoint
            kept = [r for r in read_jsonl(self.path) if r["iter"] <= start]
            self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        self.bar = tqdm(total=total, initial=start, desc="train", dynamic_ncols=True)
        try:
            from torch.utils.tensorboard import SummaryWriter
            self.tb = SummaryWriter(str(work_dir / "tensorboard"))
        except ImportError:  # tensorboard is optional
            self.tb = None

    def _write(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb:
            for key, value in record.items():
                if key != "iter" and isinstance(value, float):
                    self.tb.add_scalar(key, value, record["iter"])

    def train(self, it: int, lr: float, values: list[float], batch: int, interval: int) -> None:
        if not self.enabled:
            return
        self.window.append(values)
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{values[0]:.4f}", lr=f"{lr:.2e}")
        if it % interval:
            return
        now = time.perf_counter()
        mean = np.mean(self.window, axis=0).tolist()
        self._write({"iter": it, "lr": lr, "loss": mean[0], "decode.loss_ce": mean[1],
                     "aux.loss_ce": mean[2], "decode.acc_seg": mean[3],
                     "img_per_s": len(self.window) * batch / (now - self.tick)})
        self.window, self.tick = [], now

    def val(self, it: int, m, buckets: dict | None) -> None:
        if self.enabled:
            self._write({"iter": it, "mIoU": m.mIoU, "mAcc": m.mAcc, "aAcc": m.aAcc,
                         **({"size_buckets": buckets} if buckets else {})})
            self.note(f"iter {it}: mIoU {m.mIoU:.2f}  mAcc {m.mAcc:.2f}  aAcc {m.aAcc:.2f}")
        self.tick = time.perf_counter()  # validation time is not training throughput

    def note(self, text: str) -> None:
        if self.enabled:
            (self.bar.write if hasattr(self, "bar") else print)(text)

    def close(self) -> None:
        if self.enabled:
            self.bar.close()
            if self.tb:
                self.tb.close()
