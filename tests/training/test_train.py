import dataclasses
import json
import math

import pytest
import torch
import torch.nn.functional as F

from dmnet import PRESETS
from dmnet.checkpoint import load_checkpoint
from dmnet.presets import Schedule
from training.checkpoints import load_backbone_weights
from training.train import (RunOptions, batch_layout, poly_lr, run, seg_loss, with_overrides)

from ..conftest import tiny_preset

SMALL = "dmnet_r18w32-d8_1xb8-7k_shapes-128x128"


def tiny_run_preset(max_iters=4, val_interval=2):
    """A tiny model on 32x32 MultiScaleShapes: an iteration takes milliseconds."""
    return dataclasses.replace(tiny_preset(crop_size=(32, 32), test_scale=(32, 32)),
                               schedule=Schedule(max_iters, val_interval, 2, 1))


def options(work_dir, **kw):
    return RunOptions(work_dir, workers=0, log_interval=1, val_limit=3, **kw)


def losses(work_dir):
    lines = (work_dir / "metrics.jsonl").read_text().splitlines()
    return {r["iter"]: r["loss"] for r in map(json.loads, lines) if "loss" in r}


def test_poly_lr_equals_the_facts_formula():
    s = PRESETS["dmnet_r50-d8_4xb2-40k_cityscapes-512x1024"].schedule
    for t in (0, 1, 1000, 20000, 39998, 39999):
        assert poly_lr(t, s) == pytest.approx((0.01 - 1e-4) * (1 - t / 39999) ** 0.9 + 1e-4,
                                              rel=1e-12)
    assert poly_lr(0, s) == pytest.approx(0.01) and poly_lr(39999, s) == pytest.approx(1e-4)


def test_loss_averages_over_all_pixels_including_ignored():
    logits = torch.tensor([[[[2.0, 0.0], [0.0, 1.0]], [[0.0, 3.0], [1.0, 1.0]]]])  # (1, 2, 2, 2)
    label = torch.tensor([[[0, 1], [255, 0]]])
    logp = logits.log_softmax(1)[0]
    hand = -(logp[0, 0, 0] + logp[1, 0, 1] + logp[0, 1, 1]) / 4  # 3 valid pixels, divisor 4
    assert seg_loss(logits, label, False) == pytest.approx(hand.item(), rel=1e-6)
    assert F.cross_entropy(logits, label, ignore_index=255) == pytest.approx(hand.item() * 4 / 3)
    # all ignored: zero, not NaN
    assert seg_loss(logits, torch.full((1, 2, 2), 255), False) == 0


@pytest.mark.parametrize("align_corners", [False, True])
def test_loss_upsamples_logits_to_the_label_with_the_heads_align_corners(align_corners):
    logits = torch.randn(2, 3, 4, 5)
    label = torch.randint(0, 3, (2, 16, 20))
    label[0, :3] = 255
    up = F.interpolate(logits, (16, 20), mode="bilinear", align_corners=align_corners)
    hand = F.cross_entropy(up, label, ignore_index=255, reduction="sum") / label.numel()
    assert seg_loss(logits, label, align_corners) == pytest.approx(hand.item(), rel=1e-6)


def test_batch_layout_keeps_the_global_batch():
    cs = PRESETS["dmnet_r50-d8_4xb2-40k_cityscapes-512x1024"].schedule  # 4 GPUs x 2
    assert [batch_layout(cs, None, w) for w in (1, 2, 4)] == [(2, 4), (2, 2), (2, 1)]
    small = PRESETS[SMALL].schedule  # 1 x 8
    assert batch_layout(small, None, 1) == (8, 1) and batch_layout(small, 8, 2) == (4, 1)
    assert batch_layout(small, 16, 1) == (8, 2)  # a larger global batch by accumulation
    with pytest.raises(ValueError, match="multiple"):
        batch_layout(cs, 6, 4)


def test_set_overrides_fields_and_records_them_in_the_name():
    p = with_overrides(PRESETS[SMALL], ["crop_size=256,256", "schedule.lr=0.02",
                                        "align_corners=true"])
    assert p.crop_size == (256, 256) and p.schedule.lr == 0.02 and p.align_corners is True
    assert p.name == f"{SMALL}+crop_size=256,256,align_corners=true"
    assert with_overrides(PRESETS[SMALL], ["schedule.max_iters=10"]).name == SMALL
    slide = with_overrides(PRESETS[SMALL], ["test_mode=slide", "test_crop=256,256",
                                            "test_stride=170,170"])
    assert slide.test_mode == "slide" and slide.test_crop == (256, 256)
    assert slide.test_stride == (170, 170)
    with pytest.raises(ValueError, match="key one of"):
        with_overrides(PRESETS[SMALL], ["nope=1"])


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_the_schedule_picks_the_optimizer(tmp_path, name):
    preset = with_overrides(tiny_run_preset(2, 2), [f"schedule.optimizer={name}",
                                                     "schedule.weight_decay=0.01"])
    run(preset, options(tmp_path))
    state = torch.load(tmp_path / "iter_2.pth", weights_only=True)["optimizer"]
    group = state["param_groups"][0]
    assert group["weight_decay"] == 0.01 and ("betas" in group) == (name == "adamw")
    moments = {"sgd": {"momentum_buffer"}, "adamw": {"step", "exp_avg", "exp_avg_sq"}}[name]
    assert set(next(iter(state["state"].values()))) == moments
    with pytest.raises(ValueError, match="'sgd' or 'adamw', got 'adam'"):
        run(with_overrides(preset, ["schedule.optimizer=adam"]), options(tmp_path / "bad"))


def test_checkpoint_layout_loads_safely_and_in_dmnet(tmp_path):
    model = run(tiny_run_preset(2, 2), options(tmp_path))
    path = tmp_path / "iter_2.pth"
    assert (tmp_path / "last_checkpoint").read_text() == "iter_2.pth"
    ckpt = torch.load(path, weights_only=True)  # what mmseg's init_model does under torch >= 2.6
    assert {"meta", "state_dict", "optimizer", "param_schedulers"} <= set(ckpt)
    meta = ckpt["meta"]
    assert meta["iter"] == 2 and meta["preset"] == model.preset.name
    assert set(meta["dataset_meta"]) == {"classes", "palette", "label_map", "reduce_zero_label"}
    assert tuple(meta["dataset_meta"]["classes"]) == model.preset.classes
    assert ckpt["param_schedulers"][0]["last_step"] == 2
    assert ckpt["optimizer"]["param_groups"][0]["weight_decay"] == 5e-4
    assert list(ckpt["state_dict"]) == list(model.state_dict())
    loaded = load_checkpoint(path)
    assert loaded.preset == model.preset
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(loaded(x), model.eval()(x))
    assert not list(tmp_path.glob("*.tmp"))


def test_resume_reproduces_an_uninterrupted_run(tmp_path):
    preset = tiny_run_preset(6, 3)
    full = run(preset, options(tmp_path / "full"))
    part = tmp_path / "part"
    part.mkdir()
    (part / "iter_3.pth").write_bytes((tmp_path / "full" / "iter_3.pth").read_bytes())
    (part / "last_checkpoint").write_text("iter_3.pth")
    resumed = run(preset, options(part, resume=True))
    reference = losses(tmp_path / "full")
    assert set(losses(part)) == {4, 5, 6}
    assert losses(part) == pytest.approx({k: reference[k] for k in (4, 5, 6)}, rel=1e-6)
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b)


def test_training_lowers_the_loss_and_stays_finite(tmp_path):
    preset = dataclasses.replace(tiny_run_preset(30, 30),
                                 schedule=Schedule(30, 30, 4, 1, lr=0.05))
    run(preset, options(tmp_path))
    curve = list(losses(tmp_path).values())
    assert all(math.isfinite(v) for v in curve)
    assert sum(curve[-5:]) < sum(curve[:5])


def test_backbone_weights_load_strictly(tmp_path):
    model = run(tiny_run_preset(1, 1), options(tmp_path / "a"))
    imagenet = {k: v for k, v in model.backbone.state_dict().items()}
    imagenet["fc.weight"], imagenet["fc.bias"] = torch.zeros(1000, 64), torch.zeros(1000)
    torch.save({"state_dict": imagenet}, tmp_path / "resnet_v1c.pth")
    fresh = tiny_run_preset(1, 1)
    from dmnet.model import DMNet
    other = DMNet(fresh)
    load_backbone_weights(other.backbone, tmp_path / "resnet_v1c.pth")
    for k, v in model.backbone.state_dict().items():
        torch.testing.assert_close(other.backbone.state_dict()[k], v)
    del imagenet["stem.0.weight"]
    torch.save(imagenet, tmp_path / "broken.pth")
    with pytest.raises(ValueError, match="1 missing keys"):
        load_backbone_weights(other.backbone, tmp_path / "broken.pth")
