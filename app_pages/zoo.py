"""Zoo: every catalog model with published ImageNet figures, accuracy against compute, and a way into Layers.

Layout only. The table, the filters, the frontier and the figure come from `explorer.zoo`; the cached table and
"Open in Layers" from `explorer.ui.zoo`.
"""
import math

import streamlit as st

from explorer import catalog, ui, zoo
from explorer.ui import zoo as zoo_ui

esc = ui.md_escape
NO_LIMIT = math.inf
full = zoo_ui.zoo_table()

st.header("Model zoo", anchor=False)
st.markdown(zoo.ADVICE)
st.caption("Figures as torchvision publishes them with each model's default weights: ImageNet-1K validation "
           "accuracy, parameters, and GMACs per image at the weights' crop size. **1 MAC = 2 FLOPs.** The classic "
           "models (LeNet-5, ZFNet, MobileNet v1, …) have no published weights, so they are on Layers only.")

# -- filters --------------------------------------------------------------------------------------------------
c_fam, c_year, c_macs, c_params = st.columns([3, 2, 2, 2])
families = c_fam.multiselect("Families", sorted(full["family"].unique()), key="zoo.families",
                             placeholder="All families")
y_min, y_max = int(full["year"].min()), int(full["year"].max())
years = c_year.slider("Year", y_min, y_max, (y_min, y_max), key="zoo.years",
                      help="Year of the family's paper.")
max_gmacs = c_macs.select_slider(
    "Max GMACs per image", [0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128, 256, NO_LIMIT], value=NO_LIMIT,
    format_func=lambda v: "no limit" if v == NO_LIMIT else f"{v:g}", key="zoo.max_gmacs",
    help="Your compute budget: 10⁹ multiply-accumulates per image.")
max_mparams = c_params.select_slider(
    "Max parameters (millions)", [2, 5, 10, 25, 50, 100, 200, 400, NO_LIMIT], value=NO_LIMIT,
    format_func=lambda v: "no limit" if v == NO_LIMIT else f"{v:g} M", key="zoo.max_params")

df = zoo.filter_zoo(full, families=families, years=years,
                    max_gmacs=None if max_gmacs == NO_LIMIT else max_gmacs,
                    max_params=None if max_mparams == NO_LIMIT else int(max_mparams * 1_000_000))
shown = f"**{len(df)}** of {len(full)} models"
if max_gmacs != NO_LIMIT and len(df):
    best = df.loc[df["acc@1"].idxmax()]
    shown += (f" · most accurate within {max_gmacs:g} GMACs: **{esc(best['model'])}** "
              f"({best['acc@1']:.2f} % at {best['GMACs']:.2f} GMACs)")
st.markdown(shown)
if df.empty:
    st.info("No model passes these filters: widen the year range or raise the GMACs or parameter limit.",
            icon=":material/filter_alt_off:")
    st.stop()

# -- which model ----------------------------------------------------------------------------------------------
names = sorted(df["model"])
if st.session_state.get("zoo.model") not in names:
    # First visit, or the filters removed it: the model on screen elsewhere if it is here, else the most accurate.
    on_screen = ui.current_selection().model
    st.session_state["zoo.model"] = on_screen if on_screen in names else str(df.loc[df["acc@1"].idxmax(), "model"])

# -- accuracy against compute ---------------------------------------------------------------------------------
fig = zoo.scatter_figure(df, selected=st.session_state["zoo.model"])
event = st.plotly_chart(fig, on_select="rerun", selection_mode="points",
                        config={"displaylogo": False, "modeBarButtonsToRemove": ["lasso2d", "select2d"]})
picked = [p["customdata"][0] for p in (event.selection.points if event else [])
          if isinstance(p.get("customdata"), (list, tuple)) and p["customdata"]]
if picked and picked[0] in names and picked[0] != st.session_state["zoo.model"]:
    st.session_state["zoo.model"] = picked[0]  # a click on a bubble selects that model
    st.rerun()
st.caption("Bubble area ∝ parameters. The dotted line joins the models no other model beats at the same or "
           "lower GMACs: the best accuracy for each compute budget. Click a bubble to select it; hover for figures.")

# -- the selected model ---------------------------------------------------------------------------------------
with st.container(horizontal=True, vertical_alignment="bottom"):
    name = st.selectbox("Selected model", names, key="zoo.model", format_func=ui.model_label, width=360)
    if st.button("Open in Layers", type="primary", icon=":material/table_rows:", key="zoo.open",
                 help="Show this model layer by layer (at its own input size) on the Layers page."):
        zoo_ui.open_in_layers(name)
    if st.button("Open in Compose", icon=":material/account_tree:", key="zoo.compose",
                 help="Use this model as the backbone of your composition, with a classification head."):
        zoo_ui.open_in_compose(name)
row = df[df["model"] == name].iloc[0]
st.markdown(f"**{esc(name)}** · {esc(row['family'])} · {row['year']} · *{esc(row['paper'])}*  \n"
            f"{esc(catalog.info(name).description)}")
with st.container(horizontal=True, gap="large"):
    st.metric("ImageNet acc@1", f"{row['acc@1']:.2f} %", width="content")
    st.metric("ImageNet acc@5", f"{row['acc@5']:.2f} %", width="content")
    st.metric("Parameters", ui.fmt_int(row["params"]), width="content")
    st.metric("GMACs per image", f"{row['GMACs']:,.2f}", width="content",
              help=f"{row['GFLOPs']:,.2f} GFLOPs (1 MAC = 2 FLOPs).")
    st.metric("Input", f"{row['input']} px", width="content", help="The weights' crop size (square, 3 channels).")

# -- the table ------------------------------------------------------------------------------------------------
st.subheader("All models", anchor=False)
st.caption("Click a column header to sort (acc@1 to rank by accuracy, GMACs by cost).")
zoo_ui.zoo_dataframe(df, key="zoo.table")
