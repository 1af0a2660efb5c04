"""Loading DMNet checkpoints: `load_checkpoint(path_or_url, preset=None, map_location=None)`.

Reads, with `strict=True` semantics after stripping DDP's `module.` prefix:
- official v0.x files: `{"meta": {"CLASSES", "PALETTE", "config", ...}, "state_dict"}`;
- mmseg 1.x files: `{"meta": {"dataset_meta": {"classes", "palette", ...}}, "state_dict", ...}`,
  including full training checkpoints whose `message_hub` pickles mmengine objects;
- bare state dicts (`model.state_dict()`), `module.`-prefixed or not;
- this project's training checkpoints (the contract below).
Sources: a path, an http(s):// or file:// URL, or a preset name (its official checkpoint), the last
two through the torch hub cache with a sha256 check (`dmnet.hub`).

Safety: files are read with `torch.load(weights_only=True)`. Only when that refuses a global
(mmengine `HistoryBuffer`, numpy arrays) are they read again through `dmnet.safe_pickle`, which
replaces unknown classes with inert stand-ins and refuses to call anything: no pickled code runs.

The preset, unless given, is taken from (1) `meta["preset_config"]` (the exact `Preset` our
training stores), else (2) the file name of an official checkpoint (its v0.x name, its sha256
prefix, or a preset name in it), else (3) `meta["preset"]` (a `PRESETS` name), else (4) guessed from
the weights (depth from block counts, widths from shapes, classes from the classifier) with a
warning that says what was inferred from what. In (2)-(4), class names and palette in the
checkpoint's meta then replace the preset's where they differ (a known dataset's names select it).

Contract for our training code: write mmseg 1.x's layout, with `checkpoint_meta(model)` in `meta`:
    torch.save({"meta": {**checkpoint_meta(model), "iter": it}, "state_dict": model.state_dict(),
                "optimizer": optimizer.state_dict()}, path)
`meta["preset_config"]` (`dataclasses.asdict(preset)`), `meta["preset"]` (its name) and
`meta["dataset_meta"]` (classes, palette) are what is read back; mmsegmentation reads
`meta["dataset_meta"]` and `state_dict` of the same file. All are plain data (weights_only).
"""

from __future__ import annotations

import dataclasses
import pickle
import warnings
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from . import safe_pickle
from .backbone import STAGE_BLOCKS
from .hub import CheckpointError, resolve
from .model import DMNet
from .presets import CONTEXT, DATASETS, PRESETS, Preset, Schedule, get_preset

__all__ = ["CheckpointError", "checkpoint_meta", "load_checkpoint"]

# Keys that every DMNet state dict has and that preset inference reads.
REQUIRED_KEYS = ("backbone.stem.0.weight", "backbone.stem.6.weight",
                 "backbone.layer1.0.conv1.weight", "decode_head.conv_seg.weight",
                 "decode_head.bottleneck.conv.weight", "auxiliary_head.convs.0.conv.weight")
PREFIXES = ("backbone.", "decode_head.", "auxiliary_head.")
DCM_PREFIX = "decode_head.dcm_modules."  # + the module's index: one DCM per filter size
SHOWN = 10  # longest list of keys an error message spells out


def load_checkpoint(path_or_url: str | Path, preset: Preset | str | None = None,
                    map_location: str | torch.device | None = None) -> DMNet:
    """A DMNet with a checkpoint's weights, in eval mode on `map_location` (default CPU).

    Args:
        path_or_url: a file, an http(s):// or file:// URL, or a preset name (v0.x alias too).
        preset: the architecture to build (a `Preset` or its name); inferred when None.
        map_location: device of the returned model.
    Raises:
        CheckpointError: with a specific message, for every problem with the file.
    """
    path, named = resolve(path_or_url)
    state_dict, meta = split_checkpoint(read_file(path), path.name)
    if preset is not None:
        preset, how = (get_preset(preset) if isinstance(preset, str) else preset), "as given"
    elif named is not None:
        preset, how = with_meta_classes(named, meta), "as named"
    else:
        preset, how = infer_preset(state_dict, meta, path.name)
    try:
        model = DMNet(preset)
    except ValueError as err:  # e.g. a depth no ResNetV1c has, read from meta["preset_config"]
        raise CheckpointError(f"preset {preset.name} ({how}) cannot be built: {err}") from None
    check_keys(model, state_dict, f"{path.name} does not fit preset {preset.name} ({how})")
    check_finite(state_dict, path.name)
    model.load_state_dict(state_dict, strict=True)
    return model.eval().to(map_location or "cpu")


def checkpoint_meta(model: DMNet) -> dict[str, Any]:
    """`meta` entries that let `load_checkpoint` (and mmsegmentation) read a checkpoint back:
    mmseg 1.x `dataset_meta`, our `preset` name and the whole preset as `preset_config`."""
    p = model.preset
    return {
        "dataset_meta": {"classes": p.classes, "palette": [list(c) for c in p.palette],
                         "label_map": None, "reduce_zero_label": p.reduce_zero_label},
        "preset": p.name,
        "preset_config": dataclasses.asdict(p),
    }


# --- reading the file -----------------------------------------------------------------------------

def read_file(path: Path) -> Any:
    """The unpickled content of a torch.save file, without running any pickled code."""
    check_format(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        pass  # a global outside torch's allowlist (e.g. mmengine's): read again with stand-ins
    except Exception as err:  # noqa: BLE001 -- torch's errors become one readable message
        raise CheckpointError(f"{path} could not be read: {first_line(err)}") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=safe_pickle)
    except safe_pickle.UnsafePickleError as err:
        raise CheckpointError(f"{path} is unsafe: {err}") from None
    except Exception as err:  # noqa: BLE001
        raise CheckpointError(f"{path} could not be read: {first_line(err)}") from None


def check_format(path: Path) -> None:
    """Raise unless `path` looks like a complete torch.save file (zip archive or legacy pickle)."""
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes): an interrupted download or copy?")
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(b"PK\x03\x04"):
        if not zipfile.is_zipfile(path):
            raise CheckpointError(
                f"{path} is truncated or corrupt: a zip archive without its end ({size:,} bytes), "
                "usually an interrupted download or copy")
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        if any(n.endswith("constants.pkl") for n in names):
            raise CheckpointError(f"{path} is a TorchScript archive, not a checkpoint of weights")
        if not any(n.endswith("data.pkl") for n in names):
            raise CheckpointError(f"{path} is a zip archive, not a torch.save file (no data.pkl)")
    elif not head.startswith(b"\x80"):  # pickle protocol >= 2: torch's legacy format
        raise CheckpointError(f"{path} is not a PyTorch checkpoint: {describe_bytes(head)}")


def describe_bytes(head: bytes) -> str:
    kinds = {b"\x89PNG": "a PNG image", b"\xff\xd8\xff": "a JPEG image", b"GIF8": "a GIF image",
             b"%PDF": "a PDF document", b"\x1f\x8b": "a gzip archive"}
    for magic, kind in kinds.items():
        if head.startswith(magic):
            return f"it is {kind}"
    if head.lstrip()[:1] in (b"<", b"{"):
        return "it is text (HTML or JSON: an error page saved instead of the file?)"
    return (f"it starts with bytes {head[:8].hex()}, while a torch.save file is a zip archive "
            "(starting with PK) or a legacy pickle (starting with 0x80)")


def first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"


def split_checkpoint(obj: Any, name: str) -> tuple[dict[str, Tensor], Mapping]:
    """(state dict without `module.` prefixes, meta) of any supported layout."""
    if isinstance(obj, safe_pickle.StandIn):
        raise CheckpointError(f"{name} holds a pickled {obj.global_name} object, not a dict of "
                              "weights; save model.state_dict() instead")
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{name} holds a {type(obj).__name__}, not a dict of weights")
    nested = isinstance(obj.get("state_dict"), Mapping)
    raw = obj["state_dict"] if nested else obj
    meta = obj.get("meta") if nested and isinstance(obj.get("meta"), Mapping) else {}
    if not raw:
        raise CheckpointError(f"{name} holds an empty state dict")
    others = [str(k) for k, v in raw.items() if not isinstance(v, Tensor)]
    if others:
        where = "its state_dict" if nested else "it has no 'state_dict', and its top level"
        raise CheckpointError(f"{name} is not a checkpoint of weights: {where} holds "
                              f"{len(others)} non-tensor entries: {', '.join(others[:SHOWN])}")
    return {str(k).removeprefix("module."): v for k, v in raw.items()}, meta


# --- checking the weights -------------------------------------------------------------------------

def check_keys(model: DMNet, state_dict: Mapping[str, Tensor], title: str) -> None:
    """Raise with a readable diff unless `state_dict` has exactly the model's keys and shapes."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state_dict.items()}
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    shapes = [f"{k}: expected {expected[k]}, got {got[k]}"
              for k in expected if k in got and got[k] != expected[k]]
    if not (missing or unexpected or shapes):
        return
    lines = [title + ":"]
    if not any(k.startswith(PREFIXES) for k in got):
        lines.append("  none of its keys start with backbone./decode_head./auxiliary_head.: "
                     "it is not a DMNet state dict")
    dcms, sizes = dcm_indices(got), model.preset.filter_sizes
    if dcms and dcms != set(range(len(sizes))):
        lines.append(f"  {dcm_mismatch(dcms, sizes)}")
    for what, items in (("missing keys", missing), ("unexpected keys", unexpected),
                        ("keys with the wrong shape", shapes)):
        if items:
            lines.append(f"  {len(items)} {what}:")
            lines += [f"    {item}" for item in items[:SHOWN]]
            if len(items) > SHOWN:
                lines.append(f"    ... and {len(items) - SHOWN} more")
    raise CheckpointError("\n".join(lines))


def dcm_indices(keys: Iterable[str]) -> set[int]:
    """The indices N of the `decode_head.dcm_modules.N.*` keys."""
    parts = (k.removeprefix(DCM_PREFIX).split(".")[0] for k in keys if k.startswith(DCM_PREFIX))
    return {int(n) for n in parts if n.isdigit()}


def dcm_mismatch(present: set[int], sizes: tuple[int, ...]) -> str:
    """Which dynamic convolutional modules are missing (or extra) for these filter sizes."""
    missing = [i for i in range(len(sizes)) if i not in present]
    if missing:
        names = ", ".join(f"{DCM_PREFIX}{i} (k={sizes[i]})" for i in missing)
        return (f"it lacks {names} of the filter sizes {sizes}: a DMNet head has one dynamic "
                "convolutional module per size")
    extra = ", ".join(f"{DCM_PREFIX}{i}" for i in sorted(present) if i >= len(sizes))
    return (f"it has {len(present)} dynamic convolutional modules ({extra} beyond the filter "
            f"sizes {sizes}); filter sizes are not stored in the weights: pass preset=")


def check_finite(state_dict: Mapping[str, Tensor], name: str) -> None:
    """Raise naming every floating-point tensor with NaN or Inf values."""
    bad = []
    for k, v in state_dict.items():
        # NaN/Inf always reach the sum, a cheap screen; a sum that overflowed is a false alarm.
        if v.is_floating_point() and not v.sum().isfinite() and not v.isfinite().all():
            nan = int(v.isnan().sum())
            bad.append(f"{k} ({nan} NaN, {int(v.isinf().sum())} Inf of {v.numel()})")
    if bad:
        more = f"\n  ... and {len(bad) - SHOWN} more" if len(bad) > SHOWN else ""
        raise CheckpointError(f"{name} has non-finite weights (NaN/Inf) in {len(bad)} tensors "
                              "(a diverged training run?):\n  " + "\n  ".join(bad[:SHOWN]) + more)


# --- which preset ---------------------------------------------------------------------------------

def infer_preset(state_dict: Mapping[str, Tensor], meta: Mapping, name: str) -> tuple[Preset, str]:
    """(preset, how it was found): meta["preset_config"], the file name, meta["preset"], shapes."""
    config = meta.get("preset_config")
    preset = preset_from_config(config) if config is not None else None
    if preset is not None:
        return preset, "from meta['preset_config']"
    preset = preset_from_filename(name)
    if preset is not None:
        return with_meta_classes(preset, meta), "from the file name"
    meta_name = meta.get("preset")
    if isinstance(meta_name, str) and meta_name in PRESETS:
        return with_meta_classes(PRESETS[meta_name], meta), "from meta['preset']"
    note = f"; meta['preset'] = {meta_name!r} is not a known preset" if meta_name else ""
    if config is not None:
        note += "; meta['preset_config'] does not fit this version's Preset"
    preset, reasons = guess_from_shapes(state_dict, name)
    preset = with_meta_classes(preset, meta)
    warnings.warn(f"{name}: guessed preset {preset.name} from its weights: {reasons}{note}. "
                  "Pass preset= to choose another.", stacklevel=3)
    return preset, "guessed from the weights"


def preset_from_config(config: Any) -> Preset | None:
    """The `Preset` that `dataclasses.asdict` made `config`; None if it does not fit."""
    try:
        return Preset(**{**config, "schedule": Schedule(**config["schedule"])})
    except (TypeError, KeyError, ValueError):
        return None


def preset_from_filename(name: str) -> Preset | None:
    """The preset whose sha256 prefix, v0.x name or 1.x name the file name contains."""
    for p in PRESETS.values():
        if p.sha256_prefix and f"-{p.sha256_prefix}." in name:
            return p
    found = [(n, p) for p in PRESETS.values() for n in (p.v0_name, p.name) if n and n in name]
    return max(found, key=lambda found_name: len(found_name[0]))[1] if found else None


def guess_from_shapes(sd: Mapping[str, Tensor], name: str) -> tuple[Preset, str]:
    """The closest preset, resized to the weights' shapes; and what was read from where."""
    lacking = [k for k in REQUIRED_KEYS if k not in sd]
    if lacking:
        raise CheckpointError(
            f"{name} is not a DMNet checkpoint: it lacks {', '.join(lacking)}; its {len(sd)} keys "
            f"start with {', '.join(list(sd)[:5])}")
    blocks = tuple(len({k.split(".")[2] for k in sd if k.startswith(f"backbone.layer{i}.")})
                   for i in range(1, 5))
    bottleneck = "backbone.layer1.0.conv3.weight" in sd
    depth = next((d for d, b in STAGE_BLOCKS.items() if b == blocks and (d >= 50) == bottleneck),
                 None)
    if depth is None:
        kind = "bottleneck" if bottleneck else "basic"
        raise CheckpointError(f"{name}: a backbone with {blocks} {kind} blocks per stage is not "
                              f"a ResNetV1c-{'/'.join(map(str, STAGE_BLOCKS))}")
    num_classes = sd["decode_head.conv_seg.weight"].shape[0]
    dataset, why = dataset_of_class_count(num_classes, name)
    base = closest_preset(depth, dataset, name)
    dcms = dcm_indices(sd)
    if dcms != set(range(len(base.filter_sizes))):
        raise CheckpointError(f"{name}: {dcm_mismatch(dcms, base.filter_sizes)}")
    shape = {
        "stem_channels": sd["backbone.stem.6.weight"].shape[0],
        "base_channels": sd["backbone.layer1.0.conv1.weight"].shape[0],
        "head_channels": sd["decode_head.bottleneck.conv.weight"].shape[0],
        "aux_channels": sd["auxiliary_head.convs.0.conv.weight"].shape[0],
        "fusion": "decode_head.dcm_modules.0.fusion_conv.conv.weight" in sd,
    }
    if dataset is None:  # numbered classes, unless the meta names them
        preset = variant(base.with_classes(tuple(f"class {i}" for i in range(num_classes))),
                         **shape)
    else:
        preset = variant(base, dataset=dataset, **shape)
    reasons = (f"ResNetV1c-{depth} (blocks per stage {blocks}), {num_classes} classes "
               f"(decode_head.conv_seg) -> {dataset or 'no known dataset'}{why}, widths stem "
               f"{shape['stem_channels']} / base {shape['base_channels']} / head "
               f"{shape['head_channels']} / aux {shape['aux_channels']}"
               f"{', fusion convs' if shape['fusion'] else ''}; crop, test mode and align_corners "
               f"are not stored in weights and were taken from {base.name}")
    return preset, reasons


# Words in the names of our own checkpoints and presets that say which synthetic data (all three
# have 7 classes) a bare state dict was trained on; without one, the bundled demo's (CONTEXT's).
DATA_WORDS = {"context": "context_shapes", "pattern": "pattern_match",
              "shapes": "multiscale_shapes"}


def dataset_of_class_count(num_classes: int, name: str) -> tuple[str | None, str]:
    """(the dataset with this many classes, or None; how it was chosen where several have it):
    a word of `DATA_WORDS` in the file name decides, else the bundled demo's data."""
    candidates = [d for d, (names, _) in DATASETS.items() if len(names) == num_classes]
    if len(candidates) < 2:
        return (candidates or [None])[0], ""
    word = next((w for w, d in DATA_WORDS.items() if w in name.lower() and d in candidates), None)
    if word:
        dataset, how = DATA_WORDS[word], f"'{word}' in the file name"
    else:
        dataset = CONTEXT.dataset if CONTEXT.dataset in candidates else candidates[0]
        how = "no dataset named in the file name"
    others = ", ".join(d for d in candidates if d != dataset)
    return dataset, f" ({how}; {others} have {num_classes} classes too)"


def closest_preset(depth: int, dataset: str | None, name: str) -> Preset:
    """First preset of this depth, preferring this dataset and, for "769" in the name, 769x769."""
    same_depth = [p for p in PRESETS.values() if p.depth == depth]
    if not same_depth:
        raise CheckpointError(f"{name}: no preset has a ResNetV1c-{depth} backbone")
    wants_769 = "769" in name
    return max(same_depth, key=lambda p: (p.dataset == dataset, ("769" in p.name) == wants_769))


def variant(base: Preset, **fields: Any) -> Preset:
    """`base` with `fields` replaced; the name records what changed (unchanged: `base` itself).

    A new `dataset` brings its own class names and palette."""
    changed = {k: v for k, v in fields.items() if getattr(base, k) != v}
    if not changed:
        return base
    suffix = ",".join(f"{k}={v}" for k, v in changed.items())
    if "dataset" in changed:
        changed.update(classes=DATASETS[changed["dataset"]][0],
                       palette=DATASETS[changed["dataset"]][1])
    return dataclasses.replace(base, name=f"{base.name}+{suffix}", **changed)


def with_meta_classes(preset: Preset, meta: Mapping) -> Preset:
    """The preset with the class names and palette of the checkpoint's meta, where they differ.

    Names of a known dataset select it (`variant(dataset=...)`); others make a custom class list.
    """
    classes, palette = classes_in_meta(meta)
    if classes is None or (classes == preset.classes and palette in (None, preset.palette)):
        return preset
    dataset = next((d for d, (names, _) in DATASETS.items() if names == classes), None)
    if dataset is not None and palette in (None, DATASETS[dataset][1]):
        return variant(preset, dataset=dataset)
    return dataclasses.replace(preset.with_classes(classes, palette),
                               name=f"{preset.name}+{len(classes)} classes from meta")


def classes_in_meta(meta: Mapping) -> tuple[tuple[str, ...] | None, tuple | None]:
    """(class names, palette) of mmseg 1.x `meta.dataset_meta` or 0.x `meta.CLASSES/PALETTE`."""
    dataset_meta = meta.get("dataset_meta")
    if isinstance(dataset_meta, Mapping):
        classes, palette = dataset_meta.get("classes"), dataset_meta.get("palette")
    else:
        classes, palette = meta.get("CLASSES"), meta.get("PALETTE")
    if not isinstance(classes, (list, tuple)) or not all(isinstance(c, str) for c in classes):
        return None, None
    try:
        palette = tuple(tuple(int(v) for v in rgb) for rgb in palette)
    except (TypeError, ValueError):
        palette = None
    if palette is not None and (len(palette) != len(classes) or any(len(c) != 3 for c in palette)):
        palette = None
    return tuple(classes), palette
