import dataclasses
import os
import pickle
import re
import sys
import types

import numpy as np
import pytest
import torch

from dmnet import PRESETS, CheckpointError, DMNet, checkpoint_meta, load_checkpoint
from dmnet.presets import DATASETS

from ..conftest import randomize_bn, tiny_preset

R50_CS = "dmnet_r50-d8_4xb2-40k_cityscapes-512x1024"
R50_CS_FILE = "dmnet_r50-d8_512x1024_40k_cityscapes_20201215_042326-615373cf.pth"
ARCH = ("depth", "dataset", "stem_channels", "base_channels", "head_channels", "aux_channels",
        "filter_sizes", "fusion")


def tiny(depth=18, classes="multiscale_shapes"):
    return randomize_bn(DMNet(tiny_preset(depth, classes)).eval())


def logits(model):
    x = torch.randn(1, 3, 40, 48, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        return model(x)


def arch(preset):
    return {f: getattr(preset, f) for f in ARCH}


def v0_checkpoint(model):
    p = model.preset
    meta = {"CLASSES": p.classes, "PALETTE": [list(c) for c in p.palette], "config": "model = ...",
            "mmseg_version": "0.9.0", "env_info": "sys.platform: linux", "seed": 0, "iter": 40000}
    return {"meta": meta, "state_dict": model.state_dict()}


def mmseg1_checkpoint(model):
    meta = {"dataset_meta": checkpoint_meta(model)["dataset_meta"], "iter": 2, "epoch": 0,
            "cfg": "model = ...", "time": "20260101_000000", "mmengine_version": "0.10.7"}
    return {"meta": meta, "state_dict": model.state_dict()}


def ddp_checkpoint(model):
    return {f"module.{k}": v for k, v in model.state_dict().items()}


FORMATS = {"v0.x meta": v0_checkpoint, "1.x meta": mmseg1_checkpoint,
           "bare": lambda m: m.state_dict(), "module. prefix": ddp_checkpoint}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("depth,classes", [(18, "context_shapes"), (50, "cityscapes")])
def test_each_format_loads_with_preset_guessed_from_shapes(tmp_path, fmt, depth, classes):
    model = tiny(depth, classes)
    torch.save(FORMATS[fmt](model), tmp_path / "weights.pth")
    with pytest.warns(UserWarning, match=rf"guessed preset .*ResNetV1c-{depth}.*-> {classes}"):
        loaded = load_checkpoint(tmp_path / "weights.pth")
    assert arch(loaded.preset) == arch(model.preset)
    assert not loaded.training
    assert torch.equal(logits(loaded), logits(model))


def test_r18_variant_of_the_small_preset_is_tiny_preset(tmp_path):
    model = tiny()  # MultiScaleShapes', as the file name says
    torch.save(model.state_dict(), tmp_path / "shapes.pth")
    with pytest.warns(UserWarning, match="stem 8 / base 8 / head 16 / aux 8"):
        loaded = load_checkpoint(tmp_path / "shapes.pth")
    name = "dmnet_r18w32-d8_1xb8-7k_shapes-128x128+stem_channels=8,base_channels=8,head_channels=16"
    assert loaded.preset.name.startswith(name)
    assert dataclasses.replace(loaded.preset, name="") == dataclasses.replace(model.preset, name="")


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("stored", ["preset_config", "preset"])
def test_our_training_checkpoint_reads_its_preset_from_meta(tmp_path, monkeypatch, stored):
    preset = tiny_preset(align_corners=True)  # not in any weight shape
    model = randomize_bn(DMNet(preset).eval())
    # SGD's state_dict layout (torch.optim itself takes seconds to import)
    params = list(range(len(list(model.parameters()))))
    optimizer = {"state": {i: {"momentum_buffer": torch.zeros(2)} for i in params},
                 "param_groups": [{"lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4,
                                   "nesterov": False, "foreach": None, "params": params}]}
    ckpt = {"meta": {**checkpoint_meta(model), "iter": 1}, "state_dict": model.state_dict(),
            "optimizer": optimizer}
    if stored == "preset":  # a preset of PRESETS, known by its name
        monkeypatch.setitem(PRESETS, preset.name, preset)
        del ckpt["meta"]["preset_config"]
    torch.save(ckpt, tmp_path / "iter_1.pth")
    loaded = load_checkpoint(tmp_path / "iter_1.pth")
    assert loaded.preset == preset
    assert torch.equal(logits(loaded), logits(model))


def test_map_location_places_the_model(tmp_path):
    torch.save(tiny().state_dict(), tmp_path / "w.pth")
    loaded = load_checkpoint(tmp_path / "w.pth", preset=tiny_preset(), map_location="meta")
    assert {p.device.type for p in loaded.parameters()} == {"meta"}


def test_preset_config_of_another_version_falls_back_to_a_guess(tmp_path):
    ckpt = mmseg1_checkpoint(tiny())
    ckpt["meta"]["preset_config"] = {"name": "old", "renamed_field": 1}
    torch.save(ckpt, tmp_path / "old.pth")
    with pytest.warns(UserWarning, match="guessed .*preset_config'] does not fit"):
        load_checkpoint(tmp_path / "old.pth")
    ckpt["meta"]["preset_config"] = dataclasses.asdict(tiny_preset(depth=34))
    torch.save(ckpt, tmp_path / "r34.pth")
    with pytest.raises(CheckpointError, match=r"preset tiny-r34 \(from meta\['preset_config'\]\) "
                                              "cannot be built: ResNetV1c depth must be one of"):
        load_checkpoint(tmp_path / "r34.pth")


def test_checkpoint_meta_is_mmseg_dataset_meta():
    meta = checkpoint_meta(DMNet(tiny_preset(classes="cityscapes")))
    assert meta["preset"] == "tiny-r18"
    assert meta["dataset_meta"]["classes"][:2] == ("road", "sidewalk")
    assert meta["dataset_meta"]["palette"][0] == [128, 64, 128]
    assert meta["dataset_meta"]["label_map"] is None
    assert meta["dataset_meta"]["reduce_zero_label"] is False
    assert meta["preset_config"]["head_channels"] == 16


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("fmt", ["v0.x meta", "1.x meta"])
def test_meta_class_names_override_the_presets_dataset(tmp_path, monkeypatch, fmt):
    preset = tiny_preset(classes="cityscapes")
    monkeypatch.setitem(PRESETS, preset.name, preset)
    model = tiny(classes="ade20k")  # e.g. fine-tuned on ADE20K from a Cityscapes preset
    ckpt = FORMATS[fmt](model)
    ckpt["meta"]["preset"] = preset.name
    torch.save(ckpt, tmp_path / "finetuned.pth")
    loaded = load_checkpoint(tmp_path / "finetuned.pth")
    assert loaded.preset.name == "tiny-r18+dataset=ade20k"
    assert loaded.preset.classes[0] == "wall"
    assert torch.equal(logits(loaded), logits(model))


def test_custom_class_names_and_palette_from_meta(tmp_path):
    ckpt = mmseg1_checkpoint(tiny())
    ckpt["meta"]["dataset_meta"]["classes"] = tuple("abcdefg")
    ckpt["meta"]["dataset_meta"]["palette"] = [[i, i, i] for i in range(7)]
    torch.save(ckpt, tmp_path / "letters.pth")
    with pytest.warns(UserWarning, match=r"guessed preset .*\+7 classes from meta"):
        loaded = load_checkpoint(tmp_path / "letters.pth")
    assert loaded.preset.classes == tuple("abcdefg")
    assert loaded.preset.palette[3] == (3, 3, 3)


def test_class_count_of_no_known_dataset_gets_numbered_classes(tmp_path):
    sd = tiny().state_dict()
    for k in ("decode_head.conv_seg.weight", "decode_head.conv_seg.bias",
              "auxiliary_head.conv_seg.weight", "auxiliary_head.conv_seg.bias"):
        sd[k] = sd[k][:5]
    torch.save(sd, tmp_path / "five.pth")
    with pytest.warns(UserWarning, match=r"5 classes \(decode_head.conv_seg\) -> no known dataset"):
        loaded = load_checkpoint(tmp_path / "five.pth")
    assert loaded.preset.classes == ("class 0", "class 1", "class 2", "class 3", "class 4")


@pytest.mark.parametrize(("file", "dataset", "how"), [
    ("weights.pth", "context_shapes", "no dataset named in the file name"),
    ("run_patterns_iter_500.pth", "pattern_match", "'pattern' in the file name"),
    ("MultiScale_Shapes.pth", "multiscale_shapes", "'shapes' in the file name")])
def test_seven_classes_are_the_synthetic_data_the_file_name_says(tmp_path, file, dataset, how):
    """ContextShapes, PatternMatch and MultiScaleShapes all have 7 classes: a word in a bare
    state dict's file name decides, else the bundled demo's data (ContextShapes)."""
    torch.save(tiny().state_dict(), tmp_path / file)
    with pytest.warns(UserWarning, match=re.escape(f"7 classes (decode_head.conv_seg) -> "
                                                   f"{dataset} ({how};")):
        loaded = load_checkpoint(tmp_path / file)
    assert loaded.preset.dataset == dataset and loaded.preset.classes == DATASETS[dataset][0]


# --- the real R-50 ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def r50(tmp_path_factory):
    model = DMNet(PRESETS[R50_CS]).eval()
    folder = tmp_path_factory.mktemp("r50")
    torch.save(model.state_dict(), folder / R50_CS_FILE)
    os.link(folder / R50_CS_FILE, folder / "weights.pth")
    os.link(folder / R50_CS_FILE, folder / "finetuned_769x769.pth")
    return model, folder


@pytest.mark.filterwarnings("error")
def test_r50_official_name_is_recognised_without_warning(r50):
    model, folder = r50
    loaded = load_checkpoint(folder / R50_CS_FILE)
    assert loaded.preset is PRESETS[R50_CS]
    assert torch.equal(loaded.decode_head.conv_seg.weight, model.decode_head.conv_seg.weight)


def test_r50_unnamed_file_is_inferred_from_shapes_with_warning(r50):
    model, folder = r50
    with pytest.warns(UserWarning) as record:
        loaded = load_checkpoint(folder / "weights.pth")
    assert len(record) == 1
    text = str(record[0].message)
    assert f"guessed preset {R50_CS} " in text and "(blocks per stage (3, 4, 6, 3))" in text
    assert "19 classes (decode_head.conv_seg) -> cityscapes" in text
    assert loaded.preset is PRESETS[R50_CS]
    sd, ref = loaded.state_dict(), model.state_dict()
    assert all(torch.equal(sd[k], ref[k]) for k in ref)


def test_r50_guess_follows_769_in_the_file_name(r50):
    _, folder = r50
    with pytest.warns(UserWarning, match="taken from dmnet_r50-d8_4xb2-40k_cityscapes-769x769"):
        loaded = load_checkpoint(folder / "finetuned_769x769.pth")
    assert loaded.preset is PRESETS["dmnet_r50-d8_4xb2-40k_cityscapes-769x769"]


# --- reading files safely -------------------------------------------------------------------------

@pytest.fixture
def fake_mmengine(monkeypatch, tmp_path):
    """A class named like mmengine's HistoryBuffer whose unpickling would leave a file behind."""
    marker = tmp_path / "history_buffer_was_unpickled"

    class HistoryBuffer:
        def __init__(self, log=(), count=()):
            self.max_length = 1_000_000
            self._log_history = np.array(log)
            self._count_history = np.array(count)

        def __setstate__(self, state):
            marker.touch()
            self.__dict__.update(state)

    name = "mmengine.logging.history_buffer"
    HistoryBuffer.__module__, HistoryBuffer.__qualname__ = name, "HistoryBuffer"
    for part in ("mmengine", "mmengine.logging", name):
        monkeypatch.setitem(sys.modules, part, types.ModuleType(part))
    sys.modules[name].HistoryBuffer = HistoryBuffer
    return HistoryBuffer, marker


@pytest.mark.parametrize("zip_format", [True, False])
def test_mmengine_training_checkpoint_yields_weights_without_running_code(tmp_path, fake_mmengine,
                                                                          zip_format):
    HistoryBuffer, marker = fake_mmengine
    model = tiny(classes="cityscapes")
    ckpt = mmseg1_checkpoint(model)
    ckpt["message_hub"] = {
        "log_scalars": {"train/loss": HistoryBuffer([1.5, 1.2], [1, 1]),
                        "train/lr": HistoryBuffer([0.01], [1])},
        "runtime_info": {"iter": 2, "loss": np.float64(1.2)}, "resumed_keys": {"iter": True}}
    ckpt["optimizer"] = {"state": {0: {"momentum_buffer": torch.zeros(3)}},
                         "param_groups": [{"lr": 0.01, "params": [0]}]}
    ckpt["param_schedulers"] = [{"eta_min": 1e-4, "power": 0.9, "_last_value": [0.01]}]
    torch.save(ckpt, tmp_path / "iter_2.pth", _use_new_zipfile_serialization=zip_format)
    with pytest.raises(pickle.UnpicklingError, match="HistoryBuffer"):
        torch.load(tmp_path / "iter_2.pth", weights_only=True)  # why the fallback exists

    with pytest.warns(UserWarning, match="guessed"):
        loaded = load_checkpoint(tmp_path / "iter_2.pth")
    assert not marker.exists()
    assert torch.equal(logits(loaded), logits(model))


class Exploit:
    def __init__(self, call, arg):
        self.call, self.arg = call, arg

    def __reduce__(self):
        return self.call, (self.arg,)


@pytest.mark.parametrize("zip_format", [True, False])
@pytest.mark.parametrize("how", ["os.system", "exec"])
def test_pickle_that_runs_code_is_refused_and_runs_nothing(tmp_path, zip_format, how):
    marker = tmp_path / "pwned"
    exploit = (Exploit(os.system, f"touch {marker}") if how == "os.system"
               else Exploit(exec, f"open({str(marker)!r}, 'w').close()"))
    ckpt = {"state_dict": tiny().state_dict(), "meta": {"x": exploit}}
    torch.save(ckpt, tmp_path / "evil.pth", _use_new_zipfile_serialization=zip_format)
    name = "posix.system" if how == "os.system" else "builtins.exec"
    with pytest.raises(CheckpointError, match=rf"evil.pth is unsafe: the pickle tries to call "
                                              rf"{name}\(.*nothing was called"):
        load_checkpoint(tmp_path / "evil.pth")
    assert not marker.exists()


def test_pickled_model_object_is_refused_with_advice(tmp_path):
    torch.save(tiny(), tmp_path / "model.pth")
    with pytest.raises(CheckpointError, match=r"pickled dmnet.model.DMNet object.*state_dict\(\)"):
        load_checkpoint(tmp_path / "model.pth")


# --- clear errors -------------------------------------------------------------------------------

def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found: .*nope.pth"):
        load_checkpoint(tmp_path / "nope.pth")


def test_empty_file(tmp_path):
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty.pth is empty \(0 bytes\)"):
        load_checkpoint(tmp_path / "empty.pth")


@pytest.mark.parametrize("zip_format", [True, False])
def test_truncated_file(tmp_path, zip_format):
    torch.save(tiny().state_dict(), tmp_path / "full.pth",
               _use_new_zipfile_serialization=zip_format)
    data = (tmp_path / "full.pth").read_bytes()
    (tmp_path / "half.pth").write_bytes(data[: len(data) // 2])
    match = "truncated or corrupt" if zip_format else "half.pth could not be read: .*EOF"
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(tmp_path / "half.pth")


@pytest.mark.parametrize("data,match", [
    (b"\x89PNG\r\n\x1a\n" + bytes(100), "not a PyTorch checkpoint: it is a PNG image"),
    (bytes(range(7, 107)), "not a PyTorch checkpoint: it starts with bytes 0708090a0b0c0d0e"),
    (b"<!DOCTYPE html><html>404</html>", "an error page saved instead of the file"),
])
def test_not_a_torch_file(tmp_path, data, match):
    (tmp_path / "x.pth").write_bytes(data)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(tmp_path / "x.pth")


def test_not_a_dict_of_weights(tmp_path):
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="list.pth holds a list, not a dict of weights"):
        load_checkpoint(tmp_path / "list.pth")
    torch.save({"model": tiny().state_dict(), "epoch": 3}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="no 'state_dict'.* 2 non-tensor entries: model, ep"):
        load_checkpoint(tmp_path / "other.pth")


def test_torchvision_resnet_is_not_dmnet(tmp_path):
    torchvision = pytest.importorskip("torchvision")
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "resnet18.pth")
    with pytest.raises(CheckpointError, match=r"resnet18.pth is not a DMNet checkpoint: it lacks "
                                              r"backbone.stem.0.weight, .*its 122 keys start with "
                                              r"conv1.weight"):
        load_checkpoint(tmp_path / "resnet18.pth")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(tmp_path / "resnet18.pth", preset=tiny_preset())
    text = str(err.value)
    assert "does not fit preset tiny-r18 (as given)" in text
    assert "it is not a DMNet state dict" in text
    assert "missing keys:\n    backbone.stem.0.weight" in text
    assert "122 unexpected keys:\n    conv1.weight" in text


def test_missing_unexpected_and_misshaped_keys_diff(tmp_path):
    sd = tiny().state_dict()
    del sd["backbone.layer4.1.bn2.running_mean"], sd["decode_head.conv_seg.bias"]
    sd["decode_head.extra.weight"] = torch.zeros(1)
    sd["decode_head.dcm_modules.0.filter_gen_conv.bias"] = torch.zeros(17)
    torch.save(sd, tmp_path / "edited.pth")
    with pytest.warns(UserWarning), pytest.raises(CheckpointError) as err:
        load_checkpoint(tmp_path / "edited.pth")
    lines = str(err.value).splitlines()
    assert lines[0].startswith(
        "edited.pth does not fit preset dmnet_r18w32-d8_1xb8-6k_context-128x128")
    assert lines[0].endswith("(guessed from the weights):")
    assert lines[1:] == [
        "  2 missing keys:",
        "    backbone.layer4.1.bn2.running_mean",
        "    decode_head.conv_seg.bias",
        "  1 unexpected keys:",
        "    decode_head.extra.weight",
        "  1 keys with the wrong shape:",
        "    decode_head.dcm_modules.0.filter_gen_conv.bias: expected (16,), got (17,)",
    ]


def test_long_diffs_are_cut_at_ten(tmp_path):
    torch.save(tiny(18).state_dict(), tmp_path / "r18.pth")
    with pytest.raises(CheckpointError, match=r"missing keys:\n(    .*\n){10}    \.\.\. and \d+"):
        load_checkpoint(tmp_path / "r18.pth", preset=tiny_preset(50))


def test_non_finite_weights_are_named(tmp_path):
    sd = tiny().state_dict()
    sd["backbone.stem.0.weight"][0, 0, 0, 0] = float("nan")
    sd["decode_head.conv_seg.bias"][:2] = float("inf")
    torch.save(sd, tmp_path / "nan.pth")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(tmp_path / "nan.pth", preset=tiny_preset())
    assert str(err.value).splitlines() == [
        "nan.pth has non-finite weights (NaN/Inf) in 2 tensors (a diverged training run?):",
        "  backbone.stem.0.weight (1 NaN, 0 Inf of 108)",
        "  decode_head.conv_seg.bias (0 NaN, 2 Inf of 7)",
    ]


def test_unknown_depth(tmp_path):
    sd = tiny(50).state_dict()
    sd = {k: v for k, v in sd.items() if not k.startswith("backbone.layer3.5.")}
    torch.save(sd, tmp_path / "r45.pth")
    with pytest.raises(CheckpointError, match=r"\(3, 4, 5, 3\) bottleneck blocks per stage is not "
                                              r"a ResNetV1c-18/50/101"):
        load_checkpoint(tmp_path / "r45.pth")


@pytest.mark.parametrize("given", [False, True])
def test_a_missing_dcm_is_named_with_its_filter_size(tmp_path, given):
    sd = {k: v for k, v in tiny().state_dict().items()
          if not k.startswith("decode_head.dcm_modules.2.")}
    torch.save(sd, tmp_path / "three.pth")
    with pytest.raises(CheckpointError, match=r"three.pth.*\n?.*it lacks decode_head\.dcm_modules"
                                              r"\.2 \(k=5\) of the filter sizes \(1, 3, 5, 7\)"):
        load_checkpoint(tmp_path / "three.pth", preset=tiny_preset() if given else None)


def test_an_extra_dcm_asks_for_the_preset(tmp_path):
    sd = tiny().state_dict()
    sd.update({k.replace(".dcm_modules.3.", ".dcm_modules.4."): v for k, v in sd.items()
               if k.startswith("decode_head.dcm_modules.3.")})
    torch.save(sd, tmp_path / "five.pth")
    with pytest.raises(CheckpointError, match=r"has 5 dynamic convolutional modules \(decode_head"
                                              r"\.dcm_modules\.4 beyond .*pass preset="):
        load_checkpoint(tmp_path / "five.pth")
