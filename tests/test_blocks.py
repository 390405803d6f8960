"""The lecture building blocks: closed-form parameter counts, shapes, attention gates, the factory, the backbone."""

import dataclasses
from collections import OrderedDict

import pytest
import torch
import torchvision
from torch import nn

from conftest import n_params

from explorer.blocks import (
    BLOCK_INFO,
    BLOCK_KINDS,
    CBAM,
    BasicBlock,
    Bottleneck,
    ChannelAttention,
    ConvBNReLU,
    ConvNeXtBlock,
    CustomBackbone,
    DenseBlock,
    DepthwiseSeparable,
    InceptionModule,
    InvertedResidual,
    PreActBlock,
    ShuffleUnit,
    SpatialAttention,
    SqueezeExcitation,
    Transition,
    VGGStage,
    inception_widths,
    make_block,
    make_stage,
)
from explorer.models import classic


# The lecture formulas. conv: (C_in·k·k/groups + bias)·C_out; BN and LayerNorm: 2·C; FC: (C_in + 1)·C_out.
def conv(c_in: int, c_out: int, k: int, groups: int = 1, bias: bool = False) -> int:
    return (c_in * k * k // groups + int(bias)) * c_out


def bn(c: int) -> int:
    return 2 * c


def fc(c_in: int, c_out: int) -> int:
    return (c_in + 1) * c_out


def on_meta(factory, *args, **kwargs) -> nn.Module:
    with torch.device("meta"):
        return factory(*args, **kwargs)


# --------------------------------------------------------------------------------------------------
# Parameter counts in closed form, two sizes per block
# --------------------------------------------------------------------------------------------------


def test_conv_bn_relu_params():
    assert n_params(ConvBNReLU(3, 32, 3, stride=2)) == conv(3, 32, 3) + bn(32) == 928
    assert n_params(ConvBNReLU(64, 128, 1, bias=True)) == conv(64, 128, 1, bias=True) + bn(128)


def test_vgg_stage_params():
    # VGG16's first stage (38,720 with biases, as in the lecture table: 1,728 + 36,864 weights + 128 biases).
    assert n_params(VGGStage(3, 64)) == conv(3, 64, 3, bias=True) + conv(64, 64, 3, bias=True) == 38_720
    assert n_params(VGGStage(64, 128, num_convs=3, batch_norm=True)) == (
        conv(64, 128, 3, bias=True) + bn(128) + 2 * (conv(128, 128, 3, bias=True) + bn(128))
    )


def test_basic_block_params():
    identity = conv(64, 64, 3) + bn(64) + conv(64, 64, 3) + bn(64)
    assert n_params(BasicBlock(64, 64, 1)) == identity == 73_984
    projection = conv(64, 128, 3) + bn(128) + conv(128, 128, 3) + bn(128) + conv(64, 128, 1) + bn(128)
    assert n_params(BasicBlock(64, 128, 2)) == projection == 230_144
    # The same as torchvision's resnet18 blocks.
    tv = on_meta(torchvision.models.resnet18)
    assert (n_params(tv.layer1[0]), n_params(tv.layer2[0])) == (identity, projection)


def test_bottleneck_params():
    # out_channels is the block output; the middle is a quarter of it.
    first = (conv(64, 64, 1) + bn(64) + conv(64, 64, 3) + bn(64) + conv(64, 256, 1) + bn(256)
             + conv(64, 256, 1) + bn(256))
    assert n_params(Bottleneck(64, 256, 1)) == first == 75_008
    down = (conv(256, 128, 1) + bn(128) + conv(128, 128, 3) + bn(128) + conv(128, 512, 1) + bn(512)
            + conv(256, 512, 1) + bn(512))
    assert n_params(Bottleneck(256, 512, 2)) == down
    tv = on_meta(torchvision.models.resnet50)
    assert (n_params(tv.layer1[0]), n_params(tv.layer2[0])) == (first, down)
    assert Bottleneck(256, 512, 2).conv2.stride == (2, 2)  # stride on the 3×3 (v1.5)


def test_preact_block_params():
    assert n_params(PreActBlock(64, 64, 1)) == bn(64) + conv(64, 64, 3) + bn(64) + conv(64, 64, 3)
    # Projection: a plain 1×1 conv on the pre-activated input, no BN.
    assert n_params(PreActBlock(64, 128, 2)) == (
        bn(64) + conv(64, 128, 3) + bn(128) + conv(128, 128, 3) + conv(64, 128, 1)
    )
    assert n_params(PreActBlock(64, 64, 1, preact=False)) == conv(64, 64, 3) + bn(64) + conv(64, 64, 3)


def test_depthwise_separable_params():
    assert n_params(DepthwiseSeparable(32, 64, 1)) == conv(32, 32, 3, groups=32) + bn(32) + conv(32, 64, 1) + bn(64)
    assert n_params(DepthwiseSeparable(512, 1024, 2)) == (
        conv(512, 512, 3, groups=512) + bn(512) + conv(512, 1024, 1) + bn(1024)
    )


def test_inverted_residual_params():
    hidden = 16 * 6
    down = (conv(16, hidden, 1) + bn(hidden) + conv(hidden, hidden, 3, groups=hidden) + bn(hidden)
            + conv(hidden, 24, 1) + bn(24))
    assert n_params(InvertedResidual(16, 24, 2)) == down
    hidden = 24 * 6
    keep = (conv(24, hidden, 1) + bn(hidden) + conv(hidden, hidden, 3, groups=hidden) + bn(hidden)
            + conv(hidden, 24, 1) + bn(24))
    assert n_params(InvertedResidual(24, 24, 1)) == keep
    no_expand = conv(32, 32, 3, groups=32) + bn(32) + conv(32, 16, 1) + bn(16)  # t = 1: no expansion conv
    assert n_params(InvertedResidual(32, 16, 1, expand_ratio=1)) == no_expand
    tv = on_meta(torchvision.models.mobilenet_v2).features
    assert [n_params(tv[i]) for i in (1, 2, 3)] == [no_expand, down, keep]


def test_shuffle_unit_params():
    # Stride 1, residual add: bottleneck 240 // 4 = 60, groups 2 on both 1×1 convs.
    assert n_params(ShuffleUnit(240, 240, 1)) == (
        conv(240, 60, 1, groups=2) + bn(60) + conv(60, 60, 3, groups=60) + bn(60) + conv(60, 240, 1, groups=2) + bn(240)
    )
    # Stride 2, concat: the branch makes 128 − 64 = 64 channels; bottleneck 128 // 4 = 32.
    assert n_params(ShuffleUnit(64, 128, 2)) == (
        conv(64, 32, 1, groups=2) + bn(32) + conv(32, 32, 3, groups=32) + bn(32) + conv(32, 64, 1, groups=2) + bn(64)
    )
    # groups 2 does not divide 3 input channels → falls back to 1; branch 24 − 3 = 21, bottleneck 6.
    unit = ShuffleUnit(3, 24, 2)
    assert unit.groups == 1
    assert n_params(unit) == conv(3, 6, 1) + bn(6) + conv(6, 6, 3, groups=6) + bn(6) + conv(6, 21, 1) + bn(21)
    # Stride 1 with a channel change: add with a 1×1 + BN projection shortcut.
    assert n_params(ShuffleUnit(32, 64, 1)) == (
        conv(32, 16, 1, groups=2) + bn(16) + conv(16, 16, 3, groups=16) + bn(16) + conv(16, 64, 1, groups=2) + bn(64)
        + conv(32, 64, 1) + bn(64)
    )


def test_inception_module_params():
    three_a = (conv(192, 64, 1) + bn(64)
               + conv(192, 96, 1) + bn(96) + conv(96, 128, 3) + bn(128)
               + conv(192, 16, 1) + bn(16) + conv(16, 32, 5) + bn(32)
               + conv(192, 32, 1) + bn(32))
    assert n_params(InceptionModule(192, 64, 96, 128, 16, 32, 32)) == three_a
    three_b = (conv(256, 128, 1) + bn(128)
               + conv(256, 128, 1) + bn(128) + conv(128, 192, 3) + bn(192)
               + conv(256, 32, 1) + bn(32) + conv(32, 96, 5) + bn(96)
               + conv(256, 64, 1) + bn(64))
    assert n_params(InceptionModule(256, 128, 128, 192, 32, 96, 64)) == three_b


def test_dense_block_params():
    # Layer i sees 64 + 32·i channels: BN, 1×1 to 4·32 = 128, BN, 3×3 to 32.
    expected = sum(bn(64 + 32 * i) + conv(64 + 32 * i, 128, 1) + bn(128) + conv(128, 32, 3) for i in range(6))
    assert n_params(DenseBlock(64, 6, 32)) == expected
    assert n_params(on_meta(torchvision.models.densenet121).features.denseblock1) == expected
    small = sum(bn(16 + 8 * i) + conv(16 + 8 * i, 16, 1) + bn(16) + conv(16, 8, 3) for i in range(3))
    assert n_params(DenseBlock(16, 3, 8, bn_size=2)) == small


def test_transition_params():
    assert n_params(Transition(256, 128)) == bn(256) + conv(256, 128, 1)
    assert n_params(on_meta(torchvision.models.densenet121).features.transition1) == bn(256) + conv(256, 128, 1)
    assert n_params(Transition(40, 24, stride=1)) == bn(40) + conv(40, 24, 1)


def test_convnext_block_params():
    def closed_form(c):
        # depthwise 7×7 with bias, LayerNorm, 1×1 expand ×4 and project (FCs with bias), layer scale.
        return conv(c, c, 7, groups=c, bias=True) + bn(c) + fc(c, 4 * c) + fc(4 * c, c) + c

    assert n_params(ConvNeXtBlock(96)) == closed_form(96)
    assert n_params(ConvNeXtBlock(192)) == closed_form(192)
    assert n_params(on_meta(torchvision.models.convnext_tiny).features[1][0]) == closed_form(96)


def test_squeeze_excitation_params():
    assert n_params(SqueezeExcitation(64)) == conv(64, 4, 1, bias=True) + conv(4, 64, 1, bias=True)
    assert n_params(SqueezeExcitation(256, reduction=8)) == conv(256, 32, 1, bias=True) + conv(32, 256, 1, bias=True)
    assert n_params(SqueezeExcitation(8)) == conv(8, 1, 1, bias=True) + conv(1, 8, 1, bias=True)  # at least 1 unit


def test_cbam_params():
    assert n_params(CBAM(64)) == conv(64, 4, 1, bias=True) + conv(4, 64, 1, bias=True) + conv(2, 1, 7, bias=True)
    assert n_params(CBAM(32, reduction=8, kernel_size=3)) == (
        conv(32, 4, 1, bias=True) + conv(4, 32, 1, bias=True) + conv(2, 1, 3, bias=True)
    )


def test_spatial_attention_params():
    assert n_params(SpatialAttention()) == conv(2, 1, 7, bias=True) == 99
    assert n_params(SpatialAttention(3)) == conv(2, 1, 3, bias=True) == 19
    with pytest.raises(ValueError, match="odd"):
        SpatialAttention(4)


# --------------------------------------------------------------------------------------------------
# Shapes and channel arithmetic
# --------------------------------------------------------------------------------------------------


def test_inception_lecture_example():
    module = InceptionModule(192, 64, 96, 128, 16, 32, 32).eval()
    assert module.out_channels == 256
    with torch.no_grad():
        assert module(torch.randn(1, 192, 28, 28)).shape == (1, 256, 28, 28)
    assert inception_widths(256) == (64, 96, 128, 16, 32, 32)  # the factory reproduces (3a)
    assert all(sum(inception_widths(c)[i] for i in (0, 2, 4, 5)) == c for c in (4, 5, 7, 24, 100, 728))


def test_dense_block_channel_arithmetic():
    block = DenseBlock(24, 4, 12).eval()
    assert block.out_channels == 24 + 4 * 12
    with torch.no_grad():
        assert block(torch.randn(2, 24, 9, 9)).shape == (2, 72, 9, 9)
    # Layer i receives every earlier output: 24, 36, 48, 60 input channels.
    assert [layer.conv1.in_channels for layer in block.children()] == [24, 36, 48, 60]
    # A transition halves the resolution.
    assert Transition(72, 36)(torch.randn(2, 72, 8, 8)).shape == (2, 36, 4, 4)


def test_residual_blocks_add_the_input():
    # Zero the last BN scale: F(x) = 0, so the block returns ReLU(x) (basic / bottleneck) or x (pre-act).
    x = torch.randn(2, 16, 8, 8)
    for block, last_bn, expect in (
        (BasicBlock(16, 16), "bn2", torch.relu(x)),
        (Bottleneck(16, 16), "bn3", torch.relu(x)),
    ):
        block.eval()
        with torch.no_grad():
            getattr(block, last_bn).weight.zero_()
            getattr(block, last_bn).bias.zero_()
            assert torch.allclose(block(x), expect)
    pre = PreActBlock(16, 16).eval()
    with torch.no_grad():
        pre.conv2.weight.zero_()
        assert torch.allclose(pre(x), x)


def test_inverted_residual_shortcut_rule():
    assert InvertedResidual(24, 24, 1).use_res_connect
    assert not InvertedResidual(24, 24, 2).use_res_connect
    assert not InvertedResidual(16, 24, 1).use_res_connect


def test_channel_shuffle_interleaves_groups():
    unit = ShuffleUnit(8, 8, 1, groups=2)
    x = torch.arange(8.0).view(1, 8, 1, 1)
    assert unit.shuffle(x).flatten().tolist() == [0, 4, 1, 5, 2, 6, 3, 7]
    assert ShuffleUnit(64, 128, 2).combine == "concat" and ShuffleUnit(64, 32, 2).combine == "add"


# --------------------------------------------------------------------------------------------------
# Attention gates, exposed without hooks
# --------------------------------------------------------------------------------------------------


def test_attention_shapes_and_forward_uses_them():
    torch.manual_seed(0)
    x = torch.randn(2, 32, 10, 12)
    se = SqueezeExcitation(32).eval()
    gate = se.attention(x)
    assert gate.shape == (2, 32, 1, 1) and ((gate > 0) & (gate < 1)).all()
    assert torch.allclose(se(x), x * gate)

    channel_attention = ChannelAttention(32)
    assert channel_attention.attention(x).shape == (2, 32, 1, 1)
    assert torch.allclose(channel_attention(x), x * channel_attention.attention(x))

    spatial = SpatialAttention()
    assert spatial.attention(x).shape == (2, 1, 10, 12)
    assert torch.allclose(spatial(x), x * spatial.attention(x))

    cbam = CBAM(32)
    channel, spatial_map = cbam.attention(x)
    assert channel.shape == (2, 32, 1, 1) and spatial_map.shape == (2, 1, 10, 12)
    assert torch.allclose(cbam(x), x * channel * spatial_map)
    # The spatial map is computed on the channel-refined features.
    assert torch.allclose(spatial_map, cbam.spatial.attention(x * channel))


def test_attention_on_meta():
    with torch.device("meta"):
        x = torch.empty(2, 16, 8, 8)
        cbam = CBAM(16)
        channel, spatial = cbam.attention(x)
        assert channel.shape == (2, 16, 1, 1) and spatial.shape == (2, 1, 8, 8)
        assert SqueezeExcitation(16).attention(x).shape == (2, 16, 1, 1)
        assert cbam(x).is_meta


# --------------------------------------------------------------------------------------------------
# make_block / make_stage
# --------------------------------------------------------------------------------------------------


def test_block_kinds_and_info():
    assert BLOCK_KINDS == ("conv", "vgg", "vgg_plain", "residual", "bottleneck", "preact", "separable",
                           "inverted_residual",
                           "shuffle", "inception", "dense", "convnext", "se", "cbam")
    assert set(BLOCK_INFO) == set(BLOCK_KINDS)
    for kind, info in BLOCK_INFO.items():
        assert set(info) == {"paper", "year", "description"}, kind
        assert isinstance(info["year"], int) and 2010 <= info["year"] <= 2025
        assert info["paper"] and info["description"] and "\n" not in info["description"]
    assert BLOCK_INFO["se"] == BLOCK_INFO["se"] | {"paper": "Squeeze-and-Excitation Networks", "year": 2018}


@pytest.mark.parametrize("kind", BLOCK_KINDS)
def test_make_block_shapes(kind):
    for stride in (1, 2):
        for c_in, c_out in ((8, 16), (32, 24), (16, 16)):
            block = make_block(kind, c_in, c_out, stride).eval()
            with torch.no_grad():
                y = block(torch.randn(2, c_in, 32, 32))
            assert y.shape == (2, c_out, 32 // stride, 32 // stride), (kind, stride, c_in, c_out)
            assert torch.isfinite(y).all()


@pytest.mark.parametrize("kind", BLOCK_KINDS)
def test_make_block_on_meta_keeps_no_per_call_state(kind):
    with torch.device("meta"):
        block = make_block(kind, 16, 32, 2)
        before = {name: dict(vars(m)) for name, m in block.named_modules()}
        y = block(torch.empty(2, 16, 32, 32))
    assert y.is_meta and y.shape == (2, 32, 16, 16)
    assert all(p.is_meta for p in block.parameters())
    after = {name: dict(vars(m)) for name, m in block.named_modules()}
    assert before.keys() == after.keys()
    for name in before:  # no attribute added or rebound by forward
        assert before[name].keys() == after[name].keys(), name
        assert all(before[name][k] is after[name][k] for k in before[name]), name


def test_make_block_compositions():
    assert isinstance(make_block("residual", 8, 8, 1), BasicBlock)
    se = make_block("se", 8, 16, 2)
    assert isinstance(se.conv, ConvBNReLU) and isinstance(se.se, SqueezeExcitation)
    assert isinstance(make_block("cbam", 8, 16, 1).cbam, CBAM)
    assert isinstance(make_block("inception", 8, 16, 1), InceptionModule)
    assert isinstance(make_block("inception", 8, 16, 2).pool, nn.MaxPool2d)
    dense = make_block("dense", 16, 32, 2)
    assert dense.dense.out_channels == 16 + 4 * 8 and isinstance(dense.transition.pool, nn.AvgPool2d)
    convnext = make_block("convnext", 16, 32, 2)
    assert convnext.downsample.conv.kernel_size == (2, 2) and convnext.downsample.conv.stride == (2, 2)
    assert convnext.downsample.conv.out_channels == 32
    assert make_block("convnext", 16, 32, 1).downsample.conv.kernel_size == (1, 1)
    assert [n for n, _ in make_block("convnext", 16, 16, 1).named_children()] == ["block"]
    assert not hasattr(make_block("vgg", 8, 8, 1), "pool") and hasattr(make_block("vgg", 8, 8, 2), "pool")


def test_make_block_errors():
    with pytest.raises(ValueError, match="Unknown block kind 'resnet'"):
        make_block("resnet", 8, 8, 1)
    with pytest.raises(ValueError, match="stride must be 1 or 2"):
        make_block("conv", 8, 8, 3)
    with pytest.raises(ValueError, match="out_channels"):
        make_block("conv", 8, 0, 1)
    with pytest.raises(ValueError, match="at least 4"):
        make_block("inception", 8, 3, 1)
    with pytest.raises(ValueError, match="repeats"):
        make_stage("conv", 8, 8, 0, 1)


def test_make_stage():
    stage = make_stage("bottleneck", 64, 256, 3, 2)
    assert isinstance(stage, nn.Sequential) and len(stage) == 3
    assert stage[0].conv2.stride == (2, 2) and stage[0].downsample is not None
    assert all(b.conv2.stride == (1, 1) and b.downsample is None for b in stage[1:])
    assert stage(torch.randn(1, 64, 16, 16)).shape == (1, 256, 8, 8)


# --------------------------------------------------------------------------------------------------
# CustomBackbone
# --------------------------------------------------------------------------------------------------

XCEPTION_LIKE = [
    dict(block="separable", repeats=r, width=w, stride=2) for r, w in ((1, 64), (2, 128), (2, 256), (1, 728))
]


def test_custom_backbone_xception_like():
    model = CustomBackbone(XCEPTION_LIKE, in_channels=3).eval()
    names = ["stem", "stage1", "stage2", "stage3", "stage4"]
    assert model.stage_names == names
    assert model.stage_channels == dict(stem=32, stage1=64, stage2=128, stage3=256, stage4=728)
    assert model.stage_strides == dict(stem=2, stage1=4, stage2=8, stage3=16, stage4=32)
    assert [n for n, _ in model.named_children()] == names
    assert model.stem.conv.stride == (2, 2) and model.stem.conv.out_channels == 32  # 64 // 2
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64))
    assert isinstance(out, OrderedDict) and list(out) == names
    for name, y in out.items():
        s = model.stage_strides[name]
        assert y.shape == (2, model.stage_channels[name], 64 // s, 64 // s), name


def test_custom_backbone_mixed_kinds_on_meta():
    stages = [
        dict(block=kind, repeats=1 + i % 2, width=16 + 8 * i, stride=1 + i % 2) for i, kind in enumerate(BLOCK_KINDS)
    ]
    stages[0]["stride"] = 2
    with torch.device("meta"):
        model = CustomBackbone(stages, in_channels=1)
        out = model(torch.empty(1, 1, 2**12, 2**9))  # big enough for every stride-2 stage
    assert all(p.is_meta for p in model.parameters())
    assert list(out) == model.stage_names == ["stem"] + [f"stage{i}" for i in range(1, len(BLOCK_KINDS) + 1)]
    for name, y in out.items():
        s = model.stage_strides[name]
        assert y.is_meta and y.shape == (1, model.stage_channels[name], 2**12 // s, 2**9 // s), name
    assert model.stage_channels["stem"] == 8  # 16 // 2


def test_custom_backbone_accepts_dataclass_stages_and_small_widths():
    @dataclasses.dataclass
    class Stage:
        block: str
        repeats: int
        width: int
        stride: int

    model = CustomBackbone([Stage("residual", 1, 1, 1)])
    assert model.stage_channels == {"stem": 32, "stage1": 1}  # 1 // 2 == 0 → the stem falls back to 32


@pytest.mark.parametrize(
    "stages, message",
    [
        ([dict(block="residual", repeats=1, width=64, stride=2),
          dict(block="resnet", repeats=1, width=64, stride=2)],
         r"^stage2 has unknown block kind 'resnet'; choose one of conv, vgg, .*\.$"),
        ([dict(block="residual", repeats=0, width=64, stride=2)],
         r"^stage1 has repeats=0; set repeats to .* at least 1\.$"),
        ([dict(block="residual", repeats=1, width=0, stride=2)], r"^stage1 has width=0; set width to .* at least 1\.$"),
        ([dict(block="inception", repeats=1, width=2, stride=2)], r"^stage1 has width=2; set width to .* at least 4 "),
        ([dict(block="residual", repeats=1, width=64, stride=3)], r"^stage1 has stride=3; set stride to 1 or 2\.$"),
        ([dict(block="residual", repeats=1.5, width=64, stride=2)], r"^stage1 has repeats=1\.5; "),
        ([dict(block="residual", repeats=1, width=64)], r"^stage1 is missing 'stride'; "),
        ([dict(block="residual", repeats=1, width=64, stride=2, dilation=2)], r"^stage1 has unknown key 'dilation'; "),
        (["residual"], r"^stage1 must be a dict "),
        ([], r"^The backbone needs at least one stage; "),
        ([dict(block="conv", repeats=1, width=8, stride=1)] * 65, r"^The backbone has 65 stages; .* at most 64\.$"),
    ],
)
def test_custom_backbone_validation(stages, message):
    with pytest.raises(ValueError, match=message) as info:
        CustomBackbone(stages)
    text = str(info.value)
    assert text.count(". ") == 0 and text.endswith(".")  # one sentence


def test_custom_backbone_at_the_stage_limit_builds_on_meta():
    with torch.device("meta"):
        model = CustomBackbone([dict(block="conv", repeats=1, width=8, stride=1)] * 64)
    assert len(model.stage_names) == 65


# --------------------------------------------------------------------------------------------------
# classic.py uses the shared blocks under its old names
# --------------------------------------------------------------------------------------------------


def test_classic_reexports_the_shared_blocks():
    assert classic.ConvBNReLU is ConvBNReLU
    assert issubclass(classic.DepthwiseSeparableConv, DepthwiseSeparable)
    assert issubclass(classic.PreActBasicBlock, PreActBlock)
    assert classic.DepthwiseSeparableConv.__name__ == "DepthwiseSeparableConv"  # the analysis shows class names
