"""Streamlit glue for the Train page: the process-wide `RunManager`, the widgets that make a `TrainConfig`, what
the page shows before a run (cached), and the live view of a run (a fragment that polls the manager).

A run lives in its folder, never in session state: the session keeps only an owner id, and the run being shown
is named in the address bar (``?run=<id>``), so a reload re-attaches to it. The live view is a
``st.fragment(run_every=…)`` that calls `RunManager.poll` itself; no thread of ours calls Streamlit.
"""
from __future__ import annotations

import json
import secrets

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from .. import catalog, weights
from ..analysis import AnalysisError, analyze
from ..training import (MODE_TITLES, MODES, RECIPE_DEFAULTS, RECIPES, Augmentation, RunManager, TrainConfig,
                        TrainingError, datasets, default_runs_root, lr_schedule)
from ..training.networks import prepare_model
from ..training.runfolder import ACTIVE_STATES, RESUMABLE_STATES
from .composition import current_spec
from .format import fmt_bytes, fmt_count, fmt_int, md_escape

__all__ = ["manager", "owner", "network_choice", "config_widgets", "plan", "schedule_figure", "dataset_preview",
           "start_run", "shown_run", "live_run", "run_outcome", "runs_table", "POLL_SECONDS"]

POLL_SECONDS = 1.0
K = "w.train."  # widget keys
_OWNER = "train.owner"
_SWITCH = "train.switch"  # the Runs picker chose a run to show
_SHOWN = "train.shown"  # the id of the run the page shows (the run itself lives in its folder)
SOURCES = ("catalog", "composition", *weights.READY_MODELS)
DEFAULT_CATALOG = "lenet5"
MODE_LABELS = {"scratch": "from scratch", "frozen": "frozen backbone", "finetune": "fine-tune",
               "discriminative": "fine-tune, slower backbone"}
SMOOTHING = 0.9  # exponential moving average of the per-batch loss (as TensorBoard's slider)


# -- the manager and the owner ---------------------------------------------------------------------------------
@st.cache_resource(show_spinner=False)
def _manager(root: str) -> RunManager:
    return RunManager(root)


def manager() -> RunManager:
    """One manager per runs folder for the whole server (``$EXPLORER_RUNS``, else ~/.cache/cnn-explorer/runs);
    keyed by the folder, so a test that points the variable elsewhere gets its own."""
    return _manager(str(default_runs_root()))


def owner() -> str:
    """This session's owner id (its runs, its quota). A session opened on ``?run=<id>`` (a reload) takes that
    run's owner, so the Runs table shows the same runs after a reload."""
    if _OWNER not in st.session_state:
        found = None
        run_id = _shown_id()
        if run_id:
            try:
                found = manager().status(run_id).get("owner")
            except TrainingError:
                pass
        st.session_state[_OWNER] = found or secrets.token_hex(8)
    return st.session_state[_OWNER]


# -- the choices -------------------------------------------------------------------------------------------------
def _source_label(source: str) -> str:
    if source == "catalog":
        return "Catalog model"
    if source == "composition":
        return "Your composition"
    return f"Ready: {weights.READY_MODELS[source].title}"


def network_choice():
    """The network radio (a catalog model, the composition, a ready model) and, for a catalog model, which one.
    Returns (network for TrainConfig, a line saying what it is)."""
    source = st.radio("Network", SOURCES, key=K + "source", format_func=_source_label, horizontal=True,
                      help="A catalog model (LeNet-5 by default), your composition from Compose, or a model that "
                           "ships trained with the app (its architecture; pretrained modes start from its weights).")
    if source == "catalog":
        names = catalog.names()
        name = st.selectbox("Catalog model", names, index=names.index(DEFAULT_CATALOG), key=K + "catalog",
                            format_func=lambda n: f"{n} — {catalog.info(n).family} ({catalog.info(n).year})")
        return name, f"the catalog model {name} — {catalog.info(name).family} ({catalog.info(name).year})"
    if source == "composition":
        spec = current_spec()
        return spec, f"your composition, {spec.summary()}"
    ready = weights.READY_MODELS[source]
    return source, f"the ready model {ready.title}"


def _recipe_label(recipe: str) -> str:
    return {"adam": "Adam (constant learning rate)", "one_cycle": "One-cycle (Adam, rises then anneals)",
            "resnet": "ResNet (SGD momentum 0.9, ÷10 on a plateau)"}.get(recipe, recipe)


def config_widgets(network):
    """The dataset, mode, recipe and its numbers; returns (TrainConfig or None, the error sentence or None)."""
    c1, c2, c3 = st.columns(3)
    names = datasets.names()
    dataset = c1.selectbox("Dataset", names, key=K + "dataset", format_func=lambda n: datasets.get(n).title)
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
    try:
        cfg = TrainConfig(network=network, dataset=dataset, mode=mode, recipe=recipe, epochs=int(epochs),
                          batch_size=int(batch), lr=float(lr), weight_decay=float(decay),
                          label_smoothing=float(smoothing), train_samples=int(samples) or None, seed=int(seed),
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


def plan(cfg: TrainConfig) -> dict:
    """Before the start: parameter counts (trainable / frozen / total), MACs per image, autograd-saved bytes per
    image, the input shape, the notes. Raises TrainingError with a sentence."""
    return _plan(_key(cfg))


def describe(cfg: TrainConfig, network_line: str) -> str:
    """ "Trains the catalog model lenet5 — LeNet (1998): from scratch (fresh random weights), on Digits (32×32)." """
    return f"Trains {network_line}: {MODE_TITLES[cfg.mode]}, on {datasets.get(cfg.dataset).title}."


def plan_metrics(cfg: TrainConfig, p: dict) -> None:
    m = st.columns(4)
    m[0].metric("Trainable parameters", fmt_int(p["trainable"]),
                help=f"Frozen {fmt_int(p['frozen'])}, total {fmt_int(p['total'])}.")
    macs = p["macs"]
    m[1].metric("MACs per image", "—" if macs is None else fmt_count(macs),
                help=None if macs is None else f"{fmt_int(macs)} multiply-accumulates = {fmt_int(2 * macs)} FLOPs, "
                                               f"at the network's {'×'.join(map(str, p['input_shape']))} input.")
    saved = p["training_bytes"]
    m[2].metric(f"Training, batch {cfg.batch_size:,}", "—" if saved is None else fmt_bytes(saved * cfg.batch_size),
                help="Bytes autograd saves for the backward pass of one batch (activations only; weights, "
                     "gradients and optimiser state come on top).")
    m[3].metric("Training images", fmt_int(p["train_images"]),
                help=f"The run holds its data set at the network's input in memory: {fmt_bytes(p['data_bytes'])}.")


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
    try:
        run_id = manager().submit(cfg, owner=owner())
    except TrainingError as e:
        return str(e)
    _show(run_id)
    return None


def _show(run_id: str | None) -> None:
    st.session_state[_SHOWN] = run_id
    if run_id:
        st.query_params["run"] = run_id
    elif "run" in st.query_params:
        del st.query_params["run"]


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
    return run_id


def _status_line(s: dict) -> str:
    state = s.get("state", "unknown")
    parts = [f"**{state}**", f"epoch {s.get('epoch') or 0} of {s.get('epochs') or '?'}"]
    if s.get("queue_position"):
        parts.append(f"position {s['queue_position']} in the queue")
    if s.get("requested"):
        parts.append(f"{s['requested']} requested")
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


def lr_figure(batches: list[dict]) -> go.Figure:
    lrs = [b["lr"] for b in batches]
    fig = go.Figure(go.Scatter(x=[b["step"] for b in batches], y=lrs, mode="lines"))
    fig.update_layout(height=280, margin=dict(l=10, r=10, t=30, b=10), title="Learning rate used",
                      xaxis_title="step", yaxis_title="learning rate",
                      yaxis=dict(range=[0, max(lrs) * 1.15], exponentformat="power"))
    return fig


def _request_buttons(m: RunManager, run_id: str, state: str) -> None:
    shown = [b for b, when in (("stop", ACTIVE_STATES), ("pause", ("running",)), ("resume", RESUMABLE_STATES))
             if state in when]
    if not shown:
        return
    cols = dict(zip(shown, st.columns([1] * len(shown) + [6 - len(shown)])))
    try:
        if "stop" in cols and cols["stop"].button("Stop run", key=K + f"stop.{run_id}", icon=":material/stop:"):
            st.toast(m.stop(run_id))
        if "pause" in cols and cols["pause"].button("Pause run", key=K + f"pause.{run_id}", icon=":material/pause:",
                                                    help="Checkpoint at the end of this epoch and free the slot."):
            st.toast(m.pause(run_id))
        if "resume" in cols and cols["resume"].button("Resume run", key=K + f"resume.{run_id}",
                                                      icon=":material/play_arrow:",
                                                      help="Continue from its last complete epoch's checkpoint."):
            st.toast(m.resume(run_id))
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
    _request_buttons(m, run_id, state)
    s = m.status(run_id)  # again: a button may just have changed it
    with head:  # drawn above the buttons, after them: the line says what the click did
        st.markdown(f"Run `{run_id}` · {_status_line(s)}")
        if s.get("message"):
            st.caption(md_escape(s["message"]))
    lines = m.metrics(run_id)
    batches = [x for x in lines if x.get("kind") == "batch"]
    epochs = [x for x in lines if x.get("kind") == "epoch"]
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
        acc = "accuracy" if any("val_accuracy" in e for e in epochs) else "mae"
        c2.plotly_chart(epoch_figure(epochs, acc, "Accuracy per epoch" if acc == "accuracy" else
                                     "Mean absolute error per epoch", acc), key=f"train.eacc.{run_id}",
                        config={"displayModeBar": False})
        st.dataframe(_epoch_table(epochs), hide_index=True, width="stretch", column_config={
            "seconds": st.column_config.NumberColumn(format="%.2f"),
            "images / s": st.column_config.NumberColumn(format="%.0f"),
            "learning rate": st.column_config.NumberColumn(format="%.3g")})


def _epoch_table(epochs: list[dict]) -> pd.DataFrame:
    names = {"epoch": "epoch", "train_loss": "training loss", "train_accuracy": "training accuracy",
             "val_loss": "validation loss", "val_accuracy": "validation accuracy", "val_top5": "validation top-5",
             "val_mae": "validation MAE", "lr": "learning rate", "epoch_seconds": "seconds",
             "images_per_second": "images / s", "stopped_after_batch": "stopped after batch"}
    df = pd.DataFrame([{names[k]: e[k] for k in names if k in e} for e in epochs])
    if "stopped after batch" in df:
        df["stopped after batch"] = df["stopped after batch"].map(lambda v: "" if pd.isna(v) else str(int(v)))
    for col in ("training accuracy", "validation accuracy", "validation top-5"):
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
    fig.update_layout(height=420, margin=dict(l=10, r=10, t=30, b=10), title="Confusion matrix (test split)",
                      xaxis_title="predicted", yaxis_title="true", yaxis=dict(autorange="reversed", type="category"),
                      xaxis=dict(type="category"))
    return fig


def pairs_figure(pairs: list[list[float]], unit: str) -> go.Figure:
    pred, true = [p[0] for p in pairs], [p[1] for p in pairs]
    lo, hi = min(true + pred), max(true + pred)
    fig = go.Figure([go.Scatter(x=true, y=pred, mode="markers", marker=dict(size=5, opacity=0.6), name="test"),
                     go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", line=dict(dash="dot"), name="perfect")])
    fig.update_layout(height=420, margin=dict(l=10, r=10, t=30, b=10), title="Predicted against true (test split)",
                      xaxis_title=f"true ({unit})", yaxis_title=f"predicted ({unit})")
    return fig


def run_outcome(run_id: str) -> None:
    """Test metrics, the confusion matrix or predicted-vs-true, and the downloads of an ended run."""
    m = manager()
    result = m.result(run_id)
    if result is None:
        return
    test = result["test"]
    dataset = datasets.get(result["dataset"])
    cols = st.columns(4)
    if "accuracy" in test:
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
                if "correct" in test else f"Test images: **{fmt_int(test['count'])}**.")
    if result.get("notes"):
        st.caption(md_escape("; ".join(result["notes"]) + "."))
    if "confusion" in test:
        st.plotly_chart(confusion_figure(test["confusion"], dataset.classes), key=f"train.confusion.{run_id}",
                        config={"displayModeBar": False})
    elif result.get("pairs"):
        st.plotly_chart(pairs_figure(result["pairs"], dataset.target.unit), key=f"train.pairs.{run_id}",
                        config={"displayModeBar": False})
    folder = m.folder(run_id)
    c1, c2 = st.columns(2)
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
        test = s.get("test") or {}
        score = (f"{test['accuracy']:.1%} accuracy" if "accuracy" in test else
                 f"MAE {test['mae']:.3g}" if "mae" in test else "")
        rows.append({"run": s["run_id"], "state": s.get("state"),
                     "network": _network_name(cfg.network) if cfg else "?",
                     "dataset": cfg.dataset if cfg else "?", "mode": cfg.mode if cfg else "?",
                     "recipe": cfg.recipe if cfg else "?",
                     "epochs": f"{s.get('epoch') or 0} of {s.get('epochs') or '?'}", "test": score})
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    ids = [r["run"] for r in rows]
    current = _shown_id()
    key = K + "open"
    st.session_state[key] = current if current in ids else None  # the address bar names the run shown
    st.selectbox("Show run", ids, key=key, placeholder="Choose a run to show", on_change=_open_run, args=(key,))
