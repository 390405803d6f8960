"""The classic architectures: shapes, exact parameter counts, meta-device construction."""

import pytest
import torch
import torchvision
from torch import nn

from conftest import n_params

from explorer.arithmetic import conv_params, fc_params
from explorer.models.classic import (
    CLASSIC_MODELS,
    PreActBasicBlock,
    PreActBottleneck,
    densenet264,
    gap_cnn,
    lenet5,
    mini_xception,
    mobilenet_v1,
    preact_resnet18,
    preact_resnet50,
    zfnet,
)

# Exact parameter counts at the default settings.
EXPECTED_PARAMS = {
    "lenet5": 61_706,
    "zfnet": 62_357_608,
    "mobilenet_v1": 4_231_976,
    "preact_resnet18": 11_687_720,
    "preact_resnet50": 25_549_352,
    "densenet264": 33_337_704,
    "mini_xception": 2_723_802,
    "gap_cnn": 24_058,
}

# DenseNet-264 at 224×224 takes seconds on CPU; any size ≥ 32 exercises every layer.
CPU_INPUT_OVERRIDE = {"densenet264": (3, 64, 64)}


def on_meta(builder, **kwargs) -> nn.Module:
    """Build without allocating or initialising real weights: enough for counts and structure, and fast."""
    with torch.device("meta"):
        return builder(**kwargs)


def test_registry_covers_exactly_the_builders():
    assert set(CLASSIC_MODELS) == set(EXPECTED_PARAMS)
    keys = {"builder", "family", "year", "paper", "input_size", "num_classes", "description"}
    for name, info in CLASSIC_MODELS.items():
        assert set(info) == keys, name
        assert callable(info["builder"])
        assert isinstance(info["year"], int) and isinstance(info["num_classes"], int)
        assert len(info["input_size"]) == 3
        assert info["description"] and "\n" not in info["description"]


def test_registry_metadata():
    assert CLASSIC_MODELS["lenet5"]["family"] == "LeNet"
    assert CLASSIC_MODELS["lenet5"]["year"] == 1998
    assert CLASSIC_MODELS["lenet5"]["paper"] == "Gradient-Based Learning Applied to Document Recognition"
    assert CLASSIC_MODELS["lenet5"]["input_size"] == (1, 32, 32)
    assert CLASSIC_MODELS["zfnet"]["family"] == "ZFNet"
    assert CLASSIC_MODELS["zfnet"]["year"] == 2013
    assert CLASSIC_MODELS["mobilenet_v1"]["paper"] == (
        "MobileNets: Efficient Convolutional Neural Networks for Mobile Vision Applications"
    )
    for name in ("preact_resnet18", "preact_resnet50"):
        assert CLASSIC_MODELS[name]["family"] == "ResNet v2"
        assert CLASSIC_MODELS[name]["year"] == 2016
    assert CLASSIC_MODELS["densenet264"]["paper"] == "Densely Connected Convolutional Networks"
    assert CLASSIC_MODELS["densenet264"]["year"] == 2016  # as the torchvision DenseNets
    x = CLASSIC_MODELS["mini_xception"]
    assert (x["family"], x["year"], x["input_size"], x["num_classes"]) == ("Xception", 2017, (3, 180, 180), 2)
    assert x["paper"] == "Xception: Deep Learning with Depthwise Separable Convolutions"


@pytest.mark.parametrize("name", sorted(CLASSIC_MODELS))
def test_forward_cpu_batch_of_two(name):
    info = CLASSIC_MODELS[name]
    model = info["builder"]().eval()
    size = CPU_INPUT_OVERRIDE.get(name, info["input_size"])
    with torch.no_grad():
        out = model(torch.randn(2, *size))
    assert out.shape == (2, info["num_classes"])
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", sorted(CLASSIC_MODELS))
def test_builds_and_runs_on_meta_with_exact_parameter_count(name):
    info = CLASSIC_MODELS[name]
    with torch.device("meta"):
        model = info["builder"]()
        out = model(torch.empty(2, *info["input_size"]))
    assert all(p.is_meta for p in model.parameters())
    assert out.is_meta and out.shape == (2, info["num_classes"])
    assert n_params(model) == EXPECTED_PARAMS[name]


def test_lenet5_parameters_by_slide_formulas():
    # C1 156 + C3 2,416 + C5 48,120 + F6 10,164 + output 850 = 61,706.
    expected = (
        conv_params(1, 6, 5) + conv_params(6, 16, 5) + conv_params(16, 120, 5)
        + fc_params(120, 84) + fc_params(84, 10)
    )
    assert expected == 61_706
    assert n_params(lenet5()) == 61_706


def test_lenet5_layout():
    model = lenet5()
    names = [n for n, _ in model.named_modules() if n.count(".") == 1]
    assert names == [
        "features.c1", "features.tanh1", "features.s2", "features.c3", "features.tanh3", "features.s4",
        "features.c5", "features.tanh5", "classifier.f6", "classifier.tanh6", "classifier.output",
    ]
    assert isinstance(model.features.s2, nn.AvgPool2d)
    assert model.features(torch.zeros(1, 1, 32, 32)).shape == (1, 120, 1, 1)


def test_gap_cnn_parameters_and_layout():
    # Three ConvBNReLU (3×3, no bias) + BN: 16·9 + 32 | 16·32·9 + 64 | 32·64·9 + 128; then fc 64·10 + 10.
    expected = (conv_params(1, 16, 3, bias=False) + 2 * 16 + conv_params(16, 32, 3, bias=False) + 2 * 32
                + conv_params(32, 64, 3, bias=False) + 2 * 64 + fc_params(64, 10))
    assert expected == 24_058 == n_params(gap_cnn())
    model = gap_cnn().eval()
    assert [n for n, _ in model.features.named_children()] == ["conv1", "pool1", "conv2", "pool2", "conv3"]
    assert model.features(torch.zeros(1, 1, 64, 64)).shape == (1, 64, 16, 16)
    assert isinstance(model.avgpool, nn.AdaptiveAvgPool2d) and model.fc.in_features == 64  # GAP, not flatten
    assert model(torch.zeros(2, 1, 96, 80)).shape == (2, 10)  # GAP takes any input size


def test_zfnet_feature_map_sizes_follow_the_paper():
    model = zfnet().eval()
    x = torch.zeros(1, 3, 224, 224)
    sizes = {}
    for name, layer in model.features.named_children():
        x = layer(x)
        sizes[name] = tuple(x.shape[1:])
    assert sizes["conv1"] == (96, 110, 110)
    assert sizes["pool1"] == (96, 55, 55)
    assert sizes["conv2"] == (256, 26, 26)
    assert sizes["pool2"] == (256, 13, 13)
    assert sizes["conv5"] == (256, 13, 13)
    assert sizes["pool5"] == (256, 6, 6)
    # LRN has no parameters, so switching it off keeps the count.
    assert n_params(on_meta(zfnet, local_response_norm=False)) == EXPECTED_PARAMS["zfnet"]


def test_mobilenet_v1_structure_and_width_multiplier():
    model = on_meta(mobilenet_v1)
    blocks = [m for n, m in model.features.named_children() if n.startswith("block")]
    assert len(blocks) == 13
    assert all(b.dw_conv.groups == b.dw_conv.in_channels for b in blocks)
    assert model.fc.in_features == 1024
    half = mobilenet_v1(num_classes=10, width_mult=0.5).eval()
    with torch.no_grad():
        assert half(torch.zeros(1, 3, 128, 128)).shape == (1, 10)
    assert half.fc.in_features == 512


def test_preact_resnet18_count_by_hand():
    # torchvision's ResNet-18 has 11,689,512 parameters. The pre-activation version has the same convs
    # and fc; only BatchNorm placement differs (2 parameters per BN channel):
    #   torchvision: post-activation bn1/bn2 on the block *output* channels, plus one BN per downsample.
    #   pre-act:     bn1 on the block *input* channels (none in layer1.0, whose input is the stem's
    #                BN-ReLU), bn2 on the middle channels, no BN in the shortcut, one final BN(512).
    #   channels removed: layer1.0 64, layer2.0 192, layer3.0 384, layer4.0 768 → 1,408;
    #   channels added: final BN 512 → net −896 channels = −1,792 parameters.
    tv = n_params(on_meta(torchvision.models.resnet18))
    assert tv == 11_689_512
    assert n_params(on_meta(preact_resnet18)) == tv - 2 * (1408 - 512) == 11_687_720


def test_preact_resnet50_count_by_hand():
    # Same bookkeeping for bottlenecks: BN channels removed per stage 512, 768, 1,536, 3,072 (5,888),
    # final BN adds 2,048 → net −3,840 channels = −7,680 parameters versus torchvision's 25,557,032.
    tv = n_params(on_meta(torchvision.models.resnet50))
    assert tv == 25_557_032
    assert n_params(on_meta(preact_resnet50)) == tv - 2 * (5888 - 2048) == 25_549_352


@pytest.mark.parametrize("builder", [preact_resnet18, preact_resnet50])
def test_preact_stage_names_match_torchvision(builder):
    tv = [n for n, _ in on_meta(torchvision.models.resnet18).named_children()]
    ours = [n for n, _ in on_meta(builder).named_children()]
    assert ours == tv[:-2] + ["bn", "final_relu"] + tv[-2:]
    assert ours[:8] == ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]


def test_preact_blocks():
    model = on_meta(preact_resnet50)
    first = model.layer1[0]
    assert isinstance(first, PreActBottleneck)
    assert isinstance(first.bn1, nn.Identity)  # the stem's BN-ReLU is its pre-activation
    assert isinstance(first.downsample, nn.Conv2d)  # 64 → 256 needs a projection
    assert model.layer2[0].conv2.stride == (2, 2)  # stride on the 3×3 (v1.5 placement)
    assert model.layer2[0].conv1.stride == (1, 1)
    assert isinstance(model.layer2[1].bn1, nn.BatchNorm2d) and model.layer2[1].downsample is None

    block = PreActBasicBlock(8, 16, stride=2).eval()
    assert block(torch.randn(2, 8, 10, 10)).shape == (2, 16, 5, 5)
    # The projection sees the pre-activated input: zeroing the residual convs leaves
    # downsample(relu(bn1(x))).
    with torch.no_grad():
        block.conv2.weight.zero_()
        x = torch.randn(2, 8, 10, 10)
        assert torch.allclose(block(x), block.downsample(torch.relu(block.bn1(x))))


def test_densenet264_layout():
    model = on_meta(densenet264, num_classes=5)
    assert isinstance(model, torchvision.models.DenseNet)
    dense_layers = [n for n, _ in model.features.named_children() if n.startswith("denseblock")]
    assert len(dense_layers) == 4
    assert len(model.features.denseblock3) == 64
    assert model.classifier.out_features == 5


def test_mini_xception_shapes():
    model = mini_xception().eval()
    x = torch.randn(2, 3, 180, 180)
    with torch.no_grad():
        assert model(x).shape == (2, 2)
        h = model.entry(x)
        assert h.shape == (2, 128, 90, 90)
        h = model.blocks(h)
        assert h.shape == (2, 728, 12, 12)  # 90 → 45 → 23 → 12, like Keras's padding="same"
    sep = model.exit.sep
    assert sep.depthwise.groups == 728 and sep.depthwise.bias is None
    assert sep.pointwise.kernel_size == (1, 1) and sep.pointwise.bias is not None
