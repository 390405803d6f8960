"""The architecture diagram on a page: stages to open, every layer at once, the chart, and a download."""
from __future__ import annotations

from typing import Callable, Optional

import streamlit as st

from ..analysis import Analysis
from ..analysis.graph import collapsible
from ..compose import STAGE_PREFIX
from ..vis.diagram import architecture_dot, has_renderer, node_count, svg

__all__ = ["architecture_diagram"]

MAX_DRAWN_NODES = 200  # resnet50 with every layer is 80 nodes; Mask R-CNN's stage view about 110


@st.cache_data(max_entries=64, show_spinner=False)
def _svg(dot: str) -> Optional[bytes]:
    return svg(dot)


def _short(path: str) -> str:
    return path[len(STAGE_PREFIX):] if path.startswith(STAGE_PREFIX) else path


def architecture_diagram(a: Analysis, *, key: str, stem: str, dot: Optional[Callable[[bool, tuple], str]] = None,
                         expand_key: Optional[str] = None, on_change=None, args: tuple = ()) -> None:
    """The dataflow diagram of ``a``. ``dot(expand, open_stages)`` gives the DOT (a cached one, for a
    composition); ``expand_key``/``on_change``/``args`` keep a page's own state for "every layer"."""
    if a.flow is None:  # an analysis made before the dataflow graph was recorded
        st.info("This analysis has no dataflow graph to draw; change the input size or dtype to analyse it again.",
                icon=":material/info:")
        return
    dot = dot or (lambda expand, opened: architecture_dot(a, expand, opened))
    stages = collapsible(a.flow)
    c1, c2 = st.columns([5, 3], vertical_alignment="bottom")
    with c2:
        expand = st.toggle("Show every layer", key=expand_key or f"{key}.expand",
                           on_change=on_change, args=args,
                           help="Every stage opened into its layers, with each block's shortcut.")
    with c1:
        opened = st.multiselect("Open stages into their layers", stages, key=f"{key}.open", format_func=_short,
                                disabled=expand or not stages, placeholder="stages drawn as one node each",
                                help="A stage opens into a box of its blocks and layers, with every merge.")
    text = dot(bool(expand), tuple(sorted(opened)))
    nodes = node_count(text)
    # A forward that repeats itself (RAFT's twelve refinement steps) makes hundreds of nodes: laying them out
    # takes tens of seconds, so such a diagram is drawn when asked for, and its SVG made only on download.
    drawn = nodes <= MAX_DRAWN_NODES or st.toggle(
        f"Draw all {nodes} nodes", key=f"{key}.big",
        help="Laying out a graph this large takes a while; the page waits for it.")
    if drawn:
        st.graphviz_chart(text, width="content")  # its own size (a short chain is not blown up), at most the column
    else:
        st.info(f"This diagram has {nodes} nodes (more than {MAX_DRAWN_NODES}), so it is not drawn until you ask: "
                "switch on **Draw all nodes**, or download it.", icon=":material/info:")
    st.caption("Drawn from the traced forward: every add (+), concat and multiply (×) with its inputs; "
               ":red[red edges] are shortcuts and skips (a merge's input from fewer layers back). BatchNorm and "
               "activations fold into the layer before them.")
    if has_renderer():
        st.download_button("Download diagram (SVG)", lambda: _svg(text) or b"", f"{stem}.svg", "image/svg+xml",
                           on_click="ignore", icon=":material/download:", key=f"{key}.svg")
    else:
        st.download_button("Download diagram (DOT source)", text, f"{stem}.dot", "text/vnd.graphviz",
                           on_click="ignore", icon=":material/download:", key=f"{key}.dot")
        st.caption("Graphviz's `dot` program is not installed on this server, so the diagram downloads as its "
                   "DOT source; `dot -Tsvg diagram.dot > diagram.svg` turns it into a picture.")
