"""explorer.network: one Network type for what the run pages run — a composition, a catalog model, a ready model —
with its builder, preprocessing, classes, input, task, weights provenance, spec and cache key."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import save

from explorer import catalog, compose, weights
from explorer.images import sample_image
from explorer.network import MAX_RUN_MACS, Network, feature_layers
from explorer.predict import predict
from explorer.samples import digits
from explorer.spec import ArchitectureSpec

LENET_WEIGHTS = Path(__file__).resolve().parents[1] / "assets" / "weights" / "lenet5_digits.safetensors"
SPEC = ArchitectureSpec.from_dict({"input": {"channels": 3, "height": 96, "width": 96},
                                   "backbone": {"name": "resnet18"}, "neck": {"kind": "se"},
                                   "head": {"kind": "classification", "num_classes": 7}})


@pytest.fixture(scope="module")
def held_out():
    x, y, split = digits()
    return x[split["test"]], y[split["test"]]


def test_a_catalog_model_as_published():
    net = Network.catalog("lenet5")
    assert (net.kind, net.title, net.input_shape, net.task, net.num_classes) == (
        "catalog", "lenet5", (1, 32, 32), "classification", 10)
    assert net.classes is None and net.spec is None and net.catalog_name == net.backbone_name == "lenet5"
    assert (net.provenance, net.weights_label, net.fully_trained) == ("untrained", "untrained (random weights)", False)
    assert net.cache_key == "catalog|lenet5|random" and net.headline == "Catalog model: lenet5"
    # the homework encoder–decoders are catalog models with per-pixel classes
    assert Network.catalog("seg_unet").task == "segmentation"
    with pytest.raises(ValueError,
                       match=r"^There is no catalog model called 'lenet6'; pick one on Layers or the Zoo\.$"):
        Network.catalog("lenet6")


def test_a_ready_model_reads_the_held_out_digits(held_out):
    net = Network.ready("lenet5_digits")
    assert net.title == "LeNet-5 trained on digits" and net.headline == "Ready model: LeNet-5 trained on digits"
    assert net.classes == tuple("0123456789") and net.dataset == "digits" and net.catalog_name == "lenet5"
    assert (net.provenance, net.weights_label, net.fully_trained) == ("pretrained",
                                                                      "trained: lenet5_digits.safetensors", True)
    assert net.cache_key == "ready|lenet5_digits|trained"
    assert net.description.endswith("99.2% correct on the held-out 20%.")
    built = net.build()
    assert built.notes == () and not built.model.training
    assert not any(p.requires_grad for p in built.model.parameters())
    x, y = held_out
    p = predict(built.model, x, "cpu", network=net)  # task and class names from the network
    assert p.task == "classification" and p.labels == list("0123456789")
    assert sum(top[0][1] == str(int(label)) for top, label in zip(p.top, y)) == 357 and len(y) == 360
    assert built.label_of(3) == "3" and built.label_of(10) == "class 10"
    # a photo goes the way of an uploaded digit: its darker-than-ground "ink" is cropped and drawn as the training
    # digits were
    assert net.preprocess(sample_image("chelsea"))[1] == (
        "grayscale → inverted (dark ink on a light ground; the training digits are light on dark) → the ink cropped "
        "and scaled to fill a 32×32 box, as high as the box (as the scikit-learn digits were drawn) → strokes "
        "thickened by 2 px a side (to about 5 px, as the training digits' pen) → averaged over 4×4 blocks to 8×8 (as "
        "they were), the strongest block 1 → upsampled to 32×32 (bilinear) → normalise with mean 0.5 / std 0.5")
    blank = Image.new("RGB", (40, 30), (200, 200, 200))  # no ink at all: the picture is only resized
    assert net.preprocess(blank)[1] == "grayscale → resize to 32×32 (bilinear) → normalise with mean 0.5 / std 0.5"
    with pytest.raises(ValueError, match="There is no ready model called 'lenet'; choose one of lenet5_digits, "
                                         "gap_cnn_digits_canvas."):
        Network.ready("lenet")


def test_a_composition_carries_its_spec_and_layout():
    net = Network.composition(SPEC)
    assert net.spec is SPEC  # the object itself, never JSON parsed again
    assert (net.title, net.input_shape, net.task, net.num_classes) == (
        "resnet18 → SE → classification at 3×96×96", (3, 96, 96), "classification", 7)
    assert net.headline == "Your composition: resnet18 → SE → classification at 3×96×96"
    assert net.cache_key == f"composition|{SPEC.to_json()}|random" and net.noun == "composition"
    assert net.backbone_name == "resnet18" and net.catalog_name is None
    body = [compose.stage_path(s) for s in ("conv1", "maxpool", "layer1", "layer2", "layer3", "layer4")]
    assert net.stage_paths() == body + ["neck", "head"]
    assert net.parameter_count() == 11_213_415 and net.mac_count() == 333_139_456
    built = net.build()
    assert sum(p.numel() for p in built.model.parameters()) == 11_213_415
    stages, every = feature_layers(net, built.model)
    assert stages == [(body[0], (64, 48, 48)), (body[1], (64, 24, 24)), (body[2], (64, 24, 24)),
                      (body[3], (128, 12, 12)), (body[4], (256, 6, 6)), (body[5], (512, 3, 3))]
    x, steps = net.preprocess(sample_image("chelsea"))
    assert x.shape == (1, 3, 96, 96)
    assert steps == ("resize shorter side to 96 (bilinear) → centre crop 96×96 → scale to [0, 1] → normalise with "
                     "ImageNet mean/std")
    # a custom backbone has no catalog origin and no published weights
    custom = Network.composition(ArchitectureSpec.from_dict(
        {"input": {"channels": 3, "height": 32, "width": 32},
         "backbone": {"name": "custom", "stages": [{"block": "conv", "repeats": 1, "width": 8, "stride": 2}]}}))
    assert custom.backbone_name is None and custom.graph_origins == () and custom.weight_parts == ()
    with pytest.raises(ValueError, match="has no published pretrained weights; upload a weights file for it"):
        custom.with_pretrained()


def test_equal_by_what_it_is_and_which_weights_it_holds():
    a, b = Network.catalog("lenet5"), Network.catalog("lenet5")
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    uploaded = a.with_upload("w.safetensors", LENET_WEIGHTS.read_bytes())
    assert uploaded != a
    assert Network.composition(SPEC) == Network.composition(ArchitectureSpec.from_json(SPEC.to_json()))
    with pytest.raises(ValueError, match="Unknown network kind 'zoo'"):
        Network(**{**{f: getattr(a, f) for f in a.__dataclass_fields__}, "kind": "zoo"})
    with pytest.raises(ValueError, match="Unknown weights provenance 'borrowed'"):
        Network(**{**{f: getattr(a, f) for f in a.__dataclass_fields__}, "provenance": "borrowed"})


def test_uploaded_weights_are_loaded_strictly_at_build(held_out):
    data = LENET_WEIGHTS.read_bytes()
    net = Network.catalog("lenet5").with_upload("lenet5_digits.safetensors", data)
    assert net.provenance == "uploaded" and net.weights_label == "uploaded weights: lenet5_digits.safetensors"
    assert net.cache_key == f"catalog|lenet5|upload:{hashlib.sha256(data).hexdigest()}" and net.fully_trained
    model = net.build().model
    ready = Network.ready("lenet5_digits").build().model
    assert all(torch.equal(v, ready.state_dict()[k]) for k, v in model.state_dict().items())
    x, y = held_out
    assert (predict(model, x, "cpu").top_indices[:, 0] == y).sum() == 357
    # a catalog model's weights into a composition (issue 14: loaded, no longer refused): into the backbone, and
    # the notes say the head stays random
    resnet = Network.composition(ArchitectureSpec.from_dict({"backbone": {"name": "resnet18"}}))
    published = catalog.build("resnet18").state_dict()
    built = resnet.with_upload("resnet18.safetensors", save(published)).build()
    body = built.model.backbone.body.state_dict()
    assert all(torch.equal(body[k], v) for k, v in published.items() if not k.startswith("fc."))
    assert "the head keeps random weights (untrained)" in built.notes


def test_pretrained_weights_from_torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    target = weights.cache_dir() / Path(weights.weights_entry("resnet18").url).name
    target.parent.mkdir(parents=True)
    torch.manual_seed(3)
    published = catalog.build("resnet18").state_dict()
    torch.save(published, target)

    net = Network.catalog("resnet18").with_pretrained()
    assert (net.provenance, net.weights_key, net.weights_label) == (
        "pretrained", "pretrained", "pretrained: ResNet18_Weights.IMAGENET1K_V1")
    assert net.classes == tuple(weights.categories("resnet18")) and len(net.classes) == 1000
    model = net.build().model
    assert all(torch.equal(v, published[k]) for k, v in model.state_dict().items())

    composed = Network.composition(ArchitectureSpec.from_dict(
        {"input": {"channels": 3, "height": 64, "width": 64}, "backbone": {"name": "resnet18", "pretrained": True},
         "head": {"kind": "classification", "num_classes": 5}})).with_pretrained()
    assert composed.weights_label == "pretrained backbone (ResNet18_Weights.IMAGENET1K_V1)"
    assert not composed.fully_trained and composed.classes is None
    built = composed.build()
    assert "the head keeps random weights (untrained)" in built.notes
    assert "2 tensors of resnet18 beyond the chosen stages (such as its classifier) not used" in built.notes
    body = built.model.get_submodule(compose.STAGE_PREFIX.rstrip(".")).state_dict()
    assert len(body) == 120 and all(torch.equal(v, published[k]) for k, v in body.items())
    with pytest.raises(ValueError, match=r"^lenet5 has no published pretrained weights; upload a weights file for "
                                         r"it instead\.$"):
        Network.catalog("lenet5").with_pretrained()


def test_too_large_or_too_slow_to_run_is_one_sentence():
    with pytest.raises(ValueError) as e:
        Network.catalog("vit_h_14").build()
    assert str(e.value) == ("vit_h_14 has 633 M parameters; the pages that run a network take up to 200 M on this "
                            "server, so choose a smaller model (its costs and fields stay on Compose, Layers and "
                            "Receptive fields).")
    slow = Network.composition(ArchitectureSpec.from_dict({"backbone": {"name": "resnet50"},
                                                           "input": {"channels": 3, "height": 1024, "width": 1024}}))
    with pytest.raises(ValueError) as e:
        slow.check_runnable()
    assert str(e.value).startswith("resnet50 → classification at 3×1024×1024 needs 85.4 G multiply-accumulates "
                                   f"per image; the pages that run a network take up to {MAX_RUN_MACS // 10**9} G")


def test_the_grad_cam_scope_and_task_come_from_the_network():
    from explorer.vis import attribution

    net = Network.composition(SPEC)
    model = net.build().model
    # the composition's own layout: Grad-CAM's default is its backbone's last map, not the SE neck after it
    assert attribution.default_target_layer(model, net.input_shape, network=net) == compose.stage_path("layer4")
    assert attribution.default_target_layer(model, net.input_shape).startswith("neck.")  # without it: a neck layer
    regression = Network.composition(SPEC.replace(task="regression", head={"kind": "regression", "outputs": 7}))
    with pytest.raises(ValueError, match="^Saliency needs class scores, but this is a regression model; use a "
                                         "classification model.$"):
        attribution.attribute(regression.build().model, torch.zeros(1, 3, 96, 96), "Saliency", network=regression)
