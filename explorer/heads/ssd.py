"""The SSD head: a 3×3 conv per level predicting offsets and class scores for four prior boxes per cell."""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch
from torch import Tensor, nn
from torchvision.models.detection.ssd import SSDHead as TorchvisionSSDHead
from torchvision.ops import box_convert

from ..components import Setting, register
from ..validation import MAX_CLASSES
from .common import MAX_LOG_SCALE, Features, check_levels, clip_boxes, select

__all__ = ["SSDHead"]


def _ssd_cost(settings: dict, levels: list) -> tuple:
    per = 4 * (5 + settings["num_classes"])
    return sum(9 * lc * per for lc, _, _ in levels), sum(per * lh * lw for _, lh, lw in levels)


@register("head", "ssd", title="SSD", tasks=("detection",), order=40, default_levels=3, estimate=_ssd_cost,
          settings=(Setting("num_classes", "int", 20, 1, MAX_CLASSES,
                            help="Object classes (the head adds a background class)."),),
          description="Per level a 3×3 conv predicts offsets and class scores for four prior boxes per cell; decoded "
                      "with NMS.")
def _ssd(in_channels, *, input_size, feature_sizes, num_classes, **_):
    return SSDHead(in_channels, num_classes, input_size, feature_sizes)


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
        xs = check_levels(features, len(self.feature_sizes), type(self).__name__)
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
        w = priors[:, 2] * (reg[..., 2] / ww).clamp(max=MAX_LOG_SCALE).exp()
        h = priors[:, 3] * (reg[..., 3] / wh).clamp(max=MAX_LOG_SCALE).exp()
        boxes = clip_boxes(box_convert(torch.stack([cx, cy, w, h], dim=-1), "cxcywh", "xyxy"), (ih, iw))
        probs = logits.softmax(dim=-1)[..., 1:]  # drop the background column
        results = []
        for b, p in zip(boxes, probs):
            anchor_idx, label = torch.nonzero(p > conf_threshold, as_tuple=True)
            results.append(select(b[anchor_idx], p[anchor_idx, label], label, iou_threshold, max_detections))
        return results
