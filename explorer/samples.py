"""Small, offline sample data sets for the explorer.

``digits()`` turns scikit-learn's bundled handwritten digits (1,797 8×8 greyscale images, shipped inside the
package, so nothing is downloaded) into LeNet-5 inputs: upsampled to 32×32 with bilinear interpolation,
scaled to [0, 1] and normalised with mean 0.5 / std 0.5, plus a fixed stratified 80/20 train/test split.

``digits_on_canvas()`` puts the same digits, 24 px high, at a random place on a blank 64×64 canvas (values in
[0, 1], background 0), with the box each digit occupies: the data for the GAP CNN, whose Grad-CAM should find
the digit. ``DIGIT_SETS`` describes both for the pages (size, normalisation, what they are).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["digits", "digits_on_canvas", "place_digits", "canvas_training_digits", "fit_on_canvas", "DigitSet",
           "DIGIT_SETS",
           "DIGITS_MEAN", "DIGITS_STD", "DIGITS_SIZE", "CANVAS_SIZE", "CANVAS_DIGIT_SIZE"]

DIGITS_MEAN = 0.5
DIGITS_STD = 0.5
DIGITS_SIZE = 32
CANVAS_SIZE = 64
CANVAS_DIGIT_SIZE = 24  # 8×8 upsampled 3×: the digit covers 14 % of the canvas


@functools.lru_cache(maxsize=1)
def _bundled() -> tuple[torch.Tensor, np.ndarray]:
    """scikit-learn's digits as N×1×8×8 float32 in [0, 1] and the int64 labels (read once; callers copy)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.from_numpy(np.asarray(bunch.images, dtype=np.float32)) / 16.0
    return images.unsqueeze(1), np.asarray(bunch.target, dtype=np.int64)


def _upsampled(size: int) -> torch.Tensor:
    x = F.interpolate(_bundled()[0], size=(size, size), mode="bilinear", align_corners=False)
    return x.clamp_(0.0, 1.0)


def _split(labels: np.ndarray, seed: int) -> dict:
    from sklearn.model_selection import train_test_split

    train_idx, test_idx = train_test_split(
        np.arange(len(labels)), test_size=0.2, stratify=labels, random_state=seed, shuffle=True
    )
    return {
        "train": torch.from_numpy(np.sort(train_idx).astype(np.int64)),
        "test": torch.from_numpy(np.sort(test_idx).astype(np.int64)),
    }


def digits(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """scikit-learn's digits as ``(x, y, split)``.

    * ``x``: N×1×32×32 float32, each 8×8 image (values 0..16) divided by 16, upsampled bilinearly to 32×32,
      then normalised as ``(x - 0.5) / 0.5`` (so values lie in [-1, 1]).
    * ``y``: N int64 labels 0..9.
    * ``split``: ``{"train": indices, "test": indices}`` (int64 tensors), a stratified 80/20 split made by
      ``sklearn.model_selection.train_test_split(..., stratify=y, random_state=seed)``; the same seed
      always gives the same split.
    """
    _, labels = _bundled()
    x = ((_upsampled(DIGITS_SIZE) - DIGITS_MEAN) / DIGITS_STD).contiguous().to(torch.float32)
    y = torch.from_numpy(labels.copy())
    return x, y, _split(labels, seed)


def place_digits(digits_24: torch.Tensor, corners: torch.Tensor, size: int = CANVAS_SIZE) -> torch.Tensor:
    """Blank ``size``×``size`` canvases (0) with each N×1×h×w digit pasted with its top-left corner at
    ``corners`` (N×2 int64 rows, columns)."""
    n, c, h, w = digits_24.shape
    out = digits_24.new_zeros((n, c, size, size))
    for i, (top, left) in enumerate(corners.tolist()):
        out[i, :, top:top + h, left:left + w] = digits_24[i]
    return out


def digits_on_canvas(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, dict, torch.Tensor]:
    """The digits, 24×24 each, at a random place on a blank 64×64 canvas: ``(x, y, split, boxes)``.

    * ``x``: N×1×64×64 float32 in [0, 1], the background exactly 0 (like the zero padding of the convolutions,
      so the canvas edge looks like more background);
    * ``y``, ``split``: as `digits` (the same stratified 80/20 split for the same seed);
    * ``boxes``: N×4 int64 (top, left, bottom, right), bottom/right exclusive: where each digit was pasted.
      The places are drawn from a generator seeded with ``seed``, so the same seed gives the same canvases.
    """
    _, labels = _bundled()
    small = _upsampled(CANVAS_DIGIT_SIZE)
    generator = torch.Generator().manual_seed(seed)
    corners = torch.randint(0, CANVAS_SIZE - CANVAS_DIGIT_SIZE + 1, (len(labels), 2), generator=generator)
    x = place_digits(small, corners)
    boxes = torch.cat([corners, corners + CANVAS_DIGIT_SIZE], dim=1)
    return x, torch.from_numpy(labels.copy()), _split(labels, seed), boxes


def canvas_training_digits() -> torch.Tensor:
    """The 24×24 digits themselves (N×1×24×24 in [0, 1]), for training with a fresh place in every batch."""
    return _upsampled(CANVAS_DIGIT_SIZE)


def fit_on_canvas(ink: torch.Tensor, threshold: float = 0.25) -> torch.Tensor | None:
    """A photo of one digit (1×1×H×W, light ink on dark, values 0–1) as the canvas digits are made: the ink's
    bounding box (pixels above ``threshold`` of the brightest), padded to a square, resized to 24×24 and placed
    at the centre of a blank 64×64 canvas. None if there is no ink (a blank picture)."""
    grey = ink[0, 0]
    rows, cols = torch.nonzero(grey > threshold * float(grey.max()), as_tuple=True) if grey.max() > 0 else ((), ())
    if len(rows) == 0:
        return None
    top, bottom, left, right = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
    side = max(bottom - top, right - left)
    square = torch.zeros(1, 1, side, side)  # the ink centred in a square, so its shape is not stretched
    r0, c0 = (side - (bottom - top)) // 2, (side - (right - left)) // 2
    square[0, 0, r0:r0 + bottom - top, c0:c0 + right - left] = grey[top:bottom, left:right]
    digit = F.interpolate(square, size=(CANVAS_DIGIT_SIZE, CANVAS_DIGIT_SIZE), mode="bilinear", antialias=True,
                          align_corners=False).clamp(0.0, 1.0)
    corner = (CANVAS_SIZE - CANVAS_DIGIT_SIZE) // 2
    return place_digits(digit, torch.tensor([[corner, corner]]))


@dataclasses.dataclass(frozen=True)
class DigitSet:
    """A digit data set as the pages use it: its loader (``(x, y, split, ...)``), input size and normalisation."""
    name: str
    load: Callable[[], tuple]
    size: int
    mean: float
    std: float
    about: str  # how one held-out sample was made, in a phrase
    on_canvas: bool = False  # an uploaded photo's digit is fitted into 24×24 on the canvas, as the samples are

    def unnormalise(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std + self.mean


DIGIT_SETS: dict[str, DigitSet] = {
    "digits": DigitSet("digits", digits, DIGITS_SIZE, DIGITS_MEAN, DIGITS_STD,
                       "8×8 upsampled to 32×32, normalised with mean 0.5 / std 0.5"),
    "digits_on_canvas": DigitSet("digits_on_canvas", digits_on_canvas, CANVAS_SIZE, 0.0, 1.0,
                                 "8×8 upsampled to 24×24 and placed at random on a blank 64×64 canvas, values 0–1",
                                 on_canvas=True),
}
