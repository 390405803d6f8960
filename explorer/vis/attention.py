"""Charts of attention gates (from `explorer.vis.attribution.attention_maps`): one block's channel weights as
bars, and every block's channel weights at once as a heatmap (block × channel), as the SE lecture draws them."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

__all__ = ["channel_weights_figure", "gates_overview_figure"]


def channel_weights_figure(weights, title: str = "") -> go.Figure:
    """Bars: the gate (0…1) each channel is multiplied by."""
    w = np.asarray(weights, dtype=np.float64).ravel()
    fig = go.Figure(go.Bar(x=np.arange(len(w)), y=w, marker_color="#1f77b4",
                           hovertemplate="channel %{x}: %{y:.3f}<extra></extra>"))
    fig.update_layout(height=260, margin=dict(l=10, r=10, t=30 if title else 10, b=30), title=title or None,
                      xaxis=dict(title="channel"), yaxis=dict(title="weight", range=[0, 1]), bargap=0.05)
    return fig


def gates_overview_figure(entries: list) -> go.Figure | None:
    """Heatmap: one row per attention block with channel weights, channels along x (blocks of different width
    leave the rest blank). None when no block has channel weights."""
    rows = [(e.path, np.asarray(e.channel, dtype=np.float64).ravel()) for e in entries
            if e.channel is not None]
    if not rows:
        return None
    width = max(len(w) for _, w in rows)
    z = np.full((len(rows), width), np.nan)
    for i, (_, w) in enumerate(rows):
        z[i, :len(w)] = w
    fig = go.Figure(go.Heatmap(z=z, y=[p for p, _ in rows], zmin=0, zmax=1, colorscale="Viridis",
                               colorbar=dict(title="weight"),
                               hovertemplate="%{y} · channel %{x}: %{z:.3f}<extra></extra>"))
    fig.update_layout(height=120 + 28 * len(rows), margin=dict(l=10, r=10, t=10, b=30),
                      xaxis=dict(title="channel"), yaxis=dict(autorange="reversed", automargin=True))
    return fig
