"""No neck: the backbone's levels pass through unchanged."""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

from torch import Tensor, nn

from ..components import register

__all__ = ["IdentityNeck"]


@register("neck", "none", title="none", order=0, default=True, facts={"identity": True},
          description="No neck: the chosen backbone stages feed the head as they are.",
          estimate=lambda settings, levels: (0, 0, list(levels)))
class IdentityNeck(nn.Module):
    """No neck: the backbone features pass through unchanged."""

    def __init__(self, in_channels: Sequence[int]) -> None:
        super().__init__()
        self.out_channels = list(in_channels)

    def forward(self, features: "OrderedDict[str, Tensor]") -> "OrderedDict[str, Tensor]":
        return OrderedDict(features)  # a new dict, so callers may edit it without touching the input
