"""Filter transplant: one image through the head with another image's generated filters."""

import numpy as np
import pytest
import torch

from app.core.analysis import analyse
from app.core.dynamics import SCENES
from app.core.images import generate_scene
from app.core.transplant import with_filters
from app.views.attribution import ablation
from app.views.compare import actions as compare

from ....tolerance import SCALE_TOL, assert_scaled_close, scaled_error
from ...conftest import short_message, tiny_model


@pytest.fixture(scope="module")
def model():
    """The tiny model with filter generators 30x stronger: a random model's filters barely
    depend on the input (their dynamic part is ~2% of them), a trained one's much more."""
    model = tiny_model()
    with torch.no_grad():
        for dcm in model.decode_head.dcm_modules:
            dcm.filter_gen_conv.weight *= 30
    return model


@pytest.fixture(scope="module")
def scenes(model):
    return [analyse(model, generate_scene(seed, 1.0)[0]) for seed in (2, 9)]


def test_own_filters_give_the_own_prediction(model, scenes):
    for a in scenes:
        own, every = with_filters(model, a.image, [{}, dict(a.filters)])
        for t in (own, every):
            assert np.array_equal(t.label, a.label)
            assert_scaled_close(t.logits, a.logits, msg="own filters")


def test_another_images_filters_change_the_prediction(model, scenes):
    a, b = scenes
    for k in (*a.filters, None):  # one branch at a time, then all of them
        swap = dict(b.filters) if k is None else {k: b.filters[k]}
        moved, = with_filters(model, a.image, [swap])
        # Beyond any kernel's rounding (SCALE_TOL), whichever scenes: k=1's filters move the
        # logits least (9e-4 of their scale for ContextShapes seeds 2 and 9).
        assert scaled_error(moved.logits, a.logits) > 3 * SCALE_TOL, f"branch {k}"
        assert moved.label.shape == a.label.shape
    assert (moved.label != a.label).any()  # all branches: some pixels change class


def test_static_filters_are_the_ablations_static_model(demo_env):
    """The mean filters given to the head are `training.ablation`'s static-filter model, and
    the reference is computed once per model."""
    from app.core import runtime
    from training.ablation import with_static_filters

    image = generate_scene(4, 1.0)[0]
    r = runtime.ranking("demo")
    assert runtime.ranking("demo") is r and r.inputs == SCENES
    model = runtime.models.get_model("demo")
    static, = with_filters(model, image, [r.mean])
    fixed = with_static_filters(model, {k: torch.from_numpy(m) for k, m in r.mean.items()})
    want = analyse(fixed.eval(), image)
    assert_scaled_close(static.logits, want.logits, msg="static filters")
    for k, f in fixed.inspect(torch.randn(2, 3, 64, 48)).filters.items():
        np.testing.assert_array_equal(f[1].numpy(), r.mean[k])  # the same filters for any input
    with torch.inference_mode():
        live = model.inspect(torch.randn(1, 3, 64, 48)).filters[3][0]
    assert not torch.equal(live, torch.from_numpy(r.mean[3]))  # the model itself still adapts


def test_summed_taps_are_the_ablations_1x1_model(demo_env, scene):
    """The app's "taps summed" ablation is `training.ablation`'s model with those branches'
    taps summed, and it changes some pixels: at edges, where the layout acts."""
    from app.core import runtime
    from training.ablation import with_summed_taps

    image, mask = (str(p) for p in scene)
    model = runtime.models.get_model("demo")
    a = runtime.see("demo", image, mask).analysis
    after, cells, change, done, removed = ablation.ablated(
        runtime.see("demo", image, mask), "demo", "taps summed", ["x", "k=1", "k=5", "k=7"])
    want = analyse(with_summed_taps(model, [5, 7]).eval(), a.image)
    # The same head by two code paths: only a near-tie may round the other way.
    assert np.mean(cells.numpy() != want.logits.argmax(0).numpy()) <= 0.01
    assert np.mean(after != want.label) <= 0.01
    assert 0 < np.mean(after != a.label) < 0.5, "the layout changes some pixels, not all"
    assert change == "with the taps of k=5, k=7 summed" and removed == ()
    assert "**k=5, k=7** made 1x1" in done
    assert short_message(ablation.ablated, runtime.see("demo", image, mask), "demo",
                         "taps summed", ["x", "k=1"]).startswith("Tick a branch with k > 1")


def test_the_transplant_action(demo_env, scene, tmp_path):
    from PIL import Image

    other = tmp_path / "other.png"
    Image.fromarray(generate_scene(11, 1.0)[0]).save(other)
    own, static, moved, changed, summary = compare.transplant(
        "demo", str(other), str(scene[0]), "k=5", compare.TRANSPLANTS[0])
    assert own.shape == static.shape == moved.shape == changed.shape
    assert "**B with A's filters** in branch k=5" in summary and "static (mean)" in summary
    *_, back = compare.transplant("demo", str(other), str(scene[0]),
                                      compare.ALL_BRANCHES, compare.TRANSPLANTS[1])
    assert "**A with B's filters** in every branch" in back
    assert "no branch k=4" in short_message(compare.transplant, "demo", str(other),
                                            str(scene[0]), "k=4", compare.TRANSPLANTS[0])
    assert "Add image B" in short_message(compare.transplant, "demo", str(other), None,
                                          "k=3", compare.TRANSPLANTS[0])


def test_transplant_over_http(client, scene, photo):
    from gradio_client import handle_file

    a, b = handle_file(str(photo)), handle_file(str(scene[0]))
    *images, summary = client.predict("demo", a, b, "all branches", "B with A's filters",
                                      api_name="/transplant")
    assert len(images) == 4 and all(images)
    assert "**B with A's filters** in every branch" in summary and "%** of B's pixels" in summary
    *_, back = client.predict("demo", a, b, "k=7", "A with B's filters", api_name="/transplant")
    assert "**A with B's filters** in branch k=7" in back


def test_an_ablation_with_nothing_to_do_is_refused_before_it_runs():
    from app.views.attribution.ablation import check_ablation

    for mode, parts, message in (("keep only", [], "Tick at least one input to keep"),
                                 ("taps summed", ["x", "k=1"], "Tick a branch with k > 1")):
        assert short_message(check_ablation, mode, parts).startswith(message)
    for mode, parts in (("remove", []), ("static filters", []), ("taps summed", ["k=7"])):
        check_ablation(mode, parts)  # these run
