"""Small, offline sample data sets for the explorer.

``digits()`` turns scikit-learn's bundled handwritten digits (1,797 8×8 greyscale images, shipped inside the
package, so nothing is downloaded) into LeNet-5 inputs: upsampled to 32×32 with bilinear interpolation,
scaled to [0, 1] and normalised with mean 0.5 / std 0.5, plus a fixed stratified 80/20 train/test split.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["digits", "DIGITS_MEAN", "DIGITS_STD", "DIGITS_SIZE"]

DIGITS_MEAN = 0.5
DIGITS_STD = 0.5
DIGITS_SIZE = 32


def digits(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """scikit-learn's digits as ``(x, y, split)``.

    * ``x``: N×1×32×32 float32, each 8×8 image (values 0..16) divided by 16, upsampled bilinearly to 32×32,
      then normalised as ``(x - 0.5) / 0.5`` (so values lie in [-1, 1]).
    * ``y``: N int64 labels 0..9.
    * ``split``: ``{"train": indices, "test": indices}`` (int64 tensors), a stratified 80/20 split made by
      ``sklearn.model_selection.train_test_split(..., stratify=y, random_state=seed)``; the same seed
      always gives the same split.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = torch.from_numpy(np.asarray(bunch.images, dtype=np.float32)) / 16.0  # N×8×8 in [0, 1]
    x = F.interpolate(images.unsqueeze(1), size=(DIGITS_SIZE, DIGITS_SIZE), mode="bilinear", align_corners=False)
    x = x.clamp_(0.0, 1.0)
    x = ((x - DIGITS_MEAN) / DIGITS_STD).contiguous().to(torch.float32)
    labels = np.asarray(bunch.target, dtype=np.int64)
    y = torch.from_numpy(labels.copy())

    train_idx, test_idx = train_test_split(
        np.arange(len(labels)), test_size=0.2, stratify=labels, random_state=seed, shuffle=True
    )
    split = {
        "train": torch.from_numpy(np.sort(train_idx).astype(np.int64)),
        "test": torch.from_numpy(np.sort(test_idx).astype(np.int64)),
    }
    return x, y, split
