"""Receptive fields: how much of the input one output unit sees, layer by layer, model beside model, and on a
photo (the theoretical box against the effective field, the gradient of that unit).

Layout only. Numbers come from the cached analyses in `explorer.ui`, tables / boxes / heatmaps from
`explorer.vis`, the model for the effective field from `explorer.ui.vis` (a shared, frozen model).
"""
import plotly.graph_objects as go
import streamlit as st

from explorer import catalog, ui, vis
from explorer.analysis import AnalysisError
from explorer.fields import rf_growth
from explorer.ui import vis as ui_vis

DEFAULT_MODELS = ["resnet18", "resnet34", "resnet50", "resnet101"]
# Zero is transparent (the photo shows), then dark red to yellow: readable over any photo, also when projected.
HEAT_SCALE = [[0.0, "rgba(0,0,0,0)"], [0.02, "rgba(120,0,40,0.35)"], [0.25, "rgb(200,20,40)"],
              [0.6, "rgb(255,140,0)"], [1.0, "rgb(255,255,80)"]]
COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"]  # four models, four hues that stay apart on a projector
esc = ui.md_escape

st.header("Receptive fields", anchor=False)
st.markdown("How much of the input image can one output unit see? Each layer widens the field by "
            "(kernel − 1) × jump, where the jump is the product of the strides so far. The lecture's rule: "
            "**the input size should not exceed the receptive field** of the last feature map.")

# -- what to compare ------------------------------------------------------------------------------------------
c_models, c_side, c_log = st.columns([5, 1.3, 1.2], vertical_alignment="bottom")
with c_models:
    models = st.multiselect("Models (up to four)", catalog.names(), default=DEFAULT_MODELS, max_selections=4,
                            key="rf.models", format_func=ui.model_label)
with c_side:
    side = int(st.number_input("Input size (px)", min_value=ui.MIN_SIDE, max_value=ui.MAX_SIDE, value=224, step=1,
                               key="rf.side", help="Height = width of a square input, for every model here."))
with c_log:
    log_y = st.toggle("Log y axis", key="rf.log", help="Early layers stay readable beside fields of ~1000 px.")
    # A link that carries a composition (?spec=) opens with it among the curves.
    with_spec = st.toggle("+ your composition", value=ui.spec_arrived(), key="rf.spec",
                          help="Add the composition from Compose (at its own input size) to the curves.")

if not models:
    st.info("Pick at least one model above.", icon=":material/info:")
    st.stop()

analyses = {}
for name in models:
    try:
        analyses[name] = ui.cached_analysis(name, int(catalog.info(name).input_shapes[0][0]), side, side)
    except AnalysisError as e:
        st.error(f"**{esc(name)}**: {esc(e)}", icon=":material/error:")
if not analyses:
    st.stop()

# One box for all models: the lecture's rule once, then a line per model that breaks it.
too_big = [f"- **{esc(name)}**: {esc(msg)}"
           for name, a in analyses.items() for msg in vis.rf_warnings(a, (side, side))]
if too_big:
    st.warning("**The input size should not exceed the receptive field** (lecture rule).\n" + "\n".join(too_big),
               icon=":material/warning:")

# Where a field is not exact (unpooling, unions of different grids) the analysis says so: said here too.
for name, a_ in analyses.items():
    for note in a_.notes:
        if note.startswith("Receptive field") and ("upper bound" in note or "approximate" in note):
            st.info(f"**{esc(name)}**: {esc(note)}", icon=":material/info:")

# The composition joins the curves (the stage table and the photo are per catalog model).
curves = dict(analyses)
if with_spec:
    spec = ui.current_spec()
    try:
        curves[f"composition: {spec.summary()}"] = ui.cached_spec_analysis(spec)
    except Exception as e:  # SpecError / AnalysisError: a sentence, the models stay
        st.error(esc(f"Your composition: {e}"), icon=":material/error:")

# Which networks these are, in one line.
shown = f"Showing the catalog models {', '.join(f'**{esc(n)}**' for n in analyses)} as published, at {side} px"
if len(curves) > len(analyses):
    shown += f", and your composition **{esc(ui.current_spec().summary())}** (from Compose, as in the sidebar)."
else:
    shown += ". Switch on “+ your composition” to add the one you built."
st.caption(shown)

# -- growth per layer, and per stage --------------------------------------------------------------------------
c_chart, c_table = st.columns([3, 2], gap="medium")
with c_chart:
    st.subheader("Growth, layer by layer", anchor=False)
    fig = go.Figure()
    for color, (name, a) in zip(COLORS + ["#9467bd"], curves.items()):
        df = rf_growth(a)  # the one curve definition: the larger side, per layer call (Compare plots the same)
        custom = list(zip(df.layer, df.kind, df.rf_text, df.jump_text))
        fig.add_trace(go.Scatter(
            x=df["index"], y=df["size"], mode="lines", name=name, line=dict(width=2.5, color=color), customdata=custom,
            hovertemplate="<b>%{customdata[0]}</b> (%{customdata[1]})<br>receptive field %{customdata[2]} px"
                          "<br>jump %{customdata[3]} px<extra>" + name + "</extra>"))
    # A trace, not add_hline: a shape's y is in log10 units on a log axis, a trace's y is always in pixels.
    last = max(len(a.layers) for a in curves.values())
    fig.add_trace(go.Scatter(x=[0, last], y=[side, side], mode="lines", name=f"input {side} px",
                             line=dict(color="#666", dash="dot", width=2), hoverinfo="skip"))
    fig.update_layout(height=430, margin=dict(l=10, r=10, t=10, b=10), hovermode="closest",
                      legend=dict(orientation="h", yanchor="bottom", y=1.0, x=0),
                      xaxis_title="layer (in forward order)", yaxis_title="receptive field (px)",
                      yaxis_type="log" if log_y else "linear")
    st.plotly_chart(fig, key="rf.curve")
    st.caption("Convolutional-path field of every layer call (the larger side where height and width differ). "
               "After global pooling, attention or an SE gate the field is global: the line keeps the "
               "convolutional field, the hover says “global”. Strided layers make later growth faster; a dip is a "
               "shortcut (downsample) conv, which sees only its block's input.")

with c_table:
    st.subheader("At each stage", anchor=False)
    table = vis.stage_table(analyses)
    shown = table.astype(str)  # ints and "global" in one column: shown as text, numbers right-aligned
    config = {name: st.column_config.TextColumn(name, alignment="right") for name in analyses}
    config["stage"] = st.column_config.TextColumn("stage", pinned=True)
    st.dataframe(shown, hide_index=True, column_config=config, key="rf.stages")
    st.caption("Theoretical receptive field in input pixels at the output of each stage. “global”: pooling, "
               "attention or a gate reaches every pixel. Stages that change no field (BatchNorm, ReLU, the fc "
               "after pooling) are left out.")
    if {"resnet18", "resnet50"} <= set(analyses):
        st.info("“Because of its different blocks ResNet-50 has a smaller receptive field than ResNet-18”: "
                "its bottleneck blocks have one 3×3 conv each, ResNet-18's basic blocks two.",
                icon=":material/school:")

# -- on an image ----------------------------------------------------------------------------------------------
st.subheader("On an image", anchor=False)
samples = vis.sample_images()
waiting = False  # "Upload" chosen but nothing uploaded yet
upload_error = None  # a sentence when the uploaded file cannot be read
c_src, c_img, c_model, c_layer = st.columns([1.3, 2.2, 2, 2], vertical_alignment="bottom")
with c_src:
    source = st.radio("Photo", ["Sample", "Upload"], horizontal=True, key="rf.source")
with c_img:
    if source == "Sample":
        photo = st.selectbox("Sample photo", list(samples), key="rf.sample",
                             format_func=lambda n: f"{n} — {vis.SAMPLE_IMAGES[n]}")
        image = samples[photo]
    else:
        upload = st.file_uploader("PNG or JPEG photo", type=["png", "jpg", "jpeg"], key="rf.upload",
                                  max_upload_size=ui.upload_mb("image"))
        if upload is None:
            image, waiting = samples["chelsea"], True
        else:
            try:
                image = vis.read_image(upload.getvalue(), upload.name)
            except ValueError as e:
                upload_error = str(e)
with c_model:
    model = st.selectbox("Model", list(analyses), key="rf.model", format_func=ui.model_label)
a = analyses[model]
trained = ui_vis.has_pretrained(model)  # the cached published weights, when present (never downloaded here)
stages = vis.spatial_stages(a)
if not stages:
    st.info(f"{esc(model)} has no spatial feature map at {side} px to point at.", icon=":material/info:")
    st.stop()
with c_layer:
    default = vis.default_stage(a)
    layer = st.selectbox("Layer", stages, index=stages.index(default), key=f"rf.layer.{model}",
                         help="Stages with a spatial output map. Default: the deepest one whose field still fits "
                              "inside the image.")
if upload_error:
    st.error(esc(upload_error), icon=":material/broken_image:")
    st.stop()
if waiting:
    st.caption("No photo uploaded yet: showing the cat.")

oh, ow = vis.output_size(a, layer)
c_row, c_col, c_op, c_sqrt = st.columns([2, 2, 2, 1.2], vertical_alignment="bottom")
# Keys per (model, layer, size): a new output map starts at its centre unit, and no old value falls outside it.
suffix = f"{model}.{layer}.{side}"
with c_row:
    i = st.slider("Output row", 0, oh - 1, oh // 2, key=f"rf.row.{suffix}") if oh > 1 else 0
with c_col:
    j = st.slider("Output column", 0, ow - 1, ow // 2, key=f"rf.col.{suffix}") if ow > 1 else 0
with c_op:
    opacity = st.slider("Heatmap opacity", 0.0, 1.0, 0.8, 0.05, key="rf.opacity")
with c_sqrt:
    sqrt_scale = st.toggle("√ scale", value=True, key="rf.sqrt",
                           help="Colour by the square root of the gradient: the faint tails of the field show. "
                                "Off: linear, only the strongest pixels show.")

crop = vis.center_crop(image, side)
box = vis.theoretical_box(a, layer, (i, j))
local_box = vis.theoretical_box(a, layer, (i, j), local=True)
cx, cy = vis.unit_centre(a, layer, (i, j))
is_global = a.modules[layer]["is_global"]


def _picture(title: str) -> go.Figure:
    f = go.Figure(go.Image(z=crop, hoverinfo="skip"))
    f.update_layout(height=540, margin=dict(l=0, r=0, t=36, b=0), title=dict(text=title, x=0, font_size=16),
                    xaxis=dict(visible=False, range=[-0.5, side - 0.5]),
                    yaxis=dict(visible=False, range=[side - 0.5, -0.5], scaleanchor="x"))
    return f


def _box(f: go.Figure, b, dash: str = "solid", color: str = "#00e5ff") -> None:
    x0, y0, x1, y1 = b
    f.add_shape(type="rect", x0=x0 - 0.5, y0=y0 - 0.5, x1=x1 + 0.5, y1=y1 + 0.5,
                line=dict(color=color, width=3, dash=dash))


def _centre(f: go.Figure) -> None:
    if 0 <= cx < side and 0 <= cy < side:
        f.add_trace(go.Scatter(x=[cx], y=[cy], mode="markers", showlegend=False, hoverinfo="skip",
                               marker=dict(symbol="cross-thin", size=16, line=dict(width=3, color="#00e5ff"))))


# The chosen unit's own field: after upsampling neighbouring units see different sizes.
rf_local = ui.fmt_pair(vis.unit_size(a, layer, (i, j)))
c_theory, c_effective = st.columns(2, gap="medium")
with c_theory:
    fig_t = _picture(f"Theoretical field: {'global' if is_global else rf_local + ' px'}")
    _box(fig_t, box)
    if is_global and oh * ow > 1 and local_box != box:
        _box(fig_t, local_box, dash="dash", color="#ffd600")
    _centre(fig_t)
    st.plotly_chart(fig_t, key="rf.theory", config={"displayModeBar": False})
    x0, y0, x1, y1 = box
    where = (f"unit ({i}, {j}) of the {oh}×{ow} map of **{esc(layer)}** is centred on pixel "
             f"({ui.fmt_num(cx)}, {ui.fmt_num(cy)}); its field covers columns {ui.fmt_num(x0)}–{ui.fmt_num(x1)} "
             f"and rows {ui.fmt_num(y0)}–{ui.fmt_num(y1)} of the {side}×{side} input")
    if is_global:
        where += f" (global; the dashed box is the convolutional path, {rf_local} px)"
    st.caption(where[0].upper() + where[1:] + ".")
    differ = vis.field_sentence(a, layer)
    if differ:
        st.info(esc(differ), icon=":material/grid_on:")

with c_effective:
    try:
        heat = ui_vis.cached_effective_rf(model, layer, crop, side, (i, j), pretrained=trained)
    except Exception as e:  # a model torch.fx cannot trace: a sentence, not a traceback
        st.error(f"The effective field of {esc(model)} at {esc(layer)} could not be computed: {esc(e)}",
                 icon=":material/error:")
    else:
        fig_e = _picture("Effective field: |gradient| of that unit")
        shown_heat = heat ** 0.5 if sqrt_scale else heat
        fig_e.add_trace(go.Heatmap(z=shown_heat, zmin=0, zmax=1, colorscale=HEAT_SCALE, opacity=opacity,
                                   colorbar=dict(title="", thickness=12, len=0.8),
                                   customdata=heat, hovertemplate="x %{x}, y %{y}: %{customdata:.3f}<extra></extra>"))
        _box(fig_e, box, dash="dot")
        _centre(fig_e)
        st.plotly_chart(fig_e, key="rf.effective", config={"displayModeBar": False})
        st.caption("Gradient magnitude of the unit's output (summed over channels) with respect to each input "
                   "pixel, summed over colour channels and scaled to 0–1"
                   + (", coloured by its square root" if sqrt_scale else "")
                   + ". Where it is zero the photo shows through; the dotted box is the theoretical field.")

st.caption("**Theoretical** receptive field (box): every input pixel that can influence the unit at all, from "
           "kernel sizes, strides and paddings. **Effective** receptive field (heatmap): where the gradient of the "
           "unit is actually large. It always lies inside the box and is usually much smaller, concentrated "
           "around the centre, because far pixels reach the unit through far fewer paths.")
if trained:
    st.caption(esc(f"Pretrained weights ({catalog.info(model).weights}), found in the torchvision cache: a trained "
                   "network's effective field follows the image content and is smaller than an untrained one's."))
else:
    st.caption("Random weights: the effective field of an untrained network is close to Gaussian-shaped. With the "
               "model's pretrained weights in torchvision's cache (Predict → Catalog model → Weights → Download) "
               "this section uses them.")
