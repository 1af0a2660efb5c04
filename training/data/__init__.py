"""Datasets: the four benchmarks in their standard layouts, and MultiScaleShapes."""

from .folders import SPECS, DatasetError, SegFolder
from .context import ContextShapes
from .shapes import MultiScaleShapes

__all__ = ["SPECS", "ContextShapes", "DatasetError", "MultiScaleShapes", "SegFolder", "build_dataset"]


def build_dataset(dataset: str, split: str, root: str | None):
    """The `split` of `Preset.dataset` under `root`. MultiScaleShapes is generated on the fly
    without a root, and read from its exported folder layout with one."""
    synthetic = {"multiscale_shapes": MultiScaleShapes, "context_shapes": ContextShapes}
    if dataset in synthetic:
        if root is None:
            return synthetic[dataset](split)  # its own scene size, like a real dataset's images
        return SegFolder(root, "folder", split)
    if root is None:
        raise DatasetError(f"--data-root is required for {SPECS[dataset].title}")
    return SegFolder(root, dataset, split)
