"""Heads and the homework segmentation trio: output shapes, decode, errors, meta device."""

from collections import OrderedDict

import pytest
import torch
from torch import nn

from conftest import n_params

from explorer.heads import HEAD_KINDS, build_head
from explorer.models.classic import CLASSIC_MODELS
from explorer.models.segmentation import SEGMENTATION_MODELS, encoder_decoder, pool_unpool, unet

# A 64×64 input through a backbone with strides 8 / 16 / 32 and channels 128 / 256 / 512.
INPUT = (64, 64)
CHANNELS = [128, 256, 512]
SIZES = [(8, 8), (4, 4), (2, 2)]
KEYS = ["0", "1", "2"]
N = 2


def levels(channels=CHANNELS, sizes=SIZES, device="cpu", batch=N):
    return OrderedDict(
        (str(i), torch.randn(batch, c, h, w, device=device)) for i, (c, (h, w)) in enumerate(zip(channels, sizes))
    )


def head(kind, channels=CHANNELS, sizes=SIZES, **kw):
    return build_head(kind, channels, input_size=INPUT, feature_sizes=sizes, **kw).eval()


@pytest.fixture(scope="module")
def feats():
    torch.manual_seed(0)
    return levels()


@pytest.fixture(scope="module")
def last_only(feats):
    return OrderedDict(l4=feats["2"])


# --------------------------------------------------------------------------------------------------
# Classification, regression
# --------------------------------------------------------------------------------------------------


def test_gap_vs_flatten_in_features():
    # The lecture's example: a 7×7×512 map gives 512 features after GAP and 25,088 after flattening.
    kw = dict(input_size=(224, 224), feature_sizes=[(7, 7)], num_classes=10)
    gap = build_head("classification", [512], pooling="gap", **kw)
    flat = build_head("classification", [512], pooling="flatten", **kw)
    assert gap.fc.in_features == 512
    assert flat.fc.in_features == 25_088
    x = OrderedDict(out=torch.randn(N, 512, 7, 7))
    assert gap(x).shape == flat(x).shape == (N, 10)
    with pytest.raises(ValueError, match="built for a 7×7 map"):
        flat(OrderedDict(out=torch.randn(1, 512, 6, 6)))


def test_classification_mlp_and_probabilities(feats):
    h = head("classification", num_classes=7, hidden=[256, 64], dropout=0.3)
    kinds = [type(m).__name__ for m in h.mlp]
    assert kinds == ["Linear", "ReLU", "Dropout"] * 2
    assert h.mlp.fc1.in_features == 512 and h.fc.in_features == 64
    logits = h(feats)
    assert logits.shape == (N, 7)
    p = h.predict(feats)
    assert torch.allclose(p.sum(1), torch.ones(N))  # softmax only in predict, forward gives logits
    assert not torch.allclose(logits.sum(1), torch.ones(N))


def test_regression(feats, last_only):
    assert head("regression", outputs=3)(feats).shape == (N, 3)
    assert head("regression")(feats).shape == (N, 1)
    assert head("regression", [512], [(2, 2)], pooling="flatten")(last_only).shape == (N, 1)


def test_classification_uses_the_last_level(feats):
    h = head("classification")
    a = h(feats)
    changed = OrderedDict(feats)
    changed["0"] = torch.zeros_like(feats["0"])
    assert torch.equal(a, h(changed))


# --------------------------------------------------------------------------------------------------
# YOLO
# --------------------------------------------------------------------------------------------------


def test_yolo_shapes(feats, last_only):
    h = head("yolo", num_classes=20)
    out = h(feats)
    assert isinstance(out, OrderedDict) and list(out) == KEYS
    assert [tuple(y.shape) for y in out.values()] == [(N, 3, hh, ww, 25) for hh, ww in SIZES]
    assert h.anchors.shape == (3, 3, 2) and "anchors" in h.state_dict()
    # Default anchors: squares of 2, 4 and 8 strides.
    assert torch.equal(h.anchors[0], torch.tensor([[16.0, 16.0], [32.0, 32.0], [64.0, 64.0]]))
    assert torch.equal(h.anchors[2], torch.tensor([[64.0, 64.0], [128.0, 128.0], [256.0, 256.0]]))
    one = head("yolo", [512], [(2, 2)], num_classes=20, anchors_per_cell=5)(last_only)
    assert one["l4"].shape == (N, 5, 2, 2, 25)


def test_yolo_decode_boxes_inside_image(feats):
    h = head("yolo", num_classes=20)
    with torch.no_grad():
        dets = h.decode(h(feats), INPUT, conf_threshold=0.0, max_detections=50)
    assert len(dets) == N
    for d in dets:
        k = len(d["boxes"])
        assert 0 < k <= 50 and d["boxes"].shape == (k, 4) and d["scores"].shape == d["labels"].shape == (k,)
        b = d["boxes"]
        assert bool((b[:, 0] >= 0).all() and (b[:, 1] >= 0).all())
        assert bool((b[:, 2] <= INPUT[1]).all() and (b[:, 3] <= INPUT[0]).all())
        assert bool((b[:, 0] <= b[:, 2]).all() and (b[:, 1] <= b[:, 3]).all())
        assert bool(((d["scores"] >= 0) & (d["scores"] <= 1)).all()) and int(d["labels"].max()) < 20


def test_yolo_decode_formula():
    h = head("yolo", num_classes=20)
    out = OrderedDict((k, torch.zeros(1, 3, hh, ww, 25)) for k, (hh, ww) in zip(KEYS, SIZES))
    for y in out.values():
        y[..., 4] = -20.0  # no object anywhere ...
    cell = out["0"][0, 0, 2, 3]  # ... except level 0 (stride 8), anchor 0 (16×16), row 2, column 3
    cell[4], cell[5 + 5] = 20.0, 20.0  # confident object of class 5; tx = ty = tw = th = 0
    [d] = h.decode(out, INPUT)
    assert d["labels"].tolist() == [5]
    # centre ((0.5 + 3)·8, (0.5 + 2)·8) = (28, 20), size = anchor = 16
    assert torch.allclose(d["boxes"], torch.tensor([[20.0, 12.0, 36.0, 28.0]]))
    assert float(d["scores"][0]) > 0.99


# --------------------------------------------------------------------------------------------------
# SSD
# --------------------------------------------------------------------------------------------------


def test_ssd_background_class(feats, last_only):
    h = head("ssd", num_classes=20)
    out = h(feats)
    anchors = 4 * sum(a * b for a, b in SIZES)
    assert set(out) == {"bbox_regression", "cls_logits"}
    assert out["bbox_regression"].shape == (N, anchors, 4)
    assert out["cls_logits"].shape == (N, anchors, 21)  # 20 classes + background
    assert h.num_anchors == anchors and h.priors().shape == (anchors, 4)
    one = head("ssd", [512], [(2, 2)], num_classes=20)(last_only)
    assert one["cls_logits"].shape == (N, 16, 21)


def test_ssd_decode():
    h = head("ssd", num_classes=20)
    anchors = h.num_anchors
    logits = torch.zeros(1, anchors, 21)
    logits[..., 0] = 20.0  # background everywhere ...
    i = (4 * 8 + 4) * 4  # ... except level 0, row 4, column 4, first prior (square of side 0.2)
    logits[0, i, 0], logits[0, i, 1 + 3] = 0.0, 20.0
    out = {"bbox_regression": torch.zeros(1, anchors, 4), "cls_logits": logits}
    [d] = h.decode(out, INPUT)
    assert d["labels"].tolist() == [3]  # foreground index, background removed
    c, s = 4.5 / 8 * 64, 0.2 * 64  # zero offsets decode to the prior itself
    assert torch.allclose(d["boxes"], torch.tensor([[c - s / 2, c - s / 2, c + s / 2, c + s / 2]]))
    # On untrained outputs every box is clipped into the image.
    with torch.no_grad():
        dets = h.decode(h(levels()), INPUT, conf_threshold=0.0)
    for d in dets:
        b = d["boxes"]
        assert len(b) > 0 and bool((b >= 0).all() and (b[:, 2] <= 64).all() and (b[:, 3] <= 64).all())


# --------------------------------------------------------------------------------------------------
# Segmentation heads, similarity
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["fcn", "unet"])
def test_segmentation_heads(kind, feats):
    assert head(kind, num_classes=5)(feats).shape == (N, 5, *INPUT)


def test_fcn_single_level_and_unet_needs_two(last_only):
    assert head("fcn", [512], [(2, 2)], num_classes=4)(last_only).shape == (N, 4, *INPUT)
    with pytest.raises(ValueError, match="U-Net decoder needs at least two backbone stages"):
        head("unet", [512], [(2, 2)])


def test_unet_bilinear_and_odd_sizes():
    sizes = [(9, 9), (5, 5), (3, 3)]
    x = levels(sizes=sizes, batch=1)
    for upsample in ("transpose", "bilinear"):
        h = build_head("unet", CHANNELS, input_size=(72, 72), feature_sizes=sizes, num_classes=3, upsample=upsample)
        assert h(x).shape == (1, 3, 72, 72)


def test_siamese(feats, last_only):
    h = head("siamese", embedding_dim=32)
    e = h(feats)
    assert e.shape == (N, 32)
    assert torch.allclose(e.norm(dim=1), torch.ones(N), atol=1e-5)
    sim = h.similarity(e, e)
    assert sim.shape == (N,) and torch.allclose(sim, torch.ones(N), atol=1e-5)
    assert head("siamese", [512], [(2, 2)])(last_only).shape == (N, 128)


# --------------------------------------------------------------------------------------------------
# Errors and meta device
# --------------------------------------------------------------------------------------------------


def test_builder_errors():
    with pytest.raises(ValueError, match="Unknown head"):
        head("retinanet")
    with pytest.raises(ValueError, match="assembled as a whole"):
        head("faster_rcnn")
    with pytest.raises(ValueError, match="one per level"):
        head("yolo", sizes=SIZES[:2])
    with pytest.raises(ValueError, match="Unknown pooling"):
        head("classification", pooling="max")


@pytest.mark.parametrize("kind", HEAD_KINDS)
def test_builds_and_runs_on_meta(kind):
    with torch.device("meta"):
        h = build_head(kind, CHANNELS, input_size=INPUT, feature_sizes=SIZES, num_classes=20)
    assert all(p.is_meta for p in h.parameters())
    out = h(levels(device="meta"))
    tensors = list(out.values()) if isinstance(out, dict) else [out]
    assert all(t.is_meta for t in tensors)
    expected = {
        "classification": [(N, 20)],
        "regression": [(N, 1)],
        "yolo": [(N, 3, hh, ww, 25) for hh, ww in SIZES],
        "ssd": [(N, 336, 4), (N, 336, 21)],
        "fcn": [(N, 20, *INPUT)],
        "unet": [(N, 20, *INPUT)],
        "siamese": [(N, 128)],
    }[kind]
    assert [tuple(t.shape) for t in tensors] == expected


# --------------------------------------------------------------------------------------------------
# The homework trio
# --------------------------------------------------------------------------------------------------

TRIO = (encoder_decoder, pool_unpool, unet)


def test_trio_shapes_and_distinct_sizes():
    x = torch.randn(N, 3, 128, 128)
    counts = set()
    for builder in TRIO:
        m = builder().eval()
        with torch.no_grad():
            assert m(x).shape == (N, 3, 128, 128)
        counts.add(n_params(m))
    assert len(counts) == 3


def test_trio_other_sizes_and_classes():
    x = torch.randn(1, 1, 72, 72)  # 72 = 8·9: odd sizes deep in the network
    for builder in TRIO:
        assert builder(num_classes=2, in_channels=1, widths=(8, 16, 32))(x).shape == (1, 2, 72, 72)


@pytest.mark.parametrize("builder", TRIO)
def test_trio_on_meta(builder):
    with torch.device("meta"):
        m = builder()
    y = m(torch.randn(N, 3, 128, 128, device="meta"))  # includes MaxUnpool2d for pool_unpool
    assert y.is_meta and y.shape == (N, 3, 128, 128)


def test_trio_registry_matches_classic_shape():
    assert list(SEGMENTATION_MODELS) == ["seg_encoder_decoder", "seg_pool_unpool", "seg_unet"]
    keys = set(next(iter(CLASSIC_MODELS.values())))
    for name, info in SEGMENTATION_MODELS.items():
        assert set(info) == keys, name
        assert info["input_size"] == (3, 128, 128) and info["num_classes"] == 3
        assert isinstance(info["year"], int) and info["description"] and "\n" not in info["description"]
    assert SEGMENTATION_MODELS["seg_unet"]["builder"] is unet


def test_roi_pooling_worked_example():
    from explorer.heads import roi_pool

    fmap = [[(r * 37 + c * 11) % 17 for c in range(8)] for r in range(8)]
    # The whole 8×8 map pooled to 2×2: each output is the maximum of one 4×4 quadrant.
    quadrant_max = [[max(fmap[r][c] for r in range(i, i + 4) for c in range(j, j + 4)) for j in (0, 4)]
                    for i in (0, 4)]
    assert roi_pool(fmap, (0, 0, 7, 7)) == quadrant_max
    # A box of 4×4 cells at (2, 2): four 2×2 sub-windows.
    sub = [[max(fmap[r][c] for r in range(i, i + 2) for c in range(j, j + 2)) for j in (2, 4)] for i in (2, 4)]
    assert roi_pool(fmap, (2, 2, 5, 5)) == sub
