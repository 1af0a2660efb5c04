"""Benchmark of the served app with official-size models: latency and server memory per view.

    python -m app.bench                       # demo, R-50 Cityscapes, R-101 ADE20K
    python -m app.bench --models r50 --json out.json

For each model the tool makes what it needs under --work (reused when there): a random-weight
checkpoint of the official shape in mmseg's format, and photographs bundled with scikit-image,
resized to the size the model is measured at (R-50 Cityscapes: 2048x1024; R-101 ADE20K: 683x512;
the demo: its example pictures). Then:
- F, the unit of work: one fp32 `dmnet.fast.optimize` forward of the model at that input size, in
  this process (the second of two runs);
- the reference filters computed once in this process, as the first view that needs them would
  (then on disk, where the server reads them: `DMNET_CACHE` under --work);
- a fresh `python app.py --checkpoint ...` server, called through `gradio_client` as the page does,
  downloading every file returned: the load, then each view of image A (segment, branches,
  attribution, compare with a new image B, sweep: first scale and whole), timed, with the
  server's peak RSS over its idle RSS (VmHWM, reset before each call);
- for R-50, two users at once on two new photos each doing every view: the server's peak RSS.
Latencies are also given in F. Nothing here is a test: the numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
VIEWS = ("load", "segment", "branches", "attribution", "compare", "sweep first", "sweep")


@dataclass(frozen=True)
class Case:
    name: str  # on the command line
    title: str
    preset: str | None  # the official preset whose shape the random checkpoint has; None: demo
    size: tuple[int, int]  # (width, height) of the photos
    photos: tuple[str, ...]  # skimage.data names: A, B, then two more for the second user


CASES = {
    "demo": Case("demo", "demo R-18 ContextShapes, its examples", None, (0, 0), ()),
    "r50": Case("r50", "R-50-D8 Cityscapes, 2048×1024 photo",
                "dmnet_r50-d8_4xb2-40k_cityscapes-512x1024", (2048, 1024),
                ("coffee", "astronaut", "chelsea", "rocket")),
    "r101": Case("r101", "R-101-D8 ADE20K, 683×512 photo", "dmnet_r101-d8_4xb4-80k_ade20k-512x512",
                 (683, 512), ("chelsea", "rocket", "coffee", "astronaut")),
}


@dataclass
class Result:
    case: str
    title: str
    input_size: tuple[int, int] = (0, 0)  # (h, w) of the model input
    f_seconds: float = 0.0
    reference_seconds: float = 0.0  # once per checkpoint, then read from disk
    seconds: dict[str, float] = field(default_factory=dict)  # view -> latency
    peak_gib: dict[str, float] = field(default_factory=dict)  # view -> peak RSS over idle
    idle_gib: float = 0.0  # server RSS with the model loaded, before any view
    base_gib: float = 0.0  # server RSS before the load
    two_users_peak_gib: float | None = None  # server peak RSS, two users at once (total)
    device: str = ""


# --- inputs ---------------------------------------------------------------------------------------

def checkpoint(case: Case, work: Path) -> Path:
    """A random-weight checkpoint of the case's official shape in mmseg's format (state_dict and
    meta), or the demo checkpoint."""
    from app.core import models
    from dmnet import build_model, checkpoint_meta

    if case.preset is None:
        return models.demo_checkpoint()
    path = work / f"{case.preset}_random.pth"
    if not path.is_file():
        torch.manual_seed(0)
        model = build_model(case.preset)
        torch.save({"state_dict": model.state_dict(), "meta": checkpoint_meta(model)}, path)
    return path


def photos(case: Case, work: Path) -> list[Path]:
    """The case's photos at its size (skimage's, resized), or the demo's example pictures."""
    if case.preset is None:
        examples = sorted((ROOT / "assets" / "examples").glob("context_*.png"))
        examples = [p for p in examples if not p.stem.endswith("_mask")]
        return (examples * 4)[:4]
    import skimage.data

    out = []
    for name in case.photos:
        path = work / f"{name}_{case.size[0]}x{case.size[1]}.jpg"
        if not path.is_file():
            Image.fromarray(getattr(skimage.data, name)()).convert("RGB").resize(
                case.size, Image.Resampling.BICUBIC).save(path, quality=92)
        out.append(path)
    return out


# --- in this process ------------------------------------------------------------------------------

def unit_of_work(ckpt: Path, photo: Path) -> tuple[float, tuple[int, int], str]:
    """(F in seconds, the model input's (h, w), the device): the second of two fp32 optimized
    forward passes on the photo's model input."""
    from app.core import models
    from app.core.analysis import network_input, runner
    from app.core.runtime import picture
    from dmnet import load_checkpoint

    model = load_checkpoint(ckpt, map_location=models.device())
    _, x = network_input(model, picture(model, photo).image)
    fast = runner(model)
    with torch.inference_mode():
        for _ in range(2):
            start = time.perf_counter()
            fast(x)
            if x.device.type == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - start
    return seconds, tuple(x.shape[-2:]), models.device_note()


def reference_once(key: str) -> float:
    """Seconds to compute the model's reference filters (written to the disk cache)."""
    from app.core import runtime

    start = time.perf_counter()
    runtime.ranking(key)
    return time.perf_counter() - start


# --- the server -----------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def server(ckpt: Path, env: dict):
    """`python app.py --checkpoint CKPT` on a free port; yields (url, pid)."""
    port = free_port()
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen([sys.executable, "app.py", "--checkpoint", str(ckpt)], cwd=ROOT,
                            env={**os.environ, **env, "GRADIO_SERVER_PORT": str(port)},
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while True:
            if proc.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"the app exited:\n{log.read().decode()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/config", timeout=5).status_code == 200:
                    break
            if time.time() > deadline:
                raise RuntimeError("the app did not answer within 180 s")
            time.sleep(0.5)
        yield url, proc.pid
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(20)
        if proc.poll() is None:
            proc.kill()
        log.close()


def status_gib(pid: int, field_name: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) / 2**20
    raise OSError(f"no {field_name} for process {pid}")


def reset_peak(pid: int) -> None:
    """Set the process's peak RSS (VmHWM) to its RSS now (Linux: clear_refs 5)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


class Views:
    """The app's endpoints for one model, called as the page calls them; every file a call
    returns is downloaded (each streamed step's too), as a browser would."""

    def __init__(self, url: str, key: str):
        from gradio_client import Client

        self.client = Client(url, verbose=False, download_files=False, analytics_enabled=False)
        self.http = httpx.Client(timeout=600)
        self.key = key

    def close(self) -> None:
        self.client.close()
        self.http.close()

    def call(self, endpoint: str, *args) -> tuple[float, float | None]:
        """(seconds to the end, seconds to the first streamed output or None)."""
        from app.tools.loadtest import fetch, file_urls

        start = time.perf_counter()
        job = self.client.submit(*args, api_name="/" + endpoint)
        fetched, first = 0, None
        while True:
            done = job.done()
            steps = job.outputs()
            for url in file_urls(steps[fetched:]):
                fetch(self.http, url)
            if steps and first is None:
                first = time.perf_counter() - start
            fetched = len(steps)
            if done:
                break
            time.sleep(0.02)
        job.result()  # raises the app's error, if any
        return time.perf_counter() - start, first

    def view(self, view: str, a: Path, b: Path) -> tuple[float, float | None]:
        """One view of image A (compare: A and B), as the page asks for it."""
        from gradio_client import handle_file

        image, other = handle_file(str(a)), handle_file(str(b))
        args = {"segment": (self.key, image, None, 0.6, "(none)"),
                "branches": (self.key, image, None, None, None, None),
                "attribution": (self.key, image, 0.0, "all classes"),
                "compare": (self.key, image, other, 5, None),
                "sweep": (self.key, image, None, None, None, None, None)}[view]
        return self.call(view, *args)


SHOWN = ("segment", "branches", "attribution", "compare", "sweep")  # in the page's order


def measure(case: Case, work: Path) -> Result:
    from app.core import models

    ckpt, pics = checkpoint(case, work), photos(case, work)
    env = {"DMNET_CACHE": str(work / "cache")}
    os.environ.update(env)
    result = Result(case.name, case.title)
    result.f_seconds, result.input_size, result.device = unit_of_work(ckpt, pics[0])
    key = models.DEMO if case.preset is None else models.add_local([ckpt])[0]
    result.reference_seconds = reference_once(key)
    with server(ckpt, env) as (url, pid):
        views = Views(url, key)
        try:
            result.base_gib = status_gib(pid, "VmRSS")
            result.seconds["load"] = views.call("load_model", key)[0]
            time.sleep(1)
            result.idle_gib = status_gib(pid, "VmRSS")
            result.peak_gib["load"] = status_gib(pid, "VmHWM") - result.base_gib
            for view in SHOWN:
                reset_peak(pid)
                result.seconds[view], first = views.view(view, pics[0], pics[1])
                if view == "sweep":
                    result.seconds["sweep first"] = first
                result.peak_gib[view] = status_gib(pid, "VmHWM") - result.idle_gib
        finally:
            views.close()
        if case.name == "r50":
            result.two_users_peak_gib = two_users(url, pid, key, pics)
    return result


def two_users(url: str, pid: int, key: str, pics: list[Path]) -> float:
    """The server's peak RSS (GiB, in all) while two users each run every view on two photos
    the server has not seen (A: pics[2] or pics[3], B: the other)."""
    reset_peak(pid)
    errors = []

    def user(a: Path, b: Path) -> None:
        views = Views(url, key)
        try:
            for view in SHOWN:
                views.view(view, a, b)
        except Exception as err:  # noqa: BLE001 -- reported below, after the other user ends
            errors.append(err)
        finally:
            views.close()

    threads = [threading.Thread(target=user, args=args)
               for args in ((pics[2], pics[3]), (pics[3], pics[2]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return status_gib(pid, "VmHWM")


# --- the report -----------------------------------------------------------------------------------

def table(results: list[Result]) -> str:
    head = ("| model, image | model input | F | reference (once) | " + " | ".join(VIEWS)
            + " | idle RSS | peak over idle (worst view) | two users |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in results:
        f = r.f_seconds
        cells = [f"{r.seconds[v]:.2f} s ({r.seconds[v] / f:.2f} F)" if v != "load"
                 else f"{r.seconds[v]:.1f} s" for v in VIEWS]
        worst = max(r.peak_gib, key=r.peak_gib.get)
        users = "" if r.two_users_peak_gib is None else f"{r.two_users_peak_gib:.1f} GiB"
        lines.append(f"| {r.title} | {r.input_size[1]}×{r.input_size[0]} | {f:.2f} s | "
                     f"{r.reference_seconds:.1f} s | " + " | ".join(cells)
                     + f" | {r.idle_gib:.2f} GiB | +{r.peak_gib[worst]:.2f} GiB ({worst}) | "
                     f"{users} |")
    return "\n".join(lines)


def memory_table(results: list[Result]) -> str:
    views = [v for v in VIEWS if v != "sweep first"]
    lines = ["| model | base RSS | idle RSS | " + " | ".join(f"peak {v}" for v in views) + " |",
             "|" + "---|" * (len(views) + 3)]
    for r in results:
        lines.append(f"| {r.case} | {r.base_gib:.2f} GiB | {r.idle_gib:.2f} GiB | "
                     + " | ".join(f"+{r.peak_gib[v]:.2f}" for v in views) + " |")
    return "\n".join(lines)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m app.bench", description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", choices=list(CASES), default=list(CASES))
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "dmnet-app-bench",
                   help="checkpoints, photos and the reference cache (kept between runs; the "
                        "cache is emptied at the start so the reference is computed afresh)")
    p.add_argument("--json", type=Path, help="also write the results here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    cache = args.work / "cache"
    if cache.exists():
        import shutil

        shutil.rmtree(cache)
    results = []
    for name in args.models:
        print(f"measuring {CASES[name].title} ...", file=sys.stderr, flush=True)
        results.append(measure(CASES[name], args.work))
        print(table(results[-1:]), file=sys.stderr, flush=True)
    print(f"{results[0].device}, torch {torch.__version__}, {os.cpu_count()} CPUs")
    print(table(results))
    print()
    print(memory_table(results))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
