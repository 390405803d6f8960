"""Streamlit glue for the Train page: the process-wide `RunManager`, the widgets that make a `TrainConfig`, what
the page shows before a run (cached: counts, MACs, training memory against the server's budget, the time per
epoch measured on a few real steps), the live view of a run (a fragment that polls the manager: curves, the time
left, the predictions on a few validation images), what a run leaves (test metrics, the confusion matrix whose
cells open their images, the last finite weights of a NaN run, downloads including a training script) and the
session's runs (their table, a comparison, the runs folder against its cap).

A run lives in its folder, never in session state: the session keeps only an owner id, and the run being shown
is named in the address bar (``?run=<id>&owner=<id>``), so a reload re-attaches to it and keeps its buttons; the
run alone (``?run=<id>``) shows it read-only to someone else. The live view is a ``st.fragment(run_every=…)``
that calls `RunManager.poll` itself; no thread of ours calls Streamlit.
"""
from __future__ import annotations

import json
import pathlib
import re
import secrets

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from .. import catalog, weights
from ..analysis import AnalysisError, analyze
from ..training import (MODE_TITLES, MODES, RECIPE_DEFAULTS, RECIPES, Augmentation, RunManager, TrainConfig,
                        TrainingError, TrainingMemory, datasets, default_runs_root, estimate_epoch, lr_schedule,
                        memory_budget, memory_refusal, runs_max_bytes)
from ..training.jobs import queue_phrase
from ..training.loop import memory_of, scored_test_images
from ..training.networks import network_for_task, prepare_model
from ..training.runfolder import ACTIVE_STATES, RESUMABLE_STATES, png_image
from ..training.script import training_script
from .composition import current_spec
from . import trained
from .format import fmt_bytes, fmt_count, fmt_int, md_escape

__all__ = ["manager", "owner", "owns", "network_choice", "config_widgets", "plan", "refusal", "estimate",
           "estimate_line", "schedule_figure", "dataset_preview", "start_run", "shown_run", "live_run", "run_outcome",
           "runs_table", "runs_comparison", "folder_line", "time_left", "sample_caption", "POLL_SECONDS"]

POLL_SECONDS = 1.0
K = "w.train."  # widget keys
_OWNER = "train.owner"
_SWITCH = "train.switch"  # the Runs picker chose a run to show
_SHOWN = "train.shown"  # the id of the run the page shows (the run itself lives in its folder)
_OWNER_ID = re.compile(r"^[0-9a-f]{16}$")
SOURCES = ("catalog", "composition", *weights.READY_MODELS, "run")
ZIP_CHOICE = "zip"  # the dataset choice that opens the upload of a zip of one folder per class
DEFAULT_CATALOG = "lenet5"
MODE_LABELS = {"scratch": "from scratch", "frozen": "frozen backbone", "finetune": "fine-tune",
               "discriminative": "fine-tune, slower backbone"}
SMOOTHING = 0.9  # exponential moving average of the per-batch loss (as TensorBoard's slider)


# -- the manager and the owner ---------------------------------------------------------------------------------
@st.cache_resource(show_spinner=False)
def _manager(root: str) -> RunManager:
    return RunManager(root, max_bytes=runs_max_bytes())  # oldest ended runs pruned past the cap


def manager() -> RunManager:
    """One manager per runs folder for the whole server (``$EXPLORER_RUNS``, else ~/.cache/cnn-explorer/runs);
    keyed by the folder, so a test that points the variable elsewhere gets its own."""
    return _manager(str(default_runs_root()))


def owner() -> str:
    """This session's owner id (its runs, its quota, who may stop them). It travels in the address bar beside the
    run (``?run=<id>&owner=<id>``), so a reload keeps it; a link with the run alone (shared with someone) opens it
    read-only in a session of its own."""
    if _OWNER not in st.session_state:
        given = st.query_params.get("owner") or ""
        st.session_state[_OWNER] = given if _OWNER_ID.match(given) else secrets.token_hex(8)
    return st.session_state[_OWNER]


def read_only_link(run_id: str) -> str:
    """The query string that shows ``run_id`` to someone else, without its owner."""
    return f"?run={run_id}"


# -- the choices -------------------------------------------------------------------------------------------------
def _source_label(source: str) -> str:
    if source == "catalog":
        return "Catalog model"
    if source == "composition":
        return "Your composition"
    if source == "run":
        return "An earlier run"
    return f"Ready: {weights.READY_MODELS[source].title}"


def earlier_runs() -> list[dict]:
    """This session's runs that ended with trained weights (finished or stopped), the newest first."""
    m = manager()
    return [s for s in m.list(owner=owner()) if s.get("state") in ("finished", "stopped")
            and (m.folder(s["run_id"]) / "final.safetensors").exists()]


def score_phrase(test: dict) -> str:
    """A run's test score in a few words: "93.1% accuracy", "MAE 3.2", "mIoU 25.0%" ("" before it has one)."""
    return (f"mIoU {test['miou']:.1%}" if "miou" in test else
            f"{test['accuracy']:.1%} accuracy" if "accuracy" in test else
            f"MAE {test['mae']:.3g}" if "mae" in test else "")


def _run_label(s: dict) -> str:
    score = score_phrase(s.get("test") or {})
    score = f", {score}" if score else ""
    try:
        cfg = manager().config(s["run_id"])
        what = f"{_network_name(cfg.network)} on {cfg.dataset}"
    except TrainingError:
        what = "?"
    return f"{s['run_id']} — {what}{score}"


def network_choice():
    """The network radio (a catalog model, the composition, a ready model, an earlier run of this session) and,
    for a catalog model or a run, which one. Returns (network for TrainConfig, a line saying what it is, the id
    of the earlier run or None)."""
    source = st.radio("Network", SOURCES, key=K + "source", format_func=_source_label, horizontal=True,
                      help="A catalog model (LeNet-5 by default), your composition from Compose, a model that "
                           "ships trained with the app, or a run of this session (its architecture; pretrained "
                           "modes start from its trained weights).")
    if source == "catalog":
        # int8 and optical-flow models do not train here (inference only / two frames in, no classes out)
        names = [n for n in catalog.names() if catalog.info(n).source not in ("quantized", "optical_flow")]
        name = st.selectbox("Catalog model", names, index=names.index(DEFAULT_CATALOG), key=K + "catalog",
                            format_func=lambda n: f"{n} — {catalog.info(n).family} ({catalog.info(n).year})")
        return name, f"the catalog model {name} — {catalog.info(name).family} ({catalog.info(name).year})", None
    if source == "composition":
        spec = current_spec()
        return spec, f"your composition, {spec.summary()}", None
    if source == "run":
        runs = {s["run_id"]: s for s in earlier_runs()}
        if not runs:
            st.info("No run of this session has ended with trained weights yet; train one first.",
                    icon=":material/history:")
            return None, "", None
        run_id = st.selectbox("Earlier run", list(runs), key=K + "earlier",
                              format_func=lambda r: _run_label(runs[r]),
                              help="Its network; in a pretrained mode its trained weights start the backbone (a "
                                   "data set of another task gets the task's head).")
        return manager().config(run_id).network, f"the network of the run {run_id}", run_id
    ready = weights.READY_MODELS[source]
    return source, f"the ready model {ready.title}", None


def _recipe_label(recipe: str) -> str:
    return {"adam": "Adam (constant learning rate)", "one_cycle": "One-cycle (Adam, rises then anneals)",
            "resnet": "ResNet (SGD momentum 0.9, ÷10 on a plateau)"}.get(recipe, recipe)


def _dataset_label(name: str) -> str:
    if name == ZIP_CHOICE:
        return "Your own data: a zip of one folder per class"
    d = datasets.get(name)
    return d.title if d.available else f"{d.title} (a download)"


def _downloads():
    try:  # another part of the app; until it is there, only the offline data sets are offered
        from . import downloads
    except ImportError:
        return None
    return downloads


def dataset_choice(column) -> tuple[str | None, str | None]:
    """The data set selectbox (offline ones, opt-in downloads, your own zip) and its panel; (name, why not)."""
    downloads = _downloads()
    names = datasets.names(include_downloads=downloads is not None)
    if downloads is not None:
        names = [*names, ZIP_CHOICE]
    dataset = column.selectbox("Dataset", names, key=K + "dataset", format_func=_dataset_label)
    if downloads is None or dataset in datasets.names():
        return dataset, None
    if dataset == ZIP_CHOICE:
        uploaded = downloads.zip_upload_panel()
        return (uploaded, None) if uploaded else (None, "Upload a zip of one folder per class to train on it.")
    if downloads.dataset_download_panel(dataset):
        return dataset, None
    return None, f"{datasets.get(dataset).title} is not on this server yet; download it above to train on it."


def config_widgets(network, earlier: str | None = None):
    """The dataset, mode, recipe and its numbers; returns (TrainConfig or None, the error sentence or None).
    ``earlier``: the id of the run ``network`` comes from; a pretrained mode starts from its trained weights."""
    c1, c2, c3 = st.columns(3)
    dataset, missing = dataset_choice(c1)
    mode = c2.selectbox("Mode", MODES, key=K + "mode", format_func=MODE_LABELS.get,
                        help="; ".join(f"{MODE_LABELS[m]}: {MODE_TITLES[m]}" for m in MODES) + ".")
    recipe = c3.selectbox("Recipe", RECIPES, index=RECIPES.index("adam"), key=K + "recipe",
                          format_func=_recipe_label)
    c1, c2, c3, c4 = st.columns(4)
    epochs = c1.number_input("Epochs", 1, 1000, 10, key=K + "epochs")
    batch = c2.number_input("Batch size", 1, 4096, 32, key=K + "batch")
    # per recipe, so switching recipe brings its own default learning rate and weight decay
    lr = c3.number_input("Learning rate", min_value=0.0, max_value=10.0, value=RECIPE_DEFAULTS[recipe]["lr"],
                         format="%.5f", step=1e-4, key=K + f"lr.{recipe}",
                         help="The peak of the cycle for one-cycle; the start for ResNet.")
    decay = c4.number_input("Weight decay", min_value=0.0, max_value=1.0,
                            value=RECIPE_DEFAULTS[recipe]["weight_decay"], format="%.6f", step=1e-5,
                            key=K + f"wd.{recipe}")
    c1, c2, c3 = st.columns(3)
    smoothing = c1.number_input("Label smoothing", 0.0, 0.5, 0.0, step=0.05, key=K + "smoothing",
                                help="Classification only: the target puts this much weight on the other classes.")
    samples = c2.number_input("Training images (0: all)", 0, 10**6, 0, step=64, key=K + "samples",
                              help="A seeded random subset of the training split, for a quick run.")
    seed = c3.number_input("Seed", 0, 2**31, 0, key=K + "seed")
    with st.expander("Augmentation (training images only)", icon=":material/auto_fix_high:"):
        a1, a2, a3, a4 = st.columns(4)
        crop = a1.number_input("Shift: pad then random crop (px)", 0, 64, 0, key=K + "aug.crop")
        rotation = a2.number_input("Rotation up to ± (degrees)", 0.0, 180.0, 0.0, step=5.0, key=K + "aug.rotation")
        jitter = a3.number_input("Brightness / contrast ±", 0.0, 1.0, 0.0, step=0.1, key=K + "aug.jitter")
        hflip = a4.toggle("Left–right flips", key=K + "aug.hflip", help="Not for digits: a mirrored 2 is no 2.")
    if network is None:
        return None, None  # the choice itself said what is missing
    if dataset is None:
        return None, missing
    pretrained_from = None
    if earlier is not None:
        try:
            network = network_for_task(network, datasets.get(dataset).task)
        except TrainingError as e:
            return None, str(e)
        if mode != "scratch":
            pretrained_from = str(manager().folder(earlier) / "final.safetensors")
    try:
        cfg = TrainConfig(network=network, dataset=dataset, mode=mode, recipe=recipe, epochs=int(epochs),
                          batch_size=int(batch), lr=float(lr), weight_decay=float(decay),
                          label_smoothing=float(smoothing), train_samples=int(samples) or None, seed=int(seed),
                          pretrained_from=pretrained_from,
                          augmentation=Augmentation(hflip=bool(hflip), crop_padding=int(crop),
                                                    rotation=float(rotation), color_jitter=float(jitter)))
    except TrainingError as e:
        return None, str(e)
    return cfg, None


# -- before the run ----------------------------------------------------------------------------------------------
def _key(cfg: TrainConfig) -> str:
    return json.dumps(cfg.to_dict(), sort_keys=True)


@st.cache_data(show_spinner="Building the run's model…", max_entries=32)
def _plan(cfg_json: str) -> dict:
    cfg = TrainConfig.from_dict(json.loads(cfg_json))
    dataset = datasets.get(cfg.dataset)
    # The model only, not `prepare`: that also converts the whole data set to the network's input, in memory
    # (resnet18 at 224 px on digits: 3 GB at its peak), which is the worker's job, not the page's.
    prepared = prepare_model(cfg, dataset)  # TrainingError (a sentence) is not cached: the page shows it
    model = prepared.model
    trainable = sum(t.numel() for t in prepared.trainable())
    if not trainable:
        raise TrainingError("Nothing in this network would train (every parameter is frozen); choose mode "
                            "finetune, or unfreeze some stages.")
    total = sum(t.numel() for t in model.parameters())
    sizes = dataset.splits().sizes()
    c, h, w = prepared.input_shape
    out = {"trainable": trainable, "frozen": total - trainable, "total": total, "notes": list(prepared.notes),
           "input_shape": (c, h, w), "title": prepared.title,
           "train_images": min(sizes["train"], cfg.train_samples or sizes["train"]),
           "data_bytes": sum(sizes.values()) * c * h * w * 4, "macs": None, "training_bytes": None}
    try:
        a = analyze(model, prepared.input_shape)
        out["macs"], out["training_bytes"] = a.macs, a.training_bytes
    except AnalysisError as e:
        out["notes"].append(f"no analysis: {e}")
    return out


def memory(cfg: TrainConfig, p: dict) -> TrainingMemory | None:
    """What one training step of ``cfg`` holds (activations for the batch, weights, gradients, optimiser state)."""
    if p["training_bytes"] is None:
        return None
    return memory_of(cfg, p["training_bytes"], p["total"], p["trainable"])


def refusal(cfg: TrainConfig, p: dict) -> str | None:
    """The sentence the server refuses ``cfg`` with (more training memory than its budget), or None: the same
    check `RunManager.submit` makes, shown before the click."""
    return memory_refusal(memory(cfg, p), manager().memory_budget or memory_budget())


def _estimate_key(cfg: TrainConfig) -> str:
    # the time of an epoch depends on neither the number of epochs nor the seed nor the rates
    threads = cfg.threads or manager().threads_per_run  # as the worker will train
    return _key(cfg.replace(epochs=1, seed=0, lr=None, weight_decay=None, threads=threads))


@st.cache_data(show_spinner="Timing a few training steps…", max_entries=64)
def _estimate(cfg_json: str) -> tuple[float, float, int]:
    e = estimate_epoch(TrainConfig.from_dict(json.loads(cfg_json)))
    return e.step_seconds, e.epoch_seconds, e.steps_per_epoch


def estimate(cfg: TrainConfig) -> dict | None:
    """Seconds per step and per epoch (real steps of this config, timed in this process with the run's threads,
    cached per config), and in all for ``cfg.epochs``; None when the steps cannot be timed here (no memory for
    them: the run itself will say what happened)."""
    try:
        step, epoch, steps = _estimate(_estimate_key(cfg))
    except (RuntimeError, MemoryError):  # torch's out-of-memory is a RuntimeError; the estimate is not worth a page
        return None
    return {"step": step, "epoch": epoch, "steps": steps, "total": epoch * cfg.epochs}


def fmt_seconds(seconds: float) -> str:
    """4.2 s, 0.031 s, 3 min 20 s, 2 h 05 min."""
    if seconds < 0.1:
        return f"{seconds:.2g} s"
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    if seconds < 3600:
        m, sec = divmod(int(round(seconds)), 60)
        return f"{m} min {sec} s" if sec else f"{m} min"
    h, m = divmod(int(round(seconds / 60)), 60)
    return f"{h} h {m:02d} min"


def estimate_line(cfg: TrainConfig, e: dict) -> str:
    """ "≈ 4.2 s per epoch, ≈ 42 s in all" and how it was measured."""
    threads = cfg.threads or manager().threads_per_run
    return (f"≈ {fmt_seconds(e['epoch'])} per epoch, ≈ {fmt_seconds(e['total'])} in all — measured: a training "
            f"step of {cfg.batch_size:,} images takes {fmt_seconds(e['step'])} here with {threads} thread"
            f"{'s' if threads != 1 else ''}, as the run will train, × {e['steps']:,} steps, plus validation.")


def plan(cfg: TrainConfig) -> dict:
    """Before the start: parameter counts (trainable / frozen / total), MACs per image, autograd-saved bytes per
    image, the input shape, the notes. Raises TrainingError with a sentence."""
    return _plan(_key(cfg))


def describe(cfg: TrainConfig, network_line: str) -> str:
    """ "Trains the catalog model lenet5 — LeNet (1998): from scratch (fresh random weights), on Digits (32×32)." """
    return f"Trains {network_line}: {MODE_TITLES[cfg.mode]}, on {datasets.get(cfg.dataset).title}."


def plan_metrics(cfg: TrainConfig, p: dict, e: dict | None = None) -> None:
    m = st.columns(5)
    m[0].metric("Trainable parameters", fmt_int(p["trainable"]),
                help=f"Frozen {fmt_int(p['frozen'])}, total {fmt_int(p['total'])}.")
    macs = p["macs"]
    m[1].metric("MACs per image", "—" if macs is None else fmt_count(macs),
                help=None if macs is None else f"{fmt_int(macs)} multiply-accumulates = {fmt_int(2 * macs)} FLOPs, "
                                               f"at the network's {'×'.join(map(str, p['input_shape']))} input.")
    saved = p["training_bytes"]
    step = memory(cfg, p)
    budget = manager().memory_budget or memory_budget()
    m[2].metric(f"Training, batch {cfg.batch_size:,}", "—" if saved is None else fmt_bytes(saved * cfg.batch_size),
                help="Bytes autograd saves for the backward pass of one batch (activations only; weights, "
                     "gradients and optimiser state come on top" + (
                         f": {fmt_bytes(step.fixed)}, so {fmt_bytes(step.total)} a step, of the server's "
                         f"{fmt_bytes(budget)} budget)." if step is not None else ")."))
    m[3].metric("Training images", fmt_int(p["train_images"]),
                help=f"The run holds its data set at the network's input in memory: {fmt_bytes(p['data_bytes'])}.")
    m[4].metric("Time per epoch", "—" if e is None else f"≈ {fmt_seconds(e['epoch'])}",
                help=None if e is None else f"≈ {fmt_seconds(e['total'])} for the {cfg.epochs:,} epochs.")


@st.cache_data(show_spinner=False, max_entries=64)
def _schedule(cfg_json: str):
    return lr_schedule(TrainConfig.from_dict(json.loads(cfg_json)))


def schedule_figure(cfg: TrainConfig) -> tuple[go.Figure, str]:
    """The learning rate of every step, per parameter group, and the schedule's note."""
    s = _schedule(_key(cfg))
    fig = go.Figure()
    for name, lrs in s.groups.items():
        fig.add_trace(go.Scatter(x=[i / s.steps_per_epoch for i in range(1, len(lrs) + 1)], y=lrs, mode="lines",
                                 name=name, hovertemplate="epoch %{x:.2f}<br>lr %{y:.3g}<extra></extra>"))
    top = max((max(v) for v in s.groups.values() if v), default=1.0)
    fig.update_layout(height=240, margin=dict(l=10, r=10, t=30, b=10), title="Learning rate per step",
                      xaxis_title="epoch", yaxis_title="learning rate", showlegend=len(s.groups) > 1,
                      yaxis=dict(range=[0, top * 1.15], exponentformat="power"))  # a constant rate is no flat 0
    return fig, s.note


@st.cache_data(show_spinner=False, max_entries=16)
def _preview(name: str, n: int):
    d = datasets.get(name)
    return [(p.image, p.label) for p in d.preview(n)], d.class_counts(), d.splits().sizes(), d.source


def dataset_preview(name: str, n: int = 10) -> None:
    """A grid of the first training images with their labels, the split sizes and the class counts."""
    samples, counts, sizes, source = _preview(name, n)
    st.image([img for img, _ in samples], caption=[label for _, label in samples], width=38)
    st.caption(md_escape(f"{sizes['train']:,} training, {sizes['validation']:,} validation, {sizes['test']:,} test "
                         f"images. {source}."))
    if counts:
        table = pd.DataFrame(counts).T.rename(index={"validation": "val."})  # short: ten columns fit beside it
        st.dataframe(table, width="stretch", column_config={c: st.column_config.NumberColumn(width=34)
                                                             for c in table.columns})


# -- starting and showing a run ----------------------------------------------------------------------------------
def start_run(cfg: TrainConfig) -> str | None:
    """Submit ``cfg`` as this session's run and show it (``?run=``); a refusal is a sentence (returned)."""
    e = estimate(cfg)  # cached: the page has just shown it; it lets the runs queued behind say when they start
    m = manager()
    before = {s["run_id"] for s in m.list(owner=owner())}
    try:
        run_id = m.submit(cfg, owner=owner(), estimate_seconds=None if e is None else e["total"])
    except TrainingError as err:
        return str(err)
    if run_id in before or m.status(run_id).get("owner") != owner():
        st.toast(f"The same configuration is already run {run_id}: it is trained once and shared with you.")
    _show(run_id)
    return None


def _show(run_id: str | None) -> None:
    st.session_state[_SHOWN] = run_id
    if run_id:
        st.query_params["run"] = run_id
        st.query_params["owner"] = owner()
    else:
        for name in ("run", "owner"):
            if name in st.query_params:
                del st.query_params[name]


def _shown_id() -> str | None:
    # The address bar is read once per session; afterwards the session's choice (an id only) is the truth and is
    # mirrored into the address bar: a rerun a fragment asks for may carry the query string of an older run.
    if _SHOWN not in st.session_state:
        st.session_state[_SHOWN] = st.query_params.get("run") or None
    return st.session_state[_SHOWN]


def shown_run() -> str | None:
    """The run this session shows (first from ``?run=``), if it exists (a damaged id is a sentence and is
    dropped); the address bar names it, so a reload re-attaches."""
    run_id = _shown_id()
    if not run_id:
        return None
    try:
        manager().status(run_id)
    except TrainingError as e:
        st.error(md_escape(str(e)), icon=":material/link_off:")
        _show(None)
        return None
    if st.query_params.get("run") != run_id:
        st.query_params["run"] = run_id
    if st.query_params.get("owner") != owner():
        st.query_params["owner"] = owner()
    return run_id


def owns(run_id: str) -> bool:
    """Whether this session started or shares ``run_id`` (and so may stop, pause or resume it)."""
    try:
        s = manager().status(run_id)
    except TrainingError:
        return False
    return owner() in (s.get("owner"), *s.get("sharers", ()))


def time_left(epochs: list[dict], total: int) -> tuple[float, float] | None:
    """(seconds per epoch, measured over the complete epochs so far; seconds the remaining epochs will take), or
    None before the first epoch has ended."""
    done = [e["epoch_seconds"] for e in epochs if "stopped_after_batch" not in e and "epoch_seconds" in e]
    if not done:
        return None
    per_epoch = sum(done) / len(done)
    last = max(e["epoch"] for e in epochs)
    return per_epoch, per_epoch * max(0, total - last)


def _shared_with(s: dict) -> str:
    """ "shared with 2 other sessions" for a run trained for several sessions, else ""."""
    others = [p for p in (s.get("owner"), *s.get("sharers", ())) if p != owner()]
    if not s.get("sharers") or not others:
        return ""
    return f"shared with {len(others)} other session{'s' if len(others) != 1 else ''}"


def _status_line(s: dict, epochs: list[dict] = ()) -> str:
    state = s.get("state", "unknown")
    parts = [f"**{state}**", f"epoch {s.get('epoch') or 0} of {s.get('epochs') or '?'}"]
    waiting = queue_phrase(s)
    if waiting:
        parts.append(waiting)
    if _shared_with(s):
        parts.append(f"{_shared_with(s)}: trained once")
    if s.get("requested"):
        parts.append(f"{s['requested']} requested")
    timing = time_left(list(epochs), s.get("epochs") or 0) if state == "running" else None
    if timing:
        parts.append(f"≈ {fmt_seconds(timing[0])} per epoch, ≈ {fmt_seconds(timing[1])} left")
    return " · ".join(parts)


def _smoothed(values: list[float], weight: float = SMOOTHING) -> list[float]:
    """Exponential moving average, debiased so the first points are not pulled towards 0."""
    out, avg = [], 0.0
    for i, v in enumerate(values):
        avg = weight * avg + (1 - weight) * v
        out.append(avg / (1 - weight ** (i + 1)))
    return out


def loss_figure(batches: list[dict]) -> go.Figure:
    steps = [b["step"] for b in batches]
    losses = [b["loss"] for b in batches]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=steps, y=losses, mode="lines", name="per batch", line=dict(width=1),
                             opacity=0.35))
    fig.add_trace(go.Scatter(x=steps, y=_smoothed(losses), mode="lines", name=f"smoothed ({SMOOTHING:g} EMA)"))
    fig.update_layout(height=280, margin=dict(l=10, r=10, t=30, b=10), title="Training loss per batch",
                      xaxis_title="step", yaxis_title="loss", legend=dict(orientation="h", y=-0.3))
    return fig


def epoch_figure(epochs: list[dict], key: str, title: str, axis: str) -> go.Figure:
    fig = go.Figure()
    for split in ("train", "val"):
        name = f"{split}_{key}"
        if any(name in e for e in epochs):
            fig.add_trace(go.Scatter(x=[e["epoch"] for e in epochs], y=[e.get(name) for e in epochs],
                                     mode="lines+markers", name="training" if split == "train" else "validation"))
    fig.update_layout(height=280, margin=dict(l=10, r=10, t=30, b=10), title=title, xaxis_title="epoch",
                      yaxis_title=axis, legend=dict(orientation="h", y=-0.3),
                      xaxis=dict(dtick=1 if len(epochs) <= 12 else None))
    return fig


def segmentation_epoch_figure(epochs: list[dict]) -> go.Figure:
    """Pixel accuracy (training and validation), validation mIoU and mean Dice per epoch, as fractions."""
    fig = go.Figure()
    for key, name in (("train_pixel_accuracy", "training pixel accuracy"),
                      ("val_pixel_accuracy", "validation pixel accuracy"), ("val_miou", "validation mIoU"),
                      ("val_mean_dice", "validation mean Dice")):
        if any(key in e for e in epochs):
            fig.add_trace(go.Scatter(x=[e["epoch"] for e in epochs], y=[e.get(key) for e in epochs],
                                     mode="lines+markers", name=name))
    fig.update_layout(height=280, margin=dict(l=10, r=10, t=30, b=10), title="Pixel accuracy and mIoU per epoch",
                      xaxis_title="epoch", yaxis_title="fraction", legend=dict(orientation="h", y=-0.3),
                      yaxis=dict(range=[0, 1], tickformat=".0%"), xaxis=dict(dtick=1 if len(epochs) <= 12 else None))
    return fig


def lr_figure(batches: list[dict]) -> go.Figure:
    lrs = [b["lr"] for b in batches]
    fig = go.Figure(go.Scatter(x=[b["step"] for b in batches], y=lrs, mode="lines"))
    fig.update_layout(height=280, margin=dict(l=10, r=10, t=30, b=10), title="Learning rate used",
                      xaxis_title="step", yaxis_title="learning rate",
                      yaxis=dict(range=[0, max(lrs) * 1.15], exponentformat="power"))
    return fig


def _request_buttons(m: RunManager, run_id: str, state: str, status: dict) -> None:
    shown = [b for b, when in (("stop", ACTIVE_STATES), ("pause", ("running",)), ("resume", RESUMABLE_STATES))
             if state in when]
    if not shown:
        return
    me = owner()
    if me not in (status.get("owner"), *status.get("sharers", ())):  # a link someone shared: to look at
        st.caption("This run belongs to another session: shown read-only (stop, pause and resume are its "
                   "owner's).")
        return
    cols = dict(zip(shown, st.columns([1] * len(shown) + [6 - len(shown)])))
    try:
        if "stop" in cols and cols["stop"].button("Stop run", key=K + f"stop.{run_id}", icon=":material/stop:"):
            st.toast(m.stop(run_id, owner=me))
        if "pause" in cols and cols["pause"].button("Pause run", key=K + f"pause.{run_id}", icon=":material/pause:",
                                                    help="Checkpoint at the end of this epoch and free the slot."):
            st.toast(m.pause(run_id, owner=me))
        if "resume" in cols and cols["resume"].button("Resume run", key=K + f"resume.{run_id}",
                                                      icon=":material/play_arrow:",
                                                      help="Continue from its last complete epoch's checkpoint."):
            st.toast(m.resume(run_id, owner=me))
            st.rerun()  # the whole page: the run is active again, its live view polls
    except TrainingError as e:  # the state moved on between drawing and clicking
        st.error(md_escape(str(e)), icon=":material/error:")


def _draw_run(run_id: str, was_active: bool) -> None:
    m = manager()
    m.poll()
    s = m.status(run_id)
    state = s.get("state")
    if was_active and state not in ACTIVE_STATES:
        st.rerun()  # it ended: redraw the page once, without polling, with its results
    head = st.container()
    _request_buttons(m, run_id, state, s)
    s = m.status(run_id)  # again: a button may just have changed it
    lines = m.metrics(run_id)
    batches = [x for x in lines if x.get("kind") == "batch"]
    epochs = [x for x in lines if x.get("kind") == "epoch"]
    with head:  # drawn above the buttons, after them: the line says what the click did
        st.markdown(f"Run `{run_id}` · {_status_line(s, epochs)}")
        if s.get("message"):
            st.caption(md_escape(s["message"]))
        if s.get("owner") == owner():
            st.caption(f"To show it to someone, read-only: the link `/train{read_only_link(run_id)}`.")
    if not batches:
        st.info("No step has been trained yet; the worker process is starting (a few seconds).",
                icon=":material/hourglass_top:")
        return
    c1, c2 = st.columns(2)
    c1.plotly_chart(loss_figure(batches), key=f"train.loss.{run_id}", config={"displayModeBar": False})
    c2.plotly_chart(lr_figure(batches), key=f"train.lr.{run_id}", config={"displayModeBar": False})
    if epochs:
        c1, c2 = st.columns(2)
        c1.plotly_chart(epoch_figure(epochs, "loss", "Loss per epoch", "loss"), key=f"train.eloss.{run_id}",
                        config={"displayModeBar": False})
        if any("val_miou" in e for e in epochs):  # segmentation: the scores of the validation pixels
            c2.plotly_chart(segmentation_epoch_figure(epochs), key=f"train.eacc.{run_id}",
                            config={"displayModeBar": False})
        else:
            acc = "accuracy" if any("val_accuracy" in e for e in epochs) else "mae"
            c2.plotly_chart(epoch_figure(epochs, acc, "Accuracy per epoch" if acc == "accuracy" else
                                         "Mean absolute error per epoch", acc), key=f"train.eacc.{run_id}",
                            config={"displayModeBar": False})
        sample_grid(m.samples(run_id))
        st.dataframe(_epoch_table(epochs), hide_index=True, width="stretch", column_config={
            "seconds": st.column_config.NumberColumn(format="%.2f"),
            "images / s": st.column_config.NumberColumn(format="%.0f"),
            "learning rate": st.column_config.NumberColumn(format="%.3g")})


def sample_caption(sample: dict) -> str:
    """ "7 ✓ 98 %", "3 ✗ 61 % (true 8)"; regression: "12.3° (true 10.0°)"."""
    if sample.get("confidence") is None:
        return f"{sample['predicted']} (true {sample['truth']})"
    mark = "✓" if sample["correct"] else "✗"
    line = f"{sample['predicted']} {mark} {sample['confidence']:.0%}".replace("%", " %")
    return line if sample["correct"] else f"{line} (true {sample['truth']})"


def sample_grid(samples: dict | None) -> None:
    """The predictions on the run's fixed validation images after its latest epoch."""
    if not samples or not samples.get("samples"):
        return
    rows = samples["samples"]
    if "truth_png" in rows[0]:
        _mask_grid(rows, samples["epoch"])
        return
    right = sum(1 for r in rows if r.get("correct"))
    what = (f"{right} of {len(rows)} right" if rows[0].get("confidence") is not None else
            f"mean absolute error {sum(abs(r['error']) for r in rows) / len(rows):.3g}")
    st.markdown(f"**Predictions on {len(rows)} validation images after epoch {samples['epoch']}** ({what})")
    st.image([png_image(r["png"]) for r in rows], caption=[sample_caption(r) for r in rows], width=72)


def _mask_grid(rows: list[dict], epoch: int) -> None:
    """Segmentation samples: each validation image beside its true and its predicted mask (one picture per image,
    so the three stay together however the page wraps), with that image's mIoU; the colours are the classes'
    (`segmentation.PALETTE`, the ignored border grey)."""
    mean = sum(r["miou"] for r in rows) / len(rows)
    st.markdown(f"**Predictions on {len(rows)} validation images after epoch {epoch}** (each: the image, its true "
                f"mask, the predicted mask; mean of their mIoU {mean:.0%})".replace("%", " %"))
    st.image([_side_by_side(png_image(r["png"]), png_image(r["truth_png"]), png_image(r["predicted_png"]))
              for r in rows], caption=[f"truth: {r['truth']} · {r['predicted']}".replace("%", " %") for r in rows],
             width=3 * 72 + 8)


def _side_by_side(*pictures) -> np.ndarray:
    """H×W pictures (grey or RGB, uint8) in a row, 4 white pixels apart, as one RGB picture."""
    rgb = [np.repeat(p[..., None], 3, axis=2) if p.ndim == 2 else p[..., :3] for p in pictures]
    h = max(p.shape[0] for p in rgb)
    gap = np.full((h, 4, 3), 255, dtype=np.uint8)
    parts = []
    for p in rgb:
        if p.shape[0] < h:  # pad a smaller one at the bottom
            p = np.concatenate([p, np.full((h - p.shape[0], p.shape[1], 3), 255, dtype=np.uint8)])
        parts += [p, gap]
    return np.concatenate(parts[:-1], axis=1)


def _class_scores(test: dict, classes) -> pd.DataFrame:
    """Per class: its IoU and Dice on the test pixels, and how many of them it has (rows of the confusion)."""
    counts = [sum(row) for row in test["confusion"]]
    return pd.DataFrame([{"class": name, "test pixels": counts[i],
                          "IoU": "–" if test["iou"][i] is None else f"{test['iou'][i]:.1%}",
                          "Dice": "–" if test["dice"][i] is None else f"{test['dice'][i]:.1%}"}
                         for i, name in enumerate(classes)])


def _epoch_table(epochs: list[dict]) -> pd.DataFrame:
    names = {"epoch": "epoch", "train_loss": "training loss", "train_accuracy": "training accuracy",
             "train_pixel_accuracy": "training pixel accuracy", "val_loss": "validation loss",
             "val_accuracy": "validation accuracy", "val_top5": "validation top-5",
             "val_pixel_accuracy": "validation pixel accuracy", "val_miou": "validation mIoU",
             "val_mean_dice": "validation mean Dice",
             "val_mae": "validation MAE", "lr": "learning rate", "epoch_seconds": "seconds",
             "images_per_second": "images / s", "stopped_after_batch": "stopped after batch"}
    df = pd.DataFrame([{names[k]: e[k] for k in names if k in e} for e in epochs])
    if "stopped after batch" in df:
        df["stopped after batch"] = df["stopped after batch"].map(lambda v: "" if pd.isna(v) else str(int(v)))
    for col in ("training accuracy", "validation accuracy", "validation top-5", "training pixel accuracy",
                "validation pixel accuracy", "validation mIoU", "validation mean Dice"):
        if col in df:
            df[col] = df[col].map(lambda v: f"{v:.1%}")
    return df


def live_run(run_id: str) -> None:
    """The run's status, curves and buttons; while it is queued or running a fragment redraws it every
    `POLL_SECONDS` (polling the manager), and once it ends the page is drawn once more, without polling."""
    active = manager().status(run_id).get("state") in ACTIVE_STATES
    st.fragment(_draw_run, run_every=POLL_SECONDS if active else None)(run_id, active)


# -- after the run -----------------------------------------------------------------------------------------------
def confusion_figure(confusion: list[list[int]], classes) -> go.Figure:
    fig = go.Figure(go.Heatmap(z=confusion, x=list(classes), y=list(classes), colorscale="Blues",
                               text=confusion, texttemplate="%{text}", showscale=False,
                               hovertemplate="true %{y}, predicted %{x}: %{z}<extra></extra>"))
    # A heatmap cannot be selected by a click; an invisible marker on each cell can (it outlines the chosen one).
    n = len(classes)
    cells = [(t, p) for t in range(n) for p in range(n)]
    fig.add_trace(go.Scatter(
        x=[classes[p] for _, p in cells], y=[classes[t] for t, _ in cells], mode="markers", showlegend=False,
        customdata=[confusion[t][p] for t, p in cells],
        marker=dict(symbol="square-open", size=max(6, min(28, 280 // max(n, 1))), color="crimson", opacity=0,
                    line=dict(width=2)),
        selected=dict(marker=dict(opacity=1)), unselected=dict(marker=dict(opacity=0)),
        hovertemplate="true %{y}, predicted %{x}: %{customdata} (click to see them)<extra></extra>"))
    fig.update_layout(height=420, margin=dict(l=10, r=10, t=30, b=10), title="Confusion matrix (test split)",
                      xaxis_title="predicted", yaxis_title="true",
                      # the cells edge to edge (the markers would pad the axes), the first class on top
                      yaxis=dict(type="category", range=[n - 0.5, -0.5]), xaxis=dict(type="category",
                                                                                     range=[-0.5, n - 0.5]))
    return fig


def pairs_figure(pairs: list[list[float]], unit: str) -> go.Figure:
    pred, true = [p[0] for p in pairs], [p[1] for p in pairs]
    lo, hi = min(true + pred), max(true + pred)
    fig = go.Figure([go.Scatter(x=true, y=pred, mode="markers", marker=dict(size=5, opacity=0.6), name="test"),
                     go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", line=dict(dash="dot"), name="perfect")])
    fig.update_layout(height=420, margin=dict(l=10, r=10, t=30, b=10), title="Predicted against true (test split)",
                      xaxis_title=f"true ({unit})", yaxis_title=f"predicted ({unit})")
    return fig


def failed_weights(run_id: str) -> None:
    """A run that failed on a NaN / infinite loss: say so, and offer the last finite weights it kept."""
    m = manager()
    status = m.status(run_id)
    path = m.folder(run_id) / "last_finite.safetensors"
    if status.get("state") != "failed" or not path.exists():
        return
    st.warning("The run stopped because its loss stopped being a finite number; the weights from the end of the "
               "last epoch whose weights were all finite are kept.", icon=":material/warning:")
    st.download_button("Download the last finite weights (.safetensors)", path.read_bytes(),
                       file_name=f"run-{run_id}-last-finite.safetensors", mime="application/octet-stream",
                       key=K + f"dl.finite.{run_id}", icon=":material/download:")


def cell_indices(pairs: list[list[int]], true_class: int, predicted: int) -> list[int]:
    """The test images (their indices) a confusion cell counts."""
    return [i for i, (p, t) in enumerate(pairs) if t == true_class and p == predicted]


def _default_cell(confusion: list[list[int]]) -> tuple[int, int]:
    """The most frequent mistake (largest cell off the diagonal), else the first class's correct cell."""
    best, cell = 0, (0, 0)
    for t, row in enumerate(confusion):
        for p, n in enumerate(row):
            if t != p and n > best:
                best, cell = n, (t, p)
    return cell


CELL_IMAGES = 24  # at most this many images of one cell are shown


def confusion_cell(run_id: str, confusion: list[list[int]], pairs: list[list[int]], dataset,
                   clicked: list | None = None) -> None:
    """Pick a cell (true class, predicted class) — by clicking it on the matrix (``clicked``: the chart's
    selected points) or with the two selectors — and see the test images it counts."""
    classes = list(dataset.classes)
    true_key, pred_key, applied_key = (K + f"cell.true.{run_id}", K + f"cell.pred.{run_id}",
                                       f"train.cell.clicked.{run_id}")
    if true_key not in st.session_state:  # opens on the most frequent mistake
        st.session_state[true_key], st.session_state[pred_key] = _default_cell(confusion)
    if clicked:
        point = clicked[-1]
        cell = (classes.index(str(point["y"])), classes.index(str(point["x"])))
        if cell != st.session_state.get(applied_key):  # a new click; the selectors may change it afterwards
            st.session_state[applied_key] = cell
            st.session_state[true_key], st.session_state[pred_key] = cell
    st.caption("Click a cell of the matrix, or choose its classes here, to see the test images it counts.")
    c1, c2 = st.columns(2)
    t = c1.selectbox("True class", range(len(classes)), format_func=classes.__getitem__, key=true_key)
    p = c2.selectbox("Predicted class", range(len(classes)), format_func=classes.__getitem__, key=pred_key)
    chosen = cell_indices(pairs, t, p)
    label = f"true {classes[t]}, predicted {classes[p]}"
    if not chosen:
        st.caption(md_escape(f"No test image is {label}."))
        return
    st.markdown(f"**{len(chosen):,} test image{'s' if len(chosen) != 1 else ''}: {md_escape(label)}**" +
                (f" (the first {CELL_IMAGES})" if len(chosen) > CELL_IMAGES else ""))
    x = _scored_test_images(run_id)
    st.image([datasets._as_picture(dataset.unnormalise(x[i])) for i in chosen[:CELL_IMAGES]],
             caption=[f"#{i}" for i in chosen[:CELL_IMAGES]], width=56)


def _scored_test_images(run_id: str):
    return scored_test_images(manager().config(run_id))




def run_outcome(run_id: str) -> None:
    """Test metrics, the confusion matrix (a cell opens its images) or predicted-vs-true, and the downloads of an
    ended run (weights, metrics, a training script); for a run that failed on a NaN loss, its last finite
    weights."""
    m = manager()
    failed_weights(run_id)
    result = m.result(run_id)
    if result is None:
        return
    test = result["test"]
    dataset = datasets.get(result["dataset"])
    cols = st.columns(4)
    if "miou" in test:
        cols[0].metric("Test mIoU", f"{test['miou']:.1%}", help="The mean over the classes of TP / (TP + FP + FN), "
                       "from one confusion matrix of all test pixels (a class in neither truth nor prediction left "
                       "out).")
        cols[1].metric("Test pixel accuracy", f"{test['pixel_accuracy']:.1%}")
        cols[2].metric("Test mean Dice", f"{test['mean_dice']:.1%}")
    elif "accuracy" in test:
        cols[0].metric("Test accuracy", f"{test['accuracy']:.1%}",
                       help=f"{test['correct']:,} of {test['count']:,} test images right.")
        if "top5" in test:
            cols[1].metric("Test top-5", f"{test['top5']:.1%}")
        cols[2].metric("Test loss", f"{test['loss']:.4f}")
    else:
        cols[0].metric("Test MAE", f"{test['mae']:.3g} {dataset.target.unit}")
        cols[1].metric("Test MSE", f"{test['mse']:.3g}")
    cols[3].metric("Training time", f"{result['seconds']:.1f} s", help=f"{result['epochs_run']} epochs on "
                                                                        f"{result['device'].upper()}.")
    st.markdown(f"**{fmt_int(test['correct'])} of {fmt_int(test['count'])}** test images classified correctly."
                if "correct" in test else
                f"Test images: **{fmt_int(test['count'])}**, {fmt_int(test['pixels'])} pixels scored."
                if "pixels" in test else f"Test images: **{fmt_int(test['count'])}**.")
    if result.get("notes"):
        st.caption(md_escape("; ".join(result["notes"]) + "."))
    if "miou" in test:
        c1, c2 = st.columns([2, 3])
        c1.dataframe(_class_scores(test, dataset.classes), hide_index=True, width="stretch",
                     key=f"train.classes.{run_id}",
                     column_config={"test pixels": st.column_config.NumberColumn(format="localized")})
        fig = confusion_figure(test["confusion"], dataset.classes)
        fig.data = fig.data[:1]  # pixels, not images: no cell opens anything
        fig.update_layout(title="Confusion matrix (test pixels)")
        c2.plotly_chart(fig, key=f"train.confusion.{run_id}", config={"displayModeBar": False})
    elif "confusion" in test:
        event = st.plotly_chart(confusion_figure(test["confusion"], dataset.classes),
                                key=f"train.confusion.{run_id}", config={"displayModeBar": False},
                                on_select="rerun", selection_mode="points")
        if result.get("pairs"):
            clicked = list(event.selection.points) if event and event.selection else []
            confusion_cell(run_id, test["confusion"], result["pairs"], dataset, clicked)
    elif result.get("pairs"):
        st.plotly_chart(pairs_figure(result["pairs"], dataset.target.unit), key=f"train.pairs.{run_id}",
                        config={"displayModeBar": False})
    folder = m.folder(run_id)
    c1, c2, c3 = st.columns(3)
    final = folder / "final.safetensors"
    if final.exists():
        c1.download_button("Download the trained weights (.safetensors)", final.read_bytes(),
                           file_name=f"run-{run_id}.safetensors", mime="application/octet-stream",
                           key=K + f"dl.weights.{run_id}", icon=":material/download:")
    lines = m.metrics(run_id)
    if lines:
        c2.download_button("Download the metrics (CSV)", pd.DataFrame(lines).to_csv(index=False),
                           file_name=f"run-{run_id}-metrics.csv", mime="text/csv", key=K + f"dl.csv.{run_id}",
                           icon=":material/download:")
    try:
        script = training_script(m.config(run_id), title=f"run {run_id}")
    except TrainingError as e:
        c3.caption(md_escape(str(e)))
    else:
        c3.download_button("Download a PyTorch training script (.py)", script, file_name=f"train-{run_id}.py",
                           mime="text/x-python", key=K + f"dl.script.{run_id}", icon=":material/code:",
                           help="Plain PyTorch: the optimiser, schedule, epochs, augmentation and evaluation "
                                "written out; on the CPU it prints the same test metrics as this run.")
    # what Predict, Explain and Feature maps open: a finished run (not a stopped one), not yet a segmentation run
    if m.status(run_id).get("state") == "finished" and dataset.task != "segmentation":
        trained.links(run_id)


def _open_run(key: str) -> None:
    chosen = st.session_state.get(key)
    if chosen:
        _show(chosen)
        st.session_state[_SWITCH] = True


def _network_name(network) -> str:
    return network.summary() if hasattr(network, "summary") else str(network)


def runs_table() -> None:
    """This session's runs, newest first, and a picker that opens one; redrawn every `POLL_SECONDS` while one
    of them is queued or running (its own fragment, so its epochs keep up with the live view)."""
    active = any(s.get("state") in ACTIVE_STATES for s in manager().list(owner=owner()))
    st.fragment(_runs_table, run_every=POLL_SECONDS if active else None)(active)


def _runs_table(was_active: bool) -> None:
    if st.session_state.pop(_SWITCH, False):
        st.rerun()  # a run was chosen in the picker: the whole page shows it (a fragment rerun would not)
    m = manager()
    runs = m.list(owner=owner())
    if was_active and not any(s.get("state") in ACTIVE_STATES for s in runs):
        st.rerun()  # the last active run ended: draw the page once more, without polling
    if not runs:
        st.caption("No runs yet in this session.")
        return
    rows = []
    for s in runs:
        try:
            cfg = m.config(s["run_id"])
        except TrainingError:
            cfg = None
        score = score_phrase(s.get("test") or {})
        rows.append({"run": s["run_id"], "state": s.get("state"),
                     "network": _network_name(cfg.network) if cfg else "?",
                     "dataset": cfg.dataset if cfg else "?", "mode": cfg.mode if cfg else "?",
                     "recipe": cfg.recipe if cfg else "?",
                     "epochs": f"{s.get('epoch') or 0} of {s.get('epochs') or '?'}", "test": score,
                     "queue": f"Queued: {queue_phrase(s)}" if queue_phrase(s) else "",
                     "shared": _shared_with(s)})
    # widths set, not measured: a column sized while the runs were queued (empty scores) would cut the scores later
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", column_config={
        "run": st.column_config.TextColumn(width="medium"), "test": st.column_config.TextColumn(width="medium")})
    ids = [r["run"] for r in rows]
    current = _shown_id()
    key = K + "open"
    st.session_state[key] = current if current in ids else None  # the address bar names the run shown
    st.selectbox("Show run", ids, key=key, placeholder="Choose a run to show", on_change=_open_run, args=(key,))


# -- the runs folder and the comparison of runs ------------------------------------------------------------------
def folder_line() -> None:
    """How big the runs folder is against its cap, and the last time old runs were pruned to keep it."""
    m = manager()
    m.poll()  # prunes past the cap
    cap = m.max_bytes
    used = m.size()
    st.caption(md_escape(f"The runs folder ({m.root}) holds {fmt_bytes(used)}" +
                         (f" of its {fmt_bytes(cap)} cap; past it, the oldest ended runs are removed first (never a "
                          "queued, running, paused or interrupted one)." if cap else ".")))
    if m.last_removal is not None:
        st.info(md_escape(m.last_removal.message), icon=":material/delete_sweep:")


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and k != "network":
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def _settings(cfg: TrainConfig) -> dict:
    d = _flat(cfg.to_dict())
    d["network"] = _network_name(cfg.network)
    d["lr"], d["weight_decay"] = cfg.learning_rate, cfg.decay  # the recipe's defaults, spelled out
    for key in ("train_samples", "eval_samples"):
        if d.get(key) is None:
            d[key] = "all"
    if d.get("pretrained_from"):
        d["pretrained_from"] = pathlib.Path(d["pretrained_from"]).parent.name  # the earlier run's id
    return d


def differing_settings(configs: dict[str, TrainConfig]) -> pd.DataFrame:
    """One row per run, one column per setting whose value is not the same in all of them."""
    rows = {run_id: _settings(cfg) for run_id, cfg in configs.items()}
    keys = list(dict.fromkeys(k for r in rows.values() for k in r))
    differ = [k for k in keys if len({json.dumps(r.get(k), sort_keys=True, default=str) for r in rows.values()}) > 1]
    return pd.DataFrame([{"run": run_id, **{k: r.get(k) for k in differ}} for run_id, r in rows.items()])


def comparison_table(runs: list[str]) -> pd.DataFrame:
    """Per run: final test metric, parameters, MACs per image, training time, epochs."""
    m = manager()
    rows = []
    for run_id in runs:
        s, result = m.status(run_id), m.result(run_id) or {}
        test = result.get("test") or {}
        row = {"run": run_id, "state": s.get("state")}
        if "accuracy" in test:
            row["test accuracy"] = f"{test['accuracy']:.1%}"
        if "mae" in test:
            row["test MAE"] = f"{test['mae']:.3g}"
        row["trainable parameters"] = result.get("trainable_parameters")
        row["parameters"] = result.get("total_parameters")
        row["MACs per image"] = s.get("macs")
        row["training time (s)"] = None if result.get("seconds") is None else round(result["seconds"], 1)
        row["epochs"] = result.get("epochs_run", s.get("epoch"))
        rows.append(row)
    return pd.DataFrame(rows)


def overlay_figure(curves: dict[str, list[dict]], key: str, title: str, axis: str) -> go.Figure:
    fig = go.Figure()
    for run_id, epochs in curves.items():
        fig.add_trace(go.Scatter(x=[e["epoch"] for e in epochs], y=[e.get(key) for e in epochs],
                                 mode="lines+markers", name=run_id))
    fig.update_layout(height=300, margin=dict(l=10, r=10, t=30, b=10), title=title, xaxis_title="epoch",
                      yaxis_title=axis, legend=dict(orientation="h", y=-0.3))
    return fig


def runs_comparison() -> None:
    """Pick two or more of this session's runs: their validation curves overlaid, the settings that differ, their
    final test metrics, parameters, MACs and training time."""
    m = manager()
    ids = [s["run_id"] for s in m.list(owner=owner()) if m.metrics(s["run_id"], "epoch")]
    if len(ids) < 2:
        return
    chosen = st.multiselect("Compare runs", ids, key=K + "compare", placeholder="Choose two or more runs",
                            help="Their validation curves overlaid, the settings that differ, the final metrics.")
    if len(chosen) < 2:
        return
    curves = {r: m.metrics(r, "epoch") for r in chosen}
    classification = all(any("val_accuracy" in e for e in c) for c in curves.values())
    c1, c2 = st.columns(2)
    if classification:
        c1.plotly_chart(overlay_figure(curves, "val_accuracy", "Validation accuracy per epoch", "accuracy"),
                        key="train.compare.metric", config={"displayModeBar": False})
    elif all(any("val_mae" in e for e in c) for c in curves.values()):
        c1.plotly_chart(overlay_figure(curves, "val_mae", "Validation MAE per epoch", "MAE"),
                        key="train.compare.metric", config={"displayModeBar": False})
    c2.plotly_chart(overlay_figure(curves, "val_loss", "Validation loss per epoch", "loss"),
                    key="train.compare.loss", config={"displayModeBar": False})
    configs = {}
    for r in chosen:
        try:
            configs[r] = m.config(r)
        except TrainingError:
            pass
    settings = differing_settings(configs)
    if len(settings.columns) > 1:
        st.markdown("**The settings that differ**")
        st.dataframe(settings, hide_index=True, width="stretch")
    else:
        st.caption("These runs have the same settings.")
    st.markdown("**Results**")
    st.dataframe(comparison_table(chosen), hide_index=True, width="stretch", column_config={
        "trainable parameters": st.column_config.NumberColumn(format="localized"),
        "parameters": st.column_config.NumberColumn(format="localized"),
        "MACs per image": st.column_config.NumberColumn(format="localized")})
