"""The training recipe of mmsegmentation's configs (facts §3-§4) as paired image/label transforms.

RandomResize (the preset's ratio_range, 0.5-2.0 in every config; mmcv keep-ratio) -> RandomCrop
(cat_max_ratio 0.75) -> RandomFlip (0.5) -> PhotoMetricDistortion (unless the preset turns it
off) -> normalize -> pad to the crop (image 0, label 255). Resizing, cropping, flipping and
padding are torchvision transforms v2 kernels on `tv_tensors.Image`/`tv_tensors.Mask` (masks
resize with nearest); what v2 lacks is written here: mmcv's keep-ratio size rule, the
cat_max_ratio retries and mmseg's photometric distortion (uint8, clip after each step, cv2 HSV).
All randomness comes from the `np.random.Generator` passed in, so a sample is a pure function of
its seed (which makes resume exact, with any number of loader workers).
"""

from __future__ import annotations

import numpy as np
import torch
import torchvision.transforms.v2.functional as F
from torch import Tensor
from torchvision import tv_tensors

from dmnet.inference import normalize, rescale_size
from dmnet.presets import Preset

IGNORE_INDEX = 255
CAT_MAX_RATIO = 0.75


def random_resize_size(h: int, w: int, scale: tuple[int, int], ratio_range: tuple[float, float],
                       rng: np.random.Generator) -> tuple[int, int]:
    """mmcv RandomResize(scale, ratio_range, keep_ratio=True): the new (h, w)."""
    ratio = rng.uniform(*ratio_range)
    target = (int(scale[0] * ratio), int(scale[1] * ratio))
    return rescale_size(h, w, target)


def crop_offset(label: np.ndarray, crop: tuple[int, int], rng: np.random.Generator,
                cat_max_ratio: float = CAT_MAX_RATIO) -> tuple[int, int]:
    """mmseg RandomCrop.crop_bbox: (top, left). Up to 10 re-draws while one non-ignored class
    covers >= cat_max_ratio of the crop's non-ignored pixels or fewer than 2 classes are present;
    after 10 failures the 11th draw is used unchecked."""
    (h, w), (ch, cw) = label.shape, crop

    def draw() -> tuple[int, int]:
        return int(rng.integers(0, max(h - ch, 0) + 1)), int(rng.integers(0, max(w - cw, 0) + 1))

    top, left = draw()
    if cat_max_ratio < 1:
        for _ in range(10):
            counts = np.bincount(label[top:top + ch, left:left + cw].ravel(), minlength=256)
            counts = counts[:IGNORE_INDEX][counts[:IGNORE_INDEX] > 0]
            if len(counts) > 1 and counts.max() / counts.sum() < cat_max_ratio:
                break
            top, left = draw()
    return top, left


def _convert(x: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
    return np.clip(x.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)


def rgb_to_hsv(img: np.ndarray) -> np.ndarray:
    """uint8 RGB -> uint8 HSV in OpenCV's convention (H in [0, 180), S and V in [0, 255])."""
    rgb = img.astype(np.float32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    v, d = rgb.max(-1), rgb.max(-1) - rgb.min(-1)
    s = np.where(v > 0, d * 255 / np.maximum(v, 1), 0)
    dd = np.maximum(d, 1e-6)
    h = np.where(v == r, (g - b) / dd, np.where(v == g, 2 + (b - r) / dd, 4 + (r - g) / dd))
    h = np.where(d > 0, np.mod(h * 60, 360), 0)
    return np.stack([np.round(h / 2) % 180, np.round(s), v], -1).astype(np.uint8)


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """Inverse of `rgb_to_hsv` (up to uint8 rounding)."""
    h = hsv[..., 0].astype(np.float32) * 2 / 60
    s, v = hsv[..., 1] / np.float32(255), hsv[..., 2].astype(np.float32)
    k = np.stack([(5 + h) % 6, (3 + h) % 6, (1 + h) % 6], -1)  # R, G, B
    rgb = v[..., None] * (1 - s[..., None] * np.clip(np.minimum(k, 4 - k), 0, 1))
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


def photometric_distortion(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """mmseg PhotoMetricDistortion with its defaults on a uint8 (H, W, 3) image.

    brightness (p .5, +U(-32, 32)); mode = randint(2); mode 1: contrast (p .5, xU(.5, 1.5));
    saturation (p .5, S xU(.5, 1.5)); hue (p .5, H + randint(-18, 18) mod 180, numpy's exclusive
    high: -18..17); mode 0: contrast. Each step truncates to uint8 as mmseg's `convert`.
    """
    def contrast(x: np.ndarray) -> np.ndarray:
        return _convert(x, alpha=rng.uniform(0.5, 1.5)) if rng.integers(2) else x

    if rng.integers(2):
        img = _convert(img, beta=rng.uniform(-32, 32))
    mode = rng.integers(2)
    if mode == 1:
        img = contrast(img)
    if rng.integers(2):
        hsv = rgb_to_hsv(img)
        hsv[..., 1] = _convert(hsv[..., 1], alpha=rng.uniform(0.5, 1.5))
        img = hsv_to_rgb(hsv)
    if rng.integers(2):
        hsv = rgb_to_hsv(img)
        hsv[..., 0] = (hsv[..., 0].astype(int) + rng.integers(-18, 18)) % 180
        img = hsv_to_rgb(hsv)
    if mode == 0:
        img = contrast(img)
    return img


def train_transform(image: np.ndarray, label: np.ndarray, preset: Preset,
                    rng: np.random.Generator) -> tuple[Tensor, Tensor]:
    """uint8 RGB (H, W, 3) + uint8 label (H, W) -> normalized (3, ch, cw) float, (ch, cw) int64."""
    img = tv_tensors.Image(torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1))
    mask = tv_tensors.Mask(torch.from_numpy(np.ascontiguousarray(label))[None])
    size = random_resize_size(*img.shape[-2:], preset.test_scale, preset.ratio_range, rng)
    img, mask = F.resize(img, list(size), antialias=False), F.resize(mask, list(size))
    (ch, cw), (h, w) = preset.crop_size, size
    top, left = crop_offset(mask[0].numpy(), preset.crop_size, rng)
    # mmseg crops with numpy slicing: a crop larger than the image is the whole image
    img = F.crop(img, top, left, min(ch, h - top), min(cw, w - left))
    mask = F.crop(mask, top, left, min(ch, h - top), min(cw, w - left))
    if rng.random() < 0.5:
        img, mask = F.horizontal_flip(img), F.horizontal_flip(mask)
    pixels = img.permute(1, 2, 0).numpy()
    if preset.photometric:
        pixels = photometric_distortion(pixels, rng)
    x = normalize(pixels, preset.mean, preset.std)[0]
    pad = [0, 0, cw - x.shape[-1], ch - x.shape[-2]]  # left, top, right, bottom
    x = F.pad(x, pad, fill=0)  # in normalized space, as SegDataPreProcessor
    mask = F.pad(mask, pad, fill=IGNORE_INDEX)
    return x, mask[0].long()
