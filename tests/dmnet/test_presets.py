import json
from pathlib import Path

import pytest

from dmnet import ALIASES, PRESETS, DMNet, build_model, get_preset

REFERENCE = Path(__file__).parent / "fixtures"  # copied from shared/reference/
OFFICIAL = [n for n, p in PRESETS.items() if p.checkpoint_url]

# Exact counts from mmseg_dmnet_facts.md §7: (depth, classes) -> (total, backbone, decode, aux).
COUNTS = {
    (50, 19): (53_175_942, 23_527_264, 27_283_987, 2_364_691),
    (50, 150): (53_276_812, 23_527_264, 27_351_190, 2_398_358),
    (101, 19): (72_168_070, 42_519_392, 27_283_987, 2_364_691),
    (101, 150): (72_268_940, 42_519_392, 27_351_190, 2_398_358),
}


def count(module):
    return sum(p.numel() for p in module.parameters())


def test_twelve_official_presets_with_aliases():
    assert len(OFFICIAL) == 12
    assert len(ALIASES) == 12
    for v0, name in ALIASES.items():
        assert get_preset(v0) is PRESETS[name]
        p = PRESETS[name]
        assert p.checkpoint_url.endswith(f"-{p.sha256_prefix}.pth")
        assert f"/{v0}/{v0}_" in p.checkpoint_url
        assert p.miou is not None and p.miou_ms_flip > p.miou


@pytest.mark.parametrize("name", OFFICIAL)
def test_official_preset_parameter_counts(name):
    p = PRESETS[name]
    m = DMNet(p)
    expected = COUNTS[(p.depth, p.num_classes)]
    got = (count(m), count(m.backbone), count(m.decode_head), count(m.auxiliary_head))
    assert got == expected
    # The facts' buffer counts include mmseg's data-preprocessor mean/std (3 + 3, not saved).
    buffers = sum(b.numel() for b in m.buffers())
    assert buffers + 6 == {50: 63_047, 101: 115_322}[p.depth]
    assert sum(1 for k in m.state_dict() if k.endswith("num_batches_tracked")) == (
        {50: 65, 101: 116}[p.depth])


def test_state_dict_keys_and_shapes_equal_mmseg():
    ref = json.loads((REFERENCE / "mmseg_dmnet_r50_keys.json").read_text())
    sd = DMNet(get_preset("dmnet_r50-d8_512x1024_40k_cityscapes")).state_dict()
    assert list(sd) == list(ref)  # same names, same order
    assert {k: list(v.shape) for k, v in sd.items()} == ref


def test_r101_key_count():
    sd = DMNet(PRESETS["dmnet_r101-d8_4xb4-160k_ade20k-512x512"]).state_dict()
    assert len(sd) == 704


def test_dataset_specific_settings():
    cs769 = get_preset("dmnet_r50-d8_769x769_40k_cityscapes")
    assert (cs769.align_corners, cs769.test_mode, cs769.test_crop, cs769.test_stride) == (
        True, "slide", (769, 769), (513, 513))
    ade = get_preset("dmnet_r101-d8_512x512_160k_ade20k")
    assert ade.num_classes == 150 and ade.reduce_zero_label and ade.schedule.max_iters == 160000
    assert ade.schedule.batch_per_gpu * ade.schedule.gpus == 16
    cs = get_preset("dmnet_r50-d8_4xb2-80k_cityscapes-512x1024")
    assert cs.classes[:3] == ("road", "sidewalk", "building") and len(cs.palette) == 19
    assert cs.schedule.val_interval == 8000 and cs.align_corners is False
    # every config's RandomResize(ratio_range=(0.5, 2.0)); only the from-scratch CPU presets
    # (of the synthetic datasets) differ
    synthetic = {"multiscale_shapes", "context_shapes", "pattern_match"}
    assert {p.ratio_range for p in PRESETS.values() if p.dataset not in synthetic} == {(0.5, 2.0)}


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(KeyError, match="dmnet_r50-d8_4xb2-40k_cityscapes-512x1024"):
        get_preset("pspnet_r50")


def test_small_preset_builds_in_eval_mode():
    m = build_model("dmnet_r18w32-d8_1xb8-7k_shapes-128x128")
    assert not m.training
    assert m.preset.num_classes == len(m.preset.palette)
    assert count(m) < 15_000_000
