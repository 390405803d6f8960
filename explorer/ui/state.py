"""What every page shares: the chosen architecture (session + URL) and the cached analysis of it.

The choice lives in ``st.session_state`` under keys of its own (not widget keys, which Streamlit drops when a
page without that widget runs), is read from the URL once per session and written back to it on every run, so a
reload or a shared link (``?model=vgg16&input=224``) shows the same architecture.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import streamlit as st

from .. import analyze, catalog
from ..analysis import Analysis, AnalysisError
from ..dtypes import DTYPES
from .format import fmt_quoted, md_escape

__all__ = ["DEFAULT_MODEL", "DTYPES", "MIN_SIDE", "MAX_SIDE", "Selection", "cached_analysis", "parse_query",
           "init_selection", "current_selection", "set_selection", "sync_query_params", "query_params_for",
           "sync_url", "layers_source", "set_layers_source", "LAYERS_SOURCES", "seed_widget"]

DEFAULT_MODEL = "resnet50"
MIN_SIDE, MAX_SIDE = 1, 4096  # meta-device analysis is cheap, but the number box needs bounds

# Session-state keys of the shared choice (prefixed so they never collide with a page's widget keys).
_MODEL, _SIDE, _DTYPE, _URL_READ = "sel.model", "sel.side", "sel.dtype", "sel.url_read"
_URL_ERRORS = "sel.url_errors"
# Whether the catalog choice is in play (the link named a model, or the person chose one): only then does the
# address bar carry model= / input= outside Layers, so a link copied on Compose opens Layers on the composition.
_CHOSEN = "sel.chosen"
# What Layers shows: the catalog model or the composition (committed like the rest, read by the page and the URL).
_LAYERS = "sel.layers"
LAYERS_SOURCES = ("catalog", "composition")


@st.cache_data(show_spinner="Tracing the architecture on the meta device…", max_entries=256)
def cached_analysis(name: str, c: int, h: int, w: int, dtype_name: str = "float32") -> Analysis:
    """``analyze`` once per (model, input, dtype) for all sessions; errors are raised, never cached."""
    if dtype_name not in DTYPES:
        raise AnalysisError(f"Unknown dtype '{dtype_name}'; choose one of {', '.join(DTYPES)}.")
    # analyze() turns every input it cannot take (ViT's size assert included) into an AnalysisError sentence.
    inputs = len(catalog.info(name).input_shapes)  # RAFT: two frames of the same size
    return analyze(name, (c, h, w) if inputs == 1 else ((c, h, w),) * inputs, dtype=DTYPES[dtype_name])


@dataclasses.dataclass(frozen=True)
class Selection:
    """The architecture on screen: a catalog model at a square input side, in one dtype."""

    model: str
    side: int
    dtype: str = "float32"

    @property
    def info(self) -> catalog.ModelInfo:
        return catalog.info(self.model)

    @property
    def shape(self) -> tuple[int, int, int]:
        # Channels are the model's own (LeNet takes 1); only the spatial size is the user's to choose.
        return (self.info.input_shapes[0][0], self.side, self.side)

    @property
    def is_default_size(self) -> bool:
        return self.shape == tuple(self.info.input_shapes[0])

    def analysis(self) -> Analysis:
        """The cached analysis; raises AnalysisError (with a sentence to show) for an impossible input."""
        return cached_analysis(self.model, *self.shape, self.dtype)


def default_side(model: str) -> int:
    return int(catalog.info(model).input_shapes[0][-1])


def parse_query(params: Mapping[str, str]) -> tuple[Selection, list[str]]:
    """Selection from URL parameters, plus one sentence per value that could not be used.

    A missing or unknown model falls back to resnet50 at its default size; a bad ``input`` keeps the model and
    uses its default size. Whether the model can take a valid size is the analysis' business, not the URL's.
    """
    errors: list[str] = []
    raw_model = (params.get("model") or "").strip()
    model = raw_model.lower() or DEFAULT_MODEL
    try:
        catalog.info(model)
    except catalog.UnknownModelError as e:
        errors.append(f"The link asks for model '{fmt_quoted(raw_model)}': {e} Showing {DEFAULT_MODEL} at its "
                      "default size instead.")
        return Selection(DEFAULT_MODEL, default_side(DEFAULT_MODEL)), errors

    side = default_side(model)
    raw_side = (params.get("input") or "").strip()
    if raw_side:
        try:
            value = int(raw_side)
        except ValueError:
            errors.append(f"The link's input size '{fmt_quoted(raw_side)}' is not a whole number of pixels (write "
                          f"e.g. input=224); showing {model} at its default {side} px instead.")
        else:
            if MIN_SIDE <= value <= MAX_SIDE:
                side = value
            else:
                errors.append(f"The link's input size {fmt_quoted(value)} px is outside {MIN_SIDE}–{MAX_SIDE} px; "
                              f"showing {model} at its default {side} px instead.")
    return Selection(model, side), errors


def query_params_for(sel: Selection) -> dict[str, str]:
    return {"model": sel.model, "input": str(sel.side)}


def init_selection() -> Selection:
    """Call once per run, before the pages: on a session's first run, read the URL (showing what was wrong)."""
    if not st.session_state.get(_URL_READ):
        sel, errors = parse_query({k: st.query_params.get(k) for k in ("model", "input")})
        set_selection(sel)
        st.session_state[_CHOSEN] = bool(st.query_params.get("model") or st.query_params.get("input"))
        st.session_state[_URL_READ] = True
        st.session_state[_URL_ERRORS] = (errors, sel)
    # What was wrong with the link stays on screen (on every page) until the person changes the choice.
    errors, at_read = st.session_state.get(_URL_ERRORS, ([], None))
    if errors and at_read == current_selection():
        for msg in errors:
            st.error(md_escape(msg), icon=":material/link_off:")  # it quotes the link: show it literally
    return current_selection()


def current_selection() -> Selection:
    if _MODEL not in st.session_state:  # a page run without app.py (never in the app; cheap to be safe)
        st.session_state[_MODEL], st.session_state[_SIDE] = DEFAULT_MODEL, default_side(DEFAULT_MODEL)
    return Selection(st.session_state[_MODEL], st.session_state[_SIDE], st.session_state.get(_DTYPE, "float32"))


def set_selection(sel: Selection) -> None:
    """Commit the catalog choice (a widget's callback, Zoo): Layers and the run pages show it from now on."""
    st.session_state[_MODEL], st.session_state[_SIDE], st.session_state[_DTYPE] = sel.model, sel.side, sel.dtype
    st.session_state[_CHOSEN] = True


def seed_widget(key: str, value) -> None:
    """A widget shows the committed value: set in session state before it is drawn (only when it differs)."""
    if st.session_state.get(key) != value:
        st.session_state[key] = value


def layers_source() -> str:
    """"catalog" or "composition": what Layers shows. A session opened with a composition in its link and no
    catalog model (``?spec=…``) starts on the composition; any other starts on the catalog model."""
    if _LAYERS not in st.session_state:
        from .composition import spec_arrived

        arrived = spec_arrived() and not st.session_state.get(_CHOSEN)
        st.session_state[_LAYERS] = "composition" if arrived else "catalog"
    return st.session_state[_LAYERS]


def set_layers_source(source: str) -> None:
    if source not in LAYERS_SOURCES:
        raise ValueError(f"Layers shows one of {', '.join(LAYERS_SOURCES)}; got {source!r}.")
    st.session_state[_LAYERS] = source


def sync_query_params(sel: Selection) -> None:
    """Write the choice into the address bar (only what changed, leaving any other parameters alone)."""
    for key, value in query_params_for(sel).items():
        if st.query_params.get(key) != value:
            st.query_params[key] = value


def sync_url(page: str = "") -> None:
    """Once per run, after the callbacks committed and before the page draws: the address bar names what is
    committed — always the composition (``spec``), and the catalog model (``model``, ``input``) where it is in
    play: on Layers when Layers shows it, elsewhere once the link or the person chose one. Other parameters (a
    run page's ``source``) are left alone."""
    from .composition import current_spec

    url = current_spec().to_url()
    if st.query_params.get("spec") != url:
        st.query_params["spec"] = url
    catalog_shown = layers_source() == "catalog" if page == "layers" else bool(st.session_state.get(_CHOSEN))
    if catalog_shown:
        sync_query_params(current_selection())
    else:
        for key in ("model", "input"):
            if key in st.query_params:
                del st.query_params[key]
