"""Exact receptive fields through upsampling, transposed convs, unpooling and the merges after them.

Each case compares the engine's field of single output units (`Analysis.unit_field`, both ends of both axes)
with the gradient support of that unit (tests/rf_measure.py: positive weights, BatchNorm as identity, max →
average pooling, float64), for two neighbouring units that see different fields (both parities or phases).
Inputs are large enough that the measured fields do not touch the image border. Necks run at width 16 (a
field does not depend on channels) to keep the file fast.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from explorer import analyze, catalog
from explorer.compose import analyze_spec, build
from explorer.fields import fmt_rf
from explorer.spec import ArchitectureSpec
from rf_measure import prepare, unit_supports


def _spec(**d) -> ArchitectureSpec:
    return ArchitectureSpec.from_dict(d)


def _inside(field, size):
    (t, b), (l, r) = field
    return 0 < t and b < size - 1 and 0 < l and r < size - 1


def _check(a, model, size, units, path="", level=None, module=None, channels=3):
    """The engine's field of every unit equals its gradient support, and no field touches the border."""
    fields = [a.unit_field(path, *u[-2:], level=u[0] if len(u) == 3 else level) for u in units]
    assert all(_inside(f, size) for f in fields), fields
    measured, _ = unit_supports(model, size, units, module=module, level=level, channels=channels)
    assert measured == fields
    return fields


def _sizes(field):
    (t, b), (l, r) = field
    return b - t + 1, r - l + 1


# -- compositions: necks and segmentation heads on a backbone ------------------------------------------------
def _detector(neck, size, backbone="resnet18", **bb):
    return _spec(task="detection", input=dict(height=size, width=size), backbone=dict(name=backbone, **bb),
                 neck=dict(kind=neck, width=16), head=dict(kind="yolo", num_classes=1))


@pytest.mark.parametrize("neck", ["fpn", pytest.param("panet", marks=pytest.mark.slow)])
def test_fpn_and_panet_finest_level_units_differ_by_phase(neck):
    s = _detector(neck, 512)
    a = analyze_spec(s, training_memory=False)
    lv = {l["name"]: l for l in a.output_levels("neck")}["layer2"]
    # layer2 (stride 8) + nearest ×2 of layer3 (+ nearest ×2 of layer4): period 4 in the unit index.
    assert lv["output_shape"] == (16, 64, 64) and lv["jump"] == (8, 8)
    assert lv["rf"] == (467, 467)  # the centre unit, 31 (31 mod 4 = 3)
    assert lv["rf_range"] == ((435, 467), (435, 467))
    assert lv["rf_phases"] == ("435 at units with index mod 4 = 1 or 2, 467 at units with index mod 4 = 0 or 3")
    assert lv["rf_map"][0]["P"] == 4 and lv["rf_map"][0]["J"] == 32
    fields = _check(a, prepare(build(s)), 512, [(33, 34), (34, 35)], "neck", level="layer2", module="neck")
    assert fields == [((39, 473), (39, 473)), ((39, 473), (39, 505))]
    assert [_sizes(f) for f in fields] == [(435, 435), (435, 467)]
    # What Compose's per-level table and every field column show.
    from explorer.ui.tables import level_rows

    assert level_rows(a)[0] == {
        "level": "layer2", "shape": "16×64×64", "receptive field (centre unit)": "467",
        "over units": "435–467 × 435–467",
        "which units": "435 at units with index mod 4 = 1 or 2, 467 at units with index mod 4 = 0 or 3",
        "jump": "8"}
    assert fmt_rf(lv["rf"], False, rf_range=lv["rf_range"]) == "435–467 × 435–467"
    if neck == "fpn":
        assert [l["rf"] for l in a.output_levels("neck")] == [(467, 467), (467, 467), (499, 499)]
    else:
        assert [l["rf"] for l in a.output_levels("neck")] == [(467, 467), (499, 499), (595, 595)]


@pytest.mark.slow  # several seconds of float64 backward: `make test` runs it, `make check` does not
def test_bifpn_on_mobilenet_v2_three_levels(monkeypatch):
    import explorer.necks.pyramid as pyramid

    s = _detector("bifpn", 960, "mobilenet_v2", out_stages=["features.6", "features.13", "features.18"])
    a = analyze_spec(s, training_memory=False)
    levels = a.output_levels("neck")
    assert [(l["name"], l["output_shape"][1:]) for l in levels] == [
        ("features.6", (120, 120)), ("features.13", (60, 60)), ("features.18", (30, 30))]
    assert [l["rf"] for l in levels] == [(715, 715), (779, 779), (875, 875)]
    assert [l["rf_range"] for l in levels] == [((715, 747), (715, 747)), None, None]
    # BiFPN goes down with adaptive *max* pooling: the gradient would only reach the maxima. Average pooling
    # over the same bins reads the same inputs.
    monkeypatch.setattr(pyramid, "_down", lambda x, target: F.adaptive_avg_pool2d(x, target.shape[-2:]))
    units = [("features.6", 58, 59), ("features.6", 60, 61), ("features.13", 29, 30), ("features.18", 14, 15)]
    fields = _check(a, prepare(build(s)), 960, units, "neck", module="neck")
    assert fields[:2] == [((75, 821), (107, 821)), ((107, 821), (107, 853))]
    assert [_sizes(f) for f in fields] == [(747, 715), (715, 747), (779, 779), (875, 875)]


@pytest.mark.slow  # several seconds of float64 backward: `make test` runs it, `make check` does not
def test_unet_head_on_resnet18():
    s = _spec(task="segmentation", input=dict(height=576, width=576), backbone=dict(name="resnet18"),
              head=dict(kind="unet", num_classes=1))
    a = analyze_spec(s, training_memory=False)
    m = a.modules[""]
    assert m["output_shape"] == (1, 576, 576) and m["rf"] == (531, 531)  # the centre unit, 287
    assert m["rf_range"] == ((531, 563), (531, 563))
    assert m["rf_phases"] == ("531 at units with index mod 32 = 0–5 or 26–31, 563 at units with index mod 32 = "
                              "6–25")
    fields = _check(a, prepare(build(s)), 576, [(288, 293), (293, 294)])
    assert [_sizes(f) for f in fields] == [(531, 531), (531, 563)]


@pytest.mark.slow  # several seconds of float64 backward: `make test` runs it, `make check` does not
def test_fcn_head_on_resnet18():
    s = _spec(task="segmentation", input=dict(height=576, width=576), backbone=dict(name="resnet18"),
              head=dict(kind="fcn", num_classes=1))
    a = analyze_spec(s, training_memory=False)
    m = a.modules[""]
    assert m["rf"] == (531, 531) and m["rf_range"] is None  # every unit 531, but not evenly spaced
    assert m["rf_map"][0]["P"] == 32
    # Bilinear ×32 from stride 32: units 272–303 read the same two layer4 units, unit 304 the next two.
    fields = _check(a, prepare(build(s)), 576, [(303, 304), (304, 303)])
    assert fields == [((7, 537), (39, 569)), ((39, 569), (7, 537))]


# -- the three encoder–decoders of the catalog ---------------------------------------------------------------
def test_seg_unet_output():
    a = analyze("seg_unet", (3, 128, 128), training_memory=False)
    m = a.modules[""]
    assert m["rf"] == (92, 92) and m["rf_range"] == ((92, 100), (92, 100))
    fields = _check(a, prepare(catalog.build("seg_unet")), 128, [(64, 65), (65, 66)])
    assert fields == [((18, 109), (18, 109)), ((18, 109), (18, 117))]
    assert [_sizes(f) for f in fields] == [(92, 92), (92, 100)]
    # The box drawn on a photo is that exact interval: (x0, y0, x1, y1) = (columns, rows).
    from explorer.vis import theoretical_box, unit_centre

    assert theoretical_box(a, "", (65, 66)) == (18, 18, 117, 109)
    assert unit_centre(a, "", (65, 66)) == (67.5, 63.5)


def test_seg_encoder_decoder_output():
    a = analyze("seg_encoder_decoder", (3, 128, 128), training_memory=False)
    m = a.modules[""]
    assert m["rf"] == (31, 31) and m["rf_range"] is None
    fields = _check(a, prepare(catalog.build("seg_encoder_decoder")), 128, [(63, 64), (64, 65)])
    # Same size everywhere, but the field jumps by 16 between units 63 and 64: not offset + i·jump.
    assert fields == [((33, 63), (49, 79)), ((49, 79), (49, 79))]


def _positive_keep_max(model: nn.Module) -> nn.Module:
    """prepare() without turning max into average pooling: unpooling needs the real argmax indices."""
    for name, child in list(model.named_modules()):
        for cname, c in list(child.named_children()):
            if isinstance(c, nn.BatchNorm2d):
                setattr(child, cname, nn.Identity())
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            fan_in = max(1, p[0].numel()) if p.dim() > 1 else 1
            p.copy_((torch.rand(p.shape, generator=gen) * 0.5 + 0.5) / fan_in)
    return model.double().eval()


def test_seg_pool_unpool_is_an_upper_bound_reached_over_inputs():
    a = analyze("seg_pool_unpool", (3, 128, 128), training_memory=False)
    assert any("upper bound after max_unpool2d" in n for n in a.notes)
    m = a.modules[""]
    assert m["rf"] == (62, 62) and m["rf_range"] == ((62, 78), (62, 78)) and m["rf_approx"]
    units = [(63, 63), (64, 65)]
    bounds = [a.unit_field("", *u) for u in units]
    assert bounds == [((33, 94), (33, 94)), ((33, 94), (33, 110))]
    model = _positive_keep_max(catalog.build("seg_pool_unpool"))
    union = [None, None]
    for seed in range(6):
        measured, _ = unit_supports(model, 128, units, seed=seed)
        for k, (got, bound) in enumerate(zip(measured, bounds)):
            for (lo, hi), (blo, bhi) in zip(got, bound):
                assert blo <= lo and hi <= bhi  # inside the bound for every input
            union[k] = got if union[k] is None else tuple(
                (min(u[0], g[0]), max(u[1], g[1])) for u, g in zip(union[k], got))
    assert union[0] == bounds[0]  # where the maxima fall decides; over inputs the bound is reached


# -- single ops -----------------------------------------------------------------------------------------------
def test_transposed_conv_stack():
    model = nn.Sequential(nn.Conv2d(1, 2, 3, 2, 1), nn.Conv2d(2, 2, 3, 2, 1),
                          nn.ConvTranspose2d(2, 2, 3, 2, 1, output_padding=1),
                          nn.ConvTranspose2d(2, 2, 3, 2, 1, output_padding=1))
    a = analyze(model, (1, 64, 64), training_memory=False)
    m = a.modules["3"]
    assert m["output_shape"] == (2, 64, 64) and m["rf"] == (11, 11) and m["rf_range"] == ((7, 11), (7, 11))
    assert m["rf_phases"] == ("7 at units with index mod 4 = 0, 11 at units with index mod 4 = 1–3")
    fields = _check(a, prepare(model), 64, [(31, 32), (32, 33)], "3", channels=1)
    assert fields == [((25, 35), (29, 35)), ((29, 35), (29, 39))]
    assert [_sizes(f) for f in fields] == [(11, 7), (7, 11)]


class _Up(nn.Module):
    def __init__(self, **kw):
        super().__init__()
        self.down = nn.Conv2d(1, 2, 3, 2, 1)
        self.up = nn.Upsample(**kw)
        self.conv = nn.Conv2d(2, 2, 3, 1, 1)

    def forward(self, x):
        return self.conv(self.up(self.down(x)))


@pytest.mark.parametrize("kw,expected", [
    (dict(scale_factor=2, mode="nearest"), [((27, 31), (29, 33)), ((29, 33), (29, 33))]),
    (dict(scale_factor=2, mode="nearest-exact"), [((27, 31), (29, 33)), ((29, 33), (29, 33))]),
    (dict(scale_factor=2, mode="bilinear", align_corners=False), [((27, 33), (27, 33)), ((27, 33), (29, 35))]),
    (dict(size=(47, 47), mode="bilinear", align_corners=True), [((37, 43), (39, 45)), ((39, 45), (39, 47))]),
    (dict(size=(47, 47), mode="nearest"), [((37, 43), (39, 43)), ((39, 43), (41, 45))]),
    (dict(scale_factor=2, mode="bicubic"), [((25, 35), (25, 35)), ((25, 35), (27, 37))]),
])
def test_upsampling(kw, expected):
    """A stride-2 conv, then upsampling, then a 3×3 conv: units (30, 31) and (31, 32) of the last conv."""
    model = _Up(**kw)
    a = analyze(model, (1, 64, 64), training_memory=False)
    assert _check(a, prepare(model), 64, [(30, 31), (31, 32)], "conv", channels=1) == expected


class _Unpool(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv0 = nn.Conv2d(1, 2, 3, 1, 1)
        self.pool = nn.MaxPool2d(2, 2, return_indices=True)
        self.unpool = nn.MaxUnpool2d(2, 2)
        self.conv = nn.Conv2d(2, 2, 3, 1, 1)

    def forward(self, x):
        y, idx = self.pool(self.conv0(x))
        return self.conv(self.unpool(y, idx))


def test_max_unpool_is_an_upper_bound():
    model = _Unpool()
    a = analyze(model, (1, 32, 32), training_memory=False)
    assert any("upper bound after max_unpool2d" in n for n in a.notes)
    # Unit o after the unpool can only hold the maximum of its own 2×2 window: [2⌊o/2⌋, 2⌊o/2⌋ + 1], then the
    # 3×3 conv before (±1) and after (one unpooled unit either side).
    assert a.unit_field("unpool", 15, 16) == ((13, 16), (15, 18))
    assert a.unit_field("conv", 15, 16) == ((13, 18), (13, 18))
    model = _positive_keep_max(model)
    bound = a.unit_field("conv", 15, 16)
    seen = None
    for seed in range(8):
        (got,), _ = unit_supports(model, 32, [(15, 16)], seed=seed, channels=1)
        for (lo, hi), (blo, bhi) in zip(got, bound):
            assert blo <= lo and hi <= bhi
        seen = got if seen is None else tuple((min(s[0], g[0]), max(s[1], g[1])) for s, g in zip(seen, got))
    # The gradient only reaches the maxima's own pixels: over inputs the unpooled units 14–16 (rows) and
    # 15–17 (columns) the conv reads, through the first 3×3 conv.
    assert seen == ((13, 17), (14, 18))
    # Row 18 is in the bound all the same: it decides whether unpooled row 16 holds its window's maximum.
    x = torch.rand(1, 1, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(3)) + 0.5
    with torch.no_grad():
        base = model(x)[0, :, 15, 16]
        for row, changes in ((18, True), (19, False), (12, False)):
            y = x.clone()
            y[0, 0, row, 13:19] += 100.0
            assert (not torch.equal(model(y)[0, :, 15, 16], base)) == changes, row


class _TwoGrids(nn.Module):
    """A stride-2 conv added to a 16×16 crop of the input: the same shape, two different grids."""

    def __init__(self):
        super().__init__()
        self.down = nn.Conv2d(1, 1, 3, 2, 1)
        self.conv = nn.Conv2d(1, 1, 3, 1, 1)

    def forward(self, x):
        return self.conv(self.down(x) + x[:, :, 8:24, 8:24])


def test_union_of_different_grids_is_a_superset_and_said():
    model = _TwoGrids()
    a = analyze(model, (1, 32, 32), training_memory=False)
    assert any(n.startswith("Receptive field approximate at add") for n in a.notes)
    assert a.modules["conv"]["rf_approx"]
    units = [(7, 8), (8, 9)]
    measured, _ = unit_supports(prepare(model), 32, units, channels=1)
    for u, got in zip(units, measured):
        for (lo, hi), (blo, bhi) in zip(got, a.unit_field("conv", *u)):
            assert blo <= lo and hi <= bhi
    # Here the per-unit union is even exact: unit o sees [2o − 3, 2o + 3] through the stride-2 conv, which
    # holds the crop path's [o + 7, o + 9].
    assert [a.unit_field("conv", *u) for u in units] == measured == [((11, 17), (13, 19)), ((13, 19), (15, 21))]
