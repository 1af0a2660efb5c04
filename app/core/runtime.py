"""What the actions share at run time: cached analyses, channel rankings, error handling, GPU.

Every endpoint takes (model key, image file) and finds the pass of that pair here, so API calls
stay stateless and no pass runs twice: the teaching views share one fp32 `Analysis` (`see`); the
Segmentation view takes the same analysis for small models, and a fast `Prediction` (bf16 where it
is native) for ResNet-50/101 ones (`segmentation`), which arrives before the fp32 analysis would.
"""

from __future__ import annotations

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
from .analysis import Analysis, Prediction, analyse, predict, runner, segmentation_precision
from .dynamics import Reference, reference
from .images import (NO_IMAGE, InputError, Picture, fit_to_test_scale, image_key, read_image,
                     read_mask)

log = logging.getLogger("dmnet.app")
ANALYSES_KEPT = 4

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


@dataclass
class Segmented:
    """An image's segmentation, as the Segmentation view shows it."""

    prediction: Prediction  # the fast pass, or the fp32 Analysis every view shares
    notices: list[str]  # what was done to the input
    truth: np.ndarray | None  # (H, W) true class ids, 255 = ignore
    agreement: float | None  # share of the fast prediction's pixels whose class is the fp32
    # analysis' (None: the prediction is that analysis, or it has not run yet)


# (model key, image key, precision) -> the pass: an Analysis in fp32, else a Prediction
_analyses: OrderedDict[tuple[str, str, str], Prediction] = OrderedDict()
_rankings: dict[str, Reference] = {}
_lock = threading.Lock()


def picture(model: DMNet, path: str | Path | None) -> Picture:
    """The image file decoded and fitted to the model's test scale (with notices)."""
    return fit_to_test_scale(read_image(path, model.preset), model.preset)


def see(key: str, path: str | Path | None, truth_path: str | Path | None = None) -> Seen:
    """Load the model, decode the image, and analyse it in fp32 (or take the cached analysis)."""
    model, pic = _opened(key, path)
    found = _pass(key, model, pic, "fp32")
    truth = read_mask(truth_path, pic.image.shape[:2], model.preset.num_classes)
    return Seen(key, model, found, pic.notices, truth)


def segmentation(key: str, path: str | Path | None,
                 truth_path: str | Path | None = None) -> Segmented:
    """The Segmentation view's pass at `segmentation_precision` (or the cached one), and how far
    it agrees with the fp32 analysis when that exists (it is never run for this)."""
    model, pic = _opened(key, path)
    found = _pass(key, model, pic, segmentation_precision(model))
    with _lock:
        full = _analyses.get((key, image_key(pic.image), "fp32"))
    agreement = (None if full is None or full is found
                 else float((found.label == full.label).mean()))
    truth = read_mask(truth_path, pic.image.shape[:2], model.preset.num_classes)
    return Segmented(found, pic.notices, truth, agreement)


def _opened(key: str, path: str | Path | None) -> tuple[DMNet, Picture]:
    if path is None:
        raise InputError(NO_IMAGE)
    model = models.get_model(key)
    return model, picture(model, path)


def _pass(key: str, model: DMNet, pic: Picture, precision: str) -> Prediction:
    """The cached pass of the model over the picture: `analyse` in fp32, else `predict`."""
    cache_key = (key, image_key(pic.image), precision)
    with _lock:
        found = _analyses.get(cache_key)
        if found is not None:
            _analyses.move_to_end(cache_key)
            return found
    found = (analyse(model, pic.image) if precision == "fp32"
             else predict(model, pic.image, precision))
    with _lock:
        _analyses[cache_key] = found
        while len(_analyses) > ANALYSES_KEPT:
            _analyses.popitem(last=False)
    return found


def ranking(key: str) -> Reference:
    """The model's filters over its fixed reference inputs (`app.dynamics`): the mean filters
    (the static part) and the channels ranked by how much their dynamic part varies. Computed
    once per model, on the fp32 runner that makes every analysis."""
    with _lock:
        if key in _rankings:
            return _rankings[key]
    result = reference(runner(models.get_model(key)))
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
