"""Compare: two to four compositions or catalog models side by side — costs, stages, receptive-field growth."""
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from explorer import catalog, ui
from explorer.analysis import AnalysisError
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
            analyses[label] = ui.cached_analysis(value, *catalog.info(value).input_size)
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
st.subheader("Costs", anchor=False)
st.dataframe(pd.DataFrame({short(k): [f(a) for f in rows.values()] for k, a in analyses.items()},
                          index=list(rows)), width="stretch")

st.subheader("Stage by stage", anchor=False)
def stage_rows(a):
    """A catalog model's stages; for a composition its backbone's stages (same names as the model's) + neck, head."""
    parts = {s.name: s for s in a.stages()}
    if "backbone" not in parts:
        return [(s.name, s) for s in parts.values()]
    from explorer.compose import STAGE_PREFIX  # where a composition's backbone stages sit

    inner = [(s.name[len(STAGE_PREFIX):], s) for s in a.stages(depth=3) if s.name.startswith(STAGE_PREFIX)]
    return inner + [(p, parts[p]) for p in ("neck", "head") if p in parts]


frames = []
for label, a in analyses.items():
    for name, s in stage_rows(a):
        frames.append({"stage": name, "architecture": short(label), "params": s.params, "MACs": s.macs})
df = pd.DataFrame(frames)
wide = df.pivot_table(index="stage", columns="architecture", values=["params", "MACs"], aggfunc="sum", sort=False)
order = list(dict.fromkeys(df["stage"]))
wide = wide.reindex(order)
names = [short(k) for k in analyses]
if len(names) == 2:  # the difference, second minus first
    wide[("params", "Δ")] = wide[("params", names[1])].fillna(0) - wide[("params", names[0])].fillna(0)
    wide[("MACs", "Δ")] = wide[("MACs", names[1])].fillna(0) - wide[("MACs", names[0])].fillna(0)
wide.columns = [f"{metric} · {arch}" for metric, arch in wide.columns]
st.dataframe(wide.map(lambda v: "" if pd.isna(v) else f"{int(v):,}"), width="stretch")

st.subheader("Receptive field, layer by layer", anchor=False)
fig = go.Figure()
for label, a in analyses.items():
    df = rf_growth(a)  # the one curve definition: the larger side, as on Receptive fields
    fig.add_trace(go.Scatter(x=df["index"], y=df["size"].astype(float), mode="lines", name=short(label),
                             customdata=list(zip(df.layer, df.rf_text)),
                             hovertemplate="%{customdata[0]}<br>RF %{customdata[1]} px<extra></extra>"))
fig.update_layout(xaxis_title="layer (in execution order)", yaxis_title="receptive field (px, larger side)",
                  height=420, margin=dict(l=10, r=10, t=10, b=10), legend=dict(orientation="h", y=-0.2))
st.plotly_chart(fig, width="stretch")
st.caption("The convolutional-path field; where pooling, a gate or attention reaches every pixel the field is "
           "global from there on (the costs table says so for the output).")
