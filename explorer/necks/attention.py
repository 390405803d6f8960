"""One attention gate per level. The SE, CBAM and spatial-attention necks are declared beside their gates, in
`explorer.blocks.attention` (each gate's name has one home: it is a block kind too)."""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

from torch import Tensor, nn

from .levels import check_level_count

__all__ = ["AttentionNeck"]


class AttentionNeck(nn.Module):
    """One attention gate per level (SE, CBAM or spatial); channels and sizes unchanged."""

    def __init__(self, gates: Sequence[nn.Module], in_channels: Sequence[int]) -> None:
        super().__init__()
        self.gates = nn.ModuleList(gates)
        self.out_channels = list(in_channels)

    def forward(self, features: "OrderedDict[str, Tensor]") -> "OrderedDict[str, Tensor]":
        check_level_count(features, len(self.gates), type(self).__name__)
        return OrderedDict((k, gate(x)) for (k, x), gate in zip(features.items(), self.gates))
