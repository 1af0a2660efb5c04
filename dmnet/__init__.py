"""DMNet in plain PyTorch: faithful to mmsegmentation's DMNet, loads its checkpoints unchanged.

He, Deng, Qiao, "Dynamic Multi-Scale Filters for Semantic Segmentation", ICCV 2019.
"""

from .checkpoint import CheckpointError, checkpoint_meta, load_checkpoint
from .inference import normalize, segment, segment_image, segment_images
from .model import DMNet, Trace, build_model
from .presets import ALIASES, PRESETS, TTA_RATIOS, Preset, get_preset

__all__ = ["ALIASES", "DMNet", "PRESETS", "Preset", "TTA_RATIOS", "Trace", "build_model",
           "get_preset", "normalize", "segment", "segment_image",
           "segment_images"]
__all__ += ["CheckpointError", "checkpoint_meta", "load_checkpoint"]
