"""The FCN head: conv–BN–ReLU, a 1×1 classifier and bilinear upsampling to the input: per-pixel logits."""

from __future__ import annotations

from typing import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from ..blocks.conv import ConvBNReLU
from ..components import Setting, register
from ..validation import MAX_CLASSES
from .common import Features

__all__ = ["FCNHead"]


def _fcn_cost(settings: dict, levels: list) -> tuple:
    c, h, w = levels[-1]
    inter = max(1, c // 4)
    return 9 * c * inter + inter * settings["num_classes"], (inter + settings["num_classes"]) * h * w


@register("head", "fcn", title="FCN", tasks=("segmentation",), order=70, estimate=_fcn_cost,
          settings=(Setting("num_classes", "int", 21, 1, MAX_CLASSES, help="Classes per pixel."),),
          description="On the last stage a 3×3 conv, a 1×1 classifier and bilinear upsampling: per-pixel logits.")
def _fcn(in_channels, *, input_size, num_classes, dropout=0.0, **_):
    return FCNHead(in_channels[-1], num_classes, input_size, dropout=dropout)


class FCNHead(nn.Module):
    """FCN head (Long et al., 2015, "Fully Convolutional Networks for Semantic Segmentation").

    On the last level: 3×3 conv–BN–ReLU to ``C/4`` channels (as torchvision's ``FCNHead``), optional
    dropout, 1×1 conv to ``num_classes`` (the "FC layer as a convolution"), then bilinear upsampling to
    ``input_size``: per-pixel class logits (N, num_classes, H, W); softmax across channels at prediction.
    """

    def __init__(self, in_channels: int, num_classes: int, input_size: Sequence[int], dropout: float = 0.0):
        super().__init__()
        self.input_size = (int(input_size[0]), int(input_size[1]))
        inter = max(1, in_channels // 4)
        self.conv = ConvBNReLU(in_channels, inter, 3)
        self.dropout: nn.Module = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Conv2d(inter, num_classes, 1)

    def forward(self, features: Features) -> Tensor:
        x = list(features.values())[-1]
        x = self.classifier(self.dropout(self.conv(x)))
        return F.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False)
