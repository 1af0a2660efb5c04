import numpy as np
import pytest
import torch

from dmnet import normalize, segment
from dmnet import inference
from dmnet.inference import (multi_scale_flip, pixel_budget, rescale_size, slide, slide_windows,
                             whole)

from ..tolerance import assert_scaled_close


def test_normalize_matches_mmseg_preprocessor():
    img = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    x = normalize(img)
    assert x.shape == (1, 3, 5, 7) and x.dtype == torch.float32
    mean = torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1)
    std = torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1)
    torch.testing.assert_close(x[0], (torch.from_numpy(img).permute(2, 0, 1).float() - mean) / std)
    batch = normalize(torch.from_numpy(np.stack([img, img])))
    assert batch.shape == (2, 3, 5, 7) and torch.equal(batch[1], x[0])


@pytest.mark.parametrize("bad, error, match", [
    (np.zeros((4, 4), np.uint8), ValueError, "grayscale"),
    (np.zeros((4, 4, 4), np.uint8), ValueError, "RGBA"),
    (np.zeros((4, 4, 3), np.uint16), TypeError, "16-bit"),
])
def test_normalize_rejects_other_images(bad, error, match):
    with pytest.raises(error, match=match):
        normalize(bad)


def test_slide_windows_of_the_769_configs():
    # 2049x1025 image, crop 769, stride 513: 2 rows x 4 columns, last ones shifted back inside.
    wins = slide_windows(1025, 2049, (769, 769), (513, 513))
    assert len(wins) == 8
    assert sorted({(y1, y2) for y1, y2, _, _ in wins}) == [(0, 769), (256, 1025)]
    assert sorted({(x1, x2) for _, _, x1, x2 in wins}) == [
        (0, 769), (513, 1282), (1026, 1795), (1280, 2049)]


def test_slide_windows_never_pad_small_images():
    assert slide_windows(50, 60, (64, 64), (32, 32)) == [(0, 50, 0, 60)]


def test_slide_averages_overlaps():
    # A toy logits function returning the window's own mean: overlaps average the windows.
    def fn(x):
        return x.mean(dim=(2, 3), keepdim=True).expand(-1, 1, 2, 2)

    x = torch.arange(10.0).view(1, 1, 1, 10).expand(1, 1, 4, 10).contiguous()
    out = slide(fn, x, (4, 6), (4, 4), num_classes=1, align_corners=False)
    left, right = x[..., 0:6].mean(), x[..., 4:10].mean()
    assert torch.allclose(out[0, 0, 0, :4], left.expand(4))
    assert torch.allclose(out[0, 0, 0, 4:6], ((left + right) / 2).expand(2))
    assert torch.allclose(out[0, 0, 0, 6:], right.expand(4))


def test_windows_and_images_run_in_batches_up_to_the_budget():
    calls = []

    def fn(x):  # each view's own mean: exact whatever the batch
        calls.append(len(x))
        return x.mean(dim=(2, 3), keepdim=True).expand(-1, 1, 2, 2)

    x = torch.randn(2, 1, 4, 10)  # 2 windows of 4x6 (crop (4, 6), stride (4, 4)) per image
    outs = []
    for budget, want in ((None, [4]), (3 * 24, [3, 1]), (24, [1, 1, 1, 1]), (1, [1, 1, 1, 1])):
        calls.clear()
        outs.append(slide(fn, x, (4, 6), (4, 4), 1, False, budget))
        assert calls == want, budget
    assert all(torch.equal(o, outs[0]) for o in outs)
    calls.clear()
    out = whole(fn, torch.randn(3, 1, 4, 10), False, batch_pixels=2 * 40)
    assert calls == [2, 1] and out.shape == (3, 1, 4, 10)


def test_an_image_and_its_mirror_run_as_one_batch():
    seen = []

    def predict(img):
        seen.append(img)
        return img[:, :2]

    x = torch.randn(2, 3, 8, 10)
    multi_scale_flip(predict, x, [0.5, 1.0], flip=True, align_corners=False)
    assert [len(img) for img in seen] == [4, 4]
    assert all(torch.equal(img[2:], img[:2].flip(-1)) for img in seen)
    assert torch.equal(seen[1][:2], x)


@pytest.mark.parametrize("n", [1, 2])
@pytest.mark.parametrize("scales", [None, (0.75, 1.25)])
@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("mode", ["whole", "slide"])
def test_batched_equals_one_by_one(tiny_model, mode, flip, scales, n):
    """Windows and views batched (all at once, or three windows a pass) against mmseg's one image
    a forward pass: the same to float rounding (a batch may take other oneDNN kernels)."""
    x = torch.randn(n, 3, 45, 67)
    kw = dict(mode=mode, crop_size=(32, 48), stride=(21, 29), scales=scales, flip=flip)
    one_by_one = segment(tiny_model, x, batch_pixels=1, **kw)
    for budget in (None, 3 * 32 * 48):
        got = segment(tiny_model, x, batch_pixels=budget, **kw)
        assert_scaled_close(got, one_by_one, tol=1e-5, msg=f"budget {budget}")


def test_pixel_budget_on_cpu_is_one_image_a_pass(tiny_model):
    assert pixel_budget(tiny_model) == 1


def test_slide_equals_whole_when_the_crop_covers_the_image(tiny_model):
    x = torch.randn(1, 3, 61, 83)
    a = segment(tiny_model, x, mode="whole")
    b = segment(tiny_model, x, mode="slide", crop_size=(64, 96), stride=(32, 32))
    torch.testing.assert_close(a, b)


def test_whole_resizes_logits_to_the_input(tiny_model):
    x = torch.randn(2, 3, 61, 83)
    out = segment(tiny_model, x)
    assert out.shape == (2, 7, 61, 83)
    ref = torch.nn.functional.interpolate(tiny_model(x), (61, 83), mode="bilinear",
                                          align_corners=False)
    torch.testing.assert_close(out, ref)


def test_flip_averages_mirrored_softmax():
    def fn(x):  # logits that depend on position: not flip-invariant
        return torch.cat([x[:, :1], -x[:, :1]], 1)

    x = torch.randn(1, 3, 8, 10)
    def predict(img):
        return whole(fn, img, False)
    out = multi_scale_flip(predict, x, [1.0], flip=True, align_corners=False)
    plain = fn(x).softmax(1)
    mirrored = fn(x.flip(-1)).softmax(1).flip(-1)
    torch.testing.assert_close(out, (plain + mirrored) / 2)
    torch.testing.assert_close(out.sum(1), torch.ones(1, 8, 10))


def test_multi_scale_uses_mmcv_keep_ratio_sizes():
    seen = []

    def predict(img):
        seen.append(tuple(img.shape[-2:]))
        return torch.zeros(1, 2, *img.shape[-2:])

    multi_scale_flip(predict, torch.zeros(1, 3, 1024, 2048), [0.5, 0.75, 1.0, 1.25, 1.5, 1.75],
                     flip=False, align_corners=False)
    assert seen == [(512, 1024), (768, 1536), (1024, 2048), (1280, 2560), (1536, 3072),
                    (1792, 3584)]
    assert rescale_size(97, 129, (65, 49)) == (49, 65)  # int(x * f + 0.5) rounding
    assert rescale_size(512, 683, (2048, 512)) == (512, 683)


@pytest.mark.parametrize("h,w,size", [(3, 2000, (1, 192)), (2000, 3, (192, 1)),
                                      (1, 10000, (1, 192)), (1, 1, (192, 192)),
                                      (1, 7, (27, 192))])
def test_rescale_keeps_every_side_at_least_one_pixel(h, w, size):
    assert rescale_size(h, w, (192, 192)) == size
    image = np.zeros((h, w, 3), np.uint8)
    # inference.test_resize, not imported: pytest would collect it as a test
    assert tuple(inference.test_resize(image, (192, 192)).shape) == (*size, 3)


def test_segment_tta_returns_probabilities(tiny_model):
    x = torch.randn(1, 3, 40, 48)
    out = segment(tiny_model, x, scales=[0.5, 1.0], flip=True)
    assert out.shape == (1, 7, 40, 48)
    torch.testing.assert_close(out.sum(1), torch.ones(1, 40, 48))


def test_segment_rejects_unknown_mode(tiny_model):
    with pytest.raises(ValueError, match="whole"):
        segment(tiny_model, torch.zeros(1, 3, 16, 16), mode="tiles")


def test_predict_runs_the_test_pipeline():
    import dataclasses

    from dmnet import DMNet, segment_image

    from ..conftest import randomize_bn, tiny_preset

    model = randomize_bn(DMNet(dataclasses.replace(tiny_preset(), test_scale=(128, 64))).eval())
    img = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    out = segment_image(model, img)
    assert out.shape == (7, 40, 60)
    # By hand: keep-ratio resize to 64x96 on uint8 values, whole inference, back to 40x60.
    up = torch.nn.functional.interpolate(torch.from_numpy(img).permute(2, 0, 1)[None].float(),
                                         (64, 96), mode="bilinear", align_corners=False)
    x = normalize(up.round().clamp(0, 255).to(torch.uint8)[0].permute(1, 2, 0))
    ref = torch.nn.functional.interpolate(segment(model, x), (40, 60), mode="bilinear",
                                          align_corners=False)[0]
    torch.testing.assert_close(out, ref)
    tta = segment_image(model, img, scales=[0.5, 1.0], flip=True)
    assert tta.shape == (7, 40, 60)
    torch.testing.assert_close(tta.sum(0), torch.ones(40, 60))
