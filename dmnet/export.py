"""Export DMNet to ONNX and torch.export: `python -m dmnet.export CK_OR_PRESET OUT.onnx`.

    python -m dmnet.export dmnet_r50-d8_4xb2-40k_cityscapes-512x1024 r50.onnx --check
    python -m dmnet.export run/latest.pth demo.onnx --pt2 demo.pt2 --check
    python -m dmnet.export dmnet_r18w32-d8_1xb8-7k_shapes-128x128 demo.onnx --random-weights

The graph takes a normalized (N, 3, H, W) float32 image `x` and returns the decode logits
(N, classes, ceil(H/8), ceil(W/8)), as `DMNet.forward`; batch, height and width are dynamic unless
`--no-dynamic`. Two ops of the DCM have no dynamic ONNX form, so `exportable(model)` swaps them
(in a copy; the eager model keeps its faster ops):
- the depthwise conv with per-image filters folds the batch into the channels (`groups = N*C`),
  and ONNX's Conv needs a constant `group`: it becomes k*k shifted multiply-adds with the filters
  broadcast per image, `out = sum_ij filters[:, :, i, j, None, None] * padded[:, :, i:i+h, j:j+w]`;
- adaptive average pooling to k x k, whose bins are uneven when k does not divide the feature
  size (ONNX's pooling ops have one fixed window): it becomes explicit bin means, bin i of a
  length-L axis averaging [floor(i*L/k), ceil((i+1)*L/k)) as adaptive_avg_pool2d does, taken
  from differences of a cumulative sum at bin edges computed from the runtime H and W (pooling
  matrices would do too, but torch.export decomposes their matmul into reshapes whose guards
  pin H and W). F.adaptive_avg_pool2d itself exports without complaint but with the traced
  size's bins baked in: traced at 97x129, 8e-3 of the scale off at 128x128, failing at 64x200.
Both give the eager model's outputs to float rounding (tests/dmnet/test_export.py). One traced
program (`export_program`) is saved as .pt2 and translated to ONNX. The plain model's own ops do
trace through torch.export (a symbolic `groups`), but not into ONNX, so both use this one. Export
the plain model, not `optimize(model)`: onnxruntime folds BN itself. Opset 18 is the oldest
written: torch.onnx builds 18 and cannot convert Pad down to 17.
"""

from __future__ import annotations

import argparse
import copy
import functools
import operator
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.export import Dim

from .checkpoint import load_checkpoint
from .heads import DCM, even_aware_padding
from .model import DMNet, build_model

OPSET = 18  # torch.onnx's own: the oldest it writes (older ones fail to convert)
CHECK_SIZES = ((97, 129), (64, 200))  # 13x17 and 8x25 features: uneven bins for most k


def bin_means(x: Tensor, k: int) -> Tensor:
    """Means of the last dim over adaptive_avg_pool2d's k bins [floor(i*L/k), ceil((i+1)*L/k)):
    (..., L) -> (..., k), from differences of a cumulative sum. L may be symbolic: the bins are
    computed by shape ops that export dynamically (no reshape, whose guards would fix L)."""
    size = x.shape[-1]
    i = torch.arange(k, device=x.device)
    start = torch.div(i * size, k, rounding_mode="floor")  # (k,)
    end = torch.div((i + 1) * size + k - 1, k, rounding_mode="floor")  # (k,)
    cum = F.pad(x.cumsum(-1), (1, 0))  # (..., L+1): cum[e] - cum[s] = sum of x[s:e]
    return (cum.index_select(-1, end) - cum.index_select(-1, start)) / (end - start).to(x.dtype)


def adaptive_avg_pool(x: Tensor, k: int) -> Tensor:
    """F.adaptive_avg_pool2d(x, k) with uneven bins, exportable: (N, C, H, W) -> (N, C, k, k)."""
    rows = bin_means(x, k).transpose(-1, -2)  # (N, C, k, H): pooled along W
    return bin_means(rows, k).transpose(-1, -2)


def shifted_depthwise_conv(x: Tensor, filters: Tensor) -> Tensor:
    """heads.dynamic_depthwise_conv as k*k shifted multiply-adds: (N,C,H,W) * (N,C,k,k)."""
    h, w = x.shape[-2:]
    k = filters.shape[-1]
    padded = F.pad(x, even_aware_padding(k))  # (N, C, H+k-1, W+k-1)
    cols = [padded[..., j:j + w] for j in range(k)]  # (N, C, H+k-1, W) per column shift j
    f = filters[..., None, None]  # (N, C, k, k, 1, 1): broadcast over each image's pixels
    terms = (f[:, :, i, j] * cols[j][:, :, i:i + h] for i in range(k) for j in range(k))
    return functools.reduce(operator.add, terms)


class ExportableDCM(DCM):
    """A DCM whose pooling and dynamic conv export (DCM.forward with them in place)."""

    def pool(self, x: Tensor) -> Tensor:
        return adaptive_avg_pool(x, self.filter_size)

    def convolve(self, x: Tensor, filters: Tensor) -> Tensor:
        return shifted_depthwise_conv(x, filters)

    @classmethod
    def of(cls, dcm: DCM) -> "ExportableDCM":
        """The same module (weights copied) with the exportable ops."""
        out = cls(dcm.filter_size, dcm.fusion_conv is not None,
                  dcm.filter_gen_conv.in_channels, dcm.filter_gen_conv.out_channels)
        out.load_state_dict(dcm.state_dict(), strict=True)
        return out.to(dcm.filter_gen_conv.weight.device).eval()


def exportable(model: DMNet) -> DMNet:
    """A copy of `model`, in eval mode, whose DCMs are `ExportableDCM`s."""
    out = copy.deepcopy(model).eval()
    head = out.decode_head
    head.dcm_modules = nn.ModuleList(ExportableDCM.of(m) for m in head.dcm_modules)
    return out


def example_input(size: tuple[int, int], dynamic: bool) -> Tensor:
    # Batch 2 when dynamic: torch.export would specialise a dimension traced at size 1.
    return torch.randn(2 if dynamic else 1, 3, *size, generator=torch.Generator().manual_seed(0))


def dynamic_shapes(dynamic: bool) -> dict | None:
    if not dynamic:
        return None
    return {"x": {0: Dim("batch", min=1, max=256), 2: Dim("height", min=16, max=8192),
                  3: Dim("width", min=16, max=8192)}}


def export_program(model: DMNet, size: tuple[int, int], dynamic: bool = True
                   ) -> torch.export.ExportedProgram:
    """`torch.export` of `exportable(model)`, traced at `size`; save with torch.export.save."""
    with torch.no_grad():
        return torch.export.export(exportable(model), (example_input(size, dynamic),),
                                   dynamic_shapes=dynamic_shapes(dynamic))


def write_onnx(program: torch.export.ExportedProgram, path: str | Path, opset: int = OPSET
               ) -> None:
    """Translate an `export_program` to one ONNX file (weights inside): input `x`, output
    `logits`, the program's dynamic dimensions."""
    torch.onnx.export(program, (), str(path), input_names=["x"], output_names=["logits"],
                      opset_version=opset, external_data=False)


def onnx_runner(path: str | Path) -> Callable[[Tensor], Tensor]:
    """x -> logits through an onnxruntime CPU session with torch's number of threads."""
    import onnxruntime as ort  # here: importing dmnet must not need onnxruntime

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    # No busy-waiting between runs: on a shared CPU it would take cores from other work.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(session.run(None, {"x": x.numpy()})[0])


def pt2_runner(path: str | Path) -> Callable[[Tensor], Tensor]:
    """x -> logits through a torch.export.load'ed program."""
    return torch.export.load(str(path)).module()


def scaled_error(got: Tensor, want: Tensor) -> float:
    """max |got - want| / max |want| (tests/tolerance.py's measure, for the CLI's report)."""
    return ((got.double() - want.double()).abs().max() / want.double().abs().max()).item()


@torch.no_grad()
def check(run: Callable[[Tensor], Tensor], model: DMNet, sizes: list[tuple[int, int]],
          batch: bool) -> list[str]:
    """Lines that say how far `run` is from the eager `model`, per size, and (`batch`) whether
    a batch of two different images gives each its own batch-1 output."""
    g = torch.Generator().manual_seed(1)
    lines = []
    for h, w in sizes:
        x = torch.randn(1, 3, h, w, generator=g)
        lines.append(f"{h}x{w}: {scaled_error(run(x), model(x)):.1e} of the scale")
    if batch:
        h, w = sizes[-1]
        x = torch.randn(2, 3, h, w, generator=g)
        both = run(x)
        errs = [max(scaled_error(both[i:i + 1], run(x[i:i + 1])),
                    scaled_error(both[i:i + 1], model(x[i:i + 1]))) for i in range(2)]
        lines.append(f"batch 2 at {h}x{w}: each image vs its batch-1 output and PyTorch's: "
                     f"{max(errs):.1e} of the scale")
    return lines


def load(source: str, random_weights: bool) -> DMNet:
    """`load_checkpoint(source)`, or with `random_weights` the preset `source` at random init."""
    if not random_weights:
        return load_checkpoint(source)
    warnings.warn(f"exporting {source} with RANDOM weights (mmseg's init): its outputs mean "
                  "nothing; pass a checkpoint for a usable model", stacklevel=2)
    return build_model(source)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("source", help="what dmnet.load_checkpoint takes: a file, a URL, or a "
                                       "preset name (its published checkpoint); with "
                                       "--random-weights, a preset name")
    parser.add_argument("out", type=Path, help="the ONNX file to write")
    parser.add_argument("--no-dynamic", dest="dynamic", action="store_false",
                        help="fixed batch 1 and --size (default: dynamic batch, height, width)")
    parser.add_argument("--opset", type=int, default=OPSET, help=f"{OPSET} (default) or newer")
    parser.add_argument("--size", type=int, nargs=2, metavar=("H", "W"),
                        help="the size traced at (the only one with --no-dynamic); "
                             "default: the preset's crop size")
    parser.add_argument("--pt2", type=Path, help="also save the torch.export program here")
    parser.add_argument("--check", action="store_true",
                        help="compare onnxruntime (and the .pt2) with PyTorch")
    parser.add_argument("--random-weights", action="store_true",
                        help="SOURCE is a preset name; export it randomly initialised (testing)")
    args = parser.parse_args(argv)
    if args.opset < OPSET:
        # torch.onnx builds opset 18 and converts down; the converter cannot lower Pad-18.
        parser.error(f"--opset must be {OPSET} or newer")
    model = load(args.source, args.random_weights)
    size = tuple(args.size or model.preset.crop_size)
    program = export_program(model, size, args.dynamic)
    write_onnx(program, args.out, args.opset)
    print(f"wrote {args.out} (opset {args.opset}, {'dynamic' if args.dynamic else 'static'} "
          f"shapes, traced at {size[0]}x{size[1]})")
    runners = {"onnxruntime": lambda: onnx_runner(args.out)}
    if args.pt2:
        torch.export.save(program, str(args.pt2))
        print(f"wrote {args.pt2}")
        runners["torch.export"] = lambda: pt2_runner(args.pt2)
    if args.check:
        sizes = [size, *CHECK_SIZES] if args.dynamic else [size]
        for name, make in runners.items():
            for line in check(make(), model, sizes, batch=args.dynamic):
                print(f"  {name} vs PyTorch, {line}", flush=True)


if __name__ == "__main__":
    main()
