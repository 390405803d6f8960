"""A uniform way to build any lecture block: ``make_block(kind, in_channels, out_channels, stride)``.

Every kind returns exactly ``out_channels`` channels and divides the height and width by ``stride``
(1 or 2; for odd sizes the 3×3-stride-2 kinds give ``ceil(H/2)``, the 2×2-pool/patchify kinds — VGG stage,
dense, ConvNeXt — give ``floor(H/2)``). Blocks that cannot change channels or resolution on their own
get the smallest sensible companion layer.

The kinds are declared beside their classes (``@register("block", name, ...)`` in each module of this package,
see `explorer.components`); a block declaration's ``build(in_channels, out_channels, stride)`` returns the
module. This module only dispatches:

* ``conv``: :class:`ConvBNReLU` 3×3 with the stride.
* ``vgg``: :class:`VGGStage` with two 3×3 convs and BN (as ``vgg*_bn``); stride 2 means "with the 2×2
  max pool", stride 1 leaves the pool out.
* ``vgg_plain``: one :class:`VGGStage` per stage with ``repeats`` 3×3 convs, biases and no BN (as ``vgg16``),
  then the pool at stride 2.
* ``residual`` / ``bottleneck`` / ``preact``: :class:`BasicBlock` / :class:`Bottleneck` (middle width
  ``out // 4``) / :class:`PreActBlock`, with a projection shortcut when the shape changes.
* ``separable``: :class:`DepthwiseSeparable` (stride on the depthwise conv).
* ``inverted_residual``: :class:`InvertedResidual` with expansion 6.
* ``shuffle``: :class:`ShuffleUnit` with groups 2 (1 where 2 does not divide the widths).
* ``inception``: ``Sequential(inception=InceptionModule, pool=MaxPool2d(3, 2, padding=1))`` — branch widths
  from :func:`inception_widths`; the pool only at stride 2, else the bare module. Needs ``out_channels ≥ 4``.
* ``dense``: ``Sequential(dense=DenseBlock, transition=Transition)`` — 4 layers with growth rate
  ``max(1, out // 4)``, then BN-ReLU-1×1 to ``out_channels`` plus a 2×2 average pool at stride 2.
* ``convnext``: ``Sequential([downsample,] block=ConvNeXtBlock(out))`` — ``downsample`` is LayerNorm2d +
  2×2 stride-2 conv at stride 2, LayerNorm2d + 1×1 conv at stride 1 when the channels change, else absent.
* ``se`` / ``cbam``: ``Sequential(conv=ConvBNReLU(in, out, 3, stride), se|cbam=gate(out))``, reduction 16.
"""

from __future__ import annotations

from numbers import Integral

from torch import nn

from .. import components
from .inception import inception_widths

__all__ = ["BLOCK_INFO", "BLOCK_KINDS", "MIN_WIDTH", "block_kinds", "inception_widths", "make_block", "make_stage",
           "min_width"]


def block_kinds() -> tuple:
    """The block kinds, in display order."""
    return components.names("block")


def min_width(kind: str) -> int:
    """Smallest ``out_channels`` a kind can produce (the inception module needs one channel per branch)."""
    return components.get("block", kind).fact("min_width", 1)


def __getattr__(name: str):
    # Derived from the registry when first read (the registry imports this package, so not at import time).
    if name == "BLOCK_KINDS":
        return block_kinds()
    if name == "BLOCK_INFO":
        return {c.name: dict(paper=c.paper, year=c.year, description=c.description)
                for c in components.all_components("block")}
    if name == "MIN_WIDTH":
        return {kind: min_width(kind) for kind in block_kinds()}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _check_int(what: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"{what} must be a whole number of at least {minimum}; got {value!r}.")
    return int(value)


def _check_kind_and_stride(kind, stride) -> None:
    if kind not in block_kinds():
        raise ValueError(f"Unknown block kind {kind!r}; choose one of {', '.join(block_kinds())}.")
    if isinstance(stride, bool) or stride not in (1, 2):
        raise ValueError(f"The stride must be 1 or 2; got {stride!r}.")


def make_block(kind: str, in_channels: int, out_channels: int, stride: int = 1) -> nn.Module:
    """One block of ``kind`` mapping N×in×H×W to N×out×(H/stride)×(W/stride); ``kind`` is one of BLOCK_KINDS.

    Raises ``ValueError`` (one sentence) for an unknown kind, a stride other than 1 or 2, or a width below 1
    (below 4 for inception).
    """
    _check_kind_and_stride(kind, stride)
    in_channels = _check_int("in_channels", in_channels, 1)
    out_channels = _check_int(f"out_channels of a {kind} block", out_channels, min_width(kind))
    return components.get("block", kind).build(in_channels, out_channels, stride)


def make_stage(kind: str, in_channels: int, width: int, repeats: int, stride: int) -> nn.Sequential:
    """``repeats`` blocks of ``kind`` (children ``0``, ``1``, …, as torchvision's ``layer1``…).

    The first block takes the stride and the change ``in_channels → width``; the others are stride 1,
    ``width → width``.
    """
    repeats = _check_int("repeats", repeats, 1)
    _check_kind_and_stride(kind, stride)
    whole_stage = components.get("block", kind).fact("stage")
    if whole_stage is not None:  # a kind whose repeats are layers of one stage (VGG's convs before the pool)
        return whole_stage(_check_int("in_channels", in_channels, 1),
                           _check_int(f"out_channels of a {kind} block", width, min_width(kind)), repeats, stride)
    blocks = [make_block(kind, in_channels, width, stride)]
    blocks += [make_block(kind, width, width, 1) for _ in range(repeats - 1)]
    return nn.Sequential(*blocks)
