"""Predict: run the network on photos (or held-out digits) on the best device here, and show what it says —
top-5 classes, boxes, masks, values or similarities — with the latency per image and the throughput.

Layout only: the model, weights and images come from `explorer.ui.inference`, the numbers from
`explorer.predict`, the pictures from `explorer.vis.predictions`.
"""
import pandas as pd
import streamlit as st
import torch

from explorer import predict as run
from explorer import ui
from explorer.ui import inference
from explorer.vis import predictions as pictures

esc = ui.md_escape

st.header("Predict", anchor=False)
st.markdown("What the network outputs for an image. Each image gets the network's own preprocessing (shown "
            "below it); all images run as one batch.")

built = inference.network("predict")  # which network runs, its weights panel and badge
net = built.network

c_dev, c_opt = st.columns([1, 2])
with c_dev:
    devices = run.available_devices()
    device_name = st.selectbox("Device", ["auto"] + devices, key="w.predict.device",
                               format_func=lambda d: f"auto ({run.choose_device().type})" if d == "auto" else d,
                               help="CUDA, then Apple MPS, then CPU. On CUDA: inference_mode, channels_last, "
                                    "autocast (bf16 where supported, else fp16), pinned host memory.")
threshold = 0.3
with c_opt:
    if net.task == "detection":
        threshold = st.slider("Score threshold", 0.0, 1.0, 0.3, 0.01, key="w.predict.threshold",
                              help="Boxes scoring below this are not drawn.")

images = inference.input_images(net, "predict", multiple=True)
drawing = inference.drawn_digit(net, "predict")  # a digit network: a canvas to draw on, predicted live
if drawing is not None:
    images.insert(0, drawing)
if not images:
    st.info("Pick a sample, upload an image or draw a digit above." if net.digit_set else
            "Pick a sample or upload an image above.", icon=":material/image:")
    st.stop()
if net.task == "similarity" and len(images) < 2:
    st.info("A Siamese network compares images: pick or upload at least two.", icon=":material/compare:")

device = run.choose_device(None if device_name == "auto" else device_name)
batch = torch.cat([im.x for im in images])
labels = built.labels or ([f"class {i}" for i in range(net.num_classes)] if net.num_classes else None)
try:
    result = run.predict(built.model, batch, device, network=net, labels=labels,
                         score_threshold=threshold)
except ValueError as e:
    st.error(esc(str(e)), icon=":material/error:")
    st.stop()

m1, m2, m3 = st.columns(3)
m1.metric("Device", run.device_label(device))
m2.metric("Latency per image", f"{result.latency_ms:,.1f} ms", help="Wall time of the batch (forward and "
          "post-processing) divided by the number of images.")
m3.metric("Throughput", f"{result.throughput:,.1f} images/s", help=f"Batch of {result.batch_size}.")

if result.task == "classification":
    right = sum(1 for im, top in zip(images, result.top) if im.truth is not None and top[0][1] == im.truth)
    known = sum(1 for im in images if im.truth is not None)
    if known:
        st.markdown(f"**{right} of {known}** held-out digits classified correctly.")
    for start in range(0, len(images), 2):
        cols = st.columns(2, gap="large")
        for j, (col, im, top) in enumerate(zip(cols, images[start:start + 2], result.top[start:start + 2])):
            with col:
                c_img, c_bar = st.columns([1, 2], vertical_alignment="center")
                c_img.image(im.picture, caption=im.name, width="stretch")
                verdict = ""
                if im.truth is not None:
                    verdict = " ✓" if top[0][1] == im.truth else f" ✗ (truth: {im.truth})"
                c_bar.markdown(f"**{esc(top[0][1])}** · {top[0][2]:.1%}{verdict}")
                c_bar.plotly_chart(pictures.top_k_figure(top, im.truth), key=f"predict.top.{start + j}",
                                   config={"displayModeBar": False})
                st.caption(esc(f"Preprocessing: {im.steps}"))
elif result.task == "detection":
    for i, (im, det) in enumerate(zip(images, result.detections)):
        c_img, c_tab = st.columns([3, 2])
        c_img.image(pictures.draw_detections(im.shown(), det, result.labels), caption=im.name, width="stretch")
        rows = [{"label": built.label_of(int(c)), "score": float(s),
                 "box (x1, y1, x2, y2)": ", ".join(f"{v:.0f}" for v in b.tolist())}
                for b, s, c in zip(det["boxes"], det["scores"], det["labels"])]
        c_tab.markdown(f"**{len(rows)}** boxes scoring above {threshold:.2f}"
                       + (" (the 30 best are drawn)" if len(rows) > 30 else ""))
        if rows:
            c_tab.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch",
                            column_config={"score": st.column_config.NumberColumn(format="%.3f")})
        st.caption(esc(f"Preprocessing: {im.steps}. Boxes are in the model's input pixels."))
elif result.task == "segmentation":
    opacity = st.slider("Mask opacity", 0.0, 1.0, 0.5, 0.05, key="w.predict.opacity")
    for im, mask in zip(images, result.masks):
        shown, legend = pictures.mask_overlay(im.shown(), mask, opacity, result.labels)
        c_img, c_leg = st.columns([3, 2])
        c_img.image(shown, caption=im.name, width="stretch")
        c_leg.markdown("\n".join(f"- <span style='color:{row['color']}'>■</span> {esc(row['name'])}: "
                                 f"{row['fraction']:.1%} of the pixels" for row in legend[:12]),
                       unsafe_allow_html=True)
        if len(legend) > 12:
            c_leg.caption(f"… and {len(legend) - 12} more classes")
        st.caption(esc(f"Preprocessing: {im.steps}"))
elif result.task == "regression":
    values = result.values
    columns = ([net.target_label] if net.target_label and values.shape[1] == 1 else
               [f"output {j}" for j in range(values.shape[1])])
    st.dataframe(pd.DataFrame(values.numpy(), index=[im.name for im in images], columns=columns), width="stretch")
    if values.shape[1] == 1:  # one value per image: beside its picture
        st.image([im.picture if im.picture is not None else im.shown() for im in images], width=120,
                 caption=[f"{im.name}: {float(v):.3g}" for im, v in zip(images, values[:, 0])])
elif result.task == "similarity":
    names = [im.name for im in images]
    st.plotly_chart(pictures.similarity_figure(result.similarity, names), key="predict.similarity",
                    config={"displayModeBar": False})
    if len(images) >= 2:
        st.markdown(f"Cosine similarity of **{esc(names[0])}** and **{esc(names[1])}**: "
                    f"**{float(result.similarity[0, 1]):.3f}** (1 = same direction, 0 = unrelated).")
    st.image([im.picture for im in images], caption=names, width=160)
else:
    st.write(result.raw)
