"""Layers: what one architecture costs, layer by layer: parameters, MACs / FLOPs, memory, receptive fields.

Layout only. The numbers come from `explorer` (via the cached analysis in `explorer.ui`); this file never
builds a model or walks its modules.
"""
import streamlit as st

from explorer import ui
from explorer.analysis import AnalysisError
from explorer.spec import SpecError
from explorer.vis.costs import cost_figure

# -- what to analyse ------------------------------------------------------------------------------------------
# The source is committed like the rest of the choice (a link with ?spec= and no model opens on the composition).
SOURCES = {"Catalog model": "catalog", "Your composition": "composition"}
LABELS = {v: k for k, v in SOURCES.items()}


def _on_source() -> None:
    picked = st.session_state["layers.source"]
    if picked in SOURCES:  # a second click on the chosen one unselects it: the choice stays
        ui.set_layers_source(SOURCES[picked])


ui.seed_widget("layers.source", LABELS[ui.layers_source()])
st.segmented_control("Show", list(SOURCES), key="layers.source", on_change=_on_source,
                     help="A model as published, or what you built on Compose.")
composition = ui.layers_source() == "composition"
esc = ui.md_escape  # library text shown literally (an "_" or "$" in it is not Markdown)
if composition:
    c_dtype, c_batch, _ = st.columns([1.4, 1.4, 5.4], vertical_alignment="bottom")
    dtype = c_dtype.selectbox("dtype", list(ui.DTYPES), key="layers.comp_dtype")
else:
    c_model, c_side, c_dtype, c_batch = st.columns([4, 1.4, 1.4, 1.4], vertical_alignment="bottom")
    with c_model:
        ui.model_picker()
    with c_side:
        ui.side_input()
    with c_dtype:
        ui.dtype_picker()
with c_batch:
    batch = int(st.number_input("Batch size", min_value=1, max_value=1 << 16, value=1, step=1, key="layers.batch",
                                help="Images per forward pass: scales activation and training memory, not weights."))

sel = ui.current_selection()
mi = sel.info

# -- what it is -----------------------------------------------------------------------------------------------
if composition:
    spec = ui.current_spec()
    st.header(esc(spec.summary()), anchor=False)
    st.markdown("**Your composition** (from Compose, the one in the sidebar and the link): backbone, neck and head "
                "are sections of the table below.")
else:
    st.header(esc(sel.model), anchor=False)
    about = (f"**Catalog model** as published · **{esc(mi.family)}** · {mi.year} · *{esc(mi.paper)}*  \n"
             f"{esc(mi.description)}")
    if mi.acc1 is not None:
        about += f"  \nImageNet-1K top-1 {mi.acc1:.2f} % with torchvision's default weights."
    st.markdown(about)

# -- what it costs --------------------------------------------------------------------------------------------
try:
    a = ui.cached_spec_analysis(spec, dtype) if composition else sel.analysis()
except (AnalysisError, SpecError) as e:
    # A person can ask for this (vgg16 at 16 px): say what to change, keep their choice in the boxes above.
    st.error(esc(e), icon=":material/error:")
    if not composition:
        ui.input_fix_buttons(sel)
    st.stop()

shape = ui.fmt_shape(a.input_shape)
# "Count biases" (drawn with the table below) sets the headline too: its state is known before it is drawn.
biases = st.session_state.get("layers.biases", True)
cols = st.columns(4)
cols[0].metric("Parameters" if biases else "Parameters (weights only)",
               ui.fmt_int(a.params if biases else a.params - a.biases_total),
               help=f"Each tensor once (shared tensors once): {ui.fmt_int(a.params - a.biases_total)} weights + "
                    f"{ui.fmt_int(a.biases_total)} biases"
                    f"{'' if biases else ' (not counted: “Count biases” is off)'}. Buffers such as BatchNorm "
                    f"statistics are not parameters ({ui.fmt_int(a.buffers)} values).")
cols[1].metric("Trainable parameters", ui.fmt_int(a.trainable_params),
               help=f"Frozen: {ui.fmt_int(a.frozen_params)}.")
cols[2].metric("MACs per image", ui.fmt_count(a.macs), help=f"{ui.fmt_int(a.macs)} multiply-accumulates.")
cols[3].metric("FLOPs per image", ui.fmt_count(a.flops), help=f"{ui.fmt_int(a.flops)} floating-point operations.")
st.caption(f"At {shape} in {a.dtype}. **1 MAC = 2 FLOPs**: {ui.fmt_int(a.macs)} MACs = {ui.fmt_int(a.flops)} "
           "FLOPs. G = 10⁹, M = 10⁶.")

mem = a.memory(batch)
cols = st.columns(4)
cols[0].metric("Activations per image", ui.fmt_int(a.activations),
               help="Values: the input plus every conv / pool / fc output (the rows ticked “in sum” below).")
cols[1].metric("Activation memory per image", ui.fmt_bytes(a.activation_bytes),
               help=f"Activations × {a.bytes_per_element} bytes ({a.dtype}).")
cols[2].metric("Training memory per image", ui.fmt_bytes(a.training_bytes),
               help="Bytes autograd saves for the backward pass in a training-mode forward, measured exactly.")
cols[3].metric("Weight memory", ui.fmt_bytes(a.weight_bytes), help="Parameters × bytes per element.")
images = "1 image" if batch == 1 else f"{batch:,} images"
cols = st.columns(4)
cols[0].metric(f"Activation memory, {images}", ui.fmt_bytes(mem["forward_activations"]))
cols[1].metric(f"Training memory, {images}", ui.fmt_bytes(mem["training_saved"]))
st.caption(f"Lecture convention: the input plus every conv / pool / fc output, × {a.bytes_per_element} bytes "
           f"({a.dtype}); in-place ReLU and BatchNorm outputs are not counted. Training memory is what autograd "
           "keeps for backward. Weights are stored once, whatever the batch. MB = 10⁶ bytes.")

for note in ([] if composition else ui.slide_notes(sel, a)):
    st.info(note, icon=":material/school:")
for note in ([mi.note] if mi.note and not composition else []) + list(a.notes):
    st.info(esc(note), icon=":material/info:")

# -- layer by layer -------------------------------------------------------------------------------------------
with st.container(horizontal=True, vertical_alignment="bottom"):
    st.subheader("Layer by layer", anchor=False, width="content")
    st.space("stretch")
    stem = f"{'composition' if composition else sel.model}_{'x'.join(map(str, a.input_shape))}_{a.dtype}"
    # on_click="ignore": a download is not a reason to rerun the page.
    for label, data, ext, mime in (("CSV", a.to_csv(), "csv", "text/csv"),
                                   ("Markdown", a.to_markdown(), "md", "text/markdown"),
                                   ("JSON", a.to_json(), "json", "application/json")):
        st.download_button(label, data, f"{stem}.{ext}", mime, on_click="ignore", icon=":material/download:")
with st.container(horizontal=True, vertical_alignment="center"):
    biases = st.toggle("Count biases", value=True, key="layers.biases",
                       help="Off: the params columns count weights only, as quick slide estimates do.")
    st.space("small")
    extras = st.pills("More columns", list(ui.LAYER_EXTRAS), default=list(ui.LAYER_EXTRAS_DEFAULT),
                      selection_mode="multi", key="layers.columns",
                      help="Every column is in the downloads; on screen, pick what the lesson needs.")
ui.layer_table(a, biases=biases, extras=extras, key="layers.table")

st.subheader("Where it goes", anchor=False)
st.caption("Per layer (bars) and cumulatively (line)."
           + (" For VGG: memory is spent early, on the big maps; parameters sit in the fully connected layers."
              if not composition and mi.family == "VGG" else ""))
for tab, metric in zip(st.tabs(["Parameters", "Activation memory", "MACs"]), ("parameters", "activation memory", "MACs")):
    with tab:
        st.plotly_chart(cost_figure(a, metric), width="stretch", key=f"layers.cost.{metric}")

st.subheader("By stage", anchor=False)
depth = st.radio("Group rows by", [1, 2, 3], horizontal=True, key="layers.depth",
                 format_func=lambda d: ["top-level block", "two path levels", "three path levels"][d - 1],
                 help="Sum the layer rows over the first parts of their module path (layer1, layer1.0, …).")
ui.stage_table(a, depth=depth, biases=biases, key="layers.stages")

st.subheader("Diagram", anchor=False)
composed_dot = (lambda expand, opened: ui.cached_diagram(spec, dtype, expand, opened)) if composition else None
ui.architecture_diagram(a, key="layers.diagram", stem=stem, dot=composed_dot)
