"""The inference layer agrees with dmnet.segment_image; sweep frames and filter banks: shapes."""

import numpy as np
import pytest
import torch

import dmnet
from app.core.analysis import analyse, runner, sweep_frame
from dmnet.heads import ConvModule
from dmnet.winograd import WinogradConv2d

from ..conftest import rgb_noise, tiny_model


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.mark.parametrize("shape", [(100, 140), (512, 512), (37, 300)])
def test_prediction_is_dmnet_segment_image(model, shape):
    image = rgb_noise(*shape, seed=shape[0])
    a = analyse(model, image)
    np.testing.assert_array_equal(a.label, dmnet.segment_image(model, image).argmax(0).numpy())
    c = model.preset.head_channels
    assert a.filters[3].shape == (c, 3, 3) and a.branches[7].shape == (c, *a.feature_size)
    assert a.x_mean.shape == a.feature_size and a.part_names == ("x", "k=1", "k=3", "k=5", "k=7")
    assert a.seconds > 0


def test_forward_passes_run_on_one_optimized_copy_per_model(model):
    fast = runner(model)
    assert fast is runner(model) and fast is not model
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.backbone.modules())
    assert isinstance(model.decode_head.bottleneck.bn, torch.nn.BatchNorm2d)  # original intact
    wide = dmnet.build_model("dmnet_r18w32-d8_1xb8-7k_shapes-128x128").eval()
    assert isinstance(runner(wide).decode_head.bottleneck.conv, WinogradConv2d)  # 512 inputs
    assert isinstance(wide.decode_head.bottleneck, ConvModule)
    image = rgb_noise(192, 192)
    with torch.inference_mode():
        plain = wide.inspect(dmnet.normalize(image, wide.preset.mean, wide.preset.std)).logits[0]
    torch.testing.assert_close(analyse(wide, image).logits, plain, rtol=1e-4, atol=1e-5)
    elsewhere = tiny_model().to("meta")  # any device but the CPU (a GPU) runs the model itself
    assert runner(elsewhere) is elsewhere


def test_sweep_frame_resizes_the_model_input_and_is_the_analysis_at_1x(model):
    image = rgb_noise(64, 96)
    a = analyse(model, image)
    frame = sweep_frame(model, image, 2.0)
    assert frame.input_size == tuple(2 * s for s in a.input_size)
    assert frame.label.shape == (64, 96)
    assert frame.filters[5].shape == (model.preset.head_channels, 5, 5)
    same = sweep_frame(model, image, 1.0)
    assert same.input_size == a.input_size and np.array_equal(same.label, a.label)
    for k, f in a.filters.items():
        np.testing.assert_array_equal(same.filters[k], f)
