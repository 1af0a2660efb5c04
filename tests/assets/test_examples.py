import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from app.core.images import list_examples, read_mask
from assets.make_examples import PHOTOS, SCENE_SEED, SCENES
from training.data.context import render_context
from training.data.shapes import SIZE

ROOT = Path(__file__).resolve().parents[2]


def test_committed_examples_are_what_the_script_makes():
    rows = dict(list_examples(ROOT / "assets" / "examples"))
    for n, index in enumerate(SCENES, start=1):
        sample = render_context(SCENE_SEED, index, SIZE)
        image = ROOT / "assets" / "examples" / f"context_{n}.png"
        np.testing.assert_array_equal(np.asarray(Image.open(image)), sample.image)
        mask = rows[str(image)]  # the app pairs it with its true mask
        np.testing.assert_array_equal(read_mask(mask, (SIZE, SIZE), 7), sample.label)
        assert len(np.unique(sample.label)) >= 3  # several classes per example
    for name in PHOTOS:
        assert rows[str(ROOT / "assets" / "examples" / f"{name}.jpg")] is None


def test_script_writes_the_gallery(tmp_path):
    out = subprocess.run([sys.executable, "-m", "assets.make_examples", "--out", str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert f"{len(SCENES)} scenes with masks and 3 photographs" in out
    assert len(list_examples(tmp_path)) == len(SCENES) + len(PHOTOS)
    assert Image.open(tmp_path / "coffee.jpg").size == (600, 400)
