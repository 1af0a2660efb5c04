"""`app.actions.make_scene`: "Generate a scene" draws the picked model's own synthetic data."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from app import urlstate
from app.core.images import generate_scene
from app.views.lesson import steps as lesson
from app.views.sidebar import actions


def test_a_scene_of_the_data_the_model_was_trained_on(demo_env):
    """The tiny demo checkpoint is a bare 7-class state dict, read as MultiScaleShapes (its file
    name says "shapes"): its scenes and masks are MultiScaleShapes', not the bundled demo's
    ContextShapes."""
    image, mask = actions.make_scene(3, 1.25, "demo")
    want, label = generate_scene(3, 1.25, dataset="multiscale_shapes")
    assert not np.array_equal(want, generate_scene(3, 1.25)[0])  # the datasets differ
    assert np.array_equal(image, want)
    with Image.open(mask) as m:
        assert m.mode == "P" and np.array_equal(np.asarray(m), label)
    assert "multiscale_shapes" in mask
    # the address names the scene only for the model whose data it is
    saved = demo_env.parent / "scene.png"
    Image.fromarray(image).save(saved)
    assert urlstate.source(str(saved), 3, 1.25, [], "demo") == (None, 3, 1.25)
    official = "dmnet_r50-d8_4xb2-40k_cityscapes-512x1024"
    assert urlstate.source(str(saved), 3, 1.25, [], official) == (None, None, 1.0)
    # the Lesson's image B (its Compare step) is a scene of the same data
    image_b = lesson.second_image(4, 3, "demo")
    assert np.array_equal(image_b, generate_scene(3, 1.0, dataset="multiscale_shapes")[0])


def test_a_model_of_a_real_dataset_gets_a_scene_without_a_true_mask():
    """A Cityscapes model's classes are not the shapes': the picture comes, its mask does not
    (the official preset names the dataset, so nothing is loaded or downloaded)."""
    image, mask = actions.make_scene(5, 1.0, "dmnet_r50-d8_4xb2-40k_cityscapes-512x1024")
    assert mask is None and np.array_equal(image, generate_scene(5, 1.0)[0])


def test_a_patternmatch_scene_at_another_zoom_is_refused(monkeypatch):
    import gradio as gr

    from app.core import models

    monkeypatch.setattr(models, "dataset_of", lambda key: "pattern_match")
    image, mask = actions.make_scene(1, 1.0, "any")
    assert np.array_equal(image, generate_scene(1, 1.0, dataset="pattern_match")[0])
    with pytest.raises(gr.Error, match="zoom 1 only"):
        actions.make_scene(1, 0.5, "any")


def test_a_model_that_does_not_load_still_gets_the_demo_data(monkeypatch, tmp_path):
    """A page whose model cannot load (the demo checkpoint missing) still opens on a scene:
    ContextShapes with its mask, as before the model was asked; the load says why elsewhere.
    Its link names that scene."""
    from app.core import models
    from dmnet.checkpoint import CheckpointError

    def missing(key):
        raise CheckpointError("no such checkpoint")

    monkeypatch.setattr(models, "dataset_of", missing)
    image, mask = actions.make_scene(2, 1.0, "demo")
    assert np.array_equal(image, generate_scene(2, 1.0)[0]) and mask is not None
    Image.fromarray(image).save(tmp_path / "scene.png")
    assert urlstate.source(str(tmp_path / "scene.png"), 2, 1.0, [], "demo") == (None, 2, 1.0)


def test_the_zoom_is_held_at_1_for_a_patternmatch_model(monkeypatch):
    """PatternMatch scenes exist at zoom 1 only: its model's slider says so and cannot move;
    another model's slider moves again and keeps its value."""
    from app.core import models

    monkeypatch.setattr(models, "dataset_of", lambda key: "pattern_match")
    held = actions.zoom_slider("any")
    assert held.value == 1.0 and held.interactive is False and "1 only" in held.label
    monkeypatch.setattr(models, "dataset_of", lambda key: "context_shapes")
    free = actions.zoom_slider("any")
    assert free.interactive is True and free.label == actions.ZOOM_LABEL
    assert "value" not in free.constructor_args  # an update: the user's zoom stays


def test_the_ticks_follow_the_ablation_mode():
    """A control that a mode ignores is disabled and says why (static filters), or offers only
    what the mode reads (summed taps: k > 1)."""
    from app.views.attribution.ablation import parts_for

    static = parts_for("static filters", ["k=3", "k=7"])
    assert static.interactive is False and "not used by static filters" in static.label
    summed = parts_for("taps summed", ["x", "k=1", "k=5"])
    assert summed.elem_classes == ["summed"] and summed.interactive and "k > 1" in summed.label
    assert not {"choices", "value"} & set(summed.constructor_args)  # the ticks stay the user's
    again = parts_for("remove", ["k=5"])
    assert again.interactive and again.elem_classes == [] and again.label.startswith("inputs")


def test_a_control_keeps_the_users_value_unless_it_is_gone():
    import gradio as gr

    from app.core.runtime import kept

    assert kept(gr.Radio, ["a", "b"], "b", "b").value is None  # not written
    assert kept(gr.Radio, ["a", "b"], "c", "a").value == "a"  # reset: c is not a choice


def test_the_class_legend_gives_each_id_its_colour_and_name(demo_env):
    """A true mask is a PNG of class ids: the legend beside its upload lists this model's ids."""
    from app.core import models

    preset = models.get_model("demo").preset
    legend = actions.class_ids("demo")
    items = legend.split("<li ")[1:]
    assert len(items) == len(preset.classes) == preset.num_classes
    for i, (item, name, rgb) in enumerate(zip(items, preset.classes, preset.palette,
                                              strict=True)):
        assert item.startswith(f"title='{i}: {name}'><code>{i}</code>")  # whole on hover
        assert f"rgb{tuple(rgb)}" in item and f"{name}</li>" in item
    assert "<code>255</code> = ignore" in legend
