"""The model zoo: every catalog model with ImageNet metadata, as one table, with filters and a scatter plot.

Pure pandas / plotly (no streamlit): the Zoo page draws what these return, the tests check them directly.
Figures are torchvision's published ones (weights metadata): acc@1 / acc@5 on ImageNet-1K val, parameters,
GMACs at the weights' crop size (GFLOPs = 2 × GMACs).
"""
from __future__ import annotations

import math
from typing import Iterable, Optional

import pandas as pd

from . import catalog

__all__ = ["COLUMNS", "ADVICE", "LANDMARKS", "zoo_frame", "filter_zoo", "pareto_front", "best_within", "scatter_figure"]

# Column order of the zoo table; these are the names the page and the tests use.
COLUMNS = ["model", "family", "year", "acc@1", "acc@5", "params", "GMACs", "GFLOPs", "input", "paper"]

# The lectures' practical advice (LECTURES.md §2), said next to the numbers it is about.
ADVICE = ("**Choosing a backbone:** pick by ImageNet accuracy for your compute budget (the higher up within "
          "your GMACs, the better); prototype with ResNet-18 at a small input; don't pick VGG or AlexNet today "
          "(many parameters and MACs for their accuracy).")


# Models the lectures name, labelled on the scatter so a class can find them among 80 bubbles.
LANDMARKS = ("alexnet", "vgg16", "resnet18", "resnet50", "mobilenet_v3_large", "efficientnet_b0", "convnext_tiny",
             "vit_b_16")
# Readable on white and distinct from each other: D3, then Dark2, then dark extras (21 families).
_PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
            "#17becf", "#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#000080",
            "#800000", "#008080", "#444444"]


def zoo_frame(source: str = "torchvision") -> pd.DataFrame:
    """One row per catalog model that has ImageNet metadata (acc@1 and GMACs), sorted by name."""
    rows = []
    for name in catalog.names(source):
        mi = catalog.info(name)
        if mi.acc1 is None or mi.gmacs is None:
            continue  # the classic models have no published weights, so no ImageNet figures
        rows.append({
            "model": name, "family": mi.family, "year": mi.year, "acc@1": mi.acc1, "acc@5": mi.acc5,
            "params": mi.num_params, "GMACs": mi.gmacs, "GFLOPs": mi.gflops, "input": mi.input_size[-1],
            "paper": mi.paper,
        })
    df = pd.DataFrame.from_records(rows, columns=COLUMNS)
    return df.astype({"year": "int64", "params": "int64", "input": "int64"})


def filter_zoo(df: pd.DataFrame, families: Optional[Iterable[str]] = None,
               years: Optional[tuple[int, int]] = None, max_gmacs: Optional[float] = None,
               max_params: Optional[int] = None) -> pd.DataFrame:
    """Rows that pass every filter given (``None`` or an empty family list means "no limit")."""
    keep = pd.Series(True, index=df.index)
    families = list(families or [])
    if families:
        keep &= df["family"].isin(families)
    if years is not None:
        keep &= df["year"].between(int(years[0]), int(years[1]))
    if max_gmacs is not None:
        keep &= df["GMACs"] <= max_gmacs
    if max_params is not None:
        keep &= df["params"] <= max_params
    return df[keep]


def pareto_front(df: pd.DataFrame) -> pd.Series:
    """True for the models no other model beats on accuracy at the same or lower GMACs: the best accuracy for
    each compute budget. Aligned with ``df``'s index."""
    on_front = pd.Series(False, index=df.index)
    best = float("-inf")
    for idx, row in df.sort_values(["GMACs", "acc@1"], ascending=[True, False]).iterrows():
        if row["acc@1"] > best:
            on_front[idx] = True
            best = row["acc@1"]
    return on_front


def best_within(df: pd.DataFrame, max_gmacs: float) -> Optional[str]:
    """The most accurate model within ``max_gmacs`` (None if nothing fits)."""
    fits = df[df["GMACs"] <= max_gmacs]
    return None if fits.empty else str(fits.loc[fits["acc@1"].idxmax(), "model"])


def scatter_figure(df: pd.DataFrame, selected: Optional[str] = None, height: int = 620):
    """Accuracy against compute: x = GMACs (log axis), y = ImageNet acc@1, bubble area ∝ parameters, colour =
    family. The accuracy-for-compute frontier is drawn as a line; ``selected`` gets a ring and its name."""
    import plotly.graph_objects as go

    # Families in the order of their papers, one colour each. Circles only, so bubble area stays comparable.
    families = list(df.sort_values(["year", "family"])["family"].drop_duplicates())
    colours = {f: _PALETTE[i % len(_PALETTE)] for i, f in enumerate(families)}
    fig = go.Figure()
    size_ref = 2.0 * max(int(df["params"].max()) if len(df) else 1, 1) / 46 ** 2  # largest bubble ≈ 46 px

    front = df[pareto_front(df)].sort_values("GMACs") if len(df) else df
    if len(front) > 1:
        fig.add_trace(go.Scatter(
            x=front["GMACs"], y=front["acc@1"], mode="lines", line=dict(color="#9aa0a6", dash="dot", width=1.5),
            name="best acc@1 for the GMACs", hoverinfo="skip", legendrank=1))

    for fam in families:
        part = df[df["family"] == fam]
        custom = list(zip(part["model"], part["params"].map("{:,}".format), part["acc@5"], part["year"],
                          part["family"]))
        fig.add_trace(go.Scatter(
            x=part["GMACs"], y=part["acc@1"], mode="markers", name=fam, customdata=custom,
            marker=dict(size=part["params"], sizemode="area", sizeref=size_ref, sizemin=5,
                        color=colours[fam], opacity=0.8, line=dict(color="white", width=1)),
            hovertemplate=("<b>%{customdata[0]}</b> (%{customdata[4]}, %{customdata[3]})<br>"
                           "params %{customdata[1]}<br>GMACs %{x:,.2f}<br>"
                           "acc@1 %{y:.2f} %  ·  acc@5 %{customdata[2]:.2f} %<extra></extra>"),
            legendrank=10))

    for name in LANDMARKS:
        if name == selected or name not in set(df["model"]):
            continue
        row = df[df["model"] == name].iloc[0]
        fig.add_annotation(x=math.log10(row["GMACs"]), y=row["acc@1"], text=name, showarrow=False,
                           xanchor="left", xshift=8, yshift=-8, font=dict(size=12, color="#5f6368"))

    if selected is not None and selected in set(df["model"]):
        row = df[df["model"] == selected].iloc[0]
        fig.add_trace(go.Scatter(
            x=[row["GMACs"]], y=[row["acc@1"]], mode="markers+text", text=[f"<b>{selected}</b>"],
            textposition="top center", textfont=dict(size=15, color="#202124"),
            marker=dict(size=26, color="rgba(0,0,0,0)", line=dict(color="#d93025", width=3)),
            name="selected", hoverinfo="skip", showlegend=False))

    fig.update_layout(
        height=height, margin=dict(l=10, r=10, t=30, b=10), font=dict(size=15),
        # The legend sits right of the plot area, never on top of a point.
        legend=dict(x=1.01, y=1, xanchor="left", yanchor="top", title=dict(text="family"),
                    itemsizing="constant", font=dict(size=13)),
        hoverlabel=dict(font_size=14),
    )
    ticks = [0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]
    fig.update_xaxes(type="log", title_text="GMACs per image (log scale; GFLOPs = 2 × GMACs)",
                     tickvals=ticks, ticktext=[f"{t:g}" for t in ticks], showgrid=True, gridcolor="#e8eaed")
    fig.update_yaxes(title_text="ImageNet-1K top-1 accuracy (%)", showgrid=True, gridcolor="#e8eaed")
    return fig
