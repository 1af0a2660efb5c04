"""PatternMatch: a pattern's class is its size and whether it copies the picture's layout or its
negative."""

import numpy as np
import pytest

from dmnet.presets import PRESETS
from training.data import PatternMatch, SegFolder
from training.data.patterns import CLASSES, GRIDS, SIZE, TILE, class_id, render_patterns
from training.data.shapes import export

PRESET = PRESETS["dmnet_r18w32-d8_1xb8-6k_patterns-128x128"]


def pattern_signs(image: np.ndarray, top: int, left: int, k: int, channel: int) -> np.ndarray:
    """The +/- signs of a k x k pattern's tiles in its channel (read at the tile centres)."""
    centres = np.arange(k) * TILE + TILE // 2
    values = image[top + centres[:, None], left + centres[None, :], channel].astype(float)
    return np.sign(values - 128)


def layout_of(image: np.ndarray, k: int, channel: int) -> np.ndarray:
    """The picture's k x k layout in `channel`: each tile's sign over its pixels that no pattern
    covers (a pattern's other two channels are dark); 0 where patterns cover the whole tile."""
    visible = (image < 60).sum(-1) < 2
    edges = np.minimum(np.arange(SIZE) * k // SIZE, k - 1)
    layout = np.zeros((k, k))
    for i in range(k):
        for j in range(k):
            tile = visible & (edges[:, None] == i) & (edges[None, :] == j)
            if tile.any():
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
        for number in np.unique(s.instances)[1:]:
            ys, xs = np.nonzero(s.instances == number)
            cls = int(np.unique(s.label[s.instances == number])[0])
            name = CLASSES[cls]
            k = int(name[0])
            channel = GRIDS.index(k)
            assert ys.max() - ys.min() + 1 == xs.max() - xs.min() + 1 == 3 * TILE
            top, left = ys.min() - (k - 3) // 2 * TILE, xs.min() - (k - 3) // 2 * TILE
            assert top % TILE == 0 and left % TILE == 0  # tiles are feature cells
            pattern = pattern_signs(s.image, top, left, k, channel)
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
