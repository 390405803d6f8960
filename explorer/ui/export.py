"""Compose's export downloads: the composition as a standalone PyTorch file and as ONNX (`explorer.export`).

The Python file is cheap (the library's sources and the spec as text) and is offered at once. ONNX builds the
model with real weights and traces it, so it is made when asked (a button), cached per composition, and where
the library refuses (two-stage detectors, an op ONNX has no form for) its sentence is shown instead.
"""
from __future__ import annotations

import streamlit as st

from ..export import ExportError, standalone_python, to_onnx
from ..spec import ArchitectureSpec
from .format import md_escape

__all__ = ["export_panel", "python_file", "onnx_file"]

K = "compose.export."


@st.cache_data(max_entries=16, show_spinner=False)
def _python(spec_json: str) -> str:
    return standalone_python(ArchitectureSpec.from_json(spec_json))


def python_file(spec: ArchitectureSpec) -> str:
    """The standalone file's text: ``python model.py`` rebuilds the composition and prints its parameters."""
    return _python(spec.to_json())


# Few entries: an ONNX file holds every weight (VGG16: 553 MB).
@st.cache_data(max_entries=2, show_spinner="Exporting to ONNX (building the model with weights and tracing it)…")
def _onnx(spec_json: str) -> tuple:
    try:
        return to_onnx(ArchitectureSpec.from_json(spec_json)), None
    except ExportError as e:
        return None, str(e)


def onnx_file(spec: ArchitectureSpec) -> tuple:
    """(ONNX bytes, None), or (None, the library's sentence saying why not and what works instead)."""
    return _onnx(spec.to_json())


def _ask_onnx(spec_json: str) -> None:
    st.session_state[K + "onnx_for"] = spec_json


def export_panel(spec: ArchitectureSpec) -> None:
    """An expander with the two downloads for ``spec`` (the committed composition)."""
    stem = "composition"
    with st.expander("Export the model (PyTorch file, ONNX)"):
        st.caption("Random weights, as on this page. The PyTorch file needs only torch and torchvision: "
                   "`python composition.py` rebuilds the model and prints its parameter count.")
        with st.container(horizontal=True):
            st.download_button("Download PyTorch file (.py)", python_file(spec), file_name=f"{stem}.py",
                               mime="text/x-python", icon=":material/download:", key=K + "python",
                               on_click="ignore")
            spec_json = spec.to_json()
            if st.session_state.get(K + "onnx_for") != spec_json:
                st.button("Export to ONNX", key=K + "onnx", icon=":material/deployed_code:", on_click=_ask_onnx,
                          args=(spec_json,), help="Builds the model with its weights and traces it: a few "
                                                  "seconds, and a file as large as the weights.")
                return
            data, refusal = onnx_file(spec)
            if data is not None:
                st.download_button(f"Download ONNX ({len(data) / 1e6:,.1f} MB)", data, file_name=f"{stem}.onnx",
                                   mime="application/octet-stream", icon=":material/download:",
                                   key=K + "onnx_download", on_click="ignore")
        if refusal:
            st.info(md_escape(refusal), icon=":material/info:")
