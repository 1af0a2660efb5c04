"""One fp32 pass per image and model serves every view: what it keeps, that it equals the plain
model, that no view runs it twice, and that the cache and the sweep stay bounded."""

import gc
import threading
import weakref

import numpy as np
import pytest
import torch
from PIL import Image

from app.core import analysis, models, runtime
from app.core.analysis import Analysis, analyse, network_input, sweep_frame
from app.views import branches, segmentation, sweep
from app.views.attribution import explain
from app.views.compare import actions as compare
from dmnet import DMNet

from ...conftest import randomize_bn, tiny_preset
from ...tolerance import assert_scaled_close
from ..conftest import rgb_noise

R50 = "tiny-r50"  # the picker key of a narrow ResNet-50 DMNet: the official models' architecture
KEPT = {"image", "input_size", "classes", "palette", "align_corners", "logits", "label", "seconds",
        "filters", "branches", "branch_means", "x_mean", "split", "classifier"}


def tiny_r50() -> DMNet:
    torch.manual_seed(0)
    return randomize_bn(DMNet(tiny_preset(depth=50)).eval())


@pytest.fixture
def passes(demo_env, monkeypatch):
    """The tiny R-50 in the app's model cache (key R50); the list of passes run (one entry per
    backbone run, the start of every pass)."""
    monkeypatch.setitem(models._models, R50, tiny_r50())
    ran = []
    stage = analysis.last_stage
    monkeypatch.setattr(analysis, "last_stage", lambda *a: ran.append(a[1].shape) or stage(*a))
    return ran


@pytest.fixture
def image_path(tmp_path):
    path = tmp_path / "noise.png"
    Image.fromarray(rgb_noise(96, 128, seed=2)).save(path)
    return str(path)


def test_the_analysis_is_the_plain_models_pass():
    model, image = tiny_r50(), rgb_noise(96, 128, seed=2)
    a = analyse(model, image)
    with torch.inference_mode():
        plain = model.inspect(network_input(model, image)[1])
    assert a.logits.dtype == a.split.parts.dtype == torch.float32
    assert_scaled_close(a.logits, plain.logits[0], msg="logits")
    assert_scaled_close(a.split.total().relu(), plain.fused[0], msg="bottleneck split")
    for k, branch in a.branches.items():
        assert branch.dtype == analysis.MAP_DTYPE and a.filters[k].dtype == np.float32
        want = plain.branches[k][0]  # bf16 keeps 8 bits: within 2^-8 of each value's size
        assert (branch.float() - want).abs().max() <= 2 ** -8 * want.abs().max()
        assert_scaled_close(torch.from_numpy(a.branch_means[k]), want.mean(0), msg=f"mean {k}")
        assert_scaled_close(torch.from_numpy(a.filters[k]), plain.filters[k][0], msg=f"filters {k}")
    assert_scaled_close(torch.from_numpy(a.x_mean), plain.features[3][0].mean(0), msg="x mean")


def test_an_analysis_keeps_only_what_the_views_show():
    model, image = tiny_r50(), rgb_noise(96, 128, seed=2)
    a = analyse(model, image)
    assert set(vars(a)) == KEPT  # no backbone stage, no reduced inputs, no auxiliary logits
    c, h, w = model.preset.head_channels, *a.feature_size
    parts = len(a.filters) + 1
    tensors = {"split.parts": (parts, c, h, w), **{f"branches[{k}]": (c, h, w) for k in a.filters}}
    assert a.split.parts.shape == tensors["split.parts"]
    assert all(a.branches[k].shape == (c, h, w) for k in a.filters)
    kept = (a.image.nbytes + a.logits.numel() * 4 + a.label.nbytes
            + sum(f.nbytes for f in a.filters.values())
            + len(a.filters) * (c * h * w * 2 + h * w * 4)  # bf16 maps and their fp32 means
            + h * w * 4 + parts * c * h * w * 4 + c * 4  # x mean, split parts and bias
            + a.classifier.weight.numel() * 4 + a.classifier.bias.numel() * 4)
    assert a.nbytes == kept
    # the backbone's stage 4 alone (2048 channels for an official R-50) would be larger than
    # everything kept per pixel but the split: nothing of it is held
    assert all(t.shape[0] != model.backbone.out_channels[3] for t in a.branches.values())


def test_a_second_view_of_the_same_image_runs_no_new_pass(passes, image_path):
    segmentation.segment(R50, image_path, None, 0.6, None)
    assert len(passes) == 1
    branches.branches(R50, image_path, None, None, None, None)
    branches.removals(R50, image_path, None)
    explain.attribution(R50, image_path, 0.0, None)
    compare.compare(R50, image_path, image_path, 3, None)
    segmentation.segment(R50, image_path, None, 0.3, None)  # e.g. the opacity moved
    assert len(passes) == 1 + runtime.ranking(R50).inputs  # + the reference filters, once


def test_two_views_asking_at_once_share_one_pass(passes, image_path, monkeypatch):
    started, go = threading.Event(), threading.Event()
    run = analysis.analyse

    def slow(*args):
        started.set()
        go.wait(10)
        return run(*args)

    monkeypatch.setattr(runtime, "analyse", slow)
    seen = []
    threads = [threading.Thread(target=lambda: seen.append(runtime.see(R50, image_path)))
               for _ in range(2)]
    threads[0].start()
    started.wait(10)
    threads[1].start()
    go.set()
    for t in threads:
        t.join(10)
    assert len(passes) == 1 and seen[0].analysis is seen[1].analysis


def test_the_cache_is_bounded_in_bytes(passes, tmp_path, monkeypatch):
    paths = []
    for seed in range(3):
        paths.append(tmp_path / f"{seed}.png")
        Image.fromarray(rgb_noise(96, 128, seed=seed)).save(paths[-1])
    one = runtime.see(R50, paths[0]).analysis.nbytes
    monkeypatch.setenv("DMNET_ANALYSIS_CACHE_MB", str(2.5 * one / 2**20))  # room for two
    for p in paths[1:]:
        runtime.see(R50, p)
    assert len(runtime._analyses) == 2 and len(passes) == 3
    runtime.see(R50, paths[2])  # kept
    runtime.see(R50, paths[0])  # dropped: runs again
    assert len(passes) == 4
    assert sum(a.nbytes for a in runtime._analyses.values()) <= 2.5 * one


def test_a_sweep_frame_keeps_only_its_filters_and_label():
    model, image = tiny_r50(), rgb_noise(64, 96)
    frame = sweep_frame(model, image, 2.0)
    assert set(vars(frame)) == {"factor", "input_size", "filters", "label", "seconds"}
    assert frame.label.dtype == np.uint8 and frame.label.shape == image.shape[:2]
    a = analyse(model, image)
    same = sweep_frame(model, image, 1.0)
    assert np.array_equal(same.label, a.label) and same.input_size == a.input_size
    for k, f in a.filters.items():
        np.testing.assert_array_equal(same.filters[k], f)


def test_a_sweep_does_not_hold_every_scales_pass_at_once(passes, image_path, monkeypatch):
    alive = []
    lean = analysis.lean_pass

    def tracked(*args, **kw):
        out = lean(*args, **kw)
        alive.append(weakref.ref(out.split))
        return out

    monkeypatch.setattr(analysis, "lean_pass", tracked)
    steps = 0
    for _ in sweep.sweep(R50, image_path, None, None, None, None, None, progress=lambda *a, **k: 0):
        gc.collect()
        held = [r for r in alive if r() is not None]
        assert len(held) <= 1  # the shared analysis' split, never a sweep frame's pass
        steps += 1
    assert steps == len(sweep.SCALES)


def test_a_sweep_caps_its_largest_scale_and_says_so(monkeypatch):
    monkeypatch.setenv("DMNET_SWEEP_MAX_MP", "2.2")
    order, note = sweep.plan((1024, 2048))  # an official Cityscapes model input: 2.1 MP
    assert order == [1.0, 0.5, 0.75] and "1.25×, 1.5×, 2×" in note
    assert "2560×1280" in note and "DMNET_SWEEP_MAX_MP" in note
    order, note = sweep.plan((192, 192))  # the demo's
    assert order == [1.0, 0.5, 0.75, 1.25, 1.5, 2.0] and note == ""


def test_the_description_says_one_pass_serves_every_view(passes, image_path):
    text = segmentation.segment(R50, image_path, None, 0.6, None)[-1]
    assert "one fp32 forward pass" in text and "shared by every view" in text
    assert isinstance(runtime.see(R50, image_path).analysis, Analysis) and len(passes) == 1
