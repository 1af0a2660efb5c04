"""The Segmentation view's fast path: which precision runs where, the teaching views kept in fp32,
one pass of each kind per image, and the description naming the precision."""

import numpy as np
import pytest
import torch
from PIL import Image

import dmnet.fast
from app.core import models, runtime
from app.core.analysis import analyse, network_input, predict, runner, segmentation_precision
from app.core.runtime import Segmented
from app.views import segmentation
from app.views.attribution import explain
from dmnet import DMNet

from ...conftest import randomize_bn, tiny_preset
from ...tolerance import assert_scaled_close, scaled_error
from ..conftest import rgb_noise, tiny_model

R50 = "tiny-r50"  # the picker key of a narrow ResNet-50 DMNet: the fast path's architecture


def tiny_r50() -> DMNet:
    torch.manual_seed(0)
    return randomize_bn(DMNet(tiny_preset(depth=50)).eval())


@pytest.fixture
def bf16_cpu(monkeypatch):
    monkeypatch.setattr(dmnet.fast, "cpu_supports_bf16", lambda: True)


@pytest.fixture
def passes(demo_env, monkeypatch):
    """The tiny R-50 in the app's model cache (key R50), and the passes the runtime runs."""
    monkeypatch.setitem(models._models, R50, tiny_r50())
    ran = []
    for name in ("analyse", "predict"):
        fn = getattr(runtime, name)
        monkeypatch.setattr(runtime, name, lambda *a, fn=fn, name=name: ran.append(name) or fn(*a))
    return ran


@pytest.fixture
def image_path(tmp_path):
    path = tmp_path / "noise.png"
    Image.fromarray(rgb_noise(96, 128, seed=2)).save(path)
    return str(path)


def test_resnet50_and_101_models_take_the_devices_fast_precision(monkeypatch):
    big, small = tiny_r50(), tiny_model()
    assert segmentation_precision(small) == "fp32"  # the demo's size: fp32 on any device
    monkeypatch.setattr(dmnet.fast, "cpu_supports_bf16", lambda: False)
    assert segmentation_precision(big) == "fp32"  # emulated bf16 is several times slower
    monkeypatch.setattr(dmnet.fast, "cpu_supports_bf16", lambda: True)
    assert segmentation_precision(big) == "bf16" and segmentation_precision(small) == "fp32"
    assert segmentation_precision(DMNet(tiny_preset(depth=101))) == "bf16"
    monkeypatch.setattr(DMNet, "device", property(lambda self: torch.device("cuda")))
    for bf16, precision in ((True, "bf16"), (False, "fp16")):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda bf16=bf16: bf16)
        assert segmentation_precision(big) == precision and segmentation_precision(small) == "fp32"


def test_runners_are_cached_per_precision_on_cpu_and_made_per_call_elsewhere():
    model = tiny_r50()
    fast = runner(model, "bf16")
    assert fast is runner(model, "bf16") and fast is not runner(model) and fast is not model
    assert fast.autocast_dtype == torch.bfloat16 and runner(model).autocast_dtype is None
    elsewhere = tiny_r50().to("meta")  # any device but the CPU (a GPU, ZeroGPU's included)
    assert runner(elsewhere) is elsewhere
    assert runner(elsewhere, "bf16") is not runner(elsewhere, "bf16")  # none outlives its call


def test_the_fast_label_agrees_with_fp32_on_most_pixels():
    model, image = tiny_r50(), rgb_noise(96, 128, seed=2)
    fast, full = predict(model, image, "bf16"), analyse(model, image)
    assert fast.precision == "bf16" and fast.logits.dtype == torch.float32
    assert fast.label.shape == full.label.shape == image.shape[:2]
    assert 1e-4 < scaled_error(fast.logits, full.logits) < 0.05  # bf16 did run, and close
    assert (fast.label == full.label).mean() >= 0.99  # measured 1.0 on this model


def test_teaching_views_stay_fp32_and_equal_the_plain_model(passes, bf16_cpu, image_path):
    seg = runtime.segmentation(R50, image_path)
    assert seg.prediction.precision == "bf16" and seg.agreement is None and passes == ["predict"]
    a = runtime.see(R50, image_path).analysis
    assert a.precision == "fp32" and passes == ["predict", "analyse"]
    model = models.get_model(R50)
    with torch.inference_mode():
        plain = model.inspect(network_input(model, a.image)[1])
    assert a.logits.dtype == a.split.parts.dtype == torch.float32
    assert_scaled_close(a.logits, plain.logits[0], msg="logits")
    for k, branch in a.branches.items():
        assert branch.dtype == torch.float32 and a.filters[k].dtype == np.float32
        assert_scaled_close(branch, plain.branches[k][0], msg=f"branch {k}")
        assert_scaled_close(torch.from_numpy(a.filters[k]), plain.filters[k][0], msg=f"filters {k}")
    assert_scaled_close(a.split.total().relu(), plain.fused[0], msg="bottleneck split")
    again = runtime.segmentation(R50, image_path)  # e.g. the opacity moved: both passes cached
    assert again.prediction is seg.prediction and passes == ["predict", "analyse"]
    assert again.agreement == float((seg.prediction.label == a.label).mean()) >= 0.99


def test_small_models_share_one_fp32_pass_between_all_views(passes, bf16_cpu, image_path):
    seg = runtime.segmentation("demo", image_path)
    assert runtime.see("demo", image_path).analysis is seg.prediction and passes == ["analyse"]
    assert seg.prediction.precision == "fp32" and seg.agreement is None


def test_the_description_names_the_precision(passes, bf16_cpu, image_path):
    text = segmentation.segment(R50, image_path, None, 0.6, None)[-1]
    assert "prediction in **bf16** (fast path" in text and "other views run in fp32" in text
    assert "once their pass has run" in text
    explain.attribution(R50, image_path, 0.0, None)
    text = segmentation.segment(R50, image_path, None, 0.6, None)[-1]
    assert "%** of pixels agree with it" in text and passes == ["predict", "analyse"]
    fast = predict(tiny_r50(), rgb_noise(40, 40), "bf16")
    assert "**99.87%** of pixels agree" in segmentation.describe(Segmented(fast, [], None, 0.99871))
    demo = segmentation.segment("demo", image_path, None, 0.6, None)[-1]
    assert "prediction in fp32, from the pass every view shares" in demo and "bf16" not in demo
