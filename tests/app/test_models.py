"""The model picker: demo (present or missing), official checkpoints offline, uploads."""

import dataclasses
import hashlib
import pickle

import gradio as gr
import pytest
import torch

import dmnet
from app import actions, models
from dmnet import DMNet

from ..conftest import randomize_bn, tiny_preset

OFFICIAL = "dmnet_r50-d8_4xb2-40k_cityscapes-512x1024"


def test_the_picker_offers_demo_and_the_12_official_checkpoints_with_miou(demo_env):
    labels = dict((key, label) for label, key in models.choices())
    assert list(labels)[0] == models.DEMO
    official = [k for k in labels if k != models.DEMO]
    assert len(official) == 12 and OFFICIAL in official
    assert "mIoU 77.78" in labels[OFFICIAL] and "Cityscapes" in labels[OFFICIAL]


def test_demo_loads_from_the_env_path(demo_env):
    model = models.get_model(models.DEMO)
    assert model is models.get_model(models.DEMO)  # cached
    assert "loaded" in models.label_of(models.DEMO)
    assert any("guessed preset" in n for n in models.load_notes(models.DEMO))
    assert "CPU" in actions.load_model(models.DEMO) or "GPU" in actions.load_model(models.DEMO)


def test_a_missing_demo_checkpoint_is_explained_not_replaced(demo_env, monkeypatch, tmp_path):
    monkeypatch.setenv("DMNET_DEMO_CHECKPOINT", str(tmp_path / "absent.pth"))
    with pytest.raises(models.DemoMissing, match="demo checkpoint is missing"):
        models.get_model(models.DEMO)
    status = actions.startup(models.DEMO)
    assert "missing" in status and "make demo-checkpoint" in status
    assert "DMNET_DEMO_CHECKPOINT" in status
    assert "(checkpoint missing)" in models.label_of(models.DEMO)
    with pytest.raises(gr.Error, match="demo checkpoint is missing"):
        actions.load_model(models.DEMO)


def tiny_cityscapes_official(tmp_path, monkeypatch) -> str:
    """Point the official preset at a tiny file:// checkpoint with the same classes."""
    model = randomize_bn(DMNet(tiny_preset(classes="cityscapes")).eval())
    path = tmp_path / "dmnet_tiny-d8_cityscapes_20201215_000000-abcdef12.pth"
    torch.save({"state_dict": model.state_dict()}, path)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()[:8]
    official = dmnet.PRESETS[OFFICIAL]
    tiny = dataclasses.replace(model.preset, name=official.name, v0_name=official.v0_name,
                               checkpoint_url=path.as_uri(), sha256_prefix=sha, miou=77.78)
    monkeypatch.setitem(dmnet.PRESETS, OFFICIAL, tiny)
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    return sha


def test_official_checkpoints_download_on_demand_into_the_hub_cache(demo_env, tmp_path,
                                                                    monkeypatch):
    tiny_cityscapes_official(tmp_path, monkeypatch)
    assert " · download" in models.label_of(OFFICIAL)
    model = models.get_model(OFFICIAL)
    assert model.preset.num_classes == 19
    assert models.official_file(OFFICIAL).is_file()
    assert "loaded" in models.label_of(OFFICIAL)


def test_no_network_gives_a_clear_message(demo_env, tmp_path, monkeypatch):
    tiny_cityscapes_official(tmp_path, monkeypatch)
    broken = dataclasses.replace(dmnet.PRESETS[OFFICIAL],
                                 checkpoint_url="http://127.0.0.1:9/dmnet_r50_x-abcdef12.pth")
    monkeypatch.setitem(dmnet.PRESETS, OFFICIAL, broken)
    with pytest.raises(gr.Error, match="could not download"):
        actions.load_model(OFFICIAL)


def test_uploads_must_be_dmnet_checkpoints(demo_env, tmp_path):
    good = tmp_path / "mine.pth"
    torch.save(randomize_bn(DMNet(tiny_preset()).eval()).state_dict(), good)
    key = models.register_upload(good, "mine.pth")
    assert key.startswith("upload:") and models.label_of(key).startswith("uploaded: mine.pth")
    assert models.get_model(key).preset.num_classes == 7

    other = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(10, 512)},
               other)
    with pytest.raises(dmnet.CheckpointError, match="not a DMNet checkpoint"):
        models.register_upload(other, "resnet.pth")

    text = tmp_path / "notes.pth"
    text.write_text("<html>error page</html>")
    with pytest.raises(dmnet.CheckpointError, match="not a PyTorch checkpoint"):
        models.register_upload(text, "notes.pth")


class Exploit:
    def __reduce__(self):
        return (print, ("pwned",))


def test_malicious_pickles_are_refused_without_running_them(demo_env, tmp_path, capsys):
    evil = tmp_path / "evil.pth"
    with open(evil, "wb") as f:
        pickle.dump({"state_dict": Exploit()}, f, protocol=2)
    with pytest.raises(gr.Error, match="unsafe|could not be read") as err:
        actions.upload_checkpoint(str(evil))
    assert str(tmp_path) not in str(err.value)  # the user sees the file name, not a temp path
    assert "pwned" not in capsys.readouterr().out
