"""Files the app hands to Gradio."""

import tempfile

import gradio as gr
import numpy as np
import pytest
from gradio import processing_utils
from PIL import Image

from app.core import runtime

from ..conftest import rgb_noise


@pytest.fixture
def no_more_writes(monkeypatch):
    """After this is called, writing a file through `image_file` fails the test."""
    def forbid():
        def fail(**kwargs):
            raise AssertionError(f"a file was written again in {kwargs.get('dir')}")
        monkeypatch.setattr(tempfile, "mkstemp", fail)
    return forbid


def test_image_file_is_written_once_under_its_content(tmp_path, no_more_writes):
    """A client may still be fetching an image when the same one is sent again: the file is
    written once (under a temporary name, then renamed), never rewritten in place."""
    a = Image.fromarray(rgb_noise(20, 30, seed=1))
    first = runtime.image_file(a, tmp_path, "overlay", "png")
    np.testing.assert_array_equal(np.asarray(Image.open(first)), np.asarray(a))
    assert runtime.image_file(a, tmp_path, "overlay", "jpeg") != first  # other bytes
    no_more_writes()
    assert runtime.image_file(a.copy(), tmp_path, "overlay", "png") == first
    with pytest.raises(AssertionError, match="written again"):
        runtime.image_file(Image.fromarray(rgb_noise(20, 30, seed=2)), tmp_path, "x", "png")
    files = sorted(p.name for p in tmp_path.rglob("*") if p.is_file())
    assert files == ["overlay.jpeg", "overlay.png"]  # no temporary files left


def test_every_image_output_goes_through_image_file(tmp_path, no_more_writes):
    """Gradio writes array outputs with `save_pil_to_cache`, which `app.runtime` replaces:
    images, galleries, and the annotated image's base and masks (it takes masks only as
    arrays) are each written once, in the format their component declares."""
    assert processing_utils.save_pil_to_cache is runtime.image_file
    image, mask = rgb_noise(20, 30, seed=3), np.full((20, 30), 0.5, np.float32)
    outputs = {gr.Image(format="jpeg"): image, gr.Gallery(format="jpeg"): [(image, "1x")],
               gr.AnnotatedImage(color_map={"a": "#ff0000"}): (image, [(mask, "a")])}
    for component in outputs:
        component.GRADIO_CACHE = str(tmp_path)
    sent = [c.postprocess(v).model_dump() for c, v in outputs.items()]
    no_more_writes()
    assert [c.postprocess(v).model_dump() for c, v in outputs.items()] == sent  # sent again
    files = sorted(p.name for p in tmp_path.rglob("*") if p.is_file())
    assert files == ["image.jpeg", "image.png", "image.webp"]  # shared jpeg, mask, base
