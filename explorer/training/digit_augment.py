"""Augmentation for the digit models: the ways a digit a person prints or draws differs from scikit-learn's.

Each image of a batch gets its own stroke width (grown or thinned by up to `stroke` pixels with a max-pool on the
ink, blended so any width in between occurs), size (``scale``, and the width alone by ``aspect``), slant
(``shear``), rotation and position (``shift`` pixels), all drawn from torch's global generator, which
`explorer.training.loop.fit` seeds from (seed, epoch): the same run gives the same batches. The whole batch is
warped at once with one `affine_grid` / `grid_sample`, in pixel space (background 0, ink up to 1), and put back
in the model's normalisation.

Polarity is not augmented: uploads are normalised to light ink on a dark ground before a model sees them
(`explorer.images.digit_preprocess`), so the models never need to read dark ink.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable

import torch
import torch.nn.functional as F

__all__ = ["DigitAugmentation", "make_digit_augment"]


@dataclasses.dataclass(frozen=True)
class DigitAugmentation:
    stroke: float = 1.0  # pixels each side of a stroke may grow (or thin) by, at the input's resolution
    thin_share: float = 0.25  # of the images whose strokes change, the share that are thinned
    scale: tuple[float, float] = (0.85, 1.1)
    aspect: tuple[float, float] = (0.8, 1.2)  # the width's factor on top of ``scale``
    shear: float = 0.3  # horizontal slant, x += shear · y, drawn in ±shear
    rotation: float = 12.0  # degrees, drawn in ±rotation
    shift: float = 2.0  # pixels, drawn in ±shift on each axis

    def describe(self) -> str:
        return (f"stroke width ±{self.stroke:g} px a side (max-pool on the ink), scale {self.scale[0]:g}–"
                f"{self.scale[1]:g}, width ×{self.aspect[0]:g}–{self.aspect[1]:g}, slant ±{self.shear:g}, rotation "
                f"±{self.rotation:g}°, shift ±{self.shift:g} px; polarity normalised at input, not augmented")

    def as_record(self) -> dict:
        return dataclasses.asdict(self) | {"summary": self.describe()}


def _uniform(n: int, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(n)


def _strokes(pixels: torch.Tensor, amount: torch.Tensor, radius: int) -> torch.Tensor:
    """Grow (amount > 0) or thin (amount < 0) each image's ink by up to ``radius`` pixels a side, blending the
    max-pooled (or min-pooled) image with the image by |amount| so widths in between occur too."""
    k = 2 * radius + 1
    grown = F.max_pool2d(pixels, k, 1, radius)
    thinned = -F.max_pool2d(-pixels, k, 1, radius)
    a = amount.view(-1, 1, 1, 1)
    return torch.where(a >= 0, pixels + a * (grown - pixels), pixels + (-a) * (thinned - pixels))


def _affine(pixels: torch.Tensor, aug: DigitAugmentation) -> torch.Tensor:
    n, _, h, w = pixels.shape
    scale = _uniform(n, *aug.scale)
    sx, sy = scale * _uniform(n, *aug.aspect), scale
    shear = _uniform(n, -aug.shear, aug.shear)
    angle = torch.deg2rad(_uniform(n, -aug.rotation, aug.rotation))
    tx, ty = _uniform(n, -aug.shift, aug.shift), _uniform(n, -aug.shift, aug.shift)
    cos, sin = torch.cos(angle), torch.sin(angle)
    # the forward map (digit → picture): rotate · shear · scale, then shift; grid_sample wants its inverse
    a11, a12 = cos * sx, cos * shear * sy - sin * sy
    a21, a22 = sin * sx, sin * shear * sy + cos * sy
    det = a11 * a22 - a12 * a21
    inv = torch.stack([torch.stack([a22, -a12], 1), torch.stack([-a21, a11], 1)], 1) / det.view(-1, 1, 1)
    # shifts in pixels → normalised coordinates ([-1, 1] across the side)
    t = torch.stack([tx * 2 / w, ty * 2 / h], 1)
    theta = torch.cat([inv, -(inv @ t.unsqueeze(2))], 2)
    grid = F.affine_grid(theta, list(pixels.shape), align_corners=False)
    return F.grid_sample(pixels, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def make_digit_augment(aug: DigitAugmentation, mean: float = 0.0, std: float = 1.0) -> Callable[[torch.Tensor],
                                                                                                 torch.Tensor]:
    """A function of a normalised batch (N×1×H×W, ``(pixels - mean) / std``) that augments each digit on its own
    and returns it in the same normalisation."""
    radius = max(1, math.ceil(aug.stroke))

    def apply(batch: torch.Tensor) -> torch.Tensor:
        pixels = (batch * std + mean).clamp(0.0, 1.0)
        n = len(pixels)
        amount = _uniform(n, 0.0, aug.stroke / radius)
        amount = torch.where(torch.rand(n) < aug.thin_share, -amount, amount)
        pixels = _strokes(pixels, amount, radius)
        pixels = _affine(pixels, aug).clamp(0.0, 1.0)
        return (pixels - mean) / std

    return apply
