"""The offline segmentation set: textured shapes on textured backgrounds, drawn with `skimage.draw`, exact masks.

Each 64×64 colour scene has a striped or checkered background and two to five shapes, each a circle, a square, a
triangle (both turned by a random angle) or a thin ring, of random size, colour and texture (the colour says
nothing about the class: only the outline does). Later shapes cover earlier ones, in the mask too. The mask holds
exactly the pixels `skimage.draw` gave each shape; the picture then gets a slight Gaussian blur and noise. Small
shapes and thin rings are what a decoder without skip connections loses: their outline must pass its bottleneck.
Everything is drawn from ``numpy.random.default_rng(seed)``, so the same seed gives the same bytes.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

__all__ = ["CLASSES", "SIDE", "Placed", "draw", "render", "scene", "generate"]

CLASSES = ("background", "circle", "square", "triangle", "ring")
SIDE = 64


@dataclasses.dataclass(frozen=True)
class Placed:
    """One shape of a scene: its class name, centre (row, column), size (the radius of its circumscribed circle,
    in pixels), angle (radians), RGB colour (0–1) and texture ("plain", "stripes" or "checks")."""
    kind: str
    row: float
    col: float
    size: float
    angle: float = 0.0
    colour: tuple[float, float, float] = (1.0, 1.0, 1.0)
    texture: str = "plain"


def _polygon(p: Placed, corners: int) -> tuple[np.ndarray, np.ndarray]:
    turns = p.angle + np.arange(corners) * 2 * math.pi / corners
    return p.row + p.size * np.sin(turns), p.col + p.size * np.cos(turns)


def draw(p: Placed, side: int = SIDE) -> tuple[np.ndarray, np.ndarray]:
    """The pixels (rows, columns) of shape ``p`` in a side×side picture, as `skimage.draw` gives them."""
    from skimage import draw as skdraw

    shape = (side, side)
    if p.kind == "circle":
        return skdraw.disk((p.row, p.col), p.size, shape=shape)
    if p.kind == "ring":  # an annulus about 2 px wide: thin, so its outline is all there is
        rr, cc = skdraw.disk((p.row, p.col), p.size, shape=shape)
        inside = (rr - p.row) ** 2 + (cc - p.col) ** 2 < (p.size - 2.2) ** 2
        return rr[~inside], cc[~inside]
    if p.kind == "square":
        return skdraw.polygon(*_polygon(p, 4), shape=shape)
    if p.kind == "triangle":
        return skdraw.polygon(*_polygon(p, 3), shape=shape)
    raise ValueError(f"There is no shape called {p.kind!r}; choose one of {', '.join(CLASSES[1:])}.")


def _texture(kind: str, rng: np.random.Generator, side: int) -> np.ndarray:
    """A side×side pattern in [-1, 1]: stripes at a random angle and period, checks, or nothing."""
    if kind == "plain":
        return np.zeros((side, side), dtype=np.float32)
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    period = rng.uniform(3.0, 8.0)
    if kind == "stripes":
        a = rng.uniform(0, math.pi)
        return np.sign(np.sin((yy * math.sin(a) + xx * math.cos(a)) * 2 * math.pi / period)).astype(np.float32)
    return (np.sign(np.sin(yy * 2 * math.pi / period)) * np.sign(np.sin(xx * 2 * math.pi / period))).astype(
        np.float32)


def render(shapes: list[Placed], rng: np.random.Generator, side: int = SIDE, *, noise: float = 0.06,
           blur: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    """(side×side×3 uint8 picture, side×side int64 mask) of ``shapes`` drawn in order on a textured background;
    the mask is exact (each shape's `draw` pixels, later shapes over earlier ones), blur and noise touch the
    picture only."""
    from scipy.ndimage import gaussian_filter

    base = rng.uniform(0.25, 0.75, size=3).astype(np.float32)
    pattern = _texture(rng.choice(["stripes", "checks"]), rng, side)
    picture = np.clip(base[None, None, :] + 0.15 * pattern[..., None], 0, 1)
    mask = np.zeros((side, side), dtype=np.int64)
    for p in shapes:
        rr, cc = draw(p, side)
        fill = np.clip(np.asarray(p.colour, dtype=np.float32)[None, None, :]
                       + 0.2 * _texture(p.texture, rng, side)[..., None], 0, 1)
        picture[rr, cc] = fill[rr, cc]
        mask[rr, cc] = CLASSES.index(p.kind)
    if blur:
        picture = gaussian_filter(picture, sigma=(blur, blur, 0))
    picture = picture + rng.normal(0.0, noise, size=picture.shape).astype(np.float32)
    return (np.clip(picture, 0, 1) * 255).round().astype(np.uint8), mask


def scene(rng: np.random.Generator, side: int = SIDE) -> list[Placed]:
    """Two to five random shapes for one picture (kind, place, size, angle, colour and texture all drawn)."""
    shapes = []
    for _ in range(int(rng.integers(2, 6))):
        kind = CLASSES[1 + int(rng.integers(0, len(CLASSES) - 1))]
        size = float(rng.uniform(4.0, 13.0) if kind != "ring" else rng.uniform(6.0, 13.0))
        row, col = (float(v) for v in rng.uniform(size * 0.6, side - size * 0.6, size=2))
        shapes.append(Placed(kind, row, col, size, float(rng.uniform(0, 2 * math.pi)),
                             tuple(float(v) for v in rng.uniform(0.0, 1.0, size=3)),
                             str(rng.choice(["plain", "stripes", "checks"]))))
    return shapes


def generate(n: int, seed: int = 0, side: int = SIDE) -> tuple[np.ndarray, np.ndarray]:
    """``n`` scenes: (n×side×side×3 uint8 pictures, n×side×side int64 masks), the same for the same seed."""
    rng = np.random.default_rng(seed)
    pictures = np.empty((n, side, side, 3), dtype=np.uint8)
    masks = np.empty((n, side, side), dtype=np.int64)
    for i in range(n):
        pictures[i], masks[i] = render(scene(rng, side), rng, side)
    return pictures, masks
