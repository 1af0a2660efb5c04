"""ResNetV1c, dilated to output stride 8 (D8), with mmsegmentation's parameter names.

ResNetV1c = ResNet with a deep stem (three 3x3 convs instead of one 7x7). The D8 variant keeps
stages 3 and 4 at 1/8 resolution with strides (1, 2, 1, 1) and dilations (1, 1, 2, 4);
`contract_dilation` halves the dilation of the first block of a dilated stage.
He et al., "Bag of Tricks for Image Classification with CNNs" (CVPR 2019) for V1c.
"""

from __future__ import annotations

from torch import Tensor, nn

STAGE_BLOCKS = {18: (2, 2, 2, 2), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
STRIDES = (1, 2, 1, 1)
DILATIONS = (1, 1, 2, 4)


def conv3x3(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs (ResNet-18/34). Only conv1 is strided and dilated, as in mmseg."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int, dilation: int,
                 downsample: nn.Module | None) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride, dilation)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity  # in place, as mmseg (autograd-safe: the BN output is not saved)
        return self.relu(out)

    @property
    def last_norm(self) -> nn.BatchNorm2d:
        return self.bn2


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (strided, dilated: "pytorch" style) -> 1x1 with expansion 4."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int, dilation: int,
                 downsample: nn.Module | None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += identity  # in place, as mmseg (autograd-safe: the BN output is not saved)
        return self.relu(out)

    @property
    def last_norm(self) -> nn.BatchNorm2d:
        return self.bn3


def make_layer(block: type[BasicBlock | Bottleneck], inplanes: int, planes: int, blocks: int,
               stride: int, dilation: int) -> nn.Sequential:
    """One stage; the first block carries the stride, the projection and half the dilation."""
    downsample = None
    if stride != 1 or inplanes != planes * block.expansion:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, planes * block.expansion, 1, stride, bias=False),
            nn.BatchNorm2d(planes * block.expansion),
        )
    first_dilation = dilation // 2 if dilation > 1 else dilation  # contract_dilation=True
    layers = [block(inplanes, planes, stride, first_dilation, downsample)]
    layers += [block(planes * block.expansion, planes, 1, dilation, None) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


class ResNetV1c(nn.Module):
    """Dilated ResNetV1c-D8 returning the outputs of its four stages.

    Args:
        depth: 18, 50 or 101.
        stem_channels: output width of the deep stem (its first two convs have half of it).
        base_channels: planes of the first stage; each later stage doubles them.
    """

    def __init__(self, depth: int, stem_channels: int = 64, base_channels: int = 64) -> None:
        super().__init__()
        if depth not in STAGE_BLOCKS:
            raise ValueError(f"ResNetV1c depth must be one of {sorted(STAGE_BLOCKS)}, got {depth}")
        block = BasicBlock if depth < 50 else Bottleneck
        half = stem_channels // 2
        self.stem = nn.Sequential(
            nn.Conv2d(3, half, 3, 2, 1, bias=False), nn.BatchNorm2d(half), nn.ReLU(inplace=True),
            nn.Conv2d(half, half, 3, 1, 1, bias=False), nn.BatchNorm2d(half), nn.ReLU(inplace=True),
            nn.Conv2d(half, stem_channels, 3, 1, 1, bias=False), nn.BatchNorm2d(stem_channels),
            nn.ReLU(inplace=True),
        )
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = stem_channels
        self.out_channels: list[int] = []
        for i, blocks in enumerate(STAGE_BLOCKS[depth]):
            planes = base_channels * 2**i
            layer = make_layer(block, inplanes, planes, blocks, STRIDES[i], DILATIONS[i])
            self.add_module(f"layer{i + 1}", layer)
            inplanes = planes * block.expansion
            self.out_channels.append(inplanes)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(N, 3, H, W) -> four stage outputs at strides 4, 8, 8, 8."""
        x = self.maxpool(self.stem(x))
        c1 = self.layer1(x)
        c2 = self.layer2(c1)
        c3 = self.layer3(c2)
        c4 = self.layer4(c3)
        return c1, c2, c3, c4

    def init_weights(self) -> None:
        """mmseg's init: Kaiming (fan_out) convs, BN 1/0, the last BN of each block zeroed."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.modules():
            if isinstance(m, (BasicBlock, Bottleneck)):
                nn.init.zeros_(m.last_norm.weight)

