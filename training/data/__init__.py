"""Datasets: the four benchmarks in their standard layouts, and the synthetic MultiScaleShapes,
ContextShapes and PatternMatch (generated on the fly)."""

from .folders import SPECS, DatasetError, SegFolder
from .context import ContextShapes, render_context
from .patterns import PatternMatch, render_patterns
from .shapes import MultiScaleShapes, render

__all__ = ["SCENES", "SPECS", "ContextShapes", "DatasetError", "MultiScaleShapes", "PatternMatch",
           "SegFolder", "build_dataset"]
SYNTHETIC = {"multiscale_shapes": MultiScaleShapes, "context_shapes": ContextShapes,
             "pattern_match": PatternMatch}
# The synthetic datasets' scene renderers: (seed, index, size) -> ShapesSample.
SCENES = {"multiscale_shapes": render, "context_shapes": render_context,
          "pattern_match": render_patterns}


def build_dataset(dataset: str, split: str, root: str | None):
    """The `split` of `Preset.dataset` under `root`. A synthetic dataset is generated on the fly
    without a root, and read from its exported folder layout with one."""
    if dataset in SYNTHETIC:
        if root is None:
            return SYNTHETIC[dataset](split)  # its own scene size, like a real dataset's images
        return SegFolder(root, "folder", split)
    if root is None:
        raise DatasetError(f"--data-root is required for {SPECS[dataset].title}")
    return SegFolder(root, dataset, split)
