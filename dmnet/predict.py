"""Batch prediction: `python -m dmnet.predict INPUT... --checkpoint CK --out DIR`.

INPUTs are image files, folders (searched recursively for images and videos), globs (quoted, `**`
allowed) and video files (frames decoded by PyAV). For each image, under DIR:
  masks/NAME.png     class ids as a palette PNG in the model's palette: the argmax of
                     `dmnet.segment_image` (test-scale resize, segment, resize back), exactly
  overlays/NAME.jpg  the image blended with its mask's colours (JPEG: 30x faster to write)
  logits/NAME.npy    with --logits: float32 (classes, H, W) scores (with --tta: mean softmax)
NAME is the file's stem, or for a file found in a folder INPUT its path under that folder (a
repeated name gets -2, -3, ...). A video's frames are NAME/000000, NAME/000001, ...
--batch N runs up to N consecutive inputs of the same size together. An input that cannot be read
(missing, corrupt, not an image, over MAX_PIXELS, a video without PyAV) is reported and skipped;
the exit status is then 1 (2 when the checkpoint cannot be loaded).

"""

from __future__ import annotations

import argparse
import glob
import sys
import warnings
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor
from tqdm import tqdm

from .checkpoint import CheckpointError, load_checkpoint
from .fast import fast_precision, keep_freed_memory, optimize
from .inference import segment_images
from .presets import TTA_RATIOS

try:
    import av
except ImportError:  # videos are then reported as unreadable; images still work
    av = None

MAX_PIXELS = 150_000_000  # larger images and video frames are refused: decoding may exhaust memory
VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv"}
ALPHA = 0.5  # weight of the class colours in the overlays


class InputError(Exception):
    """An input that cannot be predicted; the message names it and says why."""


@dataclass(frozen=True)
class Source:
    path: Path
    name: str  # outputs are DIR/<kind>/<name>.<ext>


@dataclass(frozen=True)
class Item:
    name: str
    image: np.ndarray  # (H, W, 3) uint8 RGB


# --- inputs ---------------------------------------------------------------------------------------

def image_suffixes() -> set[str]:
    """File name suffixes of the formats Pillow can open."""
    return {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}


def expand(args: Sequence[str]) -> tuple[list[Source], list[str]]:
    """(sources with unique output names, messages for arguments that name no input)."""
    found, errors, suffixes = [], [], image_suffixes() | VIDEO_SUFFIXES
    for arg in args:
        path = Path(arg)
        if path.is_dir():
            files = [p for p in sorted(path.rglob("*")) if p.suffix.lower() in suffixes]
            hits = [(p, p.relative_to(path).with_suffix("").as_posix()) for p in files
                    if p.is_file()]
            if not hits:
                errors.append(f"{arg}: a folder without images or videos")
        elif path.is_file():
            hits = [(path, path.stem)]
        else:
            hits = [(Path(m), Path(m).stem) for m in sorted(glob.glob(arg, recursive=True))
                    if Path(m).is_file()]
            if not hits:
                errors.append(f"{arg}: no such file, folder or matching files")
        found += hits
    seen: Counter[str] = Counter()
    sources = []
    for path, name in found:
        seen[name] += 1
        sources.append(Source(path, name if seen[name] == 1 else f"{name}-{seen[name]}"))
    return sources, errors


def check_size(path: Path, w: int, h: int) -> None:
    if w * h > MAX_PIXELS:
        raise InputError(f"{path}: {w}x{h} pixels is over the limit of {MAX_PIXELS // 10**6} MP "
                         "(a decompression bomb?); downscale it first")


def read_image(path: Path) -> np.ndarray:
    """A file as (H, W, 3) uint8 RGB, turned upright by its EXIF orientation."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the limit is ours
            with Image.open(path) as im:
                check_size(path, *im.size)  # from the header, before decoding
                return to_rgb(path, ImageOps.exif_transpose(im))
    except UnidentifiedImageError:
        raise InputError(f"{path}: not an image Pillow can read (corrupt, or another kind of "
                         "file)") from None
    except Image.DecompressionBombError as err:
        raise InputError(f"{path}: too large to decode safely: {err}") from None
    except (OSError, ValueError, SyntaxError, zlib.error) as err:
        raise InputError(f"{path}: could not be decoded (truncated or corrupt: {err})") from None


def to_rgb(path: Path, im: Image.Image) -> np.ndarray:
    """uint8 RGB of any mode; 16/32-bit grey keeps its high byte, as cv2.imread (mmseg's reader)
    does (Pillow's convert would clip it to 255: a white image)."""
    if im.mode == "F":
        raise InputError(f"{path}: a floating-point image; convert it to 8-bit first")
    if im.mode == "I" or im.mode.startswith("I;16"):
        grey = np.clip(np.asarray(im).astype(np.int64) >> 8, 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=-1)
    return np.array(im.convert("RGB"))


def read_video(source: Source) -> Iterator[Item]:
    """The frames of a video as RGB items named NAME/000000, NAME/000001, ..."""
    if av is None:
        raise InputError(f"{source.path}: reading videos needs PyAV (pip install av)")
    try:
        with av.open(str(source.path)) as container:
            if not container.streams.video:
                raise InputError(f"{source.path}: no video stream in it")
            stream = container.streams.video[0]
            check_size(source.path, stream.codec_context.width, stream.codec_context.height)
            for i, frame in enumerate(container.decode(stream)):
                yield Item(f"{source.name}/{i:06d}", frame.to_ndarray(format="rgb24"))
    except (av.FFmpegError, OSError, ValueError) as err:
        raise InputError(f"{source.path}: could not be decoded as a video ({err})") from None


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def frame_count(path: Path) -> int:
    """Frames in a video by its header (0 when unknown, 1 without PyAV), for the progress bar."""
    if av is None:
        return 1
    try:
        with av.open(str(path)) as container:
            return container.streams.video[0].frames
    except (av.FFmpegError, OSError, ValueError, IndexError):
        return 0


def decoded(sources: Iterable[Source], report: Callable[[str], None]) -> Iterator[Item]:
    """Every image and video frame of `sources`; `report(message)` for each one that fails."""
    for source in sources:
        try:
            if is_video(source.path):
                yield from read_video(source)
            else:
                yield Item(source.name, read_image(source.path))
        except InputError as err:
            report(str(err))


def batches(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    """Runs of up to `size` consecutive items whose images have one size."""
    batch: list[Item] = []
    for item in items:
        if batch and (len(batch) == size or item.image.shape != batch[0].image.shape):
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch


# --- prediction and outputs -----------------------------------------------------------------------

def write_outputs(out: Path, item: Item, scores: Tensor, palette: Sequence[Sequence[int]],
                  logits: bool) -> None:
    """masks/NAME.png (palette PNG of class ids), overlays/NAME.jpg, logits/NAME.npy."""
    mask = scores.argmax(0).to(torch.uint8).cpu().numpy()  # (H, W); presets have <= 256 classes
    colours = np.asarray(palette, np.uint8)
    kinds = (("masks", "png"), ("overlays", "jpg")) + ((("logits", "npy"),) if logits else ())
    paths = {kind: out / kind / f"{item.name}.{ext}" for kind, ext in kinds}
    for path in paths.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    png = Image.fromarray(mask)
    png.putpalette(colours.flatten().tolist())
    png.save(paths["masks"])
    blended = item.image * (1 - ALPHA) + colours[mask] * ALPHA + 0.5
    Image.fromarray(blended.astype(np.uint8)).save(paths["overlays"], quality=95, subsampling=0)
    if logits:
        np.save(paths["logits"], scores.float().cpu().numpy())


def agreement(model: torch.nn.Module, fast: torch.nn.Module, images: Sequence[np.ndarray],
              mode: str | None, scales: Sequence[float] | None, flip: bool) -> tuple[Tensor, float]:
    """(the fast model's scores, the share of their argmax pixels equal to the model's)."""
    reference = segment_images(model, images, mode, scales, flip).argmax(1)
    scores = segment_images(fast, images, mode, scales, flip)
    return scores, (scores.argmax(1) == reference).float().mean().item()


# --- command line ---------------------------------------------------------------------------------

def positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m dmnet.predict",
                                     description=__doc__.split("\n\n")[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="image or video files, folders, globs")
    parser.add_argument("--checkpoint", required=True,
                        help="a checkpoint file, an http(s):// or file:// URL, or a preset name")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    parser.add_argument("--mode", choices=("whole", "slide"), help="default: the preset's")
    parser.add_argument("--tta", action="store_true",
                        help=f"mmseg's ms+flip test: scales {TTA_RATIOS} and mirrored")
    parser.add_argument("--fast", action="store_true", help="dmnet.fast.optimize() with bf16 "
                        "where native (CPU with AVX-512 BF16/AMX) or bf16/fp16 on CUDA; prints "
                        "the share of the first batch's pixels that keep their fp32 class")
    parser.add_argument("--logits", action="store_true", help="also write the scores as .npy")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="default: cuda where available, else cpu")
    parser.add_argument("--batch", type=positive, default=1,
                        help="images of one size run together, up to this many")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    keep_freed_memory()  # large activations reused, not page-faulted afresh per image
    try:
        model = load_checkpoint(args.checkpoint, map_location=device)
    except CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    scales, flip = (TTA_RATIOS, True) if args.tta else (None, False)
    runner = model
    if args.fast:
        precision = fast_precision(device)
        runner = optimize(model, precision=precision)
        print(f"--fast: {precision}, BN folded, channels_last", file=sys.stderr)
    failures: list[str] = []

    def report(message: str) -> None:
        failures.append(message)
        tqdm.write(f"skipped {message}", file=sys.stderr)

    sources, errors = expand(args.inputs)
    for message in errors:
        report(message)
    total = sum(frame_count(s.path) if is_video(s.path) else 1 for s in sources)
    written = 0
    with tqdm(total=total, unit="img", dynamic_ncols=True) as bar:
        for batch in batches(decoded(sources, report), args.batch):
            images = [item.image for item in batch]
            if runner is not model and written == 0:  # measure what --fast changes, once
                scores, agree = agreement(model, runner, images, args.mode, scales, flip)
                tqdm.write(f"--fast: {100 * agree:.2f}% of the first batch's pixels get the "
                           "class fp32 gives", file=sys.stderr)
            else:
                scores = segment_images(runner, images, args.mode, scales, flip)
            for item, item_scores in zip(batch, scores):
                write_outputs(args.out, item, item_scores, model.preset.palette, args.logits)
            written += len(batch)
            bar.update(len(batch))
    print(f"{written} images predicted into {args.out}; {len(failures)} inputs skipped",
          file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
