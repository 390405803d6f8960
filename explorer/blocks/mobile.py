"""Blocks of the mobile networks: MobileNet v1/v2 and ShuffleNet v1."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ..components import register

__all__ = ["ChannelShuffle", "DepthwiseSeparable", "InvertedResidual", "ShuffleUnit"]


class DepthwiseSeparable(nn.Sequential):
    """MobileNet v1 block: depthwise 3×3 + BN + ReLU, then pointwise 1×1 + BN + ReLU (Fig. 3 of the paper).

    Howard et al., "MobileNets: Efficient Convolutional Neural Networks for Mobile Vision Applications"
    (2017). The depthwise conv has ``groups=in_channels`` (one 3×3 filter per channel); the stride sits on
    it, as in the paper's Table 1. Children: ``dw_conv``, ``dw_bn``, ``dw_relu``, ``pw_conv``, ``pw_bn``,
    ``pw_relu``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__(
            OrderedDict(
                dw_conv=nn.Conv2d(in_channels, in_channels, 3, stride, 1, groups=in_channels, bias=False),
                dw_bn=nn.BatchNorm2d(in_channels),
                dw_relu=nn.ReLU(),
                pw_conv=nn.Conv2d(in_channels, out_channels, 1, bias=False),
                pw_bn=nn.BatchNorm2d(out_channels),
                pw_relu=nn.ReLU(),
            )
        )


class InvertedResidual(nn.Module):
    """MobileNet v2 inverted residual: expand 1×1 (×t) → depthwise 3×3 → *linear* 1×1 projection.

    Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks" (2018). As torchvision's
    ``InvertedResidual``: hidden width ``round(in_channels·expand_ratio)``, ReLU6 after the expansion and
    the depthwise conv, no activation after the projection (the "linear bottleneck"), the expansion is
    skipped when ``expand_ratio == 1``, and the input is added back only when ``stride == 1`` and
    ``in_channels == out_channels``. The layers sit in ``conv`` (``expand_conv``, ``expand_bn``,
    ``expand_relu``, ``dw_conv``, ``dw_bn``, ``dw_relu``, ``project_conv``, ``project_bn``).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, expand_ratio: float = 6) -> None:
        super().__init__()
        hidden = int(round(in_channels * expand_ratio))
        layers: "OrderedDict[str, nn.Module]" = OrderedDict()
        if expand_ratio != 1:
            layers["expand_conv"] = nn.Conv2d(in_channels, hidden, 1, bias=False)
            layers["expand_bn"] = nn.BatchNorm2d(hidden)
            layers["expand_relu"] = nn.ReLU6()
        layers["dw_conv"] = nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False)
        layers["dw_bn"] = nn.BatchNorm2d(hidden)
        layers["dw_relu"] = nn.ReLU6()
        layers["project_conv"] = nn.Conv2d(hidden, out_channels, 1, bias=False)
        layers["project_bn"] = nn.BatchNorm2d(out_channels)
        self.conv = nn.Sequential(layers)
        self.use_res_connect = stride == 1 and in_channels == out_channels  # fixed at construction

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.use_res_connect else out


class ChannelShuffle(nn.Module):
    """Channel shuffle of ShuffleNet: view channels as (groups, C/groups), transpose, flatten back.

    After a grouped 1×1 conv each group only sees its own channels; shuffling lets the next grouped conv
    mix information across groups. Written with ``unflatten``/``flatten`` so it never reads the tensor's
    size in Python (meta-friendly and traceable).
    """

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(1, (self.groups, -1)).transpose(1, 2).flatten(1, 2)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"


class ShuffleUnit(nn.Module):
    """ShuffleNet v1 unit: grouped 1×1 + BN + ReLU → channel shuffle → depthwise 3×3 + BN → grouped 1×1 + BN.

    Zhang et al., "ShuffleNet: An Extremely Efficient Convolutional Neural Network for Mobile Devices"
    (2017), Fig. 2 (b) and (c). The bottleneck width is ``out_channels // 4`` (the paper's ¼ of the unit's
    output). Combining with the shortcut, then a ReLU:

    * ``stride == 1``, ``in == out``: residual add (Fig. 2b).
    * ``stride == 2``, ``out > in``: the branch produces ``out − in`` channels and is concatenated with a
      3×3/2 average pool of the input (Fig. 2c), so the unit widens "for free".
    * otherwise (not in the paper, needed for arbitrary widths): residual add with a projection shortcut,
      a 1×1 conv + BN (after the 3×3/2 average pool when ``stride == 2``), as ResNet's option B.

    ``groups`` (default 2, which divides common widths; the paper prefers 3 or 8 at its own widths) falls
    back to 1 when it does not divide the input, bottleneck and branch-output widths; the value used is
    ``self.groups``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, groups: int = 2) -> None:
        super().__init__()
        self.combine = "concat" if stride == 2 and out_channels > in_channels else "add"
        branch_out = out_channels - in_channels if self.combine == "concat" else out_channels
        mid = max(1, out_channels // 4)
        if any(c % groups for c in (in_channels, mid, branch_out)):
            groups = 1
        self.groups = groups
        self.conv1 = nn.Conv2d(in_channels, mid, 1, groups=groups, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.relu1 = nn.ReLU()
        self.shuffle = ChannelShuffle(groups)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)  # no ReLU after the depthwise conv, as in the paper
        self.conv3 = nn.Conv2d(mid, branch_out, 1, groups=groups, bias=False)
        self.bn3 = nn.BatchNorm2d(branch_out)
        shortcut: "OrderedDict[str, nn.Module]" = OrderedDict()
        if stride == 2:
            shortcut["pool"] = nn.AvgPool2d(3, 2, 1)  # same output size as the stride-2 3×3 conv
        if self.combine == "add" and (stride != 1 or in_channels != out_channels):
            shortcut.update(conv=nn.Conv2d(in_channels, out_channels, 1, bias=False), bn=nn.BatchNorm2d(out_channels))
        self.shortcut = nn.Sequential(shortcut)  # empty Sequential = identity
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.shuffle(self.relu1(self.bn1(self.conv1(x))))
        out = self.bn2(self.conv2(out))
        out = self.bn3(self.conv3(out))
        if self.combine == "concat":  # structural, fixed at construction
            out = torch.cat([self.shortcut(x), out], dim=1)
        else:
            out = out + self.shortcut(x)
        return self.relu(out)


# -- kinds for a custom backbone (contract: explorer.blocks.factory.make_block) ------------------------------------
def _shuffle_cost(ci: int, co: int, stride: int, hw_in: int, hw_out: int) -> tuple:
    proj, m = stride != 1 or ci != co, max(1, co // 4)
    return ci * m + 9 * m + m * co + proj * ci * co, m * hw_in + m * hw_out + (1 + proj) * co * hw_out


def _inverted_residual_cost(ci: int, co: int, stride: int, hw_in: int, hw_out: int) -> tuple:
    e = 6 * ci
    return ci * e + 9 * e + e * co, e * hw_in + e * hw_out + co * hw_out


@register("block", "separable", title="separable", order=60, year=2017,
          paper="MobileNets: Efficient Convolutional Neural Networks for Mobile Vision Applications",
          description="Depthwise 3×3 then pointwise 1×1 conv, each with BN and ReLU (as in MobileNet, Xception).",
          estimate=lambda ci, co, stride, hw_in, hw_out: (9 * ci + ci * co, ci * hw_out + co * hw_out),
          facts={"example_stage": dict(repeats=2, width=128, stride=2),
                 "depthwise_separable": True})  # the Xception experiment's block
def _separable_block(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    return DepthwiseSeparable(in_channels, out_channels, stride)


@register("block", "inverted_residual", title="inverted residual", order=70, year=2018,
          paper="MobileNetV2: Inverted Residuals and Linear Bottlenecks",
          description="Expand ×6 with a 1×1, depthwise 3×3, linear 1×1 projection; residual when the shape is kept.",
          estimate=_inverted_residual_cost)
def _inverted_residual_block(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    return InvertedResidual(in_channels, out_channels, stride, expand_ratio=6)


@register("block", "shuffle", title="ShuffleNet unit", order=80, year=2017,
          paper="ShuffleNet: An Extremely Efficient Convolutional Neural Network for Mobile Devices",
          description="Grouped 1×1 convs with a channel shuffle around a depthwise 3×3; add or concat shortcut.",
          estimate=_shuffle_cost)
def _shuffle_block(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    return ShuffleUnit(in_channels, out_channels, stride, groups=2)
