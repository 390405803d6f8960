"""The 1×1 bottleneck neck: a 1×1 conv that shrinks (or widens) the channels of every level, BN, ReLU.

The lecture's "necks: attention modules and bottlenecks": the cheap way to bring a wide backbone stage down to
what the head can afford (resnet50's 2048 channels to 256 costs 2048·256 weights and no change of size). Every
level keeps its size and gets ``width`` channels; the receptive field passes through unchanged (1×1).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

from torch import Tensor, nn

from ..components import Setting, register
from ..validation import MAX_WIDTH
from .levels import check_level_count

__all__ = ["BottleneckNeck"]


def _cost(settings: dict, levels: list) -> tuple:
    width = settings["width"]
    return (sum(c * width for c, _, _ in levels), sum(width * h * w for _, h, w in levels),
            [(width, h, w) for _, h, w in levels])


@register("neck", "bottleneck_1x1", title="1×1 bottleneck", order=70, estimate=_cost,
          facts={"uniform_width": True},  # so a two-stage head can follow it
          settings=(Setting("width", "int", 256, 1, MAX_WIDTH, label="Neck width",
                            help="Channels of every level after the 1×1 conv (fewer than the stage's: cheaper "
                                 "head)."),),
          description="A 1×1 conv, BN and ReLU on each chosen stage: the channels shrink to the width, the size "
                      "stays.")
class BottleneckNeck(nn.Module):
    """Per level: ``Conv2d(c, width, 1, bias=False)`` → ``BatchNorm2d(width)`` → ``ReLU`` (no bias: BN's shift
    makes it redundant). Parameters per level ``c·width + 2·width``; MACs ``c·width·h·w``."""

    def __init__(self, in_channels: Sequence[int], width: int = 256) -> None:
        super().__init__()
        self.levels = nn.ModuleList(
            nn.Sequential(OrderedDict(conv=nn.Conv2d(c, width, 1, bias=False), bn=nn.BatchNorm2d(width),
                                      relu=nn.ReLU()))
            for c in in_channels)
        self.out_channels = [width] * len(in_channels)

    def forward(self, features: "OrderedDict[str, Tensor]") -> "OrderedDict[str, Tensor]":
        check_level_count(features, len(self.levels), type(self).__name__)
        return OrderedDict((k, level(x)) for (k, x), level in zip(features.items(), self.levels))
