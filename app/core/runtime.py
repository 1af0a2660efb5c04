"""What the actions share at run time: cached analyses, channel rankings, error handling, GPU.

Every endpoint takes (model key, image file) and finds the pass of that pair here, so API calls
stay stateless and no pass runs twice: every view, the Segmentation view included, reads one
fp32 `Analysis` per image and model (`see`). Two views asking for the same pass at once wait for
one computation. The analyses kept are bounded in bytes (`DMNET_ANALYSIS_CACHE_MB`), and memory a
pass freed goes back to the system when it ends (`release_memory`), so that the server's memory
follows what it holds. The reference filters of a checkpoint (`ranking`) are computed when a view
first needs them, then kept in memory and on disk by the checkpoint's sha256 (`DMNET_CACHE`).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import inspect
import logging
import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np
from gradio import processing_utils
from PIL import Image

from dmnet import CheckpointError, DMNet

from . import models
from .analysis import Analysis, analyse
from .dynamics import PHOTOS, SCENES, Reference, load_reference, reference, save_reference
from .images import (NO_IMAGE, InputError, Picture, fit_to_test_scale, image_key, read_image,
                     read_mask)

log = logging.getLogger("dmnet.app")
ANALYSES_KEPT = 8  # at most this many analyses are kept, and at most analysis_budget() bytes
REFERENCE_VERSION = 1  # of the cached reference files: raise it when `reference` changes
TRIM_PIXELS = 1_000_000  # model inputs from which a pass hands its freed memory back at once

try:  # Hugging Face ZeroGPU: run the decorated functions on a GPU; a no-op elsewhere
    import spaces

    gpu = spaces.GPU
except ImportError:
    def gpu(fn: Callable) -> Callable:
        return fn


def image_file(picture: Image.Image, cache_dir: str | Path, name: str = "image",
               format: str = "webp") -> str:  # noqa: A002 -- Gradio's parameter name
    """`picture` encoded as `format`, in `cache_dir/<sha256 of the bytes>/<name>.<format>`,
    written once, atomically (under a temporary name, then renamed); returns its path.

    Installed below as Gradio's `processing_utils.save_pil_to_cache`, which writes every array
    and PIL output (gr.Image, gr.Gallery, gr.AnnotatedImage's base image and masks) under its
    content but rewrites the file in place each time: a client still fetching the previous
    copy of the same image read a truncated file (h11's "Too little data for declared
    Content-Length"; 6 of 40 calls of 8 clients at once, `app.tools.loadtest`). AnnotatedImage takes
    masks only as arrays, so returning file paths instead cannot cover every output.
    """
    data = processing_utils.encode_pil_to_bytes(picture, format)
    out = Path(cache_dir) / hashlib.sha256(data).hexdigest() / f"{name}.{format}"
    if out.exists():
        os.utime(out)  # as Gradio's save_file_to_cache does: `delete_cache` ages files by time
        return str(out.resolve())
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return str(out.resolve())


processing_utils.save_pil_to_cache = image_file  # for every component, before any app is built


@dataclass
class Seen:
    """An image as one model sees it."""

    key: str  # model key
    model: DMNet
    analysis: Analysis
    notices: list[str]  # what was done to the input
    truth: np.ndarray | None  # (H, W) true class ids, 255 = ignore


# (model key, image key) -> its analysis, least recently used first
_analyses: OrderedDict[tuple[str, str], Analysis] = OrderedDict()
_rankings: dict[str, Reference] = {}
_lock = threading.Lock()  # guards the dicts above and the two below
_computing: dict[tuple[str, str], threading.Lock] = {}  # one lock per pass while it runs
_referencing: dict[str, threading.Lock] = {}  # one lock per model key while its reference runs


def analysis_budget() -> int:
    """Bytes of analyses kept: `$DMNET_ANALYSIS_CACHE_MB` (default 1536: three of an R-50 on a
    2048x1024 model input, ~0.5 GB each; hundreds of the demo's)."""
    return int(float(os.environ.get("DMNET_ANALYSIS_CACHE_MB", 1536)) * 2**20)


def release_memory(pixels: int | None = None) -> None:
    """Hand the memory freed by a pass over `pixels` of model input back to the system: glibc
    keeps freed chunks of up to 32 MB in its heaps, so the server's RSS would stay at the peak
    of its largest pass. Skipped for passes under TRIM_PIXELS, whose leftovers are small and
    reused by the next pass (faulting them in again cost R-101 at 683x512 0.2-0.4 s of a 2.9 s
    pass). A no-op without glibc."""
    if pixels is not None and pixels < TRIM_PIXELS:
        return
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def picture(model: DMNet, path: str | Path | None) -> Picture:
    """The image file decoded and fitted to the model's test scale (with notices)."""
    return fit_to_test_scale(read_image(path, model.preset), model.preset)


def see(key: str, path: str | Path | None, truth_path: str | Path | None = None) -> Seen:
    """Load the model, decode the image, and analyse it in fp32 (or take the cached analysis)."""
    if path is None:
        raise InputError(NO_IMAGE)
    model = models.get_model(key)
    pic = picture(model, path)
    found = _pass(key, model, pic)
    truth = read_mask(truth_path, pic.image.shape[:2], model.preset.num_classes)
    return Seen(key, model, found, pic.notices, truth)


def _pass(key: str, model: DMNet, pic: Picture) -> Analysis:
    """The cached analysis of the picture by the model, computed once even when asked for twice
    at once."""
    cache_key = (key, image_key(pic.image))
    with _lock:
        pass_lock = _computing.setdefault(cache_key, threading.Lock())
    with pass_lock:
        with _lock:
            found = _analyses.get(cache_key)
            if found is not None:
                _analyses.move_to_end(cache_key)
                return found
        try:
            found = analyse(model, pic.image)
        except BaseException:
            release_memory()
            raise
        release_memory(found.input_size[0] * found.input_size[1])
        with _lock:
            _analyses[cache_key] = found
            _computing.pop(cache_key, None)
            budget = analysis_budget()
            dropped = 0
            while len(_analyses) > 1 and (len(_analyses) > ANALYSES_KEPT or sum(
                    a.nbytes for a in _analyses.values()) > budget):
                dropped += _analyses.popitem(last=False)[1].nbytes
    if dropped:
        release_memory()  # what the analyses dropped held
    return found


def cache_dir() -> Path:
    """Where the app keeps files it computed: `$DMNET_CACHE`, else dmnet-explorer/ in the user's
    cache folder (`$XDG_CACHE_HOME` or ~/.cache)."""
    if os.environ.get("DMNET_CACHE"):
        return Path(os.environ["DMNET_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dmnet-explorer"


def reference_file(key: str, model: DMNet) -> Path | None:
    """The reference cache file of a model: named by the sha256 of its checkpoint file and of
    what defines the reference (its inputs, test pipeline and filter sizes); None for a model
    without a file (e.g. built in a test)."""
    path = models.checkpoint_path(key)
    if path is None or not Path(path).is_file():
        return None
    p = model.preset
    digest = hashlib.sha256(models.file_sha256(path).encode())
    digest.update(repr((REFERENCE_VERSION, SCENES, PHOTOS, p.dataset, p.test_scale,
                        p.mean, p.std, p.filter_sizes, p.head_channels)).encode())
    return cache_dir() / "references" / f"{digest.hexdigest()[:32]}.npz"


def ranking(key: str) -> Reference:
    """The model's filters over its fixed reference inputs (`app.dynamics`): the mean filters
    (the static part) and the channels ranked by how much their dynamic part varies. Computed
    once per checkpoint (tens of seconds for an R-50 on 2 CPU cores), when a view first needs
    it: kept in memory, and on disk (`reference_file`) for the next start."""
    with _lock:
        if key in _rankings:
            return _rankings[key]
        key_lock = _referencing.setdefault(key, threading.Lock())
    with key_lock:
        with _lock:
            if key in _rankings:
                return _rankings[key]
        model = models.get_model(key)
        file = reference_file(key, model)
        result = load_reference(file) if file is not None and file.is_file() else None
        if result is None:
            try:
                result = reference(model)
            finally:
                release_memory()
            if file is not None:
                try:
                    save_reference(result, file)
                except OSError as err:  # a read-only cache: computed again next start
                    log.warning("could not cache the reference filters in %s: %s", file, err)
        with _lock:
            _rankings[key] = result
        return result


def kept(control: type, choices: list, asked, value) -> gr.components.Component:
    """A control's new choices; its value is written only when it must change (the one asked
    for is gone), so that a late event never puts back a value the user has changed since."""
    if value == asked:
        return control(choices=choices)
    return control(choices=choices, value=value)


def channel_choices(r: Reference, k: int) -> list[tuple[str, int]]:
    """Dropdown entries for branch k: most input-dependent channel first, with its score."""
    return [(f"ch {c} · varies {r.score[k][c]:.3g}", int(c)) for c in r.order[k]]


def valid_channel(r: Reference, k: int, channel: int | float | str | None) -> int:
    """The requested channel if it exists in branch k, else the most input-dependent one."""
    try:
        c = int(channel)
    except (TypeError, ValueError):
        return int(r.order[k][0])
    return c if 0 <= c < len(r.order[k]) else int(r.order[k][0])


USER_ERRORS = (InputError, CheckpointError)


def _as_gr_error(err: Exception) -> gr.Error:
    if isinstance(err, USER_ERRORS):
        return gr.Error(str(err), title="Cannot do that", print_exception=False)
    log.exception("unexpected error in the app")
    return gr.Error(f"Unexpected error ({type(err).__name__}: {str(err).splitlines()[0][:300]}). "
                    "The details are in the server log.", print_exception=False)


def user_errors(fn: Callable) -> Callable:
    """Show every failure as a readable message in the UI (gr.Error), never a traceback."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except gr.Error:
                raise
            except Exception as err:  # noqa: BLE001 -- every failure becomes a message
                raise _as_gr_error(err) from None
        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as err:  # noqa: BLE001
            raise _as_gr_error(err) from None
    return wrapper


FILTER_SIZES = (1, 3, 5, 7)  # the columns of the Branches tab (every published DMNet's sizes)
THUMB = 256  # side of the images inside plotly figures


def require_image(path: str | None) -> None:
    """Stop an event chain quietly while there is no image (e.g. the image was cleared)."""
    if not path:
        raise gr.Error("no image", visible=False, print_exception=False)
