"""Compare: two to four compositions or catalog models side by side — costs, stages, receptive-field growth."""
import itertools

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
import streamlit as st

from explorer import catalog, ui
from explorer.analysis import AnalysisError
from explorer.compare import align
from explorer.fields import rf_growth
from explorer.spec import SpecError

st.header("Compare", anchor=False)
st.caption("Pick two to four architectures: the composition you are building, ones you pinned on this page, "
           "or catalog models as published.")

PINS = "compare.pins"
pins: list = st.session_state.setdefault(PINS, [])  # ArchitectureSpec objects, pinned in this session
current = ui.current_spec()
c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
c1.markdown(f"Current composition: **{ui.md_escape(current.summary())}**")
if c2.button("Pin it for comparison", icon=":material/push_pin:", disabled=current in pins):
    pins.append(current)
    st.rerun()

options = {f"composition: {p.summary()}": ("spec", p) for p in pins}
options[f"composition: {current.summary()} (current)"] = ("spec", current)
for name in catalog.names():
    options[f"model: {name}"] = ("model", name)
labels = list(options)
default = [labels[-len(catalog.names()) - 1]] + ["model: resnet50"] if "model: resnet50" in options else []
chosen = st.multiselect("Architectures (2–4)", labels, default=default[:4], max_selections=4, key="compare.chosen")
if len(chosen) < 2:
    st.info("Choose at least two architectures to compare.", icon=":material/compare_arrows:")
    st.stop()

analyses = {}
for label in chosen:
    kind, value = options[label]
    try:
        if kind == "spec":
            analyses[label] = ui.cached_spec_analysis(value)
        else:
            # One frame's shape: a model taking several (RAFT's two frames) gets it once per input.
            analyses[label] = ui.cached_analysis(value, *catalog.info(value).input_shapes[0])
    except (SpecError, AnalysisError) as e:
        st.error(ui.md_escape(f"{label}: {e}"), icon=":material/error:")
if len(analyses) < 2:
    st.stop()


def short(label: str) -> str:
    return label.split(": ", 1)[1]


def final_rf(a) -> str:
    levels = a.output_levels("")
    return ", ".join(ui.fmt_rf(l["rf"], l["is_global"]) for l in levels)


rows = {
    "input": lambda a: ui.fmt_shape(a.input_shape),
    "parameters": lambda a: ui.fmt_int(a.params),
    "trainable": lambda a: ui.fmt_int(a.trainable_params),
    "GMACs / image": lambda a: f"{a.macs / 1e9:,.3f}",
    "GFLOPs / image": lambda a: f"{a.flops / 1e9:,.3f}",
    "activations / image": lambda a: ui.fmt_bytes(a.activation_bytes),
    "training memory / image": lambda a: ui.fmt_bytes(a.training_bytes),
    "weights": lambda a: ui.fmt_bytes(a.weight_bytes),
    "receptive field at the output": final_rf,
}


def fitting_columns(df: pd.DataFrame, index_label: str = "") -> dict:
    """column_config giving every column (and the index) a width that shows its whole name and every cell:
    left to fit the cells alone, Streamlit cuts a name longer than its values."""
    px = lambda texts: 8 * max(len(str(t)) for t in texts) + 24  # ≈ 8 px a character at the table's font
    config = {c: st.column_config.TextColumn(c, width=px([c, *df[c]])) for c in df.columns}
    config["_index"] = st.column_config.TextColumn(index_label, width=px([index_label, *df.index]))
    return config


st.subheader("Costs", anchor=False)
costs = pd.DataFrame({short(k): [f(a) for f in rows.values()] for k, a in analyses.items()}, index=list(rows))
st.dataframe(costs, width="stretch", column_config=fitting_columns(costs))

st.subheader("Stage by stage, aligned by stride", anchor=False)
st.caption("Stage names do not line up across families (mobilenet_v2's features.3 is a 56×56 map, "
           "efficientnet_b0's a 28×28 one), so each row is a stride — input pixels between neighbouring units of "
           "a map — and each architecture's column names the stage that produces that stride last, with its "
           "channels and receptive field; below it, the parameters and MACs spent so far: everything run up "
           "to and including that stage. — : no map at that stride.")
names = [short(k) for k in analyses]
colours = dict(zip(names, itertools.cycle(qualitative.D3)))  # consecutive models in clearly different hues
strides, per = align(analyses)
# Models at different input sizes (each at its weights' size) make different resolutions at one stride.
sizes = {k: {per[label][k].resolution for label in analyses if k in per[label]} for k in strides}


def row_label(key) -> str:
    if not isinstance(key, tuple):  # a composition's neck or head, after its backbone
        return key
    stride = f"stride {ui.fmt_pair(key)}"
    return f"{ui.fmt_shape(next(iter(sizes[key])))} · {stride}" if len(sizes[key]) == 1 else stride


def stage_cell(e) -> str:
    if e is None:
        return "—"
    if e.stride is None:  # a composition's neck or head: what it is, its costs beside
        return e.kind
    size = "" if len(sizes[e.stride]) == 1 else f" · {ui.fmt_shape(e.resolution)}"
    return f"{e.stage} · {e.channels:,} ch · RF {ui.fmt_rf(e.rf, e.is_global)}{size}"


def spent(params, macs, signed: bool = False) -> str:
    """Parameters · MACs in K / M / G, short enough that every architecture's column fits beside the others."""
    if params is None:
        return "—"
    fmt = lambda n: ("−" if n < 0 else "+" if signed else "") + ui.fmt_count(abs(n))
    return f"{fmt(params)} · {fmt(macs)}"


index = [row_label(k) for k in strides]
# Each architecture's cells in its curve's colour below, so a column and a curve are matched at a glance.
tint = lambda col: [f"color: {colours.get(col.name, 'inherit')}"] * len(col)
mapless = [name for label, name in zip(analyses, names) if not per[label]]
if mapless:
    st.info(f"{', '.join(mapless)}: no stage outputs one C×H×W feature map (several inputs or outputs, or tokens "
            "instead of a map), so there is nothing to line up by stride.", icon=":material/info:")
if strides:
    aligned = pd.DataFrame({name: [stage_cell(per[label].get(k)) for k in strides]
                            for label, name in zip(analyses, names)}, index=index)
    st.dataframe(aligned.style.apply(tint), width="stretch",
                 column_config=fitting_columns(aligned, "resolution · stride"))

    st.markdown("**Parameters · MACs so far** at each stride")
    so_far = {name: [(per[label][k].params_so_far, per[label][k].macs_so_far) if k in per[label] else (None, None)
                     for k in strides] for label, name in zip(analyses, names)}
    costs_so_far = pd.DataFrame({name: [spent(*v) for v in so_far[name]] for name in names}, index=index)
    if len(names) == 2:  # the difference, second minus first, where both make the stride
        costs_so_far["Δ"] = [spent(None, None) if a[0] is None or b[0] is None else
                             spent(b[0] - a[0], b[1] - a[1], signed=True)
                             for a, b in zip(so_far[names[0]], so_far[names[1]])]
    st.dataframe(costs_so_far.style.apply(tint), width="stretch",
                 column_config=fitting_columns(costs_so_far, "resolution · stride"))

st.subheader("Receptive field, layer by layer", anchor=False)
fig = go.Figure()
for label, a in analyses.items():
    df = rf_growth(a)  # the one curve definition: the larger side, as on Receptive fields
    fig.add_trace(go.Scatter(x=df["index"], y=df["size"].astype(float), mode="lines", name=short(label),
                             line=dict(color=colours[short(label)], width=2.5),
                             customdata=list(zip(df.layer, df.rf_text)),
                             hovertemplate="%{customdata[0]}<br>RF %{customdata[1]} px<extra></extra>"))
fig.update_layout(xaxis_title="layer (in execution order)", yaxis_title="receptive field (px, larger side)",
                  height=420, margin=dict(l=10, r=10, t=10, b=10), legend=dict(orientation="h", y=-0.2))
st.plotly_chart(fig, width="stretch")
st.caption("The convolutional-path field; where pooling, a gate or attention reaches every pixel the field is "
           "global from there on (the costs table says so for the output).")
