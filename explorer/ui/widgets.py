"""Widgets bound to the shared selection, so every page that offers them edits the same choice."""
from __future__ import annotations

import streamlit as st

from .. import catalog
from ..analysis import min_input_size
from .format import fmt_shape
from .state import (DTYPES, MAX_SIDE, MIN_SIDE, Selection, current_selection, default_side, seed_widget,
                    set_selection)

__all__ = ["model_label", "model_picker", "side_input", "dtype_picker", "input_fix_buttons", "upload_mb"]


def upload_mb(what: str) -> int:
    """A file_uploader's own cap in MB (Streamlit's ``max_upload_size``, MiB like the library's caps), from the
    cap the library applies anyway, so the browser refuses a bigger file before sending it. The server-wide
    ``server.maxUploadSize`` (.streamlit/config.toml) is the largest of these."""
    from .. import images, weights
    from ..training.datasets import ZipLimits

    caps = {"weights": weights.MAX_UPLOAD_BYTES, "image": images.MAX_BYTES, "zip": ZipLimits().max_bytes,
            "spec": SPEC_BYTES}
    return -(-caps[what] // 2**20)


SPEC_BYTES = 1_000_000  # a spec JSON is read up to this many bytes (Compose's loader)

# Widget keys. Streamlit forgets a widget's state on a page where it is not drawn, so each widget is seeded
# from the shared selection before it is drawn and writes back to it in its on_change callback.
W_MODEL, W_SIDE, W_DTYPE = "w.model", "w.side", "w.dtype"


def model_label(name: str) -> str:
    """ "vgg16 — VGG (2014)" """
    mi = catalog.info(name)
    return f"{name} — {mi.family} ({mi.year})"


# Also after a change made elsewhere (the URL, another page, Zoo): the shared selection wins.
_seed = seed_widget


def _on_model_change() -> None:
    # A new model starts at its own input size (LeNet 32, Inception v3 299, ViT-H 518): the size that fits it.
    model = st.session_state[W_MODEL]
    side = default_side(model)
    st.session_state[W_SIDE] = side
    set_selection(Selection(model, side, current_selection().dtype))


def _on_side_change() -> None:
    sel = current_selection()
    set_selection(Selection(sel.model, int(st.session_state[W_SIDE]), sel.dtype))


def _on_dtype_change() -> None:
    sel = current_selection()
    set_selection(Selection(sel.model, sel.side, st.session_state[W_DTYPE]))


def model_picker(label: str = "Model") -> str:
    sel = current_selection()
    _seed(W_MODEL, sel.model)
    return st.selectbox(label, catalog.names(), key=W_MODEL, format_func=model_label, on_change=_on_model_change,
                        help="Every torchvision classification model plus the classic ones it lacks.")


def side_input(label: str = "Input size (px)") -> int:
    sel = current_selection()
    _seed(W_SIDE, sel.side)
    c, h, w = sel.info.input_shapes[0]
    return st.number_input(
        label, min_value=MIN_SIDE, max_value=MAX_SIDE, step=1, key=W_SIDE, on_change=_on_side_change,
        help=f"Height = width of a square input. Channels stay at the model's {c}; "
             f"its default input is {fmt_shape((c, h, w))}.")


def dtype_picker(label: str = "dtype") -> str:
    _seed(W_DTYPE, current_selection().dtype)
    return st.selectbox(label, list(DTYPES), key=W_DTYPE, on_change=_on_dtype_change,
                        help="Bytes per element for every memory figure: 4 (float32) or 2 (float16, bfloat16).")


@st.cache_data(show_spinner="Finding the smallest input that fits…")
def _smallest_side(model: str, channels: int) -> int | None:
    # Searching up to the default size is enough (the default works) and keeps the binary search short.
    return min_input_size(model, channels, upper=default_side(model))


def _use_side(side: int) -> None:
    sel = current_selection()
    st.session_state[W_SIDE] = side
    set_selection(Selection(sel.model, side, sel.dtype))


def input_fix_buttons(sel: Selection) -> None:
    """After "cannot take this input": one click to an input that works (the smallest, and the default)."""
    c = sel.shape[0]
    choices = []
    smallest = _smallest_side(sel.model, c)
    if smallest is not None and smallest > sel.side:  # the input was too small
        choices.append(("w.use_smallest", f"Use {fmt_shape((c, smallest, smallest))}", smallest))
    d = default_side(sel.model)
    if d != sel.side and all(side != d for *_, side in choices):
        choices.append(("w.use_default", f"Use the default {fmt_shape((c, d, d))}", d))
    with st.container(horizontal=True):
        for key, label, side in choices:
            st.button(label, on_click=_use_side, args=(side,), icon=":material/straighten:", key=key)
