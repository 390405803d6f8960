"""Train: choose a network, a dataset, a mode and a recipe; see what the run will cost before it starts; start it
as a job of its own and watch it train (curves, the time left, predictions on a few validation images); then its
test metrics, its confusion matrix with the images of each cell, its files and a training script; compare runs.

Layout only: the manager, the widgets, the cached figures and the live view are in `explorer.ui.training`; the
runs themselves are `explorer.training` jobs in processes of their own, shown by their id in the address bar.
"""
import streamlit as st

from explorer import ui
from explorer.training import TrainingError, datasets
from explorer.ui import experiments, training

esc = ui.md_escape

st.header("Train", anchor=False)
st.markdown("Train a network on data that is here offline: from scratch, with a pretrained backbone frozen, or "
            "fine-tuned. Each run trains in a process of its own; leaving or reloading the page does not stop it.")

training.owner()  # ?owner= (a reload) keeps this session's runs; a link with ?run= alone opens it read-only
network, network_line, earlier = training.network_choice()
cfg, error = training.config_widgets(network, earlier)

plan = estimate = None
if cfg is not None:
    st.caption(esc(training.describe(cfg, network_line)))
    try:
        plan = training.plan(cfg)
        error = training.refusal(cfg, plan)  # more training memory than the server allows: refused before
        if error is None:
            estimate = training.estimate(cfg)
    except TrainingError as e:
        error = str(e)
if error:
    st.error(esc(error), icon=":material/error:")

st.subheader("Before the start", anchor=False)
if plan is not None:
    training.plan_metrics(cfg, plan, estimate)
    if estimate is not None:
        st.caption(esc(training.estimate_line(cfg, estimate)))
    if plan["notes"]:
        st.caption(esc("; ".join(plan["notes"]) + "."))
left, right = st.columns(2, gap="large")
with left:
    if plan is not None:
        fig, note = training.schedule_figure(cfg)
        st.plotly_chart(fig, key="train.schedule", config={"displayModeBar": False})
        if note:
            st.caption(esc(note))
    if st.button("Start training", type="primary", icon=":material/model_training:",
                 disabled=plan is None or error is not None, key="w.train.start"):
        refused = training.start_run(cfg)
        if refused:
            st.error(esc(refused), icon=":material/block:")
with right:
    name = cfg.dataset if cfg is not None else st.session_state.get("w.train.dataset", datasets.names()[0])
    if name in datasets.names() or (cfg is not None and name == cfg.dataset):  # on disk: it can be shown
        st.markdown(f"**{esc(datasets.get(name).title)}**: the first training images")
        training.dataset_preview(name)

run_id = training.shown_run()
if run_id:
    st.divider()
    st.subheader("The run", anchor=False)
    training.live_run(run_id)
    training.run_outcome(run_id)

st.divider()
st.subheader("Experiments from the lectures", anchor=False)
experiments.experiments_section()  # a group of runs side by side; ?experiment=<id> shows it again after a reload

st.divider()
st.subheader("Runs of this session", anchor=False)
training.runs_table()
training.runs_comparison()
training.folder_line()
