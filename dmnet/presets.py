"""Presets: one frozen dataclass per mmsegmentation DMNet config, plus small CPU presets.

`PRESETS` is the index (mmsegmentation 1.x config name -> `Preset`); `ALIASES` maps the v0.x
names of the published checkpoints to the same presets. Facts come from mmsegmentation 1.2.2's
configs and metafile (see `../shared/reference/mmseg_dmnet_facts.md` §1-§6).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

IMAGENET_MEAN = (123.675, 116.28, 103.53)  # RGB, as SegDataPreProcessor after bgr_to_rgb
IMAGENET_STD = (58.395, 57.12, 57.375)
TTA_RATIOS = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)  # the configs' ms+flip test ratios
CHECKPOINT_ROOT = "https://download.openmmlab.com/mmsegmentation/v0.5/dmnet"


def _load_datasets() -> dict[str, tuple[tuple[str, ...], tuple[tuple[int, int, int], ...]]]:
    raw = json.loads((Path(__file__).parent / "data" / "palettes.json").read_text())
    return {
        name: (tuple(d["classes"]), tuple(tuple(int(c) for c in rgb) for rgb in d["palette"]))
        for name, d in raw.items()
    }


# Dataset name -> (class names, RGB palette). MultiScaleShapes is this project's synthetic dataset.
DATASETS = _load_datasets()
DATASETS["multiscale_shapes"] = (
    ("background", "disk", "square", "triangle", "ring", "cross", "star"),
    ((0, 0, 0), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
     (145, 30, 180)),
)
# ContextShapes (training/data/context.py): a shape's class is its shape and the picture's frame;
# each shape's two classes share a hue (dark: striped frame, light: checked frame).
DATASETS["context_shapes"] = (
    ("background", "disk, striped frame", "disk, checked frame", "square, striped frame",
     "square, checked frame", "triangle, striped frame", "triangle, checked frame"),
    ((0, 0, 0), (200, 20, 60), (255, 150, 180), (30, 140, 50), (150, 235, 140), (20, 80, 200),
     (120, 200, 255)),
)

# PatternMatch (training/data/patterns.py): a pattern's class is its size (its colour channel)
# and whether it matches the picture's layout of that size (dark: matches, light: inverted).
DATASETS["pattern_match"] = (
    ("background", "3x3 pattern, matches", "3x3 pattern, inverted", "5x5 pattern, matches",
     "5x5 pattern, inverted", "7x7 pattern, matches", "7x7 pattern, inverted"),
    ((0, 0, 0), (200, 20, 60), (255, 150, 180), (30, 140, 50), (150, 235, 140), (20, 80, 200),
     (120, 200, 255)),
)


@dataclass(frozen=True)
class Schedule:
    """The training recipe of one config (SGD + poly LR, iteration based)."""

    max_iters: int  # IterBasedTrainLoop.max_iters (= PolyLR end)
    val_interval: int  # validation and checkpoint interval
    batch_per_gpu: int  # train_dataloader.batch_size
    gpus: int  # the configs' "4xbN": global batch = gpus * batch_per_gpu
    lr: float = 0.01
    momentum: float = 0.9  # SGD only
    weight_decay: float = 5e-4  # on all parameters (no paramwise_cfg)
    optimizer: str = "sgd"  # every config's SGD; "adamw" (decoupled decay) for from-scratch runs
    lr_min: float = 1e-4  # PolyLR eta_min
    power: float = 0.9
    aux_weight: float = 0.4


@dataclass(frozen=True)
class Preset:
    """Everything needed to build, run and train one DMNet configuration.

    Sizes are (height, width). `test_scale` is mmseg's keep-ratio Resize scale (long, short)
    used by the test pipeline and by random resize during training.
    """

    name: str  # mmsegmentation 1.x config name
    depth: int  # ResNetV1c depth: 18, 50 or 101
    dataset: str  # key of DATASETS
    crop_size: tuple[int, int]  # training crop (h, w)
    test_scale: tuple[int, int]  # Resize scale (long side, short side), keep_ratio=True
    align_corners: bool  # of both heads' bilinear resizes
    schedule: Schedule
    ratio_range: tuple[float, float] = (0.5, 2.0)  # training RandomResize ratios (every config's)
    photometric: bool = True  # PhotoMetricDistortion in training (every config's)
    test_mode: str = "whole"  # "whole" or "slide"
    test_crop: tuple[int, int] | None = None  # slide window (h, w)
    test_stride: tuple[int, int] | None = None  # slide stride (h, w)
    v0_name: str | None = None  # v0.x config name (the published checkpoint's folder)
    stem_channels: int = 64  # ResNet stem output channels (deep stem: /2, /2, x1)
    base_channels: int = 64  # width of layer1 (planes); doubles per stage
    head_channels: int = 512  # DMHead `channels`
    aux_channels: int = 256  # FCNHead `channels`
    filter_sizes: tuple[int, ...] = (1, 3, 5, 7)
    fusion: bool = False  # DCM fusion conv (off in every mmseg config)
    dropout_ratio: float = 0.1
    reduce_zero_label: bool = False
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    checkpoint_url: str | None = None
    sha256_prefix: str | None = None  # first 8 hex digits of the file's sha256
    miou: float | None = None  # published single-scale mIoU (%)
    miou_ms_flip: float | None = None  # published multi-scale + flip mIoU (%)
    fps_v100: float | None = None  # published inference speed on one V100
    memory_gb: float | None = None  # published training memory per GPU
    classes: tuple[str, ...] = ()  # class names; empty = the dataset's (filled in)
    palette: tuple[tuple[int, int, int], ...] = ()  # RGB per class; empty = the dataset's

    def __post_init__(self) -> None:
        if not self.classes:
            object.__setattr__(self, "classes", DATASETS[self.dataset][0])
        if not self.palette:
            object.__setattr__(self, "palette", DATASETS[self.dataset][1])
        if len(self.palette) != len(self.classes):
            raise ValueError(f"preset {self.name}: {len(self.classes)} classes but "
                             f"{len(self.palette)} palette colours")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def block_expansion(self) -> int:
        return 1 if self.depth < 50 else 4

    @property
    def in_channels(self) -> int:
        """Channels of the last backbone stage (DMHead input)."""
        return self.base_channels * 8 * self.block_expansion

    def with_classes(self, classes: tuple[str, ...],
                     palette: tuple[tuple[int, int, int], ...] | None = None) -> "Preset":
        """The same architecture with other classes (a palette is made up when not given)."""
        if palette is None:
            palette = tuple(tuple(int(v) for v in (37 * i % 256, 97 * i % 256, 151 * i % 256))
                            for i in range(len(classes)))
        return dataclasses.replace(self, classes=tuple(classes), palette=tuple(palette))


_CS = dict(dataset="cityscapes", crop_size=(512, 1024), test_scale=(2048, 1024), align_corners=False)
_CS769 = dict(dataset="cityscapes", crop_size=(769, 769), test_scale=(2049, 1025), align_corners=True,
              test_mode="slide", test_crop=(769, 769), test_stride=(513, 513))
_ADE = dict(dataset="ade20k", crop_size=(512, 512), test_scale=(2048, 512), align_corners=False,
            reduce_zero_label=True)
_SCHEDULES = {
    "4xb2-40k": Schedule(40000, 4000, 2, 4), "4xb2-80k": Schedule(80000, 8000, 2, 4),
    "4xb4-80k": Schedule(80000, 8000, 4, 4), "4xb4-160k": Schedule(160000, 16000, 4, 4),
}

# (depth, schedule, dataset kwargs, 1.x suffix, v0.x name, stamp-sha8, mIoU, ms+flip, fps, mem)
_OFFICIAL = [
    (50, "4xb2-40k", _CS, "cityscapes-512x1024", "512x1024_40k_cityscapes", "20201215_042326-615373cf", 77.78, 79.14, 3.66, 7.0),
    (50, "4xb2-80k", _CS, "cityscapes-512x1024", "512x1024_80k_cityscapes", "20201215_053728-3c8893b9", 79.07, 80.22, None, None),
    (101, "4xb2-40k", _CS, "cityscapes-512x1024", "512x1024_40k_cityscapes", "20201215_043100-8291e976", 78.37, 79.72, 2.54, 10.6),
    (101, "4xb2-80k", _CS, "cityscapes-512x1024", "512x1024_80k_cityscapes", "20201215_031718-fa081cb8", 79.64, 80.67, None, None),
    (50, "4xb2-40k", _CS769, "cityscapes-769x769", "769x769_40k_cityscapes", "20201215_093706-e7f0e23e", 78.49, 80.27, 1.57, 7.9),
    (50, "4xb2-80k", _CS769, "cityscapes-769x769", "769x769_80k_cityscapes", "20201215_034006-6060840e", 79.22, 80.55, None, None),
    (101, "4xb2-40k", _CS769, "cityscapes-769x769", "769x769_40k_cityscapes", "20201215_081348-a74261f6", 77.62, 78.94, 1.01, 12.0),
    (101, "4xb2-80k", _CS769, "cityscapes-769x769", "769x769_80k_cityscapes", "20201215_082810-7f0de59a", 79.19, 80.65, None, None),
    (50, "4xb4-80k", _ADE, "ade20k-512x512", "512x512_80k_ade20k", "20201215_144744-f89092a6", 42.37, 43.62, 20.95, 9.4),
    (50, "4xb4-160k", _ADE, "ade20k-512x512", "512x512_160k_ade20k", "20201215_115313-025ab3f9", 43.15, 44.17, None, None),
    (101, "4xb4-80k", _ADE, "ade20k-512x512", "512x512_80k_ade20k", "20201215_104812-bfa45311", 45.34, 46.13, 13.88, 13.0),
    (101, "4xb4-160k", _ADE, "ade20k-512x512", "512x512_160k_ade20k", "20201215_111145-a0bc02ef", 45.42, 46.76, None, None),
]


def _official(depth, sched, data, suffix, v0_suffix, stamp, miou, ms, fps, mem) -> Preset:
    v0 = f"dmnet_r{depth}-d8_{v0_suffix}"
    return Preset(
        name=f"dmnet_r{depth}-d8_{sched}_{suffix}", depth=depth, schedule=_SCHEDULES[sched],
        v0_name=v0, checkpoint_url=f"{CHECKPOINT_ROOT}/{v0}/{v0}_{stamp}.pth",
        sha256_prefix=stamp.rsplit("-", 1)[1], miou=miou, miou_ms_flip=ms, fps_v100=fps,
        memory_gb=mem, **data,
    )


# The paper's other two benchmarks, with the recipes mmsegmentation's other heads use (no DMNet
# config or weights exist for them): `_base_/datasets/pascal_voc12_aug.py` (train + SBD aug,
# RandomResize (2048, 512), crop 512, whole test) with schedule_{20k,40k} at 4 GPUs x 4 images, and
# `_base_/datasets/pascal_context_59.py` (scale (520, 520), crop 480, slide 480/320 test,
# reduce_zero_label) with schedule_{40k,80k}, where e.g. pspnet_*_pascal-context-59-480x480 set
# lr 0.004 and weight decay 1e-4.
_VOC = dict(dataset="pascal_voc", crop_size=(512, 512), test_scale=(2048, 512), align_corners=False)
_PC59 = dict(dataset="pascal_context_59", crop_size=(480, 480), test_scale=(520, 520),
             align_corners=False, test_mode="slide", test_crop=(480, 480), test_stride=(320, 320),
             reduce_zero_label=True)
_PC59_SGD = dict(lr=0.004, weight_decay=1e-4)
_EXTRA = [
    (f"dmnet_r{depth}-d8_4xb4-{k}k_{suffix}", depth, sched, data)
    for depth in (50, 101)
    for k, suffix, sched, data in [
        (20, "voc12aug-512x512", Schedule(20000, 2000, 4, 4), _VOC),
        (40, "voc12aug-512x512", Schedule(40000, 4000, 4, 4), _VOC),
        (40, "pascal-context-59-480x480", Schedule(40000, 4000, 4, 4, **_PC59_SGD), _PC59),
        (80, "pascal-context-59-480x480", Schedule(80000, 8000, 4, 4, **_PC59_SGD), _PC59),
    ]
]

# The small CPU preset of the bundled demo checkpoint (`make demo-checkpoint`): ResNetV1c-18-D8
# at half width (stem and layer1 32 channels: ~4x fewer FLOPs than R-18), an 8x narrower head
# (64 channels instead of 512), trained from scratch on MultiScaleShapes' 128x128 scenes with
# AdamW (SGD 0.01-0.05 does not leave the all-background plateau within a CPU budget when nothing
# is pretrained; measured in the README). Tested at 192 px, 1.5x the scenes: its 1/8-resolution
# output then resolves corners and thin parts (measured: mIoU 76.3 at 128, 83.1 at 160, 85.5 at
# 192 px, after 2000 iterations). RandomResize 0.5-1.0 of that test scale zooms the scenes to
# 96-192 px (0.75-1.5x) instead of the configs' 0.5-2.0: the scenes already hold every object
# size, and a 2x zoom cuts their largest objects beyond recognition in a 128 px crop.
SMALL = Preset(
    name="dmnet_r18w32-d8_1xb8-7k_shapes-128x128", depth=18, dataset="multiscale_shapes",
    crop_size=(128, 128), test_scale=(192, 192), align_corners=False, ratio_range=(0.5, 1.0),
    schedule=Schedule(7000, 500, 8, 1, lr=0.001, weight_decay=0.01, optimizer="adamw"),
    stem_channels=32, base_channels=32,
    head_channels=64, aux_channels=32,
)

# The demo model: SMALL's network and recipe on ContextShapes, whose classes need context at each
# scene's own object size (see training/data/context.py and assets/README.md).
CONTEXT = dataclasses.replace(SMALL, name="dmnet_r18w32-d8_1xb8-6k_context-128x128",
                              dataset="context_shapes", classes=(), palette=(),
                              schedule=dataclasses.replace(SMALL.schedule, max_iters=6000))

# An experiment, not a bundled model (assets/README.md, "what was tried", items 5-6): the same
# network and recipe on PatternMatch, whose scenes are used at their own 128 px (no rescale, no
# crop) so that a pattern tile is one feature cell, and without PhotoMetricDistortion: its hue
# rotation (up to 36 degrees) mixes the colour channels, which keep the three layouts apart.
PATTERNS = dataclasses.replace(SMALL, name="dmnet_r18w32-d8_1xb8-6k_patterns-128x128",
                               dataset="pattern_match", classes=(), palette=(),
                               test_scale=(128, 128), ratio_range=(1.0, 1.0), photometric=False,
                               schedule=dataclasses.replace(SMALL.schedule, max_iters=6000))

PRESETS: dict[str, Preset] = {p.name: p for p in [
    *(_official(*row) for row in _OFFICIAL),
    *(Preset(name=name, depth=depth, schedule=sched, **data) for name, depth, sched, data
      in _EXTRA),
    SMALL,
    CONTEXT,
    PATTERNS,
]}
ALIASES: dict[str, str] = {p.v0_name: p.name for p in PRESETS.values() if p.v0_name}


def get_preset(name: str) -> Preset:
    """Look a preset up by its 1.x name or its v0.x alias."""
    key = ALIASES.get(name, name)
    if key not in PRESETS:
        known = "\n  ".join(sorted(PRESETS) + sorted(ALIASES))
        raise KeyError(f"unknown DMNet preset {name!r}; known presets:\n  {known}")
    return PRESETS[key]
