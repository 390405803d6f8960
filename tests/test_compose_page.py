"""Compose page (AppTest): live numbers, errors as sentences, the composition in the URL."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from explorer.spec import ArchitectureSpec

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def open_compose(spec: ArchitectureSpec | None = None, raw: str | None = None, first_run=None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    if spec is not None or raw is not None:
        at.query_params["spec"] = raw if raw is not None else spec.to_url()
    at.run()  # Compose is the default page
    if first_run:
        first_run(at)
    assert not at.exception
    return at


def metric(at, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def test_default_composition_is_resnet18_with_its_own_numbers():
    at = open_compose()
    assert metric(at, "Parameters") == "11,689,512"  # = torchvision's resnet18
    assert metric(at, "GMACs per image") == "1.814"
    assert ArchitectureSpec.from_url(at.query_params["spec"]).backbone.name == "resnet18"


def test_a_widget_change_changes_the_numbers_and_the_url():
    at = open_compose()
    at.selectbox(key="compose.neck").set_value("se").run()
    assert not at.exception
    assert metric(at, "Parameters") == "11,722,824"  # + an SE gate on layer4: 2·512·32 + 32 + 512
    spec = ArchitectureSpec.from_url(at.query_params["spec"])
    assert spec.neck.kind == "se"


def test_invalid_combination_is_a_sentence_and_the_last_composition_stays():
    at = open_compose()
    at.selectbox(key="compose.task").set_value("segmentation").run()
    at.selectbox(key="compose.head").set_value("unet").run()
    before, params = at.query_params["spec"], metric(at, "Parameters")
    at.multiselect(key="compose.outs").set_value(["layer4"]).run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        "A U-Net decoder needs at least two backbone stages; choose stages 1–4 or pick the FCN head."]
    assert at.query_params["spec"] == before  # nothing lost: the URL keeps the last valid composition
    assert metric(at, "Parameters") == params


def test_shared_link_restores_the_composition():
    spec = ArchitectureSpec.from_dict({"task": "detection", "input": {"height": 256, "width": 256},
                                       "backbone": {"name": "resnet50"}, "neck": {"kind": "fpn"},
                                       "head": {"kind": "yolo", "num_classes": 20}})
    at = open_compose(spec)
    assert metric(at, "Parameters") == "26,254,369"
    assert at.selectbox(key="compose.backbone").value == "resnet50"
    assert at.selectbox(key="compose.neck").value == "fpn"
    levels = at.dataframe[1].value
    assert list(levels["level"]) == ["layer2", "layer3", "layer4"]
    assert list(levels["jump"]) == ["8", "16", "32"]


@pytest.mark.parametrize("raw", ["not-a-spec", "eJxLy0xOBQAFGgIV"])
def test_a_damaged_link_says_so_and_falls_back(raw):
    seen = []
    at = open_compose(raw=raw, first_run=lambda at: seen.extend(e.value for e in at.error))
    assert any("composition in this link is damaged" in e and "Showing the default composition" in e for e in seen)
    assert metric(at, "Parameters") == "11,689,512"
    assert ArchitectureSpec.from_url(at.query_params["spec"]).backbone.name == "resnet18"


def test_layers_page_shows_the_composition_on_request():
    spec = ArchitectureSpec.from_dict({"backbone": {"name": "vgg16"},
                                       "head": {"kind": "classification", "num_classes": 1000, "pooling": "flatten",
                                                "hidden": [4096, 4096], "dropout": 0.5}})
    at = open_compose(spec)
    at.switch_page("app_pages/layers.py").run()
    at.segmented_control(key="layers.source").set_value("Your composition").run()
    assert not at.exception
    # vgg16's features + flatten + 4096-4096-1000 MLP: exactly the published VGG16 and the lecture's memory.
    assert metric(at, "Parameters") == "138,357,544"
    assert metric(at, "Activations per image") == "15,237,608"
