"""Compare page (AppTest): costs side by side, a stage diff, receptive-field curves."""
from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def test_compare_current_composition_with_resnet50():
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page("app_pages/compare.py").run()
    assert not at.exception
    costs = at.dataframe[0].value
    assert list(costs.columns) == ["resnet18 → classification at 3×224×224 (current)", "resnet50"]
    assert costs.loc["parameters"].tolist() == ["11,689,512", "25,557,032"]
    assert costs.loc["receptive field at the output"].tolist() == ["global (435)", "global (427)"]
    # Rows are strides now (issue 14), the costs so far in the table under the stages: Δ is resnet50's minus
    # the composition's at stride 32, (25,557,032 − 2,049,000 of resnet50's fc) − (11,689,512 − 513,000 of
    # resnet18's) = 12,331,520 parameters; (4,089,184,256 − 2,048,000) − (1,814,073,344 − 512,000) MACs.
    assert at.dataframe[1].value.loc["7×7 · stride 32", "resnet50"] == "layer4 · 2,048 ch · RF 427"
    stages = at.dataframe[2].value
    assert "Δ" in stages.columns
    assert stages.loc["7×7 · stride 32", "Δ"] == "+12.33 M · +2.27 G"
    assert len(at.get("plotly_chart")) == 1


def test_pin_and_choose_four():
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page("app_pages/compare.py").run()
    at.button[0].click().run()  # pin the current composition
    labels = at.multiselect(key="compare.chosen").options
    assert "composition: resnet18 → classification at 3×224×224" in labels
    at.multiselect(key="compare.chosen").set_value(
        ["model: vgg16", "model: resnet18", "model: mobilenet_v2", "model: lenet5"]).run()
    assert not at.exception
    assert at.dataframe[0].value.loc["parameters"].tolist() == ["138,357,544", "11,689,512", "3,504,872", "61,706"]


def test_zoo_opens_a_model_in_compose():
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page("app_pages/zoo.py").run()
    at.selectbox(key="zoo.model").set_value("mobilenet_v2").run()
    at.button(key="zoo.compose").click().run()
    assert not at.exception
    assert at.selectbox(key="compose.backbone").value == "mobilenet_v2"
    assert next(m.value for m in at.metric if m.label == "Parameters") == "3,504,872"  # = torchvision's


def test_layers_page_shows_where_the_costs_go():
    from explorer import analyze
    from explorer.vis.costs import cost_figure

    a = analyze("vgg16", (3, 224, 224))
    params = cost_figure(a, "parameters")
    assert list(params.data[0].x[-3:]) == ["classifier.0", "classifier.3", "classifier.6"]
    assert round(params.data[1].y[-4], 1) == 10.6  # the convolutions: 10.6 % of the parameters
    memory = cost_figure(a, "activation memory")
    assert round(memory.data[1].y[2], 1) == 43.1  # input + the first two 224×224×64 maps: 43 % of the memory
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params.update({"model": "vgg16", "input": "224"})
    at.run()
    at.switch_page("app_pages/layers.py").run()
    assert not at.exception and len(at.get("plotly_chart")) == 3
