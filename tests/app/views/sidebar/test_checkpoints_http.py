"""Real checkpoints in the real app: a 200 MB R-50 uploaded over HTTP and named at start
(`python app.py --checkpoint PATH`, `$DMNET_CHECKPOINTS`), and the upload limit."""

import json
import urllib.request

import pytest
import torch
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

import dmnet

from ...conftest import serve, tiny_model

R50 = "dmnet_r50-d8_4xb2-40k_cityscapes-512x1024"
LIMIT_MB = 300


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    """A random-weight R-50 (~200 MB, preset guessed from its shapes), and a folder with a
    small good checkpoint and a broken one."""
    root = tmp_path_factory.mktemp("checkpoints")
    torch.save(dmnet.build_model(R50).state_dict(), root / "my_r50.pth")
    folder = root / "folder"
    folder.mkdir()
    torch.save(tiny_model().state_dict(), folder / "tiny.pth")
    (folder / "broken.pth").write_bytes(b"<html>502 Bad Gateway</html>")
    return {"r50": root / "my_r50.pth", "folder": folder}


@pytest.fixture(scope="module")
def url(demo_checkpoint, files, tmp_path_factory):
    env = {"DMNET_CHECKPOINTS": str(files["folder"]), "DMNET_MAX_UPLOAD_MB": str(LIMIT_MB)}
    log = tmp_path_factory.mktemp("server") / "app.log"
    with serve(demo_checkpoint, None, log, ("--checkpoint", str(files["r50"])), env) as url:
        yield url


def config(url: str) -> dict:
    return json.load(urllib.request.urlopen(url + "/config"))  # noqa: S310 -- local


def test_server_checkpoints_are_in_the_picker_and_the_limit_is_stated(url, files):
    cfg = config(url)
    picker = next(c for c in cfg["components"] if c["props"].get("label") == "Model")
    keys = {key: label for label, key in picker["props"]["choices"]}
    for file in (files["r50"], files["folder"] / "tiny.pth", files["folder"] / "broken.pth"):
        assert keys[f"local:{file}"] == f"local: {file.name}"  # listed, not loaded
    assert cfg["max_file_size"] == LIMIT_MB * 1024 ** 2
    labels = [c["props"].get("label") for c in cfg["components"]]
    assert f"Upload a DMNet checkpoint (.pth, up to {LIMIT_MB} MB)" in labels


def test_a_200_mb_r50_loads_from_the_server_and_over_an_upload(url, files):
    assert files["r50"].stat().st_size > 190e6
    client = Client(url, verbose=False)
    info = client.predict(f"local:{files['r50']}", api_name="/load_model")
    assert f"preset `{R50}`" in info and "guessed preset" in info
    picker = client.predict(handle_file(str(files["r50"])), api_name="/upload_checkpoint")
    assert picker["value"].startswith("upload:")
    assert f"preset `{R50}`" in client.predict(picker["value"], api_name="/load_model")


def test_the_server_folder_is_read_when_picked(url, files):
    client = Client(url, verbose=False)
    info = client.predict(f"local:{files['folder'] / 'tiny.pth'}", api_name="/load_model")
    assert "7 classes" in info
    with pytest.raises(AppError, match="broken.pth is not a PyTorch checkpoint"):
        client.predict(f"local:{files['folder'] / 'broken.pth'}", api_name="/load_model")


def test_the_upload_limit_defaults_to_1_gb(monkeypatch):
    from app.views.sidebar import max_upload_mb

    monkeypatch.delenv("DMNET_MAX_UPLOAD_MB", raising=False)
    assert max_upload_mb() == 1024
    monkeypatch.setenv("DMNET_MAX_UPLOAD_MB", "1 GB")
    with pytest.raises(SystemExit, match="whole number of MB, not '1 GB'"):
        max_upload_mb()
