"""Networks a user might hand to ``model.factory``: one that works, and one for each way a factory
can go wrong (tests/test_user_data.py)."""

from __future__ import annotations

from torch import nn


class TinyNet(nn.Module):
    """A user's own classifier: one 3×3 conv (batch norm, ReLU), global average pooling, a linear layer.

    Its layer names (``body``, ``head``) are none of the built-in models', so a checkpoint shows
    which network was trained."""

    def __init__(self, num_classes: int, in_channels: int, input_size: tuple[int, int]) -> None:
        super().__init__()
        self.input_size = input_size
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6), nn.ReLU(), nn.AdaptiveAvgPool2d(2)
        )
        self.head = nn.Linear(6 * 4, num_classes)

    def forward(self, x):
        return self.head(self.body(x).flatten(1))


def tiny_net(*, num_classes: int, in_channels: int, input_size: tuple[int, int]) -> nn.Module:
    return TinyNet(num_classes, in_channels, input_size)


def not_a_module(*, num_classes, in_channels, input_size):
    return {"layers": 3}


def wrong_width(*, num_classes, in_channels, input_size):
    return TinyNet(num_classes + 1, in_channels, input_size)


def maps_out(*, num_classes, in_channels, input_size):
    return nn.Conv2d(in_channels, num_classes, 3, padding=1)


def fixed_input(*, num_classes, in_channels, input_size):
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, num_classes))  # not the data's shape


def positional_only(num_classes, in_channels, input_size, /):
    return TinyNet(num_classes, in_channels, input_size)


def frozen(*, num_classes, in_channels, input_size):
    net = TinyNet(num_classes, in_channels, input_size)
    for parameter in net.parameters():
        parameter.requires_grad_(False)
    return net


NOT_CALLABLE = 42
