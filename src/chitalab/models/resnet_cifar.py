"""ResNet for CIFAR (He et al. 2016, section 4.2): 16-32-64 channels, 6n+2 layers.

Module names follow Distiller's `resnet_cifar` (conv1/bn1, layerL.B.conv1/bn1/conv2/bn2,
layerL.0.downsample = 1x1 conv + BN, fc), so the paper's ResNet20 checkpoint loads as is.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual; a 1x1 convolution shortcut when the shape changes."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(out + shortcut)


class CifarResNet(nn.Module):
    """3x3 stem, three stages of (depth − 2) / 6 basic blocks, global average pooling, fc."""

    def __init__(self, depth: int = 20, num_classes: int = 10, widths: tuple[int, ...] | list[int] = (16, 32, 64)):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"depth must be 6n + 2 with n >= 1, got {depth}")
        blocks = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        in_planes = widths[0]
        for stage, planes in enumerate(widths, start=1):
            layers = []
            for b in range(blocks):
                stride = 2 if stage > 1 and b == 0 else 1
                layers.append(BasicBlock(in_planes, planes, stride))
                in_planes = planes
            self.add_module(f"layer{stage}", nn.Sequential(*layers))
        self.num_stages = len(widths)
        self.fc = nn.Linear(in_planes, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        for stage in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{stage}")(x)
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def resnet20(num_classes: int = 10) -> CifarResNet:
    """The paper's ResNet20 (about 0.27M parameters)."""
    return CifarResNet(20, num_classes)
