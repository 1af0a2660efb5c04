"""Where checkpoint files come from: local paths, URLs and preset names, via the torch hub cache.

`resolve` turns what the user passed to `dmnet.load_checkpoint` into a local file. URLs
(http, https, file) and preset names (-> the preset's official `checkpoint_url`) are downloaded
with `torch.hub.download_url_to_file` (progress bar, temporary file renamed when complete) into
`torch.hub.get_dir()/checkpoints/` (`$TORCH_HOME/hub/checkpoints`, shared with torch.hub and
mmengine), and reused from there. The file's sha256 must start with the preset's `sha256_prefix`,
or else with the hex digits of `-<hex>.` in the file name (torch.hub's `HASH_REGEX`, the naming
of every published mmseg checkpoint); this is checked after a download and for a cached file.
Local paths are read as they are.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.parse import urlparse

import torch

from .presets import ALIASES, PRESETS, Preset, get_preset

URL_SCHEMES = ("http://", "https://", "file://")


class CheckpointError(ValueError):
    """A checkpoint could not be found, fetched, read or fitted to DMNet; the message says why."""


def resolve(source: str | os.PathLike) -> tuple[Path, Preset | None]:
    """A local checkpoint file for a path, URL or preset name, and the preset when it was named."""
    text = os.fspath(source)
    if text.startswith(URL_SCHEMES):
        return cached_download(text), None
    path = Path(text).expanduser()
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory, not a checkpoint file")
    if path.exists():
        return path, None
    if text in PRESETS or text in ALIASES:
        preset = get_preset(text)
        if preset.checkpoint_url is None:
            raise CheckpointError(f"preset {text} has no published checkpoint; pass a file instead")
        return cached_download(preset.checkpoint_url, preset.sha256_prefix), preset
    raise CheckpointError(f"checkpoint not found: {path} (no such file, and not an http(s):// or "
                          "file:// URL or the name of a preset with a published checkpoint)")


def cached_download(url: str, sha256_prefix: str | None = None, progress: bool = True) -> Path:
    """Download `url` into the torch hub cache unless it is there; verify its sha256 prefix."""
    name = os.path.basename(urlparse(url).path)
    if not name:
        raise CheckpointError(f"the URL {url} does not end in a file name")
    expected = sha256_prefix or hash_in_name(name)
    dst = Path(torch.hub.get_dir()) / "checkpoints" / name
    if dst.exists():
        verify_sha256(dst, expected, "the cached file")
        return dst
    dst.parent.mkdir(parents=True, exist_ok=True)
    print(f'Downloading: "{url}" to {dst}', file=sys.stderr)
    try:
        torch.hub.download_url_to_file(url, str(dst), progress=progress)
    except (URLError, OSError) as err:  # HTTPError is a URLError; timeouts are OSErrors
        reason = err if isinstance(err, HTTPError) else getattr(err, "reason", err)
        raise CheckpointError(
            f"could not download {url}: {reason}. Without network access, fetch the file "
            f"elsewhere and pass its path, or put it at {dst}") from None
    verify_sha256(dst, expected, "the downloaded file")
    return dst


def hash_in_name(name: str) -> str | None:
    """The hex digits of the first `-<hex>.` in a file name (torch.hub's convention), if any."""
    match = torch.hub.HASH_REGEX.search(name)
    return (match.group(1) or None) if match else None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str | None, what: str) -> None:
    """Delete `path` and raise unless its sha256 starts with `expected` (None: nothing to check)."""
    if expected is None:
        return
    digest = sha256_of(path)
    if not digest.startswith(expected):
        path.unlink()
        raise CheckpointError(
            f"sha256 mismatch for {what} {path.name}: expected a hash starting with {expected}, "
            f"got {digest}. The file is corrupt or not the published one; it was deleted from "
            f"{path.parent}, so the next call downloads it again")
