"""Residual blocks: ResNet's basic block and bottleneck, and the pre-activation (ResNet v2) block."""

from __future__ import annotations

import torch
from torch import nn

from ..components import register

__all__ = ["BasicBlock", "Bottleneck", "PreActBlock"]


def _projection(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """ResNet's option-B shortcut: 1×1 conv (with the block's stride) + BN."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels))


class BasicBlock(nn.Module):
    """ResNet basic block: ``y = ReLU(F(x) + shortcut(x))`` with ``F`` = conv3×3–BN–ReLU–conv3×3–BN.

    He et al., "Deep Residual Learning for Image Recognition" (2015). Laid out as torchvision's
    ``BasicBlock`` (``conv1``, ``bn1``, ``conv2``, ``bn2``, ``downsample``), so parameter counts match
    ResNet-18/34. The shortcut is the identity when the shape is kept and a 1×1 projection (conv + BN,
    with the stride) when ``stride != 1`` or the channel count changes. The stride sits on ``conv1``.
    """

    expansion = 1

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu1 = nn.ReLU()  # separate, non-in-place ReLUs: one module per activation in the layer table
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = _projection(in_channels, out_channels, stride)
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        # Structural branch fixed at construction, not data-dependent: fine on meta tensors.
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu2(out + shortcut)


class Bottleneck(nn.Module):
    """ResNet bottleneck: 1×1 (reduce to ¼) → 3×3 → 1×1 (expand ×4), each with BN, ReLU after the add.

    He et al., "Deep Residual Learning for Image Recognition" (2015). ``out_channels`` is the block
    output; the middle width is ``out_channels // 4`` (at least 1), i.e. expansion 4 as in ResNet-50.
    The stride is on the 3×3 conv (torchvision's "ResNet v1.5" placement), so
    ``Bottleneck(64, 256)`` has exactly the parameters of torchvision's ``resnet50.layer1[0]``.
    Shortcut as in :class:`BasicBlock`.
    """

    expansion = 4

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        mid = max(1, out_channels // self.expansion)
        self.conv1 = nn.Conv2d(in_channels, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(mid, mid, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.relu2 = nn.ReLU()
        self.conv3 = nn.Conv2d(mid, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = _projection(in_channels, out_channels, stride)
        self.relu3 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu3(out + shortcut)


class PreActBlock(nn.Module):
    """Pre-activation basic block (ResNet v2): BN → ReLU → conv3×3 → BN → ReLU → conv3×3, plus shortcut.

    He et al., "Identity Mappings in Deep Residual Networks" (2016). The addition is *not* followed by a
    ReLU, so the identity path stays clean (the point of the paper). When the shape changes, a 1×1
    projection (``downsample``, a plain conv: the paper has no BN on it) is applied to the pre-activated
    input. ``preact=False`` drops the leading BN-ReLU, for a first block whose input already went through
    a BN-ReLU (the stem of a pre-activation ResNet).
    """

    expansion = 1

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, preact: bool = True) -> None:
        super().__init__()
        self.bn1: nn.Module = nn.BatchNorm2d(in_channels) if preact else nn.Identity()
        self.relu1: nn.Module = nn.ReLU() if preact else nn.Identity()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(x))
        shortcut = x if self.downsample is None else self.downsample(out)
        out = self.conv1(out)
        out = self.conv2(self.relu2(self.bn2(out)))
        return out + shortcut


# -- kinds for a custom backbone (contract: explorer.blocks.factory.make_block) ------------------------------------
_RESNET = "Deep Residual Learning for Image Recognition"


def _two_convs_cost(ci: int, co: int, stride: int, hw_in: int, hw_out: int) -> tuple:
    proj = stride != 1 or ci != co
    return 9 * ci * co + 9 * co * co + proj * ci * co, (2 + proj) * co * hw_out


def _bottleneck_cost(ci: int, co: int, stride: int, hw_in: int, hw_out: int) -> tuple:
    proj, m = stride != 1 or ci != co, max(1, co // 4)
    return ci * m + 9 * m * m + m * co + proj * ci * co, m * hw_in + m * hw_out + (1 + proj) * co * hw_out


@register("block", "residual", title="residual", order=30, default=True, paper=_RESNET, year=2015,
          description="Two 3×3 convs with an identity shortcut, or a 1×1 projection when the shape changes.",
          estimate=_two_convs_cost, facts={"example_stage": dict(repeats=2, width=64, stride=2),
                                           "residual_stack": True})  # the depth experiment's residual network
def _residual_block(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    return BasicBlock(in_channels, out_channels, stride)


@register("block", "bottleneck", title="bottleneck", order=40, paper=_RESNET, year=2015,
          description="1×1 reduce to a quarter of the width → 3×3 → 1×1 expand ×4, plus a shortcut.",
          estimate=_bottleneck_cost)
def _bottleneck_block(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    return Bottleneck(in_channels, out_channels, stride)


@register("block", "preact", title="pre-activation", order=50, year=2016,
          paper="Identity Mappings in Deep Residual Networks",
          description="Residual block with BN → ReLU before each conv, keeping the identity path clean.",
          estimate=_two_convs_cost)
def _preact_block(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    return PreActBlock(in_channels, out_channels, stride)
