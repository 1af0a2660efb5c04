import json

import numpy as np
import pytest
from PIL import Image

from dmnet.presets import DATASETS, PRESETS
from training.data import (SCENES, SYNTHETIC, DatasetError, MultiScaleShapes, SegFolder,
                           build_dataset)
from training.data import cityscapes
from training.data.shapes import (BUCKETS, SIZE, ShapesSample, SizeBuckets, export, render,
                                  shape_mask)

from .fakes import H, W, write_ade, write_cityscapes, write_context, write_voc


def check_items(data, n):
    assert len(data) == n
    for i in range(n):
        image, label = data[i]
        assert image.shape == (H, W, 3) and image.dtype == np.uint8
        assert label.shape == (H, W) and label.dtype == np.uint8


def test_cityscapes_train_ids(tmp_path):
    write_cityscapes(tmp_path)
    check_items(SegFolder(tmp_path, "cityscapes", "train"), 4)
    check_items(SegFolder(tmp_path, "cityscapes", "val"), 2)
    _, label = SegFolder(tmp_path, "cityscapes", "train")[0]
    assert set(np.unique(label)) <= {0, 1, 13, 18, 255}


def test_cityscapes_label_ids_need_conversion_then_load(tmp_path):
    write_cityscapes(tmp_path, train_ids=False)
    with pytest.raises(DatasetError, match="python -m training.data.cityscapes"):
        SegFolder(tmp_path, "cityscapes", "train")
    assert cityscapes.convert(tmp_path) == 6
    data = SegFolder(tmp_path, "cityscapes", "train")
    ids = np.asarray(Image.open(str(data.pairs[0][1]).replace("labelTrainIds", "labelIds")))
    _, label = data[0]
    expected = np.select([ids == 7, ids == 8, ids == 26, ids == 33], [0, 1, 13, 18], 255)
    np.testing.assert_array_equal(label, expected)
    ids = np.array([24, 31, 4, 255], np.uint8)
    assert cityscapes.to_train_ids(ids).tolist() == [11, 16, 255, 255]


def test_ade20k_reduces_zero_label(tmp_path):
    write_ade(tmp_path)
    data = SegFolder(tmp_path, "ade20k", "train")
    check_items(data, 3)
    check_items(SegFolder(tmp_path, "ade20k", "val"), 2)
    raw = np.asarray(Image.open(data.pairs[0][1]))
    _, label = data[0]
    np.testing.assert_array_equal(label, np.select([raw == 0, raw == 1], [255, 0], 149))


def test_voc_uses_palette_indices_and_sbd_aug_when_present(tmp_path):
    write_voc(tmp_path, aug=False)
    data = SegFolder(tmp_path, "pascal_voc", "train")
    check_items(data, 2)
    assert set(np.unique(data[0][1])) <= {0, 1, 20, 255}  # indices, not palette colours
    write_voc(tmp_path, aug=True)
    check_items(SegFolder(tmp_path, "pascal_voc", "train"), 5)
    check_items(SegFolder(tmp_path, "pascal_voc", "val"), 1)


def test_pascal_context_59(tmp_path):
    write_context(tmp_path)
    data = SegFolder(tmp_path, "pascal_context_59", "train")
    check_items(data, 2)
    check_items(SegFolder(tmp_path, "pascal_context_59", "val"), 1)
    assert set(np.unique(data[0][1])) <= {255, 0, 58}


def test_missing_or_malformed_datasets_name_the_layout(tmp_path):
    with pytest.raises(DatasetError, match=r"does not exist[\s\S]*leftImg8bit/train"):
        SegFolder(tmp_path / "nowhere", "cityscapes", "train")
    with pytest.raises(DatasetError, match=r"ImageSets/Segmentation/train.txt"):
        SegFolder(tmp_path, "pascal_voc", "train")
    with pytest.raises(DatasetError, match="--data-root is required"):
        build_dataset("ade20k", "train", None)
    write_ade(tmp_path)
    (tmp_path / "annotations/validation/ADE_valid_00000001.png").unlink()
    with pytest.raises(DatasetError, match="ADE_valid_00000001.png is missing"):
        SegFolder(tmp_path, "ade20k", "val")
    rgb = tmp_path / "annotations/training/ADE_train_00000000.png"
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(rgb)
    with pytest.raises(DatasetError, match="single-channel"):
        SegFolder(tmp_path, "ade20k", "train")[0]


@pytest.mark.parametrize("name", sorted(SCENES))
def test_every_synthetic_dataset_is_deterministic_and_its_own_stream(name):
    a, b = SCENES[name](3, 7, SIZE), SCENES[name](3, 7, SIZE)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.label, b.label)
    assert not np.array_equal(SCENES[name](3, 8, SIZE).image, a.image)
    for other in set(SCENES) - {name}:
        assert not np.array_equal(SCENES[other](3, 7, SIZE).image, a.image)
    train, val = SYNTHETIC[name]("train", 2), SYNTHETIC[name]("val", 2)
    assert not np.array_equal(train[0][0], val[0][0])
    assert build_dataset(name, "val", None).classes == DATASETS[name][0]


def test_shapes_are_multiscale():
    sizes = np.concatenate([render(0, i, size=256).sizes for i in range(40)])
    assert sizes.min() < 10 and sizes.max() > 90 and sizes.max() <= 128
    assert render(0, 0).image.shape == (SIZE, SIZE, 3)
    demo = PRESETS["dmnet_r18w32-d8_1xb8-7k_shapes-128x128"]
    assert demo.crop_size == (SIZE, SIZE)
    assert build_dataset("multiscale_shapes", "val", None).size == SIZE  # whatever the test scale
    assert {s.label.max() for s in (render(0, i, size=128) for i in range(10))} != {0}


def test_shapes_are_upright():
    # triangles and stars point up (one apex on the top row, a wide bottom), squares are
    # axis-aligned (full top and bottom rows)
    seen = set()
    for i in range(30):
        s = render(0, i, size=256)
        for k, d in enumerate(s.sizes, start=1):
            ys, xs = np.nonzero(s.instances == k)
            cls = DATASETS["multiscale_shapes"][0][s.label[ys[0], xs[0]]]
            if d < 40 or cls not in ("triangle", "square"):
                continue
            top, bottom = (xs[ys == ys.min()].size, xs[ys == ys.max()].size)
            width = xs.max() - xs.min() + 1
            if cls == "triangle":
                assert top < 0.2 * width < bottom, (i, k)
            else:
                assert top > 0.8 * width and bottom > 0.8 * width, (i, k)
            seen.add(cls)
    assert seen == {"triangle", "square"}


def test_shape_masks_differ_in_shape_not_extent():
    v, u = np.mgrid[-1:1:201j, -1:1:201j]
    masks = {c: shape_mask(c, u, v) for c in DATASETS["multiscale_shapes"][0][1:]}
    for c, m in masks.items():
        assert m[100, 100] != (c == "ring")  # the centre is inside all but the ring
        assert 0.15 < m.mean() < 0.8
    keys = list(masks)
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            assert (masks[a] != masks[b]).mean() > 0.05, (a, b)


def test_colour_does_not_decide_the_class():
    # Every class draws its colours from the same distribution as the others and the background:
    # averaged over ~200 objects per class, the objects' mean colours agree within noise.
    per_class = {c: [] for c in range(7)}
    for i in range(200):
        s = render(0, i, size=64)
        per_class[0].append(s.image[s.label == 0].mean(0))
        for k in np.unique(s.instances)[1:]:
            sel = s.instances == k
            per_class[int(s.label[sel][0])].append(s.image[sel].mean(0))
    means = np.array([np.mean(v, axis=0) for v in per_class.values()])
    assert min(len(v) for v in per_class.values()) > 100
    assert np.ptp(means, axis=0).max() < 20, means


def test_export_reads_back_through_the_folder_dataset(tmp_path):
    export(tmp_path, train=3, val=2, size=48, seed=5)
    meta = json.loads((tmp_path / "classes.json").read_text())
    assert tuple(meta["classes"]) == DATASETS["multiscale_shapes"][0]
    folder = build_dataset("multiscale_shapes", "train", str(tmp_path))
    assert folder.classes == tuple(meta["classes"]) and len(folder) == 3
    live = MultiScaleShapes("train", 3, 48, seed=5)
    for i in range(3):
        np.testing.assert_array_equal(folder[i][0], live[i][0])
        np.testing.assert_array_equal(folder[i][1], live[i][1])
    assert len(build_dataset("multiscale_shapes", "val", str(tmp_path))) == 2


def test_size_buckets_count_objects_and_pixels():
    label = np.zeros((64, 64), np.uint8)
    inst = np.zeros((64, 64), np.uint8)
    label[0:2, 0:2], inst[0:2, 0:2] = 1, 1  # a tiny object (size 1 px / 64)
    label[10:40, 10:40], inst[10:40, 10:40] = 2, 2  # a large one (size 30 / 64)
    sample = ShapesSample(np.zeros((64, 64, 3), np.uint8), label, inst, [1.0, 30.0])
    pred = label.copy()
    pred[0:2, 0:2] = 0  # tiny object missed
    pred[10:20, 10:40] = 3  # a third of the large one wrong
    b = SizeBuckets()
    b.update(pred, sample)
    s = b.summary()
    assert list(s) == list(BUCKETS)
    assert s["tiny"] == {"objects": 1, "pixel_acc": 0.0, "objects_recognised": 0.0}
    assert s["large"]["objects"] == 1 and s["large"]["objects_recognised"] == 100.0
    assert s["large"]["pixel_acc"] == round(100 * 600 / 900, 2)
