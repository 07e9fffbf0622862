"""MobileNetV1 (Howard et al. 2017) in the layout of STR (Kusupati et al. 2020), whose dense
ImageNet checkpoint the CHITA paper prunes: `model.{i}` holds the stages (conv, BN, ReLU;
depthwise stages add a pointwise conv at `.3` and its BN at `.4`) and `fc` is a bias-free
1x1 convolution, so STR/CHITA checkpoints load without renaming."""

from __future__ import annotations

from torch import Tensor, nn

# (output channels, stride) of the depthwise-separable stages after the 32-channel stem.
STAGES = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
)


def _conv_bn(inp: int, out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(inp, out, 3, stride, 1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True))


def _separable(inp: int, out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inp, inp, 3, stride, 1, groups=inp, bias=False),
        nn.BatchNorm2d(inp),
        nn.ReLU(inplace=True),
        nn.Conv2d(inp, out, 1, 1, 0, bias=False),
        nn.BatchNorm2d(out),
        nn.ReLU(inplace=True),
    )


class MobileNetV1(nn.Module):
    """MobileNetV1 at width 1.0: 4.2M prunable weights (all convolutions and the classifier)."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        layers: list[nn.Module] = [_conv_bn(3, 32, 2)]
        inp = 32
        for out, stride in STAGES:
            layers.append(_separable(inp, out, stride))
            inp = out
        layers.append(nn.AdaptiveAvgPool2d(1))  # STR uses AvgPool2d(7): the same at 224 x 224
        self.model = nn.Sequential(*layers)
        self.fc = nn.Conv2d(inp, num_classes, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.model(x)).flatten(1)
