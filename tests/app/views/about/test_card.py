"""The model card and the domain test: generated scenes are in the shapes models' domain,
photographs are not."""

import json

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from app.core.images import generate_scene
from app.views.about import card
from dmnet import DMNet, checkpoint_meta
from training.data.context import render_context
from training.data.shapes import render

from ...conftest import tiny_model


def resized(image: np.ndarray, side: int) -> np.ndarray:
    return np.array(Image.fromarray(image).resize((side, side), Image.Resampling.BILINEAR))


def scenes() -> list[np.ndarray]:
    """Both generators' scenes, at their size and zoomed as the app zooms them."""
    out = [render(s, 0).image for s in range(12)] + [render_context(s, 0).image for s in range(12)]
    out += [generate_scene(s, z)[0] for s in range(4) for z in (0.5, 0.75, 1.25, 1.5, 2.0)]
    out += [resized(render_context(s, 0, 64).image, 128) for s in range(4)]  # zoom 2
    return out


def photos(photo) -> list[np.ndarray]:
    rgb = [np.array(Image.open(photo).convert("RGB"))]
    rgb += [skimage.data.astronaut(), skimage.data.chelsea(), skimage.data.rocket(),
            skimage.data.stereo_motorcycle()[0], skimage.data.immunohistochemistry()]
    return rgb + [resized(p, 128) for p in rgb] + [skimage.data.camera()]


def test_generated_scenes_have_the_synthetic_grain():
    for image in scenes():
        assert card.grain(image).synthetic, card.grain(image)


def test_photographs_do_not(photo):
    for image in photos(photo):
        assert not card.grain(image).synthetic, card.grain(image)


def test_noise_and_flat_graphics_do_not():
    rng = np.random.default_rng(0)
    assert not card.grain(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)).synthetic
    flat = np.zeros((64, 64, 3), np.uint8)
    flat[16:48, 16:48] = (200, 30, 40)
    assert not card.grain(flat).synthetic
    assert not card.grain(np.zeros((4, 4, 3), np.uint8)).synthetic  # smaller than a block


def test_the_notice_names_the_domain(photo):
    shapes = tiny_model().preset  # a preset of generated scenes
    assert shapes.dataset in card.SYNTHETIC
    assert card.domain_notice(shapes, render(0, 0).image) is None
    notice = card.domain_notice(shapes, np.array(Image.open(photo).convert("RGB")))
    assert notice and "Out of this model's domain" in notice
    from dmnet import PRESETS

    street = next(p for p in PRESETS.values() if p.dataset == "cityscapes")
    assert card.domain_notice(street, np.array(Image.open(photo).convert("RGB"))) is None
    assert "generated scenes" in card.domain_notice(street, render(1, 0).image)


def write_checkpoint(folder, model: DMNet, miou: float):
    path = folder / "model.pth"
    torch.save({"meta": {**checkpoint_meta(model), "iter": 1234}, "state_dict":
                model.state_dict()}, path)
    classes = model.preset.classes
    iou = {c: 50.0 + i for i, c in enumerate(classes)}
    (folder / "model.eval.json").write_text(json.dumps(
        {"split": "val", "mIoU": miou, "IoU": iou,
         "size_buckets": {"tiny": {"objects": 3, "pixel_acc": 1.5, "objects_recognised": 0.0}}}))
    (folder / "model.ablation.json").write_text(json.dumps(
        {"images": 9, "rows": [{"variant": "full", "mIoU": miou, "drop": 0.0},
                               {"variant": "static filters", "mIoU": miou - 4.25,
                                "drop": 4.25}]}))
    return path


def test_the_card_reads_meta_and_the_files_beside_the_checkpoint(tmp_path):
    model = tiny_model()
    path = write_checkpoint(tmp_path, model, 77.125)
    text = card.card_markdown(model, "my model", path)
    assert f"`{model.preset.name}`" in text and "1,234 training iterations" in text
    assert "validation mIoU 77.12" in text or "validation mIoU 77.13" in text
    for i, name in enumerate(model.preset.classes):
        assert f"| {name} | {50.0 + i:.1f} |" in text
    assert "| tiny | 3 | 1.5 | 0.0 |" in text
    assert "| static filters | 72.88 | +4.25 |" in text  # the ablation table


def test_a_bare_checkpoint_says_how_to_evaluate_it(tmp_path):
    model = tiny_model()
    torch.save(model.state_dict(), tmp_path / "bare.pth")
    text = card.card_markdown(model, "bare", tmp_path / "bare.pth")
    assert "python -m training.evaluate" in text and "ablation" not in text


@pytest.mark.parametrize("name", ["dmnet_r50-d8_4xb2-40k_cityscapes-512x1024"])
def test_official_models_show_their_published_miou(name):
    from dmnet import PRESETS

    p = PRESETS[name]
    model = DMNet.__new__(DMNet)  # no weights needed: the card reads the preset
    torch.nn.Module.__init__(model)
    model.preset = p
    text = card.card_markdown(model, name, None)
    assert f"**published mIoU** {p.miou:.2f}" in text and f"{p.miou_ms_flip:.2f}" in text
    assert "Cityscapes" in text
