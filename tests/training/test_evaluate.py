import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from dmnet.fast import optimize
from training import baseline, plot
from training import evaluate as evaluate_cli
from training.data import MultiScaleShapes
from training.evaluate import confusion_matrix, evaluate, summarize
from training.train import RunOptions, run

from ..conftest import tiny_preset
from .test_train import tiny_run_preset

ROOT = Path(__file__).resolve().parents[2]


def test_iou_acc_match_hand_computation():
    label = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 255]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 0, 0, 3]])
    cm = confusion_matrix(pred, label, 4)
    assert cm.tolist() == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]
    m = summarize(cm, ("a", "b", "c", "d"))
    # a: I=1, U=2+2-1=3; b: I=2, U=2+3-2=3; c: I=1, U=2+1-1=2; d: never labelled nor predicted
    assert m.IoU["a"] == pytest.approx(100 / 3) and m.IoU["b"] == pytest.approx(200 / 3)
    assert m.IoU["c"] == pytest.approx(50) and math.isnan(m.IoU["d"])
    assert m.Acc == pytest.approx({"a": 50, "b": 100, "c": 50, "d": math.nan}, nan_ok=True)
    assert m.mIoU == pytest.approx((100 / 3 + 200 / 3 + 50) / 3)
    assert m.mAcc == pytest.approx(200 / 3) and m.aAcc == pytest.approx(400 / 6)


def test_class_predicted_but_never_labelled_counts_as_zero_iou():
    m = summarize(confusion_matrix(torch.tensor([1, 1]), torch.tensor([0, 1]), 2), ("x", "y"))
    assert m.IoU == {"x": 0.0, "y": 50.0} and math.isnan(m.Acc["x"]) is False


class Brightness(nn.Module):
    """A stand-in segmentor: class 1 where the (normalized) image is bright, at 1/8 size."""

    def __init__(self, preset):
        super().__init__()
        self.preset = preset

    @property
    def device(self):
        return torch.device("cpu")

    def forward(self, x):
        bright = (x.mean(1, keepdim=True) > 0).float()
        others = torch.full_like(bright, -1).expand(-1, self.preset.num_classes - 2, -1, -1)
        logits = torch.cat([1 - bright, bright, others], 1) * 10
        return nn.functional.avg_pool2d(logits, 8, ceil_mode=True)


def test_evaluate_pipeline_on_a_stub_model():
    preset = tiny_preset(test_scale=(64, 64), classes="multiscale_shapes")
    image = np.zeros((64, 64, 3), np.uint8)
    image[:, 32:] = 255
    label = (image[..., 0] > 0).astype(np.uint8)
    label[:8, :8] = 255  # ignored
    data = [(image, label)] * 3
    model = Brightness(preset)
    for mode, aug in (("whole", False), ("slide", False), ("whole", True)):
        m, buckets = evaluate(model, data, mode=mode, aug_test=aug)
        assert m.IoU["background"] == pytest.approx(100) and m.IoU["disk"] == pytest.approx(100)
        assert math.isnan(m.IoU["star"]) and m.mIoU == pytest.approx(100) and buckets is None


def test_evaluate_reports_size_buckets_on_shapes():
    preset = tiny_preset(test_scale=(64, 64))
    m, buckets = evaluate(Brightness(preset).eval(), MultiScaleShapes("val", 2, 64))
    assert set(buckets) == {"tiny", "small", "medium", "large"}
    assert sum(b["objects"] for b in buckets.values()) > 0 and 0 <= m.aAcc <= 100


def test_colour_only_baseline_stays_near_all_background():
    data = MultiScaleShapes("train", 40, 64)
    table = baseline.fit(data, 40, 7)
    m, _ = baseline.evaluate_table(table, MultiScaleShapes("val", 20, 64), 20,
                                   MultiScaleShapes.classes)
    assert m.mIoU < 20  # predicting background everywhere gives ~ IoU_bg / 7


def test_evaluate_and_plot_command_lines(tmp_path):
    run(tiny_run_preset(2, 2), RunOptions(tmp_path, workers=0, log_interval=1, val_limit=2))
    out = subprocess.run([sys.executable, "-m", "training.evaluate", str(tmp_path / "iter_2.pth"),
                          "--limit", "2", "--out", str(tmp_path / "eval.json")], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    assert "mIoU" in out and "background" in out and "objects" in out
    result = json.loads((tmp_path / "eval.json").read_text())
    assert set(result["IoU"]) == set(MultiScaleShapes.classes) and result["mode"] == "whole"
    train, val = plot.read_metrics(tmp_path)
    plot.figure(train, val, "run").write_html(tmp_path / "curves.html", include_plotlyjs=False)
    assert len(train) == 2 and len(val) == 1 and (tmp_path / "curves.html").stat().st_size > 0


def test_evaluate_compile_option_compiles_the_inference_copy(tmp_path, monkeypatch):
    """--compile hands compile=True to optimize() (here recorded, and the copy made without
    compiling, which takes minutes: tests/dmnet/test_fast.py compiles a model)."""
    run(tiny_run_preset(2, 2), RunOptions(tmp_path, workers=0, log_interval=1, val_limit=2))
    asked = []

    def recorded(model, compile=False):
        asked.append(compile)
        return optimize(model)

    monkeypatch.setattr(evaluate_cli, "optimize", recorded)
    for flags in ([], ["--compile"]):
        evaluate_cli.main([str(tmp_path / "iter_2.pth"), "--limit", "1", *flags,
                           "--out", str(tmp_path / "eval.json")])
    assert asked == [False, True]
