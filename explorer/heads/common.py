"""What the heads share: the level check, NMS selection and clipping for the detection heads."""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch
from torch import Tensor
from torchvision.ops import batched_nms

__all__ = ["Features", "MAX_LOG_SCALE", "check_levels", "clip_boxes", "select"]

# exp() of an unbounded regression output can overflow; torchvision's BoxCoder clamps at the same value.
MAX_LOG_SCALE = math.log(1000.0 / 16)
# Candidates kept per image before NMS, so an untrained head with a low threshold stays fast.
_PRE_NMS_TOP_K = 1000

Features = Mapping[str, Tensor]


def check_levels(features: Features, expected: int, name: str) -> list[Tensor]:
    xs = list(features.values())
    if len(xs) != expected:
        raise ValueError(f"{name} was built for {expected} feature level(s) but received {len(xs)}.")
    return xs


def select(
    boxes: Tensor, scores: Tensor, labels: Tensor, iou_threshold: float, max_detections: int
) -> dict[str, Tensor]:
    """Top-k candidates → class-wise NMS → at most ``max_detections`` boxes, best first."""
    if scores.numel() > _PRE_NMS_TOP_K:
        scores, idx = scores.topk(_PRE_NMS_TOP_K)
        boxes, labels = boxes[idx], labels[idx]
    keep = batched_nms(boxes, scores, labels, iou_threshold)[:max_detections]  # sorted by score
    return {"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]}


def clip_boxes(boxes: Tensor, input_size: Sequence[int]) -> Tensor:
    h, w = input_size
    x = boxes[..., 0::2].clamp(0, w)
    y = boxes[..., 1::2].clamp(0, h)
    return torch.stack([x[..., 0], y[..., 0], x[..., 1], y[..., 1]], dim=-1)
