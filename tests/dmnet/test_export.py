import contextlib
import io

import onnx
import pytest
import torch
import torch.nn.functional as F

from dmnet import DMNet, checkpoint_meta
from dmnet.export import (adaptive_avg_pool, exportable, export_program, load, main, onnx_runner,
                          pt2_runner, shifted_depthwise_conv, write_onnx)
from dmnet.heads import dynamic_depthwise_conv
from ..conftest import randomize_bn, tiny_preset
from ..tolerance import SCALE_TOL, assert_scaled_close

# 97x129 -> 13x17 features, 61x203 -> 8x26: not divisible by 2, 3 (or 5, 7): uneven bins.
SIZES = [(64, 96), (97, 129), (61, 203)]
FILTER_SIZES = (1, 2, 3)  # exported: one, an even and an odd k, few taps (export takes seconds)


@pytest.mark.parametrize("k", range(1, 9))
@pytest.mark.parametrize("hw", [(13, 17), (8, 26), (5, 5), (3, 11)])
def test_adaptive_avg_pool_equals_torch(k, hw):
    x = torch.randn(2, 3, *hw)
    assert_scaled_close(adaptive_avg_pool(x, k), F.adaptive_avg_pool2d(x, k), msg=f"k={k} {hw}")


@pytest.mark.parametrize("k", range(1, 9))
def test_shifted_depthwise_conv_equals_grouped_conv(k):
    x, filters = torch.randn(2, 4, 13, 17), torch.randn(2, 4, k, k)
    assert_scaled_close(shifted_depthwise_conv(x, filters), dynamic_depthwise_conv(x, filters),
                        msg=f"k={k}")


def test_exportable_model_keeps_every_intermediate():
    model = randomize_bn(DMNet(tiny_preset(filter_sizes=(1, 2, 3, 5, 7))).eval())
    x = torch.randn(2, 3, 97, 129)
    with torch.no_grad():
        want, got = model.inspect(x), exportable(model).inspect(x)
    for k in model.preset.filter_sizes:
        for name in ("filters", "reduced", "branches"):
            assert_scaled_close(getattr(got, name)[k], getattr(want, name)[k], msg=f"{name}[{k}]")
    assert_scaled_close(got.logits, want.logits, msg="logits")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The CLI run once on a tiny checkpoint: (model, ONNX path, .pt2 path, what it printed)."""
    torch.manual_seed(0)
    model = randomize_bn(DMNet(tiny_preset(filter_sizes=FILTER_SIZES)).eval())
    tmp = tmp_path_factory.mktemp("export")
    checkpoint = tmp / "tiny.pth"
    torch.save({"meta": checkpoint_meta(model), "state_dict": model.state_dict()}, checkpoint)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        main([str(checkpoint), str(tmp / "tiny.onnx"), "--pt2", str(tmp / "tiny.pt2"),
              "--size", "64", "96", "--check"])
    return model, tmp / "tiny.onnx", tmp / "tiny.pt2", printed.getvalue()


def runner(exported, kind):
    _, onnx_path, pt2_path, _ = exported
    return onnx_runner(onnx_path) if kind == "onnx" else pt2_runner(pt2_path)


def images(n: int, size: tuple[int, int], seed: int) -> torch.Tensor:
    return torch.randn(n, 3, *size, generator=torch.Generator().manual_seed(seed))


def test_onnx_has_opset_and_dynamic_batch_height_width(exported):
    graph = onnx.load(str(exported[1]))
    assert max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")) >= 17
    (x,) = graph.graph.input
    dims = [d.dim_param or d.dim_value for d in x.type.tensor_type.shape.dim]
    assert dims[1] == 3 and all(isinstance(d, str) and d for d in (dims[0], *dims[2:])), dims


@pytest.mark.parametrize("kind", ["onnx", "pt2"])
def test_exported_equals_pytorch_at_sizes(exported, kind):
    model, run = exported[0], runner(exported, kind)
    for i, size in enumerate(SIZES):
        x = images(1, size, seed=i)
        with torch.no_grad():
            assert_scaled_close(run(x), model(x), msg=f"{kind} {size}")


@pytest.mark.parametrize("kind", ["onnx", "pt2"])
def test_batch_keeps_filters_per_image(exported, kind):
    """Two different images in one batch: each gets its own filters, so its batch-1 output."""
    model, run = exported[0], runner(exported, kind)
    x = images(2, (97, 129), seed=5)
    both = run(x)
    with torch.no_grad():
        for i in range(2):
            assert_scaled_close(both[i:i + 1], run(x[i:i + 1]), msg=f"{kind} image {i} alone")
            assert_scaled_close(both[i:i + 1], model(x[i:i + 1]), msg=f"{kind} image {i}")
    # Not vacuous: the two outputs differ by 100x the bound (4.5e-2 of the scale measured).
    assert (both[0] - both[1]).abs().max() > 100 * SCALE_TOL * both.abs().max()


def test_cli_prints_the_errors_it_checked(exported):
    printed = exported[3]
    for kind in ("onnxruntime", "torch.export"):
        for h, w in [(64, 96), (97, 129), (64, 200)]:
            assert f"{kind} vs PyTorch, {h}x{w}: " in printed, printed
        assert f"{kind} vs PyTorch, batch 2 at 64x200" in printed, printed


def test_static_export_at_opset_19(tmp_path):
    model = randomize_bn(DMNet(tiny_preset(filter_sizes=(1, 3))).eval())
    write_onnx(export_program(model, (64, 64), dynamic=False), tmp_path / "s.onnx", opset=19)
    graph = onnx.load(str(tmp_path / "s.onnx"))
    assert [o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")] == [19]
    dims = [d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 64, 64]
    x = images(1, (64, 64), seed=7)
    with torch.no_grad():
        assert_scaled_close(onnx_runner(tmp_path / "s.onnx")(x), model(x), msg="static")


def test_random_weights_warn():
    with pytest.warns(UserWarning, match="RANDOM weights"):
        model = load("dmnet_r18w32-d8_1xb8-7k_shapes-128x128", random_weights=True)
    assert model.preset.name == "dmnet_r18w32-d8_1xb8-7k_shapes-128x128"


def test_cli_refuses_opsets_it_cannot_write(tmp_path):
    with pytest.raises(SystemExit):
        main(["x.pth", str(tmp_path / "x.onnx"), "--opset", "17"])
