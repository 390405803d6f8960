"""Multi-scale necks that fuse the backbone's levels: FPN, PANet, BiFPN.

Every output level has ``width`` channels, so a detection head sees one width at every scale.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import FeaturePyramidNetwork

from ..components import Setting, register
from ..validation import MAX_WIDTH
from .levels import check_level_count

__all__ = ["BiFPN", "BiFPNLayer", "FPN", "PANet"]

def _width(default: int) -> Setting:
    return Setting("width", "int", default, 1, MAX_WIDTH, label="Neck width",
                   help="Channels of every output level (the lateral 1×1 convs bring each stage to it).")


def _lateral_params(levels: list, width: int) -> int:
    return sum(c * width for c, _, _ in levels)  # lateral / projection 1×1 convs


def _fpn_cost(settings: dict, levels: list) -> tuple:
    width, hw = settings["width"], sum(h * w for _, h, w in levels)
    params = _lateral_params(levels, width) + 9 * width * width * len(levels)  # a 3×3 conv per level
    return params, 2 * width * hw, [(width, h, w) for _, h, w in levels]


def _panet_cost(settings: dict, levels: list) -> tuple:
    width, hw = settings["width"], sum(h * w for _, h, w in levels)
    # FPN's, plus two 3×3 convs per level on the way down
    params = _lateral_params(levels, width) + 9 * width * width * (len(levels) + 2 * (len(levels) - 1))
    return params, 3 * width * hw, [(width, h, w) for _, h, w in levels]


def _bifpn_cost(settings: dict, levels: list) -> tuple:
    width, repeats, hw = settings["width"], settings["repeats"], sum(h * w for _, h, w in levels)
    # per repeat, 2 (L - 1) separable convs
    params = _lateral_params(levels, width) + repeats * 2 * (len(levels) - 1) * (9 * width + width * width)
    return params, width * hw * (1 + 3 * repeats), [(width, h, w) for _, h, w in levels]


_MULTI = dict(min_levels=2, default_levels=3, facts={"multi_scale": True, "uniform_width": True})


@register("neck", "fpn", title="FPN", order=40, settings=(_width(256),), estimate=_fpn_cost,
          description="Feature Pyramid Network (Lin et al., 2017): a top-down path with lateral 1×1 connections.",
          **_MULTI)
class FPN(nn.Module):
    """Feature Pyramid Network (Lin et al., 2017, "Feature Pyramid Networks for Object Detection").

    Wraps ``torchvision.ops.FeaturePyramidNetwork``: a 1×1 lateral conv per level to ``width``
    channels, a top-down path (nearest upsampling of the coarser level, added to the lateral), and a
    3×3 conv on each sum. Every output level has ``width`` channels.
    """

    def __init__(self, in_channels: Sequence[int], width: int = 256) -> None:
        super().__init__()
        self.fpn = FeaturePyramidNetwork(list(in_channels), width)
        self.out_channels = [width] * len(in_channels)

    def forward(self, features: "OrderedDict[str, Tensor]") -> "OrderedDict[str, Tensor]":
        check_level_count(features, len(self.out_channels), type(self).__name__)
        return self.fpn(features)


def _conv3x3_relu(channels: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        OrderedDict(conv=nn.Conv2d(channels, channels, 3, stride, 1), relu=nn.ReLU())
    )


@register("neck", "panet", title="PANet", order=50, settings=(_width(256),), estimate=_panet_cost,
          description="FPN plus PANet's bottom-up path augmentation (Liu et al., 2018).", **_MULTI)
class PANet(nn.Module):
    """FPN followed by PANet's bottom-up path augmentation (Liu et al., 2018, "Path Aggregation
    Network for Instance Segmentation").

    ``N_1 = P_1`` and ``N_{i+1} = conv3×3(conv3×3_stride2(N_i) + P_{i+1})``, each conv followed by a
    ReLU as in the paper: a short path from the fine, well-localised levels to the coarse ones.
    If the stride-2 conv does not land exactly on ``P_{i+1}``'s size (odd sizes, or two levels at the
    same resolution), it is resized with nearest interpolation so any level sizes work.
    """

    def __init__(self, in_channels: Sequence[int], width: int = 256) -> None:
        super().__init__()
        levels = len(in_channels)
        self.fpn = FeaturePyramidNetwork(list(in_channels), width)
        self.downsample = nn.ModuleList(_conv3x3_relu(width, stride=2) for _ in range(levels - 1))
        self.fuse = nn.ModuleList(_conv3x3_relu(width) for _ in range(levels - 1))
        self.out_channels = [width] * levels

    def forward(self, features: "OrderedDict[str, Tensor]") -> "OrderedDict[str, Tensor]":
        check_level_count(features, len(self.out_channels), type(self).__name__)
        p = list(self.fpn(features).values())
        n = [p[0]]
        for i, (down, fuse) in enumerate(zip(self.downsample, self.fuse)):
            d = down(n[-1])
            target = p[i + 1]
            if d.shape[-2:] != target.shape[-2:]:
                d = F.interpolate(d, size=target.shape[-2:], mode="nearest")
            n.append(fuse(d + target))
        return OrderedDict(zip(features.keys(), n))


class _SeparableConvBN(nn.Sequential):
    """Depthwise 3×3 → pointwise 1×1 → BN → SiLU: EfficientDet's conv after each fusion node."""

    def __init__(self, channels: int) -> None:
        super().__init__(
            OrderedDict(
                depthwise=nn.Conv2d(channels, channels, 3, 1, 1, groups=channels, bias=False),
                pointwise=nn.Conv2d(channels, channels, 1, bias=False),
                bn=nn.BatchNorm2d(channels),
                act=nn.SiLU(),  # EfficientDet uses swish
            )
        )


def _fuse(weights: Tensor, inputs: Sequence[Tensor], eps: float = 1e-4) -> Tensor:
    """Fast normalised fusion: ``Σ w_i·x_i / (Σ w_j + ε)`` with ``w = relu(w)`` (no softmax, no .item())."""
    w = F.relu(weights)
    w = w / (w.sum() + eps)
    out = w[0] * inputs[0]
    for i in range(1, len(inputs)):
        out = out + w[i] * inputs[i]
    return out


def _up(x: Tensor, target: Tensor) -> Tensor:
    return F.interpolate(x, size=target.shape[-2:], mode="nearest")


def _down(x: Tensor, target: Tensor) -> Tensor:
    return F.adaptive_max_pool2d(x, target.shape[-2:])


class BiFPNLayer(nn.Module):
    """One BiFPN layer on ``L`` levels of equal width (levels indexed fine 0 → coarse L−1).

    Top-down: ``td_i = conv(fuse(P_i, up(td_{i+1})))`` for i = L−2 … 0, with ``td_{L−1} = P_{L−1}``.
    Bottom-up: ``out_0 = td_0``; ``out_i = conv(fuse(P_i, td_i, down(out_{i−1})))`` for 0 < i < L−1;
    ``out_{L−1} = conv(fuse(P_{L−1}, down(out_{L−2})))``. Each fusion node has its own weights, one
    per input, initialised to 1.
    """

    def __init__(self, levels: int, width: int) -> None:
        super().__init__()
        self.levels = levels
        # Index i of the td_* lists is level i (0 … L−2); index j of the bu_* lists is level j + 1.
        self.td_weights = nn.ParameterList(nn.Parameter(torch.ones(2)) for _ in range(levels - 1))
        self.td_convs = nn.ModuleList(_SeparableConvBN(width) for _ in range(levels - 1))
        self.bu_weights = nn.ParameterList(
            nn.Parameter(torch.ones(3 if i < levels - 1 else 2)) for i in range(1, levels)
        )
        self.bu_convs = nn.ModuleList(_SeparableConvBN(width) for _ in range(levels - 1))

    def forward(self, p: list[Tensor]) -> list[Tensor]:
        last = self.levels - 1
        td: list[Tensor] = [p[last]]  # built coarse → fine, reversed below
        for i in range(last - 1, -1, -1):
            td.append(self.td_convs[i](_fuse(self.td_weights[i], [p[i], _up(td[-1], p[i])])))
        td.reverse()
        out = [td[0]]
        for i in range(1, self.levels):
            prev = _down(out[-1], p[i])
            inputs = [p[i], td[i], prev] if i < last else [p[i], prev]
            out.append(self.bu_convs[i - 1](_fuse(self.bu_weights[i - 1], inputs)))
        return out


@register("neck", "bifpn", title="BiFPN", order=60, estimate=_bifpn_cost,
          settings=(_width(64), Setting("repeats", "int", 2, 1, 8, label="Neck repeats",
                                        help="BiFPN layers stacked, each top-down then bottom-up.")),
          description="EfficientDet's BiFPN (Tan et al., 2020): repeated top-down and bottom-up fusion with learned "
                      "weights.", **_MULTI)
class BiFPN(nn.Module):
    """Bidirectional FPN (Tan et al., 2020, "EfficientDet: Scalable and Efficient Object Detection").

    A 1×1 conv + BN projects every input level to ``width`` channels, then ``repeats`` identical-shape
    :class:`BiFPNLayer` s fuse the levels top-down and bottom-up with fast normalised weights
    (``w = relu(w) / (Σw + 1e-4)``) and depthwise-separable 3×3 convs. Levels are resampled with
    nearest interpolation going up and adaptive max pooling going down, to the exact target size, so
    any level sizes work (EfficientDet itself assumes exact factors of two).
    """

    def __init__(self, in_channels: Sequence[int], width: int = 256, repeats: int = 1) -> None:
        super().__init__()
        if repeats < 1:
            raise ValueError("BiFPN needs at least one repeat.")
        levels = len(in_channels)
        self.proj = nn.ModuleList(
            nn.Sequential(OrderedDict(conv=nn.Conv2d(c, width, 1, bias=False), bn=nn.BatchNorm2d(width)))
            for c in in_channels
        )
        self.layers = nn.ModuleList(BiFPNLayer(levels, width) for _ in range(repeats))
        self.out_channels = [width] * levels

    def forward(self, features: "OrderedDict[str, Tensor]") -> "OrderedDict[str, Tensor]":
        check_level_count(features, len(self.out_channels), type(self).__name__)
        p = [proj(x) for proj, x in zip(self.proj, features.values())]
        for layer in self.layers:
            p = layer(p)
        return OrderedDict(zip(features.keys(), p))
