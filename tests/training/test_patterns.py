"""PatternMatch: a pattern's class is its size and whether it copies the picture's layout or its
negative."""

import numpy as np
import pytest
from skimage import measure

from dmnet.presets import PRESETS
from training.data import PatternMatch, SegFolder
from training.data.patterns import (CLASSES, DARK, GRIDS, LAYOUT_AMPLITUDE, SIZE, TILE, class_id,
                                    render_patterns)
from training.data.shapes import export

PRESET = PRESETS["dmnet_r18w32-d8_1xb8-6k_patterns-128x128"]


def pattern_signs(image: np.ndarray, top: int, left: int, k: int, channel: int) -> np.ndarray:
    """The +/- signs of a k x k pattern's tiles in its channel (read at the tile centres)."""
    centres = np.arange(k) * TILE + TILE // 2
    values = image[top + centres[:, None], left + centres[None, :], channel].astype(float)
    return np.sign(values - 128)


def pattern_pixels(image: np.ndarray) -> np.ndarray:
    """Where patterns lie: two dark channels (DARK, against the plaid's 128 - LAYOUT_AMPLITUDE;
    the threshold is halfway, 3.6 sigma of the noise from both)."""
    return (image < (DARK + 128 - LAYOUT_AMPLITUDE) / 2).sum(-1) >= 2


def layout_of(image: np.ndarray, k: int, channel: int) -> np.ndarray:
    """The picture's k x k layout in `channel`: each tile's sign over its pixels that no pattern
    covers; 0 where patterns cover (nearly) the whole tile."""
    visible = ~pattern_pixels(image)
    edges = np.minimum(np.arange(SIZE) * k // SIZE, k - 1)
    layout = np.zeros((k, k))
    for i in range(k):
        for j in range(k):
            tile = visible & (edges[:, None] == i) & (edges[None, :] == j)
            if tile.sum() >= 20:  # not a stray noisy pixel of a pattern
                layout[i, j] = np.sign(np.median(image[..., channel][tile].astype(float)) - 128)
    return layout


def test_scenes_are_128_px_only_and_the_preset_has_their_classes():
    # determinism and its own stream: tests/training/test_data.py, for every synthetic dataset
    assert PRESET.classes == CLASSES
    with pytest.raises(ValueError, match="128 px"):
        render_patterns(0, 0, 64)


def test_each_pattern_copies_its_layout_or_its_negative_as_its_class_says():
    seen = set()
    for i in range(40):
        s = render_patterns(0, i)
        patterns = measure.label(pattern_pixels(s.image))
        for number in np.unique(s.instances)[1:]:
            ys, xs = np.nonzero(s.instances == number)
            cls = int(np.unique(s.label[s.instances == number])[0])
            name = CLASSES[cls]
            k = int(name[0])
            channel = GRIDS.index(k)
            py, px = np.nonzero(patterns == patterns[ys[0], xs[0]])  # the pattern it lies in
            top, left = py.min(), px.min()
            assert py.max() - top + 1 == px.max() - left + 1 == k * TILE
            assert top % TILE == 0 and left % TILE == 0  # tiles are feature cells
            pattern = pattern_signs(s.image, top, left, k, channel)
            core = slice((k - 3) // 2, (k + 3) // 2)  # its central 3x3 tiles carry the class ...
            lit = np.kron(pattern[core, core] > 0, np.ones((TILE, TILE), bool))
            c0 = (k - 3) // 2 * TILE
            region = s.instances[top + c0:top + c0 + 3 * TILE, left + c0:left + c0 + 3 * TILE]
            assert np.array_equal(region == number, lit)  # ... on their lit tiles only
            assert (s.instances == number).sum() == lit.sum()
            layout = layout_of(s.image, k, channel)
            shown = layout != 0
            if name.endswith("matches"):
                assert cls == class_id(k, True) and not ((pattern != layout) & shown).any()
            else:
                assert cls == class_id(k, False) and not ((pattern != -layout) & shown).any()
            seen.add(name)
    assert seen == set(CLASSES[1:])


def test_the_recipe_keeps_tiles_on_the_feature_grid():
    assert PRESET.ratio_range == (1.0, 1.0)
    assert PRESET.crop_size == (SIZE, SIZE) and PRESET.test_scale == (SIZE, SIZE)


def test_export_as_a_folder_dataset(tmp_path):
    export(tmp_path, 2, 2, SIZE, dataset="pattern_match")
    folder = SegFolder(tmp_path, "folder", "val")
    np.testing.assert_array_equal(folder[1][1], PatternMatch("val", 2)[1][1])
    assert folder.classes == CLASSES
