"""The per-layer and per-stage tables as a person reads them: separators, "64×224×224", "global (212)".

Numbers stay numbers (so a column still sorts numerically) and get their separators from ``column_config``
(printf "%,d", which unlike "localized" does not depend on the viewer's browser locale).
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from ..analysis import Analysis
from ..fields import fmt_range
from .format import fmt_int, fmt_pair, fmt_rf, fmt_shape

__all__ = ["layer_table", "stage_table", "stage_frame", "LAYER_EXTRAS", "LAYER_EXTRAS_DEFAULT", "part_rows",
           "level_rows", "PARTS"]

PARTS = ("backbone", "neck", "head")  # the three parts of a composed model (explorer.compose)

_INT = "%,d"
_ROW_PX = 35  # st.dataframe's default row height


def _fit_widths(df: pd.DataFrame, config: dict, caps: dict) -> None:
    """Size number and text columns to their longest cell or header (text up to ``caps`` pixels).

    Left to itself the grid sizes columns from the first rows only (cutting "layer1.0.downsample.0") and
    squeezes number columns when the table is wider than the page, clipping the leading digits of right-aligned
    figures ("524,391,936" drawn as "91,936").
    """
    for col, cfg in config.items():
        kind = cfg.get("type_config", {}).get("type")
        if col not in df.columns or cfg.get("width") is not None or kind not in ("number", "text"):
            continue
        fmt = cfg["type_config"].get("format")
        texts = [f"{v:,}" if fmt == _INT else str(v) for v in df[col]]
        px = max(_text_px(t) for t in [cfg.get("label") or col] + texts) + 20  # + cell padding
        cfg["width"] = min(px, caps[col]) if col in caps else px


def _text_px(text: str) -> int:
    """Rough width in the grid's 14 px Source Sans: digits and × are wider than the average letter, , and . narrower."""
    return round(sum(7.2 if c.isdigit() or c == "×" else 3.5 if c in ",.:;()# " else 6.6 for c in text))


def _height(rows: int, max_rows: int) -> int:
    # Header plus the rows, up to max_rows; longer tables scroll inside the frame.
    return _ROW_PX * (min(rows, max_rows) + 1) + 3


# Columns a person can add to the layer table (label -> frame columns). The rest are always shown. Together they
# do not fit a 1400 px projector beside a deep model's long layer names, so only two are on by default; every
# column is in the CSV / Markdown / JSON downloads either way.
LAYER_EXTRAS = {"weights": ["weights"], "biases": ["biases"], "FLOPs": ["FLOPs"], "jump": ["jump"],
                "centre": ["offset"], "trainable / frozen": ["trainable", "frozen"]}
LAYER_EXTRAS_DEFAULT = ("biases", "jump")
_LAYER_ORDER = ["layer", "kind", "output", "activations", "counted", "weights", "biases", "params", "trainable",
                "frozen", "MACs", "FLOPs", "rf", "jump", "offset"]
_LAYER_ALWAYS = {"layer", "kind", "output", "activations", "counted", "params", "MACs", "rf"}


def layer_table(a: Analysis, biases: bool = True, extras=LAYER_EXTRAS_DEFAULT, max_rows: int = 40,
                key: str | None = None) -> pd.DataFrame:
    """Draw ``a.to_frame()`` (the always-shown columns plus the ``extras`` chosen) and return the frame."""
    df = a.to_frame(biases=biases)
    # "global (212)" where the field is global, with the convolutional path's field kept beside it.
    df["rf"] = [fmt_rf(r.rf, r.is_global, rf_range=r.rf_range) for r in a.layers]
    shown = _LAYER_ALWAYS | {c for label in extras for c in LAYER_EXTRAS.get(label, [])}
    cols = [c for c in _LAYER_ORDER if c in shown]
    num = st.column_config.NumberColumn
    config = {
        "layer": st.column_config.TextColumn("layer", help="Module path; “#2” is a second call."),
        "kind": st.column_config.TextColumn("kind"),
        "output": st.column_config.TextColumn("output", help="Output shape per image, C×H×W."),
        "activations": num("activations", format=_INT, help="Output values per image."),
        "counted": st.column_config.CheckboxColumn(
            "in sum", help="Counts in the lecture's activation memory: the input and every conv / pool / fc "
                           "output (ReLU, BatchNorm and a pool that changes nothing do not)."),
        "weights": num("weights", format=_INT),
        "biases": num("biases", format=_INT),
        "params": num("params" if biases else "params (no biases)", format=_INT,
                      help="weights + biases" if biases else "weights only: biases not counted"),
        "trainable": num("trainable", format=_INT),
        "frozen": num("frozen", format=_INT),
        "MACs": num("MACs", format=_INT, help="Multiply-accumulates per image; 1 MAC = 2 FLOPs."),
        "FLOPs": num("FLOPs", format=_INT, help="Floating-point operations per image = 2 × MACs."),
        "rf": st.column_config.TextColumn(
            "receptive field", help="Input pixels one output unit sees, per axis. “global (212)”: every input "
                                    "pixel reaches it; 212 is the field of the convolutional path."),
        "jump": st.column_config.TextColumn("jump", help="Effective stride: input pixels between neighbouring "
                                                         "output units."),
        "offset": st.column_config.TextColumn("centre", help="Centre of output unit 0, in input pixels."),
    }
    _fit_widths(df, config, caps={"layer": 300, "kind": 160})
    st.dataframe(df, column_order=cols, column_config=config, hide_index=True, key=key,
                 height=_height(len(df), max_rows))
    return df


def stage_frame(a: Analysis, depth: int = 1, biases: bool = True) -> pd.DataFrame:
    stages = a.stages(depth)
    total_params = sum((s.params if biases else s.weights) for s in stages) or 1
    total_macs = a.macs or 1
    return pd.DataFrame.from_records([{
        "stage": s.name, "kind": s.kind, "output": fmt_shape(s.output_shape), "layers": s.layers,
        "params": s.params if biases else s.weights,
        "share of params": 100 * (s.params if biases else s.weights) / total_params,
        "MACs": s.macs, "share of MACs": 100 * s.macs / total_macs, "FLOPs": s.flops,
        "activations": s.activations, "rf": fmt_rf(s.rf, s.is_global),
    } for s in stages])


def stage_table(a: Analysis, depth: int = 1, biases: bool = True, max_rows: int = 14,
                key: str | None = None) -> pd.DataFrame:
    """Draw the roll-up by module path (``depth`` parts of it) and return the frame drawn."""
    df = stage_frame(a, depth, biases)
    num = st.column_config.NumberColumn
    share = st.column_config.ProgressColumn
    config = {
        "stage": st.column_config.TextColumn("stage"),
        "kind": st.column_config.TextColumn("kind"),
        "output": st.column_config.TextColumn("output", help="Output shape of the stage per image, C×H×W."),
        "layers": num("layers", format=_INT, help="Rows of the layer table in this stage."),
        "params": num("params" if biases else "params (no biases)", format=_INT),
        "share of params": share("share of params", format="%.1f%%", min_value=0, max_value=100),
        "MACs": num("MACs", format=_INT),
        "share of MACs": share("share of MACs", format="%.1f%%", min_value=0, max_value=100),
        "FLOPs": num("FLOPs", format=_INT),
        "activations": num("activations", format=_INT, help="Counted activations (lecture convention) per image."),
        "rf": st.column_config.TextColumn("receptive field", help="At the stage's output; “global (n)” as above."),
    }
    # FLOPs (2 × MACs) and the row count stay in the frame but off screen, so the shares fit beside the counts.
    order = ["stage", "kind", "output", "params", "share of params", "MACs", "share of MACs", "activations", "rf"]
    config["share of params"]["width"] = config["share of MACs"]["width"] = 120
    _fit_widths(df, config, caps={"stage": 300, "kind": 160})
    st.dataframe(df, column_order=order, column_config=config, hide_index=True, key=key,
                 height=_height(len(df), max_rows))
    return df


def part_rows(a: Analysis) -> list:
    """A composition's costs per part (backbone, neck, head), as Compose shows them."""
    parts = [s for s in a.stages() if s.name in PARTS] or a.stages()
    return [{"part": s.name, "params": fmt_int(s.params), "trainable": fmt_int(s.trainable),
             "MACs": fmt_int(s.macs), "activations": fmt_int(s.activations)} for s in parts]


def level_rows(a: Analysis) -> list:
    """The receptive field at each output level: the neck's outputs where there is a neck, else the model's.

    "receptive field (centre unit)" is the field of the level's centre unit; where units differ (after
    upsampling) "over units" gives the range and "which units" says which units see which (e.g. odd / even)."""
    levels = a.output_levels("neck") if "neck" in a.modules else a.output_levels("")
    rows = []
    for l in levels:
        rng = l.get("rf_range")
        rows.append({"level": l["name"], "shape": fmt_shape(l["output_shape"]),
                     "receptive field (centre unit)": fmt_rf(l["rf"], l["is_global"]),
                     "over units": fmt_range(rng) if rng is not None else "same for every unit",
                     "which units": l.get("rf_phases") or "",
                     "jump": fmt_pair(l["jump"])})
    return rows
