"""Compose: backbone → neck → head, with live numbers. Widgets in, explorer calls, figures out.

Every widget shows the draft (`explorer.ui.draft`) and commits through its ``on_change`` callback before anything
is drawn; a combination that cannot be built shows its sentence and the last working composition stays on screen
and in the URL, so nothing a person built is lost. Kinds, titles and settings come from the component registry
(`explorer.ui.settings`): no kind is named in this file.
"""
import pandas as pd
import streamlit as st

from explorer import catalog, ui
from explorer.analysis import AnalysisError
from explorer.spec import MAX_CHANNELS, MAX_REPEATS, MAX_SIDE, MAX_WIDTH, SpecError
from explorer.ui import draft as form
from explorer.ui import settings as kinds
from explorer.ui.export import export_panel
from explorer.ui.model_options import stage_label

K = form.K
d = form.draft()
edit = form.edit


def seeded(key: str, value) -> str:
    form.seed(K + key, value)
    return K + key


st.header("Compose", anchor=False)
st.caption("Build a network as backbone → neck → head; every number on the right follows each change.")
left, right = st.columns([5, 7], gap="large")

with left:
    c1, c2 = st.columns(2)
    c1.selectbox("Task", kinds.tasks(), key=seeded("task", d["task"]), on_change=edit, args=("task",))
    c2.selectbox("Head", kinds.kinds("head", d["task"]), key=seeded("head", d["head"]["kind"]),
                 format_func=lambda k: kinds.title("head", k), on_change=edit, args=("head",),
                 help="The heads that serve this task.")

    backbone = d["backbone"]["name"]
    st.selectbox("Backbone", form.backbones(), key=seeded("backbone", backbone), format_func=form.backbone_label,
                 on_change=edit, args=("backbone",),
                 help="Any catalog CNN, cut after the stages you choose, or a custom stack of blocks.")
    if form.notice():
        st.info(ui.md_escape(form.notice()), icon=":material/info:")
    if backbone != form.CUSTOM and catalog.info(backbone).weights:
        st.checkbox(f"Pretrained backbone ({catalog.info(backbone).weights})",
                    key=seeded("pretrained", d["backbone"]["pretrained"]), on_change=edit, args=("pretrained",),
                    help="Feature maps, Explain and Predict load torchvision's weights into the backbone "
                         "(downloaded once, when you ask); the neck and head start random.")
    c1, c2, c3 = st.columns(3)
    for box, name, label, high in ((c1, "channels", "Channels", MAX_CHANNELS), (c2, "height", "Height (px)", MAX_SIDE),
                                   (c3, "width", "Width (px)", MAX_SIDE)):
        box.number_input(label, 1, high, key=seeded(name, d["input"][name]), on_change=edit, args=(name,))

    if backbone == form.CUSTOM:
        key = form.editor_key()
        st.data_editor(
            pd.DataFrame(form.editor_rows()), key=key, num_rows="dynamic", hide_index=True, width="stretch",
            on_change=edit, args=("stages", key),
            column_config={
                "block": st.column_config.SelectboxColumn("block", options=[form.STEM, *kinds.kinds("block")],
                                                          required=True,
                                                          help="The first row may be the stem (one 3×3 conv); "
                                                               "delete it for none."),
                "repeats": st.column_config.NumberColumn("repeats", min_value=1, max_value=MAX_REPEATS, step=1),
                "width": st.column_config.NumberColumn("width", min_value=1, max_value=MAX_WIDTH, step=1),
                "stride": st.column_config.SelectboxColumn("stride", options=[1, 2], required=True)})

    neck_kind = d["neck"]["kind"]
    st.selectbox("Neck", kinds.kinds("neck"), key=seeded("neck", neck_kind),
                 format_func=lambda k: kinds.title("neck", k), on_change=edit, args=("neck",),
                 help="Attention gates on each chosen stage, or a multi-scale fusion of several stages.")
    head_map = form.head_input(ui.current_spec(), form.view("dtype"))  # pooling titles worked on the real map
    for category in ("neck", "head"):
        kind = d[category]["kind"]
        cols = st.columns(2)
        for i, s in enumerate(kinds.settings(category, kind)):
            key = seeded(f"{category}.{kind}.{s.name}", kinds.widget_value(s, d[category].get(s.name, s.default)))
            kinds.setting_widget(cols[i % 2], s, key, on_change=edit, args=("setting", key, category, s.name),
                                 prefix="Neck " if category == "neck" else "",
                                 feature_map=head_map if category == "head" else None)

    stage_names, default_outs, stage_error = form.stage_choices(d)
    st.session_state[K + "stage_names"] = stage_names  # the order the callbacks keep the chosen stages in
    if stage_names:
        outs = [s for s in (d["backbone"].get("out_stages") or []) if s in stage_names]
        st.multiselect("Output stages (feed the neck / head)", stage_names, key=seeded("outs", outs),
                       on_change=edit, args=("outs",), format_func=stage_label(d),
                       placeholder=f"default for the task: {', '.join(default_outs)}",
                       help="Fine → coarse. Leave empty for the task's default.")
    frozen_names = form.frozen_choices(d)
    st.session_state[K + "frozen_names"] = frozen_names
    if frozen_names:
        frozen = [s for s in d["backbone"].get("frozen_stages", []) if s in frozen_names]
        st.multiselect("Frozen stages (requires_grad = False)", frozen_names, key=seeded("frozen", frozen),
                       on_change=edit, args=("frozen",), format_func=stage_label(d), help="Every part of the backbone that holds parameters.")
        st.checkbox("Freeze the whole backbone", key=seeded("freeze_all", frozen == frozen_names), on_change=edit,
                    args=("freeze_all",), help="Only the neck and head train.")

    spec = ui.current_spec()  # committed by the callbacks before this run drew anything
    with st.expander("Save or load this composition (spec JSON)", expanded=bool(form.upload_error())):
        st.download_button("Download spec JSON", spec.to_json(indent=2) + "\n", file_name="composition.json",
                           mime="application/json", icon=":material/download:", key=K + "download",
                           on_click="ignore")
        st.file_uploader("Load a spec JSON", type=["json"], key=K + "upload", on_change=form.on_upload,
                         max_upload_size=ui.upload_mb("spec"),
                         help="A file saved with the button above, or written by hand (see README).")
        if form.upload_error():
            st.error(ui.md_escape(form.upload_error()), icon=":material/error:")
    export_panel(spec)
    c1, c2 = st.columns(2)
    dtype = c1.selectbox("dtype", list(ui.DTYPES), key=seeded("dtype", form.view("dtype")), on_change=edit,
                         args=("dtype",))
    batch = int(c2.number_input("Batch size", 1, 65_536, key=seeded("batch", form.view("batch")), on_change=edit,
                                args=("batch",)))
    _, error = form.check(d, dtype)
    error = error or stage_error

with right:
    if error:
        st.error(ui.md_escape(error), icon=":material/error:")
        st.warning(f"These figures are for the last composition that built: {ui.md_escape(spec.summary())}. "
                   "The inputs on the left do not build yet; change what the message above says.",
                   icon=":material/history:")
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

    st.dataframe(pd.DataFrame(ui.part_rows(a)), hide_index=True, width="stretch")

    st.markdown("**Receptive field at each output level** (input pixels; *global*: pooling, a gate or "
                "attention reaches every pixel)")
    st.dataframe(pd.DataFrame(ui.level_rows(a)), hide_index=True, width="stretch")
    out = a.output_levels("")
    st.markdown("**Output per image:** " + ", ".join(
        (f"`{l['name']}` " if len(out) > 1 else "") + ui.fmt_shape(l["output_shape"]) for l in out))
    for note in a.notes:
        st.info(ui.md_escape(note), icon=":material/info:")
    ui.architecture_diagram(a, key=K + "diagram", stem="composition",
                            dot=lambda expand, opened: ui.cached_diagram(spec, dtype, expand, opened),
                            expand_key=seeded("expand", form.view("expand")), on_change=edit, args=("expand",))
