"""Branch roles by object size, what removing each input changes, and the readable maps."""

import json

import numpy as np
import pytest

from app.core import overlays, roles
from app.core.analysis import ablated_label, analyse
from app.core.attribution import keep_mask
from app.core.images import generate_scene
from app.core.roles import (BACKGROUND, branch_roles, bucket_of, changed_share, dataset_roles,
                            find_objects, main, removed_labels)
from app.views import branches
from app.views.attribution import explain, hover
from training.ablation import without_part
from training.data.shapes import BUCKETS

from ..conftest import tiny_model

CLASSES = ("background", "a", "b")


def disk(mask: np.ndarray, cy: float, cx: float, r: float, value: int) -> None:
    yy, xx = np.mgrid[:mask.shape[0], :mask.shape[1]] + 0.5
    mask[np.hypot(yy - cy, xx - cx) <= r] = value


def test_objects_are_components_of_each_class_sized_by_their_diameter():
    truth = np.zeros((128, 128), np.uint8)
    disk(truth, 40, 40, 20, 1)  # 40 px of 128: large
    disk(truth, 100, 100, 5, 1)  # same class, another component: 10 px, small
    truth[10:13, 100:103] = 2  # a 3x3 square: tiny (diameter ~ 2 * (sqrt 2 + 0.5))
    truth[120:, :] = 255  # ignored pixels are no object
    found = find_objects(truth, CLASSES)
    assert len(found.diameters) == 3 and found.ids.max() == 3
    assert found.diameters[0] == pytest.approx(40, abs=1.5)
    assert found.diameters[1] == pytest.approx(10, abs=1.5)
    assert found.buckets == ["large", "small", "tiny"]
    assert (found.ids[truth == 0] == 0).all()  # the background class holds no objects


def test_buckets_follow_the_model_card():
    assert list(BUCKETS) == ["tiny", "small", "medium", "large"]
    assert [bucket_of(d, 128) for d in (7.9, 8, 15.9, 16, 31.9, 32, 128, 300)] == [
        "tiny", "small", "small", "medium", "medium", "large", "large", "large"]


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def seen(model):
    image, truth = generate_scene(3, 1.0)
    return analyse(model, image), truth


def test_roles_count_decisions_and_accuracy_per_bucket(seen):
    a, truth = seen
    roles = branch_roles(a, truth)
    assert roles.names == a.part_names and [g.name for g in roles.groups] == [*BUCKETS,
                                                                              BACKGROUND]
    objects = find_objects(truth, a.classes)
    removed = removed_labels(a)
    for g in roles.groups:
        where = (truth == 0) if g.name == BACKGROUND else np.isin(
            objects.ids, 1 + np.flatnonzero(np.array(objects.buckets) == g.name))
        assert g.pixels == where.sum()
        if not g.pixels:
            assert np.isnan(g.accuracy)
            continue
        assert g.decides.sum() == pytest.approx(1)
        assert g.accuracy == pytest.approx((a.label[where] == truth[where]).mean())
        for j, name in enumerate(a.part_names):  # the app's "remove" ablation, per input
            after = ablated_label(a, keep_mask(a.part_names, [name], "remove"))
            np.testing.assert_array_equal(removed[name], after)
            assert g.without[j] == pytest.approx((after[where] == truth[where]).mean())
    assert sum(g.objects for g in roles.groups) == len(objects.diameters)


def test_an_input_the_bottleneck_ignores_changes_nothing_when_removed(model):
    """k=3's weight slice zeroed (`training.ablation.without_part`): removing it is free."""
    image, truth = generate_scene(5, 1.0)
    a = analyse(without_part(model, "k=3"), image)
    removed = removed_labels(a)
    assert changed_share(a, removed)["k=3"] == 0
    j = a.part_names.index("k=3")
    for g in branch_roles(a, truth, removed).groups:
        if g.pixels:
            assert g.cost[j] == 0  # (its zero margin term may still be the largest one)


def test_readable_maps_are_nearest_upscaled_filtered_and_blended():
    image = np.full((16, 8, 3), 200, np.uint8)
    label = np.zeros((16, 8), np.int64)
    label[:, 4:] = 1
    layer = np.zeros((16, 8, 3), np.uint8)
    layer[..., 2] = np.arange(8) * 30  # one colour per column
    everywhere, keep = np.ones_like(label, bool), label == 1
    view = overlays.readable(image, layer, everywhere, label, 0.0, dim=~keep, side=64)
    assert view.shape == (64, 32, 3)
    assert (view[:, :16] == overlays.FILTERED).all()  # class 0 left out, light gray
    np.testing.assert_array_equal(view[:, 20:24, 2], np.full((64, 4), 5 * 30))  # nearest
    edge = view[:, 16]  # the class boundary
    assert (edge == overlays.EDGE).all()
    only_image = overlays.readable(image, layer, everywhere, label, 1.0, side=64)
    assert (only_image[:, :15] == 200).all()
    dimmed = overlays.readable(image, layer, everywhere, label, 1.0, dim=~keep, side=64)
    gray = overlays.FILTERED + overlays.LEFT_OUT * (200 - overlays.FILTERED)
    assert np.abs(dimmed[:, :15].astype(float) - gray).max() <= 1  # the image shows faintly
    assert (overlays.readable(image, layer, ~everywhere, label, 0.0, side=64)[:, 17:]
            == overlays.FILTERED).all()  # nothing shown: light gray
    framed = overlays.mark_cell(view, (1, 0), (2, 1))
    assert (framed[32, 5] == 0).all() and (framed[40, 5] == view[40, 5]).all()


def test_actions_explain_the_prediction(demo_env, scene):
    image, mask = (str(p) for p in scene)
    view, picker, table, legend, bars, readout = explain.attribution("demo", image, 0.0, None,
                                                                      None)
    assert view.shape[:2] == overlays.display_size(view.shape)
    names = ["x", "k=1", "k=3", "k=5", "k=7"]
    assert table.headers == ["class", "pixels %", *names]
    assert sum(table.value["data"][0][2:]) == pytest.approx(100, abs=0.5)
    assert picker.choices[0][0] == explain.ALL
    assert [value for _, value in legend.choices] == [explain.EVERY_INPUT, *names]
    assert legend.value == explain.EVERY_INPUT
    one = picker.choices[1][0]
    filtered = explain.attribution("demo", image, 0.0, one, None)[0]
    gray = (view == overlays.FILTERED).all(-1).mean()
    assert (filtered == overlays.FILTERED).all(-1).mean() > gray
    # A click on an input in the legend: only the pixels it decides (the others light gray),
    # as many as the legend says, and the legend keeps the pick.
    shares = {v: float(label.split(" · ")[1].rstrip("%")) for label, v in legend.choices[1:]}
    top = max(shares, key=shares.get)
    only, _, _, picked, _, _ = explain.attribution("demo", image, 0.0, None, None, top)
    assert picked.value is None  # not written back: the pick on screen stays the user's
    shown = 100 * (1 - (only == overlays.FILTERED).all(-1).mean())
    assert shown == pytest.approx(shares[top], abs=3)  # the map's cells vs the legend's pixels
    assert not (only == view).all()
    other = explain.attribution("demo", image, 0.0, None, (0.05, 0.05))[4]
    assert other.layout.title.text != bars.layout.title.text  # another cell's margin
    assert "data-cells=" in readout and hover.HINT in readout  # every cell, for the hover

    table, plot, note = explain.roles("demo", image, mask)
    assert table.headers[:3] == explain.ROLE_HEADERS and table.value["data"]
    assert "objects" in note
    assert explain.roles("demo", image, None)[2] == explain.NEEDS_TRUTH

    out = branches.removals("demo", image, mask)
    assert len(out) == 10
    for name, view, note in zip(names, out[::2], out[1::2], strict=True):
        assert view.shape == (256, 256, 3)
        assert note.startswith(f"removing **{name}** changes") and "Accuracy on objects" in note
    assert "a true mask adds" in branches.removals("demo", image, None)[1]


def test_points_never_reads_minus_zero():
    assert roles.points(-0.0001) == "+0.0" and roles.points(-0.25) == "-25.0"


def test_over_a_dataset_the_roles_are_weighted_by_pixels(model):
    """One image: its own roles. Two images: every share and accuracy is the pixel-weighted mean
    of theirs, and the counts add up."""
    data = [generate_scene(3, 1.0), generate_scene(5, 1.4)]
    single = [branch_roles(analyse(model, image), truth) for image, truth in data]
    one, both = dataset_roles(model, data, limit=1), dataset_roles(model, data)
    for g, alone, a, b in zip(both.groups, one.groups, *(r.groups for r in single), strict=True):
        assert (alone.pixels, alone.objects) == (a.pixels, a.objects)
        np.testing.assert_allclose(alone.decides, a.decides, rtol=1e-12)
        assert g.pixels == a.pixels + b.pixels and g.objects == a.objects + b.objects
        if a.pixels and b.pixels:
            mean = (a.pixels * a.without + b.pixels * b.without) / (a.pixels + b.pixels)
            np.testing.assert_allclose(g.without, mean, rtol=1e-12)
            np.testing.assert_allclose(g.decides.sum(), 1, rtol=1e-12)


def test_the_roles_command_line_prints_and_writes_every_group(demo_checkpoint, tmp_path, capsys):
    out = tmp_path / "roles.json"
    main([str(demo_checkpoint), "--limit", "2", "--out", str(out)])
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["images"] == 2 and result["inputs"][0] == "x"
    assert [g["name"] for g in result["groups"]] == [*BUCKETS, BACKGROUND]
    assert all(name in printed for name in [*BUCKETS, "decides %", "lost without"])


def test_the_reading_names_who_decides_and_who_costs_and_says_why_they_differ():
    from types import SimpleNamespace

    def group(name, decides, accuracy, without):
        return SimpleNamespace(name=name, objects=2, decides=np.array(decides),
                               accuracy=accuracy, without=np.array(without),
                               cost=accuracy - np.array(without))

    names = ["x", "k=1", "k=3"]
    same = explain.reading([group("small", [0.2, 0.1, 0.7], 0.9, [0.9, 0.8, 0.4])], names)
    assert same == ("**small** objects (2): **k=3** decides 70% of their pixels, and removing "
                    "it costs the most (90.0% → 40.0% of their pixels right).")
    differ = explain.reading([group("large", [0.8, 0.1, 0.1], 0.9, [0.85, 0.3, 0.9]),
                              group(BACKGROUND, [1.0, 0, 0], 1.0, [0.5, 1, 1])], names)
    first, why = differ.split("  \n")
    assert first == ("**large** objects (2): **x** decides 80% of their pixels, yet removing "
                     "**k=1** costs the most (90.0% → 30.0% right; without x: 85.0%).")
    assert why == explain.WHY_THEY_DIFFER
    free = explain.reading([group("tiny", [0.5, 0.5, 0], 0.5, [0.5, 0.6, 0.5])], names)
    assert free.endswith("removing any one input costs them nothing.")
