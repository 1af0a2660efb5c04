import math
import os
import platform
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dmnet import DMNet, segment, winograd
from dmnet.fast import RECOMPILE_LIMIT, fold_bn, optimize

from ..conftest import randomize_bn, tiny_preset
from ..tolerance import assert_scaled_close


def test_fold_bn_equals_conv_then_bn():
    conv = torch.nn.Conv2d(4, 6, 3, padding=2, dilation=2, bias=False)
    bn = randomize_bn(torch.nn.Sequential(torch.nn.BatchNorm2d(6))).eval()[0]
    x = torch.randn(2, 4, 9, 11)
    assert_scaled_close(fold_bn(conv, bn)(x), bn(conv(x)), tol=1e-5)  # one conv: 2.5e-7 measured


def assert_same_trace(got, want):
    """The head's intermediates and both heads' logits, each against its own scale."""
    for name in ("filters", "reduced", "branches"):
        for k, v in getattr(want, name).items():
            assert_scaled_close(getattr(got, name)[k], v, msg=f"{name}[{k}]")
    for name in ("fused", "logits", "aux_logits"):
        assert_scaled_close(getattr(got, name), getattr(want, name), msg=name)


@pytest.mark.parametrize("depth, forced, n_wino", [(18, False, 0), (50, False, 1),
                                                   (50, True, 2 + 3 + 3 + 6 + 3 + 2)])
def test_optimized_model_keeps_every_output(depth, forced, n_wino, monkeypatch):
    """BN folding and channels_last, and Winograd for the 3x3 convs of >= 256 input channels
    (here only tiny R-50's 320-channel head bottleneck). `forced`: every stride-1 3x3 conv by
    Winograd (2 of the stem, one per block less the strided one, 2 heads). Measured <= 2e-6 of
    scale on AVX2, AVX-512 and SSE4.1 kernels."""
    if forced:
        monkeypatch.setattr(winograd, "MIN_CHANNELS", 1)
        monkeypatch.setattr(winograd, "MAX_PADDING_WASTE", math.inf)
    model = randomize_bn(DMNet(tiny_preset(depth)).eval())
    fast = optimize(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.backbone.modules())
    assert sum(isinstance(m, winograd.WinogradConv2d) for m in fast.modules()) == n_wino
    x = torch.randn(2, 3, 97, 129)
    with torch.inference_mode():
        a, b = model.inspect(x), fast.inspect(x)
    assert_same_trace(b, a)
    for i, (fa, fb) in enumerate(zip(a.features, b.features)):
        assert_scaled_close(fb, fa, msg=f"features[{i}]")
    slide = dict(mode="slide", crop_size=(64, 64), stride=(48, 48))
    assert_scaled_close(segment(fast, x, **slide), segment(model, x, **slide), msg="slide")
    # The original model is untouched.
    assert isinstance(model.backbone.layer1[0].bn1, torch.nn.BatchNorm2d)


def test_bf16_autocast_agrees_with_fp32():
    model = randomize_bn(DMNet(tiny_preset(18)).eval())
    fast, fp32 = optimize(model, precision="bf16"), optimize(model)
    x = torch.randn(1, 3, 128, 128)
    with torch.inference_mode():
        lo, hi = fast.inspect(x), fp32.inspect(x)
    assert lo.logits.dtype == torch.float32 and lo.filters[3].dtype == torch.float32
    rel = (lo.logits - hi.logits).norm() / hi.logits.norm()
    assert rel < 0.05


def test_fp16_needs_cuda_and_precision_is_checked(tiny_model):
    with pytest.raises(ValueError, match="CUDA"):
        optimize(tiny_model, precision="fp16")
    with pytest.raises(ValueError, match="precision"):
        optimize(tiny_model, precision="int8")


def test_compiled_model_keeps_every_output(monkeypatch):
    """torch.compile with weight freezing (inductor): a tiny model, with the 3x3 convs of
    stages 3 and 4 and of both heads by Winograd (dilations 1, 2 and 4), as the wide ones of a
    real model are, with F(5x5, 3x3)'s fused transforms, at two input sizes (a second size
    compiled with symbolic shapes raised a dynamo TraceError: ms+flip, slide on a small
    image). No graph breaks: each would compile again per conv and shape, and past dynamo's
    recompile limit the convs would run their elementwise transforms eagerly, slowly."""
    from torch._dynamo.utils import counters

    monkeypatch.setattr(winograd, "MIN_CHANNELS", 32)
    monkeypatch.setattr(winograd, "MAX_PADDING_WASTE", math.inf)
    model = randomize_bn(DMNet(tiny_preset(50)).eval())
    compiled = optimize(model, compile=True)
    tiles = {(m.dilation, m.tiles) for m in compiled.modules()
             if isinstance(m, winograd.WinogradConv2d)}
    five, both = (winograd.COMPILED_TILE,), (winograd.TILE, winograd.COMPILED_TILE)
    assert tiles == {(1, five), (2, both), (4, both)}  # the dilated ones pick per size
    assert torch._dynamo.config.recompile_limit >= RECOMPILE_LIMIT  # models x sizes, not 8
    counters.clear()
    for x in (torch.randn(1, 3, 97, 129), torch.randn(2, 3, 64, 80)):
        with torch.inference_mode():
            a, b = model.inspect(x), compiled.inspect(x)
        assert_same_trace(b, a)
    assert not counters["graph_break"], dict(counters["graph_break"])


FAULTS = """
import resource, sys, torch
from dmnet.fast import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
faults = []
for _ in range(8):  # 64 MiB allocated, written and freed, as a forward pass's activations are
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.empty(16 << 20).fill_(1)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(sum(faults[4:]))
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_keep_freed_memory_stops_page_faults_on_reused_buffers():
    """Each fresh 64 MiB block page-faults on its 16384 pages; kept ones are reused."""
    def last_faults(mode: str) -> int:
        run = subprocess.run([sys.executable, "-c", FAULTS, mode], capture_output=True, text=True,
                             check=True, cwd=Path(__file__).resolve().parents[2],
                             env=without_huge_pages())
        return int(run.stdout.split()[-1])
    pages = (64 << 20) // resource.getpagesize()
    assert last_faults("default") >= 4 * pages * 0.9  # glibc maps and unmaps each one
    assert last_faults("keep") < pages  # after a few rounds the heap holds them


def without_huge_pages() -> dict[str, str]:
    """This environment without THP_MEM_ALLOC_ENABLE (a test that ran a command-line tool's
    main() in-process set it): 4 KiB pages, as a fresh process has them."""
    return {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}


HUGE = """
import sys
import dmnet.predict, training.evaluate  # a tool's imports, as before its main() runs
from dmnet.fast import huge_pages_in_use, keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
print(huge_pages_in_use())
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_keep_freed_memory_puts_large_tensors_on_huge_pages():
    """After keep_freed_memory() (called before the first tensor, as the tools do), torch
    madvises tensors of 2 MiB and more for transparent huge pages; a fresh process does not."""
    def on_huge_pages(mode: str) -> bool:
        run = subprocess.run([sys.executable, "-c", HUGE, mode], capture_output=True, text=True,
                             check=True, cwd=Path(__file__).resolve().parents[2],
                             env=without_huge_pages())
        return run.stdout.split()[-1] == "True"
    assert on_huge_pages("keep") and not on_huge_pages("default")
