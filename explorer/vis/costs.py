"""Where an architecture's parameters, memory and MACs go, layer by layer and cumulatively (plotly figures)."""
from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..analysis import Analysis

CUMULATIVE_TICKS = (0, 20, 40, 60, 80, 100)  # percent, on the cumulative-share axis
METRICS = {
    "parameters": (lambda r: r.params, "parameters"),
    "activation memory": (lambda r: r.activations if r.counted else 0, "activations (values)"),
    "MACs": (lambda r: r.macs, "MACs"),
}


def cost_figure(a: Analysis, metric: str, min_share: float = 0.0) -> go.Figure:
    """Bars per layer (rows that carry some of ``metric``) and the cumulative share as a line (right axis).

    For vgg16 this is the lecture's picture: memory is spent early (big maps), parameters in the FC layers.
    """
    value, label = METRICS[metric]
    rows = [(r.name, value(r)) for r in a.layers if value(r)]
    total = sum(v for _, v in rows) or 1
    rows = [(n, v) for n, v in rows if v / total >= min_share]
    names = [n for n, _ in rows]
    vals = [v for _, v in rows]
    cum, acc = [], 0
    for v in vals:
        acc += v
        cum.append(100 * acc / total)
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Bar(x=names, y=vals, name=label, marker_color="#4878a8",
                         hovertemplate="%{x}<br>%{y:,}<extra></extra>"), secondary_y=False)
    fig.add_trace(go.Scatter(x=names, y=cum, name="cumulative %", mode="lines+markers", line=dict(color="#d1495b"),
                             hovertemplate="%{x}<br>%{y:.1f} % so far<extra></extra>"), secondary_y=True)
    fig.update_yaxes(title_text=label, secondary_y=False, tickformat=",")
    # Round ticks: left alone, plotly spaces the right axis to line up with the left one's (20.2, 40.5, …).
    fig.update_yaxes(title_text="cumulative share (%)", range=[0, 100.5], secondary_y=True, showgrid=False,
                     tickmode="array", tickvals=CUMULATIVE_TICKS)
    fig.update_layout(height=380, margin=dict(l=10, r=10, t=10, b=10), bargap=0.15,
                      legend=dict(orientation="h", y=1.08, x=0), xaxis=dict(tickangle=-60))
    return fig
