"""The inception module of GoogLeNet."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ..components import register
from .conv import ConvBNReLU

__all__ = ["InceptionModule", "inception_widths"]


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


# -- the kind for a custom backbone (contract: explorer.blocks.factory.make_block) ---------------------------------
def inception_widths(out_channels: int) -> tuple[int, int, int, int, int, int]:
    """``(c1x1, c3x3_reduce, c3x3, c5x5_reduce, c5x5, pool_proj)`` for an inception block of ``out_channels``.

    Branch outputs ¼, ⅛, ⅛ of ``out_channels`` for the 1×1, 5×5 and pool branches (at least 1 each) and the
    rest (≈ ½) for the 3×3 branch, so they sum exactly; the reductions are ¾ of the 3×3 and ½ of the 5×5
    width, the ratios of inception (3a). ``inception_widths(256) == (64, 96, 128, 16, 32, 32)``.
    """
    c1 = max(1, out_channels // 4)
    c5 = max(1, out_channels // 8)
    pool = max(1, out_channels // 8)
    c3 = out_channels - c1 - c5 - pool
    return c1, max(1, 3 * c3 // 4), c3, max(1, c5 // 2), c5, pool


def _inception_cost(ci: int, co: int, stride: int, hw_in: int, hw_out: int) -> tuple:
    c1, c3r, c3, c5r, c5, pool = inception_widths(co)
    return (ci * (c1 + c3r + c5r + pool) + 9 * c3r * c3 + 25 * c5r * c5,
            (co + c3r + c5r) * hw_in + (co * hw_out if stride == 2 else 0))


@register("block", "inception", title="inception", order=90, year=2014, paper="Going Deeper with Convolutions",
          description="Parallel 1×1, 3×3, 5×5 and pooling branches, concatenated; a 3×3/2 max pool at stride 2.",
          estimate=_inception_cost, facts={"min_width": 4, "min_width_why": "one channel per inception branch"})
def _inception_block(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    module = InceptionModule(in_channels, *inception_widths(out_channels))
    if stride == 1:
        return module
    # GoogLeNet's between-stage 3×3/2 max pool; padding=1 gives ceil(H/2), like the stride-2 3×3 convs of others.
    return nn.Sequential(OrderedDict(inception=module, pool=nn.MaxPool2d(3, 2, padding=1)))
