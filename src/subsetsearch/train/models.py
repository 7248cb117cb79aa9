"""The networks the trainer builds by name: a small CNN and two CIFAR-style ResNets.

Written here rather than taken from torchvision (which does not import beside the
pinned CPU torch). Every classifier takes ``[B, channels, H, W]`` float input of any
size >= 8 pixels and returns logits ``[B, num_classes]``; the detector returns maps.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

#: Input pixels per detector output cell: centre maps are S / STRIDE on a side.
STRIDE = 4
#: Detector box channels after the K heatmap channels: width, height, offset x, offset y (cells).
BOX_CHANNELS = 4


class SmallCNN(nn.Module):
    """Three 3×3 conv layers (batch norm, ReLU) at full, half and quarter resolution, then a linear layer.

    Channels are ``width``, ``2·width``, ``4·width``; the last feature map is average-pooled to 3×3,
    keeping coarse spatial layout (global pooling lost ~2 points of Fashion-MNIST accuracy).
    """

    def __init__(self, in_channels: int, num_classes: int, width: int = 16) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_channels
        for stage in range(3):
            cout = width * 2**stage
            layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            layers.append(nn.MaxPool2d(2) if stage < 2 else nn.AdaptiveAvgPool2d(3))
            cin = cout
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.classifier = nn.Linear(cin * 9, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class BasicBlock(nn.Module):
    """Two 3×3 convs with batch norm and an identity (or 1×1 projection) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet for small images: 3×3 stem with stride 1 and no max-pool, four stages of basic blocks.

    ``blocks_per_stage=(2, 2, 2, 2)`` is ResNet-18; ``(1, 1, 1, 1)`` is the paper's ResNet-10
    (ResNet-18 less two conv layers per stage). Stage widths are ``width × (1, 2, 4, 8)``;
    ``width=64`` is the standard network.
    """

    def __init__(self, in_channels: int, num_classes: int, blocks_per_stage: tuple[int, ...], width: int = 64) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)
        )
        layers: list[nn.Module] = []
        cin = width
        for stage, blocks in enumerate(blocks_per_stage):
            cout = width * 2**stage
            for block in range(blocks):
                layers.append(BasicBlock(cin, cout, stride=2 if stage > 0 and block == 0 else 1))
                cin = cout
        self.stages = nn.Sequential(*layers)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.stages(self.stem(x))))


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class CenterNetUNet(nn.Module):
    """Encoder at 1/2, 1/4, 1/8 resolution (``width``, 2·``width``, 4·``width`` channels), a decoder
    that upsamples the 1/8 features and joins the 1/4 skip connection, and 3×3 + 1×1 heads."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 16) -> None:
        super().__init__()
        self.num_classes = num_classes
        w = width
        self.stage1 = _conv(in_channels, w, 2)  # 1/2
        self.stage2 = nn.Sequential(_conv(w, 2 * w, 2), _conv(2 * w, 2 * w))  # 1/4
        self.stage3 = nn.Sequential(_conv(2 * w, 4 * w, 2), _conv(4 * w, 4 * w))  # 1/8
        # upsampled 1/8 ++ 1/4 skip, mixed by a 1×1 conv (a 3×3 here cost a third of the time)
        self.merge = nn.Sequential(nn.Conv2d(6 * w, 2 * w, 1, bias=False), nn.BatchNorm2d(2 * w), nn.ReLU(inplace=True))
        self.heat = nn.Sequential(_conv(2 * w, 2 * w), nn.Conv2d(2 * w, num_classes, 1))
        self.box = nn.Sequential(_conv(2 * w, 2 * w), nn.Conv2d(2 * w, BOX_CHANNELS, 1))
        # CenterNet's prior: heatmaps start near 0.1% object probability, so early focal loss is calm
        nn.init.constant_(self.heat[-1].bias, -4.6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.stage2(self.stage1(x))
        deep = self.stage3(skip)
        up = F.interpolate(deep, size=skip.shape[-2:], mode="nearest")
        features = self.merge(torch.cat([up, skip], dim=1))
        return torch.cat([self.heat(features), self.box(features)], dim=1)


def _resnet18(in_channels: int, num_classes: int, width: int) -> nn.Module:
    return CifarResNet(in_channels, num_classes, (2, 2, 2, 2), width)


def _resnet10(in_channels: int, num_classes: int, width: int) -> nn.Module:
    return CifarResNet(in_channels, num_classes, (1, 1, 1, 1), width)


MODELS: dict[str, tuple[Callable[[int, int, int], nn.Module], int]] = {
    # name: (builder(in_channels, num_classes, width), default width)
    "cnn_small": (SmallCNN, 16),
    "resnet18": (_resnet18, 64),
    "resnet10": (_resnet10, 64),
    "centernet_unet": (CenterNetUNet, 16),  # detection: returns [B, K + 4, H/4, W/4] maps
}


def build_model(name: str, in_channels: int, num_classes: int, width: int | None = None) -> nn.Module:
    """Build model ``name`` (one of ``MODELS``) with ``width`` channels in its first layer.

    >>> model = build_model("resnet10", in_channels=3, num_classes=10, width=8)
    >>> model(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    """
    if name not in MODELS:
        raise ValueError(f"unknown model '{name}'; choose one of {', '.join(MODELS)}")
    builder, default_width = MODELS[name]
    return builder(in_channels, num_classes, default_width if width is None else width)
