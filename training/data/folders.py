"""Segmentation datasets in their standard on-disk layouts (as mmsegmentation's configs read them).

A dataset is a list of (image, label) file pairs found from one or more `Layout`s under a root
folder; an item is `(image, label)`: uint8 RGB (H, W, 3) and uint8 class ids (H, W), 255 = ignore,
with `reduce_zero_label` already applied. Anything missing or malformed raises one `DatasetError`
that names the expected path and layout.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset


# mmseg LoadAnnotations(reduce_zero_label=True): 0 ("other") -> 255, c -> c - 1, 255 stays
REDUCE_ZERO_LABEL = np.concatenate([[255], np.arange(254), [255]]).astype(np.uint8)


class DatasetError(FileNotFoundError):
    """A dataset folder is missing, incomplete or malformed."""


@dataclass(frozen=True)
class Layout:
    """Where one split lives under the root, in mmseg's BaseSegDataset terms."""

    img_dir: str  # data_prefix.img_path
    seg_dir: str  # data_prefix.seg_map_path
    img_suffix: str
    seg_suffix: str
    ann_file: str | None = None  # a file listing one image stem per line (else: glob img_dir)
    optional: bool = False  # used only when its ann_file exists (the SBD aug set)


@dataclass(frozen=True)
class DatasetSpec:
    title: str
    splits: dict[str, tuple[Layout, ...]]  # "train" / "val" -> layouts, concatenated
    reduce_zero_label: bool = False
    hint: str = ""  # how to get or fix the data, appended to errors


def _cityscapes(split: str) -> tuple[Layout, ...]:
    return (Layout(f"leftImg8bit/{split}", f"gtFine/{split}", "_leftImg8bit.png",
                   "_gtFine_labelTrainIds.png"),)


def _ade(split: str) -> tuple[Layout, ...]:
    return (Layout(f"images/{split}", f"annotations/{split}", ".jpg", ".png"),)


def _voc(split: str) -> tuple[Layout, ...]:
    own = Layout("JPEGImages", "SegmentationClass", ".jpg", ".png",
                 f"ImageSets/Segmentation/{split}.txt")
    if split == "val":
        return (own,)
    return own, Layout("JPEGImages", "SegmentationClassAug", ".jpg", ".png",
                       "ImageSets/Segmentation/aug.txt", optional=True)


def _context(split: str) -> tuple[Layout, ...]:
    return (Layout("JPEGImages", "SegmentationClassContext", ".jpg", ".png",
                   f"ImageSets/SegmentationContext/{split}.txt"),)


def _folder(split: str) -> tuple[Layout, ...]:
    return (Layout(f"images/{split}", f"annotations/{split}", ".png", ".png"),)


# Keyed by `Preset.dataset`; "folder" is the generic layout MultiScaleShapes exports.
SPECS: dict[str, DatasetSpec] = {
    "cityscapes": DatasetSpec(
        "Cityscapes", {s: _cityscapes(s) for s in ("train", "val")},
        hint="If you only have *_gtFine_labelIds.png (the raw download), write the train-id "
             "labels once with: python -m training.data.cityscapes ROOT"),
    "ade20k": DatasetSpec(
        "ADE20K (ADEChallengeData2016)", {"train": _ade("training"), "val": _ade("validation")},
        reduce_zero_label=True),
    "pascal_voc": DatasetSpec(
        "Pascal VOC 2012", {s: _voc(s) for s in ("train", "val")},
        hint="The SBD augmented set is used when SegmentationClassAug/ and aug.txt exist "
             "(mmsegmentation's tools/dataset_converters/voc_aug.py writes them)."),
    "pascal_context_59": DatasetSpec(
        "Pascal-Context 59 (VOC2010)", {s: _context(s) for s in ("train", "val")},
        reduce_zero_label=True,
        hint="SegmentationClassContext/ and ImageSets/SegmentationContext/ are written by "
             "mmsegmentation's tools/dataset_converters/pascal_context.py."),
    "folder": DatasetSpec(
        "Segmentation folder", {s: _folder(s) for s in ("train", "val")},
        hint="MultiScaleShapes writes this layout: python -m training.data.shapes export DIR"),
}


def expected_layout(spec: DatasetSpec, root: Path, split: str) -> str:
    lines = []
    for lay in spec.splits[split]:
        tag = "  (optional)" if lay.optional else ""
        lines.append(f"  {root / lay.img_dir}/**/<name>{lay.img_suffix}{tag}")
        lines.append(f"  {root / lay.seg_dir}/**/<name>{lay.seg_suffix}{tag}")
        if lay.ann_file:
            lines.append(f"  {root / lay.ann_file}  (one <name> per line){tag}")
    return "\n".join(lines)


class SegFolder(Dataset):
    """One split of a dataset on disk: `(image uint8 (H, W, 3) RGB, label uint8 (H, W))` items.

    Args:
        root: the dataset's own folder, as mmseg's configs name it (e.g. `.../cityscapes`,
            `.../ADEChallengeData2016`, `.../VOCdevkit/VOC2012`, `.../VOCdevkit/VOC2010`).
        dataset: a key of `SPECS`.
        split: "train" or "val".
    """

    def __init__(self, root: str | Path, dataset: str, split: str) -> None:
        self.spec, self.root, self.split = SPECS[dataset], Path(root), split
        self.pairs: list[tuple[Path, Path]] = []
        for lay in self.spec.splits[split]:
            if lay.optional and not (self.root / lay.ann_file).is_file():
                continue
            self.pairs += self._find(lay)
        if not self.pairs:
            self._fail("no images found")
        classes_file = self.root / "classes.json"
        self.classes = (tuple(json.loads(classes_file.read_text())["classes"])
                        if dataset == "folder" and classes_file.is_file() else None)

    def _fail(self, problem: str) -> None:
        raise DatasetError(
            f"{self.spec.title} {self.split} split under {self.root}: {problem}.\n"
            f"Expected layout (--data-root is the dataset's own folder):\n"
            f"{expected_layout(self.spec, self.root, self.split)}"
            + (f"\n{self.spec.hint}" if self.spec.hint else ""))

    def _find(self, lay: Layout) -> list[tuple[Path, Path]]:
        img_dir, seg_dir = self.root / lay.img_dir, self.root / lay.seg_dir
        if not self.root.is_dir():
            self._fail("the folder does not exist")
        if lay.ann_file:
            ann = self.root / lay.ann_file
            if not ann.is_file():
                self._fail(f"missing {ann}")
            stems = [s.strip() for s in ann.read_text().splitlines() if s.strip()]
        else:
            if not img_dir.is_dir():
                self._fail(f"missing folder {img_dir}")
            stems = sorted(str(p.relative_to(img_dir))[: -len(lay.img_suffix)]
                           for p in img_dir.rglob(f"*{lay.img_suffix}"))
        pairs = [(img_dir / f"{s}{lay.img_suffix}", seg_dir / f"{s}{lay.seg_suffix}")
                 for s in stems]
        for img, seg in pairs:
            if not img.is_file():
                self._fail(f"image {img} is missing")
            if not seg.is_file():
                self._fail(f"label {seg} is missing (for image {img.name})")
        return pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        img_path, seg_path = self.pairs[i]
        image = np.asarray(Image.open(img_path).convert("RGB"))
        label = np.asarray(Image.open(seg_path))  # palette PNGs read as their indices
        if label.ndim != 2 or label.dtype != np.uint8:
            self._fail(f"label {seg_path} is {label.dtype} of shape {label.shape}; expected "
                       "single-channel 8-bit class ids (a palette or grayscale PNG)")
        if label.shape != image.shape[:2]:
            self._fail(f"label {seg_path} is {label.shape}, image {img_path} is {image.shape[:2]}")
        if self.spec.reduce_zero_label:
            label = REDUCE_ZERO_LABEL[label]
        return image, label
