"""The analysis engine against the lecture tables, torchvision's published metadata and gradient measurement."""
from __future__ import annotations

import json

import pytest
import torch
import torchvision
from torch import nn

from explorer import analyze, catalog
from explorer.analysis import GLOBAL, AnalysisError

from rf_measure import gradient_support, prepare

# LECTURES.md §4: VGG16 at 224×224×3 — (output C, H, W), activations, weights without biases.
VGG16_TABLE = [
    ("input", (3, 224, 224), 150_528, 0),
    ("features.0", (64, 224, 224), 3_211_264, 1_728),
    ("features.2", (64, 224, 224), 3_211_264, 36_864),
    ("features.4", (64, 112, 112), 802_816, 0),
    ("features.5", (128, 112, 112), 1_605_632, 73_728),
    ("features.7", (128, 112, 112), 1_605_632, 147_456),
    ("features.9", (128, 56, 56), 401_408, 0),
    ("features.10", (256, 56, 56), 802_816, 294_912),
    ("features.12", (256, 56, 56), 802_816, 589_824),
    ("features.14", (256, 56, 56), 802_816, 589_824),
    ("features.16", (256, 28, 28), 200_704, 0),
    ("features.17", (512, 28, 28), 401_408, 1_179_648),
    ("features.19", (512, 28, 28), 401_408, 2_359_296),
    ("features.21", (512, 28, 28), 401_408, 2_359_296),
    ("features.23", (512, 14, 14), 100_352, 0),
    ("features.24", (512, 14, 14), 100_352, 2_359_296),
    ("features.26", (512, 14, 14), 100_352, 2_359_296),
    ("features.28", (512, 14, 14), 100_352, 2_359_296),
    ("features.30", (512, 7, 7), 25_088, 0),
    ("classifier.0", (4096,), 4_096, 102_760_448),
    ("classifier.3", (4096,), 4_096, 16_777_216),
    ("classifier.6", (1000,), 1_000, 4_096_000),
]


@pytest.fixture(scope="module")
def vgg16():
    return analyze("vgg16", (3, 224, 224))


def test_vgg16_rows_match_the_lecture_table(vgg16):
    for name, shape, acts, weights in VGG16_TABLE:
        row = vgg16.layer(name)
        assert row.output_shape == shape, name
        assert row.activations == acts, name
        assert row.weights == weights, name
        assert row.counted, name
    counted = [r.name for r in vgg16.layers if r.counted]
    assert counted == [name for name, *_ in VGG16_TABLE]  # ReLU, dropout and the 7→7 adaptive pool are not


def test_vgg16_totals(vgg16):
    assert vgg16.activations == 15_237_608
    assert vgg16.activation_bytes == 60_950_432  # 60.95 MB in fp32, not the slide's "24M × 4 bytes ≈ 96 MB"
    assert vgg16.params == 138_357_544
    assert vgg16.weights_total == 138_344_128
    assert vgg16.biases_total == 13_416
    assert vgg16.trainable_params == 138_357_544
    assert vgg16.weight_bytes == 138_357_544 * 4
    assert vgg16.flops == 2 * vgg16.macs
    assert round(vgg16.macs / 1e9, 3) == 15.47
    assert sum(r.macs for r in vgg16.layers) == vgg16.macs
    assert sum(r.params for r in vgg16.layers) == vgg16.params


RESNET_RF = {  # LECTURES.md §4
    "resnet18": [7, 11, 43, 99, 211, 435],
    "resnet34": [7, 11, 59, 179, 547, 899],
    "resnet50": [7, 11, 35, 91, 267, 427],
    "resnet101": [7, 11, 35, 91, 811, 971],
}


@pytest.mark.parametrize("name", sorted(RESNET_RF))
def test_resnet_receptive_field_table(name):
    a = analyze(name, (3, 224, 224), training_memory=False)
    stages = ["conv1", "maxpool", "layer1", "layer2", "layer3", "layer4"]
    assert [a.receptive_field(s) for s in stages] == [(r, r) for r in RESNET_RF[name]]
    # Global pooling makes the field global; the convolutional-path field stays visible beside it.
    assert a.receptive_field("avgpool") == GLOBAL
    assert a.local_receptive_field("avgpool") == (RESNET_RF[name][-1],) * 2
    assert a.layer("layer4.1.conv2" if name in ("resnet18", "resnet34") else "layer4.2.conv3").jump == (32, 32)


TORCHVISION = catalog.names("torchvision")


def test_catalog_has_every_torchvision_classification_model():
    expected = torchvision.models.list_models(module=torchvision.models)
    assert len(expected) == 80
    assert TORCHVISION == sorted(expected)


@pytest.mark.parametrize("name", TORCHVISION)
def test_params_and_gmacs_equal_torchvision_metadata(name):
    info = catalog.info(name)
    a = analyze(name, training_memory=False)
    assert a.input_shape == info.input_size
    assert round(a.macs / 1e9, 3) == info.gmacs
    assert not a.uncounted_ops, a.uncounted_ops
    if name == "inception_v3":
        # The published count includes the auxiliary classifier, which the catalog leaves out by default.
        aux = analyze(name, training_memory=False, aux_logits=True)
        assert aux.params == info.num_params == 27_161_264
        assert a.params == 23_834_568
        assert round(aux.macs / 1e9, 3) == info.gmacs  # the aux head does not run at inference
        assert any("AuxLogits" in n and "did not run" in n for n in aux.notes)
    else:
        assert a.params == info.num_params


# Gradient support of the centre unit equals the analytic field exactly (both ends, in pixels).
RF_CASES = [
    ("resnet18", "layer4", 480, False),
    pytest.param("vgg16", "features.30", 224, False, marks=pytest.mark.slow),  # 8 s: `make test` only
    ("densenet121", "features.transition1", 128, False),
    ("googlenet", "inception3a", 128, False),
    ("mobilenet_v2", "features.10", 256, False),  # ReLU6 would saturate: replaced
    ("convnext_tiny", "features.3", 320, False),  # layer scale 1e-6 would underflow: set to 1
    ("efficientnet_b0", "features.3", 256, True),  # conv path, with the SE gates removed
]


@pytest.mark.parametrize("name,node,size,remove_se", RF_CASES)
def test_analytic_field_equals_gradient_support(name, node, size, remove_se):
    a = analyze(name, (3, size, size), training_memory=False)
    m = a.modules[node]
    (r0, r1), (c0, c1), (i, j) = gradient_support(prepare(catalog.build(name), remove_se), node, size)
    rf_h, rf_w = m["rf"]
    centre_h = m["offset"][0] + i * m["jump"][0]
    centre_w = m["offset"][1] + j * m["jump"][1]
    assert 0 < centre_h - (rf_h - 1) / 2 and centre_h + (rf_h - 1) / 2 < size - 1, "field must fit the input"
    assert (r0, r1) == (centre_h - (rf_h - 1) / 2, centre_h + (rf_h - 1) / 2)
    assert (c0, c1) == (centre_w - (rf_w - 1) / 2, centre_w + (rf_w - 1) / 2)


def test_se_network_reports_global_field_with_conv_path_beside_it():
    a = analyze("efficientnet_b0", training_memory=False)
    assert a.receptive_field("features.1") == GLOBAL  # the first block has an SE gate
    assert a.receptive_field("features.0") == (3, 3)  # the stem conv is still local
    assert a.local_receptive_field("features.3") == (67, 67)
    assert a.local_receptive_field("features") == (851, 851)
    assert a.receptive_field("features") == GLOBAL


def test_tied_parameter_counts_once_and_frozen_shows_frozen():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Linear(16, 32, bias=False)
            self.backbone = nn.Sequential(nn.Linear(32, 32), nn.ReLU())
            self.out = nn.Linear(32, 16, bias=False)
            self.out.weight = nn.Parameter(self.embed.weight.T.contiguous())
            self.decode = nn.Linear(32, 16, bias=False)
            self.decode.weight = self.out.weight  # tied

        def forward(self, x):
            h = self.backbone(self.embed(x))
            return self.out(h) + self.decode(h)

    m = Tied()
    for p in m.backbone.parameters():
        p.requires_grad_(False)
    a = analyze(m, (16,))
    assert a.params == 16 * 32 + (32 * 32 + 32) + 32 * 16
    assert a.frozen_params == 32 * 32 + 32
    assert a.trainable_params == a.params - a.frozen_params
    assert a.layer("backbone.0").frozen == 32 * 32 + 32 and a.layer("backbone.0").trainable == 0
    assert a.layer("out").weights == 512 and a.layer("decode").weights == 0  # counted at its first use
    assert a.macs == 16 * 32 + 32 * 32 + 2 * 32 * 16
    assert m.out.weight.device.type == "cpu"  # the caller's model is untouched


def test_frozen_backbone_stage_roll_up():
    m = catalog.build("resnet18")
    for name, p in m.named_parameters():
        if not name.startswith("fc."):
            p.requires_grad_(False)
    a = analyze(m, (3, 224, 224))
    stages = {s.name: s for s in a.stages()}
    assert stages["layer4"].frozen == stages["layer4"].params > 0 and stages["layer4"].trainable == 0
    assert stages["fc"].trainable == 512 * 1000 + 1000
    assert a.trainable_params == 513_000


def test_stages_roll_up_to_the_totals():
    a = analyze("resnet50")
    stages = a.stages()
    assert [s.name for s in stages] == ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3",
                                        "layer4", "avgpool", "fc"]
    assert sum(s.params for s in stages) == a.params == 25_557_032
    assert sum(s.macs for s in stages) == a.macs
    assert stages[7].output_shape == (2048, 7, 7)
    assert stages[7].rf == (427, 427)
    blocks = a.stages(depth=2)
    assert "layer3.5" in [b.name for b in blocks]


def test_cpu_attention_kernels_are_counted():
    meta = analyze("vit_b_16", training_memory=False)
    cpu = analyze("vit_b_16", device="cpu", training_memory=False)  # runs aten._native_multi_head_attention
    assert cpu.macs == meta.macs
    assert round(cpu.macs / 1e9, 3) == catalog.info("vit_b_16").gmacs


def test_ops_without_a_formula_are_listed_not_silently_zero():
    class Distances(nn.Module):
        def forward(self, x):
            return torch.cdist(x, x)

    a = analyze(Distances(), (8, 4))
    assert a.macs == 0
    assert any("cdist" in op for op in a.uncounted_ops)
    assert any("no MAC formula" in n and "cdist" in n for n in a.notes)


def test_falls_back_to_a_real_forward_where_meta_cannot_run():
    @torch.library.custom_op("explorer_test::twice", mutates_args=())
    def twice(x: torch.Tensor) -> torch.Tensor:  # no meta kernel registered
        return x * 2

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return twice(self.conv(x))

    a = analyze(Net(), (3, 10, 10))
    assert a.device == "cpu"
    assert any("meta" in n and "real forward" in n for n in a.notes)
    assert a.macs == 3 * 9 * 4 * 8 * 8
    assert a.params == 3 * 9 * 4 + 4


def test_training_memory_is_what_autograd_saves():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.ReLU())
    a = analyze(net, (3, 8, 8))
    # conv2d saves its input (3·8·8 floats), ReLU its output (8·6·6 floats); the weight is not activation memory.
    assert a.training_bytes == (3 * 8 * 8 + 8 * 6 * 6) * 4


def test_training_memory_on_meta_equals_a_real_measurement():
    from explorer.analysis.trace import SavedTensorMeter

    model = catalog.build("resnet18").train()
    meter = SavedTensorMeter(model)
    with torch.autograd.graph.saved_tensors_hooks(meter.pack, meter.unpack):
        model(torch.randn(1, 3, 64, 64))
    assert analyze("resnet18", (3, 64, 64)).training_bytes == meter.total > 0


def test_dtype_scales_bytes():
    a32 = analyze("resnet18", (3, 224, 224))
    a16 = analyze("resnet18", (3, 224, 224), dtype=torch.float16)
    assert a16.activations == a32.activations
    assert 2 * a16.activation_bytes == a32.activation_bytes
    assert 2 * a16.weight_bytes == a32.weight_bytes
    assert a16.dtype == "float16"


def test_impossible_input_names_the_smallest_that_works():
    with pytest.raises(AnalysisError) as e:
        analyze("vgg16", (3, 16, 16))
    assert "vgg16 cannot take a 3×16×16 input" in str(e.value)
    assert "smallest square input that works is 3×32×32" in str(e.value)
    with pytest.raises(AnalysisError, match="smallest square input that works is 1×32×32"):
        analyze("lenet5", (1, 31, 31))


def test_exports_agree_with_the_table(vgg16):
    df = vgg16.to_frame()
    assert len(df) == len(vgg16.layers)
    assert df["activations"][df["counted"]].sum() == 15_237_608
    assert df[["weights", "biases"]].to_numpy().sum() == 138_357_544
    assert vgg16.to_frame(biases=False)["params"].sum() == 138_344_128
    csv = vgg16.to_csv().splitlines()
    assert csv[0].startswith("layer,kind,output,activations")
    assert csv[2].startswith("features.0,Conv2d,64×224×224,3211264")
    md = vgg16.to_markdown()
    assert "138,357,544 parameters" in md and "| features.0 " in md and "102,760,448" in md
    data = json.loads(vgg16.to_json())
    assert data["totals"]["activations"] == 15_237_608
    assert data["layers"][1]["output_shape"] == [64, 224, 224]
    assert data["layers"][-1]["rf"] == [212, 212] and data["layers"][-1]["is_global"] is True


def test_analysis_leaves_a_shared_model_untouched():
    model = catalog.build("resnet18")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    a = analyze(model, (3, 64, 64))
    assert a.params == 11_689_512
    assert not model._forward_hooks and not model._forward_pre_hooks and "forward" not in model.__dict__
    for k, v in model.state_dict().items():
        assert v.device.type == "cpu" and torch.equal(v, before[k])


def test_transformer_at_a_size_it_cannot_take_is_a_sentence():
    with pytest.raises(AnalysisError, match="vit_b_16 cannot take a 3×240×240 input"):
        analyze("vit_b_16", (3, 240, 240))
