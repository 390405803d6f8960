"""Attention gates: squeeze-and-excitation, CBAM's channel and spatial attention.

Each module has ``attention(x)`` returning the gate tensor(s) that ``forward`` multiplies in, so the
weights can be shown without hooks. Nothing is cached on ``self`` between calls.

The gates are kinds twice, declared here so that each gate's name has one home: blocks of a custom backbone
(a 3×3 conv, then the gate) and necks (one gate on each backbone level, :class:`explorer.necks.AttentionNeck`).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ..components import register
from .conv import ConvBNReLU

__all__ = ["CBAM", "ChannelAttention", "SpatialAttention", "SqueezeExcitation"]


def _mlp(channels: int, reduction: int) -> nn.Sequential:
    """FC (as 1×1 conv) C → max(1, C // reduction) → ReLU → FC back to C, with biases."""
    hidden = max(1, channels // reduction)
    return nn.Sequential(
        OrderedDict(
            fc1=nn.Conv2d(channels, hidden, 1),
            relu=nn.ReLU(),
            fc2=nn.Conv2d(hidden, channels, 1),
        )
    )


class SqueezeExcitation(nn.Module):
    """Squeeze-and-excitation: global average pool → FC reduce → ReLU → FC expand → sigmoid → rescale.

    Hu et al., "Squeeze-and-Excitation Networks" (2018). The FCs are 1×1 convs (as torchvision's
    ``SqueezeExcitation``), with ``max(1, channels // reduction)`` hidden units and biases.
    ``attention(x)`` is the N×C×1×1 gate in (0, 1); ``forward(x) = x * attention(x)``.
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.relu = nn.ReLU()
        self.fc2 = nn.Conv2d(hidden, channels, 1)
        self.sigmoid = nn.Sigmoid()

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        return self.sigmoid(self.fc2(self.relu(self.fc1(self.avgpool(x)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.attention(x)


class ChannelAttention(nn.Module):
    """CBAM's channel attention: average- and max-pooled descriptors through one shared MLP, summed, sigmoid.

    Woo et al., "CBAM: Convolutional Block Attention Module" (2018), Eq. 2. The shared ``mlp`` runs twice
    per call (once per descriptor). ``attention(x)`` is N×C×1×1; ``forward(x) = x * attention(x)``.
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.maxpool = nn.AdaptiveMaxPool2d(1)
        self.mlp = _mlp(channels, reduction)
        self.sigmoid = nn.Sigmoid()

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        return self.sigmoid(self.mlp(self.avgpool(x)) + self.mlp(self.maxpool(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.attention(x)


class SpatialAttention(nn.Module):
    """Spatial attention: mean and max over channels → 2 channels → k×k conv → sigmoid → multiply.

    Woo et al., "CBAM: Convolutional Block Attention Module" (2018), Eq. 3: ``σ(f^{7×7}([AvgPool(F);
    MaxPool(F)]))`` (one plain conv with bias, as the equation; the authors' code adds a BN).
    ``attention(x)`` is the N×1×H×W map; ``forward(x) = x * attention(x)``. Works for any channel count.
    """

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"The spatial attention kernel must be odd to keep the size; got {kernel_size}.")
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)
        self.sigmoid = nn.Sigmoid()

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return self.sigmoid(self.conv(pooled))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.attention(x)


class CBAM(nn.Module):
    """Convolutional block attention module: channel attention, then spatial attention on the refined map.

    Woo et al., "CBAM: Convolutional Block Attention Module" (2018), Eq. 1:
    ``F' = M_c(F) ⊗ F``, ``F'' = M_s(F') ⊗ F'``. ``attention(x)`` returns ``(channel, spatial)`` gates,
    N×C×1×1 and N×1×H×W (the spatial one computed on ``x * channel``); ``forward`` multiplies both in.
    """

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7) -> None:
        super().__init__()
        self.channel = ChannelAttention(channels, reduction)
        self.spatial = SpatialAttention(kernel_size)

    def _gates(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        channel = self.channel.attention(x)
        refined = x * channel
        return channel, self.spatial.attention(refined), refined

    def attention(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        channel, spatial, _ = self._gates(x)
        return channel, spatial

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, spatial, refined = self._gates(x)
        return refined * spatial


# -- kinds ---------------------------------------------------------------------------------------------------------
def _gate_params(channels: int) -> int:
    return 2 * channels * max(1, channels // 16)  # the two 1×1 convs of the gate, reduction 16


def _gated_conv_cost(ci: int, co: int, stride: int, hw_in: int, hw_out: int) -> tuple:
    # A 3×3 conv, then a gate with co/16 hidden units.
    return 9 * ci * co + _gate_params(co), co * hw_out


@register("block", "se", title="SE", order=120, year=2018, paper="Squeeze-and-Excitation Networks",
          description="A 3×3 conv-BN-ReLU whose channels are re-weighted by a squeeze-and-excitation gate.",
          estimate=_gated_conv_cost, facts={"gate": SqueezeExcitation})
def _se_block(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    # The gate keeps the shape, so the conv in front does the channel change and the stride.
    return nn.Sequential(OrderedDict(conv=ConvBNReLU(in_channels, out_channels, 3, stride),
                                     se=SqueezeExcitation(out_channels)))


@register("block", "cbam", title="CBAM", order=130, year=2018, paper="CBAM: Convolutional Block Attention Module",
          description="A 3×3 conv-BN-ReLU followed by channel attention and then spatial attention.",
          estimate=_gated_conv_cost, facts={"gate": CBAM})
def _cbam_block(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    return nn.Sequential(OrderedDict(conv=ConvBNReLU(in_channels, out_channels, 3, stride),
                                     cbam=CBAM(out_channels)))


def _gate_neck_cost(gate_params):
    def cost(settings: dict, levels: list) -> tuple:  # the gated map per level; shapes unchanged
        return sum(gate_params(c) for c, _, _ in levels), sum(c * h * w for c, h, w in levels), list(levels)
    return cost


def _gate_neck(gate):
    def build(in_channels: list) -> nn.Module:
        from ..necks.attention import AttentionNeck  # (the necks package imports this module)

        return AttentionNeck([gate(c) for c in in_channels], in_channels)
    return build


register("neck", "se", title="SE", order=10, build=_gate_neck(SqueezeExcitation),
         description="A squeeze-and-excitation gate on each chosen stage (Hu et al., 2018); channels unchanged.",
         estimate=_gate_neck_cost(_gate_params), facts={"gate": SqueezeExcitation})(SqueezeExcitation)
register("neck", "cbam", title="CBAM", order=20, build=_gate_neck(CBAM),
         description="CBAM's channel then spatial attention on each chosen stage (Woo et al., 2018).",
         estimate=_gate_neck_cost(_gate_params), facts={"gate": CBAM})(CBAM)
register("neck", "spatial", title="spatial attention", order=30,
         build=_gate_neck(lambda channels: SpatialAttention()),
         description="CBAM's spatial gate alone on each chosen stage: a 7×7 conv over the channel mean and max.",
         estimate=_gate_neck_cost(lambda channels: 98), facts={"gate": SpatialAttention})(SpatialAttention)
