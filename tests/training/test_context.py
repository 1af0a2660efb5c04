"""ContextShapes: a class is a shape and its ground; one object size per scene."""

import numpy as np

from dmnet.presets import DATASETS, PRESETS
from training import baseline
from training.data import SCENES, ContextShapes, SegFolder, build_dataset
from training.data.context import CLASSES, GROUNDS, SCALE_PX, SPREAD, render_context
from training.data.shapes import SIZE, export


def test_deterministic_and_its_own_stream():
    a, b = render_context(3, 7), render_context(3, 7)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.label, b.label)
    assert not np.array_equal(render_context(3, 8).image, a.image)
    assert not np.array_equal(SCENES["multiscale_shapes"](3, 7, SIZE).image, a.image)
    train, val = ContextShapes("train", 4, 64), ContextShapes("val", 4, 64)
    assert not np.array_equal(train[0][0], val[0][0])
    assert build_dataset("context_shapes", "val", None).classes == CLASSES
    assert PRESETS["dmnet_r18w32-d8_1xb8-6k_context-128x128"].classes == CLASSES


def test_an_objects_class_names_the_ground_it_lies_on():
    seen = set()
    for i in range(60):
        s = render_context(0, i)
        for k in np.unique(s.instances)[1:]:
            sel = s.instances == k
            classes = np.unique(s.label[sel])
            assert len(classes) == 1  # an object is one class
            grounds = np.unique(s.grounds[sel])
            assert len(grounds) == 1  # wholly on one ground: objects never cross the line
            name = CLASSES[int(classes[0])]
            assert name.endswith(f" on {GROUNDS[int(grounds[0])]}")
            seen.add(name)
    assert seen == set(CLASSES[1:])


def test_object_size_varies_between_scenes_not_within():
    medians, spreads, splits = [], [], 0
    for i in range(80):
        s = render_context(1, i)
        sizes = np.array(s.sizes)
        medians.append(np.median(sizes))
        spreads.append(sizes.max() / sizes.min())
        splits += len(np.unique(s.grounds)) == 2
    assert max(spreads) <= np.exp(2 * SPREAD) + 1e-6
    assert min(medians) < 1.5 * SCALE_PX[0] and max(medians) > SCALE_PX[1] / 1.5
    assert 20 < splits < 70  # two different grounds in about half the scenes


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
