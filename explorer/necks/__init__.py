"""Necks: what sits between a backbone's multi-scale features and a task head.

Written in the style of ``torchvision.models``: small ``nn.Module`` classes and one builder,
:func:`build_neck`. Every neck

* takes the backbone output as an ``OrderedDict[str, Tensor]`` ordered fine → coarse (the order
  ``torchvision.models.feature_extraction.create_feature_extractor`` returns) and returns an
  ``OrderedDict`` with the same keys in the same order;
* has ``out_channels: list[int]``, the channel count of each output level, so a head can be sized
  without running anything;
* builds under ``with torch.device("meta"):`` and runs on meta tensors: forward has no ``.item()``,
  ``.tolist()`` or branches on tensor values (branches on *shapes* are fine, shapes are static).

Each kind is declared once, beside its class, with ``@register("neck", name, ...)`` (`explorer.components`):
a neck declaration's ``build(in_channels, **settings)`` returns the module, its ``settings`` are what the spec
stores, its ``estimate(settings, levels)`` is its cost for the budget. A new neck is one new module in this
package (``bottleneck.py`` is one). The attention necks (SE, CBAM, spatial) are declared beside their gates in
`explorer.blocks.attention`. :data:`NECK_KINDS` lists them all, in display order.
"""

from __future__ import annotations

from torch import nn

from .. import components

# The lecture's gates, one implementation for blocks and necks (each exposes attention(x) for visualisation).
from ..blocks.attention import CBAM, SpatialAttention, SqueezeExcitation
from .attention import AttentionNeck
from .identity import IdentityNeck
from .pyramid import FPN, BiFPN, BiFPNLayer, PANet

__all__ = [
    "CBAM",
    "NECK_KINDS",
    "AttentionNeck",
    "BiFPN",
    "BiFPNLayer",
    "FPN",
    "IdentityNeck",
    "PANet",
    "SpatialAttention",
    "SqueezeExcitation",
    "build_neck",
]

_COUNT = {2: "two", 3: "three", 4: "four"}


def __getattr__(name: str):
    if name == "NECK_KINDS":  # read from the registry when first asked for (it imports this package)
        return components.names("neck")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_neck(kind: str, in_channels: list[int], **settings) -> nn.Module:
    """Build the neck ``kind`` (one of :data:`NECK_KINDS`) for backbone levels with ``in_channels``.

    ``settings`` are the kind's own (``width`` for FPN, PANet, BiFPN and the 1×1 bottleneck, ``repeats`` for
    BiFPN); settings another kind takes are ignored, and one left out takes the class's default. Raises
    ``ValueError`` with a sentence for the user for unknown kinds and for a multi-scale neck on a single level.
    """
    in_channels = [int(c) for c in in_channels]
    if not in_channels:
        raise ValueError("A neck needs at least one backbone stage; choose one or more output stages.")
    try:
        neck = components.get("neck", kind)
    except KeyError:
        raise ValueError(f"Unknown neck {kind!r}; choose one of {', '.join(components.names('neck'))}.") from None
    if len(in_channels) < neck.min_levels:
        n = _COUNT.get(neck.min_levels, str(neck.min_levels))
        raise ValueError(f"{neck.title} needs at least {n} backbone stages; choose {n} or more output stages, "
                         "or pick no neck.")
    own = {s.name: settings[s.name] for s in neck.settings if s.name in settings}
    if own.get("width", 1) < 1:
        raise ValueError("The neck width must be a positive number of channels.")
    return neck.build(in_channels, **own)
