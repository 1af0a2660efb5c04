"""How the tests compare float outputs made by different kernels: mmseg's outputs recorded on
another CPU (tests/dmnet/fixtures/), BN folded into convs, Winograd against the direct conv.

The bound is on the largest error against the tensor's own scale, `max|got - want| <=
tol * max|want|`, at `SCALE_TOL` = 1e-4 unless a test says why it needs more:
- float32 computed in another order (oneDNN's kernels for AVX2, AVX-512 or AMX CPUs block and sum a
  convolution differently; so do folded BN and Winograd) moves an output by ~1e-6..1e-5 of its
  scale: mmseg's fixtures, recorded with AVX2 kernels, against our model with AVX-512 kernels
  measured up to 1.1e-5 (8.5e-5 with oneDNN held to SSE4.1, which no x86-64 CPU of the last
  decade needs; tests/dmnet/fixtures/README.md has the numbers per kernel setting);
- real bugs move it by 1e-3 and more (median 2e-3 for one weight off by 1 %), and even the
  least visible small ones land over the bound: test_mmseg_reference.py's broken models (the
  largest weight of the least sensitive of 101 convs off by 1 %, a BN eps of 1e-3 for 1e-5)
  come out 1.6x to 11x over it.
An elementwise `rtol`/`atol` is the wrong measure here: an element near zero, the sum of large
terms that cancel, may legitimately differ from its recorded value by more than rtol of itself.
"""

import torch

SCALE_TOL = 1e-4


def scaled_error(got: torch.Tensor, want: torch.Tensor) -> float:
    """max |got - want| / max |want| (inf where `want` is all zero and `got` is not)."""
    diff = (got.double() - want.double()).abs().max().item()
    scale = want.double().abs().max().item()
    return diff / scale if scale > 0 else (0.0 if diff == 0 else float("inf"))


def assert_scaled_close(got: torch.Tensor, want: torch.Tensor, tol: float = SCALE_TOL,
                        msg: str = "") -> None:
    """max |got - want| <= tol * max |want|, same shapes; NaN anywhere fails."""
    assert got.shape == want.shape, f"{msg}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    err = scaled_error(got, want)
    assert err <= tol, f"{msg}: off by {err:.2e} of the largest value, over {tol:.0e}"


def assert_same_argmax(logits: torch.Tensor, want_logits: torch.Tensor, want_pred: torch.Tensor,
                       tol: float = SCALE_TOL, msg: str = "") -> None:
    """`logits.argmax(0)` is `want_pred`, except at recorded near-ties. logits (C, H, W).

    Within `assert_scaled_close`'s bound every logit may move by tol * scale, so two classes
    whose recorded logits are less than 2 * tol * scale apart may swap. So each pixel's class
    must score, in the recorded logits, within that of the recorded best: where the recorded
    gap is wider (all but a few pixels) this is exact equality, and a flip to a clearly worse
    class fails."""
    assert torch.equal(want_logits.argmax(0).to(want_pred.dtype), want_pred), f"{msg}: recording"
    pred = logits.argmax(0)
    scale = want_logits.abs().max()
    chosen = want_logits.gather(0, pred[None])[0]
    worse = want_logits.max(0).values - chosen > 2 * tol * scale
    flips = int((pred != want_pred).sum())
    assert not worse.any(), f"{msg}: {int(worse.sum())} pixels of another class ({flips} flips)"
