"""PatternMatch: a pattern's class is its size and whether it copies the picture's layout or its
negative; each layout lies on the pooling bins of its size."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dmnet.presets import PRESETS
from training.data import PatternMatch, SegFolder
from training.data.patterns import (CELLS, CLASSES, GRIDS, LAYOUT_AMPLITUDE, SIZE, TILE,
                                    bin_owner, class_id, compose, plaid, render_patterns)
from training.data.shapes import export

PRESET = PRESETS["dmnet_r18w32-d8_1xb8-6k_patterns-128x128"]


def cell_values(image: np.ndarray, channel: int) -> np.ndarray:
    """(CELLS, CELLS) signs of a channel against mid grey, read at each feature cell's centre."""
    centres = np.arange(CELLS) * TILE + TILE // 2
    return np.sign(image[centres[:, None], centres[None, :], channel].astype(float) - 128)


def members(k: int) -> torch.Tensor:
    """(cell, bin) booleans: which of the k bins torch's adaptive pooling puts each of the 16
    feature cells of an axis in."""
    one_hot = torch.eye(CELLS).view(CELLS, 1, 1, CELLS)  # cell c lit, along the width
    return F.adaptive_avg_pool2d(one_hot, (1, k))[:, 0, 0] > 0


@pytest.mark.parametrize("k", GRIDS)
def test_bin_owner_follows_torch_adaptive_pooling(k):
    bins = members(k)
    expected = np.where(bins.sum(1) == 1, bins.int().argmax(1), -1)
    assert np.array_equal(bin_owner(k), expected)
    assert (bin_owner(k) == -1).sum() == k - 1  # 16 is no multiple of 3, 5 or 7


@pytest.mark.parametrize("seed", range(5))
def test_pooled_to_its_size_each_channel_is_exactly_its_layout(seed):
    image, layouts = plaid(np.random.default_rng(seed))
    cells = F.avg_pool2d(torch.from_numpy(image - 128).permute(2, 0, 1)[None], TILE)  # 16 x 16
    for channel, (k, layout) in enumerate(zip(GRIDS, layouts)):
        pooled = F.adaptive_avg_pool2d(cells[:, channel:channel + 1], k)[0, 0].numpy()
        owner, bins = bin_owner(k), members(k)
        share = np.array([(owner == i).sum() / bins[:, i].sum().item() for i in range(k)])
        # each bin: its own tile over its own share, mid grey elsewhere: no neighbour's tile
        np.testing.assert_allclose(pooled, LAYOUT_AMPLITUDE * layout * np.outer(share, share),
                                   rtol=1e-5)


def test_scenes_are_128_px_only_and_the_preset_has_their_classes():
    # determinism and its own stream: tests/training/test_data.py, for every synthetic dataset
    assert PRESET.classes == CLASSES
    with pytest.raises(ValueError, match="128 px"):
        render_patterns(0, 0, 64)


def test_each_pattern_copies_its_layout_or_its_negative_as_its_class_says():
    seen = set()
    for i in range(40):
        s = render_patterns(0, i)
        _, layouts, patterns = compose(np.random.default_rng([0, i, 3]))  # where they lie
        covered = np.zeros((CELLS, CELLS), bool)
        for number, p in enumerate(patterns, start=1):
            k, ty, tx = p.k, p.top // TILE, p.left // TILE
            assert p.top % TILE == 0 and p.left % TILE == 0  # tiles are feature cells
            covered[ty:ty + k, tx:tx + k] = True
            channel = GRIDS.index(k)
            signs = cell_values(s.image, channel)[ty:ty + k, tx:tx + k]
            assert np.array_equal(signs, layouts[channel] * (1 if p.matches else -1))
            box = s.image[p.top:p.top + k * TILE, p.left:p.left + k * TILE].astype(float)
            others = [c for c in range(3) if c != channel]
            assert np.abs(np.median(box[..., others], axis=(0, 1)) - 128).max() <= 2  # grey
            cls = class_id(k, p.matches)
            c0 = (k - 3) // 2  # its central 3x3 tiles carry the class, on their lit tiles only
            lit = np.kron(signs[c0:c0 + 3, c0:c0 + 3] > 0, np.ones((TILE, TILE), bool))
            y, x = p.top + c0 * TILE, p.left + c0 * TILE
            assert np.array_equal(s.instances[y:y + 3 * TILE, x:x + 3 * TILE] == number, lit)
            assert (s.instances == number).sum() == lit.sum()
            assert (s.label[s.instances == number] == cls).all()
            if lit.any():  # a centre may have no lit tile
                seen.add(CLASSES[cls])
        assert np.array_equal(s.label > 0, s.instances > 0)  # all else is background
        for channel, k in enumerate(GRIDS):  # the plaid shows each layout where no pattern lies
            owner = bin_owner(k)
            own = (owner[:, None] >= 0) & (owner[None, :] >= 0) & ~covered
            tiles = layouts[channel][np.maximum(owner, 0)[:, None], np.maximum(owner, 0)[None, :]]
            assert np.array_equal(cell_values(s.image, channel)[own], tiles[own])
    assert seen == set(CLASSES[1:])


def test_the_recipe_keeps_tiles_on_the_feature_grid_and_channels_apart():
    assert PRESET.ratio_range == (1.0, 1.0)
    assert PRESET.crop_size == (SIZE, SIZE) and PRESET.test_scale == (SIZE, SIZE)
    assert SIZE // 8 == CELLS and not PRESET.photometric  # no hue rotation mixing the layouts


def test_export_as_a_folder_dataset(tmp_path):
    export(tmp_path, 2, 2, SIZE, dataset="pattern_match")
    folder = SegFolder(tmp_path, "folder", "val")
    np.testing.assert_array_equal(folder[1][1], PatternMatch("val", 2)[1][1])
    assert folder.classes == CLASSES
