"""Two-stage detectors: Faster R-CNN and Mask R-CNN from torchvision's parts, after our backbone and neck.

Unlike the other heads they are not a module on the neck's output: torchvision's transform resizes and
normalises the images before the backbone, the region proposal network and the RoI heads follow the neck. So the
declaration names the composed model it needs (`TwoStageDetector`), and ``build`` gives the parts
(`RCNNHead`: transform, RPN, RoI heads).
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from .. import components
from ..components import Setting, register
from ..compose import ComposedModel
from ..validation import MAX_CLASSES, SpecError

__all__ = ["RCNNHead", "TwoStageDetector"]

MAX_PROPOSALS, MAX_DETECTIONS = 5000, 1000


class RCNNHead(nn.Module):
    """Faster / Mask R-CNN after the neck: torchvision's transform, region proposal network and RoI heads."""

    def __init__(self, channels: int, levels: list, strides: list, input_size: tuple, num_classes: int,
                 masks: bool = False, proposals: int = 1000, detections: int = 100):
        super().__init__()
        self.proposals, self.detections = proposals, detections
        from torchvision.models.detection import FasterRCNN, MaskRCNN
        from torchvision.models.detection.anchor_utils import AnchorGenerator
        from torchvision.ops import MultiScaleRoIAlign

        class _Channels(nn.Module):  # torchvision only reads .out_channels from the backbone it is given
            out_channels = channels

        anchors = AnchorGenerator(sizes=tuple((8 * s,) for s in strides),
                                  aspect_ratios=((0.5, 1.0, 2.0),) * len(levels))
        common = dict(num_classes=num_classes + 1,  # + background
                      min_size=min(input_size), max_size=max(input_size), rpn_anchor_generator=anchors,
                      box_roi_pool=MultiScaleRoIAlign(featmap_names=list(levels), output_size=7, sampling_ratio=2),
                      # at inference: `proposals` kept after the RPN's NMS (from as many per level before it),
                      # `detections` per image after the box head's NMS
                      rpn_pre_nms_top_n_test=max(1000, proposals), rpn_post_nms_top_n_test=proposals,
                      box_detections_per_img=detections)
        if masks:
            full = MaskRCNN(_Channels(), mask_roi_pool=MultiScaleRoIAlign(
                featmap_names=list(levels), output_size=14, sampling_ratio=2), **common)
        else:
            full = FasterRCNN(_Channels(), **common)
        self.transform = full.transform
        self.rpn = full.rpn
        self.roi_heads = full.roi_heads


class TwoStageDetector(ComposedModel):
    """GeneralizedRCNN's forward with our backbone and neck. Eval: a list of dicts (boxes, labels, scores[, masks]);
    the R-CNN head decodes (and runs NMS) itself."""

    _fixed = False  # inside fixed_counts(): exactly the set numbers of proposals and detections
    _counts = None  # (proposals, detections) of the first image in the last fixed-count forward

    def forward(self, x, targets=None):
        images = list(x)
        original = [tuple(i.shape[-2:]) for i in images]
        images, targets = self.head.transform(images, targets)
        features = self.neck(self.backbone(images.tensors))
        proposals, rpn_losses = self.head.rpn(images, features, targets)
        if self._fixed and not self.training:
            proposals = [_exactly(p, self.head.proposals, size) for p, size in zip(proposals, images.image_sizes)]
        detections, roi_losses = self.head.roi_heads(features, proposals, images.image_sizes, targets)
        if self.training:
            return {**rpn_losses, **roi_losses}
        if self._fixed:
            self._counts = (len(proposals[0]), len(detections[0]["boxes"]))
        return self.head.transform.postprocess(detections, images.image_sizes, original)

    @contextlib.contextmanager
    def fixed_counts(self):
        """For an analysis on placeholder weights: how many proposals survive NMS (and so what the box head
        costs) would otherwise be decided by random scores. Here no box is suppressed or dropped for its score,
        so the RPN keeps exactly the set number of proposals (topped up from its own boxes if the image has
        fewer anchors) and the box head keeps the set number of detections."""
        rpn, roi = self.head.rpn, self.head.roi_heads
        saved = rpn.nms_thresh, roi.nms_thresh, roi.score_thresh
        rpn.nms_thresh = roi.nms_thresh = 1.0  # IoU is never above 1: nothing is suppressed
        roi.score_thresh = -1.0
        self._fixed = True
        try:
            yield
        finally:
            rpn.nms_thresh, roi.nms_thresh, roi.score_thresh = saved
            self._fixed = False

    def counts_note(self):
        if self._counts is None:
            return None
        n, m = self._counts
        note = f"MACs assume {n:,} proposal{'s' * (n != 1)} and {m:,} detection{'s' * (m != 1)} per image"
        if (n, m) != (self.head.proposals, self.head.detections):
            note += (f" (the settings ask for {self.head.proposals:,} and {self.head.detections:,}; this input "
                     "gives no more candidate boxes)")
        return note + "; set them in the head's settings (a trained model keeps at most these, after NMS)."


def _exactly(boxes: torch.Tensor, n: int, image_size) -> torch.Tensor:
    """``n`` proposals: the RPN's own first ``n``, repeated in order if it gave fewer (the whole image if none)."""
    if len(boxes) == 0:
        h, w = image_size
        boxes = torch.tensor([[0.0, 0.0, float(w), float(h)]], dtype=boxes.dtype, device=boxes.device)
    if len(boxes) >= n:
        return boxes[:n]
    return boxes.repeat((n + len(boxes) - 1) // len(boxes), 1)[:n]


# -- kinds ---------------------------------------------------------------------------------------------------------
def _check(spec) -> None:
    """Rules between the parts: the RoI heads need one width at every level, and RGB images."""
    title = components.get("head", spec.head.kind).short_title
    neck = components.get("neck", spec.neck.kind)
    n_out = None if spec.backbone.out_stages is None else len(spec.backbone.out_stages)
    if not (neck.fact("multi_scale") or neck.fact("identity") or neck.fact("uniform_width")):
        fusing = [c.title for c in components.all_components("neck") if c.fact("multi_scale")]
        raise SpecError(f"A {title} head takes a multi-scale neck ({', '.join(fusing[:-1])} or {fusing[-1]}) or "
                        f"none; change the neck from {spec.neck.kind}.")
    if neck.fact("identity") and n_out not in (None, 1):
        raise SpecError(f"Without a neck, {title} takes one backbone stage (its levels must share a width); choose "
                        "one output stage or add an FPN neck.")
    if spec.input.channels != 3:
        raise SpecError(f"{title} normalises RGB images; set input.channels to 3.")


def _cost(masks: bool):
    def cost(settings: dict, levels: list) -> tuple:
        # RPN conv, 2×1024 box MLP on 7×7 RoIs, predictors; 1000 proposals at inference
        c = levels[-1][0]
        n = settings["num_classes"] + 1
        params = 9 * c * c + 15 * c + 49 * c * 1024 + 1024 * 1024 + 5 * 1024 * n
        acts = sum(lc * lh * lw for lc, lh, lw in levels) + settings.get("proposals", 1000) * (49 * c + 2048)
        if masks:  # four 3×3 convs of 256, a 2×2 up-convolution, a 1×1 predictor; one per detection
            params += 9 * 256 * (c + 3 * 256) + 4 * 256 * 256 + 256 * n
            acts += settings.get("detections", 100) * (196 * (c + 5 * 256) + 784 * (256 + n))
        return params, acts
    return cost


def _builder(name: str, masks: bool):
    def build(in_channels, *, input_size, strides, levels, num_classes, proposals=1000, detections=100, **_):
        widths = set(in_channels)
        if len(widths) != 1:
            raise ValueError(f"{name} needs every level at one width; add an FPN neck or choose one stage.")
        return RCNNHead(widths.pop(), list(levels), list(strides), tuple(input_size), num_classes, masks=masks,
                        proposals=proposals, detections=detections)
    return build


def _declare(name: str, title: str, order: int, masks: bool, description: str) -> None:
    register("head", name, title=title, tasks=("detection",), order=order, build=_builder(name, masks),
             model=TwoStageDetector, check=_check, estimate=_cost(masks),
             # three stages through a neck; without one its levels must share a width, so one
             default_levels=lambda spec: 1 if components.get("neck", spec.neck.kind).fact("identity") else 3,
             settings=(Setting("num_classes", "int", 20, 1, MAX_CLASSES,
                               help="Object classes (the head adds a background class)."),
                       Setting("proposals", "int", 1000, 1, MAX_PROPOSALS, label="Proposals per image",
                               help="Region proposals kept after the RPN's NMS at inference (torchvision's "
                                    "rpn_post_nms_top_n_test). The box head runs once per proposal: its MACs "
                                    "are counted for exactly this many."),
                       Setting("detections", "int", 100, 1, MAX_DETECTIONS, label="Detections per image",
                               help="Detections kept per image (box_detections_per_img)"
                                    + ("; the mask head runs once per detection: its MACs are counted for "
                                       "exactly this many." if masks else "."))),
             # torchvision's labels count the background as class 0
             facts={"two_stage": True, "label_offset": 1}, description=description)(RCNNHead)


_declare("faster_rcnn", "Faster R-CNN", 50, False,
         "torchvision's region proposal network and RoI heads after the backbone and neck (two stages).")
_declare("mask_rcnn", "Mask R-CNN", 60, True, "Faster R-CNN plus a mask branch: a 28×28 mask per detection.")
