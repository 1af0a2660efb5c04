"""Fixtures of the app's tests: a tiny demo checkpoint, test images, the served app, Chromium.

The served app is the real `python app.py` in a subprocess on a free port, with
DMNET_DEMO_CHECKPOINT pointing at a tiny DMNet saved here (nothing is downloaded). Browser
tests drive Debian's Chromium through Playwright (never `playwright install`).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from dmnet import DMNet

from ..conftest import randomize_bn, tiny_preset

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
# The machine has no network: without these flags Chromium stalls on its background services.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def tiny_model() -> DMNet:
    torch.manual_seed(0)
    return randomize_bn(DMNet(tiny_preset()).eval())


@pytest.fixture(scope="session")
def demo_checkpoint(tmp_path_factory) -> Path:
    """A tiny DMNet's bare state dict (its preset is inferred from the shapes when loaded; its
    7 classes are read as MultiScaleShapes': "shapes" in the file name)."""
    path = tmp_path_factory.mktemp("demo") / "tiny_demo_shapes.pth"
    torch.save(tiny_model().state_dict(), path)
    return path


@pytest.fixture
def demo_env(demo_checkpoint, monkeypatch):
    """In-process app code sees the tiny checkpoint as the demo model, with empty caches."""
    from app.core import models, runtime

    monkeypatch.setenv("DMNET_DEMO_CHECKPOINT", str(demo_checkpoint))
    for module, name in ((models, "_models"), (models, "_notes"), (models, "_uploads"),
                         (runtime, "_analyses"), (runtime, "_rankings")):
        monkeypatch.setattr(module, name, type(getattr(module, name))())
    return demo_checkpoint


def save_scene(path: Path, seed: int = 3, object_scale: float = 1.0) -> tuple[Path, Path]:
    """A generated scene as an RGB PNG and its true mask as a palette PNG."""
    from app.core.images import generate_scene

    image, label = generate_scene(seed, object_scale)
    Image.fromarray(image).save(path / f"scene{seed}.png")
    Image.fromarray(label, mode="L").save(path / f"scene{seed}_mask.png")
    return path / f"scene{seed}.png", path / f"scene{seed}_mask.png"


@pytest.fixture(scope="session")
def scene(tmp_path_factory) -> tuple[Path, Path]:
    return save_scene(tmp_path_factory.mktemp("scene"))


@pytest.fixture(scope="session")
def photo(tmp_path_factory) -> Path:
    """A non-square RGB photograph (scikit-image's bundled coffee, 400x600)."""
    import skimage.data

    path = tmp_path_factory.mktemp("photo") / "coffee.jpg"
    Image.fromarray(skimage.data.coffee()).save(path, quality=90)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def examples(tmp_path_factory, photo) -> Path:
    """An examples folder like assets/examples: a scene with its true mask, and a photo."""
    folder = tmp_path_factory.mktemp("examples")
    save_scene(folder, seed=7)
    (folder / "coffee.jpg").write_bytes(photo.read_bytes())
    return folder


@contextlib.contextmanager
def serve(demo_checkpoint: Path, examples: Path | None, log: Path, args: tuple[str, ...] = (),
          env: dict[str, str] | None = None):
    """Run `python app.py *args` on a free port with these assets (and `env` on top of the
    environment); yields its URL."""
    port = free_port()
    env = {**os.environ, "DMNET_DEMO_CHECKPOINT": str(demo_checkpoint),
           "DMNET_EXAMPLES": str(examples or ""),
           "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
           "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1", **(env or {})}
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "app.py", *args], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(url + "/config", timeout=2)  # noqa: S310 -- local
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the app did not start:\n" + log.read_text()[-3000:]) \
                        from None
                time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def server(demo_checkpoint, examples, tmp_path_factory):
    """The real app (`python app.py`) with the tiny demo checkpoint and examples."""
    with serve(demo_checkpoint, examples, tmp_path_factory.mktemp("server") / "app.log") as url:
        yield url


@pytest.fixture(scope="session")
def client(server):
    from gradio_client import Client

    return Client(server, verbose=False)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """pytest-playwright launches Debian's Chromium with flags that work offline."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: `make test` installs Debian's chromium package")
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


# Gradio's status tracker over an output while an event that writes it is queued or running
# (idle trackers have the class "hide"; the variant "hidden" shows nothing).
BUSY = ".wrap.full:not(.hide), .wrap.minimal:not(.hide)"
SETTLED = f"""quiet => {{ const now = performance.now();
  if (document.querySelector('{BUSY}')) {{ window.__busySince = now; return false; }}
  return now - (window.__busySince ?? -quiet) >= quiet; }}"""


def settle(page, quiet_ms: int = 1000, most_ms: int = 30_000) -> None:
    """Wait until no output of the page has been busy for `quiet_ms`: every event it started,
    and the events they chain, have finished. A click on an output while it is busy lands on
    its progress overlay and does nothing: under load, a test that clicked too early waited for
    a change that never came. Best effort: after `most_ms` the test goes on and its own checks
    decide (CI at 1400x1000 once saw the Segmentation outputs busy for over 90 s after an
    upload in Compare; not explained yet)."""
    try:
        page.wait_for_function(SETTLED, arg=quiet_ms, polling=100, timeout=most_ms)
    except PlaywrightTimeoutError:
        pass


def rgb_noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def short_message(action, *args) -> str:
    """The message a failed action shows: a few lines at most, no traceback."""
    with pytest.raises(gr.Error) as err:
        action(*args)
    text = err.value.message
    assert "Traceback" not in text and 'File "' not in text and len(text) < 400, text
    return text


def written(data: bytes, name: str):
    """A maker of a bad input: `write(folder)` puts `data` in `folder / name`, returns the path."""
    def write(folder: Path) -> Path:
        (folder / name).write_bytes(data)
        return folder / name
    return write
