"""Streamlit glue for the pages that run a network (Feature maps, Explain, Predict): which model, which weights,
which images — shared by the three pages, kept in session state and the URL (``?source=``), so switching pages
loses nothing.

Models are cached for every session (``st.cache_resource``) keyed by what they are and which weights they hold;
they are in eval mode with gradients off and are never changed afterwards (the `explorer.vis` and
`explorer.predict` functions work on private copies where they need hooks).
"""
from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pandas as pd
import streamlit as st
import torch
from PIL import Image
from torch import nn

from .. import catalog, weights
from ..images import SAMPLES, ImageError, load_image, sample_image
from ..model_choice import ModelChoice, digit_box, digit_image, digit_input, digit_samples, feature_layers
from ..samples import DIGIT_SETS
from ..spec import SpecError
from .composition import current_spec, set_spec
from .format import fmt_quoted, md_escape
from .state import current_selection

__all__ = ["LoadedModel", "InputImage", "network", "model_choice", "loaded_model", "weights_badge", "input_images",
           "layer_choices", "class_scores", "cached_attribution", "cached_attention", "cached_feature_maps",
           "default_cam_layer"]

SOURCES = ("composition", "catalog", *weights.READY_MODELS)  # then the ready models: LeNet-5, the GAP CNN
_SOURCE, _SOURCE_READ = "run.source", "run.source_read"
_UPLOADS = "run.weights"  # choice id -> (file name, sha256, bytes): the person's uploaded weights
_IMAGES = "run.images"  # file_id -> (file name, picture): the person's uploaded photos
_IMAGE_ERRORS = "run.image_errors"
_PRETRAINED = "run.pretrained"  # use downloaded weights for a catalog model
MAX_KEPT_UPLOADS = 2  # weights files kept per session (up to 600 MB each), the latest networks' only
MAX_KEPT_SIDE = 1024  # uploaded photos are kept at most this size (preprocessing crops to ≤ 518 anyway)


# -- which model ---------------------------------------------------------------------------------------------------
def _source_label(source: str) -> str:
    if source == "composition":
        return f"Your composition: {current_spec().summary()}"
    if source == "catalog":
        return f"Catalog model: {current_selection().model} (as published)"
    ready = weights.READY_MODELS[source]
    return f"Ready: {ready.title} ({ready.accuracy:.1%} on held-out digits)"


def _on_source_change(key: str) -> None:
    st.session_state[_SOURCE] = st.session_state[key]
    st.query_params["source"] = st.session_state[key]


def model_choice(page: str) -> ModelChoice:
    """The radio "which network runs" (one choice shared by the three pages) and the choice it stands for.

    Widget keys are per page (``page``): a widget drawn under the same key on the next page keeps its state but
    the browser draws it afresh at its default, so each page seeds its own widget from the shared choice."""
    if not st.session_state.get(_SOURCE_READ):  # the link decides on a session's first run
        st.session_state[_SOURCE_READ] = True
        asked = st.query_params.get("source")
        st.session_state[_SOURCE] = asked if asked in SOURCES else "composition"
        if asked and asked not in SOURCES:
            st.error(md_escape(f"The link asks for source='{fmt_quoted(asked)}', which is not one of "
                               f"{', '.join(SOURCES)}; showing your composition."), icon=":material/link_off:")
    source = st.session_state[_SOURCE]
    if st.query_params.get("source") != source:
        st.query_params["source"] = source
    widget = f"w.{page}.source"
    if st.session_state.get(widget) != source:
        st.session_state[widget] = source
    labels = {s: _source_label(s) for s in SOURCES}  # computed now: format_func may run outside this run
    st.radio("Network", SOURCES, key=widget, format_func=labels.get, on_change=_on_source_change, args=(widget,),
             horizontal=True, help="Your composition from Compose; the model picked on Layers, whole, as "
                                   "torchvision publishes it; or a model that ships trained with the app.")
    if source == "composition":
        return ModelChoice("composition", current_spec().to_json())
    if source == "catalog":
        return ModelChoice("catalog", current_selection().model)
    return ModelChoice("ready", source)


@st.cache_data(show_spinner="Finding the layers with feature maps…", max_entries=64)
def _layers(model_key: str, _choice: ModelChoice, _model: nn.Module):
    return feature_layers(_choice, _model)


def layer_choices(loaded: "LoadedModel") -> tuple[list[tuple[str, tuple]], list[tuple[str, tuple]]]:
    """(stages, every layer) with a spatial map, as (module path, C×H×W), cached per network."""
    return _layers(loaded.cache_key, _choice=loaded.choice, _model=loaded.model)


# -- which weights ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class LoadedModel:
    choice: ModelChoice
    model: nn.Module  # shared: never train, hook or move it
    weights_key: str  # "random" | "trained" | "pretrained" | "upload:<sha256>" (part of every cache key)
    label: str  # what the page shows, e.g. "untrained (random weights)"
    trained: bool
    labels: list[str] | None  # class names

    @property
    def cache_key(self) -> str:
        return f"{self.choice.kind}|{self.choice.key}|{self.weights_key}"

    def label_of(self, index: int) -> str:
        return self.labels[index] if self.labels and 0 <= index < len(self.labels) else f"class {index}"


@st.cache_resource(show_spinner="Building the model…", max_entries=8)
def _model(kind: str, key: str, weights_key: str, _data: bytes | None = None, _filename: str = "") -> nn.Module:
    choice = ModelChoice(kind, key)
    model = choice.build()
    report = None
    if weights_key == "pretrained":
        if kind == "catalog":
            report = weights.load_pretrained(model, key)
        else:
            report = weights.load_pretrained_backbone(model, choice.spec)
    elif weights_key.startswith("upload:"):
        report = weights.load_weights(model, _data, _filename)
    # What the loader adapted (a prefix removed, fp16 converted, parts left random), for the badge to say; set
    # before the model is shared, like spec_json.
    model.__dict__["weights_notes"] = list(report.notes) if report is not None else []
    return model.eval().requires_grad_(False)


def _choice_id(choice: ModelChoice) -> str:
    return f"{choice.kind}:{hashlib.sha1(choice.key.encode()).hexdigest()[:16]}"


def _mismatch_table(mismatches: list) -> None:
    if mismatches:
        st.dataframe(pd.DataFrame([dataclasses.asdict(m) for m in mismatches]), hide_index=True,
                     width="stretch", height=min(400, 38 + 35 * len(mismatches)))


def _download(name: str) -> None:
    bar = st.progress(0.0, text=f"Downloading {name}'s weights…")

    def progress(done: int, total: int) -> None:
        frac = done / total if total else 0.0
        bar.progress(min(frac, 1.0), text=f"Downloading {name}'s weights… {done / 2**20:.1f} of "
                                          f"{total / 2**20:.1f} MB")

    try:
        weights.download_pretrained(name, progress=progress)
    except weights.WeightsError as e:
        bar.empty()
        st.session_state[f"run.download_error.{name}"] = str(e)
    else:
        bar.progress(1.0, text="Downloaded.")
        st.session_state.pop(f"run.download_error.{name}", None)


def _pretrained_controls(choice: ModelChoice, page: str) -> bool:
    """The "use pretrained weights" switch for this choice; True when they are wanted."""
    name = choice.backbone_name
    if not name or weights.weights_entry(name) is None:
        return False
    what = "backbone" if choice.kind == "composition" else "weights"
    if choice.kind == "composition":
        wanted = st.toggle(f"Pretrained {what} ({catalog.info(name).weights})", value=choice.spec.backbone.pretrained,
                           key=f"w.{page}.pretrained.{_choice_id(choice)}",
                           help="Part of the composition (also on Compose); the neck and head keep random weights.")
        if wanted != choice.spec.backbone.pretrained:
            set_spec(current_spec().replace(backbone={**current_spec().to_dict()["backbone"], "pretrained": wanted}))
            st.rerun()
    else:
        wanted = st.toggle(f"Pretrained weights ({catalog.info(name).weights})",
                           value=st.session_state.get(_PRETRAINED, True), key=f"w.{page}.pretrained.{name}")
        st.session_state[_PRETRAINED] = wanted
    if wanted and weights.cached_path(name) is None:
        if st.button(f"Download {name}'s pretrained weights", icon=":material/download:",
                     key=f"w.{page}.download.{name}", help="Into torchvision's cache; the only thing the app downloads."):
            _download(name)
            if weights.cached_path(name) is not None:
                st.rerun()
        if st.session_state.get(f"run.download_error.{name}"):
            st.error(md_escape(st.session_state[f"run.download_error.{name}"]), icon=":material/cloud_off:")
        else:
            st.caption(md_escape(weights.offline_hint(name)))
    return wanted


def _upload_controls(choice: ModelChoice, page: str) -> None:
    cid = _choice_id(choice)
    up = st.file_uploader("Upload weights for this network (.safetensors, or .pt / .pth saved from state_dict)",
                          type=["safetensors", "pt", "pth", "bin"], key=f"w.{page}.weights.{cid}",
                          help="Loaded with strict=True into the model the explorer builds; .pt files only with "
                               "weights_only=True (no code is run).")
    if up is not None and st.session_state.get("run.upload_seen") != (cid, up.file_id):
        st.session_state["run.upload_seen"] = (cid, up.file_id)
        data = up.getvalue()
        digest = hashlib.sha256(data).hexdigest()
        try:
            _model(choice.kind, choice.key, f"upload:{digest}", _data=data, _filename=up.name)
        except weights.WeightsError as e:  # kept without the exception: its traceback would hold the bytes
            st.session_state["run.upload_error"] = (cid, str(e), e.mismatches)
        else:
            kept = st.session_state.setdefault(_UPLOADS, {})
            kept.pop(cid, None)
            kept[cid] = (up.name, digest, data)
            while len(kept) > MAX_KEPT_UPLOADS:  # each edit of a composition is a new network: drop the oldest
                kept.pop(next(iter(kept)))
            st.session_state.pop("run.upload_error", None)
    error = st.session_state.get("run.upload_error")
    if error and error[0] == cid:
        st.error(md_escape(error[1]), icon=":material/error:")
        _mismatch_table(error[2])
    kept = st.session_state.get(_UPLOADS, {}).get(cid)
    if kept and st.button(f"Stop using {kept[0]}", key=f"w.{page}.forget.{cid}"):
        st.session_state[_UPLOADS].pop(cid, None)
        st.rerun()


def loaded_model(choice: ModelChoice, page: str) -> LoadedModel:
    """The weights panel (an expander headed by what the model holds) and the cached model it yields; a model too
    large to run here, or one that cannot be built, stops the page with its sentence."""
    try:
        return _loaded_model(choice, page)
    except ValueError as e:  # WeightsError is handled inside; this is a model the server will not build
        st.error(md_escape(str(e)), icon=":material/memory:")
        st.stop()


def _loaded_model(choice: ModelChoice, page: str) -> LoadedModel:
    cid = _choice_id(choice)
    name = choice.backbone_name
    with st.expander("Weights", expanded=False, icon=":material/tune:") as box:
        wanted = _pretrained_controls(choice, page)
        _upload_controls(choice, page)
    kept = st.session_state.get(_UPLOADS, {}).get(cid)
    if kept:
        filename, digest, data = kept
        try:
            model = _model(choice.kind, choice.key, f"upload:{digest}", _data=data, _filename=filename)
        except weights.WeightsError as e:  # evicted from the cache and no longer loads: say so, keep going
            st.error(md_escape(str(e)), icon=":material/error:")
        else:
            return LoadedModel(choice, model, f"upload:{digest}", f"uploaded weights: {filename}", True,
                               choice.labels(pretrained=False))
    if wanted and weights.cached_path(name) is not None:
        try:
            model = _model(choice.kind, choice.key, "pretrained")
        except weights.WeightsError as e:
            box.error(md_escape(str(e)), icon=":material/error:")
        else:
            whole = choice.kind == "catalog"
            label = (f"pretrained: {catalog.info(name).weights}" if whole else
                     f"pretrained backbone ({catalog.info(name).weights})")  # the notes say what stays random
            return LoadedModel(choice, model, "pretrained", label, whole, choice.labels(pretrained=whole))
    if choice.kind == "ready":
        return LoadedModel(choice, _model(choice.kind, choice.key, "trained"), "trained",
                           f"trained: {choice.ready.path.name}", True, choice.labels())
    return LoadedModel(choice, _model(choice.kind, choice.key, "random"), "random", "untrained (random weights)",
                       False, None)


def network(page: str) -> tuple[ModelChoice, "LoadedModel"]:
    """The top of each page that runs a network: which network, its weights panel, and one line saying what the
    weights are. Returns the choice and the loaded (cached, shared) model."""
    choice = model_choice(page)
    if choice.kind == "ready":
        st.caption(md_escape(choice.ready.description))
    loaded = loaded_model(choice, page)
    weights_badge(loaded)
    return choice, loaded


def weights_badge(loaded: LoadedModel) -> None:
    """One line under the network choice: what the weights are; a warning colour when they are random."""
    notes = loaded.model.__dict__.get("weights_notes") or []
    text = md_escape(f"Weights: {loaded.label}" + (f" ({'; '.join(notes)})" if notes else ""))
    if loaded.trained:
        st.caption(f":green-badge[:material/check: trained] {text}")
    else:
        st.caption(f":orange-badge[:material/warning: untrained] {text} — outputs, maps and attributions show what "
                   "random weights do; open **Weights** to download or upload trained ones, or pick a ready "
                   "model.")


# -- which images ----------------------------------------------------------------------------------------------
@dataclasses.dataclass
class InputImage:
    name: str
    picture: Image.Image  # what the person sees (RGB)
    x: torch.Tensor  # (1, C, H, W), the model's own preprocessing applied
    steps: str  # the preprocessing, in one line
    truth: str | None = None  # the known label (held-out digits)
    box: tuple[int, int, int, int] | None = None  # where the digit is, for digits on a canvas (top, left, bottom, right)

    @property
    def digest(self) -> str:
        return hashlib.sha1(self.x.numpy().tobytes()).hexdigest()

    def shown(self) -> np.ndarray:
        """The model's input as the person should see it (H×W×3 uint8): the crop, without the normalisation."""
        x = self.x[0].float()
        lo, hi = float(x.min()), float(x.max())
        a = ((x - lo) / (hi - lo) if hi > lo else torch.zeros_like(x)).permute(1, 2, 0).numpy()
        a = (a * 255).round().astype(np.uint8)
        return np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a[..., :3]


def _on_upload(key: str, single_key: str) -> None:
    files = st.session_state.get(key) or []
    kept, errors = {}, []
    old = st.session_state.get(_IMAGES, {})
    for f in files:
        if f.file_id in old:
            kept[f.file_id] = old[f.file_id]
            continue
        try:
            picture = load_image(f.getvalue(), f.name)
        except ImageError as e:
            errors.append(str(e))
            continue
        picture.thumbnail((MAX_KEPT_SIDE, MAX_KEPT_SIDE))
        kept[f.file_id] = (f.name, picture)
    new = [fid for fid in kept if fid not in old]
    st.session_state[_IMAGES] = kept
    st.session_state[_IMAGE_ERRORS] = errors
    if new:  # a page showing one image shows the newest upload
        st.session_state[single_key] = f"upload:{new[-1]}"


def _sample_pictures(choice: ModelChoice) -> dict[str, tuple]:
    """id -> (name, picture, true label or None, exact input or None, digit box or None) of the bundled samples."""
    if choice.kind == "ready":
        dataset, out = choice.ready.dataset, {}
        for i, y in digit_samples(dataset=dataset):
            x, _ = digit_input(i, dataset)
            out[f"digit:{i}"] = (f"held-out digit #{i} (a {y})", digit_image(i, dataset), str(y), x,
                                 digit_box(i, dataset))
        return out
    return {f"photo:{n}": (title, None, None, None, None) for n, title in SAMPLES.items()}


def input_images(choice: ModelChoice, page: str, multiple: bool = True) -> list[InputImage]:
    """Sample pictures (held-out digits for the digit model, scikit-image's photos otherwise) and the person's
    uploads (kept across pages), each with the model's own preprocessing; a file that cannot be used gets its
    sentence. ``multiple=False``: one picture, chosen from the samples and the uploads."""
    samples = _sample_pictures(choice)
    uploads = {f"upload:{fid}": (name, picture, None, None, None)
               for fid, (name, picture) in st.session_state.get(_IMAGES, {}).items()}
    single_key = f"w.{page}.one"
    c_pick, c_up = st.columns([1, 1])
    with c_up:
        key = f"w.{page}.upload"
        st.file_uploader("Upload images (PNG, JPEG, WebP, BMP, TIFF)", type=None, accept_multiple_files=True,
                         key=key, on_change=_on_upload, args=(key, single_key),
                         help="Several at once; up to 20 MB and 40 million pixels each. Kept while you switch pages.")
        if uploads and not st.session_state.get(key):
            st.caption(md_escape("Uploaded earlier: " + ", ".join(v[0] for v in uploads.values())))
            if st.button("Remove uploaded images", key=f"w.{page}.clear"):
                st.session_state[_IMAGES] = {}
                st.rerun()
    with c_pick:
        what = "Digits" if choice.kind == "ready" else "Sample photos"
        if multiple:
            default = list(samples)[:8] if choice.kind == "ready" else ["photo:chelsea"]
            which = choice.key if choice.kind == "ready" else choice.kind  # each ready model has its own digits
            picked = st.multiselect(what, list(samples), default=default, key=f"w.{page}.samples.{which}",
                                    format_func=lambda k: samples[k][0],
                                    help="Your uploads are added to these.") + list(uploads)
        else:
            options = {**samples, **uploads}
            if st.session_state.get(single_key) not in options:
                st.session_state[single_key] = next(iter(options))
            picked = [st.selectbox("Image", list(options), key=single_key,
                                   format_func=lambda k: ("uploaded: " if k.startswith("upload:") else "")
                                   + options[k][0])]
    for msg in st.session_state.get(_IMAGE_ERRORS, []):
        st.error(md_escape(msg), icon=":material/broken_image:")

    out = []
    for k in picked:
        name, picture, truth, x, box = {**samples, **uploads}[k]
        if x is not None:
            out.append(InputImage(name, picture, x, "a held-out digit as in training: "
                                  + DIGIT_SETS[choice.ready.dataset].about, truth, box))
            continue
        if picture is None:
            picture = sample_image(k.split(":", 1)[1])
        try:
            x, steps = choice.preprocess(picture)
        except (ImageError, SpecError) as e:
            st.error(md_escape(f"{name}: {e}"), icon=":material/broken_image:")
            continue
        out.append(InputImage(name, picture, x, steps, truth))
    return out


# -- cached attributions ---------------------------------------------------------------------------------------
@st.cache_data(show_spinner=False, max_entries=128)
def _attribution(model_key: str, image_digest: str, method: str, target: int | None, layer: str | None,
                 steps: int, window: int | None, _model: nn.Module, _x: torch.Tensor, _progress=None):
    from ..vis.attribution import attribute

    return attribute(_model, _x, method, target=target, layer=layer, progress=_progress, steps=steps, window=window)


def cached_attribution(loaded: LoadedModel, image: InputImage, method: str, target: int | None, layer: str | None,
                       steps: int = 32, window: int | None = None, progress=None) -> torch.Tensor:
    """The (H, W) attribution map in [0, 1], computed once per model, weights, image and setting for everyone."""
    return _attribution(loaded.cache_key, image.digest, method, target, layer, steps, window,
                        _model=loaded.model, _x=image.x, _progress=progress)


@st.cache_data(show_spinner=False, max_entries=128)
def _class_scores(model_key: str, image_digest: str, _model: nn.Module, _x: torch.Tensor) -> torch.Tensor:
    from ..predict import predict

    return predict(_model, _x, task="classification").probabilities[0]


def class_scores(loaded: LoadedModel, image: InputImage) -> torch.Tensor:
    """The softmax over the classes (K,) for one image, computed once per model, weights and image."""
    return _class_scores(loaded.cache_key, image.digest, _model=loaded.model, _x=image.x)


@st.cache_data(show_spinner="Reading the attention blocks…", max_entries=64)
def _attention(model_key: str, image_digest: str, _model: nn.Module, _x: torch.Tensor) -> list:
    from ..vis.attribution import attention_maps

    return attention_maps(_model, _x)


def cached_attention(loaded: LoadedModel, image: InputImage) -> list:
    """`explorer.vis.attribution.attention_maps` of one image, computed once per model, weights and image."""
    return _attention(loaded.cache_key, image.digest, _model=loaded.model, _x=image.x)


@st.cache_data(show_spinner="Computing the feature maps…", max_entries=64)
def _feature_maps(model_key: str, image_digest: str, layer: str, _model: nn.Module, _x: torch.Tensor):
    from ..vis.features import feature_maps

    return feature_maps(_model, _x, layer)


def cached_feature_maps(loaded: LoadedModel, image: InputImage, layer: str) -> torch.Tensor:
    """The (C, H, W) output of ``layer`` for one image, computed once per model, weights, image and layer."""
    return _feature_maps(loaded.cache_key, image.digest, layer, _model=loaded.model, _x=image.x)


@st.cache_data(show_spinner=False, max_entries=64)
def _default_layer(model_key: str, shape: tuple, _model: nn.Module) -> str:
    from ..vis.attribution import default_target_layer

    return default_target_layer(_model, shape)


def default_cam_layer(loaded: LoadedModel) -> str:
    """Grad-CAM's default target: the last spatial layer of the backbone."""
    return _default_layer(loaded.cache_key, tuple(loaded.choice.input_shape), _model=loaded.model)
