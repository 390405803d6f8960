"""Compare aligns stages by the stride of the map they produce, not by name (issue 14, item 3).

mobilenet_v2 and efficientnet_b0 both call their stages features.0 … features.N, but features.3 is a 56×56 map in
one and a 28×28 map in the other; the rows here are strides and each model names the stage that produces that
stride last. The expected names come from the analysis at 224 (output shapes, read off `Analysis.stages`):

    mobilenet_v2     features.0–1 112² · 2–3 56² · 4–6 28² · 7–13 14² · 14–18 7²
    efficientnet_b0  features.0–1 112² · 2 56² · 3 28² · 4–5 14² · 6–8 7²
    resnet18         conv1, bn1, relu 112² · maxpool, layer1 56² · layer2 28² · layer3 14² · layer4 7²
"""
from __future__ import annotations

import pytest

from apptest_pages import open_page
from explorer import analyze
from explorer.compare import align, stages_by_stride

MODELS = ("mobilenet_v2", "efficientnet_b0", "resnet18")


@pytest.fixture(scope="module")
def analyses():
    return {m: analyze(m, (3, 224, 224), training_memory=False) for m in MODELS}


def test_stages_line_up_by_stride_not_by_name(analyses):
    strides, per = align(analyses)
    assert strides == [(2, 2), (4, 4), (8, 8), (16, 16), (32, 32)]
    last = {m: [per[m][s].stage for s in strides] for m in MODELS}
    assert last == {
        "mobilenet_v2": ["features.1", "features.3", "features.6", "features.13", "features.18"],
        "efficientnet_b0": ["features.1", "features.2", "features.3", "features.5", "features.8"],
        "resnet18": ["relu", "layer1", "layer2", "layer3", "layer4"],
    }
    first = {m: [per[m][s].first for s in strides] for m in MODELS}
    assert first["mobilenet_v2"] == ["features.0", "features.2", "features.4", "features.7", "features.14"]
    assert first["resnet18"] == ["conv1", "maxpool", "layer2", "layer3", "layer4"]
    assert [per["mobilenet_v2"][s].resolution for s in strides] == [(112, 112), (56, 56), (28, 28), (14, 14), (7, 7)]
    assert [per["efficientnet_b0"][s].channels for s in strides] == [16, 24, 40, 112, 1280]
    assert [per["mobilenet_v2"][s].rf for s in strides] == [(7, 7), (19, 19), (59, 59), (267, 267), (491, 491)]


def test_costs_so_far_end_where_the_classifier_starts(analyses):
    per = stages_by_stride(analyses["mobilenet_v2"])
    # features.0 (928 params, 10,838,016 MACs) + features.1 (896, 10,035,200).
    assert (per[(2, 2)].params_so_far, per[(2, 2)].macs_so_far) == (928 + 896, 10_838_016 + 10_035_200)
    # At stride 32 everything but the classifier has run: 1280 × 1000 + 1000 = 1,281,000 parameters for the two
    # mobile nets, 512 × 1000 + 1000 = 513,000 for resnet18's fc.
    so_far = {m: stages_by_stride(a)[(32, 32)].params_so_far for m, a in analyses.items()}
    assert so_far == {"mobilenet_v2": 3_504_872 - 1_281_000, "efficientnet_b0": 5_288_548 - 1_281_000,
                      "resnet18": 11_689_512 - 513_000}


def test_global_pooling_is_not_a_stride_row(analyses):
    # efficientnet_b0's and resnet18's avgpool make 1×1 maps (stride "224"); they are not a level of the pyramid.
    assert all(max(s) <= 32 for m in MODELS for s in stages_by_stride(analyses[m]))


def test_compare_page_shows_the_aligned_table():
    at = open_page("compare")
    at.multiselect(key="compare.chosen").set_value([f"model: {m}" for m in MODELS]).run()
    assert not at.exception and not at.error
    table = at.dataframe[1].value
    assert list(table.index) == ["112×112 · stride 2", "56×56 · stride 4", "28×28 · stride 8",
                                 "14×14 · stride 16", "7×7 · stride 32"]
    assert table["mobilenet_v2"].tolist() == [
        "features.1 · 16 ch · RF 7", "features.3 · 24 ch · RF 19", "features.6 · 32 ch · RF 59",
        "features.13 · 96 ch · RF 267", "features.18 · 1,280 ch · RF 491"]
    assert table["efficientnet_b0"].tolist() == [
        "features.1 · 16 ch · RF global (7)", "features.2 · 24 ch · RF global (19)",
        "features.3 · 40 ch · RF global (67)", "features.5 · 112 ch · RF global (339)",
        "features.8 · 1,280 ch · RF global (851)"]
    assert table["resnet18"].tolist() == [
        "relu · 64 ch · RF 7", "layer1 · 64 ch · RF 43", "layer2 · 128 ch · RF 99", "layer3 · 256 ch · RF 211",
        "layer4 · 512 ch · RF 435"]
    so_far = at.dataframe[2].value  # parameters · MACs so far, in K / M / G
    assert list(so_far.index) == list(table.index)
    assert so_far["mobilenet_v2"].tolist()[0] == "1.82 K · 20.87 M"  # 1,824 parameters, 20,873,216 MACs
    assert so_far["resnet18"].tolist()[-1] == "11.18 M · 1.81 G"  # 11,176,512 and 1,813,561,344
    assert "Δ" not in so_far.columns  # a difference only between two


def test_a_stage_that_downsamples_five_times_is_opened():
    # VGG16's one `features` Sequential: conv/relu ×2, pool (index 4), ×2, pool (9), ×3, pool (16), ×3, pool (23),
    # ×3, pool (30); then avgpool (7×7 → 7×7 at 224). Each stride names the layer that produces it last.
    per = stages_by_stride(analyze("vgg16", (3, 224, 224), training_memory=False))
    assert list(per) == [(1, 1), (2, 2), (4, 4), (8, 8), (16, 16), (32, 32)]
    assert [e.stage for e in per.values()] == ["features.3", "features.8", "features.15", "features.22",
                                               "features.29", "avgpool"]
    assert [e.first for e in per.values()] == ["features.0", "features.4", "features.9", "features.16",
                                               "features.23", "features.30"]
    assert [e.channels for e in per.values()] == [64, 128, 256, 512, 512, 512]


def test_the_command_line_aligns_by_stride_too():
    import contextlib
    import io

    from explorer.__main__ import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["compare", "mobilenet_v2", "efficientnet_b0", "resnet18", "--input", "224"]) == 0
    lines = [line.replace(" ", "") for line in out.getvalue().splitlines()]
    assert "|stride|mobilenet_v2|efficientnet_b0|resnet18|" in lines
    assert "|8|features.6(32ch,RF59)|features.3(40ch,RFglobal(67))|layer2(128ch,RF99)|" in lines
    assert "|32|features.18(1280ch,RF491)|features.8(1280ch,RFglobal(851))|layer4(512ch,RF435)|" in lines


def test_a_model_without_a_feature_map_is_said_not_lined_up():
    at = open_page("compare")
    at.multiselect(key="compare.chosen").set_value(["model: resnet18", "model: raft_small"]).run()
    assert not at.exception and not at.error
    assert any(m.value.startswith("raft_small: no stage outputs one C×H×W feature map") for m in at.info)
    table = at.dataframe[1].value
    assert table["raft_small"].tolist() == ["—"] * 5 and table["resnet18"].tolist()[-1] == "layer4 · 512 ch · RF 435"
    assert at.dataframe[2].value["Δ"].tolist() == ["—"] * 5
