"""A uniform way to build any lecture block: ``make_block(kind, in_channels, out_channels, stride)``.

Every kind returns exactly ``out_channels`` channels and divides the height and width by ``stride``
(1 or 2; for odd sizes the 3×3-stride-2 kinds give ``ceil(H/2)``, the 2×2-pool/patchify kinds — ``vgg``,
``dense``, ``convnext`` — give ``floor(H/2)``). Blocks that cannot change channels or resolution on their own
get the smallest sensible companion layer; each case is documented in :func:`make_block`.
"""

from __future__ import annotations

from collections import OrderedDict
from numbers import Integral

from torch import nn

from .attention import CBAM, SqueezeExcitation
from .conv import ConvBNReLU, VGGStage
from .convnext import ConvNeXtBlock, LayerNorm2d
from .dense import DenseBlock, Transition
from .inception import InceptionModule
from .mobile import DepthwiseSeparable, InvertedResidual, ShuffleUnit
from .residual import BasicBlock, Bottleneck, PreActBlock

__all__ = ["BLOCK_INFO", "BLOCK_KINDS", "MIN_WIDTH", "inception_widths", "make_block", "make_stage"]

BLOCK_KINDS: tuple[str, ...] = (
    "conv", "vgg", "residual", "bottleneck", "preact", "separable", "inverted_residual", "shuffle",
    "inception", "dense", "convnext", "se", "cbam",
)

_RESNET = "Deep Residual Learning for Image Recognition"
BLOCK_INFO: dict[str, dict] = {
    "conv": dict(
        paper="Batch Normalization: Accelerating Deep Network Training by Reducing Internal Covariate Shift",
        year=2015,
        description="Plain 3×3 conv → batch norm → ReLU; the stride is on the conv.",
    ),
    "vgg": dict(
        paper="Very Deep Convolutional Networks for Large-Scale Image Recognition",
        year=2014,
        description="Two 3×3 same convs with BN and ReLU, then a 2×2 max pool when the stride is 2.",
    ),
    "residual": dict(
        paper=_RESNET,
        year=2015,
        description="Two 3×3 convs with an identity shortcut, or a 1×1 projection when the shape changes.",
    ),
    "bottleneck": dict(
        paper=_RESNET,
        year=2015,
        description="1×1 reduce to a quarter of the width → 3×3 → 1×1 expand ×4, plus a shortcut.",
    ),
    "preact": dict(
        paper="Identity Mappings in Deep Residual Networks",
        year=2016,
        description="Residual block with BN → ReLU before each conv, keeping the identity path clean.",
    ),
    "separable": dict(
        paper="MobileNets: Efficient Convolutional Neural Networks for Mobile Vision Applications",
        year=2017,
        description="Depthwise 3×3 then pointwise 1×1 conv, each with BN and ReLU (as in MobileNet, Xception).",
    ),
    "inverted_residual": dict(
        paper="MobileNetV2: Inverted Residuals and Linear Bottlenecks",
        year=2018,
        description="Expand ×6 with a 1×1, depthwise 3×3, linear 1×1 projection; residual when the shape is kept.",
    ),
    "shuffle": dict(
        paper="ShuffleNet: An Extremely Efficient Convolutional Neural Network for Mobile Devices",
        year=2017,
        description="Grouped 1×1 convs with a channel shuffle around a depthwise 3×3; add or concat shortcut.",
    ),
    "inception": dict(
        paper="Going Deeper with Convolutions",
        year=2014,
        description="Parallel 1×1, 3×3, 5×5 and pooling branches, concatenated; a 3×3/2 max pool at stride 2.",
    ),
    "dense": dict(
        paper="Densely Connected Convolutional Networks",
        year=2016,
        description="Four densely connected BN-ReLU-conv layers, then a 1×1 transition (and 2×2 average pool).",
    ),
    "convnext": dict(
        paper="A ConvNet for the 2020s",
        year=2022,
        description="7×7 depthwise conv, LayerNorm, 1×1 expand ×4, GELU, 1×1 project, layer scale, residual.",
    ),
    "se": dict(
        paper="Squeeze-and-Excitation Networks",
        year=2018,
        description="A 3×3 conv-BN-ReLU whose channels are re-weighted by a squeeze-and-excitation gate.",
    ),
    "cbam": dict(
        paper="CBAM: Convolutional Block Attention Module",
        year=2018,
        description="A 3×3 conv-BN-ReLU followed by channel attention and then spatial attention.",
    ),
}

# Smallest out_channels a kind can produce (the inception module needs one channel per branch).
MIN_WIDTH: dict[str, int] = {kind: 1 for kind in BLOCK_KINDS} | {"inception": 4}

_DENSE_LAYERS = 4


def _check_int(what: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"{what} must be a whole number of at least {minimum}; got {value!r}.")
    return int(value)


def _check_kind_and_stride(kind, stride) -> None:
    if kind not in BLOCK_KINDS:
        raise ValueError(f"Unknown block kind {kind!r}; choose one of {', '.join(BLOCK_KINDS)}.")
    if isinstance(stride, bool) or stride not in (1, 2):
        raise ValueError(f"The stride must be 1 or 2; got {stride!r}.")


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


def make_block(kind: str, in_channels: int, out_channels: int, stride: int = 1) -> nn.Module:
    """One block of ``kind`` mapping N×in×H×W to N×out×(H/stride)×(W/stride). ``kind`` is one of BLOCK_KINDS.

    * ``conv``: :class:`ConvBNReLU` 3×3 with the stride.
    * ``vgg``: :class:`VGGStage` with two 3×3 convs and BN (as ``vgg*_bn``); stride 2 means "with the 2×2
      max pool", stride 1 leaves the pool out.
    * ``residual`` / ``bottleneck`` / ``preact``: :class:`BasicBlock` / :class:`Bottleneck` (middle width
      ``out // 4``) / :class:`PreActBlock`, with a projection shortcut when the shape changes.
    * ``separable``: :class:`DepthwiseSeparable` (stride on the depthwise conv).
    * ``inverted_residual``: :class:`InvertedResidual` with expansion 6.
    * ``shuffle``: :class:`ShuffleUnit` with groups 2 (1 where 2 does not divide the widths).
    * ``inception``: ``Sequential(inception=InceptionModule, pool=MaxPool2d(3, 2, padding=1))`` — branch widths
      from :func:`inception_widths`; the pool (GoogLeNet's between-stage 3×3/2 max pool) only at stride 2, else
      the bare module. Needs ``out_channels ≥ 4``.
    * ``dense``: ``Sequential(dense=DenseBlock, transition=Transition)`` — 4 layers with growth rate
      ``max(1, out // 4)`` (so the block adds about ``out`` channels), then BN-ReLU-1×1 to ``out_channels``
      plus a 2×2 average pool at stride 2.
    * ``convnext``: ``Sequential([downsample,] block=ConvNeXtBlock(out))`` — ``downsample`` is LayerNorm2d +
      2×2 stride-2 conv at stride 2 (ConvNeXt's downsampling layer), LayerNorm2d + 1×1 conv at stride 1
      when the channels change, and absent otherwise.
    * ``se`` / ``cbam``: ``Sequential(conv=ConvBNReLU(in, out, 3, stride), se|cbam=gate(out))`` with reduction 16.

    Raises ``ValueError`` (one sentence) for an unknown kind, a stride other than 1 or 2, or a width below 1
    (below 4 for inception).
    """
    _check_kind_and_stride(kind, stride)
    in_channels = _check_int("in_channels", in_channels, 1)
    out_channels = _check_int(f"out_channels of a {kind} block", out_channels, MIN_WIDTH[kind])

    if kind == "conv":
        return ConvBNReLU(in_channels, out_channels, 3, stride)
    if kind == "vgg":
        return VGGStage(in_channels, out_channels, num_convs=2, batch_norm=True, pool=stride == 2)
    if kind == "residual":
        return BasicBlock(in_channels, out_channels, stride)
    if kind == "bottleneck":
        return Bottleneck(in_channels, out_channels, stride)
    if kind == "preact":
        return PreActBlock(in_channels, out_channels, stride)
    if kind == "separable":
        return DepthwiseSeparable(in_channels, out_channels, stride)
    if kind == "inverted_residual":
        return InvertedResidual(in_channels, out_channels, stride, expand_ratio=6)
    if kind == "shuffle":
        return ShuffleUnit(in_channels, out_channels, stride, groups=2)
    if kind == "inception":
        module = InceptionModule(in_channels, *inception_widths(out_channels))
        if stride == 1:
            return module
        # padding=1 gives ceil(H/2), like the stride-2 3×3 convs of the other kinds.
        return nn.Sequential(OrderedDict(inception=module, pool=nn.MaxPool2d(3, 2, padding=1)))
    if kind == "dense":
        block = DenseBlock(in_channels, _DENSE_LAYERS, growth_rate=max(1, out_channels // 4))
        return nn.Sequential(
            OrderedDict(dense=block, transition=Transition(block.out_channels, out_channels, stride))
        )
    if kind == "convnext":
        layers: "OrderedDict[str, nn.Module]" = OrderedDict()
        if stride == 2 or in_channels != out_channels:
            k = 2 if stride == 2 else 1
            layers["downsample"] = nn.Sequential(
                OrderedDict(
                    norm=LayerNorm2d(in_channels, eps=1e-6),
                    conv=nn.Conv2d(in_channels, out_channels, k, stride=k),
                )
            )
        layers["block"] = ConvNeXtBlock(out_channels)
        return nn.Sequential(layers)
    # se / cbam: these gates keep the shape, so a conv in front does the channel change and the stride.
    gate = SqueezeExcitation(out_channels) if kind == "se" else CBAM(out_channels)
    return nn.Sequential(OrderedDict([("conv", ConvBNReLU(in_channels, out_channels, 3, stride)), (kind, gate)]))


def make_stage(kind: str, in_channels: int, width: int, repeats: int, stride: int) -> nn.Sequential:
    """``repeats`` blocks of ``kind`` (children ``0``, ``1``, …, as torchvision's ``layer1``…).

    The first block takes the stride and the change ``in_channels → width``; the others are stride 1,
    ``width → width``.
    """
    repeats = _check_int("repeats", repeats, 1)
    blocks = [make_block(kind, in_channels, width, stride)]
    blocks += [make_block(kind, width, width, 1) for _ in range(repeats - 1)]
    return nn.Sequential(*blocks)
