"""The composition every page shares: an ArchitectureSpec in session state and in the URL (``?spec=…``).

Read from the URL once per session (a damaged link shows a sentence and falls back to the default), written back
on every change, so a reload or a shared link restores exactly what was built. Analyses are cached by the spec's
canonical JSON for all sessions.
"""
from __future__ import annotations

import streamlit as st
import torch

from ..analysis import Analysis, AnalysisError
from ..compose import analyze_spec, backbone_stages, resolve
from ..spec import ArchitectureSpec, SpecError
from .format import md_escape

__all__ = ["current_spec", "set_spec", "init_spec", "cached_spec_analysis", "cached_stages", "cached_diagram",
           "DEFAULT_SPEC"]

DEFAULT_SPEC = ArchitectureSpec.from_dict({"task": "classification", "backbone": {"name": "resnet18"},
                                           "head": {"kind": "classification", "num_classes": 1000}})
_SPEC, _READ, _ERROR = "spec.json", "spec.url_read", "spec.url_error"
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def init_spec() -> ArchitectureSpec:
    """Once per session: the spec from ``?spec=``, or the default with a sentence saying why."""
    if not st.session_state.get(_READ):
        st.session_state[_READ] = True
        raw = st.query_params.get("spec")
        spec, error = DEFAULT_SPEC, None
        if raw:
            try:
                spec = ArchitectureSpec.from_url(raw)
            except SpecError as e:
                error = f"{e} Showing the default composition ({DEFAULT_SPEC.summary()})."
        set_spec(spec)  # the address bar always carries the composition, also the default one
        st.session_state[_ERROR] = (error, spec.to_json())
    # The sentence stays on every page until the composition is changed.
    error, at_read = st.session_state.get(_ERROR, (None, None))
    if error and at_read == st.session_state.get(_SPEC):
        st.error(md_escape(error), icon=":material/link_off:")
    return current_spec()


def current_spec() -> ArchitectureSpec:
    return ArchitectureSpec.from_json(st.session_state.get(_SPEC) or DEFAULT_SPEC.to_json())


def set_spec(spec: ArchitectureSpec) -> None:
    st.session_state[_SPEC] = spec.to_json()
    url = spec.to_url()
    if st.query_params.get("spec") != url:
        st.query_params["spec"] = url


@st.cache_data(show_spinner="Tracing the composition on the meta device…", max_entries=256)
def _analysis(spec_json: str, dtype_name: str) -> Analysis:
    return analyze_spec(ArchitectureSpec.from_json(spec_json), dtype=_DTYPES[dtype_name])


def cached_spec_analysis(spec: ArchitectureSpec, dtype_name: str = "float32") -> Analysis:
    """The analysis of ``spec``; raises SpecError / AnalysisError with a sentence (never cached)."""
    return _analysis(spec.to_json(), dtype_name)


@st.cache_data(max_entries=256, show_spinner=False)
def _dot(spec_json: str, dtype_name: str, expand: bool) -> str:
    from ..vis.diagram import architecture_dot

    return architecture_dot(_analysis(spec_json, dtype_name), expand=expand)


def cached_diagram(spec: ArchitectureSpec, dtype_name: str = "float32", expand: bool = False) -> str:
    """The Graphviz DOT of the composition (stages collapsed, or every layer)."""
    return _dot(spec.to_json(), dtype_name, expand)


@st.cache_data(max_entries=512, show_spinner=False)
def _stages(spec_json: str) -> tuple:
    spec = ArchitectureSpec.from_json(spec_json)
    return tuple(backbone_stages(spec)), tuple(resolve(spec)[0])


def cached_stages(spec: ArchitectureSpec):
    """(stages of the backbone at this input, the output stages in use) — SpecError if the backbone can't."""
    try:
        return _stages(spec.to_json())
    except AnalysisError as e:
        raise SpecError(str(e)) from None
