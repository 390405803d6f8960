"""Streamlit glue for `explorer.vis`: the cached random-weight models and effective-field heatmaps.

Models are shared by every session (``st.cache_resource``), so they are put in eval mode with gradients off and
are never changed afterwards; `explorer.vis.effective_rf` takes gradients for the input only and registers
nothing on them.
"""
from __future__ import annotations

import numpy as np
import streamlit as st
from torch import nn

from .. import catalog
from ..vis import effective_rf, to_input

__all__ = ["cached_model", "cached_effective_rf"]


@st.cache_resource(show_spinner="Building the model (random weights)…", max_entries=4)
def cached_model(name: str) -> nn.Module:
    """``catalog.build(name)``, untrained, in eval mode, parameters frozen; one per model for all sessions."""
    return catalog.build(name).eval().requires_grad_(False)


@st.cache_data(show_spinner="Back-propagating one output unit to the input…", max_entries=64)
def cached_effective_rf(name: str, node: str, image: np.ndarray, side: int, unit: tuple) -> np.ndarray:
    """Effective-field heatmap (side × side, in [0, 1]) of ``unit`` of ``node`` on ``image`` (any size: it is
    resized and centre-cropped to ``side``), for the cached model ``name``."""
    channels = int(catalog.info(name).input_size[0])
    return effective_rf(cached_model(name), node, to_input(image, side, channels), tuple(unit))
