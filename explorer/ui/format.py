"""How numbers read on screen: thousands separators, decimal MB/GB, shapes as 64×224×224.

Pure functions (no streamlit), so pages, the sidebar and tests format every figure the same way.
"""
from __future__ import annotations

from numbers import Number
from typing import Optional

from ..fields import fmt_bytes, fmt_num, fmt_pair, fmt_rf  # the one field formatter (explorer.fields), re-exported here

__all__ = ["fmt_int", "fmt_bytes", "fmt_count", "fmt_shape", "fmt_pair", "fmt_rf", "fmt_num", "md_escape",
           "fmt_quoted"]

# Characters Streamlit's Markdown would read as formatting ($ starts LaTeX, _ and * emphasis, ...).
_MD_SPECIAL = set("\\`*_{}[]<>#|~$")


def fmt_int(n: Optional[int]) -> str:
    """138357544 -> "138,357,544" (always a comma, whatever the server's locale)."""
    return "—" if n is None else f"{int(n):,}"


def fmt_count(n: Optional[int], unit: str = "") -> str:
    """A big count in G / M / K with two decimals: 15470264320 -> "15.47 G" (the exact figure goes beside it)."""
    if n is None:
        return "—"
    for prefix, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        # Keep G down to 0.1 G so model-zoo figures read like torchvision's GMACs (efficientnet_b0: 0.39 G);
        # below that two decimals of G say too little, so M takes over (mobilenet_v3_small: 56.52 M).
        if n >= scale * (0.1 if prefix == "G" else 1):
            return f"{n / scale:,.2f} {prefix}{unit}"
    return f"{int(n):,} {unit}".rstrip()


def fmt_shape(shape) -> str:
    """(64, 224, 224) -> "64×224×224"; None (a layer that did not run) -> ""."""
    if shape is None:
        return ""
    if isinstance(shape, (int, Number)):
        return str(shape)
    if shape and all(isinstance(s, (tuple, list)) for s in shape):  # several inputs (RAFT's two frames)
        return " and ".join(fmt_shape(s) for s in shape)
    return "×".join(str(int(s)) for s in shape)


def md_escape(text: str) -> str:
    """Text from the library (notes, error sentences, paper titles) shown literally inside st.markdown / st.info:
    an op name like "aten._foo_bar_" or a price-like "$" must not turn into italics or LaTeX."""
    return "".join("\\" + c if c in _MD_SPECIAL else c for c in str(text))


def fmt_quoted(text, limit: int = 40) -> str:
    """Something a person typed (a link's value) as a sentence quotes it: on one line, control characters
    escaped, at most ``limit`` characters — a hostile link can neither break the sentence nor flood the page."""
    text = str(text)
    if not text.isprintable():
        text = text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= limit else text[:limit - 1] + "…"
