"""Streamlit glue for the pages that run a network (Feature maps, Explain, Predict): which network, which weights,
which images — shared by the three pages, kept in session state and the URL (``?source=``), so switching pages
loses nothing. The network is the composition, the catalog model, a ready model or a finished run of the Train page
(``?source=run:<id>``, from the runs folder of `explorer.ui.training.manager`); for a digit network, Predict also
offers a canvas to draw a digit on (`drawn_digit`).

The network is an `explorer.network.Network`; its model is built by `built_network`, the one model cache of the
app (Receptive fields uses it too, through `explorer.ui.vis`): at most `MAX_CACHED_NETWORKS` built networks for
every session together, keyed by what they are and which weights they hold. They are in eval mode with gradients
off and are never changed afterwards (the `explorer.vis` and `explorer.predict` functions work on private copies
where they need hooks).
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
from ..images import (SAMPLES, ImageError, digit_box, digit_image, digit_input, digit_samples, load_image,
                      sample_image)
from ..network import BuiltNetwork, Network, feature_layers
from ..samples import DIGIT_SETS
from ..spec import SpecError
from . import current_selection, current_spec, set_spec
from .format import fmt_quoted, md_escape
from .widgets import upload_mb

__all__ = ["MAX_CACHED_NETWORKS", "built_network", "InputImage", "network", "chosen_network", "loaded_network",
           "weights_badge", "input_images", "drawn_digit", "drawing_picture", "RUN_PREFIX", "layer_choices",
           "class_scores", "cached_attribution", "cached_attention", "cached_feature_maps", "default_cam_layer"]

SOURCES = ("composition", "catalog", *weights.READY_MODELS)  # then the ready models: LeNet-5, the GAP CNN
_SOURCE, _SOURCE_READ = "run.source", "run.source_read"
_UPLOADS = "run.weights"  # network id -> (file name, sha256, bytes): the person's uploaded weights
_IMAGES = "run.images"  # file_id -> (file name, picture): the person's uploaded photos
_IMAGE_ERRORS = "run.image_errors"
_PRETRAINED = "run.pretrained"  # use downloaded weights for a catalog model
MAX_KEPT_UPLOADS = 2  # weights files kept per session (up to 600 MB each), the latest networks' only
MAX_KEPT_SIDE = 1024  # uploaded photos are kept at most this size (preprocessing crops to ≤ 518 anyway)
# Built networks kept for all sessions together, in the one model cache (the README's "Memory to plan"): each
# costs its fp32 size (resnet18 45 MB, VGG16 550 MB; at most `network.MAX_RUN_PARAMS`, 800 MB).
MAX_CACHED_NETWORKS = 8


# -- the one model cache ---------------------------------------------------------------------------------------
@st.cache_resource(show_spinner="Building the model…", max_entries=MAX_CACHED_NETWORKS)
def _built(cache_key: str, _network: Network) -> BuiltNetwork:
    return _network.build()


def built_network(network: Network) -> BuiltNetwork:
    """``network.build()``, once for every session: the app's one model cache, holding at most
    `MAX_CACHED_NETWORKS` (8) built networks (the least recently used goes first). ValueError for a network too
    large to run here; `weights.WeightsError` for weights that do not load (nothing is cached then)."""
    return _built(network.cache_key, _network=network)


# -- which network ---------------------------------------------------------------------------------------------
RUN_PREFIX = "run:"  # ?source=run:<id>: a finished run of the Train page
TRAINED = "trained"  # the radio's option for the runs; the run itself is picked below it
MAX_LISTED_RUNS = 20  # the newest finished runs offered in the choice (a link opens any finished run)
_LAST_RUN = "run.last_run"  # the run the choice showed last, brought back when "Trained in the app" is picked again


def _source_label(source: str, runs: dict[str, Network]) -> str:
    if source == "composition":
        return f"Your composition: {current_spec().summary()}"
    if source == "catalog":
        return f"Catalog model: {current_selection().model} (as published)"
    if source == TRAINED:
        return f"Trained in the app ({len(runs)} finished run{'s' if len(runs) != 1 else ''})"
    ready = weights.READY_MODELS[source]
    return f"Ready: {ready.title} ({ready.accuracy:.1%} on held-out digits)"


def _run_network(run_id: str) -> Network:
    """The finished run ``run_id`` of the runs folder as a network; `TrainingError` (a sentence) if it is not one."""
    from ..training import TrainingError
    from ..training.runfolder import RUN_ID
    from .training import manager

    root = manager().root
    if not RUN_ID.fullmatch(run_id):  # fullmatch: "$" would let a trailing newline through
        raise TrainingError(f"There is no run '{fmt_quoted(run_id)}' in {root}; pick a finished run on "
                            "Train.")
    return Network.trained(root / run_id)


def _finished_runs() -> dict[str, Network]:
    """source -> network of this session's newest finished runs (`MAX_LISTED_RUNS`), newest first. Other
    people's runs are not listed (a classroom shares one server); a link to one (`?source=run:<id>`) still opens."""
    from ..training import TrainingError, default_runs_root
    from .training import manager, owner

    out = {}
    if not default_runs_root().is_dir():  # nothing trained on this machine yet: no runs folder to make
        return out
    for status in manager().list(owner=owner()):
        if status.get("state") != "finished":
            continue
        try:
            out[RUN_PREFIX + status["run_id"]] = _run_network(status["run_id"])
        except (TrainingError, ValueError):  # files removed by hand: not offered
            continue
        if len(out) >= MAX_LISTED_RUNS:
            break
    return out


def _valid_source(source: str | None) -> str | None:
    """The sentence saying why ``source`` (from a link) cannot be shown, or None when it can."""
    if source in SOURCES:
        return None
    if source and source.startswith(RUN_PREFIX):
        try:
            _run_network(source[len(RUN_PREFIX):])
        except ValueError as e:  # TrainingError, SpecError: the run's own sentence
            return str(e)
        return None
    return (f"The link asks for source='{fmt_quoted(source)}', which is not one of {', '.join(SOURCES)} or "
            "run:<id> of a finished run; showing your composition.")


def _set_source(source: str) -> None:
    st.session_state[_SOURCE] = source
    st.query_params["source"] = source
    if source.startswith(RUN_PREFIX):
        st.session_state[_LAST_RUN] = source


def _on_source_change(key: str, runs: tuple[str, ...]) -> None:
    picked = st.session_state[key]
    if picked == TRAINED:  # the run shown last, if it is still there, else the newest
        last = st.session_state.get(_LAST_RUN)
        picked = last if last in runs else runs[0]
    _set_source(picked)


def _on_run_change(key: str) -> None:
    _set_source(st.session_state[key])


def chosen_network(page: str) -> Network:
    """The radio "which network runs" (one choice shared by the three pages) and the network it stands for, with
    its own weights (random, a ready model's trained ones, or a run's); the weights panel may give it others.

    ``?source=`` decides on a session's first run, and whenever a link (Train's "Predict with it") arrives with
    another source than the session shows; one that cannot be shown is a sentence, and the composition is shown.

    Widget keys are per page (``page``): a widget drawn under the same key on the next page keeps its state but
    the browser draws it afresh at its default, so each page seeds its own widget from the shared choice."""
    asked = st.query_params.get("source")
    first = not st.session_state.get(_SOURCE_READ)
    if first or (asked and asked != st.session_state.get(_SOURCE)):
        st.session_state[_SOURCE_READ] = True
        problem = _valid_source(asked) if asked else None
        st.session_state[_SOURCE] = asked if asked and problem is None else "composition"
        if problem:
            st.error(md_escape(problem), icon=":material/link_off:")
    source = st.session_state[_SOURCE]
    runs = _finished_runs()
    if source.startswith(RUN_PREFIX) and source not in runs:
        try:  # a finished run older than the listed ones, opened by a link
            runs[source] = _run_network(source[len(RUN_PREFIX):])
        except ValueError as e:  # removed (pruned) since: say so, show the composition
            st.error(md_escape(str(e)), icon=":material/link_off:")
            source = st.session_state[_SOURCE] = "composition"
    last = st.session_state.get(_LAST_RUN)
    if last and last not in runs and last != source:  # a run opened by a link stays offered in this session
        try:
            runs[last] = _run_network(last[len(RUN_PREFIX):])
        except ValueError:  # removed since
            st.session_state.pop(_LAST_RUN, None)
    if st.query_params.get("source") != source:
        st.query_params["source"] = source
    if source.startswith(RUN_PREFIX):
        st.session_state[_LAST_RUN] = source
    options = SOURCES + ((TRAINED,) if runs else ())
    shown = TRAINED if source.startswith(RUN_PREFIX) else source
    widget = f"w.{page}.source"
    if st.session_state.get(widget) != shown:
        st.session_state[widget] = shown
    labels = {s: _source_label(s, runs) for s in options}  # computed now: format_func may run outside this run
    st.radio("Network", options, key=widget, format_func=labels.get, on_change=_on_source_change,
             args=(widget, tuple(runs)), horizontal=True,
             help="Your composition from Compose; the model picked on Layers, whole, as torchvision publishes it; "
                  "a model that ships trained with the app; or a run you finished on Train.")
    if source == "composition":
        return Network.composition(current_spec())
    if source == "catalog":
        return Network.catalog(current_selection().model)
    if source.startswith(RUN_PREFIX):
        picker = f"w.{page}.run"
        if st.session_state.get(picker) != source:
            st.session_state[picker] = source
        names = {r: f"{n.label} (run {n.key})" for r, n in runs.items()}  # two runs of one config differ in id
        st.selectbox("Run", list(runs), key=picker, format_func=names.get, on_change=_on_run_change,
                     args=(picker,), help="The newest finished runs of the Train page, with their test score.")
        return runs[source]
    return Network.ready(source)


@st.cache_data(show_spinner="Finding the layers with feature maps…", max_entries=64)
def _layers(model_key: str, _network: Network, _model: nn.Module):
    return feature_layers(_network, _model)


def layer_choices(built: BuiltNetwork) -> tuple[list[tuple[str, tuple]], list[tuple[str, tuple]]]:
    """(stages, every layer) with a spatial map, as (module path, C×H×W), cached per network."""
    return _layers(built.cache_key, _network=built.network, _model=built.model)


# -- which weights ---------------------------------------------------------------------------------------------
def _network_id(network: Network) -> str:
    """The architecture, whatever its weights: uploads and switches are kept per architecture."""
    return f"{network.kind}:{hashlib.sha1(network.key.encode()).hexdigest()[:16]}"


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


def _pretrained_controls(network: Network, page: str) -> bool:
    """The "use pretrained weights" switch for this network; True when they are wanted."""
    name = network.backbone_name
    if not name or weights.weights_entry(name) is None:
        return False
    spec = network.spec
    if spec is not None:  # the switch is part of the composition (also on Compose)
        wanted = st.toggle(f"Pretrained backbone ({catalog.info(name).weights})", value=spec.backbone.pretrained,
                           key=f"w.{page}.pretrained.{_network_id(network)}",
                           help="Part of the composition (also on Compose); the neck and head keep random weights.")
        if wanted != spec.backbone.pretrained:
            set_spec(spec.replace(backbone={**spec.to_dict()["backbone"], "pretrained": wanted}))
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


def _upload_controls(network: Network, page: str) -> None:
    nid = _network_id(network)
    up = st.file_uploader("Upload weights for this network (.safetensors, or .pt / .pth saved from state_dict)",
                          type=["safetensors", "pt", "pth", "bin"], key=f"w.{page}.weights.{nid}",
                          max_upload_size=upload_mb("weights"),
                          help="Loaded with strict=True into the model the explorer builds; .pt files only with "
                               "weights_only=True (no code is run).")
    if up is not None and st.session_state.get("run.upload_seen") != (nid, up.file_id):
        st.session_state["run.upload_seen"] = (nid, up.file_id)
        data = up.getvalue()
        digest = hashlib.sha256(data).hexdigest()
        try:
            built_network(network.with_upload(up.name, data, digest))
        except weights.WeightsError as e:  # kept without the exception: its traceback would hold the bytes
            st.session_state["run.upload_error"] = (nid, str(e), e.mismatches)
        else:
            kept = st.session_state.setdefault(_UPLOADS, {})
            kept.pop(nid, None)
            kept[nid] = (up.name, digest, data)
            while len(kept) > MAX_KEPT_UPLOADS:  # each edit of a composition is a new network: drop the oldest
                kept.pop(next(iter(kept)))
            st.session_state.pop("run.upload_error", None)
    error = st.session_state.get("run.upload_error")
    if error and error[0] == nid:
        st.error(md_escape(error[1]), icon=":material/error:")
        _mismatch_table(error[2])
    kept = st.session_state.get(_UPLOADS, {}).get(nid)
    if kept and st.button(f"Stop using {kept[0]}", key=f"w.{page}.forget.{nid}"):
        st.session_state[_UPLOADS].pop(nid, None)
        st.rerun()


def loaded_network(network: Network, page: str) -> BuiltNetwork:
    """The weights panel (an expander headed by what the model holds) and the cached network it yields, with the
    weights chosen there; a network too large to run here, or one that cannot be built, stops the page with its
    sentence."""
    try:
        return _loaded_network(network, page)
    except ValueError as e:  # WeightsError is handled inside; this is a model the server will not build
        st.error(md_escape(str(e)), icon=":material/memory:")
        st.stop()


def _loaded_network(network: Network, page: str) -> BuiltNetwork:
    with st.expander("Weights", expanded=False, icon=":material/tune:") as box:
        wanted = _pretrained_controls(network, page)
        _upload_controls(network, page)
    kept = st.session_state.get(_UPLOADS, {}).get(_network_id(network))
    if kept:
        filename, digest, data = kept
        try:
            return built_network(network.with_upload(filename, data, digest))
        except weights.WeightsError as e:  # evicted from the cache and no longer loads: say so, keep going
            st.error(md_escape(str(e)), icon=":material/error:")
    if wanted and weights.cached_path(network.backbone_name) is not None:
        try:
            return built_network(network.with_pretrained())
        except weights.WeightsError as e:
            box.error(md_escape(str(e)), icon=":material/error:")
    return built_network(network)


def network(page: str) -> BuiltNetwork:
    """The top of each page that runs a network: which network, its weights panel, and one line saying which
    network runs (composition, catalog or ready model) and what its weights are. Returns the built (cached,
    shared) network."""
    try:
        chosen = chosen_network(page)
    except ValueError as e:  # a link naming a model that is not there
        st.error(md_escape(str(e)), icon=":material/error:")
        st.stop()
    if chosen.description:
        st.caption(md_escape(chosen.description))
    built = loaded_network(chosen, page)
    weights_badge(built)
    return built


def weights_badge(built: BuiltNetwork) -> None:
    """One line under the network choice: which network runs and what its weights are (the loader's notes too);
    a warning colour when they are not all trained."""
    net = built.network
    notes = built.notes
    text = md_escape(f"{net.headline} · Weights: {net.weights_label}" + (f" ({'; '.join(notes)})" if notes else ""))
    if net.fully_trained:
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


def _sample_pictures(network: Network) -> dict[str, tuple]:
    """id -> (name, picture, true label or None, exact input or None, digit box or None) of the bundled samples:
    the held-out digits of the data set a ready model or a run was trained on, else scikit-image's photos."""
    if network.dataset:
        dataset, out = network.dataset, {}
        for i, y in digit_samples(dataset=dataset):
            x, _ = digit_input(i, dataset)
            box = digit_box(i, dataset)
            if network.dataset_input is not None:  # a run whose input is not the digits' own (size, channels)
                own = x.shape[-2:]
                x = network.dataset_input(x)
                box = box if x.shape[-2:] == own else None  # the box is in the digits' own pixels
            out[f"digit:{i}"] = (f"held-out digit #{i} (a {y})", digit_image(i, dataset), str(y), x, box)
        return out
    return {f"photo:{n}": (title, None, None, None, None) for n, title in SAMPLES.items()}


def input_images(network: Network, page: str, multiple: bool = True) -> list[InputImage]:
    """Sample pictures (held-out digits for the digit model, scikit-image's photos otherwise) and the person's
    uploads (kept across pages), each with the model's own preprocessing; a file that cannot be used gets its
    sentence. ``multiple=False``: one picture, chosen from the samples and the uploads."""
    samples = _sample_pictures(network)
    uploads = {f"upload:{fid}": (name, picture, None, None, None)
               for fid, (name, picture) in st.session_state.get(_IMAGES, {}).items()}
    single_key = f"w.{page}.one"
    c_pick, c_up = st.columns([1, 1])
    with c_up:
        key = f"w.{page}.upload"
        st.file_uploader("Upload images (PNG, JPEG, WebP, BMP, TIFF)", type=None, accept_multiple_files=True,
                         key=key, on_change=_on_upload, args=(key, single_key), max_upload_size=upload_mb("image"),
                         help="Several at once; up to 20 MB and 40 million pixels each. Kept while you switch pages.")
        if uploads and not st.session_state.get(key):
            st.caption(md_escape("Uploaded earlier: " + ", ".join(v[0] for v in uploads.values())))
            if st.button("Remove uploaded images", key=f"w.{page}.clear"):
                st.session_state[_IMAGES] = {}
                st.rerun()
    with c_pick:
        what = "Digits" if network.dataset else "Sample photos"
        if multiple:
            default = list(samples)[:8] if network.dataset else ["photo:chelsea"]
            # each ready model and run has its own digits
            which = network.key if network.kind in ("ready", "trained") else network.kind
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
                                  + DIGIT_SETS[network.dataset].about, truth, box))
            continue
        if picture is None:
            picture = sample_image(k.split(":", 1)[1])
        try:
            x, steps = network.preprocess(picture)
        except (ImageError, SpecError) as e:
            st.error(md_escape(f"{name}: {e}"), icon=":material/broken_image:")
            continue
        out.append(InputImage(name, picture, x, steps, truth))
    return out


# -- a digit drawn on a canvas ---------------------------------------------------------------------------------
CANVAS_SIDE = 280  # pixels on screen: a finger or mouse draws comfortably; the network's preprocessing shrinks it
DRAWING = "your drawing"


def drawing_picture(rgba: np.ndarray | None) -> Image.Image | None:
    """The canvas's RGBA pixels as an RGB picture, white ink on black (transparent parts black); None when nothing
    is drawn on it."""
    if rgba is None or rgba.size == 0:
        return None
    a = np.asarray(rgba, dtype=np.float32)
    rgb = a[..., :3] * (a[..., 3:4] / 255.0) if a.shape[-1] == 4 else a[..., :3]
    if float(rgb.max(initial=0.0)) < 8:  # an empty canvas (or a stroke too faint to be a digit)
        return None
    return Image.fromarray(rgb.round().clip(0, 255).astype(np.uint8), "RGB")


def drawn_digit(network: Network, page: str) -> InputImage | None:
    """For a network that reads digits (a ready digit model, a run on digits): the "Draw a digit" switch and, when
    it is on, a canvas (white pen on black, a stroke-width slider) whose drawing is an input image like an upload,
    named "your drawing"; None for other networks, while the switch is off or the canvas is empty."""
    if not network.digit_set:
        return None
    if not st.toggle("Draw a digit", key=f"w.{page}.draw",
                     help="A canvas to draw on with the mouse (or a finger); each stroke is predicted at once."):
        return None
    from streamlit_drawable_canvas import st_canvas  # a Streamlit component: only inside a running app

    c_canvas, c_pen = st.columns([1, 2])
    with c_pen:
        width = st.slider("Stroke width", 6, 60, 26, 2, key=f"w.{page}.stroke",
                          help="In canvas pixels; the digits the network learnt have strokes about a tenth of "
                               "the frame wide.")
        st.caption("Draw one digit, as large as the square; the toolbar above the canvas undoes a stroke or "
                   "clears it.")
    with c_canvas:
        drawn = st_canvas(stroke_width=int(width), stroke_color="#FFFFFF", background_color="#000000",
                          height=CANVAS_SIDE, width=CANVAS_SIDE, drawing_mode="freedraw", return_image_data=True,
                          key=f"w.{page}.canvas")
    picture = drawing_picture(drawn.image_data)
    if picture is None:
        return None
    try:
        x, steps = network.preprocess(picture)
    except ImageError as e:
        st.error(md_escape(f"{DRAWING}: {e}"), icon=":material/broken_image:")
        return None
    return InputImage(DRAWING, picture, x, steps)


# -- cached attributions ---------------------------------------------------------------------------------------
@st.cache_data(show_spinner=False, max_entries=128)
def _attribution(model_key: str, image_digest: str, method: str, target: int | None, layer: str | None,
                 steps: int, window: int | None, _built: BuiltNetwork, _x: torch.Tensor, _progress=None):
    from ..vis.attribution import attribute

    return attribute(_built.model, _x, method, target=target, layer=layer, progress=_progress, steps=steps,
                     window=window, network=_built.network)


def cached_attribution(built: BuiltNetwork, image: InputImage, method: str, target: int | None, layer: str | None,
                       steps: int = 32, window: int | None = None, progress=None) -> torch.Tensor:
    """The (H, W) attribution map in [0, 1], computed once per model, weights, image and setting for everyone."""
    return _attribution(built.cache_key, image.digest, method, target, layer, steps, window,
                        _built=built, _x=image.x, _progress=progress)


@st.cache_data(show_spinner=False, max_entries=128)
def _class_scores(model_key: str, image_digest: str, _model: nn.Module, _x: torch.Tensor) -> torch.Tensor:
    from ..predict import predict

    return predict(_model, _x, task="classification").probabilities[0]


def class_scores(built: BuiltNetwork, image: InputImage) -> torch.Tensor:
    """The softmax over the classes (K,) for one image, computed once per model, weights and image."""
    return _class_scores(built.cache_key, image.digest, _model=built.model, _x=image.x)


@st.cache_data(show_spinner="Reading the attention blocks…", max_entries=64)
def _attention(model_key: str, image_digest: str, _model: nn.Module, _x: torch.Tensor) -> list:
    from ..vis.attribution import attention_maps

    return attention_maps(_model, _x)


def cached_attention(built: BuiltNetwork, image: InputImage) -> list:
    """`explorer.vis.attribution.attention_maps` of one image, computed once per model, weights and image."""
    return _attention(built.cache_key, image.digest, _model=built.model, _x=image.x)


@st.cache_data(show_spinner="Computing the feature maps…", max_entries=64)
def _feature_maps(model_key: str, image_digest: str, layer: str, _built: BuiltNetwork, _x: torch.Tensor):
    from ..vis.features import feature_maps

    return feature_maps(_built.model, _x, layer, network=_built.network)


def cached_feature_maps(built: BuiltNetwork, image: InputImage, layer: str) -> torch.Tensor:
    """The (C, H, W) output of ``layer`` for one image, computed once per model, weights, image and layer."""
    return _feature_maps(built.cache_key, image.digest, layer, _built=built, _x=image.x)


@st.cache_data(show_spinner=False, max_entries=64)
def _default_layer(model_key: str, _built: BuiltNetwork) -> str:
    from ..vis.attribution import default_target_layer

    return default_target_layer(_built.model, _built.network.input_shape, network=_built.network)


def default_cam_layer(built: BuiltNetwork) -> str:
    """Grad-CAM's default target: the last spatial layer of the backbone."""
    return _default_layer(built.cache_key, _built=built)
