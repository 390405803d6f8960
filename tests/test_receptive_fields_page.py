"""The receptive-field page and the `explorer.vis` functions behind it.

Library: the stage table is the lecture's ResNet table; the theoretical box of one unit is the measured gradient
support; the effective field is zero outside that box and peaks inside it; the model passed in comes back
untouched (no hooks, same parameters and buffers, same mode, no .grad). Page: rendered through AppTest.
"""
import io
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from explorer import analyze, catalog
from explorer.fields import rf_growth
from explorer.vis import (effective_rf, read_image, rf_warnings, sample_images, stage_table,
                          theoretical_box, to_input)
from rf_measure import gradient_support, prepare

PAGE = Path(__file__).resolve().parents[1] / "app_pages" / "receptive_fields.py"
RESNETS = ["resnet18", "resnet34", "resnet50", "resnet101"]

# LECTURES.md §4: theoretical receptive field at the output of each ResNet stage, 224 px.
LECTURE_TABLE = [
    ["conv1", 7, 7, 7, 7],
    ["maxpool", 11, 11, 11, 11],
    ["layer1", 43, 59, 35, 35],
    ["layer2", 99, 179, 91, 91],
    ["layer3", 211, 547, 267, 811],
    ["layer4", 435, 899, 427, 971],
    ["avgpool", "global", "global", "global", "global"],
]


def _analysis(name, side):
    return analyze(name, (3, side, side), training_memory=False)


@pytest.fixture(scope="module")
def resnet18_224():
    return _analysis("resnet18", 224)


# -- library ---------------------------------------------------------------------------------------------------
def test_stage_table_is_the_lecture_table():
    table = stage_table({n: _analysis(n, 224) for n in RESNETS})
    assert list(table.columns) == ["stage"] + RESNETS
    assert table.values.tolist() == LECTURE_TABLE  # bn1, relu and fc (no change) are left out
    assert all(type(v) is int for row in LECTURE_TABLE[:-1] for v in table.set_index("stage").loc[row[0]])


def test_rf_curve_grows_layer_by_layer(resnet18_224):
    # One curve definition for the Receptive fields page and Compare (explorer.fields.rf_growth): the larger side.
    df = rf_growth(resnet18_224)
    assert [c for c in df.columns if c in ("index", "layer", "kind", "rf_h", "rf_w", "jump_h", "jump_w",
                                           "is_global")] == ["index", "layer", "kind", "rf_h", "rf_w", "jump_h",
                                                             "jump_w", "is_global"]
    assert df[["index", "layer", "kind", "rf_h", "rf_w"]].iloc[0].tolist() == [0, "input", "Input", 1, 1]
    assert (df["size"] == df[["rf_h", "rf_w"]].max(axis=1)).all()
    # The field only shrinks on a shortcut conv: it sees the block's input field, not the main path's.
    dips = df[df.rf_h.diff() < 0].layer.tolist()
    assert dips and all("downsample" in name for name in dips)
    local = df[~df.is_global]
    assert local.rf_h.max() == 435 and local.iloc[-1].jump_h == 32
    assert df[df.layer == "avgpool"].is_global.item()


def test_warning_when_the_input_exceeds_the_field(resnet18_224):
    assert rf_warnings(resnet18_224) == []
    msgs = rf_warnings(_analysis("resnet18", 448))
    assert len(msgs) == 1
    assert msgs[0].startswith("The input (448 px) is larger than the receptive field at layer4 (435 px): one "
                              "output unit cannot see the whole image.")
    assert rf_warnings(_analysis("vit_b_16", 224)) == []  # attention after the patch conv sees everything


@pytest.mark.slow
def test_theoretical_box_is_the_gradient_support():
    # tests/test_analysis.py RF_CASES: resnet18 layer4 at 480 px, centre unit (7, 7) of the 15×15 map.
    a = _analysis("resnet18", 480)
    assert theoretical_box(a, "layer4") == theoretical_box(a, "layer4", (7, 7)) == (7, 7, 441, 441)
    (r0, r1), (c0, c1), unit = gradient_support(prepare(catalog.build("resnet18")), "layer4", 480)
    assert unit == (7, 7) and (c0, r0, c1, r1) == (7, 7, 441, 441)
    # Clipped to the image; a global field is the whole image.
    assert theoretical_box(a, "layer4", (0, 0)) == (0, 0, 217, 217)
    assert theoretical_box(a, "avgpool") == (0, 0, 479, 479)


def _hook_dicts(model):
    return {(name, attr): len(d) for name, m in model.named_modules()
            for attr, d in vars(m).items() if attr.endswith("hooks") and isinstance(d, dict)}


@pytest.mark.parametrize("node,unit", [("layer2", None), ("layer3", None), ("layer2", (3, 20))])
def test_effective_field_lies_in_the_theoretical_box_and_leaves_the_model_alone(resnet18_224, node, unit):
    torch.manual_seed(0)
    model = catalog.build("resnet18").train()  # parameters require grad and BN is in training mode: worst case
    before = {k: v.clone() for k, v in model.state_dict().items()}
    hooks_before = _hook_dicts(model)
    x = to_input(sample_images()["chelsea"], 224)

    heat = effective_rf(model, node, x, unit)

    assert heat.shape == (224, 224) and heat.dtype == np.float32
    assert heat.min() >= 0 and heat.max() == pytest.approx(1.0)
    x0, y0, x1, y1 = theoretical_box(resnet18_224, node, unit)
    assert (x0, y0) > (0, 0) and (x1, y1) < (223, 223), "the box must not fill the image for this test"
    inside = np.zeros_like(heat, dtype=bool)
    inside[y0:y1 + 1, x0:x1 + 1] = True
    assert inside[np.unravel_index(heat.argmax(), heat.shape)]
    assert (heat[~inside] == 0).all()  # exactly zero gradient outside the theoretical field

    # The model is exactly as it was: same tensors (BN statistics included), mode, no grads, no hooks.
    assert model.training and all(m.training for m in model.modules())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in model.parameters())
    assert _hook_dicts(model) == hooks_before and not any(hooks_before.values())
    assert not torch.nn.modules.module._global_forward_hooks


def test_effective_field_of_a_shared_frozen_model_from_several_threads():
    model = catalog.build("resnet18").eval().requires_grad_(False)
    x = to_input(sample_images()["coffee"], 160)
    want = {n: effective_rf(model, n, x) for n in ("layer1", "layer2")}
    got, errors = {}, []

    def work(n):
        try:
            got[n] = effective_rf(model, n, x)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in ("layer1", "layer2") for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert all(np.array_equal(got[n], want[n]) for n in want)
    assert not model.training and not any(p.requires_grad for p in model.parameters())


def test_images_and_input_tensor():
    imgs = sample_images()
    assert list(imgs) == ["chelsea", "coffee", "astronaut", "rocket"]
    assert all(im.dtype == np.uint8 and im.ndim == 3 and im.shape[2] == 3 for im in imgs.values())
    x = to_input(imgs["rocket"], 100)  # 427×640: shorter side to 100, centre crop
    assert x.shape == (1, 3, 100, 100) and x.dtype == torch.float32
    assert -3 < x.min() < 0 < x.max() < 3  # ImageNet-normalised
    assert to_input(imgs["chelsea"], 32, channels=1).shape == (1, 1, 32, 32)


def test_read_image_accepts_png_and_refuses_the_rest():
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(sample_images()["chelsea"]).save(buf, format="PNG")
    assert read_image(buf.getvalue()).shape == (300, 451, 3)
    with pytest.raises(ValueError, match="upload is not an image this app can read; upload a PNG, JPEG"):
        read_image(b"not an image")
    with pytest.raises(ValueError, match="damaged or truncated"):
        read_image(buf.getvalue()[:200])
    gif = io.BytesIO()
    Image.new("RGB", (8, 8)).save(gif, format="GIF")
    with pytest.raises(ValueError, match="GIF"):
        read_image(gif.getvalue())


# -- page ------------------------------------------------------------------------------------------------------
def _page() -> AppTest:
    return AppTest.from_file(str(PAGE), default_timeout=120)


def _clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def test_page_renders_the_lecture_table_and_the_image_section():
    at = _page().run()
    _clean(at)
    table = at.dataframe[0].value.set_index("stage")
    assert str(table.loc["layer4", "resnet50"]) == "427"
    assert str(table.loc["layer4", "resnet18"]) == "435"
    assert str(table.loc["avgpool", "resnet101"]) == "global"
    assert not at.warning  # 224 px fits every ResNet's field
    assert "On an image" in [s.value for s in at.subheader]
    assert len(at.get("plotly_chart")) == 3  # growth curve, theoretical box, effective field
    assert at.selectbox(key="rf.layer.resnet18").value == "layer3"  # deepest stage whose field fits 224 px
    assert any("Random weights" in c.value for c in at.caption)
    assert any("Theoretical" in c.value and "Effective" in c.value for c in at.caption)


@pytest.mark.slow
def test_page_warns_when_the_input_exceeds_the_field():
    at = _page().run()
    at.multiselect(key="rf.models").set_value(["resnet18"])
    at.number_input(key="rf.side").set_value(1024).run()
    _clean(at)
    warnings = [w.value for w in at.warning]
    assert len(warnings) == 1 and "**resnet18**" in warnings[0]
    assert "input size should not exceed the receptive field" in warnings[0]
    assert "The input (1024 px) is larger than the receptive field at layer4 (435 px)" in warnings[0]
    assert len(at.get("plotly_chart")) == 3


def test_page_refuses_a_broken_upload():
    at = _page().run()
    at.multiselect(key="rf.models").set_value(["resnet18"])
    at.radio(key="rf.source").set_value("Upload").run()
    _clean(at)
    at.file_uploader(key="rf.upload").set_value(("cat.png", b"\x89PNG broken", "image/png")).run()
    _clean(at)
    assert any("cat.png is not an image this app can read" in e.value for e in at.error)
    assert len(at.get("plotly_chart")) == 1  # the curve; no pictures of a file that is not one

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(sample_images()["astronaut"]).save(buf, format="JPEG")
    at.file_uploader(key="rf.upload").set_value(("astronaut.jpg", buf.getvalue(), "image/jpeg")).run()
    _clean(at)
    assert not at.error and len(at.get("plotly_chart")) == 3


def test_the_composition_joins_the_curves():
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=180)
    at.run()
    at.switch_page("app_pages/receptive_fields.py").run()
    at.toggle(key="rf.spec").set_value(True).run()
    assert not at.exception
    names = [t.get("name") for t in __import__("json").loads(at.get("plotly_chart")[0].proto.spec)["data"]]
    assert "composition: resnet18 → classification at 3×224×224" in names


def test_effective_field_uses_pretrained_weights_from_torchs_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    from explorer import weights

    at = _page().run()
    at.multiselect(key="rf.models").set_value(["resnet18"]).run()
    _clean(at)
    assert any(c.value.startswith("Random weights") for c in at.caption)
    target = weights.cache_dir() / Path(weights.weights_entry("resnet18").url).name
    target.parent.mkdir(parents=True)
    torch.manual_seed(1)
    torch.save(catalog.build("resnet18").state_dict(), target)
    at.run()
    _clean(at)
    assert any("Pretrained weights (ResNet18\\_Weights.IMAGENET1K\\_V1)" in c.value for c in at.caption)


def test_page_shows_where_units_differ_and_where_a_field_is_a_bound():
    # seg_unet's decoder reads upsampled maps: neighbouring units see different fields (tests/test_rf_exact.py
    # measures them); seg_pool_unpool's unpooling makes its field an upper bound.
    at = _page().run()
    at.multiselect(key="rf.models").set_value(["seg_unet", "seg_pool_unpool"])
    at.number_input(key="rf.side").set_value(128).run()
    at.selectbox(key="rf.layer.seg_unet").set_value("dec.2").run()
    assert not at.exception
    table = at.dataframe[0].value.set_index("stage")
    assert table.loc["classifier"].tolist() == ["92–100 × 92–100", "62–78 × 62–78"]
    infos = [i.value for i in at.info]
    assert ("Units of dec.2 see different fields: 92–100 × 92–100 px (92 at units with index mod 8 = 0 or 1 or 6 "
            "or 7, 100 at units with index mod 8 = 2–5); the centre unit sees 92 px.") in infos
    assert any(i.startswith("**seg\\_pool\\_unpool**: Receptive field: an upper bound after max\\_unpool2d")
               for i in infos)
    # Unit (64, 64) (64 mod 8 = 0): 92 px, rows and columns 18–109, the exact interval of that unit.
    assert any(c.value.startswith("Unit (64, 64) of the 128×128 map of **dec.2**") and "columns 18–109 and rows "
               "18–109" in c.value for c in at.caption)
    at.slider(key="rf.row.seg_unet.dec.2.128").set_value(66).run()  # 66 mod 8 = 2: 100 rows
    title = __import__("json").loads(at.get("plotly_chart")[1].proto.spec)["layout"]["title"]["text"]
    assert title == "Theoretical field: 100×92 px"
