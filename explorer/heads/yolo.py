"""The YOLO-style grid head: a 1×1 conv per level predicting boxes, objectness and classes per anchor and cell."""

from __future__ import annotations

from collections import OrderedDict
from typing import Mapping, Sequence

import torch
from torch import Tensor, nn
from torchvision.ops import box_convert

from ..components import Setting, register
from ..validation import MAX_CLASSES
from .common import MAX_LOG_SCALE, Features, check_levels, clip_boxes, select

__all__ = ["YOLOHead"]


def _yolo_cost(settings: dict, levels: list) -> tuple:
    per = settings["anchors_per_cell"] * (5 + settings["num_classes"])
    return sum(lc * per for lc, _, _ in levels), sum(per * lh * lw for _, lh, lw in levels)


@register("head", "yolo", title="YOLO-style grid", short_title="YOLO-style", tasks=("detection",), order=30,
          default_levels=3, estimate=_yolo_cost,
          settings=(Setting("num_classes", "int", 20, 1, MAX_CLASSES, help="Object classes (no background)."),
                    Setting("anchors_per_cell", "int", 3, 1, 16, help="Boxes predicted per grid cell and level.")),
          description="Per level a 1×1 conv predicts box, objectness and class logits per anchor and cell; decoded "
                      "with NMS.")
def _yolo(in_channels, *, input_size, feature_sizes, num_classes, anchors_per_cell, **_):
    return YOLOHead(in_channels, num_classes, anchors_per_cell, input_size, feature_sizes)


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
        xs = check_levels(features, len(self.convs), type(self).__name__)
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
            wh = anchors * p[..., 2:4].clamp(max=MAX_LOG_SCALE).exp()
            boxes = box_convert(torch.stack([cx, cy, wh[..., 0], wh[..., 1]], dim=-1), "cxcywh", "xyxy")
            scores, labels = (p[..., 4:5].sigmoid() * p[..., 5:].sigmoid()).max(dim=-1)
            all_boxes.append(boxes.reshape(n, -1, 4))
            all_scores.append(scores.reshape(n, -1))
            all_labels.append(labels.reshape(n, -1))
        boxes = clip_boxes(torch.cat(all_boxes, 1), (ih, iw))
        scores, labels = torch.cat(all_scores, 1), torch.cat(all_labels, 1)
        results = []
        for b, s, l in zip(boxes, scores, labels):
            keep = s > conf_threshold
            results.append(select(b[keep], s[keep], l[keep], iou_threshold, max_detections))
        return results
