"""Plain convolution blocks: conv–BN–ReLU, Keras-style separable conv, and a VGG stage."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ..components import register

__all__ = ["ConvBNReLU", "SeparableConv2d", "VGGStage"]


class ConvBNReLU(nn.Sequential):
    """Conv2d → BatchNorm2d → ReLU with named children ``conv``, ``bn``, ``relu``.

    The workhorse of every post-2015 CNN; batch normalisation comes from Ioffe & Szegedy, "Batch
    Normalization: Accelerating Deep Network Training by Reducing Internal Covariate Shift" (2015).
    ``bias`` defaults to False because the BN shift makes a conv bias redundant.

    Parameters: ``C_in·k·k/groups·C_out`` (+ ``C_out`` with bias) + ``2·C_out`` for BN.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | None = None,
        groups: int = 1,
        bias: bool = False,
    ) -> None:
        if padding is None:
            padding = kernel_size // 2  # "same" for odd kernels at stride 1
        super().__init__(
            OrderedDict(
                conv=nn.Conv2d(
                    in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=bias
                ),
                bn=nn.BatchNorm2d(out_channels),
                relu=nn.ReLU(),  # not in-place: activation hooks should see each tensor as produced
            )
        )


class SeparableConv2d(nn.Module):
    """Depthwise separable convolution, as Keras's ``SeparableConv2D`` (depth multiplier 1).

    Chollet, "Xception: Deep Learning with Depthwise Separable Convolutions" (2017).
    A depthwise ``k×k`` conv with ``groups=in_channels`` (one filter per input channel, no bias)
    followed by a pointwise ``1×1`` conv that mixes channels (with bias, as in Keras). No BN or
    activation in between; :class:`explorer.blocks.DepthwiseSeparable` is the MobileNet variant with both.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | None = None,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if padding is None:
            padding = kernel_size // 2
        self.depthwise = nn.Conv2d(
            in_channels, in_channels, kernel_size, stride, padding, groups=in_channels, bias=False
        )
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class VGGStage(nn.Sequential):
    """One VGG stage: ``num_convs`` × (3×3 conv, stride 1, same padding [+ BN] + ReLU), then 2×2 max pool.

    Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image Recognition" (2014).
    Laid out like ``torchvision.models.vgg``'s ``make_layers``: convs keep their bias even with BN (as
    ``vgg16_bn``), so ``VGGStage(3, 64)`` has the 38,720 parameters of VGG16's first stage.
    Children are named ``conv1``, ``bn1``, ``relu1``, ``conv2``, … and ``pool``; ``pool=False`` drops
    the max pool (a stride-1 stage).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_convs: int = 2,
        batch_norm: bool = False,
        pool: bool = True,
    ) -> None:
        if num_convs < 1:
            raise ValueError(f"A VGG stage needs at least one conv; got num_convs={num_convs}.")
        layers: "OrderedDict[str, nn.Module]" = OrderedDict()
        c_in = in_channels
        for i in range(1, num_convs + 1):
            layers[f"conv{i}"] = nn.Conv2d(c_in, out_channels, 3, padding=1)
            if batch_norm:
                layers[f"bn{i}"] = nn.BatchNorm2d(out_channels)
            layers[f"relu{i}"] = nn.ReLU()
            c_in = out_channels
        if pool:
            layers["pool"] = nn.MaxPool2d(2, 2)
        super().__init__(layers)


# -- kinds for a custom backbone (contract: explorer.blocks.factory.make_block) ------------------------------------
@register("block", "conv", title="conv", order=10, year=2015,
          paper="Batch Normalization: Accelerating Deep Network Training by Reducing Internal Covariate Shift",
          description="Plain 3×3 conv → batch norm → ReLU; the stride is on the conv.",
          estimate=lambda ci, co, stride, hw_in, hw_out: (9 * ci * co, co * hw_out),
          facts={"example_stage": dict(repeats=1, width=32, stride=2),
                 "plain_stack": True})  # the depth experiment's plain network
def _conv_block(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    return ConvBNReLU(in_channels, out_channels, 3, stride)


@register("block", "vgg", title="VGG stage", order=20, year=2014,
          paper="Very Deep Convolutional Networks for Large-Scale Image Recognition",
          description="Two 3×3 same convs with BN and ReLU, then a 2×2 max pool when the stride is 2.",
          estimate=lambda ci, co, stride, hw_in, hw_out: (9 * ci * co + 9 * co * co,
                                                          2 * co * hw_in + (co * hw_out if stride == 2 else 0)))
def _vgg_block(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    # Stride 2 means "with the 2×2 max pool"; stride 1 leaves the pool out.
    return VGGStage(in_channels, out_channels, num_convs=2, batch_norm=True, pool=stride == 2)


@register("block", "vgg_plain", title="VGG16 stage (no BN)", order=21, year=2014,
          paper="Very Deep Convolutional Networks for Large-Scale Image Recognition",
          description="repeats × (3×3 same conv with bias → ReLU), no batch norm, then a 2×2 max pool when the "
                      "stride is 2: VGG16's stages are 64×2, 128×2, 256×3, 512×3, 512×3.",
          estimate=lambda ci, co, stride, hw_in, hw_out: (9 * ci * co + co, co * hw_in),
          # The repeats are the convs of one stage (the pool closes the stage), not repeated blocks.
          facts={"stage": lambda ci, co, repeats, stride: VGGStage(ci, co, num_convs=repeats, batch_norm=False,
                                                                     pool=stride == 2)})
def _vgg_plain_block(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    return VGGStage(in_channels, out_channels, num_convs=1, batch_norm=False, pool=stride == 2)
