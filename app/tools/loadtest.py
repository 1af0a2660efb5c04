"""Load test of a running DMNet Explorer: N clients at once, each doing R rounds over HTTP.

    python -m app.tools.loadtest http://127.0.0.1:7860 --clients 16 --rounds 3
    python -m app.tools.loadtest URL --endpoints segment sweep --scenes 1

A round generates a scene (`/generate_scene`, the round's input), calls each chosen endpoint on it
with `gradio_client`, and downloads every file a call returned (each streamed step of the sweep
too, while it runs, as a browser does), checking that it is whole: as long as its Content-Length,
and an image that decodes. Prints the errors (count and distinct messages), p50/p95 latency per
endpoint (of the calls that succeeded, downloads included) and, when the app runs on this
machine, the server's peak RSS. Exit status 1 if any call failed.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import httpx
import numpy as np
from gradio_client import Client, handle_file
from PIL import Image
from tqdm import tqdm

SCENE = "generate_scene"
ENDPOINTS = ("segment", "branches", "attribution", "compare", "sweep")  # called on each scene
POLL = 0.05  # seconds between looks at a running job's outputs
LOCAL_HOSTS = ("127.0.0.1", "localhost", "0.0.0.0", "::1")  # noqa: S104 -- names, not a bind


@dataclass
class Scene:
    image: str  # local files, uploaded with each call
    mask: str | None  # None: the model's data has no synthetic scenes (a real dataset)
    mirrored: str  # image B of /compare: the same scene mirrored


@dataclass
class Tally:
    """Latencies and errors of every call, shared by the client threads."""

    seconds: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: Counter = field(default_factory=Counter)  # "endpoint: message" -> count
    failed: Counter = field(default_factory=Counter)  # endpoint -> failed calls
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, endpoint: str, seconds: float, error: str | None) -> None:
        with self.lock:
            if error is None:
                self.seconds[endpoint].append(seconds)
            else:
                self.failed[endpoint] += 1
                self.errors[f"{endpoint}: {error}"] += 1


# --- downloads ------------------------------------------------------------------------------------

def file_urls(value) -> list[str]:  # noqa: ANN001 -- any JSON-like output of gradio_client
    """The URLs of every file (Gradio FileData) inside an endpoint's output."""
    if isinstance(value, dict):
        if isinstance(value.get("url"), str) and "path" in value:
            return [value["url"]]
        return [u for v in value.values() for u in file_urls(v)]
    if isinstance(value, (list, tuple)):
        return [u for v in value for u in file_urls(v)]
    return []


def fetch(http: httpx.Client, url: str) -> bytes:
    """Download a returned file whole, or raise: short bodies, HTTP errors, undecodable images."""
    response = http.get(url)
    response.raise_for_status()
    body = response.content
    declared = response.headers.get("content-length")
    if declared is not None and int(declared) != len(body):
        raise OSError(f"{len(body)} bytes of {declared} declared")
    try:
        Image.open(io.BytesIO(body)).load()  # every file the app returns is an image
    except (OSError, SyntaxError) as err:  # PIL's errors name a BytesIO address: left out
        raise OSError(f"{len(body)} bytes that are not a whole image") from err
    return body


# --- one client -----------------------------------------------------------------------------------

def new_scene(client: Client, http: httpx.Client, seed: int, folder: Path,
              model: str = "demo") -> Scene:
    """/generate_scene for `model`, its image and true mask downloaded (a model of a real
    dataset gets none), and the image mirrored, for B."""
    image, mask = client.predict(seed, 1.0, model, api_name="/" + SCENE)
    paths = []
    for value, name in ((image, "scene.png"), (mask, "scene_mask.png")):
        if value is None:
            paths.append(None)
            continue
        [url] = file_urls(value)
        (folder / name).write_bytes(fetch(http, url))
        paths.append(str(folder / name))
    mirrored = folder / "mirrored.png"
    Image.fromarray(np.asarray(Image.open(paths[0]).convert("RGB"))[:, ::-1]).save(mirrored)
    return Scene(paths[0], paths[1], str(mirrored))


def call(client: Client, http: httpx.Client, endpoint: str, model: str, s: Scene) -> None:
    """One endpoint on the scene, then every file it returned (each streamed step's files)."""
    image, mask = handle_file(s.image), s.mask and handle_file(s.mask)
    args = {"segment": (model, image, mask, 0.6, "(none)"),
            "branches": (model, image, None, None, None, None),
            "attribution": (model, image, 0.0, "all classes"),
            "compare": (model, image, handle_file(s.mirrored), 5, None),
            "sweep": (model, image, mask, None, None, None, None)}[endpoint]
    job = client.submit(*args, api_name="/" + endpoint)
    fetched = 0
    while True:  # each streamed step's files, fetched while the next one is computed
        done = job.done()  # read first: once done, `outputs` is complete
        steps = job.outputs()
        for url in file_urls(steps[fetched:]):
            fetch(http, url)
        fetched = len(steps)
        if done:
            break
        time.sleep(POLL)
    job.result()  # raises the app's error, if any


def timed(tally: Tally, endpoint: str, fn: Callable, progress: Callable[..., None]):
    """Run fn, record its latency or its error; the result, or None when it failed."""
    start = time.perf_counter()
    try:
        result = fn()
    except Exception as err:  # noqa: BLE001 -- every failure is counted and reported
        message = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
        tally.add(endpoint, 0.0, f"{type(err).__name__}: {message}")
        result = None
    else:
        tally.add(endpoint, time.perf_counter() - start, None)
    progress()
    return result


def run_client(url: str, index: int, args: argparse.Namespace, tally: Tally,
               progress: Callable[..., None]) -> None:
    """One client's rounds: a scene, then each chosen endpoint on it."""
    client = Client(url, verbose=False, download_files=False, analytics_enabled=False)
    with contextlib.closing(client), httpx.Client(timeout=120) as http, \
            tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            folder = Path(tmp) / str(r)
            folder.mkdir()
            seed = (index * args.rounds + r) % (args.scenes or args.clients * args.rounds)
            scene = timed(tally, SCENE, lambda: new_scene(client, http, seed, folder, args.model),
                          progress)
            if scene is None:  # nothing to call the endpoints on
                progress(len(args.endpoints))
                continue
            for endpoint in args.endpoints:
                timed(tally, endpoint, lambda e=endpoint: call(client, http, e, args.model,
                                                               scene), progress)


# --- the server's memory --------------------------------------------------------------------------

def listening_inodes(port: int) -> set[str]:
    """Socket inodes listening on the port (/proc/net/tcp and tcp6: state 0A is LISTEN)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if int(cols[1].rsplit(":", 1)[1], 16) == port and cols[3] == "0A":
                inodes.add(cols[9])
    return inodes


def server_pid(url: str) -> int | None:
    """The process listening on the URL's port, when the URL is this machine (and we may look)."""
    parsed = urlparse(url)
    if parsed.hostname not in LOCAL_HOSTS:
        return None
    inodes = {f"socket:[{i}]" for i in listening_inodes(parsed.port or 80)}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if any(str(fd.readlink()) in inodes for fd in (proc / "fd").iterdir()):
                return int(proc.name)
        except OSError:  # another user's process, or one that just ended
            continue
    return None


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise OSError(f"no VmRSS for process {pid}")


class PeakRSS:
    """Samples a process's resident memory every `every` seconds while in the `with` block."""

    def __init__(self, pid: int, every: float = 0.2):
        self.pid, self.every = pid, every
        self.before = self.peak = rss_mib(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.peak = max(self.peak, rss_mib(self.pid))
            except OSError:  # the server ended
                return

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:  # noqa: ANN002
        self._stop.set()
        self._thread.join()


# --- the report -----------------------------------------------------------------------------------

def report(tally: Tally, endpoints: list[str], wall: float, args: argparse.Namespace,
           rss: PeakRSS | None) -> str:
    """The table of calls, errors and p50/p95 latency per endpoint, then errors and memory."""
    lines = [f"{args.clients} clients × {args.rounds} rounds in {wall:.1f} s",
             f"{'endpoint':<16}{'calls':>7}{'errors':>8}{'p50 s':>9}{'p95 s':>9}"]
    for e in endpoints:
        s = tally.seconds.get(e, [])
        p50, p95 = (f"{np.percentile(s, q):.2f}" if s else "-" for q in (50, 95))
        lines.append(f"{e:<16}{len(s) + tally.failed[e]:>7}{tally.failed[e]:>8}{p50:>9}{p95:>9}")
    lines.append(f"errors: {sum(tally.errors.values())}")
    lines += [f"  {n}× {message}" for message, n in tally.errors.most_common()]
    if rss is not None:
        lines.append(f"server RSS (pid {rss.pid}): {rss.before:.0f} MiB before, "
                     f"{rss.peak:.0f} MiB peak")
    return "\n".join(lines)


def positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return int(text)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m app.tools.loadtest",
                                description=__doc__.split("\n")[0])
    p.add_argument("url", help="the app, e.g. http://127.0.0.1:7860")
    p.add_argument("--clients", type=positive, default=8, help="clients at once")
    p.add_argument("--rounds", type=positive, default=2, help="rounds per client")
    p.add_argument("--endpoints", nargs="+", choices=ENDPOINTS, default=list(ENDPOINTS),
                   help="endpoints called on each round's scene")
    p.add_argument("--model", default="demo", help="model key (as in the picker)")
    p.add_argument("--scenes", type=positive, default=None,
                   help="distinct scenes, shared out among the calls (default: one per client "
                        "and round; 1: every client fetches the same files at once)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    tally = Tally()
    pid = server_pid(args.url)
    rss = PeakRSS(pid) if pid is not None else None
    bar = tqdm(total=args.clients * args.rounds * (1 + len(args.endpoints)), unit="call")
    bar_lock = threading.Lock()

    def progress(calls: int = 1) -> None:
        with bar_lock:
            bar.update(calls)

    start = time.perf_counter()
    with rss or contextlib.nullcontext(), ThreadPoolExecutor(args.clients) as pool:
        for f in [pool.submit(run_client, args.url, i, args, tally, progress)
                  for i in range(args.clients)]:
            f.result()
    bar.close()
    print(report(tally, [SCENE, *args.endpoints], time.perf_counter() - start, args, rss))
    return 1 if tally.errors else 0


if __name__ == "__main__":
    sys.exit(main())
