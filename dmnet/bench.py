"""Inference benchmark: `python -m dmnet.bench [--device cpu|cuda] [--repeats N] [--quick]
[--modes slide,ms+flip] [--malloc keep|default]`.

Prints one row per (preset, input size, variant): median ms per image (batch 1) and peak memory;
the variants of a case are timed in turns (round-robin), so that noise hits them alike.
Variants:
  reference  the model as mmsegmentation runs it: NCHW, BN unfused, under torch.no_grad
  fp32       `dmnet.fast.optimize(model)`: BN folded, channels_last, on CPU the wide 3x3 convs by
             Winograd F(4x4, 3x3) (dmnet/winograd.py), inference_mode
  fast       `optimize(model, precision=fast_precision(device))`: bf16 where the CPU has native
             bf16 (AVX-512 BF16 / AMX), bf16/fp16 on CUDA; skipped where it would be fp32 again
  compiled   `optimize(model, compile=True)`: the fp32 variant under torch.compile (inductor,
             weight freezing), its Winograd convs by F(5x5, 3x3) with fused transforms;
             compile time, in the warm-up, is not counted
  inspect    `model.inspect(x)` on the fp32 model (one pass, every intermediate kept)
  onnxruntime  `dmnet.export` of the plain model (dynamic shapes) in an onnxruntime CPU session
             with torch's thread count (CPU only); it exports on its first call, the warm-up, so
             the export counts in its peak MB, not in its time
`--modes` runs, instead, `segment()` in a test mode (MODE_CASES: slide windows, ms+flip views),
one image, against the one-by-one path in turns: `reference` the plain model one window or view
per forward pass as mmseg runs them (`batch_pixels=1`), `fp32` optimize()'s model the same way,
`batched` optimize()'s model with all windows, or an image and its mirror, in one pass
(`batch_pixels=sys.maxsize`; segment()'s default, `pixel_budget`, batches on CUDA only),
`compiled` optimize(compile=True)'s one by one (each view size compiles in the warm-up: minutes).
Every case's process calls `keep_freed_memory()` first, as the other command-line tools do
(`--malloc default` leaves glibc's thresholds, so every large activation page-faults afresh, and
4 KiB pages).
For the fast variant, `agree` is the share of pixels whose argmax equals the fp32 one. Each case
runs in its own process; `peak MB` is that process's peak RSS so far (weights included) on CPU, the
CUDA allocator's peak on GPU.
Weights are random (mmseg's init, with randomised BN statistics); speed does not depend on them.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from .export import export_program, onnx_runner, write_onnx
from .fast import fast_precision, keep_freed_memory, optimize
from .inference import resize, segment
from .model import DMNet, build_model
from .presets import TTA_RATIOS

CASES = [
    ("dmnet_r50-d8_4xb2-40k_cityscapes-512x1024", (512, 512)),
    ("dmnet_r50-d8_4xb2-40k_cityscapes-512x1024", (512, 1024)),
    ("dmnet_r101-d8_4xb2-40k_cityscapes-512x1024", (512, 512)),
    ("dmnet_r101-d8_4xb2-40k_cityscapes-512x1024", (512, 1024)),
    ("dmnet_r18w32-d8_1xb8-6k_context-128x128", (192, 192)),  # the demo model at its test scale
    ("dmnet_r18w32-d8_1xb8-6k_context-128x128", (512, 512)),
]
# Test-mode cases (`--modes`), not run by default: minutes a run on 2 CPU cores.
MODE_CASES = {  # mode: (preset, input size, segment() arguments)
    "slide": ("dmnet_r50-d8_4xb2-80k_cityscapes-769x769", (1024, 2048), dict(mode="slide")),
    "ms+flip": ("dmnet_r50-d8_4xb2-40k_cityscapes-512x1024", (512, 1024),
                dict(scales=TTA_RATIOS, flip=True)),  # 12 views
}


VARIANTS = "reference,fp32,compiled,fast,inspect,onnxruntime"
MODE_VARIANTS = "reference,fp32,batched,compiled"


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of this process so far: CUDA allocator peak, or peak RSS (weights included)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10  # KiB on Linux


def time_once(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def random_model(name: str, device: torch.device) -> DMNet:
    model = build_model(name)
    g = torch.Generator().manual_seed(0)
    for m in model.modules():  # BN statistics as a trained model would have: not identity
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean = torch.randn(m.num_features, generator=g) * 0.1
            m.running_var = torch.rand(m.num_features, generator=g) + 0.5
            m.weight.data = torch.rand(m.num_features, generator=g) + 0.5
    return model.to(device)


Runs = dict[str, tuple[str, Callable[[], object], Callable]]  # variant: (dtype, fn, ctx)


def onnxruntime_fn(model: DMNet, x: torch.Tensor) -> Callable[[], object]:
    """`x` through onnxruntime; the first call exports `model` at x's size (dynamic shapes)."""
    session: list[Callable] = []

    def run() -> torch.Tensor:
        if not session:
            with tempfile.TemporaryDirectory() as tmp:
                write_onnx(export_program(model, tuple(x.shape[-2:])), Path(tmp) / "m.onnx")
                session.append(onnx_runner(Path(tmp) / "m.onnx"))
        return session[0](x)
    return run


def time_runs(runs: Runs, repeats: int, device: torch.device,
              label: str) -> tuple[dict[str, list[float]], dict[str, float]]:
    """(seconds of each timed run, peak MB) by variant: each variant warmed up once (its peak
    memory read then), then timed `repeats` times round-robin, so that a slow spell of a shared
    machine hits every variant alike instead of one."""
    peak = {}
    for variant, (_, fn, ctx) in runs.items():
        with ctx():
            seconds = time_once(fn, device)
        if variant == "compiled":
            print(f"  ({label}: compiled in {seconds:.0f} s)", flush=True)
        peak[variant] = peak_memory_mb(device)
    times: dict[str, list[float]] = {v: [] for v in runs}
    for _ in range(repeats):
        for variant, (_, fn, ctx) in runs.items():
            with ctx():
                times[variant].append(time_once(fn, device))
    return times, peak


def bench_mode_case(mode: str, device: torch.device, repeats: int,
                    variants: list[str]) -> list[dict]:
    """Rows for `segment()` on one image of a MODE_CASES case, timed in turns: the one-by-one
    path on the plain, the optimized and the compiled model, and the batched path on the
    optimized model (those of them in `variants`)."""
    name, size, kw = MODE_CASES[mode]
    model = random_model(name, device)
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(1)).to(device)
    fp32 = optimize(model)
    runs: Runs = {
        "reference": ("fp32", lambda: segment(model, x, batch_pixels=1, **kw), torch.no_grad),
        "fp32": ("fp32", lambda: segment(fp32, x, batch_pixels=1, **kw), torch.inference_mode),
        "batched": ("fp32", lambda: segment(fp32, x, batch_pixels=sys.maxsize, **kw),
                    torch.inference_mode)}
    if "compiled" in variants:  # each view size compiles on its first call, the warm-up
        compiled = optimize(model, compile=True)
        runs["compiled"] = ("fp32", lambda: segment(compiled, x, batch_pixels=1, **kw),
                            torch.inference_mode)
    runs = {v: run for v, run in runs.items() if v in variants}
    times, peak = time_runs(runs, repeats, device, mode)
    return [dict(preset=name, size=f"{size[0]}x{size[1]} {mode}", device=device.type, variant=v,
                 dtype="fp32", ms=1e3 * statistics.median(times[v]), peak_mb=peak[v], agree=None)
            for v in runs]


def bench_case(name: str, size: tuple[int, int], device: torch.device, repeats: int,
               variants: list[str]) -> list[dict]:
    """Rows for one (preset, size): each variant's forward pass, timed by `time_runs`."""
    model = random_model(name, device)
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(1)).to(device)
    fp32 = optimize(model)
    runs: Runs = {}
    if "reference" in variants:
        runs["reference"] = ("fp32", lambda: model(x), torch.no_grad)
    if "fp32" in variants:
        runs["fp32"] = ("fp32", lambda: fp32(x), torch.inference_mode)
    if "compiled" in variants:
        compiled = optimize(model, compile=True)  # compiles on its first call, the warm-up
        runs["compiled"] = ("fp32", lambda: compiled(x), torch.inference_mode)
    if "inspect" in variants:
        runs["inspect"] = ("fp32", lambda: fp32.inspect(x), torch.inference_mode)
    precision = fast_precision(device)
    if "fast" in variants and precision != "fp32":
        fast = optimize(model, precision=precision)
        runs["fast"] = (precision, lambda: fast(x), torch.inference_mode)
    if "onnxruntime" in variants and device.type == "cpu":
        runs["onnxruntime"] = ("fp32", onnxruntime_fn(model, x), torch.no_grad)
    times, peak = time_runs(runs, repeats, device, f"{name} {size}")
    agree = None
    if "fast" in runs:
        with torch.inference_mode():
            ref = resize(fp32(x), size, model.preset.align_corners).argmax(1)
            got = resize(fast(x), size, model.preset.align_corners).argmax(1)
        agree = (ref == got).float().mean().item()
    return [dict(preset=name, size=f"{size[0]}x{size[1]}", device=device.type, variant=variant,
                 dtype=dtype, ms=1e3 * statistics.median(times[variant]), peak_mb=peak[variant],
                 agree=agree if variant == "fast" else None)
            for variant, (dtype, _, _) in runs.items()]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="only the first and last case")
    parser.add_argument("--variants", help=f"default: {VARIANTS}; with --modes {MODE_VARIANTS}")
    parser.add_argument("--modes", help="instead: these MODE_CASES (slide,ms+flip), ~10 min each")
    parser.add_argument("--malloc", choices=["keep", "default"], default="keep",
                        help="keep: `keep_freed_memory()` in every case's process, as the other "
                             "command-line tools do; default: glibc's own thresholds")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # internal: one case, JSON rows out
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    kept = args.malloc == "keep" and keep_freed_memory()
    if args.variants is None:
        args.variants = MODE_VARIANTS if args.modes or args.case in MODE_CASES else VARIANTS
    variants = args.variants.split(",")
    if args.case:
        name, *size = args.case.split(":")
        print(json.dumps(bench_mode_case(name, device, args.repeats, variants)
                         if name in MODE_CASES else
                         bench_case(name, (int(size[0]), int(size[1])), device, args.repeats,
                                    variants)))
        return
    cases = [f"{n}:{h}:{w}" for n, (h, w) in ([CASES[0], CASES[-1]] if args.quick else CASES)]
    cases = args.modes.split(",") if args.modes else cases
    precision = fast_precision(device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}, "
          f"fast precision here: {precision}, freed memory "
          f"{'kept for reuse' if kept else 'returned to the system'}")
    if "fast" in variants and precision == "fp32":
        print("  (no `fast` rows: this CPU has no native bf16 (AVX-512 BF16 / AMX), where oneDNN "
              "would emulate it at several times the fp32 time)")
    header = f"{'preset':45} {'input':17} {'device':6} {'variant':11} {'dtype':5} " \
             f"{'ms/img':>8} {'peak MB':>8} {'vs ref':>6} {'agree':>7}"
    print(header + "\n" + "-" * len(header), flush=True)
    for case in cases:
        # One process per case, so that its peak memory is its own.
        child = [sys.executable, "-m", "dmnet.bench", "--case", case,
                 "--device", args.device, "--repeats", str(args.repeats),
                 "--variants", args.variants, "--malloc", args.malloc]
        out = subprocess.run(child, check=True, capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("  ("):
                print(line, flush=True)
        rows = json.loads(out.splitlines()[-1])
        ref_ms = next((r["ms"] for r in rows if r["variant"] == "reference"), None)
        for r in rows:
            ratio = f"{r['ms'] / ref_ms:6.2f}" if ref_ms else "     -"
            agree = f"{100 * r['agree']:6.2f}%" if r["agree"] is not None else "      -"
            print(f"{r['preset']:45} {r['size']:17} {r['device']:6} {r['variant']:11} "
                  f"{r['dtype']:5} {r['ms']:8.0f} {r['peak_mb']:8.0f} {ratio} {agree}", flush=True)


if __name__ == "__main__":
    main()
