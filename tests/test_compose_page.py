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


# -- state in one direction (issue 12): a change is committed before anything is drawn --------------------------
def sidebar_text(at) -> str:
    return "\n".join(m.value for m in at.sidebar.markdown)


def test_the_sidebar_and_the_url_show_the_change_in_the_same_run():
    at = open_compose()
    at.selectbox(key="compose.neck").set_value("se").run()
    assert "resnet18 → SE → classification" in sidebar_text(at) and "11,722,824" in sidebar_text(at)
    at.number_input(key="compose.head.classification.num_classes").set_value(10).run()
    assert metric(at, "Parameters") == "11,214,954" and "11,214,954" in sidebar_text(at)
    assert ArchitectureSpec.from_url(at.query_params["spec"]).head.num_classes == 10
    assert "model" not in at.query_params  # Compose's link names the composition only


def test_the_current_spec_is_an_architecture_spec_committed_once():
    from explorer.ui.composition import DEFAULT_SPEC

    at = open_compose()
    committed = at.session_state["spec.committed"]
    assert isinstance(committed, ArchitectureSpec) and committed == DEFAULT_SPEC
    assert at.session_state["spec.json"] == committed.to_json()  # the cache key, written with it


def test_an_uploaded_spec_sets_every_widget_and_stays_after_an_unrelated_change():
    loaded = ArchitectureSpec.from_dict({"backbone": {"name": "vgg16"},
                                         "head": {"kind": "classification", "num_classes": 1000,
                                                  "pooling": "flatten", "hidden": [4096, 4096], "dropout": 0.5}})
    at = open_compose()
    at.file_uploader(key="compose.upload").set_value(("vgg.json", loaded.to_json().encode(), "application/json"))
    at.run()
    assert not at.exception and not at.error
    assert at.selectbox(key="compose.backbone").value == "vgg16"
    assert at.selectbox(key="compose.head.classification.pooling").value == "flatten"
    assert at.text_input(key="compose.head.classification.hidden").value == "4096, 4096"
    assert metric(at, "Parameters") == "138,357,544"
    at.number_input(key="compose.batch").set_value(8).run()
    assert metric(at, "Parameters") == "138,357,544"
    assert ArchitectureSpec.from_url(at.query_params["spec"]) == loaded


def test_switching_the_backbone_keeps_the_chosen_size_and_stages_and_says_what_was_reset():
    at = open_compose()
    at.number_input(key="compose.height").set_value(320).run()
    at.number_input(key="compose.width").set_value(320).run()
    at.multiselect(key="compose.frozen").set_value(["conv1", "layer1"]).run()
    at.multiselect(key="compose.outs").set_value(["layer3", "layer4"]).run()
    at.selectbox(key="compose.backbone").set_value("resnet50").run()
    spec = ArchitectureSpec.from_url(at.query_params["spec"])
    assert spec.input.shape == (3, 320, 320)
    assert spec.backbone.frozen_stages == ["conv1", "layer1"] and spec.backbone.out_stages == ["layer3", "layer4"]
    assert any("Kept your input 3×320×320" in i.value for i in at.info)
    at.selectbox(key="compose.backbone").set_value("vgg16").run()
    spec = ArchitectureSpec.from_url(at.query_params["spec"])
    assert spec.backbone.frozen_stages == [] and spec.backbone.out_stages is None
    note = next(i.value for i in at.info if "vgg16" in i.value)
    assert "frozen stages conv1 and layer1" in note and "the task's default is used" in note


def test_a_backbone_at_its_own_size_follows_the_new_one():
    at = open_compose()
    at.selectbox(key="compose.backbone").set_value("inception_v3").run()
    assert ArchitectureSpec.from_url(at.query_params["spec"]).input.shape == (3, 299, 299)
    assert any("Reset the input to inception_v3's own 3×299×299" in i.value.replace("\\", "") for i in at.info)


def test_custom_stack_edits_accumulate():
    from explorer.ui.draft import _apply_delta

    base = [{"block": "conv", "repeats": 1, "width": 32, "stride": 2},
            {"block": "residual", "repeats": 2, "width": 64, "stride": 2}]
    delta = {"edited_rows": {0: {"width": 48}, "1": {"repeats": 3}}, "added_rows": [{"block": "conv"}],
             "deleted_rows": []}
    assert _apply_delta(base, delta) == [{"block": "conv", "repeats": 1, "width": 48, "stride": 2},
                                         {"block": "residual", "repeats": 3, "width": 64, "stride": 2}]
    assert _apply_delta(base, {"deleted_rows": [0]}) == base[1:]


def test_layers_opened_with_a_spec_shows_the_composition():
    spec = ArchitectureSpec.from_dict({"backbone": {"name": "vgg16"},
                                       "head": {"kind": "classification", "pooling": "flatten",
                                                "hidden": [4096, 4096], "dropout": 0.5}})
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["spec"] = spec.to_url()
    at.run()
    at.switch_page("app_pages/layers.py").run()
    assert not at.exception
    assert at.header[0].value == spec.summary()
    assert metric(at, "Parameters") == "138,357,544"
    assert "model" not in at.query_params


def test_zoo_open_in_compose_keeps_the_composition_in_the_url():
    at = open_compose()
    at.switch_page("app_pages/zoo.py").run()
    at.selectbox(key="zoo.model").set_value("mobilenet_v2").run()
    at.button(key="zoo.compose").click().run()
    assert not at.exception
    assert ArchitectureSpec.from_url(at.query_params["spec"]).backbone.name == "mobilenet_v2"
    assert at.selectbox(key="compose.backbone").value == "mobilenet_v2"


def test_the_page_names_no_kind():
    """Kinds, titles and settings come from the component registry: the page spells none of them."""
    import ast

    from explorer import components

    kinds = {n for c in components.CATEGORIES for n in components.names(c)}
    source = (Path(APP).parent / "app_pages" / "compose.py").read_text()
    strings = {n.value for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    assert not strings & kinds, strings & kinds
