"""DenseNet's dense block (BN-ReLU-1×1-BN-ReLU-3×3 layers, concatenated) and transition layer."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ..components import register

__all__ = ["DenseBlock", "DenseLayer", "Transition"]


class DenseLayer(nn.Sequential):
    """One DenseNet-BC layer: BN → ReLU → 1×1 conv (``bn_size·growth``) → BN → ReLU → 3×3 conv (``growth``).

    Huang et al., "Densely Connected Convolutional Networks" (2016). Named as torchvision's ``_DenseLayer``
    (``norm1``, ``relu1``, ``conv1``, ``norm2``, ``relu2``, ``conv2``); dropout and memory-efficient
    checkpointing are left out. Returns only the ``growth_rate`` new channels; :class:`DenseBlock` concatenates.
    """

    def __init__(self, in_channels: int, growth_rate: int, bn_size: int = 4) -> None:
        inter = bn_size * growth_rate
        super().__init__(
            OrderedDict(
                norm1=nn.BatchNorm2d(in_channels),
                relu1=nn.ReLU(),
                conv1=nn.Conv2d(in_channels, inter, 1, bias=False),
                norm2=nn.BatchNorm2d(inter),
                relu2=nn.ReLU(),
                conv2=nn.Conv2d(inter, growth_rate, 3, padding=1, bias=False),
            )
        )


class DenseBlock(nn.Module):
    """Dense block: each layer receives the concatenation of the block input and all earlier layers' outputs.

    Huang et al., "Densely Connected Convolutional Networks" (2016). Layer ``i`` (0-based) sees
    ``in_channels + i·growth_rate`` channels; the block returns all of them concatenated:
    ``out_channels = in_channels + num_layers·growth_rate`` (``self.out_channels``). Layers are
    ``denselayer1`` … as in torchvision, so ``DenseBlock(64, 6, 32)`` matches ``densenet121``'s
    ``denseblock1`` parameter for parameter.
    """

    def __init__(self, in_channels: int, num_layers: int, growth_rate: int, bn_size: int = 4) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"A dense block needs at least one layer; got num_layers={num_layers}.")
        for i in range(num_layers):
            self.add_module(f"denselayer{i + 1}", DenseLayer(in_channels + i * growth_rate, growth_rate, bn_size))
        self.out_channels = in_channels + num_layers * growth_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.children():
            features.append(layer(torch.cat(features, dim=1)))
        return torch.cat(features, dim=1)


class Transition(nn.Sequential):
    """DenseNet transition layer: BN → ReLU → 1×1 conv → 2×2 average pool (stride 2).

    Huang et al., "Densely Connected Convolutional Networks" (2016); named as torchvision's
    ``_Transition`` (``norm``, ``relu``, ``conv``, ``pool``). The 1×1 conv sets the width (DenseNet-BC
    halves it); ``stride=1`` leaves out the pool, a channel-only transition used by ``make_block("dense")``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 2) -> None:
        layers: "OrderedDict[str, nn.Module]" = OrderedDict(
            norm=nn.BatchNorm2d(in_channels),
            relu=nn.ReLU(),
            conv=nn.Conv2d(in_channels, out_channels, 1, bias=False),
        )
        if stride == 2:
            layers["pool"] = nn.AvgPool2d(2, 2)
        elif stride != 1:
            raise ValueError(f"A transition's stride must be 1 or 2; got {stride}.")
        super().__init__(layers)


# -- the kind for a custom backbone (contract: explorer.blocks.factory.make_block) ---------------------------------
_LAYERS_PER_BLOCK = 4


@register("block", "dense", title="dense", order=100, year=2016, paper="Densely Connected Convolutional Networks",
          description="Four densely connected BN-ReLU-conv layers, then a 1×1 transition (and 2×2 average pool).",
          # four layers of growth co/4 (bottleneck 4×), then the transition
          estimate=lambda ci, co, stride, hw_in, hw_out: (5 * ci * co + 23 * co * co // 2,
                                                          6 * co * hw_in + (co * hw_out if stride == 2 else 0)))
def _dense_block(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    # Growth max(1, out // 4), so the block adds about out channels; the transition sets the width.
    block = DenseBlock(in_channels, _LAYERS_PER_BLOCK, growth_rate=max(1, out_channels // 4))
    return nn.Sequential(OrderedDict(dense=block, transition=Transition(block.out_channels, out_channels, stride)))
