"""Train DMNet with the recipe of mmsegmentation's configs (facts §3-§6), iteration based.

    python -m training.train dmnet_r18w32-d8_1xb8-6k_context-128x128 --work-dir work_dirs/context
    torchrun --nproc-per-node 4 -m training.train dmnet_r50-d8_4xb2-40k_cityscapes-512x1024 \
        --work-dir work_dirs/cs --data-root data/cityscapes --backbone-weights resnet50_v1c.pth
    python -m training.train PRESET --work-dir DIR --resume      # continue from DIR/last_checkpoint

SGD (lr, momentum 0.9, weight decay on every parameter; AdamW where the schedule says so, as the
demo preset's from-scratch run) with `poly_lr`; loss = cross-entropy of
the decode logits + 0.4 x that of the auxiliary logits, both upsampled to the label and averaged
over all pixels as mmseg does. Under torchrun: DistributedDataParallel (SyncBatchNorm on CUDA) with
gradient accumulation so that the global batch stays the config's (GPUs x images per GPU) on
fewer GPUs. Validation and an atomic checkpoint every `val_interval` iterations and at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from dmnet.model import DMNet, build_model
from dmnet.presets import Preset, Schedule, get_preset

from .checkpoints import (last_checkpoint, load_backbone_weights, load_training_checkpoint,
                          rng_state, set_rng_state, training_checkpoint, write_checkpoint)
from .data import build_dataset
from .evaluate import evaluate
from .loader import train_loader
from .runlog import RunLog
from .transforms import IGNORE_INDEX


@dataclass(frozen=True)
class RunOptions:
    """How to run (the `Preset` says what to train)."""

    work_dir: Path
    data_root: str | None = None  # the dataset's own folder; None: MultiScaleShapes on the fly
    resume: bool = False  # continue from work_dir/last_checkpoint
    batch_size: int | None = None  # global batch per optimizer step (default: gpus x per GPU)
    seed: int = 0
    workers: int = 2  # DataLoader processes per rank
    amp: str = "none"  # "bf16" or "fp16" autocast on CUDA
    log_interval: int = 50  # iterations per metrics.jsonl line
    val_limit: int | None = None  # validate on the first N images only
    backbone_weights: str | None = None  # ImageNet ResNetV1c checkpoint (open-mmlab format)


def poly_lr(it: int, s: Schedule) -> float:
    """mmengine PolyLR(eta_min, power, end=max_iters): the lr used at 0-based iteration `it`."""
    return (s.lr - s.lr_min) * (1 - it / max(s.max_iters - 1, 1)) ** s.power + s.lr_min


def seg_loss(logits: Tensor, label: Tensor, align_corners: bool) -> Tensor:
    """mmseg CrossEntropyLoss (avg_non_ignore=False): logits bilinearly resized to the label, CE
    summed over non-ignored pixels and divided by ALL pixels, ignored ones included."""
    logits = F.interpolate(logits, size=label.shape[-2:], mode="bilinear",
                           align_corners=align_corners)
    loss = F.cross_entropy(logits, label, ignore_index=IGNORE_INDEX, reduction="none")
    return loss.sum() / label.numel()


def seg_accuracy(logits: Tensor, label: Tensor, align_corners: bool) -> Tensor:
    """mmseg `acc_seg`: percent of non-ignored pixels whose argmax is right."""
    pred = F.interpolate(logits, size=label.shape[-2:], mode="bilinear",
                         align_corners=align_corners).argmax(1)
    keep = label != IGNORE_INDEX
    return (pred[keep] == label[keep]).float().mean().nan_to_num() * 100


class TrainStep(nn.Module):
    """So that DistributedDataParallel's forward is `forward_train` (decode, aux logits)."""

    def __init__(self, model: DMNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.model.forward_train(x)


def batch_layout(s: Schedule, global_batch: int | None, world: int) -> tuple[int, int]:
    """(images per forward on each rank, forwards per optimizer step) keeping the global batch."""
    total = global_batch or s.batch_per_gpu * s.gpus
    micro = min(s.batch_per_gpu, max(total // world, 1))
    if total % (micro * world):
        raise ValueError(f"global batch {total} is not a multiple of {world} processes x "
                         f"{micro} images; choose --batch-size accordingly")
    return micro, total // (micro * world)


def setup_distributed() -> tuple[int, int, torch.device]:
    """(rank, world size, device) from torchrun's environment; a single process without it."""
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{os.environ.get('LOCAL_RANK', 0)}" if cuda else "cpu")
    if world > 1 and not dist.is_initialized():
        if cuda:
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if cuda else "gloo")
    if world > 1 and not cuda:  # share the CPU cores between the processes
        torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // world))
    return rank, world, device


def build(preset: Preset, opts: RunOptions, rank: int, world: int,
          device: torch.device) -> tuple[DMNet, torch.optim.Optimizer]:
    """The seeded model (mmseg init, optional ImageNet backbone) and its optimizer."""
    torch.manual_seed(opts.seed + rank)
    np.random.seed(opts.seed + rank)
    random.seed(opts.seed + rank)
    model = build_model(preset).train()
    if opts.backbone_weights:
        load_backbone_weights(model.backbone, opts.backbone_weights)
    if world > 1 and device.type == "cuda":  # SyncBatchNorm needs CUDA; CPU ranks keep own BN
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    s = preset.schedule
    if s.optimizer == "sgd":  # weight decay on every parameter, as mmseg
        optimizer = torch.optim.SGD(model.parameters(), lr=s.lr, momentum=s.momentum,
                                    weight_decay=s.weight_decay)
    elif s.optimizer == "adamw":
        optimizer = torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    else:
        raise ValueError(f"schedule.optimizer must be 'sgd' or 'adamw', got {s.optimizer!r}")
    for group in optimizer.param_groups:
        group["initial_lr"] = s.lr  # as mmengine's schedulers record it
    return model, optimizer


def resume(work_dir: Path, model: DMNet, optimizer: torch.optim.Optimizer, rank: int,
           world: int) -> tuple[int, Path, dict | None]:
    """Restore model, optimizer and this rank's generators; (iteration reached, file, fp16
    grad-scaler state)."""
    path = last_checkpoint(work_dir)
    if path is None:
        raise FileNotFoundError(f"--resume: no {work_dir}/last_checkpoint to continue from")
    ckpt = load_training_checkpoint(path)
    if len(ckpt["rng"]) != world:
        raise ValueError(f"{path} was written by {len(ckpt['rng'])} processes; resume with as "
                         f"many (got {world}) to continue the same data stream")
    model.load_state_dict(ckpt["state_dict"])
    optimizer.load_state_dict(ckpt["optimizer"])
    set_rng_state(ckpt["rng"][rank])
    return ckpt["meta"]["iter"], path, ckpt.get("grad_scaler")


def run(preset: Preset, opts: RunOptions) -> DMNet:
    """Train `preset` as `opts` says; returns the trained model (this rank's copy)."""
    rank, world, device = setup_distributed()
    s, work_dir = preset.schedule, Path(opts.work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    micro, accum = batch_layout(s, opts.batch_size, world)
    model, optimizer = build(preset, opts, rank, world, device)
    start, resumed, scaler_state = (resume(work_dir, model, optimizer, rank, world)
                                    if opts.resume else (0, None, None))
    step = TrainStep(model)
    if world > 1:
        step = nn.parallel.DistributedDataParallel(
            step, device_ids=[device] if device.type == "cuda" else None)
    train_set = build_dataset(preset.dataset, "train", opts.data_root)
    val_set = build_dataset(preset.dataset, "val", opts.data_root)
    batches = train_loader(train_set, preset, micro, opts.seed, rank, world,
                           start=start * accum * micro, workers=opts.workers)
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(opts.amp)
    amp = amp if device.type == "cuda" else None
    scaler = torch.amp.GradScaler(enabled=amp is torch.float16)
    if scaler_state:
        scaler.load_state_dict(scaler_state)
    log = RunLog(work_dir, start, s.max_iters, enabled=rank == 0)
    log.note(f"{preset.name}: {world} process(es) x {micro} images x {accum} accumulation = "
             f"global batch {micro * accum * world}, {s.max_iters} iterations on {device}"
             f"{', SyncBN' if world > 1 and device.type == 'cuda' else ''}"
             f"{f', AMP {opts.amp}' if amp else ''}"
             f"{f', resumed from {resumed}' if resumed else ''}")

    for it in range(start, s.max_iters):
        lr = poly_lr(it, s)
        for group in optimizer.param_groups:
            group["lr"] = lr
        sums = torch.zeros(4, device=device)  # loss, decode loss, aux loss, decode acc
        for k in range(accum):  # DDP all-reduces the gradients on the last forward only
            x, y = (t.to(device, non_blocking=True) for t in next(batches))
            with contextlib.nullcontext() if world == 1 or k == accum - 1 else step.no_sync():
                with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                    logits, aux_logits = step(x)
                decode = seg_loss(logits.float(), y, preset.align_corners)
                aux = seg_loss(aux_logits.float(), y, preset.align_corners)
                loss = decode + s.aux_weight * aux
                scaler.scale(loss / accum).backward()
            acc = seg_accuracy(logits.detach().float(), y, preset.align_corners)
            sums += torch.stack([loss.detach(), decode.detach(), aux.detach(), acc]) / accum
        if world > 1:
            dist.all_reduce(sums)  # every rank sees the same loss: they stop together
            sums /= world
        if not torch.isfinite(sums[0]):
            raise FloatingPointError(f"loss is {sums[0].item()} at iteration {it + 1}; the last "
                                     f"good checkpoint is {last_checkpoint(work_dir)}")
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        log.train(it + 1, lr, sums.tolist(), micro * accum * world, opts.log_interval)

        if (it + 1) % s.val_interval == 0 or it + 1 == s.max_iters:
            model.eval()
            log.val(it + 1, *evaluate(model, val_set, limit=opts.val_limit, rank=rank,
                                      world=world))
            model.train()
            rngs = [rng_state()]
            if world > 1:
                rngs = [None] * world
                dist.all_gather_object(rngs, rng_state())
            if rank == 0:
                ckpt = training_checkpoint(model, optimizer, it + 1, lr, opts.seed, rngs,
                                           (it + 1) * accum * micro, work_dir.name)
                if scaler.is_enabled():
                    ckpt["grad_scaler"] = scaler.state_dict()
                log.note(f"saved {write_checkpoint(work_dir, ckpt)}")
            if world > 1:
                dist.barrier()
    log.close()
    return model


def with_overrides(preset: Preset, pairs: list[str]) -> Preset:
    """`--set key=value` on the preset (`schedule.key` for the schedule); tuples as `512,512`.
    Changed architecture/data fields are recorded in the name, as `name+key=value`."""
    fields, schedule, changed = {}, {}, []
    for pair in pairs:
        key, _, text = pair.partition("=")
        target, obj = (schedule, preset.schedule) if key.startswith("schedule.") else (
            fields, preset)
        name = key.removeprefix("schedule.")
        if not hasattr(obj, name) or not text:
            raise ValueError(f"--set {pair}: expected key=value with key one of "
                             f"{[f.name for f in dataclasses.fields(Preset)]} or schedule.<field>")
        current = getattr(obj, name)
        if isinstance(current, bool):
            value = text.lower() in ("1", "true", "yes")
        elif isinstance(current, tuple) or (current is None and "," in text):
            value = tuple(type(current[0] if current else 0)(v) for v in text.split(","))
        elif current is None:  # e.g. v0_name; "none" keeps None
            value = None if text.lower() == "none" else text
        else:
            value = type(current)(text)
        target[name] = value
        if target is fields:
            changed.append(f"{name}={text}")
    preset = dataclasses.replace(preset, schedule=dataclasses.replace(preset.schedule, **schedule),
                                 **fields)
    if changed:
        preset = dataclasses.replace(preset, name=f"{preset.name}+{','.join(changed)}")
    return preset


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train DMNet (mmsegmentation's recipe).")
    parser.add_argument("preset", help="a dmnet.PRESETS name (or v0.x alias)")
    parser.add_argument("--work-dir", type=Path, required=True)
    parser.add_argument("--data-root", help="the dataset's folder, e.g. data/cityscapes")
    parser.add_argument("--max-iters", type=int, help="shorter schedule (the poly lr follows)")
    parser.add_argument("--batch-size", type=int, help="global batch per optimizer step")
    parser.add_argument("--resume", action="store_true", help="continue from the work dir")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="change a preset field, e.g. crop_size=256,256 schedule.lr=0.02")
    parser.add_argument("--backbone-weights", help="ImageNet ResNetV1c checkpoint (.pth)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--amp", choices=["none", "bf16", "fp16"], default="none")
    parser.add_argument("--log-interval", type=int, default=50)
    parser.add_argument("--val-limit", type=int, help="validate on the first N images only")
    args = parser.parse_args(argv)
    preset = with_overrides(get_preset(args.preset), args.set)
    if args.max_iters:
        s = dataclasses.replace(preset.schedule, max_iters=args.max_iters,
                                val_interval=min(preset.schedule.val_interval, args.max_iters))
        preset = dataclasses.replace(preset, schedule=s)
    run(preset, RunOptions(args.work_dir, args.data_root, args.resume, args.batch_size, args.seed,
                           args.workers, args.amp, args.log_interval, args.val_limit,
                           args.backbone_weights))
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
