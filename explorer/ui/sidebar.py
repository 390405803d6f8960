"""The shared sidebar: the current architecture at a glance, on every page."""
from __future__ import annotations

import streamlit as st

from ..analysis import AnalysisError
from ..spec import SpecError
from .composition import cached_spec_analysis, current_spec
from .format import fmt_count, fmt_int, fmt_shape, md_escape
from .state import Selection

__all__ = ["sidebar_summary"]


def sidebar_summary(sel: Selection) -> None:
    mi = sel.info
    with st.sidebar:
        spec = current_spec()
        st.caption("Composition")
        st.markdown(md_escape(spec.summary()))
        try:
            c = cached_spec_analysis(spec)
            st.markdown(f"Parameters **{fmt_int(c.params)}**  \n"
                        f"MACs **{fmt_count(c.macs)}** · FLOPs **{fmt_count(c.flops)}**")
        except (SpecError, AnalysisError):
            st.caption("This composition cannot be built; Compose says what to change.")
        st.divider()
        st.caption("Layers")
        st.markdown(f"**{md_escape(sel.model)}** · {md_escape(mi.family)} ({mi.year})  \n"
                    f"Input {fmt_shape(sel.shape)} · {sel.dtype}")
        try:
            a = sel.analysis()
        except AnalysisError:
            st.caption("This input does not fit the model; the page says what to change.")
            return
        st.markdown(f"Parameters **{fmt_int(a.params)}**  \n"
                    f"MACs **{fmt_count(a.macs)}** · FLOPs **{fmt_count(a.flops)}**")
