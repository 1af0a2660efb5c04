"""Which models the app offers, and loading them once: the demo, the 12 official, uploads.

Keys: "demo" (the bundled checkpoint, `$DMNET_DEMO_CHECKPOINT` or DEMO_DEFAULT), an official
preset name (downloaded on demand into the torch hub cache by `dmnet.load_checkpoint`, with a
progress bar and a sha256 check), "local:<path>" for a file on the server named at start
(`python app.py --checkpoint PATH...`, `$DMNET_CHECKPOINTS`; read when picked), or
"upload:<sha256 prefix>" for a .pth the user uploaded.
Loaded models stay in a small LRU cache shared by every session; a lock keeps two requests from
loading the same model at once.
"""

from __future__ import annotations

import hashlib
import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch

from dmnet import PRESETS, CheckpointError, DMNet, load_checkpoint

ROOT = Path(__file__).resolve().parents[2]
DEMO = "demo"
DEMO_DEFAULT = ROOT / "assets" / "demo" / "dmnet_r18-d8_context.pth"
DEMO_PRESET = "dmnet_r18w32-d8_1xb8-6k_context-128x128"
CACHE_SIZE = 2  # models kept in memory (an official R-101 takes ~0.3 GB)
OFFICIAL = [name for name, p in PRESETS.items() if p.checkpoint_url]
DATASET_TITLES = {"cityscapes": "Cityscapes", "ade20k": "ADE20K"}
SUFFIXES = (".pth", ".pt", ".bin")  # checkpoint files the app takes (uploads, folders)
LOCAL = "local:"


class DemoMissing(CheckpointError):
    """The bundled demo checkpoint is not on disk."""


def demo_checkpoint() -> Path:
    """Where the demo checkpoint is read from: `$DMNET_DEMO_CHECKPOINT`, else assets/demo/."""
    return Path(os.environ.get("DMNET_DEMO_CHECKPOINT") or DEMO_DEFAULT)


def demo_missing_message() -> str:
    path = demo_checkpoint()
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    return (f"The demo checkpoint is missing: no file at `{shown}`. It is this project's small "
            f"DMNet trained on ContextShapes (preset `{DEMO_PRESET}`): `make "
            "demo-checkpoint` trains it (about an hour on 2 CPU cores, resumable) and writes "
            "it there; or "
            "set `DMNET_DEMO_CHECKPOINT` to a DMNet checkpoint. Meanwhile, pick an official "
            "model (downloaded on first use) or upload a .pth.")


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def device_note() -> str:
    """Where the models run, in words."""
    if torch.cuda.is_available():
        return f"GPU ({torch.cuda.get_device_name(0)})"
    return f"CPU ({torch.get_num_threads()} threads; no GPU found)"


def official_file(name: str) -> Path:
    """Where `dmnet.load_checkpoint` keeps an official checkpoint (the torch hub cache)."""
    url = PRESETS[name].checkpoint_url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


@dataclass
class Upload:
    name: str  # the uploaded file's name
    path: Path


_uploads: dict[str, Upload] = {}
_local: dict[str, Path] = {}  # "local:<path>" -> the file
_models: OrderedDict[str, DMNet] = OrderedDict()
_notes: dict[str, list[str]] = {}
_lock = threading.Lock()  # guards the dicts above
_loading: dict[str, threading.Lock] = {}  # one lock per key while it loads


def choices() -> list[tuple[str, str]]:
    """(label, key) of every model the picker offers, loaded ones marked."""
    demo = "demo: small DMNet (ResNet-18) trained on ContextShapes"
    if not demo_checkpoint().is_file():
        demo += " (checkpoint missing)"
    items = [(demo + (" · loaded" if DEMO in _models else ""), DEMO)]
    for name in OFFICIAL:
        p = PRESETS[name]
        state = (" · loaded" if name in _models
                 else " · downloaded" if official_file(name).is_file() else " · download")
        items.append((f"{name} ({DATASET_TITLES.get(p.dataset, p.dataset)} mIoU {p.miou:.2f})"
                      f"{state}", name))
    items += [(f"local: {path.name}" + (" · loaded" if key in _models else ""), key)
              for key, path in _local.items()]
    items += [(f"uploaded: {u.name}" + (" · loaded" if key in _models else ""), key)
              for key, u in _uploads.items()]
    return items


def label_of(key: str) -> str:
    return next((label for label, k in choices() if k == key), key)


def get_model(key: str) -> DMNet:
    """The model for a picker key, loaded on first use (official ones downloaded) and cached.

    Raises:
        CheckpointError (DemoMissing for the demo): with a message for the user.
    """
    with _lock:
        if key in _models:
            _models.move_to_end(key)
            return _models[key]
        key_lock = _loading.setdefault(key, threading.Lock())
    with key_lock:  # one load per key; other keys (and cache hits) do not wait for a download
        with _lock:
            if key in _models:
                return _models[key]
        model, notes = _load(key)
        _store(key, model, notes)
        return model


def dataset_of(key: str) -> str:
    """The dataset the model `key` was trained on (`Preset.dataset`): an official model's from
    its preset, any other's from its checkpoint (loaded, as `get_model`)."""
    return PRESETS[key].dataset if key in OFFICIAL else get_model(key).preset.dataset


def _store(key: str, model: DMNet, notes: list[str]) -> None:
    with _lock:
        _models[key], _notes[key] = model, notes
        while len(_models) > CACHE_SIZE:
            _models.popitem(last=False)


def load_notes(key: str) -> list[str]:
    """What loading a model had to guess (e.g. a preset inferred from the weights)."""
    return _notes.get(key, [])


def _load(key: str) -> tuple[DMNet, list[str]]:
    if key == DEMO:
        path = demo_checkpoint()
        if not path.is_file():
            raise DemoMissing(demo_missing_message())
        return _read(path, path.name)
    if key in _local:
        return _read(_local[key], _local[key].name)
    if key in _uploads:
        upload = _uploads[key]
        return _read(upload.path, upload.name)
    if key in OFFICIAL:
        return _read(key, key)
    raise CheckpointError(f"unknown model {key!r}: pick one of the list, or upload a .pth first")


def _read(source: str | Path, name: str) -> tuple[DMNet, list[str]]:
    """`dmnet.load_checkpoint` with its warnings kept as notes and temp paths replaced by names."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model = load_checkpoint(source, map_location=device())
        except CheckpointError as err:
            message = str(err).replace(str(source), name)
            raise type(err)(message) from None
    notes = [str(w.message).replace(str(source), name) for w in caught
             if issubclass(w.category, UserWarning)]
    return model, notes


def register_upload(path: str | Path, name: str | None = None) -> str:
    """Load an uploaded checkpoint (raising CheckpointError if it is not a DMNet one) and add it
    to the picker; returns its key."""
    path = Path(path)
    key = f"upload:{file_sha256(path)[:12]}"
    name = name or path.name
    if key not in _models:
        _store(key, *_read(path, name))
    with _lock:
        _uploads[key] = Upload(name, path)
    return key


def add_local(paths: Iterable[str | Path]) -> list[str]:
    """Offer checkpoint files on the server in the picker, read only when picked (a bad one then
    gets its message); a folder stands for its checkpoint files. Returns their keys."""
    keys = []
    for path in map(Path, paths):
        files = (sorted(f for f in path.iterdir() if f.suffix in SUFFIXES) if path.is_dir()
                 else [path])
        for file in files:
            key = LOCAL + os.path.abspath(file)
            with _lock:
                _local[key] = file
            keys.append(key)
    return keys


_digests: dict[tuple[str, int, int], str] = {}  # (path, size, mtime) -> sha256 of the file


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file's bytes, read once per version of the file (~0.4 s per 200 MB)."""
    stat = os.stat(path)
    version = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns)
    if version not in _digests:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        _digests[version] = digest.hexdigest()
    return _digests[version]


def checkpoint_path(key: str) -> Path | None:
    """The file a picker key's model is read from (None for an official one not downloaded)."""
    if key == DEMO:
        return demo_checkpoint()
    if key in _local:
        return _local[key]
    if key in _uploads:
        return _uploads[key].path
    if key in OFFICIAL and official_file(key).is_file():
        return official_file(key)
    return None
