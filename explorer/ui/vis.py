"""Streamlit glue for `explorer.vis`: the cached models (pretrained where torchvision's cache has the weights,
else random) and effective-field heatmaps.

Models are shared by every session (``st.cache_resource``), so they are put in eval mode with gradients off and
are never changed afterwards; `explorer.vis.effective_rf` takes gradients for the input only and registers
nothing on them.
"""
from __future__ import annotations

import numpy as np
import streamlit as st
from torch import nn

from .. import catalog, weights
from ..runtime import seeded
from ..vis import effective_rf, to_input

__all__ = ["cached_model", "cached_effective_rf", "has_pretrained"]


def has_pretrained(name: str) -> bool:
    """True when torchvision's cache holds the model's published weights (they are used, nothing downloads)."""
    return weights.weights_entry(name) is not None and weights.cached_path(name) is not None


@st.cache_resource(show_spinner="Building the model…", max_entries=4)
def cached_model(name: str, pretrained: bool = False) -> nn.Module:
    """``catalog.build(name)`` (with its cached pretrained weights if asked), in eval mode, parameters frozen; one
    per model for all sessions."""
    with seeded(f"catalog|{name}"):  # the same random weights after a rebuild: cached fields stay true
        model = catalog.build(name)
    if pretrained:
        weights.load_pretrained(model, name)
    return model.eval().requires_grad_(False)


@st.cache_data(show_spinner="Back-propagating one output unit to the input…", max_entries=64)
def cached_effective_rf(name: str, node: str, image: np.ndarray, side: int, unit: tuple,
                        pretrained: bool = False) -> np.ndarray:
    """Effective-field heatmap (side × side, in [0, 1]) of ``unit`` of ``node`` on ``image`` (any size: it is
    resized and centre-cropped to ``side``), for the cached model ``name``."""
    channels = int(catalog.info(name).input_size[0])
    return effective_rf(cached_model(name, pretrained), node, to_input(image, side, channels), tuple(unit))
