"""Training checkpoints in mmsegmentation 1.x's layout, written atomically, and resume.

A checkpoint is a plain dict that `torch.load(weights_only=True)` reads (so mmseg's `init_model`
under torch >= 2.6 and `dmnet.load_checkpoint` both accept it):
    meta: `dmnet.checkpoint_meta(model)`: dataset_meta (classes, palette, label_map,
          reduce_zero_label), preset (name), preset_config (the whole `Preset`, `--set` changes
          included); and iter, epoch, seed, time, experiment_name
    state_dict: model weights (no `module.` prefix)
    optimizer: SGD (momentum buffers) or AdamW (moments) state, param_groups
    param_schedulers: [PolyLR-like position: last_step = iter, base_values, eta_min, power, ...]
    rng: per rank, the torch / CUDA / numpy / python generator states
    sampler: seed and the number of samples each rank has consumed
    grad_scaler: the fp16 GradScaler's state (fp16 AMP runs only)
Files are `iter_<n>.pth`; `last_checkpoint` names the newest. Both are written to a temporary
file and renamed over the old one, so a run killed at any moment leaves complete files only.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dmnet.checkpoint import checkpoint_meta
from dmnet.model import DMNet


def save_atomic(obj: Any, path: Path) -> None:
    """torch.save to `path.tmp`, fsync, then rename over `path` (atomic on POSIX)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        if isinstance(obj, str):
            f.write(obj.encode())
        else:
            torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


def rng_state() -> dict[str, Any]:
    """This process's generator states, as tensors and plain values only."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(gauss)},
        "python": random.getstate(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached_gaussian"]))
    random.setstate(state["python"])


def training_checkpoint(model: DMNet, optimizer: torch.optim.Optimizer, it: int, lr: float,
                        seed: int, rngs: list[dict[str, Any]], samples_per_rank: int,
                        experiment: str) -> dict[str, Any]:
    s = model.preset.schedule
    return {
        "meta": {**checkpoint_meta(model), "iter": it, "epoch": 0, "seed": seed,
                 "time": time.strftime("%Y%m%d_%H%M%S"), "experiment_name": experiment},
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        # mmengine PolyLR's state: total_iters = end - begin - 1; last_step = iterations done
        "param_schedulers": [{"eta_min": s.lr_min, "power": s.power, "begin": 0,
                              "end": s.max_iters, "total_iters": s.max_iters - 1,
                              "by_epoch": False, "base_values": [s.lr], "last_step": it,
                              "_global_step": it, "_last_value": [lr], "verbose": False}],
        "rng": rngs,
        "sampler": {"seed": seed, "samples_per_rank": samples_per_rank, "world": len(rngs)},
    }


def write_checkpoint(work_dir: Path, ckpt: dict[str, Any]) -> Path:
    path = work_dir / f"iter_{ckpt['meta']['iter']}.pth"
    save_atomic(ckpt, path)
    save_atomic(path.name, work_dir / "last_checkpoint")
    return path


def last_checkpoint(work_dir: Path) -> Path | None:
    marker = work_dir / "last_checkpoint"
    return work_dir / marker.read_text().strip() if marker.is_file() else None


def load_training_checkpoint(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


def load_backbone_weights(backbone: nn.Module, path: str | Path) -> None:
    """An ImageNet ResNetV1c checkpoint (the `open-mmlab://resnet50_v1c` format: `state_dict`
    with `stem.*`, `layer*.*` and the classifier `fc.*`) into the backbone: every backbone
    weight must be there with its shape (the configs' `pretrained=`; mmseg only logs mismatches).
    open-mmlab://resnet{18,50,101}_v1c = https://download.openmmlab.com/pretrain/third_party/
    resnet18_v1c-b5776b93.pth, resnet50_v1c-2cccc1ad.pth, resnet101_v1c-e67eebb6.pth."""
    obj = torch.load(path, map_location="cpu", weights_only=True)
    sd = obj.get("state_dict", obj)
    sd = {k.removeprefix("module.").removeprefix("backbone."): v for k, v in sd.items()
          if not k.startswith("fc.")}
    missing, unexpected = backbone.load_state_dict(sd, strict=False)
    # as mmengine's loader: old BN checkpoints lack num_batches_tracked (it stays 0)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(f"{path} does not fit the backbone: {len(missing)} missing keys "
                         f"{missing[:8]}, {len(unexpected)} unexpected keys {unexpected[:8]}")
