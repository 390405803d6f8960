"""Attention gates: squeeze-and-excitation, CBAM's channel and spatial attention.

Each module has ``attention(x)`` returning the gate tensor(s) that ``forward`` multiplies in, so the
weights can be shown without hooks. Nothing is cached on ``self`` between calls.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

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
