import dataclasses
import os

import pytest
import torch

from dmnet import PRESETS, DMNet


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True, scope="session")
def _cache(tmp_path_factory):
    """What the app caches on disk (reference filters) goes to a folder of this session, also
    for the apps the tests serve in subprocesses: never into the user's ~/.cache."""
    os.environ["DMNET_CACHE"] = str(tmp_path_factory.mktemp("dmnet-cache"))


def tiny_preset(depth: int = 18, classes: str = "multiscale_shapes", **kw):
    """A narrow preset (8-channel stem and base) that runs in milliseconds."""
    base = PRESETS["dmnet_r18w32-d8_1xb8-7k_shapes-128x128"]
    return dataclasses.replace(base, name=f"tiny-r{depth}", depth=depth, stem_channels=8,
                               base_channels=8, head_channels=16, aux_channels=8,
                               dataset=classes, classes=(), palette=(), **kw)


def randomize_bn(model: torch.nn.Module) -> torch.nn.Module:
    """Random BN statistics and affines, so that every BN (even zero-init ones) matters."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.weight.data = torch.rand(n, generator=g) + 0.5
            m.bias.data = torch.randn(n, generator=g) * 0.1
            m.running_mean = torch.randn(n, generator=g) * 0.1
            m.running_var = torch.rand(n, generator=g) + 0.5
    return model


@pytest.fixture
def tiny_model():
    return randomize_bn(DMNet(tiny_preset()).eval())
