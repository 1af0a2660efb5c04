"""The split of a generated filter into the reference mean and its dynamic part."""

import numpy as np
import pytest
import torch

from app.core.analysis import analyse, runner
from app.core.dynamics import (PHOTOS, SCENES, dynamic_part, dynamic_parts, dynamic_share,
                               reference, reference_data)
from app.core.filters import bank_cosine, cosine_per_channel, rank_channels, relative_change
from app.core.images import generate_scene
from app.views.compare import actions as compare

from ..conftest import tiny_model


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def ref(model):
    return reference(model)


def test_the_reference_set_is_fixed_and_stated(model, ref):
    data, description = reference_data("multiscale_shapes")
    assert len(data) == SCENES == ref.inputs
    assert description == f"the first {SCENES} MultiScaleShapes validation scenes"
    assert ref.description == description
    again, _ = reference_data("multiscale_shapes")
    assert all(np.array_equal(a, b) for a, b in zip(data, again, strict=True))
    photos, said = reference_data("cityscapes")  # official models: photos bundled with skimage
    assert len(photos) == PHOTOS and said.startswith(f"{PHOTOS} photographs bundled")
    assert all(p.dtype == np.uint8 and p.shape[2] == 3 for p in photos)
    c = model.preset.head_channels
    for k, mean in ref.mean.items():
        assert mean.shape == (c, k, k) and mean.dtype == np.float32
        assert ref.score[k].shape == (c,)
        assert list(ref.order[k]) == list(rank_channels(ref.score[k]))


def test_the_demo_datas_reference_set_holds_both_worlds_alike():
    """The mean over the reference set is the transplant's "static filters" and stands for the
    ablation's (all 500 validation scenes, half striped, half checked). A set of mostly one world
    gives that world's filters: the first 8 ContextShapes scenes (6 checked) did."""
    from training.data.context import ContextShapes

    data, _ = reference_data("context_shapes")
    val = ContextShapes("val", len(data), 128)
    worlds = [val.sample(i).world for i in range(len(data))]
    assert all(np.array_equal(d, val[i][0]) for i, d in enumerate(data[:3]))
    assert abs(sum(worlds) / len(worlds) - 0.5) <= 0.05


def test_mean_plus_dynamic_part_is_the_generated_filter_exactly(model, ref):
    for seed in (0, 5):
        a = analyse(model, generate_scene(seed, 1.0)[0])
        dyn = dynamic_parts(a.filters, ref)
        for k, f in a.filters.items():
            assert dyn[k].dtype == np.float64
            back = torch.from_numpy(ref.mean[k]).double() + torch.from_numpy(dyn[k])
            assert torch.equal(back, torch.from_numpy(f).double())
            assert torch.equal(back.float(), torch.from_numpy(f))


def test_the_mean_is_the_mean_of_the_reference_filters(model, ref):
    from training.ablation import generated_filters

    data, _ = reference_data(model.preset.dataset)
    banks = generated_filters(runner(model), [(d,) for d in data])
    for k, bank in banks.items():
        assert bank.shape[0] == SCENES
        np.testing.assert_allclose(ref.mean[k], bank.double().mean(0).numpy(), rtol=1e-6,
                                   atol=1e-7)
        # the dynamic parts of the reference inputs average to zero
        dyn = np.stack([dynamic_part(f, ref.mean[k]) for f in bank.numpy()])
        assert np.abs(dyn.mean(0)).max() <= 1e-6 * np.abs(bank.numpy()).max()


def test_raw_cosine_and_dynamic_cosine_disagree_and_the_views_use_the_dynamic_one():
    """Two filters sharing a large mean look alike raw (cosine ~1) while their dynamic parts
    point opposite ways (cosine -1): the ranking and similarity use the dynamic part."""
    mean = np.full((2, 3, 3), 1.0, np.float32)
    wiggle = np.zeros((2, 3, 3), np.float32)
    wiggle[0, 0, 0], wiggle[1, 1, 1] = 0.1, 0.3  # channel 1 adapts more than channel 0
    a, b = mean + wiggle, mean - wiggle
    raw = cosine_per_channel(a, b)
    da, db = dynamic_part(a, mean), dynamic_part(b, mean)
    dyn = cosine_per_channel(da, db)
    assert np.all(raw > 0.95) and np.allclose(dyn, -1)
    assert bank_cosine(a, b) > 0.95 and bank_cosine(da, db) == pytest.approx(-1)
    assert dynamic_share(mean[1], da[1]) > dynamic_share(mean[0], da[0]) > 0


def test_channels_are_ranked_by_how_much_their_dynamic_part_varies(model, ref):
    from training.ablation import generated_filters

    data, _ = reference_data(model.preset.dataset)
    for k, bank in generated_filters(runner(model), [(d,) for d in data]).items():
        dyn = np.stack([dynamic_part(f, ref.mean[k]) for f in bank.numpy()])
        np.testing.assert_allclose(ref.score[k], dyn.std(0).mean((-2, -1)), rtol=1e-5)


def test_compare_shows_and_ranks_the_dynamic_parts(demo_env, scene, photo):
    """Raw filters of two images look alike (the mean dominates); Compare ranks the channels by
    how much their filter changes from A to B, and gives the dynamic parts' cosines second."""
    from app.core import runtime

    a, b = str(photo), str(scene[0])
    _, _, pair, lines, rows, act_a, act_b = compare.compare("demo", a, b, 5, None)
    r = runtime.ranking("demo")
    fa, fb = (runtime.see("demo", p).analysis.filters for p in (a, b))
    da, db = dynamic_parts(fa, r), dynamic_parts(fb, r)
    for k_name, mean, most, cosines, raw, dynamic in rows:
        k = int(k_name[2:])
        change, cos = relative_change(fa[k], fb[k]), cosine_per_channel(da[k], db[k])
        assert mean == round(100 * float(change.mean()), 1)
        top = rank_channels(change)[:3]  # the channels that change most, most first
        assert most == ", ".join(f"{i} ({100 * change[i]:.0f}%)" for i in top)
        assert cosines == ", ".join(f"{cos[i]:.2f}" for i in top)
        assert raw == round(bank_cosine(fa[k], fb[k]), 3)  # raw: ~1
        assert dynamic == round(bank_cosine(da[k], db[k]), 3)  # dynamic: what the view is about
        assert raw > 0.95 and dynamic < raw - 0.1
    c = int(r.order[5][0])  # no channel asked: the most input-dependent one
    change, want = relative_change(fa[5], fb[5]), cosine_per_channel(da[5], db[5])
    assert (f"k=5, channel {c}: changes {100 * change[c]:.0f}% of the filter from A to B · "
            f"cosine {want[c]:.2f}") == pair.layout.title.text
    line = next(t for t in lines.data if t.name == "k=5")
    np.testing.assert_allclose(line.y, 100 * change)
    np.testing.assert_allclose(line.customdata, want)
    np.testing.assert_array_equal(pair.data[0].z, r.mean[5][c])  # mean, A's part, B's part
    np.testing.assert_array_equal(pair.data[1].z, da[5][c])
    # what a channel responds to in A and in B: its output maps, on one colour scale
    outs = [runtime.see("demo", p).analysis.branches[5] for p in (a, b)]
    if outs[0][c].max() == 0 == outs[1][c].max():  # this one is silent in both (ReLU)
        assert act_a.layout.title.text.endswith("(nothing: 0 everywhere)")
    c = int(outs[0].float().amax((1, 2)).argmax())  # the channel A excites most
    *_, act_a, act_b = compare.compare("demo", a, b, 5, c)
    maps = [o[c].float().numpy() for o in outs]
    for fig, want_map, name in ((act_a, maps[0], "A"), (act_b, maps[1], "B")):
        heat = fig.data[-1]
        np.testing.assert_array_equal(heat.z, want_map)
        assert heat.zmin == 0 and heat.zmax == max(float(m.max()) for m in maps) > 0
        assert fig.layout.title.text == f"{name}: what k=5 channel {c} responds to"
    assert not np.array_equal(maps[0], maps[1])  # two images, two responses


def test_the_reference_is_computed_when_first_needed_and_then_read_from_disk(demo_env, tmp_path,
                                                                            monkeypatch):
    """A load computes no reference; the first view that needs it does, once per checkpoint
    file: a new server (empty memory) reads it back from $DMNET_CACHE by the file's sha256."""
    from app.core import dynamics, models, runtime
    from app.views.sidebar import actions

    monkeypatch.setenv("DMNET_CACHE", str(tmp_path))  # empty: other tests cached the demo's
    ran = []
    compute = dynamics.reference
    monkeypatch.setattr(runtime, "reference", lambda m: ran.append(m) or compute(m))
    status = actions.load_model(models.DEMO)
    assert ran == [] and "MultiScaleShapes validation scenes" in status
    first = runtime.ranking(models.DEMO)
    file = runtime.reference_file(models.DEMO, models.get_model(models.DEMO))
    assert len(ran) == 1 and file.is_file() and file.parent.parent == runtime.cache_dir()
    monkeypatch.setattr(runtime, "_rankings", {})  # a new server
    again = runtime.ranking(models.DEMO)
    assert len(ran) == 1 and again.description == first.description == status.split(
        "filters over ")[1].split("\n")[0].strip()
    for k in first.mean:
        np.testing.assert_array_equal(again.mean[k], first.mean[k])
        np.testing.assert_array_equal(again.order[k], first.order[k])
    file.write_bytes(b"not an npz")  # a damaged cache file is computed again, and replaced
    monkeypatch.setattr(runtime, "_rankings", {})
    runtime.ranking(models.DEMO)
    assert len(ran) == 2 and dynamics.load_reference(file) is not None
