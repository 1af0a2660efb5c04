import hashlib

import pytest
import torch

from dmnet.checkpoint import load_checkpoint
from training.publish import publish
from training.train import run

from .test_train import options, tiny_run_preset


def test_publish_keeps_weights_and_meta_only_and_loads_alone(tmp_path):
    model = run(tiny_run_preset(max_iters=2, val_interval=2), options(tmp_path / "run")).eval()
    out = tmp_path / "release" / "demo.pth"
    digest = publish(tmp_path / "run" / "iter_2.pth", out)
    assert digest == hashlib.sha256(out.read_bytes()).hexdigest()
    obj = torch.load(out, weights_only=True)
    assert set(obj) == {"meta", "state_dict"}
    assert obj["meta"]["iter"] == 2 and obj["meta"]["dataset_meta"]["classes"][0] == "background"
    assert out.stat().st_size < (tmp_path / "run" / "iter_2.pth").stat().st_size  # no optimizer
    loaded = load_checkpoint(out)  # no preset given
    assert loaded.preset == model.preset
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(loaded(x), model(x))


def test_publish_refuses_a_file_that_is_not_a_training_checkpoint(tmp_path):
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="not a training checkpoint.*no meta, state_dict"):
        publish(tmp_path / "other.pth", tmp_path / "out.pth")
    assert not (tmp_path / "out.pth").exists()
