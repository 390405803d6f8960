"""What a student trips over on Compose and Layers (issue 14, item 3): each with the numbers a person checks."""
from __future__ import annotations

import math
from pathlib import Path

import pytest

from streamlit.testing.v1 import AppTest

from conftest import assert_clean
from explorer import compose
from explorer.compose import analyze_spec
from explorer.fields import fmt_bytes
from explorer.spec import ArchitectureSpec, SpecError

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def open_compose(spec: ArchitectureSpec | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    if spec is not None:
        at.query_params["spec"] = spec.to_url()
    at.run()  # Compose is the default page
    assert_clean(at)
    return at


def metric(at, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


# -- 1. the whole backbone can be frozen ---------------------------------------------------------------------------
def test_every_parameterised_backbone_module_can_be_frozen():
    resnet18 = ArchitectureSpec.from_dict({"backbone": {"name": "resnet18"}})
    assert compose.freezable_stages(resnet18) == ["conv1", "bn1", "layer1", "layer2", "layer3", "layer4"]
    vgg16 = ArchitectureSpec.from_dict({"backbone": {"name": "vgg16"}})
    assert len(compose.freezable_stages(vgg16)) == 13  # its 13 convolutions (features.0 … features.28)
    custom = ArchitectureSpec.from_dict({"backbone": {"name": "custom", "stages": [
        {"block": "conv", "repeats": 1, "width": 32, "stride": 2}]}})
    frozen = custom.replace(backbone=dict(custom.to_dict()["backbone"],
                                          frozen_stages=compose.freezable_stages(custom)))
    a = analyze_spec(frozen)
    assert a.trainable_params == 32 * 1000 + 1000  # only the linear head


def test_freeze_the_whole_backbone_in_one_click():
    at = open_compose()
    assert "bn1" in at.multiselect(key="compose.frozen").options
    at.checkbox(key="compose.freeze_all").check().run()
    assert_clean(at)
    spec = ArchitectureSpec.from_url(at.query_params["spec"])
    assert spec.backbone.frozen_stages == ["conv1", "bn1", "layer1", "layer2", "layer3", "layer4"]
    assert metric(at, "Trainable parameters") == "513,000"  # the 512→1000 linear head: 512·1000 + 1000
    assert metric(at, "Training, batch 1") == fmt_bytes(2048) == "2.05 kB"  # fc's saved 512-float input
    at.checkbox(key="compose.freeze_all").uncheck().run()
    assert ArchitectureSpec.from_url(at.query_params["spec"]).backbone.frozen_stages == []
    assert metric(at, "Trainable parameters") == "11,689,512"


# -- 2. the stem of a custom stack is a row of its own -------------------------------------------------------------
VGG16_HEAD = {"kind": "classification", "pooling": "flatten", "hidden": [4096, 4096], "num_classes": 1000}
VGG16_STACK = {"name": "custom", "stem": None, "stages": [
    {"block": "vgg_plain", "repeats": r, "width": w, "stride": 2}
    for r, w in ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))]}


def test_the_vgg16_stack_without_a_stem_is_vgg16():
    from explorer.analysis import analyze

    spec = ArchitectureSpec.from_dict({"backbone": VGG16_STACK, "head": VGG16_HEAD})
    a, vgg16 = analyze_spec(spec, training_memory=False), analyze("vgg16", training_memory=False)
    assert a.params == vgg16.params == 138_357_544
    assert a.macs == vgg16.macs == 15_470_264_320  # 15.47 GMACs
    assert a.params - a.biases_total == 138_344_128
    assert [s.name for s in compose.backbone_stages(spec)] == ["stage1", "stage2", "stage3", "stage4", "stage5"]
    assert ArchitectureSpec.from_url(spec.to_url()) == spec and spec.backbone.stem is None


def test_a_spec_saved_before_the_stem_row_builds_what_it_built():
    import json

    from explorer.blocks import CustomBackbone

    old_stages = [{"block": "vgg", "repeats": r, "width": w, "stride": 2}
                  for r, w in ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))]
    old = ArchitectureSpec.from_json(json.dumps({"backbone": {"name": "custom", "stages": old_stages},
                                                 "head": VGG16_HEAD}))
    assert old.backbone.stem is not None and (old.backbone.stem.width, old.backbone.stem.stride) == (32, 2)
    assert analyze_spec(old, training_memory=False).params == 70_804_104  # what this stack built before
    built = compose.build(old, meta=True).backbone.body
    before = CustomBackbone(old_stages)  # the library's default is the stem it always had
    assert [(k, v.shape) for k, v in built.state_dict().items()] == \
           [(k, v.shape) for k, v in before.state_dict().items()]
    assert old.to_dict()["backbone"]["stem"] == {"width": 32, "stride": 2}  # saved again, it says so


def test_the_editor_shows_the_stem_as_a_removable_first_row():
    from explorer.ui.draft import _from_rows, stack_rows

    bb = {"stem": {"width": 16, "stride": 2}, "stages": [{"block": "conv", "repeats": 1, "width": 32, "stride": 2}]}
    rows = stack_rows(bb)
    assert rows[0] == {"block": "stem", "repeats": 1, "width": 16, "stride": 2}
    _from_rows(bb, rows[1:])  # the stem row deleted
    assert bb == {"stem": None, "stages": [{"block": "conv", "repeats": 1, "width": 32, "stride": 2}]}
    with pytest.raises(SpecError, match="^Stage 2 is a stem row: the stem is one 3×3 conv layer"):
        ArchitectureSpec.from_dict({"backbone": {"name": "custom", "stem": None, "stages": [
            {"block": "conv", "repeats": 1, "width": 32, "stride": 2},
            {"block": "stem", "repeats": 1, "width": 32, "stride": 2}]}})


def test_compose_shows_the_vgg16_stack_numbers():
    at = open_compose(ArchitectureSpec.from_dict({"backbone": VGG16_STACK, "head": VGG16_HEAD}))
    assert metric(at, "Parameters") == "138,357,544"
    assert metric(at, "GMACs per image") == "15.470"
    assert list(at.dataframe[0].value["block"]) == ["vgg_plain"] * 5  # the stack's editor: no stem row, no stem
    old = {"name": "custom", "stages": [{"block": "conv", "repeats": 1, "width": 32, "stride": 2}]}
    at = open_compose(ArchitectureSpec.from_dict({"backbone": old}))  # a link from before the stem row
    editor = at.dataframe[0].value
    assert list(editor["block"]) == ["stem", "conv"] and list(editor["width"]) == [16, 32]


# -- 3. the headline follows "Count biases"; labels and captions say what is true for the model shown --------------
def open_layers(**query) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params.update(query)
    at.run()
    at.switch_page("app_pages/layers.py").run()
    assert_clean(at)
    return at


def chart_caption(at) -> str:
    return next(c.value for c in at.caption if c.value.startswith("Per layer (bars)"))


def test_the_parameters_headline_follows_count_biases():
    at = open_layers(model="vgg16")
    assert metric(at, "Parameters") == "138,357,544"
    assert "For VGG: memory is spent early" in chart_caption(at)
    at.toggle(key="layers.biases").set_value(False).run()
    assert_clean(at)
    assert metric(at, "Parameters (weights only)") == "138,344,128"  # 138,357,544 − 13,416 biases
    assert at.dataframe[0].value["params"].sum() == 138_344_128  # the table says the same
    at.toggle(key="layers.biases").set_value(True).run()
    assert metric(at, "Parameters") == "138,357,544"


def test_the_vgg_caption_is_only_under_vgg():
    at = open_layers(model="resnet18")
    assert chart_caption(at) == "Per layer (bars) and cumulatively (line)."


def test_the_cumulative_axis_has_round_ticks():
    from explorer.analysis import analyze
    from explorer.vis.costs import cost_figure

    fig = cost_figure(analyze("vgg16", training_memory=False), "parameters")
    assert tuple(fig.layout.yaxis2.tickvals) == (0, 20, 40, 60, 80, 100)


@pytest.mark.slow  # three analyses at two sizes: `make test` runs it
def test_pooling_titles_are_worked_on_the_real_last_map():
    at = open_compose()  # resnet18: 7×7×512
    assert at.selectbox(key="compose.head.classification.pooling").options == [
        "global average (7×7×512 → 512)", "flatten (7×7×512 → 25,088)"]
    at.selectbox(key="compose.backbone").set_value("mobilenet_v2").run()
    assert_clean(at)
    assert at.selectbox(key="compose.head.classification.pooling").options == [
        "global average (7×7×1280 → 1,280)", "flatten (7×7×1280 → 62,720)"]
    at.number_input(key="compose.height").set_value(320).run()
    at.number_input(key="compose.width").set_value(256).run()
    assert at.selectbox(key="compose.head.classification.pooling").options == [
        "global average (10×8×1280 → 1,280)", "flatten (10×8×1280 → 102,400)"]


# -- 4. a wrong hidden width is named; stale figures say so ---------------------------------------------------------
@pytest.mark.parametrize("typed, sentence", [
    ("4096, abc, -3", "Hidden layer widths: 'abc' is not a whole number; type whole numbers separated by commas, "
                      "such as 4096, 4096."),
    ("4096, -3", "Hidden layer widths: -3 must be at least 1; change it or remove it."),
    ("4096, 20000", "Hidden layer widths: 20,000 must be at most 16,384; change it or remove it."),
    ("1, 2, 3, 4, 5, 6, 7, 8, 9", "Hidden layer widths: at most 8 values; you typed 9, so remove some."),
])
def test_a_wrong_hidden_width_is_named_and_the_figures_say_they_are_stale(typed, sentence):
    at = open_compose()
    at.text_input(key="compose.head.classification.hidden").set_value(typed).run()
    assert_clean(at)
    assert [e.value for e in at.error] == [sentence]
    assert [w.value for w in at.warning] == [
        "These figures are for the last composition that built: resnet18 → classification at 3×224×224. "
        "The inputs on the left do not build yet; change what the message above says."]
    assert metric(at, "Parameters") == "11,689,512"  # the last composition that built
    at.text_input(key="compose.head.classification.hidden").set_value("4096, 256").run()
    assert not at.error and not at.warning
    assert metric(at, "Parameters") == f"{11_176_512 + 512 * 4096 + 4096 + 4096 * 256 + 256 + 256 * 1000 + 1000:,}"


# -- 5. uploads: the caps the README promises; a torchvision backbone file goes into the backbone -------------------
def test_every_uploader_has_its_own_cap_and_the_server_takes_600_mb():
    import ast
    import tomllib

    root = Path(APP).parent
    config = tomllib.loads((root / ".streamlit" / "config.toml").read_text())
    assert config["server"]["maxUploadSize"] == 600
    from explorer.ui import upload_mb

    assert (upload_mb("weights"), upload_mb("image"), upload_mb("zip"), upload_mb("spec")) == (600, 20, 200, 1)
    uploaders = []
    for path in [*root.glob("app_pages/*.py"), *root.glob("explorer/ui/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "file_uploader":
                uploaders.append((path.name, {k.arg for k in node.keywords}))
    assert len(uploaders) == 5 and all("max_upload_size" in kw for _, kw in uploaders), uploaders


def test_a_torchvision_resnet18_file_loads_into_the_backbone_on_predict(tmp_path):
    import torch
    import torchvision

    torch.manual_seed(7)
    published = torchvision.models.resnet18().state_dict()
    path = tmp_path / "resnet18-f37072fd.pth"
    torch.save(published, path)
    at = AppTest.from_file(APP, default_timeout=180)
    at.query_params["spec"] = ArchitectureSpec.from_dict({"backbone": {"name": "resnet18"}}).to_url()
    at.run()
    at.switch_page("app_pages/predict.py").run()
    assert_clean(at)
    up = [u for u in at.get("file_uploader") if "weights" in u.proto.label.lower()][0]
    assert up.proto.max_upload_size_mb == 600  # what the browser lets through for weights
    images = at.file_uploader(key="w.predict.upload")
    assert images.proto.max_upload_size_mb == 20
    at.file_uploader(key=up.key).set_value((path.name, path.read_bytes(), "application/octet-stream")).run()
    assert_clean(at)
    assert not at.error, [e.value for e in at.error]
    badge = " ".join(c.value.replace("\\", "") for c in at.caption)
    assert f"uploaded weights: {path.name}" in badge
    assert f"2 tensors of {path.name} beyond the resnet18 backbone (such as its classifier) not used" in badge
    assert "the head keeps random weights (untrained)" in badge


# -- 6. export on Compose ------------------------------------------------------------------------------------------
def _served(monkeypatch) -> dict:
    """What the browser would download: every file Streamlit's media store is given, by its id."""
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    served: dict[str, bytes] = {}
    original = MemoryMediaFileStorage.load_and_get_id

    def keep(self, path_or_data, mimetype, kind, filename=None):
        file_id = original(self, path_or_data, mimetype, kind, filename)
        served[file_id] = self._files_by_id[file_id].content
        return file_id

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", keep)
    return served


def _download(at, served, label_start: str) -> bytes:
    button = next(b for b in at.get("download_button") if b.proto.label.startswith(label_start))
    return served[button.proto.url.rsplit("/", 1)[1].split(".")[0]]


def test_the_downloaded_pytorch_file_rebuilds_the_composition(monkeypatch, tmp_path, capsys):
    import runpy

    served = _served(monkeypatch)
    spec = ArchitectureSpec.from_dict({"backbone": {"name": "resnet18"}, "neck": {"kind": "se"},
                                       "head": {"kind": "classification", "num_classes": 10}})
    at = open_compose(spec)
    params = metric(at, "Parameters")
    path = tmp_path / "composition.py"
    path.write_bytes(_download(at, served, "Download PyTorch file"))
    runpy.run_path(str(path), run_name="__main__")  # as `python composition.py`
    printed = capsys.readouterr().out
    assert f"parameters: {params}\n" in printed and params == f"{11_176_512 + 33_312 + 512 * 10 + 10:,}"  # + SE + fc
    assert "output: 1x10" in printed


def test_onnx_is_exported_on_request_and_refused_with_the_sentence(monkeypatch):
    import onnx

    served = _served(monkeypatch)
    small = ArchitectureSpec.from_dict({"input": {"height": 64, "width": 64}, "backbone": {"name": "custom", "stages": [
        {"block": "conv", "repeats": 1, "width": 16, "stride": 2}]}, "head": {"kind": "classification",
                                                                              "num_classes": 10}})
    at = open_compose(small)
    assert not [b for b in at.get("download_button") if b.proto.label.startswith("Download ONNX")]
    at.button(key="compose.export.onnx").click().run()
    assert_clean(at)
    proto = onnx.load_from_string(_download(at, served, "Download ONNX"))
    onnx.checker.check_model(proto)
    dims = [[d.dim_value for d in v.type.tensor_type.shape.dim] for v in (*proto.graph.input, *proto.graph.output)]
    assert dims == [[1, 3, 64, 64], [1, 10]]
    # The export folds each BatchNorm into its conv (8 + 16 channels: 2 values each become 1 bias each).
    values = sum(math.prod(t.dims) for t in proto.graph.initializer)
    assert metric(at, "Parameters") == "1,586" and values == 1_586 - (8 + 16)
    two_stage = ArchitectureSpec.from_dict({"task": "detection", "backbone": {"name": "resnet18"},
                                            "neck": {"kind": "fpn"}, "head": {"kind": "faster_rcnn"}})
    at = open_compose(two_stage)
    at.button(key="compose.export.onnx").click().run()
    assert_clean(at)
    assert [i.value for i in at.info if i.value.startswith("Two-stage")] == [
        "Two-stage detectors (Faster R-CNN, Mask R-CNN) cannot be exported to ONNX here: their region proposals "
        "depend on the data (top-k and NMS). Pick a YOLO-style or SSD head, or export the spec and the Python file "
        "instead."]


def test_a_pooling_title_worked_on_an_earlier_map_is_still_its_choice():
    from explorer import components
    from explorer.ui.settings import choice_title_at, parse_setting_input

    pooling = components.get("head", "classification").setting("pooling")
    assert choice_title_at(pooling, "flatten", (128, 7, 7)) == "flatten (7×7×128 → 6,272)"
    # what the browser sends back after the backbone changed under the open selectbox
    assert parse_setting_input(pooling, "global average (7×7×512 → 512)") == "gap"
    assert parse_setting_input(pooling, "flatten (10×8×1280 → 102,400)") == "flatten"
    assert parse_setting_input(pooling, "average") == "average"  # anything else stays, for the spec's sentence
