"""A real run killed with SIGKILL mid-save, then resumed; and a real 2-process gloo DDP run."""

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from dmnet import PRESETS
from dmnet.checkpoint import load_checkpoint
from dmnet.model import DMNet
from dmnet.presets import Schedule
from training.checkpoints import last_checkpoint
from training.train import RunOptions, run, with_overrides

from ..conftest import tiny_preset

ROOT = Path(__file__).resolve().parents[2]
SMALL = "dmnet_r18w32-d8_1xb8-7k_shapes-128x128"
# Wide enough that a checkpoint (weights + momentum, ~6 MB) takes a while to write.
SETS = ["stem_channels=16", "base_channels=16", "head_channels=32", "aux_channels=8",
        "crop_size=32,32", "test_scale=32,32", "schedule.val_interval=1"]
ITERS = 8


def losses(work_dir: Path) -> dict[int, float]:
    lines = (work_dir / "metrics.jsonl").read_text().splitlines()
    return {r["iter"]: r["loss"] for r in map(json.loads, lines) if "loss" in r}


def test_sigkill_mid_save_leaves_a_loadable_checkpoint_and_resume_finishes_the_run(tmp_path):
    work = tmp_path / "killed"
    cmd = [sys.executable, "-m", "training.train", SMALL, "--work-dir", str(work),
           "--max-iters", str(ITERS), "--batch-size", "2", "--workers", "0",
           "--log-interval", "1", "--val-limit", "1"] + [a for s in SETS for a in ("--set", s)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    caught = False
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        # kill the moment a checkpoint is being written, once one complete checkpoint exists
        if (work / "last_checkpoint").exists() and list(work.glob("*.pth.tmp")):
            proc.send_signal(signal.SIGKILL)
            caught = True
            break
        time.sleep(0.0005)
    proc.wait()
    assert caught and proc.returncode == -signal.SIGKILL, "the run ended before a save was caught"

    last = last_checkpoint(work)
    ckpt = torch.load(last, weights_only=True)  # complete, and safe to load
    done = ckpt["meta"]["iter"]
    assert 1 <= done < ITERS
    for path in work.glob("iter_*.pth"):  # no visible file is ever partial
        torch.load(path, weights_only=True)
    load_checkpoint(last)

    # --resume continues the killed run to the same losses as an uninterrupted one.
    preset = with_overrides(PRESETS[SMALL], SETS)
    preset = dataclasses.replace(preset, schedule=dataclasses.replace(preset.schedule,
                                                                      max_iters=ITERS))
    opts = dict(batch_size=2, workers=0, log_interval=1, val_limit=1)
    run(preset, RunOptions(work, resume=True, **opts))
    run(preset, RunOptions(tmp_path / "reference", **opts))
    assert losses(work) == pytest.approx(losses(tmp_path / "reference"), rel=1e-5)
    assert ckpt["meta"]["iter"] == done and len(losses(work)) == ITERS


def _ddp_worker(rank: int, world: int, port: int, work_dir: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    # global batch 8 = 4 "GPUs" x 2: with 2 processes, 2 forwards accumulated per step
    preset = dataclasses.replace(tiny_preset(crop_size=(32, 32), test_scale=(32, 32)),
                                 schedule=Schedule(3, 3, 2, 4))
    model = run(preset, RunOptions(Path(work_dir), workers=0, log_interval=1, val_limit=4))
    torch.save(model.state_dict(), Path(work_dir) / f"rank{rank}.pt")
    torch.distributed.destroy_process_group()


def test_two_process_gloo_ddp_trains_and_ranks_stay_in_sync(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    a, b = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    # Parameters are identical (DDP averages gradients). On CPU there is no SyncBatchNorm: BN
    # running statistics are rank 0's, broadcast at each forward, so they may differ after it.
    params = {name for name, _ in DMNet(tiny_preset()).named_parameters()}
    assert params < set(a)
    for key in params:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    ckpt = torch.load(tmp_path / "iter_3.pth", weights_only=True)
    assert len(ckpt["rng"]) == 2 and ckpt["sampler"]["samples_per_rank"] == 3 * 2 * 2
    assert not torch.equal(ckpt["state_dict"]["decode_head.conv_seg.weight"],
                           torch.zeros_like(ckpt["state_dict"]["decode_head.conv_seg.weight"]))
    assert len(losses(tmp_path)) == 3
