"""Make the 40 people's digits in tests/data/people_digits/ (run once; the PNG files are committed).

Digits as a person would upload them to Predict, 4 of each digit 0–9: two printed in a common font (Liberation
Sans, Liberation Serif, DejaVu Sans Bold, in turn) and two drawn with a thick round pen along a handwriting-like
skeleton (stroke 8–14 % of the digit's height, slanted a little), in both polarities (dark ink on light paper and
light ink on a dark ground), on RGB pictures 64–300 px a side, not square, the digit off centre with a margin.
The file name says what it is: ``<digit>_<font or pen>_<polarity>.png``. A held-out test set: nothing trains on
these fonts or strokes.

    .venv/bin/python tests/data/make_people_digits.py
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

OUT = Path(__file__).resolve().parent / "people_digits"
FONT_DIR = Path("/usr/share/fonts/truetype")
FONTS = {
    "liberation-sans": FONT_DIR / "liberation" / "LiberationSans-Regular.ttf",
    "liberation-serif": FONT_DIR / "liberation" / "LiberationSerif-Regular.ttf",
    "dejavu-sans-bold": FONT_DIR / "dejavu" / "DejaVuSans-Bold.ttf",
}


def _arc(cx, cy, rx, ry, start, end, n=24):
    """Points on an ellipse from angle ``start`` to ``end`` (degrees, counter-clockwise positive, y down)."""
    return [(cx + rx * math.cos(math.radians(a)), cy - ry * math.sin(math.radians(a)))
            for a in np.linspace(start, end, n)]


# Each digit's strokes in a unit box (x right, y down), two ways of writing it.
SKELETONS = {
    0: [[_arc(0.5, 0.5, 0.4, 0.5, 95, 95 + 365, 40)], [_arc(0.5, 0.5, 0.36, 0.48, 80, 80 - 370, 40)]],
    1: [[[(0.22, 0.28), (0.58, 0.0), (0.58, 1.0)]], [[(0.4, 0.12), (0.55, 0.0), (0.52, 1.0)]]],
    2: [[_arc(0.5, 0.3, 0.38, 0.3, 160, -20) + [(0.08, 1.0), (0.95, 1.0)]],
        [_arc(0.48, 0.28, 0.36, 0.28, 170, -35) + [(0.12, 0.98), (0.9, 0.96)]]],
    3: [[_arc(0.48, 0.26, 0.34, 0.26, 150, -90) + _arc(0.48, 0.76, 0.4, 0.24, 90, -155)],
        [[(0.12, 0.02), (0.85, 0.02), (0.42, 0.42)] + _arc(0.5, 0.7, 0.38, 0.3, 100, -160)]],
    4: [[[(0.68, 1.0), (0.68, 0.0), (0.06, 0.7), (0.95, 0.7)]],
        [[(0.2, 0.0), (0.12, 0.62), (0.92, 0.62)], [(0.7, 0.22), (0.7, 1.0)]]],
    5: [[[(0.88, 0.0), (0.25, 0.0), (0.18, 0.45)] + _arc(0.5, 0.7, 0.38, 0.3, 150, -160)],
        [[(0.22, 0.02), (0.16, 0.46)] + _arc(0.5, 0.7, 0.38, 0.3, 140, -165), [(0.22, 0.02), (0.86, 0.0)]]],
    6: [[_arc(0.75, 0.55, 0.6, 0.55, 85, 175, 12) + _arc(0.5, 0.72, 0.32, 0.28, 180, 180 - 360, 30)],
        [[(0.72, 0.0), (0.3, 0.35)] + _arc(0.5, 0.7, 0.34, 0.3, 200, 200 - 370, 30)]],
    7: [[[(0.05, 0.02), (0.92, 0.0), (0.38, 1.0)]],
        [[(0.08, 0.05), (0.9, 0.02), (0.45, 1.0)], [(0.3, 0.52), (0.82, 0.5)]]],
    8: [[_arc(0.5, 0.25, 0.28, 0.25, -90, 270, 30) + _arc(0.5, 0.75, 0.36, 0.25, 90, 450, 30)],
        [_arc(0.5, 0.26, 0.32, 0.26, -60, 300, 30) + _arc(0.5, 0.76, 0.38, 0.24, 90, -270, 30)]],
    9: [[_arc(0.48, 0.3, 0.36, 0.3, 0, 360, 30) + [(0.84, 0.3), (0.72, 1.0)]],
        [_arc(0.5, 0.28, 0.34, 0.28, -10, 360, 30) + [(0.82, 0.5), (0.8, 1.0)]]],
}


def _colours(rng, dark_on_light: bool):
    paper = tuple(int(v) for v in rng.integers(215, 252, 3))
    ink = tuple(int(v) for v in rng.integers(10, 70, 3))
    return (ink, paper) if dark_on_light else (paper[::-1], ink[::-1])


def _canvas(rng):
    w, h = int(rng.integers(64, 301)), int(rng.integers(64, 301))
    while abs(w - h) < 12:  # never square
        w = int(rng.integers(64, 301))
    return w, h


def _place(rng, size, box_w, box_h):
    """Top-left corner of a ``box_w``×``box_h`` digit off centre with a margin of at least 6 % of the side."""
    w, h = size
    mx, my = max(2, int(0.06 * w)), max(2, int(0.06 * h))
    x = int(rng.integers(mx, max(mx + 1, w - box_w - mx + 1)))
    y = int(rng.integers(my, max(my + 1, h - box_h - my + 1)))
    return x, y


def printed(digit: int, font: str, dark_on_light: bool, rng) -> Image.Image:
    size = _canvas(rng)
    ink, paper = _colours(rng, dark_on_light)
    image = Image.new("RGB", size, paper)
    target = rng.uniform(0.45, 0.75) * min(size[1], size[0] * 1.4)  # the digit's height in pixels
    ttf = ImageFont.truetype(str(FONTS[font]), 100)
    left, top, right, bottom = ttf.getbbox(str(digit))
    ttf = ImageFont.truetype(str(FONTS[font]), max(8, int(100 * target / (bottom - top))))
    left, top, right, bottom = ttf.getbbox(str(digit))
    x, y = _place(rng, size, right - left, bottom - top)
    ImageDraw.Draw(image).text((x - left, y - top), str(digit), font=ttf, fill=ink)
    return image


def drawn(digit: int, variant: int, dark_on_light: bool, rng) -> Image.Image:
    size = _canvas(rng)
    ink, paper = _colours(rng, dark_on_light)
    h = rng.uniform(0.5, 0.78) * min(size[1], size[0] * 1.5)
    w = h * rng.uniform(0.55, 0.7)
    pen = rng.uniform(0.08, 0.14) * h
    slant = rng.uniform(0.08, 0.22)  # to the right, as most people write
    box_w, box_h = int(w + slant * h + pen), int(h + pen)
    x0, y0 = _place(rng, size, box_w, box_h)
    scale = 4  # drawn large and reduced: smooth edges, as a photo or a scan has
    big = Image.new("L", (size[0] * scale, size[1] * scale), 0)
    draw = ImageDraw.Draw(big)
    for stroke in SKELETONS[digit][variant]:
        wobble = rng.normal(0, 0.015, (len(stroke), 2))
        pts = [((x0 + pen / 2 + (px + dx) * w + slant * (1 - py) * h) * scale,
                (y0 + pen / 2 + (py + dy) * h) * scale) for (px, py), (dx, dy) in zip(stroke, wobble)]
        r = pen * scale / 2
        draw.line(pts, fill=255, width=int(pen * scale), joint="curve")
        for px, py in (pts[0], pts[-1]):
            draw.ellipse((px - r, py - r, px + r, py + r), fill=255)  # a round brush's ends
    mask = big.resize(size, Image.LANCZOS).filter(ImageFilter.GaussianBlur(0.6))
    return Image.composite(Image.new("RGB", size, ink), Image.new("RGB", size, paper), mask)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(13)
    fonts = list(FONTS)
    for digit in range(10):
        polarity = digit % 2 == 0  # half the digits start dark on light, half light on dark
        items = [
            (fonts[digit % 3], printed(digit, fonts[digit % 3], polarity, rng), polarity),
            (fonts[(digit + 1) % 3], printed(digit, fonts[(digit + 1) % 3], not polarity, rng), not polarity),
            ("pen", drawn(digit, 0, not polarity, rng), not polarity),
            ("pen-2", drawn(digit, 1, polarity, rng), polarity),
        ]
        for kind, image, dark in items:
            image.save(OUT / f"{digit}_{kind}_{'dark-on-light' if dark else 'light-on-dark'}.png")
    print(f"wrote {len(list(OUT.glob('*.png')))} files to {OUT}")


if __name__ == "__main__":
    main()
