"""Links from a finished run to the pages that run a network: Predict, Explain and Feature maps open it with
``?source=run:<id>`` (`explorer.ui.inference` reads the link and shows the run, labelled "trained in the app").
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st

__all__ = ["links", "PAGES"]

_APP = Path(__file__).resolve().parents[2]  # the folder of app.py: pages are named by their files' real paths
# (page file, link text, icon, what it shows): the pages that run a network
PAGES = ((_APP / "app_pages" / "predict.py", "Predict with it", ":material/online_prediction:",
          "its predictions on held-out samples, your uploads or a digit you draw"),
         (_APP / "app_pages" / "explain.py", "Explain it", ":material/lightbulb:",
          "Grad-CAM and the other attributions of its decisions"),
         (_APP / "app_pages" / "feature_maps.py", "Feature maps", ":material/grid_view:",
          "what each of its layers computes for an image"))


def links(run_id: str) -> None:
    """One row of links opening the finished run ``run_id`` on Predict, Explain and Feature maps."""
    params = {"source": f"run:{run_id}"}
    for column, (page, label, icon, shows) in zip(st.columns(len(PAGES)), PAGES):
        column.page_link(str(page), label=label, icon=icon, query_params=params,
                         help=f"Run {run_id} as a network trained in the app: {shows}.")
