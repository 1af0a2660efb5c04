"""Turn a training checkpoint into a release file: weights and meta only (mmseg's publish_model).

    python -m training.publish work_dirs/context/iter_6000.pth assets/demo/dmnet_r18-d8_context.pth

Drops the optimizer, scheduler, RNG and sampler states (what only `--resume` needs), keeps
`meta` (dataset_meta, preset, iteration, seed) and `state_dict` in mmseg 1.x's layout, writes the
file atomically and prints its size and sha256 (for the model card and `torch.hub`'s check).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dmnet.checkpoint import load_checkpoint
from dmnet.hub import sha256_of

from .checkpoints import load_training_checkpoint, save_atomic


def publish(src: Path, dst: Path) -> str:
    """Write the release file of training checkpoint `src` to `dst`; returns its sha256."""
    ckpt = load_training_checkpoint(src)
    missing = {"meta", "state_dict"} - set(ckpt)
    if missing:
        raise ValueError(f"{src} is not a training checkpoint of training.train: no "
                         f"{', '.join(sorted(missing))}")
    dst.parent.mkdir(parents=True, exist_ok=True)
    save_atomic({"meta": ckpt["meta"], "state_dict": ckpt["state_dict"]}, dst)
    load_checkpoint(dst)  # the release must load on its own, preset included
    return sha256_of(dst)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", type=Path, help="a checkpoint written by training.train")
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    digest = publish(args.checkpoint, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 2**20:.1f} MiB)\nsha256 {digest}")


if __name__ == "__main__":
    main()
