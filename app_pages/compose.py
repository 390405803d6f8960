"""Compose: backbone → neck → head, with live numbers. Widgets in, explorer calls, figures out.

Every change is validated as a whole spec; a combination that cannot be built shows its sentence and the last
valid composition stays on screen and in the URL, so nothing a person built is lost.
"""
import pandas as pd
import streamlit as st

from explorer import catalog, ui
from explorer.analysis import AnalysisError
from explorer.spec import (BLOCKS, DEFAULT_HEAD, HEAD_SETTINGS, HEADS_FOR_TASK, MAX_SIDE, NECK_SETTINGS, NECKS,
                           TASKS, ArchitectureSpec, SpecError)

TITLES = {"none": "none", "se": "SE", "cbam": "CBAM", "spatial": "spatial attention", "fpn": "FPN",
          "panet": "PANet", "bifpn": "BiFPN", "classification": "classification (GAP/flatten + MLP)",
          "regression": "regression (linear outputs)", "yolo": "YOLO-style grid", "ssd": "SSD",
          "faster_rcnn": "Faster R-CNN", "mask_rcnn": "Mask R-CNN", "fcn": "FCN", "unet": "U-Net",
          "siamese": "Siamese (embedding)"}
BACKBONES = [n for n in catalog.names() if catalog.info(n).source != "segmentation"] + ["custom"]

spec = ui.current_spec()
K = "compose."


def seed(key, value):
    if K + key not in st.session_state:
        st.session_state[K + key] = value


d = spec.to_dict()
seed("task", spec.task)
seed("backbone", spec.backbone.name)
seed("height", spec.input.height)
seed("width", spec.input.width)
seed("channels", spec.input.channels)
seed("neck", spec.neck.kind)
seed("head", spec.head.kind)
seed("dtype", "float32")
seed("batch", 1)
seed("pretrained", spec.backbone.pretrained)


def on_task():
    st.session_state[K + "head"] = DEFAULT_HEAD[st.session_state[K + "task"]]
    st.session_state.pop(K + "outs", None)


def on_backbone():
    name = st.session_state[K + "backbone"]
    if name != "custom":
        c, h, w = catalog.info(name).input_size
        st.session_state[K + "channels"], st.session_state[K + "height"], st.session_state[K + "width"] = c, h, w
    for key in ("outs", "frozen"):
        st.session_state.pop(K + key, None)


def label(name: str) -> str:
    if name == "custom":
        return "custom — your own stack of lecture blocks"
    mi = catalog.info(name)
    return f"{name} — {mi.family} ({mi.year})"


st.header("Compose", anchor=False)
st.caption("Build a network as backbone → neck → head; every number on the right follows each change.")
left, right = st.columns([5, 7], gap="large")

with left:
    c1, c2 = st.columns(2)
    task = c1.selectbox("Task", TASKS, key=K + "task", on_change=on_task)
    heads = HEADS_FOR_TASK[task]
    if st.session_state[K + "head"] not in heads:
        st.session_state[K + "head"] = heads[0]
    head_kind = c2.selectbox("Head", heads, key=K + "head", format_func=TITLES.get)

    backbone = st.selectbox("Backbone", BACKBONES, key=K + "backbone", format_func=label, on_change=on_backbone,
                            help="Any catalog CNN, cut after the stages you choose, or a custom stack of blocks.")
    pretrained = None
    if backbone != "custom" and catalog.info(backbone).weights:
        pretrained = st.checkbox(
            f"Pretrained backbone ({catalog.info(backbone).weights})", key=K + "pretrained",
            help="Feature maps, Explain and Predict load torchvision's weights into the backbone (downloaded once, "
                 "when you ask); the neck and head start random.")
    c1, c2, c3 = st.columns(3)
    channels = c1.number_input("Channels", 1, 16, key=K + "channels")
    height = c2.number_input("Height (px)", 1, MAX_SIDE, key=K + "height")
    width = c3.number_input("Width (px)", 1, MAX_SIDE, key=K + "width")

    stages_rows = None
    if backbone == "custom":
        current = spec.backbone.stages if spec.backbone.is_custom else None
        default_rows = [dict(block=s.block, repeats=s.repeats, width=s.width, stride=s.stride) for s in current] \
            if current else [dict(block="conv", repeats=1, width=32, stride=2),
                             dict(block="residual", repeats=2, width=64, stride=2),
                             dict(block="separable", repeats=2, width=128, stride=2)]
        edited = st.data_editor(
            pd.DataFrame(default_rows), key=K + "stages", num_rows="dynamic", hide_index=True,
            width="stretch",
            column_config={"block": st.column_config.SelectboxColumn("block", options=list(BLOCKS), required=True),
                           "repeats": st.column_config.NumberColumn("repeats", min_value=1, max_value=64, step=1),
                           "width": st.column_config.NumberColumn("width", min_value=1, max_value=4096, step=1),
                           "stride": st.column_config.SelectboxColumn("stride", options=[1, 2], required=True)})
        stages_rows = [{k: (int(v) if k != "block" else v) for k, v in row.items()}
                       for row in edited.dropna().to_dict("records")]

    neck_kind = st.selectbox("Neck", NECKS, key=K + "neck", format_func=TITLES.get,
                             help="Attention gates on each chosen stage, or a multi-scale fusion (FPN, PANet, BiFPN).")
    neck = {"kind": neck_kind}
    cols = st.columns(2)
    for i, (k, default) in enumerate(NECK_SETTINGS[neck_kind].items()):
        value = spec.neck.settings.get(k, default) if spec.neck.kind == neck_kind else default
        neck[k] = int(cols[i].number_input(f"Neck {k}", 1, 4096 if k == "width" else 8, value=value,
                                           key=f"{K}neck.{neck_kind}.{k}"))

    head = {"kind": head_kind}
    settings = HEAD_SETTINGS[head_kind]
    same = spec.head.kind == head_kind
    cols = st.columns(2)
    i = 0
    for k, default in settings.items():
        value = spec.head.settings.get(k, default) if same else default
        box = cols[i % 2]
        i += 1
        wkey = f"{K}head.{head_kind}.{k}"
        if k == "hidden":
            text = box.text_input("Hidden layer widths", ", ".join(map(str, value)), key=wkey,
                                  help="Comma-separated, e.g. 4096, 4096 (VGG); empty for a single linear layer.")
            try:
                head[k] = [int(t) for t in text.replace(" ", "").split(",") if t]
            except ValueError:
                head[k] = text  # the spec check turns this into a sentence
        elif k == "dropout":
            head[k] = float(box.number_input("Dropout", 0.0, 0.95, value=float(value), step=0.05, key=wkey))
        elif k == "pooling":
            head[k] = box.selectbox("Pooling", ["gap", "flatten"], index=["gap", "flatten"].index(value), key=wkey,
                                    format_func={"gap": "global average (7×7×512 → 512)",
                                                 "flatten": "flatten (7×7×512 → 25,088)"}.get)
        else:
            head[k] = int(box.number_input(k.replace("_", " ").capitalize(), 1, 100_000, value=int(value), key=wkey))

    bb = {"name": backbone}
    if pretrained is not None:
        bb["pretrained"] = pretrained
    if stages_rows is not None:
        bb["stages"] = stages_rows
    candidate = {"task": task, "input": {"channels": int(channels), "height": int(height), "width": int(width)},
                 "backbone": bb, "neck": neck, "head": head}

    # Stage choices need the backbone at this input size.
    error = None
    stage_names, outs = [], []
    try:
        base = ArchitectureSpec.from_dict({**candidate, "backbone": dict(bb)})
        stages, default_outs = ui.cached_stages(base)
        stage_names = [s.name for s in stages]
    except (SpecError, AnalysisError) as e:
        error = str(e)
    if stage_names:
        if spec.backbone.name == backbone and spec.backbone.out_stages:
            seed("outs", [s for s in spec.backbone.out_stages if s in stage_names])
        if spec.backbone.name == backbone:
            seed("frozen", [s for s in spec.backbone.frozen_stages if s in stage_names])
        chosen = st.multiselect("Output stages (feed the neck / head)", stage_names, key=K + "outs",
                                placeholder=f"default for the task: {', '.join(default_outs)}",
                                help="Fine → coarse. Leave empty for the task's default.")
        frozen = st.multiselect("Frozen stages (requires_grad = False)", stage_names, key=K + "frozen")
        if chosen:
            bb["out_stages"] = [s for s in stage_names if s in chosen]
        bb["frozen_stages"] = [s for s in stage_names if s in frozen]
    with st.expander("Save or load this composition (spec JSON)"):
        st.download_button("Download spec JSON", spec.to_json(indent=2) + "\n", file_name="composition.json",
                           mime="application/json", icon=":material/download:", key=K + "download")
        upload = st.file_uploader("Load a spec JSON", type=["json"], key=K + "upload",
                                  help="A file saved with the button above, or written by hand (see README).")
        if upload is not None and st.session_state.get(K + "loaded") != upload.file_id:
            st.session_state[K + "loaded"] = upload.file_id
            try:
                loaded = ArchitectureSpec.from_json(upload.getvalue()[:1_000_000].decode("utf-8", "replace"))
                ui.cached_stages(loaded)
            except (SpecError, AnalysisError) as e:
                st.error(ui.md_escape(f"{upload.name}: {e}"), icon=":material/error:")
            else:
                ui.set_spec(loaded)
                for key in [k for k in st.session_state if k.startswith(K) and k not in
                            (K + "upload", K + "loaded", K + "download", K + "dtype", K + "batch")]:
                    del st.session_state[key]  # widgets re-seed from the loaded spec
                st.rerun()
    c1, c2 = st.columns(2)
    dtype = c1.selectbox("dtype", ["float32", "float16", "bfloat16"], key=K + "dtype")
    batch = int(c2.number_input("Batch size", 1, 65_536, key=K + "batch"))

    if error is None:
        try:
            new = ArchitectureSpec.from_dict(candidate)
            ui.cached_stages(new)  # stage names and combinations checked against the built backbone
            ui.cached_spec_analysis(new, dtype)
            if new != spec:
                ui.set_spec(new)
                spec = new
        except (SpecError, AnalysisError) as e:
            error = str(e)

with right:
    if error:
        st.error(ui.md_escape(error), icon=":material/error:")
        st.caption(f"Showing the last composition that works: {ui.md_escape(spec.summary())}")
    try:
        a = ui.cached_spec_analysis(spec, dtype)
    except (SpecError, AnalysisError) as e:
        st.error(ui.md_escape(str(e)))
        st.stop()
    st.subheader(ui.md_escape(spec.summary()), anchor=False)
    m = st.columns(2)
    m[0].metric("Parameters", ui.fmt_int(a.params), help=f"Trainable {ui.fmt_int(a.trainable_params)}, "
                                                         f"frozen {ui.fmt_int(a.frozen_params)}.")
    m[1].metric("Trainable parameters", ui.fmt_int(a.trainable_params))
    m = st.columns(3)
    m[0].metric("GMACs per image", f"{a.macs / 1e9:,.3f}", help=f"{ui.fmt_int(a.macs)} multiply-accumulates.")
    m[1].metric("GFLOPs per image", f"{a.flops / 1e9:,.3f}", help="1 MAC = 2 FLOPs.")
    m[2].metric("Weights", ui.fmt_bytes(a.weight_bytes), help=f"In {a.dtype}.")
    mem = a.memory(batch)
    m = st.columns(3)
    m[0].metric("Activations / image", ui.fmt_bytes(a.activation_bytes),
                help="Lecture convention: input + every conv / pool / fc output.")
    m[1].metric(f"Forward, batch {batch:,}", ui.fmt_bytes(mem["forward_activations"]))
    m[2].metric(f"Training, batch {batch:,}",
                "—" if mem["training_saved"] is None else ui.fmt_bytes(mem["training_saved"]),
                help="Bytes autograd saves for the backward pass.")

    parts = [s for s in a.stages() if s.name in ("backbone", "neck", "head")] or a.stages()
    st.dataframe(pd.DataFrame([{"part": s.name, "params": ui.fmt_int(s.params), "trainable": ui.fmt_int(s.trainable),
                                "MACs": ui.fmt_int(s.macs), "activations": ui.fmt_int(s.activations)}
                               for s in parts]), hide_index=True, width="stretch")

    levels = a.output_levels("neck") if "neck" in a.modules else a.output_levels("")
    st.markdown("**Receptive field at each output level** (input pixels; *global*: pooling, a gate or "
                "attention reaches every pixel)")
    st.dataframe(pd.DataFrame([{"level": l["name"], "shape": ui.fmt_shape(l["output_shape"]),
                                "receptive field": ui.fmt_rf(l["rf"], l["is_global"]),
                                "jump": ui.fmt_pair(l["jump"])} for l in levels]),
                 hide_index=True, width="stretch")
    out = a.output_levels("")
    st.markdown("**Output per image:** " + ", ".join(
        (f"`{l['name']}` " if len(out) > 1 else "") + ui.fmt_shape(l["output_shape"]) for l in out))
    for note in a.notes:
        st.info(ui.md_escape(note), icon=":material/info:")
    expand = st.toggle("Show every layer in the diagram", key=K + "expand")
    st.graphviz_chart(ui.cached_diagram(spec, dtype, expand), width="stretch")
