"""ContextShapes: a class is a shape and the picture's frame; one object size per scene."""

import numpy as np

from dmnet.presets import DATASETS, PRESETS
from training import baseline
from training.data import ContextShapes, SegFolder
from training.data.context import CLASSES, FRAME, SCALE_PX, SPREAD, WORLDS, render_context
from training.data.shapes import SIZE, export


def test_scenes_of_any_size_and_the_preset():
    # determinism and its own stream: tests/training/test_data.py, for every synthetic dataset
    small = ContextShapes("val", 4, 64)[0]
    assert small[0].shape == (64, 64, 3) and small[1].shape == (64, 64)
    assert PRESETS["dmnet_r18w32-d8_1xb8-6k_context-128x128"].classes == CLASSES


def test_an_objects_class_names_the_frame():
    seen, worlds = set(), set()
    for i in range(60):
        s = render_context(0, i)
        worlds.add(s.world)
        band = s.label[:FRAME], s.label[-FRAME:], s.label[:, :FRAME], s.label[:, -FRAME:]
        assert not any(b.any() for b in band)  # objects lie inside the frame
        for k in np.unique(s.instances)[1:]:
            classes = np.unique(s.label[s.instances == k])
            assert len(classes) == 1  # an object is one class
            name = CLASSES[int(classes[0])]
            assert name.endswith(f", {WORLDS[s.world]} frame")
            seen.add(name)
    assert seen == set(CLASSES[1:]) and worlds == set(WORLDS)


def test_the_frame_is_far_from_the_middle_and_the_only_cue():
    # Inside the frame nothing is textured (a smooth gradient and flat objects): the world shows
    # only in the frame, which is farther from the middle than a 7x7 filter reaches.
    a = render_context(0, 5)
    inner = (slice(FRAME, -FRAME), slice(FRAME, -FRAME))
    assert a.image[inner].std(axis=(0, 1)).max() < 80  # a smooth gradient, flat objects
    centre = SIZE // 2 - FRAME  # px from the middle to the frame
    assert centre / 8 > 7 / 2  # at 1/8 resolution, beyond a 7x7 filter's reach


def test_object_size_varies_between_scenes_not_within():
    medians, spreads = [], []
    for i in range(80):
        sizes = np.array(render_context(1, i).sizes)
        medians.append(np.median(sizes))
        spreads.append(sizes.max() / sizes.min())
    assert max(spreads) <= np.exp(2 * SPREAD) + 1e-6
    assert min(medians) < 1.5 * SCALE_PX[0] and max(medians) > SCALE_PX[1] / 1.5


def test_colour_alone_does_not_tell_the_classes():
    data = ContextShapes("train", 60, 64)
    table = baseline.fit(data, 60, len(CLASSES))
    metrics, _ = baseline.evaluate_table(table, ContextShapes("val", 30, 64), 30, CLASSES)
    assert metrics.mIoU < 20  # background alone: ~12 (1 of 7 classes at ~80 IoU)


def test_export_as_a_folder_dataset(tmp_path):
    export(tmp_path, 2, 2, 64, dataset="context_shapes")
    folder = SegFolder(tmp_path, "folder", "val")
    np.testing.assert_array_equal(folder[1][1], ContextShapes("val", 2, 64)[1][1])
    assert folder.classes == DATASETS["context_shapes"][0]
