"""Files the app hands to Gradio."""

import os

import numpy as np
from PIL import Image

from app import runtime

from .conftest import rgb_noise


def test_image_file_is_written_once_under_its_content(tmp_path, monkeypatch):
    """Outputs re-sent while a browser fetches them (the sweep's gallery) go out as files that are
    never rewritten: a second call with the same pixels returns the same untouched file."""
    monkeypatch.setattr(runtime, "IMAGES", tmp_path / "images")
    a = rgb_noise(20, 30, seed=1)
    first = runtime.image_file(a)
    stamp = os.stat(first).st_mtime_ns
    assert runtime.image_file(a.copy()) == first and os.stat(first).st_mtime_ns == stamp
    np.testing.assert_array_equal(np.asarray(Image.open(first)), a)
    assert runtime.image_file(rgb_noise(20, 30, seed=2)) != first
    assert runtime.image_file(a.reshape(30, 20, 3)) != first  # same bytes, other shape
    assert sorted(p.suffix for p in (tmp_path / "images").iterdir()) == [".png"] * 3  # no temps
