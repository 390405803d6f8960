"""The lecture's building blocks as small ``nn.Module`` classes, plus a uniform factory and a custom backbone.

Every module builds under ``with torch.device("meta"):`` and runs forward on meta tensors: no ``.item()``,
no data-dependent Python branches, no per-call state on ``self``. Attention modules expose their gates
through ``attention(x)`` (``forward(x) == x * attention(x)``), so they can be visualised without hooks.

* conv: :class:`ConvBNReLU`, :class:`SeparableConv2d`, :class:`VGGStage`
* residual: :class:`BasicBlock`, :class:`Bottleneck`, :class:`PreActBlock`
* mobile: :class:`DepthwiseSeparable`, :class:`InvertedResidual`, :class:`ShuffleUnit`, :class:`ChannelShuffle`
* inception: :class:`InceptionModule`
* dense: :class:`DenseBlock`, :class:`DenseLayer`, :class:`Transition`
* convnext: :class:`ConvNeXtBlock`, :class:`LayerNorm2d`
* attention: :class:`SqueezeExcitation`, :class:`ChannelAttention`, :class:`SpatialAttention`, :class:`CBAM`
* factory: :data:`BLOCK_KINDS`, :data:`BLOCK_INFO`, :data:`MIN_WIDTH` (derived from the kinds' declarations,
  ``explorer.components``), :func:`make_block`, :func:`make_stage`
* backbone: :class:`CustomBackbone`, :func:`example_stages`
"""

from .attention import CBAM, ChannelAttention, SpatialAttention, SqueezeExcitation
from .backbone import MAX_STAGES, STAGE_KEYS, CustomBackbone, default_stem, example_stages
from .conv import ConvBNReLU, SeparableConv2d, VGGStage
from .convnext import ConvNeXtBlock, LayerNorm2d, Permute
from .dense import DenseBlock, DenseLayer, Transition
from .factory import make_block, make_stage
from .inception import InceptionModule, inception_widths
from .mobile import ChannelShuffle, DepthwiseSeparable, InvertedResidual, ShuffleUnit
from .residual import BasicBlock, Bottleneck, PreActBlock

__all__ = [
    "BLOCK_INFO",
    "BLOCK_KINDS",
    "BasicBlock",
    "Bottleneck",
    "CBAM",
    "ChannelAttention",
    "ChannelShuffle",
    "ConvBNReLU",
    "ConvNeXtBlock",
    "CustomBackbone",
    "DenseBlock",
    "DenseLayer",
    "DepthwiseSeparable",
    "InceptionModule",
    "InvertedResidual",
    "LayerNorm2d",
    "MAX_STAGES",
    "MIN_WIDTH",
    "Permute",
    "PreActBlock",
    "STAGE_KEYS",
    "SeparableConv2d",
    "ShuffleUnit",
    "SpatialAttention",
    "SqueezeExcitation",
    "Transition",
    "VGGStage",
    "default_stem",
    "example_stages",
    "inception_widths",
    "make_block",
    "make_stage",
]


def __getattr__(name: str):
    # BLOCK_KINDS, BLOCK_INFO, MIN_WIDTH: read from the registry when first asked for (it imports this package).
    if name in ("BLOCK_INFO", "BLOCK_KINDS", "MIN_WIDTH"):
        from . import factory

        return getattr(factory, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
