"""The composition every page shares: one committed `ArchitectureSpec` in session state, mirrored in the URL.

Data flows one way: widgets → **committed composition** → everything else. A widget's ``on_change`` callback
commits (`set_spec`) before the rerun draws anything, so the sidebar, the address bar (`ui.sync_url`, once per
run in app.py), the download, Layers, Receptive fields and the run pages all read the same object through
`current_spec()`. The spec travels as that object; its canonical JSON is kept beside it once, at commit, as the
cache key (and for tests), never re-parsed.

Read from the URL once per session (a damaged link shows a sentence and falls back to the default), so a reload or
a shared link restores exactly what was built. Analyses are cached by the spec's canonical JSON for all sessions.
"""
from __future__ import annotations

import streamlit as st

from ..analysis import Analysis, AnalysisError
from ..compose import analyze_spec, backbone_stages, resolve
from ..dtypes import DTYPES
from ..spec import ArchitectureSpec, SpecError
from .format import md_escape

__all__ = ["current_spec", "set_spec", "init_spec", "cached_spec_analysis", "cached_stages", "cached_diagram",
           "DEFAULT_SPEC", "spec_arrived"]

DEFAULT_SPEC = ArchitectureSpec.from_dict({"task": "classification", "backbone": {"name": "resnet18"},
                                           "head": {"kind": "classification", "num_classes": 1000}})
# The committed spec (the object) and its canonical JSON (written with it, in set_spec only).
_OBJ, _SPEC, _READ, _ERROR, _ARRIVED = "spec.committed", "spec.json", "spec.url_read", "spec.url_error", \
    "spec.arrived"


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
        st.session_state[_ARRIVED] = bool(raw) and error is None
        set_spec(spec)  # the address bar always carries the composition, also the default one
        st.session_state[_ERROR] = (error, spec.to_json())
    # The sentence stays on every page until the composition is changed.
    error, at_read = st.session_state.get(_ERROR, (None, None))
    if error and at_read == st.session_state.get(_SPEC):
        st.error(md_escape(error), icon=":material/link_off:")
    return current_spec()


def spec_arrived() -> bool:
    """Whether this session was opened with a composition in its link (``?spec=``, readable)."""
    return bool(st.session_state.get(_ARRIVED))


def current_spec() -> ArchitectureSpec:
    """The committed composition (shared object: read it; change a copy with ``replace`` and `set_spec` it)."""
    spec = st.session_state.get(_OBJ)
    return spec if isinstance(spec, ArchitectureSpec) else DEFAULT_SPEC


def set_spec(spec: ArchitectureSpec) -> None:
    """Commit ``spec``: every page, the sidebar and the address bar show it from now on."""
    st.session_state[_OBJ] = spec
    st.session_state[_SPEC] = spec.to_json()
    url = spec.to_url()
    if st.query_params.get("spec") != url:
        st.query_params["spec"] = url


@st.cache_data(show_spinner="Tracing the composition on the meta device…", max_entries=256)
def _analysis(spec_json: str, dtype_name: str, _spec: ArchitectureSpec) -> Analysis:
    # Keyed by the JSON (hashable, canonical); the object itself is used, not parsed again (the _ skips hashing).
    if dtype_name not in DTYPES:
        raise AnalysisError(f"Unknown dtype '{dtype_name}'; choose one of {', '.join(DTYPES)}.")
    return analyze_spec(_spec, dtype=DTYPES[dtype_name])


def _key(spec: ArchitectureSpec) -> str:
    # The committed spec's JSON was written once at commit; any other spec (a candidate, a pinned one) is dumped.
    return st.session_state[_SPEC] if spec is st.session_state.get(_OBJ) else spec.to_json()


def cached_spec_analysis(spec: ArchitectureSpec, dtype_name: str = "float32") -> Analysis:
    """The analysis of ``spec``; raises SpecError / AnalysisError with a sentence (never cached)."""
    return _analysis(_key(spec), dtype_name, spec)


@st.cache_data(max_entries=256, show_spinner=False)
def _dot(spec_json: str, dtype_name: str, expand: bool, open_stages: tuple, _spec: ArchitectureSpec) -> str:
    from ..vis.diagram import architecture_dot

    return architecture_dot(_analysis(spec_json, dtype_name, _spec), expand=expand, open_stages=open_stages)


def cached_diagram(spec: ArchitectureSpec, dtype_name: str = "float32", expand: bool = False,
                   open_stages: tuple = ()) -> str:
    """The Graphviz DOT of the composition: stages collapsed (``open_stages`` opened), or every layer."""
    return _dot(_key(spec), dtype_name, expand, tuple(open_stages), spec)


@st.cache_data(max_entries=512, show_spinner=False)
def _stages(spec_json: str, _spec: ArchitectureSpec) -> tuple:
    return tuple(backbone_stages(_spec)), tuple(resolve(_spec)[0])


def cached_stages(spec: ArchitectureSpec):
    """(stages of the backbone at this input, the output stages in use) — SpecError if the backbone can't."""
    try:
        return _stages(_key(spec), spec)
    except AnalysisError as e:
        raise SpecError(str(e)) from None
