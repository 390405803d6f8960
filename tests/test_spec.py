"""ArchitectureSpec: exact JSON / URL round trips, and one sentence for every mistake."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from explorer.spec import BLOCKS, HEADS, NECKS, TASKS, ArchitectureSpec, SpecError

ISSUE_EXAMPLE = {
    "task": "detection",
    "input": {"channels": 3, "height": 512, "width": 512},
    "backbone": {"name": "resnet50", "pretrained": False, "frozen_stages": ["conv1", "layer1"],
                 "out_stages": ["layer2", "layer3", "layer4"]},
    "neck": {"kind": "fpn", "width": 256},
    "head": {"kind": "yolo", "num_classes": 20, "anchors_per_cell": 3},
}


def test_issue_example_round_trips_exactly():
    s = ArchitectureSpec.from_dict(ISSUE_EXAMPLE)
    assert json.loads(s.to_json()) == ISSUE_EXAMPLE
    assert ArchitectureSpec.from_json(s.to_json()) == s
    assert ArchitectureSpec.from_url(s.to_url()) == s
    assert s.to_url().replace("-", "").replace("_", "").isalnum()  # URL-safe, no padding
    assert len(s.to_url()) < len(s.to_json())


def test_defaults_fill_in_and_json_is_canonical():
    s = ArchitectureSpec.from_json('{"head": {"kind": "classification", "num_classes": 10}}')
    assert s.to_dict() == {
        "task": "classification", "input": {"channels": 3, "height": 224, "width": 224},
        "backbone": {"name": "resnet18", "pretrained": False, "frozen_stages": []},
        "neck": {"kind": "none"},
        "head": {"kind": "classification", "num_classes": 10, "hidden": [], "dropout": 0.0, "pooling": "gap"},
    }
    assert ArchitectureSpec.from_json(s.to_json()).to_json() == s.to_json()
    assert ArchitectureSpec().to_json() == ArchitectureSpec.from_dict({}).to_json()


def test_custom_backbone_round_trip():
    d = {"task": "classification", "backbone": {"name": "custom", "stages": [
        {"block": "separable", "repeats": 2, "width": 128, "stride": 2},
        {"block": "residual", "repeats": 1, "width": 256, "stride": 1}]}}
    s = ArchitectureSpec.from_dict(d)
    assert s.backbone.stages[0].block == "separable" and s.backbone.stages[1].stride == 1
    assert ArchitectureSpec.from_url(s.to_url()) == s


@pytest.mark.parametrize("data,sentence", [
    ({"task": "painting"}, "'task' must be one of classification, regression, detection, segmentation, "
                           "similarity; got 'painting'."),
    ({"colour": 1}, "'spec' has no setting 'colour'"),
    ({"input": {"height": "big"}}, "'input.height' must be a whole number between 1 and 2,048; got 'big'."),
    ({"input": {"height": 8192, "width": 8192}}, "'input.height' must be between 1 and 2,048; got 8,192."),
    ({"backbone": {"name": "resnet5"}}, "'backbone.name': There is no architecture called 'resnet5'"),
    ({"task": "segmentation", "head": {"kind": "yolo"}},
     "The yolo head does not do segmentation; for segmentation choose fcn or unet, or change the task."),
    ({"task": "segmentation", "backbone": {"out_stages": ["layer4"]}, "head": {"kind": "unet"}},
     "A U-Net decoder needs at least two backbone stages; choose stages 1–4 or pick the FCN head."),
    ({"neck": {"kind": "fpn", "repeats": 2}}, "'neck' has no setting 'repeats'; its settings are: kind, width."),
    ({"head": {"kind": "classification", "anchors_per_cell": 3}}, "'head' has no setting 'anchors_per_cell'"),
    ({"head": {"dropout": 1.5}}, "'head.dropout' must be a number from 0 up to (not including) 1; got 1.5."),
    ({"backbone": {"name": "custom", "stages": [{"block": "transformer"}]}},
     "'backbone.stages[1].block' must be one of"),
    ({"backbone": {"name": "custom", "stages": [{"block": "conv"}] * 200}},
     "A custom backbone may have at most 64 stages; this one has 200."),
    ({"backbone": {"name": "custom", "pretrained": True, "stages": [{"block": "conv"}]}},
     "A custom backbone has no pretrained weights; set 'backbone.pretrained' to false."),
    ({"backbone": {"name": "lenet5", "pretrained": True}}, "There are no pretrained weights for lenet5"),
    # found by the fuzz: a whole encoder–decoder as a backbone crashed torch.fx's cut at a stage
    ({"backbone": {"name": "seg_encoder_decoder"}}, "'backbone.name': seg_encoder_decoder is a whole "
                                                    "encoder–decoder (it outputs a class per pixel), not a backbone"),
    ({"task": "detection", "neck": {"kind": "se"}, "head": {"kind": "faster_rcnn"}},
     "A Faster R-CNN head takes a multi-scale neck (FPN, PANet or BiFPN) or none; change the neck from se."),
])
def test_mistakes_raise_one_sentence_naming_the_field(data, sentence):
    with pytest.raises(SpecError) as e:
        ArchitectureSpec.from_dict(data)
    assert sentence in str(e.value)
    assert "\n" not in str(e.value) and str(e.value)[-1] in ".?"


def test_bad_json_and_bad_links():
    with pytest.raises(SpecError, match="not valid JSON"):
        ArchitectureSpec.from_json("{task:")
    for link in ["", "!!!", "eJzLSM3JyVcozy_KSQEAGgQEXQ", "A" * 30_000]:
        with pytest.raises(SpecError):
            ArchitectureSpec.from_url(link)


# Random JSON-ish values: a spec either parses or raises SpecError with a sentence, nothing else.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 5000) | st.floats(allow_nan=False) | st.text(max_size=12)
    | st.sampled_from(list(TASKS + NECKS + HEADS + BLOCKS) + ["resnet18", "custom", "vgg16"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["task", "input", "backbone", "neck", "head", "kind", "name", "stages", "block",
                         "width", "height", "channels", "repeats", "stride", "num_classes", "out_stages",
                         "frozen_stages", "pretrained", "hidden", "dropout", "pooling", "x"]), children, max_size=5),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_random_input_parses_or_raises_spec_error(data):
    try:
        s = ArchitectureSpec.from_dict(data)
    except SpecError as e:
        assert str(e).endswith(".") or str(e).endswith("?")
        return
    assert ArchitectureSpec.from_json(s.to_json()) == s
