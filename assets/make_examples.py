"""Write the app's example gallery, assets/examples/, reproducibly.

    python -m assets.make_examples              # from the project root

- `context_<i>.png` + `context_<i>_mask.png`: ContextShapes scenes (training/data/context.py) at
  the demo model's 128 px (training.data.shapes.SIZE), from a seed of their own (not the
  validation stream), with their true masks, for the bundled demo checkpoint: large and small
  objects, in a striped and in a checked frame.
- `<name>.jpg`: photographs bundled with scikit-image, free to use (public domain or CC0, as
  skimage.data documents them), for the official Cityscapes / ADE20K checkpoints.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import skimage.data
from PIL import Image

from dmnet.presets import DATASETS
from training.data.context import render_context
from training.data.shapes import SIZE, label_png

SCENE_SEED = 2019  # the paper's year; not a training (0) or validation (1) stream
SCENES = (7, 13, 14, 0)  # striped / checked frame, larger / smaller objects: picked by looking
PHOTOS = {  # skimage.data name -> licence, as its docstring states
    "astronaut": "public domain (NASA)",
    "coffee": "CC0 (Rachel Michetti)",
    "rocket": "public domain (SpaceX)",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "examples")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for n, index in enumerate(SCENES, start=1):
        sample = render_context(SCENE_SEED, index, SIZE)
        Image.fromarray(sample.image).save(args.out / f"context_{n}.png")
        label_png(sample.label, DATASETS["context_shapes"][1]).save(
            args.out / f"context_{n}_mask.png")
    for name in PHOTOS:
        Image.fromarray(getattr(skimage.data, name)()).save(args.out / f"{name}.jpg", quality=90)
    print(f"wrote {len(SCENES)} scenes with masks and {len(PHOTOS)} photographs to {args.out}")


if __name__ == "__main__":
    main()
