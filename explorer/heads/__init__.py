"""Task heads: what turns (neck) features into the answer for a task.

Written in the style of ``torchvision.models``: small ``nn.Module`` classes and one builder,
:func:`build_head`. Every head's ``forward`` takes the neck output, an ``OrderedDict[str, Tensor]``
ordered fine → coarse, and every head builds under ``with torch.device("meta"):`` and runs on meta
tensors (``decode`` methods, which do NMS on real scores, need real tensors).

Each kind is declared once, beside its class, with ``@register("head", name, ...)`` (`explorer.components`):
a head declaration's ``build(in_channels, *, input_size, feature_sizes, strides, levels, **settings)``
returns the module (it takes the keywords it needs and ignores the others), ``tasks`` says what it does,
``estimate(settings, levels)`` is its cost for the budget. Output of ``forward`` per kind (N = batch size):

``classification``  logits (N, num_classes); softmax only in :meth:`ClassificationHead.predict`.
``regression``      values (N, outputs), linear.
``yolo``            ``OrderedDict`` level → (N, A, h, w, 5 + num_classes): tx, ty, tw, th, objectness,
                    class logits, raw (no sigmoid).
``ssd``             ``{"bbox_regression": (N, anchors, 4), "cls_logits": (N, anchors, num_classes + 1)}``,
                    class 0 = background (torchvision's convention).
``fcn`` / ``unet``  per-pixel logits (N, num_classes, H, W) at ``input_size``.
``siamese``         L2-normalised embeddings (N, embedding_dim).

Faster R-CNN and Mask R-CNN (`explorer.heads.rcnn`) are two-stage models with their own RPN and RoI heads; their
declaration names the composed model they need, and :func:`build_head` refuses them.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import components
from .fcn import FCNHead
from .mlp import ClassificationHead, RegressionHead, SiameseHead
from .ssd import SSDHead
from .unet import UNetHead
from .yolo import YOLOHead

__all__ = [
    "HEAD_KINDS",
    "ClassificationHead",
    "FCNHead",
    "RegressionHead",
    "SSDHead",
    "SiameseHead",
    "UNetHead",
    "YOLOHead",
    "build_head",
    "roi_pool",
]


def _head_kinds() -> tuple:
    """The heads :func:`build_head` builds: every head kind but those assembled as a whole model."""
    return tuple(c.name for c in components.all_components("head") if c.model is None)


def __getattr__(name: str):
    if name == "HEAD_KINDS":  # read from the registry when first asked for (it imports this package)
        return _head_kinds()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_head(
    kind: str,
    in_channels: list[int],
    *,
    input_size: tuple[int, int],
    feature_sizes: list[tuple[int, int]],
    num_classes: int = 10,
    outputs: int = 1,
    embedding_dim: int = 128,
    anchors_per_cell: int = 3,
    hidden: list[int] = (),
    dropout: float = 0.0,
    pooling: str = "gap",
    upsample: str = "transpose",
) -> nn.Module:
    """Build the head ``kind`` (one of :data:`HEAD_KINDS`) for neck levels with ``in_channels``.

    ``input_size`` is the image (H, W) and ``feature_sizes`` the (h, w) of each level, fine → coarse;
    they size the flattening classifier, the YOLO anchors, the SSD priors and the segmentation output.
    ``num_classes`` excludes SSD's background class. ``outputs`` is for regression, ``embedding_dim`` for
    siamese, ``anchors_per_cell`` for YOLO, ``hidden`` / ``dropout`` / ``pooling`` for the classification
    and regression MLP, ``upsample`` ("transpose" or "bilinear") for the U-Net decoder.
    Raises ``ValueError`` with a sentence for the user on a bad combination.
    """
    in_channels = [int(c) for c in in_channels]
    feature_sizes = [(int(h), int(w)) for h, w in feature_sizes]
    whole = [c.short_title for c in components.all_components("head") if c.model is not None]
    if kind in [c.name for c in components.all_components("head") if c.model is not None]:
        raise ValueError(f"{' and '.join(whole)} are two-stage models assembled as a whole; they are not built as "
                         "a head.")
    if kind not in _head_kinds():
        raise ValueError(f"Unknown head {kind!r}; choose one of {', '.join(_head_kinds())}.")
    if not in_channels:
        raise ValueError("A head needs at least one backbone stage; choose one or more output stages.")
    if len(feature_sizes) != len(in_channels):
        raise ValueError(
            f"Got {len(in_channels)} channel counts but {len(feature_sizes)} feature sizes; give one per level."
        )
    if num_classes < 1 or outputs < 1 or embedding_dim < 1 or anchors_per_cell < 1:
        raise ValueError("Classes, outputs, embedding size and anchors per cell must all be at least 1.")
    if not 0.0 <= dropout < 1.0:
        raise ValueError("Dropout must be in [0, 1).")
    h, w = input_size
    strides = [max(1, round(h / fh)) for fh, _ in feature_sizes]
    return components.get("head", kind).build(
        in_channels, input_size=input_size, feature_sizes=feature_sizes, strides=strides,
        levels=[str(i) for i in range(len(in_channels))], num_classes=num_classes, outputs=outputs,
        embedding_dim=embedding_dim, anchors_per_cell=anchors_per_cell, hidden=hidden, dropout=dropout,
        pooling=pooling, upsample=upsample)


def roi_pool(feature_map, box, output_size=(2, 2), spatial_scale: float = 1.0) -> list:
    """RoI pooling (Fast R-CNN, Girshick 2015) of one box on one 2-D map with ``torchvision.ops.roi_pool``.

    The lecture's worked example: an 8×8 feature map, a box (x1, y1, x2, y2) in map cells, pooled to 2×2 —
    each output cell is the maximum of one of the box's 2×2 sub-windows. Returns a list of lists.
    """
    from torchvision.ops import roi_pool as _roi_pool

    fmap = torch.as_tensor(feature_map, dtype=torch.float32)[None, None]
    boxes = torch.tensor([[0.0, *map(float, box)]])
    return _roi_pool(fmap, boxes, output_size, spatial_scale)[0, 0].tolist()
