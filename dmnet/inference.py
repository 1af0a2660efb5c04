"""Inference with mmsegmentation's test-time semantics, as small pure functions.

`whole`, `slide` and `multi_scale_flip` each take a `logits_fn` (normalized images -> logits at any
resolution), so they can be tested with toy functions. `segment` wires them to a model and its
preset; `normalize` turns uint8 RGB images into the model's input.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .presets import IMAGENET_MEAN, IMAGENET_STD

LogitsFn = Callable[[Tensor], Tensor]


def normalize(images: np.ndarray | Tensor, mean: Sequence[float] = IMAGENET_MEAN,
              std: Sequence[float] = IMAGENET_STD) -> Tensor:
    """uint8 RGB images, (H, W, 3) or (N, H, W, 3), numpy or torch -> normalized (N, 3, H, W)
    float32.

    Same as mmseg's SegDataPreProcessor (BGR->RGB already done: inputs are RGB): (x - mean) / std.
    """
    t = torch.from_numpy(np.ascontiguousarray(images)) if isinstance(images, np.ndarray) else images
    if t.dtype != torch.uint8:
        raise TypeError(f"normalize() expects uint8 RGB images, got dtype {t.dtype}; "
                        "convert 16-bit or float images to 8-bit RGB first")
    if t.ndim == 3:
        t = t.unsqueeze(0)
    if t.ndim != 4 or t.shape[-1] != 3:
        raise ValueError(f"normalize() expects (H, W, 3) or (N, H, W, 3) RGB images, got shape "
                         f"{tuple(t.shape)}; convert grayscale or RGBA images to RGB first")
    m = torch.tensor(mean, dtype=torch.float32, device=t.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=t.device).view(1, 3, 1, 1)
    return (t.permute(0, 3, 1, 2).float() - m) / s


def resize(x: Tensor, size: Sequence[int], align_corners: bool) -> Tensor:
    """Bilinear resize as mmseg's `resize` (no-op when the size already matches)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=align_corners)


def images_per_call(size: Sequence[int], batch_pixels: int | None, total: int) -> int:
    """How many images of `size` (h, w) one forward pass takes: `batch_pixels` of input, at
    least one image; all `total` when there is no budget."""
    return total if batch_pixels is None else max(1, batch_pixels // (size[0] * size[1]))


def whole(logits_fn: LogitsFn, x: Tensor, align_corners: bool,
          batch_pixels: int | None = None) -> Tensor:
    """mmseg `whole_inference`: logits of the full images, resized to their size; the images
    go through `logits_fn` in batches of at most `batch_pixels` (at least one image)."""
    step = images_per_call(x.shape[-2:], batch_pixels, len(x))
    return torch.cat([resize(logits_fn(part), x.shape[-2:], align_corners)
                      for part in x.split(step)])


def slide_windows(h: int, w: int, crop: tuple[int, int],
                  stride: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    """Windows (y1, y2, x1, x2) of mmseg `slide_inference`; the last row/column is shifted back
    inside the image, and windows are never padded (smaller than the crop on small images)."""
    (ch, cw), (sh, sw) = crop, stride
    rows = max(h - ch + sh - 1, 0) // sh + 1
    cols = max(w - cw + sw - 1, 0) // sw + 1
    windows = []
    for i in range(rows):
        for j in range(cols):
            y2, x2 = min(i * sh + ch, h), min(j * sw + cw, w)
            windows.append((max(y2 - ch, 0), y2, max(x2 - cw, 0), x2))
    return windows


def slide(logits_fn: LogitsFn, x: Tensor, crop: tuple[int, int], stride: tuple[int, int],
          num_classes: int, align_corners: bool, batch_pixels: int | None = None) -> Tensor:
    """mmseg `slide_inference`: per-window logits resized to the window, summed, averaged.

    The windows of all images run in batches of at most `batch_pixels` input pixels (at least
    one window; all at once when None); mmseg runs them window by window. Windows are never
    padded, so all have one size: min(crop, image) per side (see `slide_windows`)."""
    n, _, h, w = x.shape
    windows = slide_windows(h, w, crop, stride)
    views = [(win, i) for win in windows for i in range(n)]  # (window, image) pairs
    preds = x.new_zeros((n, num_classes, h, w))
    count = x.new_zeros((1, 1, h, w))
    for y1, y2, x1, x2 in windows:
        count[:, :, y1:y2, x1:x2] += 1
    step = images_per_call((min(crop[0], h), min(crop[1], w)), batch_pixels, len(views))
    for start in range(0, len(views), step):
        part = views[start:start + step]
        crops = torch.stack([x[i, :, y1:y2, x1:x2] for (y1, y2, x1, x2), i in part])
        logits = whole(logits_fn, crops, align_corners)  # (len(part), classes, window h, w)
        for ((y1, y2, x1, x2), i), window_logits in zip(part, logits):
            preds[i, :, y1:y2, x1:x2] += window_logits
    return preds / count


def rescale_size(h: int, w: int, scale: tuple[int, int]) -> tuple[int, int]:
    """mmcv keep-ratio rescale of an (h, w) image to fit `scale` = (long, short): new (h, w).

    Each side is at least 1 px: mmcv rounds a side of a very elongated image (3x2000 to 192 px
    long) down to 0, where cv2 would fail; every other size is mmcv's."""
    factor = min(max(scale) / max(h, w), min(scale) / min(h, w))
    return max(1, int(h * factor + 0.5)), max(1, int(w * factor + 0.5))


def multi_scale_flip(predict: Callable[[Tensor], Tensor], x: Tensor, scales: Sequence[float],
                     flip: bool, align_corners: bool) -> Tensor:
    """mmseg TTA: softmax scores at each scale (and mirrored) resized to the input, averaged.

    `predict` maps images to logits at their resolution (`whole` or `slide`); with `flip` one
    call takes the N images and their N mirrors, as one batch. Each scale r resizes the image as
    mmcv's `Resize(scale_factor=r, keep_ratio=True)` does. Images are resized after
    normalization (mmseg resizes the uint8 image before it; normalization is per-channel affine,
    so the two differ only by uint8 rounding).
    """
    n, (h, w) = len(x), x.shape[-2:]
    total = 0
    for r in scales:
        size = rescale_size(h, w, (int(w * r + 0.5), int(h * r + 0.5)))
        scaled = resize(x, size, align_corners=False)
        # The images and their mirrors in one batch (2N): one `predict` call per scale.
        inp = torch.cat([scaled, scaled.flip(-1)]) if flip else scaled
        scores = resize(predict(inp), (h, w), align_corners).softmax(dim=1)
        total = total + scores[:n]
        if flip:
            total = total + scores[n:].flip(-1)
    return total / (len(scales) * (2 if flip else 1))


def pixel_budget(model: torch.nn.Module) -> int:
    """Input pixels one forward pass of `model` may take (a pass always takes at least one image).

    On CUDA, activations within half the free memory: a pass holds up to about c4 bytes an input
    pixel, c4 the last stage's channels, `preset.in_channels` (measured peaks, fp32 on CPU: R-50's
    2048 channels 1.6 KB a pixel plain, 0.5-1.0 KB optimized; the R-18 demo's 256, 0.15 KB).
    On CPU one image a pass: oneDNN gains nothing from a batch there (optimize()'s R-50 on a Zen 5
    CPU: 3 windows of 769x769 a pass took 15-21% longer a window than one, 256x512 pairs +3%)."""
    if model.device.type != "cuda":
        return 1
    return torch.cuda.mem_get_info(model.device)[0] // 2 // model.preset.in_channels


@torch.inference_mode()
def segment(model: torch.nn.Module, x: Tensor, mode: str | None = None,
            crop_size: tuple[int, int] | None = None, stride: tuple[int, int] | None = None,
            scales: Sequence[float] | None = None, flip: bool = False, *,
            batch_pixels: int | None = None) -> Tensor:
    """Class scores (N, classes, H, W) at the input's resolution, as mmseg's test modes.

    Args:
        model: a DMNet (its `preset` gives the defaults).
        x: normalized (N, 3, H, W) images (see `normalize`), on the model's device.
        mode: "whole" or "slide"; default: the preset's test mode.
        crop_size, stride: slide windows (h, w); default: the preset's.
        scales: resize ratios for multi-scale testing, e.g. `dmnet.TTA_RATIOS`.
        flip: also predict the mirrored image.
        batch_pixels: input pixels per forward pass: slide windows, images and their mirrors run
            batched up to it (at least one image a pass); default `pixel_budget(model)`. 1 runs
            them one at a time, as mmseg does; the outputs agree to float rounding.

    Returns logits when neither `scales` nor `flip` is given (mmseg's `seg_logits`), else the mean
    softmax over all views (mmseg's SegTTAModel). Argmax over dim 1 gives the label map.
    """
    preset = model.preset
    mode = mode or preset.test_mode
    ac = preset.align_corners
    budget = pixel_budget(model) if batch_pixels is None else batch_pixels
    if mode == "whole":
        def predict(img: Tensor) -> Tensor:
            return whole(model, img, ac, budget)
    elif mode == "slide":
        crop = crop_size or preset.test_crop or preset.crop_size
        step = stride or preset.test_stride or tuple(max(1, c * 2 // 3) for c in crop)

        def predict(img: Tensor) -> Tensor:
            return slide(model, img, crop, step, preset.num_classes, ac, budget)
    else:
        raise ValueError(f"mode must be 'whole' or 'slide', got {mode!r}")
    if scales is None and not flip:
        return predict(x)
    return multi_scale_flip(predict, x, scales or (1.0,), flip, ac)


def test_resize(image: np.ndarray | Tensor, scale: tuple[int, int]) -> Tensor:
    """A uint8 (H, W, 3) image resized to fit `scale` keeping its ratio (the configs' test
    `Resize`), bilinear on the uint8 values and rounded, like mmcv's cv2 resize. Unchanged when it
    fits."""
    t = torch.from_numpy(np.ascontiguousarray(image)) if isinstance(image, np.ndarray) else image
    size = rescale_size(t.shape[0], t.shape[1], scale)
    if size == tuple(t.shape[:2]):
        return t
    chw = resize(t.permute(2, 0, 1).unsqueeze(0).float(), size, align_corners=False)
    return chw.round().clamp(0, 255)[0].permute(1, 2, 0).to(torch.uint8)


@torch.inference_mode()
def segment_images(model: torch.nn.Module, images: Sequence[np.ndarray | Tensor],
                   mode: str | None = None, scales: Sequence[float] | None = None,
                   flip: bool = False) -> Tensor:
    """mmseg's whole test pipeline for uint8 RGB (H, W, 3) images of one size, run as one batch:
    class scores (N, classes, H, W).

    Single scale: keep-ratio resize to the preset's test scale (as the configs' `Resize`), run
    `segment`, resize the scores back to the original size (mmseg's `postprocess_result`).
    With `scales`/`flip` (mmseg's TTA pipeline): scales are relative to the original image.
    The images are resized as uint8 values (rounded), like mmcv's cv2 resize before
    normalization, and each is normalized on its own before they are concatenated: the batch
    keeps the memory layout (so the kernels, and the last bits) of one image.
    """
    preset = model.preset
    ts = [torch.from_numpy(np.ascontiguousarray(im)) if isinstance(im, np.ndarray) else im
          for im in images]
    h, w = ts[0].shape[:2]
    if scales is None and not flip:
        ts = [test_resize(t, preset.test_scale) for t in ts]
    x = torch.cat([normalize(t, preset.mean, preset.std) for t in ts]).to(model.device)
    scores = segment(model, x, mode=mode, scales=scales, flip=flip)
    return resize(scores, (h, w), preset.align_corners)


def segment_image(model: torch.nn.Module, image: np.ndarray | Tensor, mode: str | None = None,
                  scales: Sequence[float] | None = None, flip: bool = False) -> Tensor:
    """`segment_images` of one uint8 RGB (H, W, 3) image: class scores (classes, H, W)."""
    return segment_images(model, [image], mode, scales, flip)[0]
