"""Our DMNet against outputs recorded from mmsegmentation 1.2.2's own DMNet (fixtures/README.md).

Same weights (mmseg's state dict, loaded with strict=True), same inputs: every intermediate of
`Trace`, `segment()` in whole and slide mode, mmseg's predict-time resize/flip, and even-size DCMs.
"""

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from dmnet import DMNet, segment, winograd
from dmnet.fast import optimize
from dmnet.heads import DCM
from dmnet.inference import resize

from ..conftest import tiny_preset

FIXTURES = Path(__file__).parent / "fixtures"
TOL = dict(rtol=1e-4, atol=1e-5)


def load(name):
    ref = torch.load(FIXTURES / f"mmseg_ref_{name}.pt", weights_only=True)
    preset = tiny_preset(18 if name == "r18" else 50, align_corners=ref["align_corners"])
    preset = preset.with_classes(tuple(f"c{i}" for i in range(ref["num_classes"])))
    preset = dataclasses.replace(preset, test_mode="slide", test_crop=ref["slide_cfg"]["crop_size"],
                                 test_stride=ref["slide_cfg"]["stride"])
    model = DMNet(preset)
    model.load_state_dict(ref["state_dict"], strict=True)
    return model.eval(), ref


@pytest.fixture(scope="module", params=["r18", "r50"])
def reference(request):
    return load(request.param)


def recorded_pairs(t, out):
    """(name, ours, mmseg's) for every `Trace` intermediate the fixture recorded."""
    for i, f in enumerate(out.get("features", [])):
        yield f"features[{i}]", t.features[i], f
    for name in ("filters", "reduced", "branches"):
        for k, v in out.get(name, {}).items():
            yield f"{name}[{k}]", getattr(t, name)[k], v
    for name in ("fused", "logits", "aux_logits"):
        yield name, getattr(t, name), out[name]


@pytest.mark.parametrize("inp", ["x_odd", "x_batch"])
def test_trace_equals_mmseg(reference, inp):
    model, ref = reference
    x = ref["inputs"][inp].float()
    out = ref["outputs"][inp]
    with torch.inference_mode():
        t = model.inspect(x)
    for name, got, want in recorded_pairs(t, out):
        torch.testing.assert_close(got, want, **TOL, msg=name)
    if "stem" in out:
        torch.testing.assert_close(model.backbone.maxpool(model.backbone.stem(x)), out["stem"])


@pytest.mark.parametrize("mode", ["whole", "slide"])
def test_segment_equals_mmseg_inference(reference, mode):
    model, ref = reference
    for inp, out in ref["outputs"].items():
        if inp in ref["inputs"] and mode in out:
            got = segment(model, ref["inputs"][inp].float(), mode=mode)
            torch.testing.assert_close(got, out[mode], **TOL, msg=f"{inp} {mode}")


def test_predict_postprocess_equals_mmseg():
    """mmseg's predict: crop padding, un-flip, then a second bilinear resize to ori_shape."""
    model, ref = load("r18")
    for case, out in ref["outputs"]["predict"].items():
        x = ref["inputs"]["x_batch" if case.startswith("batch") else "x_odd"].float()
        scores = segment(model, x, mode="whole")
        for i, meta in enumerate(out["metainfo"]):
            s = scores[i:i + 1]
            left, right, top, bottom = meta.get("padding_size", [0, 0, 0, 0])
            s = s[:, :, top:s.shape[2] - bottom, left:s.shape[3] - right]
            if meta.get("flip"):
                s = s.flip(-1)
            s = resize(s, meta["ori_shape"], ref["align_corners"])
            torch.testing.assert_close(s[0], out["seg_logits"][i], **TOL, msg=case)
            assert torch.equal(s.argmax(1).to(torch.uint8), out["pred"][i]), case


@pytest.mark.parametrize("k", [2, 4])
def test_even_filter_dcm_equals_mmseg(k):
    _, ref = load("r18")
    even = ref["outputs"]["even_dcm"][k]
    dcm = DCM(k, fusion=False, in_channels=64, channels=16)
    dcm.load_state_dict(even["state_dict"], strict=True)
    dcm.eval()
    for inp in ("x_odd", "x_batch"):
        out = dcm(ref["outputs"][inp]["features"][3])
        torch.testing.assert_close(out.filters, even[inp]["filters"], **TOL)
        torch.testing.assert_close(out.reduced, even[inp]["reduced"], **TOL)
        torch.testing.assert_close(out.out, even[inp]["branch"], **TOL)


def assert_relative(got, want, tol, msg):
    """max |got - want| <= tol * max |want|: the error measured against the tensor's scale (an
    element near zero may differ by more than tol of itself after any change of summation order)."""
    err = ((got - want).abs().max() / want.abs().max()).item()
    assert err <= tol, f"{msg}: {err:.1e} of the largest value, over {tol:.0e}"


@pytest.mark.parametrize("forced", [False, True])
@pytest.mark.parametrize("inp", ["x_odd", "x_batch"])
def test_optimized_model_equals_mmseg(reference, inp, forced, monkeypatch):
    """`optimize()`: BN folded into the convs, channels_last, Winograd for the wide 3x3 convs (the
    r50 head's 320-channel bottleneck here). BN folding alone moves r50's logits by up to 6e-5 of
    their scale (measured), so this compares scale-relative errors, at 1e-4. `forced` runs every
    stride-1 3x3 conv, down to 8 channels, by Winograd, which optimize() never does (narrow
    layers stay direct): measured <= 9e-5, checked at 2e-4."""
    monkeypatch.setattr(winograd, "MAX_PADDING_WASTE", math.inf)
    if forced:
        monkeypatch.setattr(winograd, "MIN_CHANNELS", 1)
    model, ref = reference
    fast = optimize(model)
    n_wino = sum(isinstance(m, winograd.WinogradConv2d) for m in fast.modules())
    # Forced: 2 stem convs + the blocks' (R-18: 4 + 3 + 4 + 4; R-50: 3 + 3 + 6 + 3, one
    # per block, less the strided one) + 2 heads = 19 for either depth.
    assert n_wino == (19 if forced else int(model.preset.depth == 50))
    tol = 2e-4 if forced else 1e-4
    out = ref["outputs"][inp]
    x = ref["inputs"][inp].float()
    with torch.inference_mode():
        t = fast.inspect(x)
    for name, got, want in recorded_pairs(t, out):
        assert_relative(got, want, tol, name)
    for mode in ("whole", "slide"):
        if mode in out:
            assert_relative(segment(fast, x, mode=mode), out[mode], tol, mode)
