import colorsys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dmnet.presets import IMAGENET_MEAN, IMAGENET_STD
from training.transforms import (crop_offset, hsv_to_rgb, photometric_distortion,
                                 random_resize_size, rgb_to_hsv, train_transform)

from ..conftest import tiny_preset


class Scripted:
    """A stand-in for np.random.Generator that returns scripted draws, in order."""

    def __init__(self, *draws):
        self.draws = list(draws)

    def integers(self, *args):
        return self.draws.pop(0)

    def uniform(self, *args):
        return self.draws.pop(0)


def blocks_image(seed: int, h: int = 48, w: int = 64, block: int = 8):
    """Black/white blocks; label 1 = white. The label is derivable from the pixels even after
    photometric distortion: black stays <= 48, white >= 95."""
    rng = np.random.default_rng(seed)
    cells = rng.integers(0, 2, (h // block, w // block)).astype(np.uint8)
    label = np.kron(cells, np.ones((block, block), np.uint8))
    image = np.repeat(label[..., None] * 255, 3, axis=2).astype(np.uint8)
    return image, label


@pytest.mark.parametrize("seed", range(12))
def test_train_transform_keeps_image_and_label_aligned(seed):
    preset = tiny_preset(crop_size=(80, 80), test_scale=(128, 96))
    image, label = blocks_image(seed, 96, 128, 16)
    x, y = train_transform(image, label, preset, np.random.default_rng(seed))
    assert x.shape == (3, 80, 80) and y.shape == (80, 80) and y.dtype == torch.int64
    std, mean = torch.tensor(IMAGENET_STD), torch.tensor(IMAGENET_MEAN)
    pixels = x * std.view(3, 1, 1) + mean.view(3, 1, 1)
    valid = y != 255
    padded = (x == 0).all(0)  # padding is 0 in the normalized image, 255 in the label
    assert torch.equal(~valid, padded)
    derived = (pixels.mean(0) > 72).long()
    # Away from block edges (uniform 3x3 label neighbourhood) the pixels give the label exactly;
    # only bilinear edge pixels may disagree. A flip or crop of one alone gives ~50%.
    lab = F.pad(y[None, None].float(), (1, 1, 1, 1), value=255)
    interior = (F.max_pool2d(lab, 3, 1) == F.max_pool2d(-lab, 3, 1).neg())[0, 0] & valid
    assert interior.sum() > 0.4 * valid.sum()
    assert torch.equal(derived[interior], y[interior])
    assert (derived[valid] == y[valid]).float().mean() > 0.9


@pytest.mark.parametrize("photometric", [True, False])
def test_a_preset_can_leave_out_the_photometric_distortion(photometric):
    """At ratio 1 with a crop the image's size only the flip (and the distortion) can change it."""
    preset = tiny_preset(crop_size=(48, 64), test_scale=(64, 48), ratio_range=(1.0, 1.0),
                         photometric=photometric)
    image = np.random.default_rng(0).integers(0, 256, (48, 64, 3), np.uint8)
    label = np.zeros((48, 64), np.uint8)
    same = []
    for seed in range(8):
        pixels = train_transform(image, label, preset, np.random.default_rng(seed))[0]
        pixels = pixels * torch.tensor(IMAGENET_STD).view(3, 1, 1)
        pixels = (pixels + torch.tensor(IMAGENET_MEAN).view(3, 1, 1)).round().permute(1, 2, 0)
        same.append(any(np.array_equal(pixels.numpy(), view) for view in (image, image[:, ::-1])))
    assert all(same) if not photometric else not all(same)


def test_random_resize_follows_mmcv_keep_ratio():
    rng = np.random.default_rng(0)
    ratio = np.random.default_rng(0).uniform(0.5, 2.0)
    h, w = random_resize_size(1024, 2048, (2048, 1024), (0.5, 2.0), rng)
    target = (int(2048 * ratio), int(1024 * ratio))
    f = min(max(target) / 2048, min(target) / 1024)
    assert (h, w) == (int(1024 * f + 0.5), int(2048 * f + 0.5))
    # ADE-like: scale (2048, 512), a 375x500 image at ratio 1 -> short side 512
    assert random_resize_size(375, 500, (2048, 512), (0.5, 2.0), Scripted(1.0)) == (512, 683)


def test_crop_respects_cat_max_ratio_exactly_as_mmseg():
    label = np.zeros((100, 100), np.uint8)
    label[:30, :30] = 1
    label[90:, 90:] = 255
    for seed in range(50):
        top, left = crop_offset(label, (50, 50), np.random.default_rng(seed), 0.75)
        draws = np.random.default_rng(seed)
        boxes = [(int(draws.integers(0, 51)), int(draws.integers(0, 51))) for _ in range(11)]

        def ok(box):
            patch = label[box[0]:box[0] + 50, box[1]:box[1] + 50]
            counts = np.bincount(patch.ravel(), minlength=256)[:255]
            counts = counts[counts > 0]
            return len(counts) > 1 and counts.max() / counts.sum() < 0.75

        expected = next((b for b in boxes[:10] if ok(b)), boxes[10])
        assert (top, left) == expected
    # disabled (ratio 1): the first draw, whatever it holds
    assert crop_offset(label, (50, 50), np.random.default_rng(3), 1.0) == tuple(
        int(v) for v in np.random.default_rng(3).integers(0, 51, 2))


def test_crop_larger_than_image_is_the_whole_image_then_padded():
    preset = tiny_preset(crop_size=(64, 64), test_scale=(16, 16))
    image, label = blocks_image(0, 16, 16, 4)
    x, y = train_transform(image, label, preset, np.random.default_rng(0))
    assert x.shape == (3, 64, 64)
    valid = y != 255
    rows, cols = int(valid.any(1).sum()), int(valid.any(0).sum())
    assert 8 <= rows <= 32 and rows == cols  # the resized 16x16 image, whole, at the top left
    assert valid[:rows, :cols].all() and not valid[rows:].any() and not valid[:, cols:].any()


def test_photometric_distortion_order_and_clipping():
    img = np.full((2, 2, 3), 100, np.uint8)
    img[0, 0] = 250
    # brightness on (+10), mode 1, contrast on (x2), saturation off, hue off
    out = photometric_distortion(img, Scripted(1, 10.0, 1, 1, 2.0, 0, 0))
    assert out[0, 0].tolist() == [255, 255, 255] and out[1, 1].tolist() == [220, 220, 220]
    # brightness off, mode 0: saturation off, hue off, then contrast on (x0.5): truncates
    out = photometric_distortion(np.full((1, 1, 3), 101, np.uint8), Scripted(0, 0, 0, 0, 1, 0.5))
    assert out.tolist() == [[[50, 50, 50]]]
    # grey stays grey under saturation and hue
    grey = np.full((3, 3, 3), 77, np.uint8)
    out = photometric_distortion(grey, Scripted(0, 0, 1, 1.4, 1, 17, 0))
    assert (out == 77).all()


def test_hsv_matches_opencv_convention():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (200, 3)).astype(np.uint8)
    hsv = rgb_to_hsv(rgb[None])[0].astype(int)
    for (r, g, b), (h, s, v) in zip(rgb, hsv):
        eh, es, ev = colorsys.rgb_to_hsv(r / 255, g / 255, b / 255)
        assert abs(((h - round(eh * 180)) + 90) % 180 - 90) <= 1
        assert abs(s - round(es * 255)) <= 1 and v == round(ev * 255)
    assert np.abs(hsv_to_rgb(rgb_to_hsv(rgb[None]))[0].astype(int) - rgb).max() <= 4


def test_random_resize_draws_from_the_presets_ratio_range():
    sides = {random_resize_size(128, 128, (128, 128), (0.75, 1.5), np.random.default_rng(s))[0]
             for s in range(200)}
    assert min(sides) < 100 and max(sides) > 185 and 96 <= min(sides) and max(sides) <= 192
