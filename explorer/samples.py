"""Small, offline sample data sets for the explorer.

``digits()`` turns scikit-learn's bundled handwritten digits (1,797 8×8 greyscale images, shipped inside the
package, so nothing is downloaded) into LeNet-5 inputs: upsampled to 32×32 with bilinear interpolation,
scaled to [0, 1] and normalised with mean 0.5 / std 0.5, plus a fixed stratified 80/20 train/test split.

``digits_on_canvas()`` puts the same digits, 24 px high, at a random place on a blank 64×64 canvas (values in
[0, 1], background 0), with the box each digit occupies: the data for the GAP CNN, whose Grad-CAM should find
the digit. ``DIGIT_SETS`` describes both for the pages (size, normalisation, what they are).

A picture a person uploads is made into such a digit the way the 8×8 digits were made from their writers' 32×32
bitmaps: `find_ink` (light ink on a dark ground, whatever the picture's polarity), `digit_as_8x8` (the ink's box as
high as a 32×32 box, thin strokes thickened, 4×4 blocks averaged), `upsample_digits`. `printed_digits` makes
digits printed in fonts (other than those the models are tested on) the same way, to train on beside them.
"""
from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["digits", "digits_on_canvas", "place_digits", "canvas_training_digits", "find_ink", "digit_as_8x8",
           "stroke_width", "upsample_digits", "fit_on_canvas", "printed_digits", "render_printed_digits", "save_printed_digits",
           "PRINTED_DIGITS", "TRAINING_FONTS", "DigitSet",
           "DIGIT_SETS",
           "DIGITS_MEAN", "DIGITS_STD", "DIGITS_SIZE", "CANVAS_SIZE", "CANVAS_DIGIT_SIZE"]

DIGITS_MEAN = 0.5
DIGITS_STD = 0.5
DIGITS_SIZE = 32
CANVAS_SIZE = 64
CANVAS_DIGIT_SIZE = 24  # 8×8 upsampled 3×: the digit covers 14 % of the canvas
BITMAP_SIZE = 32  # the UCI digits were 32×32 bitmaps, the digit as high as the bitmap, counted in 4×4 blocks
MIN_INK_CONTRAST = 0.15  # a picture whose pixels stray less than this from its border's grey is blank
STROKE_WIDTH = 5  # px of the 32×32 bitmap: thinner strokes (print, a thin pen) are thickened to about this
INK_FLOOR = 0.1  # ink fainter than this (of the strongest) is paper grain, JPEG noise or uneven light


@functools.lru_cache(maxsize=1)
def _bundled() -> tuple[torch.Tensor, np.ndarray]:
    """scikit-learn's digits as N×1×8×8 float32 in [0, 1] and the int64 labels (read once; callers copy)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.from_numpy(np.asarray(bunch.images, dtype=np.float32)) / 16.0
    return images.unsqueeze(1), np.asarray(bunch.target, dtype=np.int64)


def _upsampled(size: int) -> torch.Tensor:
    return upsample_digits(_bundled()[0], size)


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


def find_ink(grey: torch.Tensor, min_contrast: float = MIN_INK_CONTRAST) -> tuple[torch.Tensor, bool] | None:
    """The ink of a picture of one digit (H×W grey, values 0–1) as the training digits have it: light on a dark
    ground, the ground 0 and the ink's strongest pixels 1; and whether the picture was inverted (dark ink on a
    light ground). The ground is the median of the border; the ink is on the side of it the picture strays
    furthest to. None if nothing strays more than ``min_contrast`` (a blank picture)."""
    border = torch.cat([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    deviation = (grey - border.median()).flatten()
    deviation = deviation[::max(1, deviation.numel() // 1_000_000)]  # a big photo: every k-th pixel is enough
    # the 0.1 % extremes (at most the 20 most extreme pixels: a small digit in a big photo), not the single darkest /
    # brightest pixel: a speck of noise is not the digit
    share = min(0.001, 20 / deviation.numel())
    brighter = float(torch.quantile(deviation, 1 - share)) if deviation.numel() > 1 else float(deviation.max())
    darker = -float(torch.quantile(deviation, share)) if deviation.numel() > 1 else -float(deviation.min())
    if max(brighter, darker) < min_contrast:
        return None
    inverted = darker > brighter
    ink = (grey - border.median()) * (-1.0 if inverted else 1.0) / max(brighter, darker)
    return ((ink - INK_FLOOR) / (1.0 - INK_FLOOR)).clamp(0.0, 1.0), inverted


def stroke_width(bitmap: torch.Tensor) -> float:
    """The mean width in pixels of the strokes on a bitmap (ink above 0.5): twice the ink's area over its
    boundary, as for a band of width w and length L (area wL, boundary 2L)."""
    ink = (bitmap > 0.5).float()
    boundary = ink - (-F.max_pool2d(-ink, 3, 1, 1))  # ink pixels with a background neighbour
    return float(2 * ink.sum() / boundary.sum().clamp_min(1.0))


def digit_as_8x8(ink: torch.Tensor, threshold: float = 0.3) -> tuple[torch.Tensor, int]:
    """A digit's ink (H×W, light on dark, 0–1, as `find_ink` gives it) made the way scikit-learn's 8×8 digits
    were: the ink's bounding box scaled, keeping its shape, to fill the 32×32 bitmap they were counted on (the
    full 32 rows, at most 28 columns, centred); strokes thinner than `STROKE_WIDTH` thickened (a printed or
    thin-pen digit has strokes half as wide as theirs); averaged over 4×4 blocks, the strongest block 1.
    Returns the 1×1×8×8 digit and by how many pixels each side of a stroke grew."""
    rows, cols = torch.nonzero(ink > threshold, as_tuple=True)
    top, bottom, left, right = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
    h, w = bottom - top, right - left
    scale = min(BITMAP_SIZE / h, (BITMAP_SIZE - 4) / w)
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    box = F.interpolate(ink[top:bottom, left:right][None, None], size=(new_h, new_w), mode="bilinear",
                        antialias=True, align_corners=False).clamp(0.0, 1.0)
    bitmap = torch.zeros(1, 1, BITMAP_SIZE, BITMAP_SIZE)
    r0, c0 = (BITMAP_SIZE - new_h) // 2, (BITMAP_SIZE - new_w) // 2
    bitmap[..., r0:r0 + new_h, c0:c0 + new_w] = box
    grow = max(0, round((STROKE_WIDTH - stroke_width(bitmap)) / 2))
    if grow:
        bitmap = F.max_pool2d(bitmap, 2 * grow + 1, 1, grow)
    blocks = F.avg_pool2d(bitmap, BITMAP_SIZE // 8)
    return blocks / blocks.max().clamp_min(1e-6), grow


def upsample_digits(digits_8x8: torch.Tensor, size: int) -> torch.Tensor:
    """N×1×8×8 digits (0–1) at ``size``×``size``, bilinear, as the training digits are made."""
    return F.interpolate(digits_8x8, size=(size, size), mode="bilinear", align_corners=False).clamp(0.0, 1.0)


def fit_on_canvas(digit: torch.Tensor) -> torch.Tensor:
    """A 1×1×24×24 digit (0–1) at the centre of a blank 64×64 canvas: an upload as the GAP CNN is shown it."""
    corner = (CANVAS_SIZE - CANVAS_DIGIT_SIZE) // 2
    return place_digits(digit, torch.tensor([[corner, corner]]))


FONT_DIR = Path("/usr/share/fonts/truetype")
# Printed digits to train on beside the handwritten ones (scikit-learn's writers mostly cross the 7 and put no base
# under the 1): fonts of other designs than the people's digits the models are tested on (Liberation Sans and
# Serif, DejaVu Sans).
TRAINING_FONTS = tuple(FONT_DIR / f for f in (
    "dejavu/DejaVuSerif.ttf", "dejavu/DejaVuSerif-Bold.ttf", "dejavu/DejaVuSerif-Italic.ttf",
    "dejavu/DejaVuSerifCondensed-BoldItalic.ttf", "liberation/LiberationMono-Regular.ttf",
    "liberation/LiberationMono-Bold.ttf", "liberation/LiberationMono-Italic.ttf",
    "liberation/LiberationMono-BoldItalic.ttf"))


PRINTED_DIGITS = Path(__file__).resolve().parents[1] / "assets" / "printed_digits.safetensors"


def render_printed_digits(fonts: tuple[Path, ...] = TRAINING_FONTS) -> tuple[torch.Tensor, torch.Tensor]:
    """The digits 0–9 printed in each of ``fonts`` (white on black, 64 pt on 96×96) and made 8×8 exactly as an upload
    is (`find_ink`, `digit_as_8x8`): ``(x, y)``, N×1×8×8 in [0, 1] and the labels. Raises FileNotFoundError
    naming a font that is not installed."""
    from PIL import Image, ImageDraw, ImageFont

    images, labels = [], []
    for font in fonts:
        if not Path(font).is_file():
            raise FileNotFoundError(f"The font {font} is not installed; install Debian's fonts-dejavu-core, "
                                    "fonts-dejavu-extra and fonts-liberation.")
        ttf = ImageFont.truetype(str(font), 64)
        for digit in range(10):
            picture = Image.new("L", (96, 96), 0)
            left, top, right, bottom = ttf.getbbox(str(digit))
            ImageDraw.Draw(picture).text((48 - (left + right) / 2, 48 - (top + bottom) / 2), str(digit), font=ttf,
                                         fill=255)
            ink, _ = find_ink(torch.from_numpy(np.asarray(picture, dtype=np.float32) / 255.0))
            images.append(digit_as_8x8(ink)[0])
            labels.append(digit)
    return torch.cat(images), torch.tensor(labels, dtype=torch.int64)


@functools.lru_cache(maxsize=1)
def printed_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """`render_printed_digits` of the training fonts, as committed in ``assets/printed_digits.safetensors``: the
    shipped weights' recipes read this file, so they need no font and give the same weights wherever the fonts
    (or their versions) differ. ``python -m explorer.samples`` writes it again from the fonts."""
    from safetensors.torch import load_file

    tensors = load_file(str(PRINTED_DIGITS))
    return tensors["x"], tensors["y"]


def save_printed_digits(path: Path = PRINTED_DIGITS) -> Path:
    from safetensors.torch import save_file

    x, y = render_printed_digits()
    save_file({"x": x.contiguous(), "y": y}, str(path),
              metadata={"fonts": ", ".join(f.name for f in TRAINING_FONTS), "about": "made 8×8 as an upload is"})
    return path


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


if __name__ == "__main__":
    print(f"wrote {save_printed_digits()}")
