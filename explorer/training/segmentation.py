"""Segmentation in the training library: the per-pixel loss, metrics from one confusion matrix, joint image-and-mask
augmentation, and masks as pictures.

Every metric comes from a single C×C confusion matrix of pixel counts (rows: true class, columns: predicted),
summed over all scored pixels of a split, so the numbers can be checked by hand:

* pixel accuracy = trace / sum;
* IoU of class c = TP / (TP + FP + FN) = C[c, c] / (row c + column c - C[c, c]); None for a class that is in
  neither the truth nor the prediction (0 / 0: it is left out of the mean, not counted as 0 or 1);
* mIoU = the mean of the classes' IoU that are not None;
* Dice of class c = 2 TP / (2 TP + FP + FN) (None as for IoU), mean Dice likewise.

Pixels whose mask value is the data set's ``ignore_index`` (the Pets trimaps' border) are neither trained on nor
scored.
"""
from __future__ import annotations

import contextlib
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PALETTE", "IGNORE_COLOUR", "confusion_matrix", "scores", "segmentation_loss", "evaluate_segmentation",
           "image_scores", "colour_mask", "make_joint_augmenter"]

# Class colours as RGB fractions (index = mask value): background black, then colours far apart from each other.
PALETTE = ((0.0, 0.0, 0.0), (0.90, 0.10, 0.10), (0.10, 0.70, 0.20), (0.15, 0.35, 0.95), (0.95, 0.80, 0.10),
           (0.80, 0.20, 0.85), (0.10, 0.85, 0.85), (0.95, 0.50, 0.10), (0.55, 0.35, 0.15), (1.0, 1.0, 1.0))
IGNORE_COLOUR = (0.5, 0.5, 0.5)  # pixels that are not scored (ignore_index) are grey

EVAL_BATCH = 64  # per-pixel logits are C×H×W per image: smaller batches than classification


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                     ignore_index: int | None = None) -> torch.Tensor:
    """C×C int64 pixel counts, rows the true class, columns the predicted one, over every pixel of ``target``
    (any shape, the same as ``pred``'s) that is not ``ignore_index``."""
    pred, target = pred.reshape(-1).long().cpu(), target.reshape(-1).long().cpu()
    keep = (target >= 0) & (target < num_classes)
    if ignore_index is not None:
        keep &= target != ignore_index
    return torch.bincount(target[keep] * num_classes + pred[keep].clamp(0, num_classes - 1),
                          minlength=num_classes ** 2).view(num_classes, num_classes)


def scores(confusion) -> dict:
    """``pixel_accuracy``, ``iou`` and ``dice`` (lists per class, None for a class absent from both truth and
    prediction), ``miou`` and ``mean_dice`` (means over the classes that are not None) of a confusion matrix."""
    c = torch.as_tensor(confusion, dtype=torch.float64)
    tp = c.diagonal()
    truth, predicted = c.sum(1), c.sum(0)
    union = truth + predicted - tp
    total = float(c.sum())
    iou = [None if float(u) == 0 else float(t / u) for t, u in zip(tp, union)]
    dice = [None if float(u) == 0 else float(2 * t / (u + t)) for t, u in zip(tp, union)]
    present = [v for v in iou if v is not None]
    present_dice = [v for v in dice if v is not None]
    return {"pixel_accuracy": float(tp.sum()) / total if total else 0.0,
            "iou": iou, "miou": sum(present) / len(present) if present else 0.0,
            "dice": dice, "mean_dice": sum(present_dice) / len(present_dice) if present_dice else 0.0}


def segmentation_loss(out: torch.Tensor, target: torch.Tensor, ignore_index: int | None = None,
                      label_smoothing: float = 0.0) -> torch.Tensor:
    """Per-pixel cross-entropy of N×C×H×W logits against N×H×W masks, averaged over the pixels that are scored."""
    return F.cross_entropy(out.float(), target, ignore_index=-100 if ignore_index is None else ignore_index,
                           label_smoothing=label_smoothing)


@torch.no_grad()
def evaluate_segmentation(model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int,
                          ignore_index: int | None = None, *, batch_size: int = EVAL_BATCH,
                          autocast=contextlib.nullcontext) -> dict:
    """``loss`` (per-pixel cross-entropy over the scored pixels), the `scores` of the split's one confusion matrix,
    ``confusion`` (C×C list), ``count`` (images) and ``pixels`` (scored pixels) of ``model`` in eval mode."""
    was_training = model.training
    model.eval()
    confusion = torch.zeros((num_classes, num_classes), dtype=torch.int64)
    loss_sum = 0.0
    for start in range(0, len(x), batch_size):
        target = y[start:start + batch_size]
        with autocast():
            out = model(x[start:start + batch_size]).float()
        loss_sum += float(F.cross_entropy(out, target, reduction="sum",
                                          ignore_index=-100 if ignore_index is None else ignore_index))
        confusion += confusion_matrix(out.argmax(1), target, num_classes, ignore_index)
    model.train(was_training)
    pixels = int(confusion.sum())
    return {"loss": loss_sum / max(pixels, 1), **scores(confusion), "confusion": confusion.tolist(),
            "count": len(y), "pixels": pixels}


def image_scores(pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int | None = None) -> dict:
    """The `scores` of one image (its own confusion matrix)."""
    return scores(confusion_matrix(pred, target, num_classes, ignore_index))


def colour_mask(mask, ignore_index: int | None = None) -> np.ndarray:
    """An H×W mask of class indices as an H×W×3 float picture in [0, 1]: `PALETTE` colours, ignored pixels grey."""
    m = torch.as_tensor(mask).long().cpu().numpy()
    palette = np.asarray(PALETTE + (IGNORE_COLOUR,), dtype=np.float32)
    index = np.where((m >= 0) & (m < len(PALETTE)), m, len(PALETTE))  # anything else (the ignore value) grey
    return palette[index]


def make_joint_augmenter(augmentation, mean, std, size: tuple[int, int], ignore_index: int | None = None
                         ) -> Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None:
    """A function of a normalised batch and its masks that changes each image and its mask together
    (torchvision.transforms.v2 on `tv_tensors.Image` / `tv_tensors.Mask`: one set of random parameters per pair,
    the mask resampled nearest): flips, padded crops and rotations move both; colour jitter changes the image only.
    Pixels that a crop or rotation brings in are 0 in the image and ``ignore_index`` in the mask (background 0 when
    the data set has no ignore value), so nothing made up is trained on."""
    if not augmentation.active:
        return None
    from torchvision import tv_tensors
    from torchvision.transforms import InterpolationMode, v2

    fill = {tv_tensors.Image: 0.0, tv_tensors.Mask: 0 if ignore_index is None else ignore_index}
    steps = []
    if augmentation.hflip:
        steps.append(v2.RandomHorizontalFlip())
    if augmentation.crop_padding:
        steps.append(v2.RandomCrop(size, padding=augmentation.crop_padding, fill=fill))
    if augmentation.rotation:
        steps.append(v2.RandomRotation(augmentation.rotation, interpolation=InterpolationMode.BILINEAR, fill=fill))
    if augmentation.color_jitter:  # v2 leaves a Mask as it is under colour transforms
        steps.append(v2.ColorJitter(brightness=augmentation.color_jitter, contrast=augmentation.color_jitter))
    transform = v2.Compose(steps)

    def apply(batch: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c = batch.shape[1]
        m = torch.tensor(mean if len(mean) == c else [sum(mean) / len(mean)] * c, dtype=batch.dtype).view(-1, 1, 1)
        s = torch.tensor(std if len(std) == c else [sum(std) / len(std)] * c, dtype=batch.dtype).view(-1, 1, 1)
        pixels = (batch.cpu() * s + m).clamp_(0.0, 1.0)
        pairs = [transform(tv_tensors.Image(img), tv_tensors.Mask(mask)) for img, mask in zip(pixels, masks.cpu())]
        images = torch.stack([p[0].as_subclass(torch.Tensor) for p in pairs])
        out_masks = torch.stack([p[1].as_subclass(torch.Tensor) for p in pairs])
        return ((images - m) / s).to(batch.device), out_masks.to(masks.device)

    return apply
