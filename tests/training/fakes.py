"""Tiny dataset trees in the real on-disk layouts (a few 24x32 images each)."""

from pathlib import Path

import numpy as np
from PIL import Image

H, W = 24, 32


def _image(path: Path, seed: int, suffix_jpg: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path, quality=95) if suffix_jpg else Image.fromarray(rgb).save(path)


def _label(path: Path, values: list[int], seed: int, palette: bool = False) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    lab = np.random.default_rng(seed).choice(np.array(values, np.uint8), (H, W))
    img = Image.fromarray(lab, mode="P" if palette else "L")
    if palette:
        img.putpalette([v for i in range(256) for v in (i, 255 - i, i // 2)])
    img.save(path)
    return lab


def write_cityscapes(root: Path, train_ids: bool = True) -> None:
    for split, cities in (("train", ("aachen", "bremen")), ("val", ("lindau",))):
        for c, city in enumerate(cities):
            for k in range(2):
                stem = f"{city}_{k:06d}_000019"
                _image(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", c * 10 + k)
                ids = _label(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png",
                             [0, 7, 8, 26, 33], c * 10 + k)
                if train_ids:
                    lut = {0: 255, 7: 0, 8: 1, 26: 13, 33: 18}
                    Image.fromarray(np.vectorize(lut.get)(ids).astype(np.uint8)).save(
                        root / "gtFine" / split / city / f"{stem}_gtFine_labelTrainIds.png")


def write_ade(root: Path) -> None:
    for split, n in (("training", 3), ("validation", 2)):
        for k in range(n):
            stem = f"ADE_{split[:5]}_{k:08d}"
            _image(root / "images" / split / f"{stem}.jpg", k, suffix_jpg=True)
            _label(root / "annotations" / split / f"{stem}.png", [0, 1, 150], k)


def _voc_like(root: Path, seg_dir: str, sets: str, splits: dict[str, list[str]],
              values: list[int], palette: bool) -> None:
    for split, stems in splits.items():
        (root / "ImageSets" / sets).mkdir(parents=True, exist_ok=True)
        (root / "ImageSets" / sets / f"{split}.txt").write_text("\n".join(stems) + "\n")
        for k, stem in enumerate(stems):
            if not (root / "JPEGImages" / f"{stem}.jpg").exists():
                _image(root / "JPEGImages" / f"{stem}.jpg", k, suffix_jpg=True)
            _label(root / seg_dir / f"{stem}.png", values, k, palette)


def write_voc(root: Path, aug: bool = True) -> None:
    _voc_like(root, "SegmentationClass", "Segmentation",
              {"train": ["2007_000032", "2007_000039"], "val": ["2007_000033"]},
              [0, 1, 20, 255], palette=True)
    if aug:
        _voc_like(root, "SegmentationClassAug", "Segmentation",
                  {"aug": ["2008_000002", "2008_000003", "2008_000007"]}, [0, 15, 255],
                  palette=False)


def write_context(root: Path) -> None:
    _voc_like(root, "SegmentationClassContext", "SegmentationContext",
              {"train": ["2008_000002", "2008_000003"], "val": ["2008_000007"]},
              [0, 1, 59], palette=False)
