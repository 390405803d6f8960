"""Streamlit glue for `explorer.vis`: catalog models from the app's one model cache (`explorer.ui.inference.
built_network`; pretrained where torchvision's cache has the weights, else random) and effective-field heatmaps.

Models are shared by every session, so they are in eval mode with gradients off and are never changed
afterwards; `explorer.vis.effective_rf` takes gradients for the input only and registers nothing on them.
"""
from __future__ import annotations

import numpy as np
import streamlit as st
from torch import nn

from .. import catalog, weights
from ..network import Network
from ..vis import effective_rf, to_input
from .inference import built_network

__all__ = ["cached_model", "cached_effective_rf", "has_pretrained"]


def has_pretrained(name: str) -> bool:
    """True when torchvision's cache holds the model's published weights (they are used, nothing downloads)."""
    return weights.weights_entry(name) is not None and weights.cached_path(name) is not None


def cached_model(name: str, pretrained: bool = False) -> nn.Module:
    """Catalog model ``name`` whole (with its cached pretrained weights if asked), in eval mode, parameters
    frozen: the same cached model the run pages use (one cache, `inference.MAX_CACHED_NETWORKS` networks). A
    model larger than the run pages take is refused with their sentence (ValueError)."""
    network = Network.catalog(name)
    return built_network(network.with_pretrained() if pretrained else network).model


@st.cache_data(show_spinner="Back-propagating one output unit to the input…", max_entries=64)
def cached_effective_rf(name: str, node: str, image: np.ndarray, side: int, unit: tuple,
                        pretrained: bool = False) -> np.ndarray:
    """Effective-field heatmap (side × side, in [0, 1]) of ``unit`` of ``node`` on ``image`` (any size: it is
    resized and centre-cropped to ``side`` and normalised as the model's weights expect, the path of
    `explorer.images`), for the cached model ``name``."""
    channels = int(catalog.info(name).input_shapes[0][0])
    return effective_rf(cached_model(name, pretrained), node, to_input(image, side, channels, model_name=name),
                        tuple(unit))
