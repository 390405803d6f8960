"""explorer.predict: the timed inference pass with per-task post-processing, on a shared model."""
from __future__ import annotations

import gc
import weakref

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from explorer import catalog, compose
from explorer import predict as P
from explorer.network import Network
from explorer.predict import Prediction, available_devices, choose_device, device_label, predict
from explorer.samples import digits
from explorer.spec import ArchitectureSpec

# A small custom backbone keeps every composition fast on two CPU cores.
TINY = dict(name="custom", stages=[dict(block="conv", repeats=1, width=16, stride=2),
                                   dict(block="residual", repeats=1, width=24, stride=2),
                                   dict(block="residual", repeats=1, width=32, stride=2),
                                   dict(block="residual", repeats=1, width=32, stride=2)])


def composed(task: str, head: str, size: int = 64, neck: str = "none", **settings) -> tuple[nn.Module, Network]:
    """A composition's model as the app shares it, and its Network (the task, classes and input predict uses)."""
    torch.manual_seed(0)
    spec = dict(task=task, input=dict(height=size, width=size), backbone=TINY, neck=dict(kind=neck),
                head=dict(kind=head, **settings))
    return compose.build(spec).eval().requires_grad_(False), Network.composition(ArchitectureSpec.from_dict(spec))


def one_sentence(msg: str) -> bool:
    return msg.endswith(".") and "\n" not in msg and "Traceback" not in msg and msg.count(". ") == 0


@pytest.fixture(scope="module")
def lenet():
    m = catalog.build("lenet5")
    m.load_state_dict(load_file("assets/weights/lenet5_digits.safetensors"))
    return m.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def held_out():
    x, y, split = digits()
    return x[split["test"]], y[split["test"]]


# -- classification on real data -------------------------------------------------------------------------------------
def test_trained_lenet_on_held_out_digits(lenet, held_out):
    x, y = held_out
    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    p = predict(lenet, x, "cpu", labels=names, batch_size=64)
    assert isinstance(p, Prediction) and p.task == "classification" and p.device == "cpu" and p.batch_size == 64
    assert len(p.top) == len(x) == p.probabilities.shape[0] and p.probabilities.shape[1] == 10
    accuracy = sum(t[0][0] == int(label) for t, label in zip(p.top, y)) / len(y)
    assert accuracy >= 0.95  # the checkpoint's held-out accuracy is 0.9917
    for row in p.top:
        probs = [v for _, _, v in row]
        assert len(row) == 5 and probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-6
        assert all(names[i] == label for i, label, _ in row)
    assert p.probabilities.dtype == torch.float32 and p.probabilities.device.type == "cpu"
    assert torch.allclose(p.probabilities.sum(1), torch.ones(len(x)), atol=1e-5)
    assert p.labels == names and p.latency_ms > 0 and p.throughput > 0
    assert p.throughput == pytest.approx(1000 / p.latency_ms, rel=1e-6)


def test_predictions_equal_a_plain_forward_whatever_the_input_form(lenet, held_out):
    x = held_out[0][:40]
    with torch.inference_mode():
        logits = lenet(x)
    p = predict(lenet, x, "cpu", batch_size=16, top_k=3)  # three chunks: 16 + 16 + 8
    assert torch.allclose(p.raw, logits, atol=1e-5)
    assert torch.allclose(p.probabilities, logits.softmax(1), atol=1e-6)
    assert [[i for i, _, _ in row] for row in p.top] == logits.topk(3, 1).indices.tolist()
    assert torch.equal(p.top_indices, logits.topk(3, 1).indices) and p.top_indices.shape == (40, 3)
    assert [[v for _, _, v in row] for row in p.top] == p.top_probabilities.tolist()
    assert torch.allclose(p.top_probabilities, logits.softmax(1).topk(3, 1).values, atol=1e-6)
    assert p.labels == [str(i) for i in range(10)] and p.top[0][0][1] == str(p.top[0][0][0])
    listed = predict(lenet, list(x[:4]), "cpu")
    single = predict(lenet, x[0], "cpu", top_k=50)  # k is capped at the number of classes
    assert torch.allclose(listed.probabilities, p.probabilities[:4], atol=1e-6)
    assert single.probabilities.shape == (1, 10) and len(single.top[0]) == 10
    assert torch.allclose(single.probabilities[0], p.probabilities[0], atol=1e-6)
    assert predict(lenet, x[:4], "cpu", warmup=True).task == "classification"


def test_the_shared_model_is_left_as_it_was(lenet, held_out):
    params = list(lenet.parameters())
    pointers = [t.data_ptr() for t in params]
    before = {k: v.clone() for k, v in lenet.state_dict().items()}
    predict(lenet, held_out[0][:8], None)
    predict(lenet, held_out[0][:8], "cpu", batch_size=3, warmup=True)
    assert not lenet.training and all(not m.training for m in lenet.modules())
    assert all(not (m._forward_hooks or m._forward_pre_hooks or m._backward_hooks) for m in lenet.modules())
    now = list(lenet.parameters())
    assert all(a is b for a, b in zip(params, now)) and [t.data_ptr() for t in now] == pointers
    assert all(not t.requires_grad and t.device.type == "cpu" for t in now)
    assert all(torch.equal(before[k], v) for k, v in lenet.state_dict().items())
    assert lenet not in P._COPIES  # on the CPU the shared model is used itself, never copied


def test_a_model_in_training_mode_is_refused_not_switched():
    m = catalog.build("lenet5")  # training mode
    with pytest.raises(ValueError, match="eval mode"):
        predict(m, torch.randn(1, 1, 32, 32), "cpu")
    assert m.training


# -- one composition per task ----------------------------------------------------------------------------------------
def test_composed_classification_uses_the_spec_task_and_labels():
    m, net = composed("classification", "classification", num_classes=4)
    x = torch.randn(3, 3, 64, 64)
    p = predict(m, x, "cpu", labels=["cat", "dog", "cow", "hen"], top_k=5, network=net)
    assert p.task == "classification" and len(p.top[0]) == 4 and p.top[0][0][1] in ("cat", "dog", "cow", "hen")
    with torch.inference_mode():
        assert torch.allclose(p.probabilities, m(x).softmax(1), atol=1e-6)
    with pytest.raises(ValueError, match="4 classes but 2 labels"):
        predict(m, x, "cpu", labels=["cat", "dog"], network=net)


def test_composed_regression():
    m, net = composed("regression", "regression", outputs=3)
    x = torch.randn(5, 3, 64, 64)
    p = predict(m, x, "cpu", batch_size=2, network=net)
    assert p.task == "regression" and p.values.shape == (5, 3) and p.top is None and p.probabilities is None
    with torch.inference_mode():
        assert torch.allclose(p.values, m(x), atol=1e-5)


def test_yolo_detection_boxes_lie_within_the_image():
    m, net = composed("detection", "yolo", size=128, neck="fpn", num_classes=5)
    x = torch.randn(2, 3, 128, 128)
    p = predict(m, x, "cpu", score_threshold=0.0, network=net)
    assert p.task == "detection" and len(p.detections) == 2 and p.labels == [str(i) for i in range(5)]
    with torch.inference_mode():
        expected = m.decode(m(x), conf_threshold=0.0)
    for d, e in zip(p.detections, expected):
        assert set(d) == {"boxes", "scores", "labels"} and d["boxes"].shape == (len(d["scores"]), 4)
        assert len(d["scores"]) > 0 and (d["scores"] > 0).all()
        b = d["boxes"]
        assert (b >= 0).all() and (b[:, [0, 2]] <= 128).all() and (b[:, [1, 3]] <= 128).all()
        assert (b[:, 2] >= b[:, 0]).all() and (b[:, 3] >= b[:, 1]).all()
        assert ((d["labels"] >= 0) & (d["labels"] < 5)).all()
        assert torch.allclose(d["boxes"], e["boxes"]) and torch.equal(d["labels"], e["labels"])
    strict = predict(m, x, "cpu", score_threshold=0.3, network=net)
    assert all((d["scores"] > 0.3).all() for d in strict.detections)
    assert sum(len(d["scores"]) for d in strict.detections) <= sum(len(d["scores"]) for d in p.detections)


def test_two_stage_detection_is_filtered_and_labelled_from_zero():
    m, net = composed("detection", "faster_rcnn", size=96, neck="fpn", num_classes=3)
    x = torch.rand(2, 3, 96, 96)
    with torch.inference_mode():
        expected = m(x)
    for threshold in (0.0, 0.4):
        p = predict(m, x, "cpu", score_threshold=threshold, network=net)
        for d, e in zip(p.detections, expected):
            keep = e["scores"] > threshold
            assert torch.allclose(d["scores"], e["scores"][keep]) and torch.equal(d["labels"], e["labels"][keep] - 1)
            assert ((d["labels"] >= 0) & (d["labels"] < 3)).all()
    assert p.labels == ["0", "1", "2"]


@pytest.mark.parametrize("head", ["fcn", "unet"])
def test_segmentation_masks_and_class_fractions(head):
    m, net = composed("segmentation", head, num_classes=6)
    x = torch.randn(3, 3, 64, 64)
    p = predict(m, x, "cpu", batch_size=2, network=net)
    assert p.task == "segmentation" and p.masks.shape == (3, 64, 64) and p.masks.dtype == torch.int64
    with torch.inference_mode():
        assert torch.equal(p.masks, m(x).argmax(1))
    for mask, fractions in zip(p.masks, p.class_fractions):
        assert sum(fractions.values()) == pytest.approx(1.0)
        assert set(fractions) == set(mask.unique().tolist())
        assert all(f == pytest.approx((mask == c).float().mean().item()) for c, f in fractions.items())
    assert len(p.labels) == 6


def test_siamese_similarity_matrix():
    m, net = composed("similarity", "siamese", embedding_dim=16)
    x = torch.randn(4, 3, 64, 64)
    x[3] = x[0]
    p = predict(m, x, "cpu", network=net)
    assert p.task == "similarity" and p.embeddings.shape == (4, 16) and p.similarity.shape == (4, 4)
    s = p.similarity
    assert torch.allclose(s.diagonal(), torch.ones(4), atol=1e-5) and torch.equal(s, s.T)
    assert (s.abs() <= 1).all() and s[0, 3] == pytest.approx(1.0, abs=1e-5)
    with torch.inference_mode():
        e = m(x)
        assert torch.allclose(p.embeddings, e, atol=1e-5)
        assert s[0, 1] == pytest.approx(m.similarity(x[:1], x[1:2]).item(), abs=1e-5)


def test_task_from_the_output_without_a_spec():
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 1)).eval()
    x = torch.randn(2, 3, 16, 16)
    p = predict(m, x, "cpu")
    assert p.task == "outputs" and p.raw.shape == (2, 1) and p.top is None
    assert predict(m, x, "cpu", task="regression").values.shape == (2, 1)
    with pytest.raises(ValueError, match="Unknown task"):
        predict(m, x, "cpu", task="captioning")

    class TwoOutputs(nn.Module):  # anything else: the raw output, joined across chunks
        def forward(self, x):
            return {"mean": x.mean((1, 2, 3)), "max": (x.amax((1, 2, 3)), x.shape[0])}

    x = torch.randn(5, 3, 8, 8, dtype=torch.float64)  # float64 for a model without parameters: kept as it is
    p = predict(TwoOutputs().eval(), x, "cpu", batch_size=2)
    assert p.task == "outputs" and torch.allclose(p.raw["mean"], x.mean((1, 2, 3)).float())
    assert torch.allclose(p.raw["max"][0], x.amax((1, 2, 3)).float()) and p.raw["max"][1] == [2, 2, 1]


def test_a_float64_batch_is_cast_to_the_model_dtype(lenet, held_out):
    x = held_out[0][:6]
    assert torch.allclose(predict(lenet, x.double(), "cpu").probabilities, predict(lenet, x, "cpu").probabilities)


# -- errors a person can cause ---------------------------------------------------------------------------------------
def test_wrong_input_size_is_one_sentence(lenet):
    with pytest.raises(ValueError) as e:
        predict(lenet, torch.randn(2, 3, 224, 224), "cpu", network=Network.catalog("lenet5"))
    assert str(e.value) == "lenet5 expects 1×32×32 images; got 3×224×224."
    with pytest.raises(ValueError) as e:
        predict(lenet, torch.randn(1, 64, 64), "cpu", network=Network.catalog("lenet5"))
    assert str(e.value) == "lenet5 expects 1×32×32 images; got 1×64×64." and e.value.__cause__ is None
    m, net = composed("detection", "yolo", size=128, neck="fpn", num_classes=5)
    for shape in ((1, 128, 128), (3, 96, 96)):
        with pytest.raises(ValueError) as e:
            predict(m, torch.randn((2,) + shape), "cpu", network=net)
        msg = str(e.value)
        assert one_sentence(msg) and "expects 3×128×128 images" in msg and "×".join(map(str, shape)) in msg
    with pytest.raises(ValueError) as e:
        predict(lenet, [torch.randn(1, 32, 32), torch.randn(1, 28, 28)], "cpu")
    assert one_sentence(str(e.value)) and "same size" in str(e.value)
    with pytest.raises(ValueError, match="float"):
        predict(lenet, torch.zeros(1, 1, 32, 32, dtype=torch.uint8), "cpu")


def test_other_errors_are_not_disguised():
    class Broken(nn.Module):
        def forward(self, x):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        predict(Broken().eval(), torch.randn(1, 3, 8, 8), "cpu")


# -- devices ---------------------------------------------------------------------------------------------------------
def fake_devices(monkeypatch, cuda: bool, mps: bool):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: int(cuda))
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)


@pytest.mark.parametrize("cuda,mps,expected", [(True, True, ["cuda", "mps", "cpu"]), (True, False, ["cuda", "cpu"]),
                                               (False, True, ["mps", "cpu"]), (False, False, ["cpu"])])
def test_device_order_and_auto_choice(monkeypatch, cuda, mps, expected):
    fake_devices(monkeypatch, cuda, mps)
    assert available_devices() == expected
    assert choose_device() == choose_device("auto") == torch.device(expected[0])
    assert choose_device("cpu") == torch.device("cpu")
    for d in expected:
        assert choose_device(d).type == d


def test_an_unavailable_device_is_one_sentence_naming_the_available_ones(monkeypatch):
    fake_devices(monkeypatch, False, True)
    with pytest.raises(ValueError) as e:
        choose_device("cuda")
    assert str(e.value) == ("CUDA is not available on this machine; choose auto or one of the available devices: "
                            "mps, cpu.")
    fake_devices(monkeypatch, False, False)
    with pytest.raises(ValueError) as e:
        choose_device("mps")
    assert one_sentence(str(e.value)) and str(e.value).endswith("devices: cpu.")
    with pytest.raises(ValueError) as e:
        choose_device("tpu")
    assert one_sentence(str(e.value)) and "cpu" in str(e.value)
    with pytest.raises(ValueError):
        predict(catalog.build("lenet5").eval(), torch.randn(1, 1, 32, 32), "cuda")


def test_device_labels(monkeypatch):
    n = torch.get_num_threads()
    assert device_label("cpu") == f"CPU ({n} thread{'s' if n != 1 else ''})"
    assert device_label(torch.device("mps")) == "Apple MPS"
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=None: "NVIDIA A100-SXM4-80GB")
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert device_label("cuda") == "CUDA — NVIDIA A100-SXM4-80GB (bf16 autocast)"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert device_label("cuda:0") == "CUDA — NVIDIA A100-SXM4-80GB (fp16 autocast)"


def test_a_device_copy_is_made_once_per_model_and_dies_with_it():
    # The meta device stands in for a GPU: the copy path is the same (deepcopy, then .to(device)).
    m, _ = composed("classification", "classification", num_classes=3)
    before = len(P._COPIES)
    meta = torch.device("meta")
    first = P._model_on(m, meta)
    assert first is not m and first is P._model_on(m, meta) and not first.training
    assert all(t.device.type == "meta" for t in first.parameters())
    assert all(t.device.type == "cpu" for t in m.parameters())  # the shared model did not move
    assert P._model_on(m, torch.device("cpu")) is m
    gone = weakref.ref(first)
    del m, first
    gc.collect()
    assert gone() is None and len(P._COPIES) == before


@pytest.mark.parametrize("device", available_devices())
def test_every_available_device_agrees_with_the_cpu(lenet, held_out, device):
    x = held_out[0][:64]
    cpu = predict(lenet, x, "cpu")
    p = predict(lenet, x, device, warmup=True)
    assert p.device == device
    # Autocast (bf16 / fp16) on CUDA: compare the decisions, not the last digits.
    same = sum(a[0][0] == b[0][0] for a, b in zip(p.top, cpu.top)) / len(x)
    assert same >= 0.95 and torch.allclose(p.probabilities, cpu.probabilities, atol=0.05)


def test_a_rebuilt_model_has_the_same_random_weights():
    # The page cache may drop a model and build it again; results cached for it (Grad-CAM maps, say) must still
    # belong to it, and one link shows everyone the same untrained predictions.
    spec = ArchitectureSpec.from_dict({"input": {"channels": 3, "height": 64, "width": 64},
                                       "backbone": {"name": "resnet18"},
                                       "head": {"kind": "classification", "num_classes": 7}})
    before = torch.random.get_rng_state()
    for network in (Network.catalog("lenet5"), Network.composition(spec)):
        a, b = network.build().model, network.build().model
        assert a.state_dict().keys() == b.state_dict().keys()
        assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert torch.equal(torch.random.get_rng_state(), before)  # the caller's random stream is left alone
    other = Network.composition(ArchitectureSpec.from_json(spec.to_json().replace('"num_classes":7', '"num_classes":8'))
                                ).build().model
    first = next(iter(a.state_dict()))
    assert not torch.equal(other.state_dict()[first], a.state_dict()[first])
