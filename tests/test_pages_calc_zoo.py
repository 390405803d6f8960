"""The Calculator and Zoo pages through Streamlit's AppTest (no browser), and the zoo library under them.

Assertions read what a user reads: metric values, markdown, captions, error boxes and table cells. Opened fresh,
the calculator must show the lecture's worked numbers exactly (LECTURES.md §1); the zoo must list every catalog
model with ImageNet metadata (80 torchvision classification models).
"""
import math
from pathlib import Path

import plotly.graph_objects as go
import pytest
from streamlit.testing.v1 import AppTest

from conftest import assert_clean

from explorer import arithmetic as ar
from explorer import catalog, zoo

ROOT = Path(__file__).resolve().parents[1]
CALCULATOR = ROOT / "app_pages" / "calculator.py"
ZOO = ROOT / "app_pages" / "zoo.py"
N_ZOO = 80  # torchvision's classification models, all with published ImageNet metadata


def open_page(path: Path) -> AppTest:
    return AppTest.from_file(str(path), default_timeout=60).run()


def metrics(at: AppTest) -> dict:
    """Label -> value; a label used twice (Parameters on conv and FC) keeps every value, in page order."""
    out: dict = {}
    for m in at.metric:
        out.setdefault(m.label, []).append(m.value)
    return out


def text(at: AppTest) -> str:
    parts = [e.value for kind in ("markdown", "caption", "header", "subheader", "info", "error", "warning")
             for e in getattr(at, kind)]
    parts += [f"{m.label} {m.value}" for m in at.metric]
    return "\n".join(parts)


# Tables in page order (a read-only st.dataframe carries no widget id to find it by).
CALC_FRAMES = {"calc.grid": 0, "calc.max_out": 1, "calc.avg_out": 2, "calc.softmax_table": 3,
               "calc.roi_map": 4, "calc.roi_lecture": 5, "calc.roi_torchvision": 6}  # RoI pooling: tests/test_roi_pool.py
ZOO_FRAMES = {"zoo.table": 0}


def frame_by_key(at: AppTest, key: str):
    """The table drawn with ``key`` on the calculator or zoo page."""
    frames = list(at.dataframe)
    index = {**CALC_FRAMES, **ZOO_FRAMES}[key]
    assert len(frames) == (len(CALC_FRAMES) if key.startswith("calc.") else len(ZOO_FRAMES)), len(frames)
    return frames[index].value


def grid(df) -> list[list]:
    return [[float(v) for v in row] for row in df.to_numpy()]


# -- calculator -----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def calc() -> AppTest:
    at = open_page(CALCULATOR)
    assert_clean(at)
    return at


def test_calculator_opens_on_the_lecture_bottleneck_example(calc):
    m = metrics(calc)
    assert m["5×5 conv directly"] == ["471,040,000"]
    assert m["1×1 to 16, then 5×5"] == ["40,960,000"]
    assert m["Bottleneck costs"] == ["1/11.5"]
    shown = text(calc)
    assert "**471,040,000** vs **40,960,000** multiplications" in shown and "about **1/11.5**" in shown
    # The formula with the numbers substituted, for projecting (LaTeX writes separators as {,}).
    latex = "\n".join(e.value for e in calc.latex)
    assert r"5 \cdot 5 \cdot 200 \cdot 32 \cdot 32 \cdot 92 = \mathbf{471{,}040{,}000}" in latex
    assert r"3{,}276{,}800 + 37{,}683{,}200 = \mathbf{40{,}960{,}000}" in latex


def test_calculator_opens_on_the_lecture_separable_example(calc):
    m = metrics(calc)
    assert (m["Normal conv"], m["Depthwise"], m["Pointwise"], m["Separable"]) == (
        ["1,228,800"], ["4,800"], ["49,152"], ["53,952"])
    assert "**1,228,800** vs 4,800 + 49,152 = **53,952** multiplications" in text(calc)
    latex = "\n".join(e.value for e in calc.latex)
    assert r"256 \cdot 5 \cdot 5 \cdot 3 \cdot 64 = \mathbf{1{,}228{,}800}" in latex
    assert "groups=3" in calc.code[0].value


def test_calculator_opens_on_output_size_and_parameter_examples(calc):
    shown = text(calc)
    assert "Output: **55 × 55** from 227 × 227" in shown  # AlexNet conv1: (227 - 11 + 0) / 4 + 1
    m = metrics(calc)
    assert m["Parameters"] == ["1,792", "102,764,544"]  # VGG16 conv3-64 and first FC, with biases
    assert m["Weights (no biases)"] == ["1,728", "102,760,448"]  # the lecture's VGG16 table
    assert m["MACs per image"] == ["86,704,128"]


def test_calculator_opens_on_the_pooled_grid_and_softmax(calc):
    assert grid(frame_by_key(calc, "calc.max_out")) == [[6, 8], [3, 4]]
    assert grid(frame_by_key(calc, "calc.avg_out")) == [[3.25, 5.25], [2, 2]]
    shown = text(calc)
    assert "max pool → `[[6, 8], [3, 4]]`" in shown
    assert "`[2.0, 1.0, 0.1]` → **[0.66, 0.24, 0.10]**" in shown
    probs = frame_by_key(calc, "calc.softmax_table")["probability"]
    assert [f"{p:.2f}" for p in probs] == ["0.66", "0.24", "0.10"]  # the column's "%.2f" format
    assert not calc.error


def test_moving_a_slider_changes_the_numbers():
    at = open_page(CALCULATOR)
    at.slider(key="calc.b_mid").set_value(32).run()
    assert_clean(at)
    expected = ar.bottleneck_comparison(c_mid=32).bottleneck
    assert metrics(at)["1×1 to 32, then 5×5"] == [f"{expected:,}"] == ["81,920,000"]
    at.slider(key="calc.s").set_value(2).run()
    assert "Output: **109 × 109** from 227 × 227" in text(at)  # (227 - 11) / 2 + 1
    at.slider(key="calc.pool_size").set_value(3)
    at.slider(key="calc.pool_stride").set_value(1).run()
    assert_clean(at)
    assert grid(frame_by_key(at, "calc.max_out")) == ar.max_pool(
        [[1, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]], 3, 1) == [[7, 8], [7, 8]]


def test_an_impossible_output_size_is_a_sentence_not_a_traceback():
    at = open_page(CALCULATOR)
    at.number_input(key="calc.n_in").set_value(5).run()  # an 11×11 kernel on 5 pixels, no padding
    assert_clean(at)
    assert len(at.error) == 1
    message = at.error[0].value
    assert "does not fit a 5-pixel input" in message and "use padding ≥ 3" in message
    assert message.rstrip().endswith(".")
    assert "Output:" not in text(at)
    at.slider(key="calc.p").set_value(3).run()  # the fix the sentence suggests
    assert not at.error and "Output: **1 × 1** from 5 × 5" in text(at)


def test_bad_inputs_elsewhere_are_sentences_too():
    at = open_page(CALCULATOR)
    at.text_input(key="calc.logits").input("2.0, one, 0.1").run()
    at.number_input(key="calc.conv_groups").set_value(2).run()  # 2 does not divide 3 input channels
    assert_clean(at)
    errors = " ".join(e.value for e in at.error)
    assert "numbers separated by commas" in errors
    assert "groups=2 must be at least 1 and divide both the input channels (3)" in errors


# -- zoo ------------------------------------------------------------------------------------------------------

def zoo_table(at: AppTest):
    return frame_by_key(at, "zoo.table")


def test_zoo_lists_every_model_with_a_plotly_scatter():
    at = open_page(ZOO)
    assert_clean(at)
    table = zoo_table(at)
    assert len(table) == N_ZOO and set(table["model"]) == set(catalog.names("torchvision"))
    assert f"**{N_ZOO}** of {N_ZOO} models" in text(at)
    charts = at.get("plotly_chart")
    assert len(charts) == 1 and '"type":"log"' in charts[0].proto.spec.replace(" ", "")
    assert "pick by ImageNet accuracy for your compute budget" in text(at)
    assert "ResNet-18" in text(at) and "don't pick VGG or AlexNet today" in text(at)
    # The model on screen elsewhere (resnet50 by default) is the one selected, with its published figures.
    assert at.selectbox(key="zoo.model").value == "resnet50"
    m = metrics(at)
    assert m["Parameters"] == ["25,557,032"] and m["ImageNet acc@1"] == ["80.86 %"]
    assert [b.label for b in at.button] == ["Open in Layers", "Open in Compose"]


def test_zoo_filters_reduce_the_table():
    at = open_page(ZOO)
    at.multiselect(key="zoo.families").set_value(["ResNet", "VGG"]).run()
    assert_clean(at)
    table = zoo_table(at)
    assert set(table["family"]) == {"ResNet", "VGG"} and len(table) == 13
    assert "**13** of 80 models" in text(at)
    at.select_slider(key="zoo.max_gmacs").set_value(2).run()  # a 2-GMAC budget: every VGG costs more
    table = zoo_table(at)
    assert list(table["model"]) == ["resnet18"]
    assert "most accurate within 2 GMACs: **resnet18**" in text(at)
    assert at.selectbox(key="zoo.model").value == "resnet18"  # resnet50 was filtered out
    at.multiselect(key="zoo.families").set_value([]).run()
    at.select_slider(key="zoo.max_gmacs").set_value(math.inf)
    at.slider(key="zoo.years").set_range(2012, 2014).run()
    assert set(zoo_table(at)["family"]) == {"AlexNet", "VGG", "GoogLeNet"}
    at.slider(key="zoo.years").set_range(2012, 2022)
    at.select_slider(key="zoo.max_params").set_value(5).run()
    assert_clean(at)
    assert (zoo_table(at)["params"] <= 5_000_000).all() and 0 < len(zoo_table(at)) < N_ZOO


def test_zoo_selectbox_changes_the_selected_model():
    at = open_page(ZOO)
    at.selectbox(key="zoo.model").set_value("vgg16").run()
    assert_clean(at)
    m = metrics(at)
    assert m["Parameters"] == ["138,357,544"] and m["ImageNet acc@1"] == ["71.59 %"]
    assert "**vgg16** · VGG · 2014" in text(at)


# -- the library under the zoo page ---------------------------------------------------------------------------

def test_zoo_frame_is_the_catalog_metadata():
    df = zoo.zoo_frame()
    assert list(df.columns) == zoo.COLUMNS and len(df) == N_ZOO
    r18 = df.set_index("model").loc["resnet18"]
    mi = catalog.info("resnet18")
    assert (r18["family"], r18["year"], r18["params"], r18["input"]) == ("ResNet", 2015, 11_689_512, 224)
    assert (r18["acc@1"], r18["acc@5"], r18["GMACs"], r18["GFLOPs"]) == (mi.acc1, mi.acc5, mi.gmacs, mi.gflops)
    assert df.set_index("model").loc["vit_h_14", "input"] == 518
    assert all(name in set(df["model"]) for name in zoo.LANDMARKS)


def test_filter_pareto_and_budget():
    df = zoo.zoo_frame()
    assert len(zoo.filter_zoo(df)) == N_ZOO  # no filter, no change
    resnets = zoo.filter_zoo(df, families=["ResNet"])
    assert sorted(resnets["model"]) == ["resnet101", "resnet152", "resnet18", "resnet34", "resnet50"]
    cheap = zoo.filter_zoo(df, max_gmacs=1.0, max_params=5_000_000, years=(2018, 2019))
    assert len(cheap) and (cheap["GMACs"] <= 1).all() and (cheap["params"] <= 5_000_000).all()
    assert cheap["year"].between(2018, 2019).all()
    front = df[zoo.pareto_front(df)]
    # The lecture's advice in numbers: neither VGG nor AlexNet is the best choice at any compute budget.
    assert not set(front["family"]) & {"VGG", "AlexNet"}
    assert df.loc[df["acc@1"].idxmax(), "model"] in set(front["model"])
    for budget in (0.5, 2, 5):
        best = zoo.best_within(df, budget)
        fits = df[df["GMACs"] <= budget]
        assert best in set(front["model"]) and df.set_index("model").loc[best, "acc@1"] == fits["acc@1"].max()
    assert zoo.best_within(df, 0.001) is None


def test_scatter_figure():
    df = zoo.zoo_frame()
    fig = zoo.scatter_figure(df, selected="resnet18")
    assert isinstance(fig, go.Figure) and fig.layout.xaxis.type == "log"
    families = {t.name for t in fig.data if t.mode == "markers" and t.showlegend is not False}
    assert families == set(df["family"])
    points = [p for t in fig.data if t.customdata is not None for p in t.customdata]
    assert len(points) == N_ZOO
    r50 = next(p for p in points if p[0] == "resnet50")
    assert r50[1] == "25,557,032"  # params with separators in the hover
    assert "GMACs" in fig.data[1].hovertemplate and "acc@5" in fig.data[1].hovertemplate
    assert fig.layout.legend.x > 1  # legend right of the plot area, never over a point
    assert any(t.text is not None and "resnet18" in t.text[0] for t in fig.data)  # the selected model's ring


def test_open_in_layers_goes_to_layers_with_the_model(tmp_path):
    """The button's wiring in a small app with both pages (the real app.py registers its pages itself)."""
    (tmp_path / "app_pages").symlink_to(ROOT / "app_pages", target_is_directory=True)
    (tmp_path / "app.py").write_text(
        "import streamlit as st\n"
        "from explorer import ui\n"
        "ui.init_selection()\n"
        "getattr(ui, 'init_spec', lambda: None)()  # as app.py does, where the frame has it\n"
        "st.navigation([st.Page('app_pages/layers.py', default=True),\n"
        "               st.Page('app_pages/zoo.py', url_path='zoo')]).run()\n")
    at = AppTest.from_file(str(tmp_path / "app.py"), default_timeout=60).run()
    at.switch_page("app_pages/zoo.py").run()
    assert_clean(at)
    at.selectbox(key="zoo.model").set_value("resnet18").run()
    at.button(key="zoo.open").click().run()
    assert_clean(at)
    assert at.header[0].value == "resnet18"  # the Layers page, showing the model picked in the zoo
    assert metrics(at)["Parameters"] == ["11,689,512"]
