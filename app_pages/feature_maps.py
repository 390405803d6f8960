"""Feature maps: what one layer of the network computes for an image — its most active channels as heatmaps,
their statistics, and the input beside them.

Layout only: the model, weights and image come from `explorer.ui.inference`; the maps from
`explorer.vis.features`, which runs a private copy of the shared model (no hooks on it).
"""
import pandas as pd
import streamlit as st

from explorer import ui
from explorer.ui import inference
from explorer.vis import features

esc = ui.md_escape

st.header("Feature maps", anchor=False)
st.markdown("Each filter of a layer gives one feature map: where in the image its pattern occurs. Early layers "
            "answer to edges and colours at full resolution; deeper ones to larger parts, on coarser grids.")

built = inference.network("fm")  # which network runs, its weights panel and badge
net = built.network
try:
    stages, layers = inference.layer_choices(built)
except ValueError as e:  # the network does not run at its input size: a sentence
    st.error(esc(str(e)), icon=":material/error:")
    st.stop()

c_layer, c_k, c_by, c_scale = st.columns([3, 1.2, 1.2, 1.2], vertical_alignment="bottom")
with c_layer:
    every = st.toggle("Every layer", key="w.fm.every", help="Off: the stages only. On: every layer with a map.")
    options = layers if every or not stages else stages
    shapes = dict(options)
    paths = list(shapes)
    # The widget forgets its value on other pages; the choice is kept beside it and restored on return.
    remembered = st.session_state.get("fm.layer")
    if st.session_state.get("w.fm.layer") not in shapes and remembered in shapes:
        st.session_state["w.fm.layer"] = remembered
    if st.session_state.get("w.fm.layer") not in shapes and paths:
        st.session_state["w.fm.layer"] = paths[min(1, len(paths) - 1)]  # the second stage: past the stem
    layer = st.selectbox("Layer", paths, key="w.fm.layer", format_func=lambda p: f"{p}  ·  {ui.fmt_shape(shapes[p])}")
    st.session_state["fm.layer"] = layer
with c_k:
    k = st.number_input("Channels shown", 1, 64, 16, step=4, key="w.fm.k")
with c_by:
    by = st.selectbox("Most active by", ["mean", "max", "std"], key="w.fm.by",
                      help="Rank the channels by their mean, largest or spread of activation.")
with c_scale:
    shared = st.toggle("One scale", value=True, key="w.fm.shared",
                       help="On: one scale, so channels compare. Off: each channel stretched to its own range.")
if layer is None:
    st.info("This network has no layer with a spatial map.", icon=":material/info:")
    st.stop()

images = inference.input_images(net, "fm", multiple=False)
if not images:
    st.info("Pick a sample or upload an image above.", icon=":material/image:")
    st.stop()
image = images[0]
try:
    maps = inference.cached_feature_maps(built, image, layer)
except ValueError as e:
    st.error(esc(str(e)), icon=":material/error:")
    st.stop()

channels = features.top_channels(maps, k=int(k), by=by)
c_in, c_grid = st.columns([1, 3], gap="medium")
with c_in:
    st.image(image.shown(), caption=f"The input: {image.name}", width="stretch")
    st.caption(esc(f"Preprocessing: {image.steps}"))
    c, h, w = maps.shape
    st.markdown(f"**{esc(layer)}**: {c:,} channels of {h}×{w}  \n"
                f"showing the {len(channels)} with the highest {by}")
with c_grid:
    st.plotly_chart(features.feature_grid(maps, channels, shared_scale=shared), key="fm.grid",
                    config={"displayModeBar": False})

st.subheader("Channel statistics", anchor=False)
stats = pd.DataFrame(features.channel_stats(maps))
st.dataframe(stats, hide_index=True, width="stretch", height=320,
             column_config={**{col: st.column_config.NumberColumn(format="%.4f")
                               for col in stats.columns if col != "channel"},
                            "fraction_active": st.column_config.NumberColumn("fraction > 0", format="%.4f")})
