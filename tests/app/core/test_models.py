"""The model picker: demo (present or missing), official checkpoints offline, server files,
uploads; every bad checkpoint gets one short message."""

import dataclasses
import hashlib
import pickle
from pathlib import Path

import gradio as gr
import pytest
import torch

import dmnet
from app.core import models
from app.views.sidebar import actions
from dmnet import DMNet

from ...conftest import randomize_bn, tiny_preset
from ..conftest import short_message, written

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


def test_uploads_join_the_picker(demo_env, tmp_path):
    good = tmp_path / "mine.pth"
    torch.save(randomize_bn(DMNet(tiny_preset()).eval()).state_dict(), good)
    key = models.register_upload(good, "mine.pth")
    assert key.startswith("upload:") and models.label_of(key).startswith("uploaded: mine.pth")
    assert models.get_model(key).preset.num_classes == 7


def test_server_checkpoints_are_listed_at_start_and_read_when_picked(demo_env, tmp_path,
                                                                      monkeypatch):
    monkeypatch.setattr(models, "_local", {})
    folder = tmp_path / "ckpts"
    folder.mkdir()
    torch.save(randomize_bn(DMNet(tiny_preset()).eval()).state_dict(), folder / "a.pth")
    (folder / "notes.txt").write_text("not a checkpoint")
    torch.save(randomize_bn(DMNet(tiny_preset()).eval()).state_dict(), tmp_path / "b.pth")
    keys = models.add_local([folder, tmp_path / "b.pth"])
    assert keys == [f"local:{folder / 'a.pth'}", f"local:{tmp_path / 'b.pth'}"]
    assert models.label_of(keys[0]) == "local: a.pth" and keys[0] not in models._models
    assert "preset" in actions.load_model(keys[0])
    assert models.label_of(keys[0]) == "local: a.pth · loaded"


def test_after_a_load_the_picker_keeps_the_model_in_use_and_goes_back_to_it(demo_env):
    picker, in_use = actions.refresh_choices(models.DEMO)
    assert in_use == models.DEMO and picker.value == models.DEMO  # after a success
    picker, status = actions.back_to(models.DEMO)  # after a failure: the model still in use
    assert picker.value == models.DEMO and "loaded" in status and "filter sizes" in status


def test_a_failed_pick_runs_nothing_else_on_the_failed_key(demo_env):
    from app.page import build

    fns = list(build().fns.values())
    picked = next(fn for fn in fns if fn.api_name == "load_model")
    (model, event), = picked.targets
    assert event == "select"  # Gradio 6.31's dropdown fires `input` twice per pick
    # Besides the load, only the address bar follows the picker (urlstate.link: no model).
    assert sorted(fn.name for fn in fns if any(t[0] == model for t in fn.targets)) == [
        "address", "load_model"]
    after = [fn for fn in fns if fn.trigger_after == picked._id]
    assert {(fn.name, fn.trigger_only_on_failure) for fn in after} == {
        ("back_to", True), ("refresh_choices", False)}
    kept = next(fn for fn in after if fn.name == "refresh_choices")
    assert {fn.name for fn in fns if fn.trigger_after == kept._id} >= {
        "model_card_or_note", "subject_of"}  # the card, and the new subject (its notices)


class Exploit:
    def __reduce__(self):
        return (print, ("pwned",))


def dmnet_weights(edit=lambda sd: sd) -> dict:
    return edit(randomize_bn(DMNet(tiny_preset()).eval()).state_dict())


def saved(obj, name: str):
    def write(folder: Path) -> Path:
        torch.save(obj() if callable(obj) else obj, folder / name)
        return folder / name
    return write


def truncated(folder: Path) -> Path:
    full = saved(dmnet_weights, "full.pth")(folder).read_bytes()
    (folder / "cut.pth").write_bytes(full[: len(full) // 2])
    return folder / "cut.pth"


def pickled_exploit(folder: Path) -> Path:
    with open(folder / "evil.pth", "wb") as f:
        pickle.dump({"state_dict": Exploit()}, f, protocol=2)
    return folder / "evil.pth"


def a_folder(folder: Path) -> Path:
    (folder / "ckpts" / "folder.pth").mkdir(parents=True)
    return folder / "ckpts"  # listed with its "checkpoints": one folder named folder.pth


def with_nan(sd: dict) -> dict:
    sd["backbone.stem.0.weight"][0, 0, 0, 0] = float("nan")
    return sd


def without_dcm2(sd: dict) -> dict:
    return {k: v for k, v in sd.items() if not k.startswith("decode_head.dcm_modules.2.")}


def wrong_shape(sd: dict) -> dict:
    sd["decode_head.dcm_modules.0.filter_gen_conv.bias"] = torch.zeros(17)
    return sd


BAD = {  # what the user gives -> (how to make it, words of the one message they see)
    "no such file": (lambda folder: folder / "gone.pth", "checkpoint not found: gone.pth"),
    "not a file": (a_folder, "folder.pth is a directory, not a checkpoint file"),
    "empty": (written(b"", "empty.pth"), "empty.pth is empty (0 bytes)"),
    "truncated": (truncated, "cut.pth is truncated or corrupt"),
    "HTML page": (written(b"<!DOCTYPE html><html>404</html>", "page.pth"), "an error page"),
    "image file": (written(b"\x89PNG\r\n\x1a\n" + bytes(100), "photo.pth"), "a PNG image"),
    "malicious pickle": (pickled_exploit, "evil.pth is unsafe"),
    "missing DCM": (saved(lambda: dmnet_weights(without_dcm2), "three.pth"),
                    "lacks decode_head.dcm_modules.2 (k=5) of the filter sizes (1, 3, 5, 7)"),
    "wrong shapes": (saved(lambda: dmnet_weights(wrong_shape), "shape.pth"),
                     "filter_gen_conv.bias: expected (16,), got (17,)"),
    "NaN weights": (saved(lambda: dmnet_weights(with_nan), "nan.pth"),
                    "backbone.stem.0.weight (1 NaN, 0 Inf of 108)"),
    "non-DMNet state dict": (saved({"fc.weight": torch.zeros(10, 512)}, "resnet.pth"),
                             "resnet.pth is not a DMNet checkpoint"),
}


NOT_UPLOADS = ("no such file", "not a file")  # an upload is always a file


@pytest.mark.parametrize("case,route", [(c, "picked from the server") for c in BAD]
                         + [(c, "uploaded") for c in BAD if c not in NOT_UPLOADS])
def test_every_bad_checkpoint_gets_one_short_message(demo_env, tmp_path, monkeypatch, capsys,
                                                     case, route):
    monkeypatch.setattr(models, "_local", {})
    make, words = BAD[case]
    source = make(tmp_path)
    if route == "uploaded":
        text = short_message(actions.upload_checkpoint, str(source))
    else:
        key, = models.add_local([source])
        text = short_message(actions.load_model, key)
    assert words in text
    assert str(tmp_path) not in text  # the file's name, not where it lies
    assert "pwned" not in capsys.readouterr().out


def test_an_official_pick_offline_gets_one_short_message(demo_env, tmp_path, monkeypatch):
    tiny_cityscapes_official(tmp_path, monkeypatch)
    broken = dataclasses.replace(dmnet.PRESETS[OFFICIAL],
                                 checkpoint_url="http://127.0.0.1:9/dmnet_r50_x-abcdef12.pth")
    monkeypatch.setitem(dmnet.PRESETS, OFFICIAL, broken)
    text = short_message(actions.load_model, OFFICIAL)
    assert "could not download" in text and "Without network access" in text
