"""The app as a person uses it, through Streamlit's AppTest (no browser): what is on screen after each action.

Assertions read what a user reads: metric values, markdown, captions, error and info boxes, and table cells as
their column format renders them. Importing torch takes a few seconds, hence the 60 s timeout per run.
"""
import json
import re
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from conftest import assert_clean

from explorer import catalog

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "app.py"
PAGES = ROOT / "app_pages"


def layers_choice(at) -> dict:
    """The Layers page's part of the address bar (the composition rides along in ``spec``)."""
    return {k: at.query_params[k] for k in ("model", "input") if k in at.query_params}

def open_app(**query) -> AppTest:
    """The Layers page as a browser opens /layers?…, with ``query`` in the address bar (``model=vgg16``)."""
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.query_params.update(query)
    at.run()  # the first run reads the link (Compose is the default page)
    at.switch_page("app_pages/layers.py")
    return at.run()


def metrics(at: AppTest) -> dict:
    return {m.label: m.value for m in at.metric}


def text(at: AppTest) -> str:
    """Every text element on the page and in the sidebar, as one string."""
    parts = [e.value for kind in ("markdown", "caption", "header", "subheader", "info", "error", "warning")
             for e in getattr(at, kind)]
    parts += [f"{m.label} {m.value}" for m in at.metric]
    return "\n".join(parts)


def shown_cells(frame) -> list:
    """Cells of the columns on screen, as the browser draws them: numbers through their format ("%,d" -> 1,234)."""
    config = json.loads(frame.proto.columns)
    df, shown = frame.value, []
    for col in list(frame.proto.column_order) or df.columns:
        fmt = config.get(col, {}).get("type_config", {}).get("format")
        for v in df[col]:
            shown.append(f"{v:,}" if fmt == "%,d" else str(v))
    return shown


def test_default_page_shows_resnet50_in_numbers():
    at = open_app()
    assert_clean(at)
    published = catalog.info("resnet50").num_params  # torchvision's weights metadata
    m = metrics(at)
    assert m["Parameters"] == f"{published:,}" == "25,557,032"
    assert m["MACs per image"] == "4.09 G" and m["FLOPs per image"] == "8.18 G"
    assert "1 MAC = 2 FLOPs" in text(at)
    assert at.header[0].value == "resnet50"
    assert "Deep Residual Learning for Image Recognition" in text(at)
    assert any("resnet50" in md.value for md in at.sidebar.markdown)
    assert len(at.dataframe) == 2 and len(at.dataframe[0].value) > 100  # layer table, stage table
    assert "global (427)" in shown_cells(at.dataframe[0])  # fc: global, conv path 427 px
    assert "2,049,000" in shown_cells(at.dataframe[0])  # fc params with separators
    # the table's three, and the diagram (issue 14: as SVG where Graphviz's dot is installed, else its source)
    diagram = "Download diagram (SVG)" if shutil.which("dot") else "Download diagram (DOT source)"
    assert [b.label for b in at.get("download_button")] == ["CSV", "Markdown", "JSON", diagram]
    assert layers_choice(at) == {"model": "resnet50", "input": "224"}  # the address bar names the choice


def test_link_to_vgg16_shows_the_lecture_numbers():
    at = open_app(model="vgg16", input="224")
    assert_clean(at)
    m = metrics(at)
    assert m["Parameters"] == "138,357,544"
    assert m["Activations per image"] == "15,237,608"
    assert m["Activation memory per image"] == "60.95 MB"
    shown = text(at)
    assert "24M × 4 bytes ≈ 96 MB" in shown and "**15,237,608** values" in shown and "60.95 MB" in shown
    cells = shown_cells(at.dataframe[0])
    assert "102,764,544" in cells  # classifier.0: 25088 × 4096 + 4096
    assert "64×224×224" in cells and "(64, 224, 224)" not in cells
    assert at.selectbox(key="w.model").value == "vgg16"
    assert layers_choice(at) == {"model": "vgg16", "input": "224"}


def test_choosing_a_model_changes_the_numbers_and_the_link():
    at = open_app(model="resnet18")
    assert_clean(at)
    resnet18 = metrics(at)["Parameters"]
    assert resnet18 == "11,689,512"
    at.selectbox(key="w.model").set_value("resnet50").run()
    assert_clean(at)
    assert metrics(at)["Parameters"] == "25,557,032" != resnet18
    at.selectbox(key="w.model").set_value("vgg16").run()
    assert "138,357,544" in text(at) and "15,237,608" in text(at)
    assert layers_choice(at) == {"model": "vgg16", "input": "224"}


def test_a_new_model_starts_at_its_own_input_size():
    at = open_app(model="resnet50", input="320")
    assert at.number_input(key="w.side").value == 320
    at.selectbox(key="w.model").set_value("inception_v3").run()
    assert_clean(at)
    assert at.number_input(key="w.side").value == 299
    assert layers_choice(at) == {"model": "inception_v3", "input": "299"}


def test_input_size_scales_macs():
    at = open_app(model="resnet50")
    macs224 = metrics(at)["MACs per image"]
    at.number_input(key="w.side").set_value(448).run()
    assert_clean(at)
    assert metrics(at)["MACs per image"] != macs224
    assert metrics(at)["Parameters"] == "25,557,032"  # weights do not depend on the input
    assert at.query_params["input"] == "448"


def test_impossible_input_is_a_sentence_and_keeps_the_choice():
    at = open_app(model="vgg16", input="224")
    at.number_input(key="w.side").set_value(16).run()
    assert_clean(at)
    assert len(at.error) == 1
    msg = at.error[0].value
    assert "cannot take" in msg and "3×16×16" in msg and "3×32×32" in msg  # what is wrong, what works
    assert "Traceback" not in text(at)
    assert at.selectbox(key="w.model").value == "vgg16"  # the choice stays, ready to be fixed
    assert at.number_input(key="w.side").value == 16
    at.number_input(key="w.side").set_value(224).run()
    assert_clean(at)
    assert not at.error and metrics(at)["Parameters"] == "138,357,544"


def test_impossible_input_offers_the_smallest_that_works():
    at = open_app(model="vgg16", input="16")
    button = at.button(key="w.use_smallest")
    assert button.label == "Use 3×32×32"
    button.click().run()
    assert_clean(at)
    assert not at.error
    assert at.number_input(key="w.side").value == 32
    assert metrics(at)["Parameters"] == "138,357,544" and at.query_params["input"] == "32"


def test_impossible_input_from_a_link():
    at = open_app(model="vgg16", input="16")
    assert_clean(at)
    assert "cannot take" in at.error[0].value
    assert at.selectbox(key="w.model").value == "vgg16"


def test_a_model_that_only_takes_its_own_size():
    at = open_app(model="vit_b_16", input="240")  # torchvision's ViT asserts the size it was built for
    assert_clean(at)
    assert "cannot take a 3×240×240 input" in at.error[0].value
    at.button(key="w.use_default").click().run()
    assert_clean(at)
    assert not at.error and metrics(at)["Parameters"] == "86,567,656"


@pytest.mark.parametrize("query, says, params", [
    ({"model": "vgg17"}, "no architecture called 'vgg17'", "25,557,032"),
    ({"model": "vgg16", "input": "abc"}, "not a whole number", "138,357,544"),
    ({"model": "vgg16", "input": "99999"}, "outside 1–4096 px", "138,357,544"),
])
def test_bad_link_says_why_and_falls_back(query, says, params):
    at = open_app(**query)
    assert_clean(at)
    assert any(says in e.value for e in at.error), [e.value for e in at.error]
    assert metrics(at)["Parameters"] == params
    assert at.number_input(key="w.side").value == 224  # the (fallback) model's default size
    assert at.query_params["input"] == "224"  # the address bar now names what is shown


def test_dtype_and_batch_scale_memory():
    at = open_app(model="vgg16")
    at.selectbox(key="w.dtype").set_value("float16").run()
    assert_clean(at)
    m = metrics(at)
    assert m["Activation memory per image"] == "30.48 MB"  # 15,237,608 × 2 bytes
    assert m["Weight memory"] == "276.72 MB"
    at.number_input(key="layers.batch").set_value(8).run()
    m = metrics(at)
    assert m["Activation memory, 8 images"] == "243.80 MB" and m["Weight memory"] == "276.72 MB"


def test_count_biases_toggle_changes_the_params_column():
    at = open_app(model="vgg16")
    layers = at.dataframe[0].value
    assert layers["params"].sum() == 138_357_544
    at.toggle(key="layers.biases").set_value(False).run()
    assert_clean(at)
    layers = at.dataframe[0].value
    assert layers["params"].sum() == 138_357_544 - 13_416  # VGG16 has 13,416 bias values
    assert "params (no biases)" in at.dataframe[0].proto.columns


def test_more_columns_on_request():
    at = open_app(model="vgg16")
    table = at.dataframe[0].proto
    assert "FLOPs" not in table.column_order and {"biases", "jump"} <= set(table.column_order)
    assert "3,699,376,128" not in shown_cells(at.dataframe[0])
    at.button_group(key="layers.columns").set_value(["FLOPs", "centre"]).run()
    assert_clean(at)
    order = list(at.dataframe[0].proto.column_order)
    assert {"FLOPs", "offset"} <= set(order) and "biases" not in order
    assert "3,699,376,128" in shown_cells(at.dataframe[0])  # features.2: 2 × 1,849,688,064


def test_stage_rollup_depths():
    at = open_app(model="resnet50")
    stages = at.dataframe[1].value
    assert list(stages["stage"])[:4] == ["conv1", "bn1", "relu", "maxpool"]
    assert stages["params"].sum() == 25_557_032
    at.radio(key="layers.depth").set_value(2).run()
    assert_clean(at)
    assert "layer1.0" in list(at.dataframe[1].value["stage"])


def test_pages_stay_thin():
    """Pages hold layout only: they never build a model or walk its modules (that is explorer's job)."""
    for page in PAGES.glob("*.py"):
        source = page.read_text()
        assert not re.search(r"\bimport torchvision|\bfrom torchvision\b", source), page
        assert "named_modules" not in source, page


def test_no_pages_folder_beside_app():
    """A folder called pages/ next to app.py switches Streamlit to its old multipage mode, which runs the page
    without app.py (no page config, no URL handling, no sidebar) and ignores st.navigation: keep pages in
    app_pages/."""
    assert not (ROOT / "pages").exists()
