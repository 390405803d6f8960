"""Task heads: what turns (neck) features into the answer for a task.

Written in the style of ``torchvision.models``: small ``nn.Module`` classes and one builder,
:func:`build_head`. Every head's ``forward`` takes the neck output, an ``OrderedDict[str, Tensor]``
ordered fine → coarse, and every head builds under ``with torch.device("meta"):`` and runs on meta
tensors (``decode`` methods, which do NMS on real scores, need real tensors).

Output of ``forward`` per kind (see :data:`HEAD_KINDS`; N = batch size):

``classification``  logits (N, num_classes); softmax only in :meth:`ClassificationHead.predict`.
``regression``      values (N, outputs), linear.
``yolo``            ``OrderedDict`` level → (N, A, h, w, 5 + num_classes): tx, ty, tw, th, objectness,
                    class logits, raw (no sigmoid).
``ssd``             ``{"bbox_regression": (N, anchors, 4), "cls_logits": (N, anchors, num_classes + 1)}``,
                    class 0 = background (torchvision's convention).
``fcn`` / ``unet``  per-pixel logits (N, num_classes, H, W) at ``input_size``.
``siamese``         L2-normalised embeddings (N, embedding_dim).

Faster R-CNN and Mask R-CNN are two-stage models with their own RPN and RoI heads; they are
assembled as whole torchvision models elsewhere, not here.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.ssd import SSDHead as TorchvisionSSDHead
from torchvision.ops import batched_nms, box_convert

from explorer.blocks.conv import ConvBNReLU

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
]

HEAD_KINDS: tuple[str, ...] = ("classification", "regression", "yolo", "ssd", "fcn", "unet", "siamese")

# exp() of an unbounded regression output can overflow; torchvision's BoxCoder clamps at the same value.
_MAX_LOG_SCALE = math.log(1000.0 / 16)
# Candidates kept per image before NMS, so an untrained head with a low threshold stays fast.
_PRE_NMS_TOP_K = 1000

Features = Mapping[str, Tensor]


def _levels(features: Features, expected: int, name: str) -> list[Tensor]:
    xs = list(features.values())
    if len(xs) != expected:
        raise ValueError(f"{name} was built for {expected} feature level(s) but received {len(xs)}.")
    return xs


def _select(
    boxes: Tensor, scores: Tensor, labels: Tensor, iou_threshold: float, max_detections: int
) -> dict[str, Tensor]:
    """Top-k candidates → class-wise NMS → at most ``max_detections`` boxes, best first."""
    if scores.numel() > _PRE_NMS_TOP_K:
        scores, idx = scores.topk(_PRE_NMS_TOP_K)
        boxes, labels = boxes[idx], labels[idx]
    keep = batched_nms(boxes, scores, labels, iou_threshold)[:max_detections]  # sorted by score
    return {"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]}


def _clip(boxes: Tensor, input_size: Sequence[int]) -> Tensor:
    h, w = input_size
    x = boxes[..., 0::2].clamp(0, w)
    y = boxes[..., 1::2].clamp(0, h)
    return torch.stack([x[..., 0], y[..., 0], x[..., 1], y[..., 1]], dim=-1)


# --------------------------------------------------------------------------------------------------
# Classification, regression, similarity: on the last (coarsest) level
# --------------------------------------------------------------------------------------------------


class _MLPHead(nn.Module):
    """Pool or flatten the last level, then an MLP (Linear → ReLU → Dropout per hidden width), then a Linear."""

    def __init__(
        self,
        in_channels: int,
        out_features: int,
        *,
        pooling: str = "gap",
        feature_size: Sequence[int] | None = None,
        hidden: Sequence[int] = (),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if pooling == "gap":
            # Global average pooling: 7×7×512 → 512, whatever the spatial size.
            self.pool: nn.Module = nn.AdaptiveAvgPool2d(1)
            in_features = in_channels
            self.expected_size: tuple[int, int] | None = None
        elif pooling == "flatten":
            # Flattening keeps every position: 7×7×512 → 25,088, so the spatial size is fixed at build time.
            if feature_size is None:
                raise ValueError("Flattening needs the size of the last feature map.")
            self.pool = nn.Identity()
            self.expected_size = (int(feature_size[0]), int(feature_size[1]))
            in_features = in_channels * self.expected_size[0] * self.expected_size[1]
        else:
            raise ValueError(f"Unknown pooling {pooling!r}; choose 'gap' or 'flatten'.")
        self.flatten = nn.Flatten(1)
        layers: "OrderedDict[str, nn.Module]" = OrderedDict()
        for i, width in enumerate(hidden, start=1):
            layers[f"fc{i}"] = nn.Linear(in_features, int(width))
            layers[f"relu{i}"] = nn.ReLU()
            if dropout > 0:  # a Dropout(0) would only clutter the layer table
                layers[f"dropout{i}"] = nn.Dropout(dropout)
            in_features = int(width)
        self.mlp = nn.Sequential(layers)
        self.fc = nn.Linear(in_features, out_features)

    def forward(self, features: Features) -> Tensor:
        x = list(features.values())[-1]
        if self.expected_size is not None and tuple(x.shape[-2:]) != self.expected_size:
            raise ValueError(
                f"The flattening head was built for a {self.expected_size[0]}×{self.expected_size[1]} map "
                f"but received {x.shape[-2]}×{x.shape[-1]}; use global average pooling for other sizes."
            )
        return self.fc(self.mlp(self.flatten(self.pool(x))))


class ClassificationHead(_MLPHead):
    """Classification head: GAP or flatten → MLP → logits (N, num_classes).

    Softmax is not part of ``forward`` (``nn.CrossEntropyLoss`` expects logits); :meth:`predict`
    applies it.
    """

    def predict(self, features: Features) -> Tensor:
        """Class probabilities (N, num_classes), softmax over the logits."""
        return self.forward(features).softmax(dim=1)


class RegressionHead(_MLPHead):
    """Regression head: the classification trunk with a linear output (N, outputs), e.g. a count or an angle."""


class SiameseHead(nn.Module):
    """Projection head of a Siamese network (Bromley et al., 1993, "Signature Verification using a
    'Siamese' Time Delay Neural Network"; Koch et al., 2015, "Siamese Neural Networks for One-shot Image
    Recognition").

    The backbone is shared by both images; this head maps one image's last level to an image code:
    GAP → Linear(C, C) → ReLU → Linear(C, embedding_dim) → L2 normalisation, so the dot product of two
    codes is their cosine similarity.
    """

    def __init__(self, in_channels: int, embedding_dim: int = 128) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.fc1 = nn.Linear(in_channels, in_channels)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(in_channels, embedding_dim)

    def forward(self, features: Features) -> Tensor:
        x = list(features.values())[-1]
        e = self.fc2(self.relu(self.fc1(self.flatten(self.pool(x)))))
        return F.normalize(e, p=2.0, dim=1)

    @staticmethod
    def similarity(e1: Tensor, e2: Tensor) -> Tensor:
        """Cosine similarity of each pair of embeddings, shape (N,)."""
        return F.cosine_similarity(e1, e2, dim=-1)


# --------------------------------------------------------------------------------------------------
# Detection: YOLO-style grid head, SSD
# --------------------------------------------------------------------------------------------------


class YOLOHead(nn.Module):
    """YOLO-style grid head (Redmon et al., 2016, "You Only Look Once"; anchors and logistic
    objectness as in YOLOv2/v3, Redmon & Farhadi, 2017/2018).

    Per level a 1×1 conv predicts, for each grid cell and each of ``A`` anchors, ``tx, ty, tw, th``,
    an objectness logit and ``num_classes`` class logits; ``forward`` returns them raw as
    (N, A, h, w, 5 + C).

    Default anchors: ``A`` boxes per level of size ``2^(a+1)·stride`` (a = 0 … A−1), i.e. 2, 4 and 8
    cells for the default three, stride = input size / level size per axis (squares when the strides
    are equal). This covers about the range of YOLOv3's anchors relative to their strides without
    assuming a data set. They live in the ``anchors`` buffer (levels, A, 2) as (w, h) in pixels of
    ``input_size``, so they move with the module and are saved with it.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        anchors_per_cell: int,
        input_size: Sequence[int],
        feature_sizes: Sequence[Sequence[int]],
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.anchors_per_cell = anchors_per_cell
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.convs = nn.ModuleList(
            nn.Conv2d(c, anchors_per_cell * (5 + num_classes), 1) for c in in_channels
        )
        anchors = []
        for fh, fw in feature_sizes:
            sy, sx = self.input_size[0] / fh, self.input_size[1] / fw
            anchors.append([[2 ** (a + 1) * sx, 2 ** (a + 1) * sy] for a in range(anchors_per_cell)])
        self.register_buffer("anchors", torch.tensor(anchors, dtype=torch.float32))

    def forward(self, features: Features) -> "OrderedDict[str, Tensor]":
        xs = _levels(features, len(self.convs), type(self).__name__)
        out: "OrderedDict[str, Tensor]" = OrderedDict()
        for key, x, conv in zip(features.keys(), xs, self.convs):
            y = conv(x)
            n, _, h, w = y.shape
            # (N, A·(5+C), h, w) → (N, A, h, w, 5+C): one row of predictions per anchor and cell.
            out[key] = y.view(n, self.anchors_per_cell, 5 + self.num_classes, h, w).permute(0, 1, 3, 4, 2)
        return out

    @torch.no_grad()
    def decode(
        self,
        outputs: Mapping[str, Tensor],
        input_size: Sequence[int],
        conf_threshold: float = 0.25,
        iou_threshold: float = 0.45,
        max_detections: int = 100,
    ) -> list[dict[str, Tensor]]:
        """Boxes per image: ``[{"boxes": (K, 4) xyxy in input pixels, "scores": (K,), "labels": (K,)}]``.

        ``cx = (σ(tx) + col)·stride``, ``w = anchor_w·exp(tw)`` (anchors rescaled if ``input_size``
        differs from the build size); score = σ(objectness)·σ(class logit) of the best class; boxes
        clipped to the image, then class-wise NMS. Labels are 0 … num_classes − 1.
        """
        levels = list(outputs.values())
        if len(levels) != len(self.convs):
            raise ValueError(f"Expected {len(self.convs)} levels of YOLO output, got {len(levels)}.")
        ih, iw = float(input_size[0]), float(input_size[1])
        rescale = self.anchors.new_tensor([iw / self.input_size[1], ih / self.input_size[0]])
        all_boxes, all_scores, all_labels = [], [], []
        for level, p in enumerate(levels):
            n, a, h, w, _ = p.shape
            sy, sx = ih / h, iw / w
            gy, gx = torch.meshgrid(
                torch.arange(h, device=p.device, dtype=p.dtype),
                torch.arange(w, device=p.device, dtype=p.dtype),
                indexing="ij",
            )
            anchors = (self.anchors[level].to(p) * rescale.to(p)).view(1, a, 1, 1, 2)
            cx = (p[..., 0].sigmoid() + gx) * sx
            cy = (p[..., 1].sigmoid() + gy) * sy
            wh = anchors * p[..., 2:4].clamp(max=_MAX_LOG_SCALE).exp()
            boxes = box_convert(torch.stack([cx, cy, wh[..., 0], wh[..., 1]], dim=-1), "cxcywh", "xyxy")
            scores, labels = (p[..., 4:5].sigmoid() * p[..., 5:].sigmoid()).max(dim=-1)
            all_boxes.append(boxes.reshape(n, -1, 4))
            all_scores.append(scores.reshape(n, -1))
            all_labels.append(labels.reshape(n, -1))
        boxes = _clip(torch.cat(all_boxes, 1), (ih, iw))
        scores, labels = torch.cat(all_scores, 1), torch.cat(all_labels, 1)
        results = []
        for b, s, l in zip(boxes, scores, labels):
            keep = s > conf_threshold
            results.append(_select(b[keep], s[keep], l[keep], iou_threshold, max_detections))
        return results


class SSDHead(nn.Module):
    """SSD head (Liu et al., 2016, "SSD: Single Shot MultiBox Detector").

    On every level a 3×3 conv predicts 4 box offsets and ``num_classes + 1`` class scores (class 0 is
    the extra background class) for each prior box of each cell; it wraps
    ``torchvision.models.detection.ssd.SSDHead``, so the output layout is torchvision's: anchors ordered
    level by level, then row, column, prior.

    Priors (built on demand from ``feature_sizes``, like torchvision's ``DefaultBoxGenerator``): level k of
    L gets scale ``s_k = 0.2 + 0.7·k/(L−1)`` (0.2 for one level) of the image side and four boxes per
    cell: squares of side ``s_k`` and ``√(s_k·s_{k+1})`` (``s_L = 1``), and aspect ratios 2:1 and 1:2 at
    ``s_k``, centred on the cell.
    """

    priors_per_cell = 4
    min_scale, max_scale = 0.2, 0.9
    # torchvision's BoxCoder weights for SSD (the "variances" 0.1, 0.2 of the paper).
    box_weights = (10.0, 10.0, 5.0, 5.0)

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        input_size: Sequence[int],
        feature_sizes: Sequence[Sequence[int]],
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.feature_sizes = [(int(h), int(w)) for h, w in feature_sizes]
        self.head = TorchvisionSSDHead(
            list(in_channels), [self.priors_per_cell] * len(in_channels), num_classes + 1
        )

    @property
    def num_anchors(self) -> int:
        return self.priors_per_cell * sum(h * w for h, w in self.feature_sizes)

    def forward(self, features: Features) -> dict[str, Tensor]:
        xs = _levels(features, len(self.feature_sizes), type(self).__name__)
        return self.head(xs)

    def priors(self, device: torch.device | str = "cpu") -> Tensor:
        """Prior boxes (num_anchors, 4) as (cx, cy, w, h) relative to the image (0 … 1), in output order.

        Computed on demand rather than kept in a buffer: they follow from the configuration alone, and a
        module built on the meta device would otherwise carry meta priors.
        """
        levels = len(self.feature_sizes)
        scales = [
            self.min_scale + (self.max_scale - self.min_scale) * k / max(levels - 1, 1) for k in range(levels)
        ] + [1.0]
        out = []
        for k, (fh, fw) in enumerate(self.feature_sizes):
            s, s_next = scales[k], scales[k + 1]
            r = math.sqrt(2.0)
            wh = torch.tensor(
                [[s, s], [math.sqrt(s * s_next)] * 2, [s * r, s / r], [s / r, s * r]], device=device
            )
            cy, cx = torch.meshgrid(
                (torch.arange(fh, device=device) + 0.5) / fh,
                (torch.arange(fw, device=device) + 0.5) / fw,
                indexing="ij",
            )
            centres = torch.stack([cx, cy], dim=-1)[:, :, None, :].expand(fh, fw, len(wh), 2)
            sizes = wh[None, None].expand(fh, fw, len(wh), 2)
            out.append(torch.cat([centres, sizes], dim=-1).reshape(-1, 4))
        return torch.cat(out, dim=0)

    @torch.no_grad()
    def decode(
        self,
        outputs: Mapping[str, Tensor],
        input_size: Sequence[int],
        conf_threshold: float = 0.25,
        iou_threshold: float = 0.45,
        max_detections: int = 100,
    ) -> list[dict[str, Tensor]]:
        """Boxes per image: ``[{"boxes": (K, 4) xyxy in input pixels, "scores": (K,), "labels": (K,)}]``.

        Offsets are decoded against the priors (``cx = p_cx + 0.1·dx·p_w``, ``w = p_w·exp(0.2·dw)``),
        softmax over the ``num_classes + 1`` scores, background dropped, every (box, class) pair above
        ``conf_threshold`` kept, then class-wise NMS. Labels are 0 … num_classes − 1 (background removed).
        """
        reg, logits = outputs["bbox_regression"], outputs["cls_logits"]
        if reg.shape[1] != self.num_anchors:
            raise ValueError(
                f"The SSD head was built for {self.num_anchors} priors but the output has {reg.shape[1]}."
            )
        ih, iw = float(input_size[0]), float(input_size[1])
        priors = self.priors(reg.device).to(reg.dtype) * reg.new_tensor([iw, ih, iw, ih])
        wx, wy, ww, wh = self.box_weights
        cx = priors[:, 0] + reg[..., 0] / wx * priors[:, 2]
        cy = priors[:, 1] + reg[..., 1] / wy * priors[:, 3]
        w = priors[:, 2] * (reg[..., 2] / ww).clamp(max=_MAX_LOG_SCALE).exp()
        h = priors[:, 3] * (reg[..., 3] / wh).clamp(max=_MAX_LOG_SCALE).exp()
        boxes = _clip(box_convert(torch.stack([cx, cy, w, h], dim=-1), "cxcywh", "xyxy"), (ih, iw))
        probs = logits.softmax(dim=-1)[..., 1:]  # drop the background column
        results = []
        for b, p in zip(boxes, probs):
            anchor_idx, label = torch.nonzero(p > conf_threshold, as_tuple=True)
            results.append(_select(b[anchor_idx], p[anchor_idx, label], label, iou_threshold, max_detections))
        return results


# --------------------------------------------------------------------------------------------------
# Segmentation: FCN, U-Net decoder
# --------------------------------------------------------------------------------------------------


class FCNHead(nn.Module):
    """FCN head (Long et al., 2015, "Fully Convolutional Networks for Semantic Segmentation").

    On the last level: 3×3 conv–BN–ReLU to ``C/4`` channels (as torchvision's ``FCNHead``), optional
    dropout, 1×1 conv to ``num_classes`` (the "FC layer as a convolution"), then bilinear upsampling to
    ``input_size``: per-pixel class logits (N, num_classes, H, W); softmax across channels at prediction.
    """

    def __init__(self, in_channels: int, num_classes: int, input_size: Sequence[int], dropout: float = 0.0):
        super().__init__()
        self.input_size = (int(input_size[0]), int(input_size[1]))
        inter = max(1, in_channels // 4)
        self.conv = ConvBNReLU(in_channels, inter, 3)
        self.dropout: nn.Module = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Conv2d(inter, num_classes, 1)

    def forward(self, features: Features) -> Tensor:
        x = list(features.values())[-1]
        x = self.classifier(self.dropout(self.conv(x)))
        return F.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False)


class _UNetUp(nn.Module):
    """One U-Net decoder step: upsample, fix the size to the skip's, concatenate the skip, two conv–BN–ReLU."""

    def __init__(self, in_channels: int, skip_channels: int, upsample: str) -> None:
        super().__init__()
        if upsample == "transpose":
            # The paper's "up-convolution": 2×2 transposed conv, stride 2, halving towards the skip's width.
            self.up: nn.Module = nn.ConvTranspose2d(in_channels, skip_channels, 2, stride=2)
            cat_channels = 2 * skip_channels
        else:
            self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
            cat_channels = in_channels + skip_channels
        self.conv1 = ConvBNReLU(cat_channels, skip_channels, 3)
        self.conv2 = ConvBNReLU(skip_channels, skip_channels, 3)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        x = self.up(x)
        if x.shape[-2:] != skip.shape[-2:]:  # odd sizes or levels not exactly ×2 apart
            x = F.interpolate(x, size=skip.shape[-2:], mode="nearest")
        return self.conv2(self.conv1(torch.cat([skip, x], dim=1)))


class UNetHead(nn.Module):
    """U-Net decoder (Ronneberger et al., 2015, "U-Net: Convolutional Networks for Biomedical Image
    Segmentation") on a backbone's levels.

    From the coarsest level up: at each finer level an up-convolution (``upsample="transpose"``, a 2×2
    stride-2 transposed conv to the skip's channel count) or bilinear upsampling (``"bilinear"``, channels
    kept), concatenation of the skip, two 3×3 conv–BN–ReLU to the skip's channel count; then a 1×1 conv to
    ``num_classes`` and bilinear upsampling to ``input_size`` (backbones start below input resolution).
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        input_size: Sequence[int],
        upsample: str = "transpose",
    ) -> None:
        super().__init__()
        if upsample not in ("transpose", "bilinear"):
            raise ValueError(f"Unknown U-Net upsampling {upsample!r}; choose 'transpose' or 'bilinear'.")
        if len(in_channels) < 2:
            raise ValueError(
                "A U-Net decoder needs at least two backbone stages; choose stages 1–4 or pick the FCN head."
            )
        self.input_size = (int(input_size[0]), int(input_size[1]))
        # decoder[j] joins level L−2−j (coarse → fine).
        ups = []
        c = in_channels[-1]
        for skip_c in reversed(in_channels[:-1]):
            ups.append(_UNetUp(c, skip_c, upsample))
            c = skip_c
        self.decoder = nn.ModuleList(ups)
        self.classifier = nn.Conv2d(c, num_classes, 1)

    def forward(self, features: Features) -> Tensor:
        xs = _levels(features, len(self.decoder) + 1, type(self).__name__)
        x = xs[-1]
        for up, skip in zip(self.decoder, reversed(xs[:-1])):
            x = up(x, skip)
        x = self.classifier(x)
        return F.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False)


# --------------------------------------------------------------------------------------------------
# Builder
# --------------------------------------------------------------------------------------------------


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
    if kind in ("faster_rcnn", "mask_rcnn"):
        raise ValueError(
            "Faster R-CNN and Mask R-CNN are two-stage models assembled as a whole; they are not built as a head."
        )
    if kind not in HEAD_KINDS:
        raise ValueError(f"Unknown head {kind!r}; choose one of {', '.join(HEAD_KINDS)}.")
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
    last_c, last_size = in_channels[-1], feature_sizes[-1]
    if kind == "classification":
        return ClassificationHead(
            last_c, num_classes, pooling=pooling, feature_size=last_size, hidden=hidden, dropout=dropout
        )
    if kind == "regression":
        return RegressionHead(
            last_c, outputs, pooling=pooling, feature_size=last_size, hidden=hidden, dropout=dropout
        )
    if kind == "yolo":
        return YOLOHead(in_channels, num_classes, anchors_per_cell, input_size, feature_sizes)
    if kind == "ssd":
        return SSDHead(in_channels, num_classes, input_size, feature_sizes)
    if kind == "fcn":
        return FCNHead(last_c, num_classes, input_size, dropout=dropout)
    if kind == "unet":
        return UNetHead(in_channels, num_classes, input_size, upsample=upsample)
    return SiameseHead(last_c, embedding_dim)


def roi_pool(feature_map, box, output_size=(2, 2), spatial_scale: float = 1.0) -> list:
    """RoI pooling (Fast R-CNN, Girshick 2015) of one box on one 2-D map with ``torchvision.ops.roi_pool``.

    The lecture's worked example: an 8×8 feature map, a box (x1, y1, x2, y2) in map cells, pooled to 2×2 —
    each output cell is the maximum of one of the box's 2×2 sub-windows. Returns a list of lists.
    """
    from torchvision.ops import roi_pool as _roi_pool

    fmap = torch.as_tensor(feature_map, dtype=torch.float32)[None, None]
    boxes = torch.tensor([[0.0, *map(float, box)]])
    return _roi_pool(fmap, boxes, output_size, spatial_scale)[0, 0].tolist()
