"""Compose's form: what the person has in the widgets (the draft), and the callbacks that commit it.

Data flows one way: a widget's ``on_change`` callback (`edit`) writes the draft, checks it as a whole spec and,
when it builds, commits it (`composition.set_spec`) — all before the rerun draws anything, so the sidebar, the
address bar, the download and every page show the new composition in the same run. A draft that cannot be built
stays in the widgets with its sentence, while the last working composition stays committed, on screen and in the
URL. The widgets are drawn from the draft (seeded in session state before each is drawn), so a loaded file, a Zoo
choice or a link sets them.

The draft is ``ArchitectureSpec.to_dict()``-shaped; kinds, titles and settings come from `explorer.ui.settings`
(the component registry), never spelled here.
"""
from __future__ import annotations

import copy
from typing import Any, Optional

import streamlit as st

from .. import catalog
from ..analysis import AnalysisError
from ..blocks import default_stem, example_stages
from ..compose import freezable_stages
from ..spec import ArchitectureSpec, InputSpec, SpecError
from . import settings as kinds_
from .composition import cached_spec_analysis, cached_stages, current_spec, set_spec
from .format import fmt_shape
from .widgets import SPEC_BYTES

__all__ = ["CUSTOM", "K", "draft", "check", "stage_choices", "frozen_choices", "edit", "seed", "notice",
           "upload_error", "on_upload", "editor_key", "editor_rows", "backbones", "backbone_label", "DEFAULT_STACK",
           "view", "STEM", "stack_rows", "head_input"]

K = "compose."
CUSTOM = "custom"  # the backbone name of a stack of blocks (BackboneSpec.is_custom)
_DRAFT, _OF, _NOTICE, _UPLOAD_ERR = K + "draft", K + "draft_of", K + "notice", K + "upload_error"
_MEMORY, _EDITOR, _VIEW = K + "memory", K + "editor", K + "view"
# The stack a new custom backbone starts from: each block kind that declares an example stage (the registry).
DEFAULT_STACK = tuple(example_stages())
# The stack's stem is the editor's first row, under this name in the block column (removable: no stem).
STEM = "stem"
_VIEW_DEFAULTS = {"dtype": "float32", "batch": 1, "expand": False}


def backbones() -> list:
    """Every catalog CNN a composition can start from (not the whole segmentation models), then the custom stack."""
    return [n for n in catalog.names() if catalog.info(n).source in ("torchvision", "classic")] + [CUSTOM]


def backbone_label(name: str) -> str:
    if name == CUSTOM:
        return "custom — your own stack of lecture blocks"
    mi = catalog.info(name)
    return f"{name} — {mi.family} ({mi.year})"


# -- the draft -----------------------------------------------------------------------------------------------------
def _reset_draft(spec: ArchitectureSpec) -> dict:
    d = spec.to_dict()
    st.session_state[_DRAFT], st.session_state[_OF] = d, spec.to_json()
    if spec.backbone.is_custom:
        _new_editor(stack_rows(d["backbone"]))
    return d


def draft() -> dict:
    """The draft, following the committed composition whenever something else committed one (a link, Zoo, the
    Weights panel, a loaded file)."""
    committed = current_spec()
    d = st.session_state.get(_DRAFT)
    if d is None or st.session_state.get(_OF) != committed.to_json():
        d = _reset_draft(committed)
    return d


def view(name: str):
    """A Compose-only choice that is not part of the spec (dtype, batch, diagram detail), kept across pages."""
    return st.session_state.setdefault(_VIEW, dict(_VIEW_DEFAULTS))[name]


def _spec_of(d: dict) -> ArchitectureSpec:
    return ArchitectureSpec.from_dict(copy.deepcopy(d))


def check(d: dict, dtype: str = "float32") -> tuple:
    """(spec, None) when the draft builds (its analysis is then cached), else (None, the sentence)."""
    for category in ("neck", "head"):  # typed list text with a wrong item: the sentence names the item
        for s in kinds_.settings(category, d[category]["kind"]):
            value = d[category].get(s.name)
            if s.type == "int_list" and isinstance(value, str) and kinds_.list_problem(s, value):
                return None, kinds_.list_problem(s, value)
    try:
        spec = _spec_of(d)
        cached_stages(spec)  # stage names and combinations checked against the built backbone
        cached_spec_analysis(spec, dtype)
    except (SpecError, AnalysisError) as e:
        return None, str(e)
    return spec, None


def _backbone_only(d: dict) -> dict:
    bb = {k: v for k, v in d["backbone"].items() if k in ("name", "stages")}
    return {"input": d["input"], "backbone": bb}


def stage_choices(d: dict) -> tuple:
    """(stage names of the draft's backbone at its input, the task's default output stages, sentence or None)."""
    try:
        stages, default_outs = cached_stages(_spec_of(_backbone_only(d)))
    except (SpecError, AnalysisError) as e:
        return [], [], str(e)
    try:
        default_outs = cached_stages(_spec_of({**d, "backbone": dict(d["backbone"], out_stages=None)}))[1]
    except (SpecError, AnalysisError):
        pass
    return [s.name for s in stages], list(default_outs), None


def frozen_choices(d: dict) -> list:
    """Every module of the draft's backbone that holds parameters (bn1 too), in order, so that choosing them all
    freezes the whole backbone; for a draft that does not build, those of its backbone alone."""
    for candidate in ({**d, "backbone": dict(d["backbone"], frozen_stages=[])}, _backbone_only(d)):
        try:
            return freezable_stages(_spec_of(candidate))
        except (SpecError, AnalysisError):
            continue
    return []


def head_input(spec: ArchitectureSpec, dtype: str = "float32") -> Optional[tuple]:
    """(channels, height, width) of the last map the head of ``spec`` reads (after the neck), or None."""
    try:
        levels = cached_spec_analysis(spec, dtype).output_levels("neck")
    except (SpecError, AnalysisError, KeyError):
        return None
    shape = levels[-1]["output_shape"] if levels else None
    return tuple(shape) if shape is not None and len(shape) == 3 else None


def notice() -> Optional[str]:
    """What the last change reset or kept, in a sentence (shown until the next change)."""
    return st.session_state.get(_NOTICE)


def upload_error() -> Optional[str]:
    return st.session_state.get(_UPLOAD_ERR)


def seed(key: str, value: Any) -> None:
    """A widget shows the draft: its value set in session state before it is drawn."""
    if st.session_state.get(key) != value:
        st.session_state[key] = value


def _commit(d: dict) -> None:
    spec, error = check(d, view("dtype"))
    if spec is not None:
        set_spec(spec)
        st.session_state[_OF] = spec.to_json()


def _remember(d: dict, category: str) -> None:
    part = d[category]
    mem = st.session_state.setdefault(_MEMORY, {})
    mem[(category, part["kind"])] = {k: copy.deepcopy(v) for k, v in part.items() if k != "kind"}


def _recall(category: str, kind: str) -> dict:
    mem = st.session_state.get(_MEMORY, {})
    return {"kind": kind, **copy.deepcopy(mem.get((category, kind), kinds_.defaults(category, kind)))}


# -- the custom-stack editor ---------------------------------------------------------------------------------------
def _new_editor(rows) -> None:
    """Start the stage editor on ``rows``: its data stays the same until the next start, so the editor's edits
    (kept by Streamlit as a delta against that data) accumulate instead of snapping back."""
    version = st.session_state.get(_EDITOR, {}).get("version", 0) + 1
    st.session_state[_EDITOR] = {"version": version, "rows": [dict(r) for r in rows]}


def stack_rows(bb: dict) -> list:
    """The editor's rows of a custom backbone: the stem (when it has one) as the first row, then its stages."""
    stem = bb.get("stem")
    head = [{"block": STEM, "repeats": 1, "width": stem["width"], "stride": stem["stride"]}] if stem else []
    return head + [dict(r) for r in bb.get("stages") or []]


def _from_rows(bb: dict, rows: list) -> None:
    """The editor's rows into the draft: a first row named stem is the stem (one layer: its repeats must be 1,
    else the spec names the row); no such row, no stem."""
    if rows and rows[0]["block"] == STEM and rows[0]["repeats"] == 1:
        bb["stem"], rows = {"width": rows[0]["width"], "stride": rows[0]["stride"]}, rows[1:]
    else:
        bb["stem"] = None
    bb["stages"] = rows


def editor_key() -> str:
    return f"{K}stages.{st.session_state.get(_EDITOR, {}).get('version', 0)}"


def editor_rows() -> list:
    if _EDITOR not in st.session_state:
        _new_editor(stack_rows({"stem": default_stem(DEFAULT_STACK[0]["width"]), "stages": DEFAULT_STACK}))
    return st.session_state[_EDITOR]["rows"]


def _apply_delta(base: list, delta: dict) -> list:
    rows = [dict(r) for r in base]
    for i, changes in (delta.get("edited_rows") or {}).items():
        i = int(i)
        if 0 <= i < len(rows):
            rows[i].update(changes)
    deleted = {int(i) for i in (delta.get("deleted_rows") or [])}
    rows = [r for i, r in enumerate(rows) if i not in deleted]
    rows += [dict(r) for r in (delta.get("added_rows") or [])]
    out = []
    for r in rows:  # a row still being filled in (a cell left empty) is not a stage yet
        if any(r.get(c) is None for c in ("block", "repeats", "width", "stride")):
            continue
        out.append({"block": r["block"], "repeats": int(r["repeats"]), "width": int(r["width"]),
                    "stride": int(r["stride"])})
    return out


# -- the callbacks -------------------------------------------------------------------------------------------------
def edit(field: str, *args) -> None:
    """``on_change`` of every Compose widget: the draft takes the widget's value, then commits if it builds."""
    d = draft()
    value = st.session_state.get(args[0] if args else K + field)
    if field == "setting":
        _, category, name = args
        s = next(s for s in kinds_.settings(category, d[category]["kind"]) if s.name == name)
        value = kinds_.parse_setting_input(s, value)
        if value == d[category].get(name):
            # Nothing changed (a choice whose worked-example title moved with the map is reported as changed
            # on the next run): keep what another callback of this run said, such as a backbone switch's notice.
            return
    st.session_state.pop(_NOTICE, None)
    st.session_state.pop(_UPLOAD_ERR, None)
    if field in _VIEW_DEFAULTS:
        st.session_state.setdefault(_VIEW, dict(_VIEW_DEFAULTS))[field] = value
        if field != "dtype":
            return
    elif field == "task":
        d["task"] = value
        if d["head"]["kind"] not in kinds_.kinds("head", value):
            _remember(d, "head")
            d["head"] = _recall("head", kinds_.default_head(value))
    elif field in ("neck", "head"):
        _remember(d, field)
        d[field] = _recall(field, value)
    elif field == "setting":  # args: (widget key, category, setting name); value parsed above
        d[category][name] = value
    elif field in ("channels", "height", "width"):
        d["input"][field] = int(value)
    elif field == "pretrained":
        d["backbone"]["pretrained"] = bool(value)
    elif field == "backbone":
        _switch_backbone(d, value)
    elif field == "outs":
        names = st.session_state.get(K + "stage_names") or list(value)
        d["backbone"]["out_stages"] = [s for s in names if s in value] or None
    elif field == "frozen":
        names = st.session_state.get(K + "frozen_names") or list(value)
        d["backbone"]["frozen_stages"] = [s for s in names if s in value]
    elif field == "freeze_all":
        d["backbone"]["frozen_stages"] = frozen_choices(d) if value else []
    elif field == "stages":
        _from_rows(d["backbone"], _apply_delta(editor_rows(), value or {}))
    _commit(d)


def _own_input(name: str) -> tuple:
    if name == CUSTOM:
        return InputSpec().shape
    return tuple(catalog.info(name).input_size)


def _listing(names) -> str:
    names = list(names)
    return ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else "".join(names)


def _switch_backbone(d: dict, new: str) -> None:
    """A new backbone keeps what still applies and says, in one sentence, what it kept and what it reset:

    * the input: a size the person chose stays; one that was the old backbone's own follows the new one's;
    * output and frozen stages the new backbone also has stay, the others go (named);
    * pretrained stays where the new backbone has weights;
    * a custom stack comes back as it was when the person left it."""
    bb, old = d["backbone"], d["backbone"]["name"]
    if old == new:
        return
    if old == CUSTOM:
        st.session_state[K + "last_stack"] = copy.deepcopy({"stem": bb.get("stem"), "stages": bb.get("stages")})
    kept, reset = [], []
    cur = (d["input"]["channels"], d["input"]["height"], d["input"]["width"])
    own = _own_input(new)
    if new != CUSTOM and cur != own:
        if cur == _own_input(old):
            d["input"] = dict(zip(("channels", "height", "width"), own))
            reset.append(f"the input to {new}'s own {fmt_shape(own)}")
        else:
            kept.append(f"your input {fmt_shape(cur)} ({new}'s own is {fmt_shape(own)})")
    new_bb = {"name": new, "pretrained": False, "frozen_stages": [], "out_stages": None}
    if bb.get("pretrained"):
        if new != CUSTOM and catalog.info(new).weights:
            new_bb["pretrained"] = True
        else:
            reset.append(f"pretrained (there are no published weights for {new})")
    if new == CUSTOM:
        stack = st.session_state.get(K + "last_stack") or {
            "stem": default_stem(DEFAULT_STACK[0]["width"]), "stages": [dict(r) for r in DEFAULT_STACK]}
        new_bb.update(copy.deepcopy(stack))
        _new_editor(stack_rows(stack))
    d["backbone"] = new_bb
    out_names, _, _ = stage_choices(d)
    for field, what in (("out_stages", "output stages"), ("frozen_stages", "frozen stages")):
        names = out_names if field == "out_stages" else frozen_choices(d)
        before = list(bb.get(field) or [])
        if not before:
            continue
        stay = [s for s in before if s in names]
        gone = [s for s in before if s not in names]
        if stay:
            new_bb[field] = stay
            kept.append(f"{what} {_listing(stay)}")
        if gone:
            back = "; the task's default is used" if field == "out_stages" and not stay else ""
            reset.append(f"{what} {_listing(gone)} ({new} has no such stage{'s' if len(gone) > 1 else ''}{back})")
    parts = [f"Backbone now {new}."]
    if kept:
        parts.append(f"Kept {_listing(kept)}.")
    if reset:
        parts.append(f"Reset {_listing(reset)}.")
    if kept or reset:
        st.session_state[_NOTICE] = " ".join(parts)


def on_upload() -> None:
    """``on_change`` of the spec-file uploader: a file that builds becomes the composition and sets every widget;
    one that does not is a sentence naming the file, and nothing changes."""
    upload = st.session_state.get(K + "upload")
    st.session_state.pop(_NOTICE, None)
    st.session_state.pop(_UPLOAD_ERR, None)
    if upload is None:
        return
    try:
        loaded = ArchitectureSpec.from_json(upload.getvalue()[:SPEC_BYTES].decode("utf-8", "replace"))
    except SpecError as e:
        st.session_state[_UPLOAD_ERR] = f"{upload.name}: {e}"
        return
    spec, error = check(loaded.to_dict(), view("dtype"))
    if spec is None:
        st.session_state[_UPLOAD_ERR] = f"{upload.name}: {error}"
        return
    set_spec(spec)
    _reset_draft(spec)
    st.session_state[_NOTICE] = f"Loaded {upload.name}: {spec.summary()}."
