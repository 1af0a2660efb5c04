"""Every named endpoint works from gradio_client with a model of each dataset's class list,
through the real served app: no output holds a value that a client takes for a file (ADE20K
has a class named "path": a colour map keyed by class name made the client fetch
`/file=#ff1f00` and fail with 403)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gradio_client import Client, handle_file
from PIL import Image

from dmnet import DMNet
from dmnet.presets import DATASETS

from ..conftest import randomize_bn, tiny_preset
from .conftest import serve

# dataset -> the file name its tiny checkpoint is saved under (7-class sets are told apart by it)
CHECKPOINTS = {"cityscapes": "tiny_cityscapes.pth", "ade20k": "tiny_ade20k.pth",
               "pascal_voc": "tiny_voc.pth", "pascal_context_59": "tiny_pc59.pth",
               "pascal_context_60": "tiny_pc60.pth", "multiscale_shapes": "tiny_shapes.pth",
               "context_shapes": "tiny_context.pth", "pattern_match": "tiny_pattern.pth"}


def test_every_dataset_has_a_case():
    assert set(CHECKPOINTS) == set(DATASETS)


@pytest.fixture(scope="module")
def classes_server(demo_checkpoint, tmp_path_factory):
    folder = tmp_path_factory.mktemp("classes")
    for dataset, name in CHECKPOINTS.items():
        torch.manual_seed(0)
        model = randomize_bn(DMNet(tiny_preset(classes=dataset)).eval())
        torch.save(model.state_dict(), folder / name)
    with serve(demo_checkpoint, None, folder / "app.log") as url:
        yield url, folder


def files_in(value) -> list[dict]:
    """Every dict that gradio_client would take for a file ("path" holding a string)."""
    if isinstance(value, dict):
        found = [value] if isinstance(value.get("path"), str) else []
        return found + [f for v in value.values() for f in files_in(v)]
    if isinstance(value, (list, tuple)):
        return [f for v in value for f in files_in(v)]
    return []


@pytest.mark.parametrize("dataset", list(CHECKPOINTS))
def test_every_endpoint_with_this_class_list(classes_server, tmp_path, dataset):
    url, folder = classes_server
    client = Client(url, verbose=False, download_files=str(tmp_path / "files"))
    key = client.predict(handle_file(str(folder / CHECKPOINTS[dataset])),
                         api_name="/upload_checkpoint")["value"]
    assert "loaded" in client.predict(key, api_name="/load_model")
    n = len(DATASETS[dataset][0])
    image = tmp_path / "scene.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (96, 128, 3), np.uint8)).save(image)
    mask = tmp_path / "mask.png"
    Image.fromarray((np.arange(96 * 128).reshape(96, 128) // 1000 % min(n, 7)).astype(np.uint8),
                    mode="L").save(mask)
    a, m, b = handle_file(str(image)), handle_file(str(mask)), handle_file(str(image))
    calls = {"/generate_scene": (3, 1.0, key),
             "/segment": (key, a, m, 0.6, "(none)"),
             "/branches": (key, a, None, None, None, None),
             "/branch_column": (key, a, 3, None),
             "/removals": (key, a, m),
             "/attribution": (key, a, 0.0, "all classes"),
             "/roles": (key, a, m),
             "/ablate": (key, a, m, "remove", ["k=3"], 0.3, "all classes"),
             "/compare": (key, a, b, 3, None),
             "/transplant": (key, a, b, "all branches", "B with A's filters"),
             "/sweep": (key, a, m, None, None, None, None)}
    for api_name, args in calls.items():  # a value taken for a file is fetched here
        out = client.predict(*args, api_name=api_name)
        assert files_in(out) == [], api_name  # each fetched file is now a local path
    client.close()
