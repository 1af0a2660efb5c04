"""The training data stream: an infinite shuffled sampler whose position is the iteration.

Global sample g (0, 1, 2, ...) is index `perm_e[g % n]` of epoch `e = g // n`'s permutation (seeded
by (seed, e)); rank r of W takes g = r, r + W, r + 2W, ... (mmengine InfiniteSampler's layout).
Each sample is augmented with a generator seeded by (seed, g), so the stream depends only on the
seed and the number of samples already consumed: resuming at iteration t restarts it exactly.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from dmnet.presets import Preset

from .transforms import train_transform


class InfiniteSampler(Sampler):
    """Yields `(index, g)` forever for this rank, starting at its `start`-th sample."""

    def __init__(self, size: int, seed: int, rank: int = 0, world: int = 1, start: int = 0):
        self.size, self.seed, self.rank, self.world, self.start = size, seed, rank, world, start

    def __iter__(self) -> Iterator[tuple[int, int]]:
        k, epoch, perm = self.start, -1, None
        while True:
            g = k * self.world + self.rank
            if g // self.size != epoch:
                epoch = g // self.size
                perm = torch.randperm(self.size, generator=torch.Generator().manual_seed(
                    self.seed * 100_003 + epoch)).tolist()
            yield perm[g % self.size], g
            k += 1


class Augmented(Dataset):
    """A dataset of `(image, label)` arrays seen through the training recipe."""

    def __init__(self, data: Dataset, preset: Preset, seed: int) -> None:
        self.data, self.preset, self.seed = data, preset, seed

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, g = key
        image, label = self.data[index]
        return train_transform(image, label, self.preset, np.random.default_rng([self.seed, g]))


def train_loader(data: Dataset, preset: Preset, batch: int, seed: int, rank: int, world: int,
                 start: int, workers: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of (normalized (B, 3, ch, cw), labels (B, ch, cw)) from this rank's `start`-th
    sample on."""
    sampler = InfiniteSampler(len(data), seed, rank, world, start)
    loader = DataLoader(Augmented(data, preset, seed), batch_size=batch, sampler=sampler,
                        num_workers=workers, persistent_workers=workers > 0,
                        pin_memory=torch.cuda.is_available(), drop_last=True,
                        generator=torch.Generator().manual_seed(seed))  # keep off the global RNG
    return iter(loader)
