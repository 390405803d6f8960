"""Necks: keys, shapes and widths on synthetic levels, errors, attention-gate parameter counts, meta device."""

from collections import OrderedDict

import pytest
import torch
from torch import nn

from conftest import n_params

from explorer.necks import (
    CBAM,
    NECK_KINDS,
    SpatialAttention,
    SqueezeExcitation,
    build_neck,
)

# A 64×64 input through a backbone with strides 8 / 16 / 32 and channels 128 / 256 / 512.
CHANNELS = [128, 256, 512]
SIZES = [(8, 8), (4, 4), (2, 2)]
KEYS = ["layer2", "layer3", "layer4"]  # not "0", "1", "2", so a neck that renames keys is caught
MULTI_LEVEL = ("fpn", "panet", "bifpn")
ATTENTION = ("se", "cbam", "spatial")


def levels(batch=2, channels=CHANNELS, sizes=SIZES, device="cpu"):
    return OrderedDict(
        (k, torch.randn(batch, c, h, w, device=device)) for k, c, (h, w) in zip(KEYS, channels, sizes)
    )


@pytest.fixture(scope="module")
def feats():
    torch.manual_seed(0)
    return levels()


@pytest.mark.parametrize("kind", NECK_KINDS)
def test_keys_order_and_shapes(kind, feats):
    neck = build_neck(kind, CHANNELS, width=64).eval()
    with torch.no_grad():
        out = neck(feats)
    assert isinstance(out, OrderedDict)
    assert list(out) == KEYS
    assert len(neck.out_channels) == 3
    for x, y, c in zip(feats.values(), out.values(), neck.out_channels):
        assert y.shape == (2, c, *x.shape[-2:])  # sizes unchanged, channels as advertised


@pytest.mark.parametrize("kind", ("none",) + ATTENTION)
def test_channel_preserving_necks(kind, feats):
    neck = build_neck(kind, CHANNELS)
    assert neck.out_channels == CHANNELS
    one = OrderedDict(layer4=feats["layer4"])  # a single level is allowed
    out = build_neck(kind, [512])(one)
    assert list(out) == ["layer4"] and out["layer4"].shape == feats["layer4"].shape


def test_identity_is_identity(feats):
    out = build_neck("none", CHANNELS)(feats)
    assert all(out[k] is feats[k] for k in KEYS)


@pytest.mark.parametrize("kind", MULTI_LEVEL)
@pytest.mark.parametrize("width", [64, 256])
def test_multi_level_width(kind, width, feats):
    neck = build_neck(kind, CHANNELS, width=width)
    assert neck.out_channels == [width] * 3
    with torch.no_grad():
        out = neck(feats)
    assert [tuple(y.shape) for y in out.values()] == [(2, width, h, w) for h, w in SIZES]


def test_default_width_is_256():
    assert build_neck("fpn", CHANNELS).out_channels == [256] * 3


@pytest.mark.parametrize("kind", MULTI_LEVEL)
def test_one_level_is_an_error(kind):
    with pytest.raises(ValueError, match="needs at least two backbone stages"):
        build_neck(kind, [512])


def test_unknown_kind_and_no_levels():
    with pytest.raises(ValueError, match="Unknown neck"):
        build_neck("aspp", CHANNELS)
    with pytest.raises(ValueError, match="at least one backbone stage"):
        build_neck("none", [])


def test_level_count_mismatch_is_reported(feats):
    with pytest.raises(ValueError, match="built for 2"):
        build_neck("se", [128, 256])(feats)


@pytest.mark.parametrize("kind", ("panet", "bifpn"))
def test_any_level_sizes(kind):
    # Odd sizes (e.g. a 72×72 input) are not exact factors of two apart; resampling must still line up.
    sizes = [(9, 9), (5, 5), (3, 3)]
    out = build_neck(kind, CHANNELS, width=32)(levels(1, sizes=sizes))
    assert [tuple(y.shape[-2:]) for y in out.values()] == sizes


def test_panet_keeps_the_finest_fpn_level(feats):
    # N_1 = P_1: the bottom-up path starts from the FPN's finest output unchanged.
    neck = build_neck("panet", CHANNELS, width=32).eval()
    with torch.no_grad():
        assert torch.equal(neck(feats)["layer2"], neck.fpn(feats)["layer2"])


def test_bifpn_repeats_and_fusion_weights():
    one = build_neck("bifpn", CHANNELS, width=64, repeats=1)
    three = build_neck("bifpn", CHANNELS, width=64, repeats=3)
    assert len(one.layers) == 1 and len(three.layers) == 3
    per_layer = n_params(one.layers[0])
    assert n_params(three) - n_params(one) == 2 * per_layer
    # 3 levels: 2 top-down nodes with 2 inputs; bottom-up: the middle node has 3 inputs, the top one 2.
    layer = one.layers[0]
    assert [w.numel() for w in layer.td_weights] == [2, 2]
    assert [w.numel() for w in layer.bu_weights] == [3, 2]


# --------------------------------------------------------------------------------------------------
# Attention gates
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [64, 512])
def test_gate_parameter_counts_closed_form(channels):
    r, k = 16, 7
    h = channels // r
    # SE: FC C→C/r (weights + biases) and FC C/r→C (weights + biases).
    se = channels * h + h + h * channels + channels
    spatial = 2 * k * k + 1  # one k×k conv over [mean; max], with its bias
    # CBAM: the same shared MLP as SE for the channel gate, plus the spatial conv.
    cbam = se + spatial
    assert n_params(SqueezeExcitation(channels, r)) == se
    assert n_params(SpatialAttention(k)) == spatial
    assert n_params(CBAM(channels, r, k)) == cbam
    # Written out: 580 / 33,312 for SE, 679 / 33,411 for CBAM.
    assert se == {64: 580, 512: 33_312}[channels]
    assert cbam == {64: 679, 512: 33_411}[channels]


def test_attention_neck_params_are_the_sum_of_its_gates():
    se = build_neck("se", CHANNELS)
    assert n_params(se) == sum(n_params(SqueezeExcitation(c)) for c in CHANNELS)
    assert n_params(build_neck("spatial", CHANNELS)) == 3 * (98 + 1)


def test_gates_shapes_and_forward_is_gated_input():
    x = torch.randn(2, 64, 6, 6)
    se, sp, cbam = SqueezeExcitation(64), SpatialAttention(), CBAM(64)
    a = se.attention(x)
    assert a.shape == (2, 64, 1, 1) and bool(((a > 0) & (a < 1)).all())
    assert torch.allclose(se(x), x * a)
    s = sp.attention(x)
    assert s.shape == (2, 1, 6, 6)
    assert torch.allclose(sp(x), x * s)
    mc, ms = cbam.attention(x)
    assert mc.shape == (2, 64, 1, 1) and ms.shape == (2, 1, 6, 6)
    assert torch.allclose(cbam(x), x * mc * ms)


def test_gates_keep_no_per_call_state():
    x = torch.randn(1, 32, 5, 5)
    for gate in (SqueezeExcitation(32), SpatialAttention(3), CBAM(32, 8, 3)):
        before = {k: set(v) if isinstance(v, dict) else v for k, v in vars(gate).items()}
        gate(x)
        after = {k: set(v) if isinstance(v, dict) else v for k, v in vars(gate).items()}
        assert before.keys() == after.keys()
        assert all(before[k] == after[k] for k in before if isinstance(before[k], set))


def test_tiny_channel_counts_keep_one_hidden_unit():
    assert SqueezeExcitation(8, 16).fc1.out_channels == 1


# --------------------------------------------------------------------------------------------------
# Meta device
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", NECK_KINDS)
def test_builds_and_runs_on_meta(kind):
    with torch.device("meta"):
        neck = build_neck(kind, CHANNELS, width=64, repeats=2)
    assert all(p.is_meta for p in neck.parameters())
    out = neck(levels(device="meta"))
    assert list(out) == KEYS
    assert all(y.is_meta for y in out.values())
    assert [tuple(y.shape) for y in out.values()] == [(2, c, h, w) for c, (h, w) in zip(neck.out_channels, SIZES)]


# --------------------------------------------------------------------------------------------------
# The 1×1 bottleneck neck: one module, explorer/necks/bottleneck.py, and nothing else edited
# --------------------------------------------------------------------------------------------------

BOTTLENECK_JSON = ('{"backbone": {"name": "resnet18"}, "neck": {"kind": "bottleneck_1x1", "width": 128}, '
                   '"head": {"kind": "classification", "num_classes": 10}}')


def test_bottleneck_neck_is_a_registered_kind_with_its_setting():
    from explorer import components

    assert "bottleneck_1x1" in components.names("neck")
    kind = components.get("neck", "bottleneck_1x1")
    assert kind.title == "1×1 bottleneck" and kind.defaults() == {"width": 256}
    width = kind.setting("width")
    assert (width.type, width.low, width.high, width.title) == ("int", 1, 4096, "Neck width")


def test_bottleneck_neck_shrinks_each_level_and_keeps_its_size(feats):
    from explorer.necks.bottleneck import BottleneckNeck

    neck = build_neck("bottleneck_1x1", CHANNELS, width=32).eval()
    assert isinstance(neck, BottleneckNeck) and neck.out_channels == [32, 32, 32]
    assert n_params(neck) == sum(c * 32 + 2 * 32 for c in CHANNELS)  # bias-free 1×1 conv + BN
    with torch.no_grad():
        out = neck(feats)
    assert list(out) == KEYS and [tuple(y.shape) for y in out.values()] == [(2, 32, h, w) for h, w in SIZES]
    assert all((y >= 0).all() for y in out.values())  # ends in a ReLU


def test_bottleneck_neck_from_spec_json_builds_with_exact_counts():
    from explorer import compose
    from explorer.spec import ArchitectureSpec, SpecError

    spec = ArchitectureSpec.from_json(BOTTLENECK_JSON)
    assert spec.neck.settings == {"width": 128} and ArchitectureSpec.from_json(spec.to_json()) == spec
    assert spec.summary() == "resnet18 → 1×1 bottleneck → classification at 3×224×224"
    with pytest.raises(SpecError, match=r"^'neck.width' must be between 1 and 4,096; got 0\.$"):
        ArchitectureSpec.from_json(BOTTLENECK_JSON.replace('"width": 128', '"width": 0'))

    a = compose.analyze_spec(spec, training_memory=False)
    plain = compose.analyze_spec(spec.replace(neck={"kind": "none"}), training_memory=False)
    parts, plain_parts = {s.name: s for s in a.stages()}, {s.name: s for s in plain.stages()}
    # resnet18's layer4 at 224 px: 512 × 7 × 7 → 1×1 conv to 128 (no bias before BN) + BN's 2 · 128
    assert parts["neck"].params == 512 * 128 + 2 * 128 == 65_792
    assert parts["neck"].macs == 512 * 128 * 7 * 7 == 3_211_264
    assert parts["neck"].activations == 128 * 7 * 7  # the conv's output (BN, ReLU: lecture convention)
    assert (parts["backbone"].params, parts["backbone"].macs) == (plain_parts["backbone"].params,
                                                                  plain_parts["backbone"].macs)
    assert (parts["head"].params, parts["head"].macs) == (128 * 10 + 10, 128 * 10)  # GAP → fc 128 → 10
    assert a.params == plain_parts["backbone"].params + 65_792 + 1_290
    assert a.macs == plain_parts["backbone"].macs + 3_211_264 + 1_280
    # A 1×1 conv passes the receptive field through
    (level,), (before,) = a.output_levels("neck"), plain.output_levels("backbone")
    assert level["output_shape"] == (128, 7, 7) and not level["is_global"]
    assert (level["rf"], level["jump"]) == (before["rf"], before["jump"]) == ((435, 435), (32, 32))

    model = compose.build(spec).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 224, 224)).shape == (1, 10)


def test_bottleneck_neck_feeds_multi_level_heads():
    from explorer import compose
    from explorer.spec import ArchitectureSpec

    spec = ArchitectureSpec.from_dict({"task": "detection", "input": {"height": 128, "width": 128},
                                       "neck": {"kind": "bottleneck_1x1", "width": 64}, "head": {"kind": "yolo"}})
    assert spec.backbone.out_stages is None and compose.default_out_stages(spec) == ["layer2", "layer3", "layer4"]
    neck = {s.name: s for s in compose.analyze_spec(spec, training_memory=False).stages()}["neck"]
    assert neck.params == sum(c * 64 + 2 * 64 for c in (128, 256, 512))
    assert neck.macs == sum(c * 64 * s * s for c, s in ((128, 16), (256, 8), (512, 4)))
