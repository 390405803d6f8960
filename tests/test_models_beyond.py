"""Models outside classification (issue 14 item 2): torchvision's int8 models, two-input RAFT, true error causes."""
from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from explorer import catalog
from explorer.analysis import AnalysisError, analyze

QUANTIZED = torchvision.models.list_models(module=torchvision.models.quantization)

# The int8 model's own count (packed int8 weights + float biases). torchvision publishes the float model's
# count, before BatchNorm was folded into the convolutions: one value per BatchNorm channel more (inception_v3's
# also includes its auxiliary classifier, which the int8 model does not build).
INT8_PARAMS = {
    "quantized_googlenet": 6_617_624, "quantized_inception_v3": 23_817_352, "quantized_mobilenet_v2": 3_487_816,
    "quantized_mobilenet_v3_large": 5_470_832, "quantized_resnet18": 11_684_712, "quantized_resnet50": 25_530_472,
    "quantized_resnext101_32x8d": 88_689_896, "quantized_resnext101_64x4d": 83_353_832,
    "quantized_shufflenet_v2_x0_5": 1_362_816, "quantized_shufflenet_v2_x1_0": 2_270_514,
    "quantized_shufflenet_v2_x1_5": 3_491_904, "quantized_shufflenet_v2_x2_0": 7_377_138,
}



def _FAST_LANE(names, keep=("quantized_resnet18", "quantized_mobilenet_v2")):
    """All twelve run in `make test`; `make check` keeps two (a few seconds each on a real CPU copy)."""
    return [n if n in keep else pytest.param(n, marks=pytest.mark.slow) for n in names]

def _batchnorm_channels(float_name: str, **kwargs) -> int:
    """BatchNorm channels of torchvision's float model (on meta): what folding removes from the count."""
    with torch.device("meta"):
        m = torchvision.models.get_model(float_name, **kwargs)
    return sum(b.num_features for b in m.modules() if isinstance(b, nn.BatchNorm2d))


def test_int8_models_are_in_the_catalog_but_not_among_the_classification_models():
    assert catalog.names("quantized") == sorted(QUANTIZED) and len(QUANTIZED) == 12
    assert len(catalog.names("torchvision")) == 80 and not set(QUANTIZED) & set(catalog.names("torchvision"))
    i = catalog.info("quantized_resnet18")
    assert (i.family, i.source, i.input_size) == ("ResNet", "quantized", (3, 224, 224))
    assert (i.num_params, i.gmacs, i.acc1) == (11_689_512, 1.814, 69.494)
    assert i.weights == "ResNet18_QuantizedWeights.IMAGENET1K_FBGEMM_V1"
    assert "BatchNorm folded" in i.note


@pytest.mark.parametrize("name", _FAST_LANE(QUANTIZED))
def test_int8_params_and_macs_match_torchvision(name):
    i = catalog.info(name)
    a = analyze(name)
    # MACs: the quantized conv / linear ops, exactly torchvision's published GMACs at its precision.
    assert a.macs > 0 and round(a.macs / 1e9, 3) == i.gmacs
    assert not a.uncounted_ops
    # Parameters: the packed int8 weights; torchvision's num_params plus what folding BatchNorm removed.
    assert a.params == INT8_PARAMS[name]
    float_name = name.removeprefix("quantized_")
    kwargs = {"aux_logits": False, "init_weights": False} if float_name in ("googlenet", "inception_v3") else {}
    aux = 0
    if float_name == "inception_v3":  # the auxiliary classifier torchvision's count includes
        aux = sum(p.numel() for p in catalog.build_meta(float_name, aux_logits=True).AuxLogits.parameters())
    assert a.params + _batchnorm_channels(float_name, **kwargs) + aux == i.num_params
    assert a.trainable_params == 0 and a.training_bytes is None and a.device == "cpu"
    assert any("int8 quantized model" in n for n in a.notes)


def test_int8_resnet18_table_and_bytes():
    a = analyze("quantized_resnet18")
    fc = next(r for r in a.layers if r.name == "fc")
    assert (fc.weights, fc.biases, fc.macs) == (512_000, 1000, 512_000)
    conv1 = next(r for r in a.layers if r.name == "conv1")
    assert (conv1.weights, conv1.biases, conv1.output_shape) == (9408, 64, (64, 112, 112))
    assert conv1.macs == 9408 * 112 * 112 and conv1.rf == (7, 7)
    assert a.layers[-1].rf == (435, 435)  # the float resnet18's field: int8 ops are followed like float ones
    # int8 weights take one byte, float32 biases four.
    biases = a.biases_total
    assert a.weight_bytes == (a.params - biases) + 4 * biases == 11_702_112


def test_int8_mobilenet_v2_no_longer_crashes_and_the_module_api_works():
    m = torchvision.models.get_model("quantized_mobilenet_v2", weights=None, quantize=True, backend="qnnpack")
    a = analyze(m, (3, 224, 224))
    assert (a.params, a.macs) == (3_487_816, 300_774_272)
    with pytest.raises(AnalysisError, match=r"^QuantizableMobileNetV2 is an int8 quantized model and takes float32 "
                                            r"input; analyse it as float32, not float64\.$"):
        analyze(m, (3, 224, 224), torch.float64)


def test_building_int8_models_leaves_the_engine_and_random_stream_alone():
    engine = torch.backends.quantized.engine
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    catalog.build("quantized_mobilenet_v2")  # qnnpack, calibrated on torch.rand
    assert torch.backends.quantized.engine == engine
    assert torch.equal(torch.rand(3), expected)


# -- several inputs: RAFT ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, params, gmacs", [("raft_small", 990_162, 47.655), ("raft_large", 5_257_536, 211.007)])
def test_raft_two_frames(name, params, gmacs):
    i = catalog.info(name)
    assert i.source == "optical_flow" and i.input_size == ((3, 512, 512), (3, 512, 512))
    assert (i.num_params, i.gmacs, i.family) == (params, gmacs, "RAFT")
    a = analyze(name, training_memory=False)
    assert a.params == params and round(a.macs / 1e9, 3) == gmacs  # torchvision's _ops is at 512×512
    assert [r.name for r in a.layers[:2]] == ["input 1", "input 2"]
    assert a.input_shape == ((3, 512, 512), (3, 512, 512))
    # The same through the module API with the shapes given explicitly.
    m = torchvision.models.get_model(name)
    assert analyze(m, ((3, 512, 512), [3, 512, 512]), training_memory=False).macs == a.macs


def test_arity_errors_say_how_many_inputs():
    with pytest.raises(AnalysisError) as e:
        analyze("raft_small", (3, 512, 512))
    assert str(e.value) == ("raft_small takes 2 inputs (image1, image2), got 1: give one shape per input, e.g. "
                            "((3, 512, 512), (3, 512, 512)).")
    with pytest.raises(AnalysisError) as e:
        analyze("resnet18", ((3, 224, 224), (3, 224, 224)))
    assert str(e.value) == ("resnet18 takes 1 input (x), got 2: give one shape per input, e.g. ((3, 224, 224)).")


def test_raft_too_small_frames_say_why_in_our_words():
    with pytest.raises(AnalysisError) as e:
        analyze("raft_small", ((3, 64, 64), (3, 64, 64)))
    assert str(e.value) == ("raft_small cannot take a 3×64×64 and 3×64×64 inputs (the frames are too small for its "
                            "correlation pyramid). Its default inputs are 3×512×512 and 3×512×512.")


class _NeedsRealStride(nn.Module):
    """Reads its stride from a buffer (.item(): no meta kernel); the placeholder buffer holds 0."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.register_buffer("step", torch.tensor(2))

    def forward(self, x):
        return self.conv(x)[:, :, :: int(self.step.item())]


def test_a_placeholder_weights_failure_is_not_blamed_on_the_input():
    with pytest.raises(AnalysisError) as e:
        analyze(_NeedsRealStride(), (3, 32, 32))
    msg = str(e.value)
    assert msg == ("_NeedsRealStride has to run one real forward on the CPU here, and that forward failed on the "
                   "placeholder (random) weights the analysis gives it (slice step cannot be zero); analyse the "
                   "model itself with its real weights loaded, with device=\"cpu\".")
    assert "larger input" not in msg
    # As the sentence says: with its real buffer, on the CPU, it analyses.
    a = analyze(_NeedsRealStride(), (3, 32, 32), device="cpu")
    assert a.layers[-1].output_shape == (4, 30, 30) and a.macs == 4 * 27 * 30 * 30 and a.device == "cpu"


def test_raw_torch_text_is_cut_at_a_word():
    from explorer.analysis import _cause

    long = RuntimeError("word " * 40)
    cut = _cause(long)
    assert cut.endswith("word…") and len(cut) <= 121


# -- reachable on the Layers page -------------------------------------------------------------------------------

def _layers_page(model: str):
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=60)
    at.query_params.update(model=model)
    at.run()
    at.switch_page("app_pages/layers.py")
    return at.run()


@pytest.mark.parametrize("model, params, macs", [("quantized_resnet18", "11,684,712", "1,814,073,344")])
def test_layers_page_shows_an_int8_model(model, params, macs):
    at = _layers_page(model)
    assert not at.exception and not at.error, [e.value for e in at.error]
    metrics = {m.label: m for m in at.metric}
    assert metrics["Parameters"].value == params
    assert macs in metrics["MACs per image"].help


# -- two-stage detectors: proposal and detection counts ---------------------------------------------------------

def _detector(head: str, **settings):
    from explorer.spec import ArchitectureSpec

    return ArchitectureSpec.from_dict({"task": "detection", "backbone": {"name": "resnet18"}, "neck": {"kind": "fpn"},
                                       "head": {"kind": head, **settings}})


# Faster R-CNN's box head per proposal, from its layer sizes: a 7×7×256 RoI -> fc6 (1024) -> fc7 (1024) ->
# class scores (20 classes + background) and 4 box offsets per class.
BOX_HEAD_PER_PROPOSAL = 7 * 7 * 256 * 1024 + 1024 * 1024 + 1024 * 21 + 1024 * 84  # 14,001,152
# Mask R-CNN's mask head per detection on a 14×14 RoI: four 3×3 convs 256->256, a 2×2 stride-2 transposed conv
# 256->256 (to 28×28), a 1×1 conv to 21 class masks.
MASK_HEAD_PER_DETECTION = 4 * 9 * 256 * 256 * 14 * 14 + 4 * 256 * 256 * 14 * 14 + 256 * 21 * 28 * 28  # 518,017,024


def test_faster_rcnn_macs_follow_the_proposal_count_exactly():
    from explorer.compose import analyze_spec

    a1000 = analyze_spec(_detector("faster_rcnn"), training_memory=False)
    a200 = analyze_spec(_detector("faster_rcnn", proposals=200), training_memory=False)
    assert BOX_HEAD_PER_PROPOSAL == 14_001_152
    assert a1000.macs - a200.macs == 800 * BOX_HEAD_PER_PROPOSAL == 11_200_921_600
    assert (a1000.macs, a200.macs) == (17_077_480_192, 5_876_558_592)
    fc6 = next(r for r in a200.layers if r.name == "head.roi_heads.box_head.fc6")
    assert fc6.macs == 200 * 7 * 7 * 256 * 1024
    assert a1000.notes[0] == ("MACs assume 1,000 proposals and 100 detections per image; set them in the head's "
                              "settings (a trained model keeps at most these, after NMS).")
    assert a200.notes[0].startswith("MACs assume 200 proposals and 100 detections per image;")


@pytest.mark.slow
def test_mask_rcnn_macs_follow_the_detection_count_exactly():
    from explorer.compose import analyze_spec

    a100 = analyze_spec(_detector("mask_rcnn"), training_memory=False)
    a50 = analyze_spec(_detector("mask_rcnn", detections=50), training_memory=False)
    assert a100.macs - a50.macs == 50 * MASK_HEAD_PER_DETECTION == 25_900_851_200
    assert a50.notes[0].startswith("MACs assume 1,000 proposals and 50 detections per image;")


def test_counts_are_settings_of_the_head_with_bounds():
    from explorer import components
    from explorer.spec import SpecError

    for head in ("faster_rcnn", "mask_rcnn"):
        settings = {s.name: s for s in components.get("head", head).settings}
        assert (settings["proposals"].default, settings["proposals"].low, settings["proposals"].high) == (1000, 1, 5000)
        assert (settings["detections"].default, settings["detections"].high) == (100, 1000)
        assert settings["proposals"].label == "Proposals per image"
    with pytest.raises(SpecError, match="proposals"):
        _detector("faster_rcnn", proposals=0)


@pytest.mark.slow
def test_more_proposals_than_anchors_are_topped_up_and_fewer_detections_are_said():
    from explorer.compose import analyze_spec
    from explorer.spec import ArchitectureSpec

    spec = ArchitectureSpec.from_dict({"task": "detection", "backbone": {"name": "resnet18"}, "neck": {"kind": "fpn"},
                                       "head": {"kind": "faster_rcnn", "proposals": 5000, "detections": 1000}})
    a = analyze_spec(spec, training_memory=False)
    fc6 = next(r for r in a.layers if r.name == "head.roi_heads.box_head.fc6")
    assert fc6.macs == 5000 * 7 * 7 * 256 * 1024  # topped up to the setting from the RPN's own boxes
    assert a.notes[0].startswith("MACs assume 5,000 proposals and 1,000 detections per image;")
    # One proposal gives at most 20 detections (one box per class): the note says so.
    a = analyze_spec(_detector("faster_rcnn", proposals=1, detections=100), training_memory=False)
    assert a.notes[0] == ("MACs assume 1 proposal and 20 detections per image (the settings ask for 1 and 100; "
                          "this input gives no more candidate boxes); set them in the head's settings (a trained "
                          "model keeps at most these, after NMS).")


# -- the Compose page: proposal-count settings, stage labels ----------------------------------------------------

def _compose_page(spec=None):
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=60)
    if spec is not None:
        at.query_params["spec"] = spec.to_url()
    at.run()
    assert not at.exception
    return at


@pytest.mark.slow  # a real CPU forward per count: `make test` runs it
def test_compose_page_sets_the_proposal_count_and_says_what_the_macs_assume():
    at = _compose_page(_detector("faster_rcnn"))
    box = next(n for n in at.number_input if n.label == "Proposals per image")
    assert box.value == 1000 and next(n for n in at.number_input if n.label == "Detections per image").value == 100
    assert any(i.value.startswith("MACs assume 1,000 proposals and 100 detections per image") for i in at.info)
    gmacs = next(m.value for m in at.metric if m.label == "GMACs per image")
    assert gmacs == "17.077"
    box.set_value(200).run()
    assert not at.exception
    assert any(i.value.startswith("MACs assume 200 proposals and 100 detections per image") for i in at.info)
    assert next(m.value for m in at.metric if m.label == "GMACs per image") == "5.877"  # 11.2 G = 800 box heads


def test_compose_stage_options_show_resolution_and_stride():
    at = _compose_page()  # resnet18 at 224
    outs = at.multiselect(key="compose.outs")
    assert "layer2 · 28×28 · stride 8" in outs.options and "layer4 · 7×7 · stride 32" in outs.options
    assert "conv1 · 112×112 · stride 2" in outs.options
    outs.set_value(["layer3", "layer4"]).run()  # stored values stay plain names
    assert not at.exception
    from explorer.spec import ArchitectureSpec

    assert ArchitectureSpec.from_url(at.query_params["spec"]).backbone.out_stages == ["layer3", "layer4"]
    frozen = at.multiselect(key="compose.frozen")
    assert "layer1 · 56×56 · stride 4" in frozen.options and "bn1" in frozen.options


def test_mobilenet_v2_fpn_defaults_are_three_strides():
    from explorer import compose
    from explorer.spec import ArchitectureSpec

    spec = ArchitectureSpec.from_dict({"task": "detection", "backbone": {"name": "mobilenet_v2"},
                                       "neck": {"kind": "fpn"}, "head": {"kind": "yolo"}})
    stages = {s.name: s for s in compose.backbone_stages(spec)}
    outs = compose.default_out_stages(spec)
    assert outs == ["features.6", "features.13", "features.18"]
    assert [stages[o].label for o in outs] == ["features.6 · 28×28 · stride 8", "features.13 · 14×14 · stride 16",
                                               "features.18 · 7×7 · stride 32"]
    # Before: features.16, .17, .18, all 7×7 at stride 32.
    assert [stages[n].stride for n in ("features.16", "features.17", "features.18")] == [32, 32, 32]
    resnet = ArchitectureSpec.from_dict({"task": "detection", "backbone": {"name": "resnet18"},
                                         "neck": {"kind": "fpn"}, "head": {"kind": "yolo"}})
    assert compose.default_out_stages(resnet) == ["layer2", "layer3", "layer4"]
    unet = ArchitectureSpec.from_dict({"task": "segmentation", "backbone": {"name": "mobilenet_v2"},
                                       "head": {"kind": "unet"}})
    assert compose.default_out_stages(unet) == ["features.3", "features.6", "features.13", "features.18"]


def test_raft_markdown_names_both_frames():
    a = analyze("raft_small", training_memory=False)
    assert a.to_markdown().startswith("**raft_small** at 3×512×512 and 3×512×512 (float32): ")


def test_raft_on_the_layers_page_waits_to_draw_its_324_node_diagram():
    """RAFT's forward repeats its update block twelve times: 324 nodes, which take tens of seconds to lay out.
    The page says so and draws it only when asked; the numbers are there at once."""
    at = _layers_page("raft_small")
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert {m.label: m.value for m in at.metric}["Parameters"] == "990,162"
    assert any("This diagram has 324 nodes (more than 200)" in i.value for i in at.info)
    assert not at.get("graphviz_chart")
    at.toggle(key="layers.diagram.big").set_value(True).run()
    assert len(at.get("graphviz_chart")) == 1
