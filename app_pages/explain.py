"""Explain: why the network says what it says — attributions (Grad-CAM, Integrated Gradients, Occlusion,
Saliency, Guided Backprop, through captum) overlaid on the image, and the attention its SE / CBAM / spatial
blocks pay (channel weights, spatial maps).

Layout only: the model, weights and image come from `explorer.ui.inference`; maps from
`explorer.vis.attribution` (on private copies of the shared model), charts from `explorer.vis.attention`.
"""
import numpy as np
import streamlit as st
import torch

from explorer import ui
from explorer.ui import inference
from explorer.vis import attention as charts
from explorer.vis import attribution

esc = ui.md_escape
SLOW = ("Integrated Gradients", "Occlusion")
ABOUT = {
    "Grad-CAM": "the target layer's maps weighted by the mean gradient of the class score (Selvaraju et al. 2017); "
                "coarse, at the layer's resolution",
    "Integrated Gradients": "gradients summed along the path from the mean-colour image (all zeros after "
                            "normalisation) to this one (Sundararajan et al. 2017); runs the network once per step",
    "Occlusion": "how much the class score drops when a grey square hides each part of the image (Zeiler & Fergus "
                 "2014); runs the network once per position",
    "Saliency": "the absolute gradient of the class score with respect to each pixel (Simonyan et al. 2014)",
    "Guided Backprop": "the gradient with negative signals stopped at every ReLU (Springenberg et al. 2015)",
}

st.header("Explain", anchor=False)
st.markdown("Which pixels made the network decide, and what its attention blocks weighted.")

built = inference.network("explain")  # which network runs, its weights panel and badge
net = built.network
images = inference.input_images(net, "explain", multiple=False)
if not images:
    st.info("Pick a sample or upload an image above.", icon=":material/image:")
    st.stop()
image = images[0]
shown = image.shown()

tab_attr, tab_att = st.tabs(["Attributions", "Attention"])

with tab_attr:
    if net.task != "classification":
        st.info(f"Attributions explain a class score; this {net.task} network has none. The Attention tab "
                "works for every network.", icon=":material/info:")
    else:
        try:
            scores = inference.class_scores(built, image)
        except ValueError as e:  # the network cannot take this input: its sentence
            st.error(esc(str(e)), icon=":material/error:")
            st.stop()
        predicted = int(scores.argmax())
        c_method, c_target, c_layer = st.columns([1.4, 1.6, 2])
        with c_method:
            method = st.selectbox("Method", attribution.METHODS, key="w.explain.method")
        with c_target:
            order = [predicted] + [i for i in torch.argsort(scores, descending=True).tolist() if i != predicted][:49]
            # Keyed by network and image: a new image starts at its own predicted class.
            target = st.selectbox("Explain the class", order,
                                  key=f"w.explain.target.{hash(built.cache_key)}.{image.digest}",
                                  format_func=lambda i: f"{built.label_of(i)} ({float(scores[i]):.1%})"
                                  + (" — predicted" if i == predicted else ""),
                                  help="The predicted class, or any of the 50 most likely ones.")
        with c_layer:
            layer = None
            if method == "Grad-CAM":
                try:
                    default = inference.default_cam_layer(built)
                    _, spatial = inference.layer_choices(built)
                except ValueError as e:  # no layer with a map, or the network does not run at its input size
                    st.error(esc(str(e)), icon=":material/error:")
                    st.stop()
                paths = [p for p, _ in spatial]
                key = f"w.explain.layer.{built.cache_key}"
                if st.session_state.get(key) not in paths:
                    st.session_state[key] = default if default in paths else paths[-1]
                layer = st.selectbox("Target layer", paths, key=key,
                                     help="Default: the last layer of the backbone that still has a spatial map.")
        c_steps, c_win, c_op = st.columns(3)
        steps, window = 32, None
        if method == "Integrated Gradients":
            steps = c_steps.slider("Steps", 8, 128, 32, 8, key="w.explain.steps")
        if method == "Occlusion":
            side = min(image.x.shape[-2:])
            window = c_win.slider("Window (px)", 2, max(4, side // 2), max(2, side // 8), key="w.explain.window")
        opacity = c_op.slider("Overlay opacity", 0.0, 1.0, 0.5, 0.05, key="w.explain.opacity")

        bar = st.progress(0.0, text=f"{method}…") if method in SLOW else None
        progress = (lambda f: bar.progress(min(max(f, 0.0), 1.0), text=f"{method}… {f:.0%}")) if bar else None
        try:
            heat = inference.cached_attribution(built, image, method, target, layer, steps, window, progress)
        except ValueError as e:
            st.error(esc(str(e)), icon=":material/error:")
            st.stop()
        if bar:
            bar.empty()
        c1, c2, c3 = st.columns(3)
        c1.image(shown, caption=f"The input: {image.name}", width="stretch")
        blended = attribution.overlay(shown, heat, opacity)
        alone = attribution.overlay(np.zeros_like(shown), heat, 1.0)
        if image.box:  # a digit on a canvas: frame where it is, and say how much of the map falls there
            blended, alone = attribution.outline(blended, image.box), attribution.outline(alone, image.box)
        c2.image(blended, caption=f"{method} for {built.label_of(target)}", width="stretch")
        c3.image(alone, caption="The map alone (blue 0 → red 1)", width="stretch")
        st.caption(esc(f"{method}: {ABOUT[method]}." + (f" Target layer {layer}." if layer else "")))
        if image.box:
            top, left, bottom, right = image.box
            area = (bottom - top) * (right - left) / (shown.shape[0] * shown.shape[1])
            st.markdown(f"**{attribution.share_inside(heat, image.box):.0%}** of this map lies inside the digit's "
                        f"box (the white frame), which covers {area:.0%} of the canvas: a map spread evenly would "
                        f"put {area:.0%} there.")
        if method == "Grad-CAM" and net.kind in ("ready", "trained") and net.catalog_name == "lenet5":
            st.info("Read LeNet-5's Grad-CAM with care. Grad-CAM weighs each map of the target layer by its "
                    "gradient averaged over all positions, which suits a network that averages its last maps "
                    "(global average pooling). LeNet-5's C5 gives each of the 5×5 positions its own weights, as "
                    "flattening does, and each of those cells sees 16×16 of the 32×32 frame, so every cell sees "
                    "part of the digit. The map therefore often lights the empty parts of the frame — for a 1, the "
                    "flanks. Saliency, Integrated Gradients and Occlusion follow the strokes. To see Grad-CAM find "
                    "a digit, pick the ready GAP CNN: it averages its last maps.", icon=":material/lightbulb:")
        elif method == "Grad-CAM" and net.kind == "ready":
            st.info("This network averages its last 16×16 maps (global average pooling) into one linear layer, so "
                    "each class score is a sum over positions and Grad-CAM is exactly its class activation map: "
                    "the map shows where on the canvas the evidence for the class lies. On every held-out canvas "
                    "more than half of the map falls inside the digit's box.",
                    icon=":material/lightbulb:")

with tab_att:
    try:
        entries = inference.cached_attention(built, image)
    except ValueError as e:
        st.error(esc(str(e)), icon=":material/error:")
        st.stop()
    if not entries:
        st.info("This network has no SE, CBAM or spatial-attention block. Add one on Compose (neck SE / CBAM / "
                "spatial, or SE / CBAM blocks in a custom stack), or pick a model that has them "
                "(mobilenet_v3, efficientnet, regnet_y).", icon=":material/info:")
    else:
        overview = charts.gates_overview_figure(entries)
        if overview is not None:
            st.markdown(f"**Channel weights of every attention block** ({len(entries)} "
                        f"{'block' if len(entries) == 1 else 'blocks'}): the gate each "
                        "channel is multiplied by, from the pooled features of this image.")
            st.plotly_chart(overview, key="explain.overview", config={"displayModeBar": False})
        labels = {i: f"{e.path} · {e.kind}" for i, e in enumerate(entries)}
        pick = st.selectbox("Block", list(labels), format_func=labels.get, key="w.explain.block")
        entry = entries[pick]
        c_ch, c_sp = st.columns(2)
        if entry.channel is not None:
            c_ch.plotly_chart(charts.channel_weights_figure(entry.channel, f"{entry.path}: channel weights"),
                              key="explain.channel", config={"displayModeBar": False})
        if entry.spatial is not None:
            opacity = c_sp.slider("Overlay opacity", 0.0, 1.0, 0.5, 0.05, key="w.explain.att_opacity")
            c_sp.image(attribution.overlay(shown, entry.spatial, opacity),
                       caption=f"{entry.path}: spatial attention map "
                               f"({'×'.join(map(str, entry.spatial.shape))}, resized to the image)",
                       width="stretch")
