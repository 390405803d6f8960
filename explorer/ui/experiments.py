"""Streamlit glue for the lectures' experiments on the Train page: choose a preset and a budget, read its claim and
what it will run, start the whole group with one button, then watch the runs side by side (curves overlaid, the
table, for the homework the predictions of each model on the same validation images), the verdict and the report.

The group lives in ``<runs root>/experiments/<id>.json`` (`explorer.training.experiments`); the session keeps only
its id, mirrored in the address bar (``?experiment=<id>``), so a reload shows it again. While a run of it is queued
or running, a ``st.fragment(run_every=…)`` polls the manager (as the live view of one run does).
"""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from ..training import TrainingError, experiments
from ..training.runfolder import ACTIVE_STATES
from .format import md_escape
from .training import POLL_SECONDS, manager, owner

__all__ = ["experiments_section"]

K = "w.exp."
_SHOWN = "exp.shown"


def _shown() -> str | None:
    if _SHOWN not in st.session_state:
        st.session_state[_SHOWN] = st.query_params.get("experiment") or None
    return st.session_state[_SHOWN]


def _show(experiment_id: str | None) -> None:
    st.session_state[_SHOWN] = experiment_id
    if experiment_id:
        st.query_params["experiment"] = experiment_id
        st.query_params["owner"] = owner()
    elif "experiment" in st.query_params:
        del st.query_params["experiment"]


def _preset_label(name: str) -> str:
    return experiments.get(name).title


def experiments_section() -> None:
    """The presets: the choice, its claim and runs, the start button, and the shown experiment side by side."""
    names = experiments.names()
    c1, c2 = st.columns([3, 2])
    name = c1.selectbox("Experiment", names, format_func=_preset_label, key=K + "preset")
    budget = c2.radio("Budget", experiments.BUDGETS, format_func=experiments.BUDGET_TITLES.get, key=K + "budget",
                      horizontal=True)
    preset = experiments.get(name)
    st.markdown(f"**The lecture's claim.** {md_escape(preset.claim)}")
    missing = preset.missing()
    if missing:
        st.error(md_escape(missing), icon=":material/error:")
    else:
        runs = preset.runs(budget)
        first = next(iter(runs.values()))
        sizes = ", ".join(f"{label}" for label in runs)
        subsets = ([f"{first.train_samples} training images"] if first.train_samples else []) + (
            [f"scored on {first.eval_samples} validation and {first.eval_samples} test images"]
            if first.eval_samples else [])
        st.caption(md_escape(f"{len(runs)} runs, one after another as slots free: {sizes}; each {first.epochs} "
                             f"epoch{'s' if first.epochs != 1 else ''} on {first.dataset}"
                             + (f" ({', '.join(subsets)})" if subsets else "")
                             + f", batch {first.batch_size}, seed {first.seed}."))
        if st.button("Start the experiment", type="primary", icon=":material/science:", key=K + "start"):
            try:
                exp = experiments.start(name, budget, manager(), owner=owner())
                _show(exp.id)
            except TrainingError as e:
                st.error(md_escape(str(e)), icon=":material/block:")
    experiment_id = _shown()
    if not experiment_id:
        return
    try:
        exp = experiments.load(experiment_id, manager())
    except TrainingError as e:
        st.error(md_escape(str(e)), icon=":material/link_off:")
        _show(None)
        return
    if st.query_params.get("experiment") != exp.id:
        st.query_params["experiment"] = exp.id
    active = _active(exp)
    st.fragment(_draw, run_every=POLL_SECONDS if active else None)(exp.id, active)


def _active(exp) -> bool:
    m = manager()
    if any(r is None and label not in exp.errors for label, r in exp.runs.items()):
        return True
    for run_id in exp.runs.values():
        try:
            if run_id and m.status(run_id).get("state") in ACTIVE_STATES:
                return True
        except TrainingError:
            pass
    return False


def overlay(runs: dict, key: str, title: str, axis: str, with_training: bool) -> go.Figure:
    fig = go.Figure()
    for i, r in enumerate(runs.values()):
        colour = f"hsl({(i * 97) % 360}, 65%, 45%)"
        rows = [e for e in r.epochs if e.get(key) is not None]
        fig.add_trace(go.Scatter(x=[e["epoch"] for e in rows], y=[e[key] for e in rows], mode="lines+markers",
                                 name=r.label, line=dict(color=colour)))
        train_key = key.replace("val_", "train_")
        if with_training and train_key != key:
            rows = [e for e in r.epochs if e.get(train_key) is not None]
            fig.add_trace(go.Scatter(x=[e["epoch"] for e in rows], y=[e[train_key] for e in rows], mode="lines",
                                     name=f"{r.label} (training)", line=dict(color=colour, dash="dash")))
    fig.update_layout(height=300, margin=dict(l=10, r=10, t=30, b=10), title=title, xaxis_title="epoch",
                      yaxis_title=axis, legend=dict(orientation="h", y=-0.3))
    return fig


def _draw(experiment_id: str, was_active: bool) -> None:
    m = manager()
    m.poll()
    exp = experiments.load(experiment_id, m)
    experiments.advance(exp, m)
    preset = experiments.get(exp.preset)
    runs = experiments.summaries(exp, m)
    active = _active(exp)
    if was_active and not active:
        st.rerun()  # all ended: draw once more without polling
    done = sum(1 for r in runs.values() if r.finished)
    st.markdown(f"Experiment `{exp.id}` · **{md_escape(preset.title)}** · "
                f"{experiments.BUDGET_TITLES[exp.budget]} · {done} of {len(runs)} runs finished")
    if any(r.epochs for r in runs.values()):
        keys = experiments.curve_keys(preset)
        cols = st.columns(len(keys))
        for col, (key, title, axis) in zip(cols, keys):
            col.plotly_chart(overlay(runs, key, title, axis, preset.train_and_validation),
                             key=f"exp.{exp.id}.{key}", config={"displayModeBar": False})
    rows = experiments.table_rows(exp, runs)
    df = pd.DataFrame(rows)
    percent = [c for c in df.columns if "accuracy" in c or "mIoU" in c or "Dice" in c]
    for c in percent:
        df[c] = df[c].map(lambda v: "–" if v is None or pd.isna(v) else f"{100 * v:.1f} %")
    st.dataframe(df, hide_index=True, width="stretch", key=f"exp.{exp.id}.table", column_config={
        "parameters": st.column_config.NumberColumn(format="localized"),
        "trainable": st.column_config.NumberColumn(format="localized"),
        "MACs per image": st.column_config.NumberColumn(format="localized")})
    if preset.task == "segmentation":
        grid = experiments.prediction_grid(runs, m)
        if grid is not None:
            titles, pictures = grid
            st.markdown(f"**Predictions on the same {len(pictures)} validation images** (image, truth, "
                        + ", ".join(titles[2:]) + ")")
            for c, title in zip(st.columns(len(titles)), titles):
                c.caption(md_escape(title))
            for row in pictures:  # one line per validation image, so each model's mask sits beside the truth
                for c, picture in zip(st.columns(len(titles)), row):
                    if picture is not None:
                        c.image(picture, width=72)
    st.markdown("**What this run shows**")
    for sentence in experiments.verdict(exp, m, runs):
        st.markdown(f"- {md_escape(sentence)}")
    if not active:
        st.download_button("Download the report (Markdown and figures, .zip)", experiments.report(exp, m),
                           file_name=f"experiment-{exp.id}.zip", mime="application/zip", key=f"exp.{exp.id}.report",
                           icon=":material/download:")
