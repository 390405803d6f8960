"""The shared sidebar: the committed composition and the catalog model at a glance, on every page.

Drawn by app.py after the widget callbacks committed this run's change and before the page runs, so it is never
one change behind the page.
"""
from __future__ import annotations

import streamlit as st

from ..analysis import AnalysisError
from ..spec import SpecError
from .composition import cached_spec_analysis, current_spec
from .format import fmt_count, fmt_int, fmt_shape, md_escape
from .state import current_selection, layers_source

__all__ = ["sidebar_summary"]

HERE = " · on this page"


def sidebar_summary(page: str = "") -> None:
    """``page``: the url path of the page being drawn; the part of the sidebar that page shows says so."""
    sel = current_selection()
    mi = sel.info
    composition_here = page == "compose" or (page == "layers" and layers_source() == "composition")
    catalog_here = page == "layers" and layers_source() == "catalog"
    with st.sidebar:
        spec = current_spec()
        st.caption("Composition" + (HERE if composition_here else ""))
        st.markdown(md_escape(spec.summary()))
        try:
            c = cached_spec_analysis(spec)
            st.markdown(f"Parameters **{fmt_int(c.params)}**  \n"
                        f"MACs **{fmt_count(c.macs)}** · FLOPs **{fmt_count(c.flops)}**")
        except (SpecError, AnalysisError):
            st.caption("This composition cannot be built; Compose says what to change.")
        st.divider()
        st.caption("Layers: catalog model" + (HERE if catalog_here else ""))
        st.markdown(f"**{md_escape(sel.model)}** · {md_escape(mi.family)} ({mi.year})  \n"
                    f"Input {fmt_shape(sel.shape)} · {sel.dtype}")
        try:
            a = sel.analysis()
        except AnalysisError:
            st.caption("This input does not fit the model; the page says what to change.")
            return
        st.markdown(f"Parameters **{fmt_int(a.params)}**  \n"
                    f"MACs **{fmt_count(a.macs)}** · FLOPs **{fmt_count(a.flops)}**")
