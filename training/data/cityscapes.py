"""Cityscapes `*_gtFine_labelIds.png` -> `*_gtFine_labelTrainIds.png` (the 19 training classes).

The raw download has label ids (0..33); mmsegmentation trains on train ids written next to them
(its converter renders them from the polygon JSONs with cityscapesscripts; the label-id PNGs are
rendered from the same polygons, so mapping them gives the same files).

    python -m training.data.cityscapes /data/cityscapes    # writes the labelTrainIds PNGs once
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

# cityscapesscripts/helpers/labels.py: label id -> train id (255 = ignored in evaluation)
ID_TO_TRAINID = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
                 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
LUT = np.full(256, 255, np.uint8)
LUT[list(ID_TO_TRAINID)] = list(ID_TO_TRAINID.values())


def to_train_ids(label_ids: np.ndarray) -> np.ndarray:
    """(H, W) uint8 Cityscapes label ids -> (H, W) uint8 train ids (0..18, 255)."""
    return LUT[label_ids]


def convert(root: Path, overwrite: bool = False) -> int:
    """Write every missing `*_gtFine_labelTrainIds.png` under `root/gtFine`; returns the count."""
    sources = sorted((root / "gtFine").rglob("*_gtFine_labelIds.png"))
    if not sources:
        raise FileNotFoundError(f"no {root}/gtFine/<split>/<city>/*_gtFine_labelIds.png found; "
                                "--data-root must be the folder holding leftImg8bit/ and gtFine/")
    written = 0
    for src in sources:
        dst = src.with_name(src.name.replace("_labelIds.png", "_labelTrainIds.png"))
        if dst.exists() and not overwrite:
            continue
        Image.fromarray(to_train_ids(np.asarray(Image.open(src)))).save(dst)
        written += 1
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("root", type=Path, help="the cityscapes folder (leftImg8bit/, gtFine/)")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()
    print(f"wrote {convert(args.root, args.overwrite)} *_gtFine_labelTrainIds.png files")


if __name__ == "__main__":
    main()
