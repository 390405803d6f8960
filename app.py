"""CNN Architecture Explorer: the frame. Page config, navigation over app_pages/, the shared sidebar.

Run with `make run` (or `streamlit run app.py`). Pages hold layout only; everything they compute comes from
`explorer`, and what they share — the committed composition (an ArchitectureSpec) and the catalog model with its
input size — lives in `explorer.ui`, written by widget callbacks before this file runs and read by everything it
draws: the sidebar, the address bar, the pages.
"""
from pathlib import Path

import streamlit as st

from explorer import ui
from explorer.runtime import configure_torch_for_server

configure_torch_for_server()  # sessions share the cores: each torch op gets a share, not all of them
# The tab icon is a file shipped here: a :material/…: or emoji page icon is fetched from a font / emoji CDN by the
# browser, and the app makes no network request unless a person asks for a download.
ICON = Path(__file__).resolve().parent / "assets" / "icon.png"
st.set_page_config(page_title="CNN Architecture Explorer", page_icon=str(ICON), layout="wide")

# Before any page: read the URL on a session's first run. Widget callbacks have already committed this run's
# change (they run before this file), so everything drawn below reads the committed selection and composition.
ui.init_selection()
ui.init_spec()

# The folder is app_pages/, not pages/: a pages/ folder beside app.py puts Streamlit in its old multipage mode,
# which runs a page without this file. Streamlit serves the default page at "/" only, so the default is a hidden
# page that forwards to /compose with the same query string (and /compose stays a real address).
compose = st.Page("app_pages/compose.py", title="Compose", url_path="compose", icon=":material/account_tree:")


def _start():
    st.switch_page(compose, query_params=st.query_params.to_dict())


page = st.navigation([
    st.Page(_start, title="Start", url_path="start", default=True, visibility="hidden"),
    compose,
    st.Page("app_pages/layers.py", title="Layers", url_path="layers", icon=":material/table_rows:"),
    st.Page("app_pages/receptive_fields.py", title="Receptive fields", url_path="receptive_fields",
            icon=":material/center_focus_strong:"),
    st.Page("app_pages/feature_maps.py", title="Feature maps", url_path="feature_maps", icon=":material/grid_view:"),
    st.Page("app_pages/explain.py", title="Explain", url_path="explain", icon=":material/lightbulb:"),
    st.Page("app_pages/predict.py", title="Predict", url_path="predict", icon=":material/online_prediction:"),
    st.Page("app_pages/train.py", title="Train", url_path="train", icon=":material/model_training:"),
    st.Page("app_pages/zoo.py", title="Zoo", url_path="zoo", icon=":material/scatter_plot:"),
    st.Page("app_pages/calculator.py", title="Calculator", url_path="calculator", icon=":material/calculate:"),
    st.Page("app_pages/compare.py", title="Compare", url_path="compare", icon=":material/compare_arrows:"),
    st.Page("app_pages/teacher.py", title="Teacher", url_path="teacher", icon=":material/school:"),
])
ui.sync_url(page.url_path)  # the address bar names what is committed (and what this page shows)
ui.sidebar_summary(page.url_path)
page.run()
