"""Do the dynamic multi-scale filters matter? mIoU of a trained DMNet under ablations.

    python -m training.ablation assets/demo/dmnet_r18-d8_context.pth         # ContextShapes
    python -m training.ablation CKPT --data-root data/cityscapes --limit 100

Each variant is evaluated exactly like `training.evaluate` (same test pipeline and metrics):

- `full`: the model as trained.
- `without <part>` for each input of DMHead's bottleneck (`x`, `k=1`, `k=3`, ...): that input's
  contribution removed. The bottleneck conv has no bias, so zeroing its weight slice for the part
  is exactly zeroing the part's output before the concatenation (the app's "remove" ablation).
- `static filters`: every generated filter replaced by its mean over the evaluated images (per
  branch, channel and tap): the same head with filters that no longer depend on the input.
- `k=<k> taps summed` for each k > 1: branch k's generated filters with all their taps moved to
  the centre tap (`dmnet.heads.summed_taps`). Each channel still gets its input-dependent gain, the sum of
  the k x k filter, but no longer its layout: branch k acts as a 1x1 filter. Where the reduced
  features are flat over the filter's window the output is unchanged, so the drop measures
  what the layout adds at edges and textures (the app's "taps summed" ablation). `all taps
  summed`: every k > 1 at once.
"""

from __future__ import annotations

import argparse
import copy
import json
from collections.abc import Collection
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset
from tqdm import tqdm

from dmnet.heads import summed_taps
from dmnet.inference import normalize, test_resize
from dmnet.model import DMNet

from .data import MultiScaleShapes
from .evaluate import checkpoint_and_data, checkpoint_arguments, evaluate


def part_names(model: DMNet) -> list[str]:
    """The bottleneck's inputs in concatenation order: "x", then "k=1", "k=3", ..."""
    return ["x", *(f"k={k}" for k in model.decode_head.filter_sizes)]


def without_part(model: DMNet, name: str) -> DMNet:
    """A copy of `model` whose bottleneck ignores the input `name` (see `part_names`)."""
    names = part_names(model)
    if name not in names:
        raise ValueError(f"unknown part {name!r}; the parts are {names}")
    head = model.decode_head
    widths = [head.bottleneck.conv.in_channels - len(head.filter_sizes) * head.conv_seg.in_channels,
              *[head.conv_seg.in_channels] * len(head.filter_sizes)]
    start = sum(widths[:names.index(name)])
    ablated = copy.deepcopy(model)
    with torch.no_grad():
        ablated.decode_head.bottleneck.conv.weight[:, start:start + widths[names.index(name)]] = 0
    return ablated


class StaticFilters(nn.Module):
    """Stands in for a DCM's filter_gen_conv: the same (C, k, k) filters for every input."""

    def __init__(self, filters: Tensor) -> None:
        super().__init__()
        self.register_buffer("filters", filters)

    def forward(self, pooled: Tensor) -> Tensor:
        """(N, C_in, k, k) pooled input (ignored) -> (N, C, k, k) fixed filters."""
        return self.filters.unsqueeze(0).expand(pooled.shape[0], -1, -1, -1)


class SummedTaps(nn.Module):
    """Wraps a DCM's filter_gen_conv: the filters it generates, as `summed_taps`."""

    def __init__(self, generator: nn.Module) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, pooled: Tensor) -> Tensor:
        return summed_taps(self.generator(pooled))


def with_summed_taps(model: DMNet, filter_sizes: Collection[int]) -> DMNet:
    """A copy of `model` whose DCMs of `filter_sizes` apply their filters' summed taps."""
    unknown = set(filter_sizes) - set(model.decode_head.filter_sizes)
    if unknown:
        raise ValueError(f"no DCM of filter size {sorted(unknown)}; the model has "
                         f"{list(model.decode_head.filter_sizes)}")
    summed = copy.deepcopy(model)
    for dcm in summed.decode_head.dcm_modules:
        if dcm.filter_size in filter_sizes:
            dcm.filter_gen_conv = SummedTaps(dcm.filter_gen_conv)
    return summed


@torch.no_grad()  # not inference_mode: the means become buffers of a model used anywhere
def generated_filters(model: DMNet, data: Dataset, limit: int | None = None,
                      progress: bool = False) -> dict[int, Tensor]:
    """Per filter size k, the (R, C, k, k) filters generated for the first R = `limit` images of
    `data` (all by default), each seen through the single-scale test pipeline."""
    preset, n = model.preset, min(len(data), limit or len(data))
    banks: dict[int, list[Tensor]] = {}
    for i in tqdm(range(n), disable=not progress, desc="generated filters", leave=False):
        image = data[i][0]
        x = normalize(test_resize(image, preset.test_scale), preset.mean, preset.std)
        for k, f in model.inspect(x.to(model.device)).filters.items():
            banks.setdefault(k, []).append(f[0].float().cpu())
    return {k: torch.stack(b) for k, b in banks.items()}


def mean_filters(model: DMNet, data: Dataset, limit: int | None = None,
                 progress: bool = False) -> dict[int, Tensor]:
    """Per filter size k, the (C, k, k) mean of the generated filters over `data`'s images (summed
    in float64), on the model's device."""
    return {k: b.double().mean(0).float().to(model.device)
            for k, b in generated_filters(model, data, limit, progress).items()}


def with_static_filters(model: DMNet, filters: dict[int, Tensor]) -> DMNet:
    """A copy of `model` whose DCMs apply `filters[k]` to every input."""
    static = copy.deepcopy(model)
    for dcm in static.decode_head.dcm_modules:
        dcm.filter_gen_conv = StaticFilters(filters[dcm.filter_size].to(model.device))
    return static


@dataclass
class Row:
    variant: str
    mIoU: float
    drop: float  # mIoU of `full` minus this variant's (points)
    aAcc: float
    IoU: dict[str, float]
    size_buckets: dict | None


def ablate(model: DMNet, data: Dataset, limit: int | None = None,
           progress: bool = False) -> list[Row]:
    """Evaluate `full`, `without <part>` for every part, `static filters`, `k=<k> taps summed`
    for every k > 1 and `all taps summed` (every k > 1 at once) on `data`."""
    variants = {"full": model,
                **{f"without {p}": without_part(model, p) for p in part_names(model)}}
    variants["static filters"] = with_static_filters(
        model, mean_filters(model, data, limit, progress))
    larger = [k for k in model.decode_head.filter_sizes if k > 1]
    variants |= {f"k={k} taps summed": with_summed_taps(model, [k]) for k in larger}
    variants["all taps summed"] = with_summed_taps(model, larger)
    rows: list[Row] = []
    for name, variant in variants.items():
        metrics, buckets = evaluate(variant.eval(), data, limit=limit, progress=progress)
        base = rows[0].mIoU if rows else metrics.mIoU
        rows.append(Row(name, metrics.mIoU, base - metrics.mIoU, metrics.aAcc, metrics.IoU,
                        buckets))
    return rows


def format_rows(rows: list[Row]) -> str:
    classes = list(rows[0].IoU)
    width = max(len(r.variant) for r in rows)
    head = f"{'variant':<{width}}  {'mIoU':>6}  {'drop':>6}  " + "  ".join(
        f"{c[:8]:>8}" for c in classes)
    lines = [head]
    for r in rows:
        lines.append(f"{r.variant:<{width}}  {r.mIoU:6.2f}  {r.drop:6.2f}  " + "  ".join(
            f"{r.IoU[c]:8.2f}" for c in classes))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="mIoU of a DMNet with branches removed, with "
                                                 "static (mean) filters and with each branch's "
                                                 "filter taps summed (1x1).")
    checkpoint_arguments(parser, ".ablation.json")
    args = parser.parse_args()

    model, data = checkpoint_and_data(args.checkpoint, args.data_root, args.split, args.device)
    p = model.preset
    rows = ablate(model, data, args.limit, progress=True)
    n = min(len(data), args.limit or len(data))
    print(f"{p.name} on {n} {args.split} images"
          f"{f' ({type(data).__name__})' if isinstance(data, MultiScaleShapes) else ''}\n")
    print(format_rows(rows))
    out = args.out or args.checkpoint.with_suffix(".ablation.json")
    out.write_text(json.dumps({"checkpoint": str(args.checkpoint), "preset": p.name,
                               "split": args.split, "images": n,
                               "rows": [asdict(r) for r in rows]}, indent=1))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
