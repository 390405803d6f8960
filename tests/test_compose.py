"""Compositions: backbone → neck → head from a spec, the seed systems of the lectures, and export."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import n_params

from explorer import analyze, catalog
from explorer.compose import analyze_spec, backbone_stages, build, resolve
from explorer.export import ExportError, spec_json, standalone_python, to_onnx
from explorer.spec import HEADS_FOR_TASK, ArchitectureSpec, SpecError


def spec(**d) -> ArchitectureSpec:
    return ArchitectureSpec.from_dict(d)


def check_output(s: ArchitectureSpec, out, n: int) -> None:
    h, w = s.input.height, s.input.width
    hs = s.head.settings
    if s.head.kind == "classification":
        assert out.shape == (n, hs["num_classes"])
    elif s.head.kind == "regression":
        assert out.shape == (n, hs["outputs"])
    elif s.head.kind == "siamese":
        assert out.shape == (n, hs["embedding_dim"])
        assert torch.allclose(out.norm(dim=1), torch.ones(n), atol=1e-4)
    elif s.head.kind in ("fcn", "unet"):
        assert out.shape == (n, hs["num_classes"], h, w)
    elif s.head.kind == "yolo":
        outs, infos = resolve(s)
        assert list(out) == outs
        for t, info in zip(out.values(), infos):
            assert t.shape[:2] == (n, hs["anchors_per_cell"]) and t.shape[-1] == 5 + hs["num_classes"]
    elif s.head.kind == "ssd":
        assert out["cls_logits"].shape[-1] == hs["num_classes"] + 1  # + background
        assert out["bbox_regression"].shape[0] == n and out["bbox_regression"].shape[-1] == 4
    else:
        raise AssertionError(s.head.kind)


SEEDS = {
    "resnet50 + FPN + YOLO": dict(task="detection", input=dict(height=128, width=128),
                                  backbone=dict(name="resnet50"), neck=dict(kind="fpn"),
                                  head=dict(kind="yolo", num_classes=20)),
    "vgg16 + SSD": dict(task="detection", input=dict(height=300, width=300),
                        backbone=dict(name="vgg16", out_stages=["features.22", "features.29"]),
                        head=dict(kind="ssd", num_classes=20)),
    "resnet34 + U-Net": dict(task="segmentation", input=dict(height=128, width=128),
                             backbone=dict(name="resnet34"), head=dict(kind="unet", num_classes=3)),
    "mobilenet_v2 + CBAM + classification": dict(backbone=dict(name="mobilenet_v2"), neck=dict(kind="cbam"),
                                                 head=dict(kind="classification", num_classes=10)),
    "resnet18 Siamese": dict(task="similarity", backbone=dict(name="resnet18"), head=dict(kind="siamese")),
    "custom Xception-like": dict(input=dict(height=180, width=180), backbone=dict(name="custom", stages=[
        dict(block="separable", repeats=2, width=128, stride=2), dict(block="separable", repeats=2, width=256, stride=2),
        dict(block="separable", repeats=2, width=728, stride=2), dict(block="separable", repeats=1, width=1024, stride=1)]),
        head=dict(kind="classification", num_classes=2, dropout=0.25)),
    "DenseNet-264": dict(backbone=dict(name="densenet264")),
}


@pytest.mark.parametrize("name", list(SEEDS))
def test_seed_systems_build_run_and_analyse(name):
    s = spec(**SEEDS[name])
    a = analyze_spec(s)
    model = build(s).eval()
    assert a.params == n_params(model)
    parts = {x.name: x for x in a.stages()}
    assert list(parts) == ["backbone", "neck", "head"]
    assert sum(p.params for p in parts.values()) == a.params
    assert sum(p.macs for p in parts.values()) == a.macs > 0
    if name != "DenseNet-264":  # 224 px through 264 layers on the CPU: analysed, not run
        with torch.no_grad():
            check_output(s, model(torch.randn((2,) + s.input.shape)), 2)


def test_fpn_reports_a_receptive_field_per_level():
    a = analyze_spec(spec(**SEEDS["resnet50 + FPN + YOLO"]))
    levels = a.output_levels("neck")
    assert [l["name"] for l in levels] == ["layer2", "layer3", "layer4"]
    assert [l["output_shape"] for l in levels] == [(256, 16, 16), (256, 8, 8), (256, 4, 4)]
    assert [l["jump"] for l in levels] == [(8, 8), (16, 16), (32, 32)]
    # Top-down fusion: every level sees at least what layer4 sees, plus its own 3×3 output conv.
    assert all(l["rf"][0] >= 427 for l in levels)
    assert [l["name"] for l in a.output_levels("head")] == ["layer2", "layer3", "layer4"]


@pytest.mark.parametrize("kind", ["faster_rcnn", "mask_rcnn"])
def test_two_stage_detectors_assemble_around_backbone_and_fpn(kind):
    s = spec(task="detection", input=dict(height=128, width=128), backbone=dict(name="resnet50"),
             neck=dict(kind="fpn"), head=dict(kind=kind, num_classes=5))
    model = build(s).eval()
    with torch.no_grad():
        det = model(torch.rand(1, 3, 128, 128))
    assert set(det[0]) >= {"boxes", "labels", "scores"} | ({"masks"} if kind == "mask_rcnn" else set())
    a = analyze_spec(s)
    assert a.params == n_params(model)
    assert a.device == "cpu" and any("real forward on the CPU" in n for n in a.notes)
    assert any("roi_align" in n for n in a.notes)  # RoI pooling has no MAC formula: listed, not zero
    with pytest.raises(ExportError, match="Two-stage detectors"):
        to_onnx(s)


def test_homework_encoder_decoders():
    counts = {}
    for name in ("seg_encoder_decoder", "seg_pool_unpool", "seg_unet"):
        a = analyze(name)
        m = catalog.build(name).eval()
        assert a.params == n_params(m)
        with torch.no_grad():
            assert m(torch.randn(1, 3, 128, 128)).shape == (1, 3, 128, 128)
        counts[name] = a.params
    assert counts == {"seg_encoder_decoder": 565_635, "seg_pool_unpool": 785_795, "seg_unet": 1_927_075}


def test_frozen_stages_are_frozen_in_model_and_analysis():
    s = spec(backbone=dict(name="resnet18", frozen_stages=["conv1", "layer1", "layer2"]),
             head=dict(kind="classification", num_classes=10))
    model = build(s)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    assert frozen == 9_408 + 147_968 + 525_568
    a = analyze_spec(s)
    assert a.frozen_params == frozen
    assert a.trainable_params == a.params - frozen


def test_stage_names_are_checked():
    with pytest.raises(SpecError, match="resnet18 has no stage 'layer9'; its stages are conv1, maxpool, layer1"):
        build(spec(backbone=dict(name="resnet18", out_stages=["layer9"])))
    with pytest.raises(SpecError, match="A FPN neck needs at least two backbone stages"):
        build(spec(backbone=dict(name="resnet18", out_stages=["layer4"]), neck=dict(kind="fpn")))
    # Swin's stages are (N, H, W, C) token maps: only its patch-embedding conv and the final (N, C, H, W) map
    # after its closing permute are offered (the patch merges' strided slices are followed since issue 14).
    assert [x.name for x in backbone_stages(spec(backbone=dict(name="swin_t")))] == ["features.0.0", "permute"]
    with pytest.raises(SpecError, match="swin_t has no stage 'features.3'"):
        build(spec(backbone=dict(name="swin_t", out_stages=["features.3"])))


def test_input_smaller_than_the_network_says_the_smallest_size():
    with pytest.raises(SpecError, match="smallest square input that works is 3×32×32"):
        build(spec(backbone=dict(name="vgg16"), input=dict(height=16, width=16)))


@pytest.mark.slow
def test_export_round_trip_standalone_file(tmp_path):
    s = spec(**SEEDS["mobilenet_v2 + CBAM + classification"])
    assert ArchitectureSpec.from_json(spec_json(s)) == s
    path = tmp_path / "model.py"
    path.write_text(standalone_python(s))
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": ""}  # no explorer on the path: the file carries its code
    p = subprocess.run([sys.executable, str(path)], cwd=tmp_path, capture_output=True, text=True, env=env,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    assert f"parameters: {analyze_spec(s).params:,}" in p.stdout
    assert "output: 1x10" in p.stdout


def test_onnx_export_is_checked():
    import onnx

    s = spec(input=dict(height=64, width=64), backbone=dict(name="resnet18"), neck=dict(kind="se"),
             head=dict(kind="classification", num_classes=10))
    proto = onnx.load_from_string(to_onnx(s))
    onnx.checker.check_model(proto)
    assert proto.graph.input[0].name == "image"


# -- property-based: random valid compositions -----------------------------------------------------------------
BACKBONES = ["resnet18", "mobilenet_v3_small", "vgg11", "shufflenet_v2_x0_5", "mnasnet0_5", "squeezenet1_1",
             "regnet_x_400mf", "efficientnet_b0", "convnext_tiny", "densenet121", "custom"]
BLOCKS = ["conv", "vgg", "residual", "bottleneck", "preact", "separable", "inverted_residual", "shuffle",
          "inception", "dense", "convnext", "se", "cbam"]


@st.composite
def valid_specs(draw):
    task = draw(st.sampled_from(list(HEADS_FOR_TASK)))
    head = draw(st.sampled_from([h for h in HEADS_FOR_TASK[task] if h not in ("faster_rcnn", "mask_rcnn")]))
    size = draw(st.sampled_from([64, 96, 128]))
    name = draw(st.sampled_from(BACKBONES))
    backbone = {"name": name}
    if name == "custom":
        backbone["stages"] = [dict(block=draw(st.sampled_from(BLOCKS)), repeats=draw(st.integers(1, 2)),
                                   width=draw(st.sampled_from([16, 32, 48])), stride=draw(st.sampled_from([1, 2])))
                              for _ in range(draw(st.integers(1, 3)))]
    base = spec(task=task, input=dict(height=size, width=size), backbone=backbone, head=dict(kind=head))
    names = [x.name for x in backbone_stages(base)]
    multi = head in ("yolo", "ssd", "unet")
    necks = ["none", "se", "cbam", "spatial"] + (["fpn", "panet", "bifpn"] if len(names) >= 2 else [])
    neck = draw(st.sampled_from(necks))
    k = draw(st.integers(2 if (multi and head == "unet") or neck in ("fpn", "panet", "bifpn") else 1,
                         min(3, len(names))))
    outs = names[-k:]
    hs = {"classification": dict(num_classes=draw(st.integers(2, 12)), hidden=draw(st.sampled_from([[], [32]])),
                                 pooling=draw(st.sampled_from(["gap", "flatten"]))),
          "regression": dict(outputs=draw(st.integers(1, 4))), "siamese": dict(embedding_dim=16),
          "yolo": dict(num_classes=3, anchors_per_cell=draw(st.integers(1, 3))), "ssd": dict(num_classes=3),
          "fcn": dict(num_classes=4), "unet": dict(num_classes=4)}[head]
    frozen = draw(st.sampled_from([[], names[:1]]))
    return spec(task=task, input=dict(height=size, width=size), backbone=dict(backbone, out_stages=outs,
                frozen_stages=frozen), neck=dict(kind=neck), head=dict(kind=head, **hs))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_specs())
def test_random_valid_specs_build_run_and_count(s):
    model = build(s).eval()
    with torch.no_grad():
        check_output(s, model(torch.randn((2,) + s.input.shape)), 2)
    a = analyze(model, s.input.shape, training_memory=False)
    assert a.params == n_params(model)
    assert a.frozen_params == sum(p.numel() for p in model.parameters() if not p.requires_grad)
    assert ArchitectureSpec.from_url(s.to_url()) == s


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.sampled_from(["out_stages", "frozen_stages"]),
                       st.lists(st.sampled_from(["layer1", "layer4", "fc", "stem", "features.3", "x"]), max_size=3,
                                unique=True)),
       st.sampled_from(["none", "fpn", "bifpn"]), st.sampled_from(["classification", "unet", "yolo"]))
def test_random_invalid_compositions_raise_spec_error(bb, neck, head):
    task = {"classification": "classification", "unet": "segmentation", "yolo": "detection"}[head]
    try:
        s = spec(task=task, input=dict(height=64, width=64), backbone=dict(name="resnet18", **bb),
                 neck=dict(kind=neck), head=dict(kind=head))
        build(s, meta=True)
    except SpecError as e:
        assert str(e)[-1] in ".?"


def _one_per_family_in_the_fast_lane(names: list) -> list:
    """Every name; all but the first of each family marked slow, so `make check` composes one per family and
    `make test` all of them."""
    seen: set = set()
    out = []
    for n in names:
        family = catalog.info(n).family
        out.append(pytest.param(n, marks=pytest.mark.slow) if family in seen else n)
        seen.add(family)
    return out


@pytest.mark.parametrize("name", _one_per_family_in_the_fast_lane(catalog.names("torchvision")
                                                                  + catalog.names("classic")))
def test_every_catalog_backbone_composes(name):
    """Every catalog CNN as a backbone under a classification head: built on meta, analysed, counted."""
    c, h, w = catalog.info(name).input_size
    s = spec(input=dict(channels=c, height=h, width=w), backbone=dict(name=name),
             head=dict(kind="classification", num_classes=7))
    model = build(s, meta=True)
    with torch.no_grad():
        assert model(torch.empty((1, c, h, w), device="meta")).shape == (1, 7)
    a = analyze(model, (c, h, w), training_memory=False)
    assert a.params == n_params(model)
    assert [x.name for x in a.stages()] == ["backbone", "neck", "head"]
