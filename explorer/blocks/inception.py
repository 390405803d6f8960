"""The inception module of GoogLeNet."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from .conv import ConvBNReLU

__all__ = ["InceptionModule"]


class InceptionModule(nn.Module):
    """Inception module (v1): four parallel branches concatenated along the channels.

    Szegedy et al., "Going Deeper with Convolutions" (2014), Fig. 2(b) and Table 1:

    * ``branch1``: 1×1 conv → ``c1x1``
    * ``branch2``: 1×1 reduction → ``c3x3_reduce``, then 3×3 conv → ``c3x3``
    * ``branch3``: 1×1 reduction → ``c5x5_reduce``, then 5×5 conv → ``c5x5``
    * ``branch4``: 3×3 max pool (stride 1, same), then 1×1 projection → ``pool_proj``

    Output channels ``c1x1 + c3x3 + c5x5 + pool_proj`` (``self.out_channels``); the spatial size is kept.
    Every conv is a :class:`ConvBNReLU` (BN as in torchvision's GoogLeNet; the 2014 paper had conv + bias +
    ReLU). Unlike torchvision, whose "5×5" branch is actually 3×3, the third branch uses a true 5×5 conv.
    ``InceptionModule(192, 64, 96, 128, 16, 32, 32)`` is inception (3a): 28×28×192 → 28×28×256.
    """

    def __init__(
        self,
        in_channels: int,
        c1x1: int,
        c3x3_reduce: int,
        c3x3: int,
        c5x5_reduce: int,
        c5x5: int,
        pool_proj: int,
    ) -> None:
        super().__init__()
        self.out_channels = c1x1 + c3x3 + c5x5 + pool_proj
        self.branch1 = ConvBNReLU(in_channels, c1x1, 1)
        self.branch2 = nn.Sequential(
            OrderedDict(reduce=ConvBNReLU(in_channels, c3x3_reduce, 1), conv=ConvBNReLU(c3x3_reduce, c3x3, 3))
        )
        self.branch3 = nn.Sequential(
            OrderedDict(reduce=ConvBNReLU(in_channels, c5x5_reduce, 1), conv=ConvBNReLU(c5x5_reduce, c5x5, 5))
        )
        self.branch4 = nn.Sequential(
            OrderedDict(pool=nn.MaxPool2d(3, 1, 1), proj=ConvBNReLU(in_channels, pool_proj, 1))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], dim=1)
