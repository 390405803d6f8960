"""Pictures of predictions: a top-k bar chart, boxes drawn on the image, a segmentation mask with its legend.

Plain arrays and plotly figures (no streamlit), so pages stay layout only and tests can check the pixels.
"""
from __future__ import annotations

import colorsys

import numpy as np
import plotly.graph_objects as go
import torch
from PIL import Image, ImageDraw

from .receptive_field import rgb_uint8

__all__ = ["palette", "top_k_figure", "draw_detections", "mask_overlay", "similarity_figure"]


def palette(n: int) -> list[tuple[int, int, int]]:
    """``n`` distinct colours (golden-ratio hues; full saturation so they read on a projector)."""
    out = []
    for i in range(n):
        r, g, b = colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.85, 0.95)
        out.append((round(r * 255), round(g * 255), round(b * 255)))
    return out


def hex_color(rgb: tuple[int, int, int]) -> str:
    return "#%02x%02x%02x" % tuple(rgb)


def top_k_figure(top: list[tuple[int, str, float]], truth: str | None = None) -> go.Figure:
    """Horizontal bars of the top-k softmax probabilities, best at the top; the true class (if known) green."""
    labels = [f"{label}" for _, label, _ in top][::-1]
    probs = [p for _, _, p in top][::-1]
    colors = ["#2ca02c" if truth is not None and label == truth else "#1f77b4" for label in labels]
    fig = go.Figure(go.Bar(x=probs, y=labels, orientation="h", marker_color=colors,
                           text=[f"{p:.1%}" for p in probs], textposition="auto",
                           hovertemplate="%{y}: %{x:.2%}<extra></extra>"))
    fig.update_layout(height=40 + 34 * len(top), margin=dict(l=10, r=10, t=10, b=30),
                      xaxis=dict(range=[0, 1], tickformat=".0%", title="softmax probability"),
                      yaxis=dict(automargin=True, type="category"))  # "0"…"9" are names, not numbers
    return fig


def draw_detections(image, detection: dict, labels: list[str] | None = None, width: int = 2,
                    max_boxes: int = 30) -> np.ndarray:
    """Boxes (x1, y1, x2, y2 in the image's pixels), each with "label score" above it, in the class's colour;
    the ``max_boxes`` highest-scoring ones (more only clutter the picture; the page lists them all)."""
    picture = Image.fromarray(rgb_uint8(image))
    draw = ImageDraw.Draw(picture)
    scores = [float(v) for v in detection["scores"]]
    order = sorted(range(len(scores)), key=lambda i: -scores[i])[:max_boxes][::-1]  # best drawn last, on top
    boxes = detection["boxes"].tolist() if len(detection["boxes"]) else []
    classes = [int(c) for c in detection["labels"]]
    colors = palette(max(classes, default=0) + 1)
    for (x1, y1, x2, y2), c, s in ((boxes[i], classes[i], scores[i]) for i in order):
        color = colors[c]
        draw.rectangle([x1, y1, x2, y2], outline=color, width=width)
        name = labels[c] if labels and c < len(labels) else f"class {c}"
        text = f"{name} {s:.2f}"
        left, top, right, bottom = draw.textbbox((x1, y1), text)
        lift = bottom - top + 2
        draw.rectangle([x1, y1 - lift, x1 + (right - left) + 4, y1], fill=color)
        draw.text((x1 + 2, y1 - lift), text, fill=(0, 0, 0))
    return np.asarray(picture)


def mask_overlay(image, mask: torch.Tensor | np.ndarray, opacity: float = 0.5,
                 labels: list[str] | None = None) -> tuple[np.ndarray, list[dict]]:
    """The image with each pixel tinted by its class, and the legend: per class present (most pixels first)
    its index, name, colour and fraction of the image."""
    a = rgb_uint8(image).astype(np.float32)
    m = np.asarray(mask, dtype=np.int64)
    if m.shape != a.shape[:2]:
        m = np.asarray(Image.fromarray(m.astype(np.int32)).resize((a.shape[1], a.shape[0]), Image.NEAREST))
    n = int(m.max()) + 1 if m.size else 1
    colors = np.array(palette(n), dtype=np.float32)
    tinted = (1 - opacity) * a + opacity * colors[m]
    counts = np.bincount(m.ravel(), minlength=n)
    legend = [dict(index=int(c), name=labels[c] if labels and c < len(labels) else f"class {c}",
                   color=hex_color(tuple(int(v) for v in colors[c])), fraction=float(counts[c] / m.size))
              for c in np.argsort(-counts) if counts[c] > 0]
    return np.round(tinted).clip(0, 255).astype(np.uint8), legend


def similarity_figure(similarity: torch.Tensor, names: list[str]) -> go.Figure:
    """The cosine similarity matrix of the images' embeddings as an annotated heatmap (−1 … 1)."""
    s = similarity.detach().float().cpu().numpy()
    fig = go.Figure(go.Heatmap(z=s, x=names, y=names, zmin=-1, zmax=1, colorscale="RdBu", reversescale=True,
                               text=[[f"{v:.3f}" for v in row] for row in s], texttemplate="%{text}",
                               hovertemplate="%{y} · %{x}: %{z:.3f}<extra></extra>"))
    fig.update_layout(height=120 + 50 * len(names), margin=dict(l=10, r=10, t=10, b=10),
                      yaxis=dict(autorange="reversed"))
    return fig
