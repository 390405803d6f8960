"""Streamlit glue for the Zoo page: the cached zoo table, the table as drawn, and "Open in Layers"."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from .. import catalog, zoo
from .state import Selection, current_selection, default_side, query_params_for, set_layers_source, set_selection

__all__ = ["zoo_table", "zoo_dataframe", "open_in_layers", "open_in_compose", "LAYERS_PAGE", "COMPOSE_PAGE"]

LAYERS_PAGE = "app_pages/layers.py"
COMPOSE_PAGE = "app_pages/compose.py"
_INT = "%,d"


@st.cache_data(show_spinner=False)
def zoo_table(source: str = "torchvision") -> pd.DataFrame:
    """Every catalog model with ImageNet metadata (see ``explorer.zoo.zoo_frame``), once for all sessions."""
    return zoo.zoo_frame(source)


def zoo_dataframe(df: pd.DataFrame, key: str | None = None, max_rows: int = 16) -> None:
    """The zoo table as a person reads it: separators, two decimals, sortable by clicking a column header."""
    num = st.column_config.NumberColumn
    config = {
        "model": st.column_config.TextColumn("model", width=170),
        "family": st.column_config.TextColumn("family", width=120),
        "year": num("year", format="%d", width=60),
        "acc@1": num("acc@1 (%)", format="%.2f", width=90, help="ImageNet-1K top-1 accuracy, torchvision weights."),
        "acc@5": num("acc@5 (%)", format="%.2f", width=90, help="ImageNet-1K top-5 accuracy."),
        "params": num("params", format=_INT, width=115, help="Parameters, as published with the weights."),
        "GMACs": num("GMACs", format="%.2f", width=80,
                     help="10⁹ multiply-accumulates per image at the input size; 1 MAC = 2 FLOPs."),
        "GFLOPs": num("GFLOPs", format="%.2f", width=80, help="10⁹ floating-point operations = 2 × GMACs."),
        "input": num("input (px)", format="%d", width=80, help="Crop size the weights were trained and "
                                                               "evaluated at (square)."),
        "paper": st.column_config.TextColumn("paper"),
    }
    height = 35 * (min(len(df), max_rows) + 1) + 3
    st.dataframe(df, column_order=zoo.COLUMNS, column_config=config, hide_index=True, key=key, height=height)


def open_in_layers(name: str) -> None:
    """Make ``name`` (at its own input size, in the dtype on screen) the shared choice and go to Layers."""
    from .composition import current_spec

    sel = Selection(name, default_side(name), current_selection().dtype)
    set_selection(sel)
    set_layers_source("catalog")
    st.switch_page(LAYERS_PAGE, query_params={"spec": current_spec().to_url(), **query_params_for(sel)})


def open_in_compose(name: str) -> None:
    """Make ``name`` the backbone of the composition (its own input size, a classification head) and go there."""
    from ..spec import ArchitectureSpec
    from .composition import set_spec

    from .settings import default_head

    c, h, w = catalog.info(name).input_size
    head = default_head("classification")
    spec = ArchitectureSpec.from_dict({"task": "classification", "input": {"channels": c, "height": h, "width": w},
                                       "backbone": {"name": name},
                                       "head": {"kind": head, "num_classes": catalog.info(name).num_classes}})
    set_spec(spec)  # committed: Compose's widgets follow it (explorer.ui.draft), the link carries it
    st.switch_page(COMPOSE_PAGE, query_params={"spec": spec.to_url()})
