"""Receptive fields as a person reads them, in one place (no streamlit): the field formatter every table, download
and CLI line uses, and the growth curve every page plots.

* `fmt_rf((212, 212), True)` → ``"global (212)"``; where units differ (after upsampling)
  `fmt_rf((467, 467), False, rf_range=((435, 467), (435, 467)))` → ``"435–467 × 435–467"``; `fmt_pair((7, 3))` → ``"7×3"``; `fmt_num(Fraction(31, 2))` →
  ``"15.5"``. ``sep=True`` (the pages) writes thousands separators (``"1,027"``); ``sep=False`` (CSV, Markdown,
  JSON, the CLI) plain digits, so the files stay machine-readable.
* `rf_growth(analysis)`: one point per layer call that has a field, in forward order, its size the **larger
  side** of the convolutional-path field (height and width differ for a non-square input or kernel); the
  Receptive fields and Compare pages both plot it.
"""
from __future__ import annotations

from fractions import Fraction
from numbers import Number

__all__ = ["fmt_num", "fmt_pair", "fmt_rf", "fmt_range", "rf_growth", "fmt_bytes"]


def fmt_num(v, sep: bool = True) -> str:
    """A scalar without float noise or Fraction reprs: Fraction(31, 2) -> "15.5", 32.0 -> "32"."""
    if isinstance(v, Fraction):
        v = float(v)
    if isinstance(v, float):
        if abs(v) < 1e6:
            return f"{v:,.6g}" if sep else f"{v:.6g}"
        return f"{v:,.0f}" if sep else f"{v:.0f}"
    if isinstance(v, Number):
        return f"{int(v):,}" if sep else str(int(v))
    return str(v)


def fmt_pair(pair, sep: bool = True) -> str:
    """An (h, w) pair, once when both axes agree: (212, 212) -> "212", (7, 3) -> "7×3"; None -> ""."""
    if pair is None:
        return ""
    a, b = (fmt_num(v, sep) for v in pair)
    return a if a == b else f"{a}×{b}"


def fmt_range(rf_range, sep: bool = True) -> str:
    """The sizes over a tensor's units, per axis: ((435, 467), (435, 467)) -> "435–467 × 435–467"; an axis
    whose units agree once: ((435, 467), (531, 531)) -> "435–467 × 531"; None -> ""."""
    if rf_range is None:
        return ""
    parts = [fmt_num(lo, sep) if lo == hi else f"{fmt_num(lo, sep)}–{fmt_num(hi, sep)}" for lo, hi in rf_range]
    return " × ".join(parts)


def fmt_rf(rf, is_global: bool, sep: bool = True, rf_range=None) -> str:
    """Receptive field: "global (212)" keeps the convolutional-path field beside "global". Where units see
    different sizes (after upsampling: ``rf_range`` from the analysis) the range over units, "435–467 × 435–467",
    instead of the centre unit's size."""
    local = fmt_range(rf_range, sep) if rf_range is not None else fmt_pair(rf, sep)
    if is_global:
        return f"global ({local})" if local else "global"
    return local


def rf_growth(analysis):
    """The growth curve of ``analysis`` as a DataFrame: index (position in ``analysis.layers``, the input is 0),
    layer, kind, size (the larger side, what is plotted), rf_h, rf_w, jump_h, jump_w, is_global, and the hover
    texts rf_text / jump_text."""
    import pandas as pd

    recs = []
    for idx, row in enumerate(analysis.layers):
        if row.rf is None:
            continue
        h, w = (float(v) if isinstance(v, Fraction) else v for v in row.rf)
        jump = row.jump if row.jump is not None else (None, None)
        recs.append({"index": idx, "layer": row.name, "kind": row.kind, "size": max(h, w), "rf_h": h, "rf_w": w,
                     "jump_h": jump[0], "jump_w": jump[1], "is_global": bool(row.is_global),
                     "rf_text": fmt_rf(row.rf, row.is_global, rf_range=row.rf_range),
                     "jump_text": fmt_pair(row.jump)})
    columns = ["index", "layer", "kind", "size", "rf_h", "rf_w", "jump_h", "jump_w", "is_global", "rf_text",
               "jump_text"]
    return pd.DataFrame.from_records(recs, columns=columns)


def fmt_bytes(n: int | None) -> str:
    """Bytes in decimal units (1 MB = 10⁶ bytes), as the slides count: 60950432 -> "60.95 MB"."""
    if n is None:
        return "—"
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:,.2f} {unit}"
    return f"{int(n):,} B"
