"""explorer.weights: uploads are read safely and loaded strictly, pretrained weights come from torchvision's own
cache (never downloaded by a load), downloads are streamed and hash-checked, and the ready model is accurate.

No test touches the network: urllib's urlopen and torch.hub's downloader are replaced for every test, and
TORCH_HOME points at a fresh temporary directory.
"""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
import socket
import urllib.error
import urllib.request
from collections import Counter

import pytest
import torch
from safetensors.torch import save as save_safetensors
from torch import nn

from explorer import catalog, compose
from explorer import weights as W
from explorer.network import Network
from explorer.spec import ArchitectureSpec

CUSTOM_SPEC = {
    "backbone": {"name": "custom", "stages": [{"block": "residual", "repeats": 1, "width": 16, "stride": 2}]},
    "head": {"kind": "classification", "num_classes": 10},
}


# -- helpers -----------------------------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No network and a private torch hub directory for every test."""
    def no_network(*args, **kwargs):
        raise AssertionError("a test tried to use the network")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))


def pt_bytes(obj, **kwargs) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer, **kwargs)
    return buffer.getvalue()


def seeded_state_dict(name: str, seed: int = 1, **kwargs) -> dict:
    torch.manual_seed(seed)
    return catalog.build(name, **kwargs).state_dict()


def snapshot(model: nn.Module) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


def same_tensors(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def composition(spec: dict) -> Network:
    return Network.composition(ArchitectureSpec.from_dict(spec))


def one_sentence(message: str) -> bool:
    return message.endswith(".") and re.search(r"[.!?]\s+[A-Z]", message[:-1]) is None and "\n" not in message


def refuse(model: nn.Module, data: bytes, filename: str, match: str, network=None) -> W.WeightsError:
    """load_weights must raise WeightsError matching ``match``, in one sentence, leaving the model as it was
    (``network``: the composition the model was built from, as the app passes it)."""
    before = snapshot(model)
    with pytest.raises(W.WeightsError, match=match) as info:
        W.load_weights(model, data, filename, network=network)
    assert one_sentence(str(info.value)), str(info.value)
    assert filename in str(info.value)
    assert same_tensors(model.state_dict(), before), "a failed load changed the model"
    return info.value


@pytest.fixture
def lenet():
    torch.manual_seed(0)
    return catalog.build("lenet5")


@pytest.fixture
def lenet_sd():
    return seeded_state_dict("lenet5", seed=7)


class RunsShell:
    """A pickle payload that, if ever unpickled for real, would create a marker file through the shell."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class RunsPython:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


# -- good files --------------------------------------------------------------------------------------------------
def test_safetensors_into_composed_model():
    torch.manual_seed(3)
    source = compose.build(CUSTOM_SPEC)
    state_dict = source.state_dict()
    torch.manual_seed(4)
    model = compose.build(CUSTOM_SPEC)
    assert not same_tensors(model.state_dict(), state_dict)
    report = W.load_weights(model, save_safetensors(state_dict), "custom.safetensors")
    assert same_tensors(model.state_dict(), state_dict)
    assert report.format == "safetensors" and report.source == "custom.safetensors"
    assert report.tensors == len(state_dict) == 26
    assert report.values == sum(t.numel() for t in state_dict.values())
    assert report.notes == []
    assert report.summary() == f"Loaded 26 tensors ({report.values:,} values) from custom.safetensors."
    assert W.read_state_dict(save_safetensors(state_dict), "custom.safetensors").keys() == state_dict.keys()


def test_pt_zip_and_legacy(lenet, lenet_sd):
    report = W.load_weights(lenet, pt_bytes(lenet_sd), "lenet.pt")
    assert report.format == "PyTorch (weights_only)" and report.tensors == 10
    assert same_tensors(lenet.state_dict(), lenet_sd)
    other = seeded_state_dict("lenet5", seed=8)
    report = W.load_weights(lenet, pt_bytes(other, _use_new_zipfile_serialization=False), "lenet.pth")
    assert report.format == "PyTorch legacy (weights_only)"
    assert same_tensors(lenet.state_dict(), other)


def test_format_is_recognised_by_content_not_name(lenet, lenet_sd):
    W.load_weights(lenet, save_safetensors(lenet_sd), "weights.bin")
    assert same_tensors(lenet.state_dict(), lenet_sd)
    assert W.load_weights(lenet, pt_bytes(lenet_sd), "weights.safetensors").format == "PyTorch (weights_only)"


@pytest.mark.parametrize("key", W.WRAPPER_KEYS)
def test_wrapped_checkpoint(lenet, lenet_sd, key):
    checkpoint = {key: lenet_sd, "epoch": 12, "best_accuracy": 0.97, "optimizer": {"lr": torch.tensor(0.1)}}
    report = W.load_weights(lenet, pt_bytes(checkpoint), "checkpoint.pt")
    assert same_tensors(lenet.state_dict(), lenet_sd)
    assert report.notes == [f"weights taken from the checkpoint's '{key}' entry"]


def test_a_checkpoint_that_contains_itself_is_one_sentence(lenet, lenet_sd):
    nested = {"state_dict": {"model": lenet_sd}}  # two levels, as some trainers write them: fine
    assert len(W.load_weights(lenet, pt_bytes(nested), "nested.pt").notes) == 2
    loop: dict = {}
    loop["state_dict"] = loop  # a pickle may hold a dict inside itself; weights_only loads it
    with pytest.raises(W.WeightsError, match=r"loop\.pt nests its weights more than 4 levels deep"):
        W.load_weights(lenet, pt_bytes(loop), "loop.pt")
    assert same_tensors(lenet.state_dict(), lenet_sd)  # left as the last good load made it


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod.", "_orig_mod.module."])
def test_training_prefixes_removed(lenet, lenet_sd, prefix):
    data = save_safetensors({prefix + k: v for k, v in lenet_sd.items()})
    report = W.load_weights(lenet, data, "ddp.safetensors")
    assert same_tensors(lenet.state_dict(), lenet_sd)
    assert [f"prefix '{p}.' removed" for p in prefix.rstrip(".").split(".")] == report.notes


def test_other_float_precisions_converted_with_note(lenet, lenet_sd):
    half = {k: v.half() if k.startswith("features") else v.to(torch.bfloat16) for k, v in lenet_sd.items()}
    report = W.load_weights(lenet, save_safetensors(half), "half.safetensors")
    assert report.notes == ["4 bfloat16 tensors converted to float32", "6 float16 tensors converted to float32"]
    for k, v in lenet.state_dict().items():
        assert v.dtype == torch.float32 and torch.equal(v, half[k].float())
    report = W.load_weights(lenet, pt_bytes({k: v.double() for k, v in lenet_sd.items()}), "double.pt")
    assert report.notes == ["10 float64 tensors converted to float32"]
    assert same_tensors(lenet.state_dict(), lenet_sd)


# -- files that do not fit ---------------------------------------------------------------------------------------
def test_resnet18_into_resnet34_with_other_classes():
    model = catalog.build("resnet34", num_classes=10)
    e = refuse(model, pt_bytes(seeded_state_dict("resnet18")), "resnet18.pt",
               r"^resnet18\.pt does not fit this model: 96 missing and 2 wrong-shaped tensors \(table below\); "
               r"upload weights saved from this same model\.$")
    assert Counter(r.problem for r in e.mismatches) == {"missing": 96, "wrong shape": 2}
    missing = [r.key for r in e.mismatches if r.problem == "missing"]
    assert missing == sorted(missing) and "layer1.2.conv1.weight" in missing
    assert W.Mismatch("layer1.2.conv1.weight", "missing", "64×64×3×3", "—") in e.mismatches
    assert W.Mismatch("fc.weight", "wrong shape", "10×512", "1000×512") in e.mismatches
    assert W.Mismatch("fc.bias", "wrong shape", "10", "1000") in e.mismatches


def test_resnet34_into_resnet18():
    model = catalog.build("resnet18")
    e = refuse(model, save_safetensors(seeded_state_dict("resnet34")), "resnet34.safetensors",
               r"96 unexpected tensors")
    assert Counter(r.problem for r in e.mismatches) == {"unexpected": 96}
    unexpected = [r.key for r in e.mismatches]
    assert unexpected == sorted(unexpected)
    assert W.Mismatch("layer4.2.bn2.num_batches_tracked", "unexpected", "—", "scalar") in e.mismatches


def test_resnet18_into_custom_composition():
    model = compose.build(CUSTOM_SPEC)
    e = refuse(model, pt_bytes(seeded_state_dict("resnet18")), "resnet18.pt",
               r"^resnet18\.pt does not fit this composition: 26 missing and 122 unexpected tensors \(table below\); "
               r"upload weights saved from this same composition\.$", network=composition(CUSTOM_SPEC))
    assert Counter(r.problem for r in e.mismatches) == {"missing": 26, "unexpected": 122}
    assert [r.problem for r in e.mismatches] == ["missing"] * 26 + ["unexpected"] * 122


@pytest.fixture(scope="module")
def resnet18_composition_sd():
    torch.manual_seed(5)
    return compose.build({"backbone": {"name": "resnet18"}}).state_dict()


@pytest.mark.parametrize("with_classifier", [False, True])
def test_backbone_alone_loads_into_the_backbone(with_classifier):
    # Issue 14: a catalog model's state dict (with or without its classifier) was refused with a hint; it now
    # goes into the composition's backbone, the head keeps its random weights, and the report says both.
    spec = {"backbone": {"name": "resnet18"}}
    model = compose.build(spec)
    head_before = snapshot(model.head)
    file_sd = seeded_state_dict("resnet18")
    if not with_classifier:
        file_sd = {k: v for k, v in file_sd.items() if not k.startswith("fc.")}
    report = W.load_weights(model, save_safetensors(file_sd), "resnet18.safetensors", network=composition(spec))
    assert report.summary() == ("Loaded 120 tensors (11,186,132 values) into the resnet18 backbone from "
                                "resnet18.safetensors; the head stays random.")
    body = model.backbone.body.state_dict()
    assert all(torch.equal(body[k], v) for k, v in file_sd.items() if not k.startswith("fc."))
    assert same_tensors(model.head.state_dict(), head_before)
    unused = "2 tensors of resnet18.safetensors beyond the resnet18 backbone (such as its classifier) not used"
    assert (unused in report.notes) == with_classifier
    assert "the head keeps random weights (untrained)" in report.notes


def test_half_a_backbone_is_refused_with_its_table():
    spec = {"backbone": {"name": "resnet18"}}
    model = compose.build(spec)
    half = {k: v for k, v in seeded_state_dict("resnet18").items() if k.startswith(("conv1.", "bn1.", "layer1."))}
    e = refuse(model, save_safetensors(half), "resnet18.safetensors",
               r"^resnet18\.safetensors does not fit this model: 90 missing tensors \(table below\); upload the "
               r"whole state dict of the resnet18 backbone or weights saved from this same composition\.$",
               network=composition(spec))
    assert len(e.mismatches) == 90


def test_integer_tensors_are_wrong_dtype(lenet, lenet_sd):
    bad = dict(lenet_sd, **{"features.c1.weight": lenet_sd["features.c1.weight"].to(torch.int32),
                            "classifier.output.bias": torch.zeros(10, dtype=torch.bool)})
    e = refuse(lenet, save_safetensors(bad), "int.safetensors", r"2 wrong-dtype tensors")
    assert e.mismatches == [
        W.Mismatch("classifier.output.bias", "wrong dtype", "10 float32", "10 bool"),
        W.Mismatch("features.c1.weight", "wrong dtype", "6×1×5×5 float32", "6×1×5×5 int32"),
    ]


# -- unsafe or unusable files ------------------------------------------------------------------------------------
@pytest.mark.parametrize("payload", [RunsShell, RunsPython])
@pytest.mark.parametrize("packing", ["zip", "legacy", "raw pickle"])
def test_malicious_pickle_refused_and_code_not_run(lenet, lenet_sd, tmp_path, payload, packing):
    proof = tmp_path / "payload-works"
    pickle.loads(pickle.dumps(payload(proof)))  # an ordinary unpickler does run this payload
    assert proof.exists()
    marker = tmp_path / "code-ran"
    obj = dict(lenet_sd, evil=payload(marker))
    if packing == "zip":
        data = pt_bytes(obj)
    elif packing == "legacy":
        data = pt_bytes(obj, _use_new_zipfile_serialization=False)
    else:
        data = pickle.dumps(obj, protocol=2)
    refuse(lenet, data, "evil.pt", r"contains Python objects other than tensors.*model\.state_dict\(\).*safetensors")
    with pytest.raises(W.WeightsError):
        W.read_state_dict(data, "evil.pt")
    assert not marker.exists(), "the pickle's code ran"


@pytest.mark.parametrize("legacy", [False, True])
def test_pickled_module_refused(lenet, legacy):
    data = pt_bytes(catalog.build("lenet5"), _use_new_zipfile_serialization=not legacy)
    refuse(lenet, data, "model.pt", r"^model\.pt is a whole pickled model \(torch\.save\(model\)\).*state_dict\(\)")


def test_truncated_files(lenet, lenet_sd):
    st = save_safetensors(lenet_sd)
    refuse(lenet, st[: len(st) // 2], "cut.safetensors", r"truncated or damaged safetensors file")
    refuse(lenet, st[:20], "cut.safetensors", r"truncated or damaged safetensors file")
    damaged_header = st[:8] + b"{nonsense" + st[17:]
    refuse(lenet, damaged_header, "bad.safetensors", r"truncated or damaged safetensors file")
    zipped = pt_bytes(lenet_sd)
    refuse(lenet, zipped[: len(zipped) // 2], "cut.pt", r"^cut\.pt is truncated or damaged")
    refuse(lenet, zipped[:-30], "cut.pt", r"^cut\.pt is truncated or damaged")
    legacy = pt_bytes(lenet_sd, _use_new_zipfile_serialization=False)
    refuse(lenet, legacy[: len(legacy) // 2], "cut.pth", r"^cut\.pth is truncated or damaged")
    refuse(lenet, legacy[:40], "cut.pth", r"^cut\.pth is truncated or damaged")


def test_empty_oversized_and_unknown_files(lenet, lenet_sd, monkeypatch):
    refuse(lenet, b"", "empty.pt", r"^empty\.pt is empty \(0 bytes\)")
    refuse(lenet, b"hello, these are not weights", "notes.pt", r"neither a safetensors nor a PyTorch weights file")
    monkeypatch.setattr(W, "MAX_UPLOAD_BYTES", 1000)
    refuse(lenet, save_safetensors(lenet_sd), "big.safetensors", r"more than the 0 MB this app accepts")


def test_non_tensor_values_refused(lenet, lenet_sd):
    refuse(lenet, pt_bytes(dict(lenet_sd, epoch=3)), "ckpt.pt", r"holds a non-tensor value \(int\) under 'epoch'")
    refuse(lenet, pt_bytes([t for t in lenet_sd.values()]), "list.pt", r"holds a list, not a dictionary")
    refuse(lenet, pt_bytes({}), "nothing.pt", r"holds no tensors")


@pytest.mark.parametrize("bad_value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_values_refused(lenet, lenet_sd, bad_value):
    bad = {k: v.clone() for k, v in lenet_sd.items()}
    bad["classifier.f6.bias"][:5] = bad_value  # safetensors keeps keys sorted: this one comes first
    bad["features.c3.weight"].view(-1)[0] = bad_value
    e = refuse(lenet, save_safetensors(bad), "diverged.safetensors",
               r"NaN or infinite values \(5 in 'classifier\.f6\.bias' and 1 more tensor\); upload weights")
    assert e.mismatches == []


def test_float64_overflow_refused(lenet, lenet_sd):
    bad = {k: v.double() for k, v in lenet_sd.items()}
    bad["features.c1.bias"][0] = 1e300  # finite in float64, infinite in the model's float32
    refuse(lenet, pt_bytes(bad), "huge.pt", r"NaN or infinite values \(1 in 'features\.c1\.bias'\)")
    large = dict(lenet_sd, **{"features.c1.bias": torch.full((6,), 3e38)})  # finite, though their sum is not
    W.load_weights(lenet, save_safetensors(large), "large.safetensors")
    assert torch.equal(lenet.state_dict()["features.c1.bias"], large["features.c1.bias"])


# -- pretrained weights (torchvision's cache, never downloaded by a load) ------------------------------------------
def test_entry_categories_and_cache_dir(tmp_path):
    entry = W.weights_entry("resnet18")
    assert str(entry) == catalog.info("resnet18").weights
    assert W.weights_entry("lenet5") is None and W.weights_entry("custom") is None
    cats = W.categories("resnet18")
    assert len(cats) == 1000 and cats[0] == "tench"
    assert W.categories("lenet5") is None
    assert W.cache_dir() == tmp_path / "torch_home" / "hub" / "checkpoints"
    assert W.cached_path("resnet18") is None


def test_load_pretrained_from_torch_home():
    from torchvision.models import ResNet18_Weights

    state_dict = seeded_state_dict("resnet18", seed=11)
    target = W.cache_dir() / "resnet18-f37072fd.pth"
    target.parent.mkdir(parents=True)
    torch.save(state_dict, target)
    assert W.cached_path("resnet18") == target
    assert W.download_pretrained("resnet18") == target  # already there: no download

    model = catalog.build("resnet18")
    report = W.load_pretrained(model, "resnet18")
    assert same_tensors(model.state_dict(), state_dict)
    assert report.source == "torchvision ResNet18_Weights.IMAGENET1K_V1"
    assert report.tensors == 122 and report.values == sum(t.numel() for t in state_dict.values())
    assert report.summary() == (f"Loaded 122 tensors ({report.values:,} values) from torchvision "
                                "ResNet18_Weights.IMAGENET1K_V1.")
    # torchvision itself reads the very same file (the file is in place, so this cannot download).
    theirs = ResNet18_Weights.IMAGENET1K_V1.get_state_dict(progress=False, check_hash=False)
    assert same_tensors(dict(theirs), state_dict)


def test_load_pretrained_refuses_without_file_and_leaves_model():
    model = catalog.build("resnet18")
    before = snapshot(model)
    with pytest.raises(W.WeightsError, match=r"not downloaded yet.* as resnet18-f37072fd\.pth") as info:
        W.load_pretrained(model, "resnet18")
    assert one_sentence(str(info.value)) and same_tensors(model.state_dict(), before)
    for name in ("lenet5", "custom"):
        with pytest.raises(W.WeightsError, match=r"no published pretrained weights; upload a weights file"):
            W.load_pretrained(model, name)


def test_load_pretrained_backbone_into_composition():
    state_dict = seeded_state_dict("resnet18", seed=12)
    W.cache_dir().mkdir(parents=True)
    torch.save(state_dict, W.cache_dir() / "resnet18-f37072fd.pth")
    spec = {"backbone": {"name": "resnet18", "pretrained": True}, "head": {"kind": "classification",
                                                                         "num_classes": 5}}
    model = compose.build(spec)
    head_before = snapshot(model.head)
    report = W.load_pretrained_backbone(model, spec)
    body = model.backbone.body.state_dict()
    assert len(body) == 120 and all(torch.equal(v, state_dict[k]) for k, v in body.items())
    assert same_tensors(model.head.state_dict(), head_before)
    assert report.tensors == 120
    assert "the head keeps random weights (untrained)" in report.notes
    assert any("2 tensors of resnet18 beyond the chosen stages" in n for n in report.notes)

    with pytest.raises(W.WeightsError, match="custom backbone has no published pretrained weights"):
        W.load_pretrained_backbone(compose.build(CUSTOM_SPEC), CUSTOM_SPEC)


def test_pretrained_backbone_needs_every_body_key():
    state_dict = seeded_state_dict("resnet18", seed=12)
    del state_dict["layer4.1.conv2.weight"]
    W.cache_dir().mkdir(parents=True)
    torch.save(state_dict, W.cache_dir() / "resnet18-f37072fd.pth")
    model = compose.build({"backbone": {"name": "resnet18"}})
    before = snapshot(model)
    with pytest.raises(W.WeightsError, match=r"does not fit this model: 1 missing tensor \(table below\); delete "
                       r".*resnet18-f37072fd\.pth and download the weights for resnet18 again\.$") as info:
        W.load_pretrained_backbone(model, {"backbone": {"name": "resnet18"}})
    assert info.value.mismatches == [W.Mismatch("layer4.1.conv2.weight", "missing", "512×512×3×3", "—")]
    assert same_tensors(model.state_dict(), before)


def test_load_pretrained_densenet_old_keys_and_googlenet_aux():
    # DenseNet's published file uses the old key names ("norm.1"); torchvision renames them, and so do we.
    state_dict = seeded_state_dict("densenet121")
    old_style = {re.sub(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.", r"\1.\2.", k): v for k, v in state_dict.items()}
    old_style = {k: v for k, v in old_style.items() if not k.endswith("num_batches_tracked")}  # predates them
    assert "features.denseblock1.denselayer1.norm.1.weight" in old_style
    W.cache_dir().mkdir(parents=True)
    torch.save(old_style, W.cache_dir() / W._file_name(W.weights_entry("densenet121")))
    model = catalog.build("densenet121")
    report = W.load_pretrained(model, "densenet121")
    assert same_tensors(model.state_dict(), state_dict)
    assert report.notes == ["121 BatchNorm step counters (num_batches_tracked) not in the file set to 0"]
    # GoogLeNet's file holds the auxiliary classifiers the catalog model leaves out.
    torch.manual_seed(2)
    with_aux = catalog.build("googlenet", aux_logits=True, init_weights=False).state_dict()
    torch.save(with_aux, W.cache_dir() / W._file_name(W.weights_entry("googlenet")))
    model = catalog.build("googlenet", init_weights=False)  # (initialisation is slow and irrelevant)
    report = W.load_pretrained(model, "googlenet")
    assert same_tensors(model.state_dict(), {k: v for k, v in with_aux.items() if not k.startswith("aux")})
    assert model.transform_input is True
    assert any("auxiliary classifiers" in n for n in report.notes)
    # A whole-model file does not fit a model built another way: the sentence says what to do.
    with pytest.raises(W.WeightsError, match=r"googlenet-\w+\.pth does not fit this model: .*; build the model "
                                             r"with catalog\.build\('googlenet'\) or delete"):
        W.load_pretrained(catalog.build("googlenet", num_classes=10, init_weights=False), "googlenet")


# -- downloading ---------------------------------------------------------------------------------------------------
def test_offline_download_says_where_to_put_the_file(monkeypatch):
    def dns_failure(*args, **kwargs):
        raise urllib.error.URLError(socket.gaierror(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(urllib.request, "urlopen", dns_failure)
    where = f"copy it into {W.cache_dir()} as resnet18-f37072fd.pth so the app finds it"
    with pytest.raises(W.WeightsError) as info:
        W.download_pretrained("resnet18")
    message = str(info.value)
    assert message.startswith("Downloading resnet18-f37072fd.pth failed (no internet connection")
    assert where in message and 'labelled "untrained"' in message and one_sentence(message)
    assert where in W.offline_hint("resnet18") and one_sentence(W.offline_hint("resnet18"))
    assert not W.cache_dir().exists() or not any(W.cache_dir().iterdir())

    def not_found(request, timeout):
        raise urllib.error.HTTPError(request.full_url, 404, "Not Found", {}, None)

    monkeypatch.setattr(urllib.request, "urlopen", not_found)
    with pytest.raises(W.WeightsError, match=r"failed \(the server answered HTTP 404\);.*" + re.escape(where)):
        W.download_pretrained("resnet18")

    def timeout(*args, **kwargs):
        raise TimeoutError("timed out")

    monkeypatch.setattr(urllib.request, "urlopen", timeout)
    with pytest.raises(W.WeightsError, match=r"failed \(the connection timed out\)"):
        W.download_pretrained("resnet18")
    assert not any(W.cache_dir().iterdir())


def test_no_published_weights():
    for name in ("lenet5", "custom"):
        with pytest.raises(W.WeightsError, match="no published pretrained weights; upload a weights file"):
            W.download_pretrained(name)
        assert "no published pretrained weights" in W.offline_hint(name)


class FakeEntry:
    def __init__(self, url):
        self.url = url

    def __str__(self):
        return "Fake_Weights.TEST"


class FakeResponse(io.BytesIO):
    def __init__(self, data: bytes):
        super().__init__(data)
        self.headers = {"Content-Length": str(len(data))}


def fake_download(monkeypatch, data: bytes, file_name: str) -> list:
    requests = []

    def fake_urlopen(request, timeout):
        requests.append((request.full_url, timeout))
        return FakeResponse(data)

    monkeypatch.setattr(W, "weights_entry", lambda name: FakeEntry(f"https://example.invalid/x/{file_name}"))
    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    monkeypatch.setattr(W, "DOWNLOAD_CHUNK", 4096)
    return requests


def test_fake_download_with_progress_and_hash(monkeypatch, lenet_sd):
    data = pt_bytes(lenet_sd)
    file_name = f"lenet5-{hashlib.sha256(data).hexdigest()[:8]}.pth"
    requests = fake_download(monkeypatch, data, file_name)
    calls = []
    path = W.download_pretrained("lenet5", progress=lambda done, total: calls.append((done, total)), timeout=5)
    assert requests == [(f"https://example.invalid/x/{file_name}", 5)]
    assert path == W.cache_dir() / file_name and path.read_bytes() == data
    assert [p.name for p in W.cache_dir().iterdir()] == [file_name]  # no temporary file left
    assert len(calls) == -(-len(data) // 4096) > 1
    assert calls[-1] == (len(data), len(data)) and all(t == len(data) for _, t in calls)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    # The downloaded file is what load_pretrained then reads.
    model = catalog.build("lenet5")
    report = W.load_pretrained(model, "lenet5")
    assert same_tensors(model.state_dict(), lenet_sd) and report.source == "torchvision Fake_Weights.TEST"


def test_fake_download_with_bad_hash_leaves_nothing(monkeypatch, lenet_sd):
    data = pt_bytes(lenet_sd)
    fake_download(monkeypatch, data, "lenet5-deadbeef.pth")
    with pytest.raises(W.WeightsError, match=r"damaged file \(its sha256 does not start with deadbeef\)") as info:
        W.download_pretrained("lenet5")
    assert one_sentence(str(info.value))
    assert list(W.cache_dir().iterdir()) == []
    assert W.cached_path("lenet5") is None


def test_fake_download_cut_short_leaves_nothing(monkeypatch, lenet_sd):
    data = pt_bytes(lenet_sd)
    fake_download(monkeypatch, data, f"lenet5-{hashlib.sha256(data).hexdigest()[:8]}.pth")
    monkeypatch.setattr(urllib.request, "urlopen", lambda request, timeout: _short(data))
    with pytest.raises(W.WeightsError, match=r"stopped after"):
        W.download_pretrained("lenet5")
    assert list(W.cache_dir().iterdir()) == []


def _short(data: bytes) -> FakeResponse:
    response = FakeResponse(data[: len(data) // 2])
    response.headers = {"Content-Length": str(len(data))}
    return response


# -- the ready model -----------------------------------------------------------------------------------------------
def test_ready_model_accuracy():
    from explorer.samples import digits

    ready = W.READY_MODELS["lenet5_digits"]
    assert ready.title == "LeNet-5 trained on digits" and ready.catalog_name == "lenet5"
    assert ready.classes == [str(d) for d in range(10)]
    assert ready.accuracy == pytest.approx(0.9917, abs=1e-4) and ready.path.is_file()
    model = W.ready_model("lenet5_digits")
    assert not model.training
    x, y, split = digits()
    with torch.no_grad():
        predictions = model(x[split["test"]]).argmax(1)
    accuracy = (predictions == y[split["test"]]).float().mean().item()
    assert accuracy >= 0.95
    assert accuracy == pytest.approx(ready.accuracy, abs=1e-6)
    with pytest.raises(W.WeightsError, match="no ready model called 'nope'"):
        W.ready_model("nope")


def test_module_never_imports_streamlit():
    source = open(W.__file__, encoding="utf-8").read()
    assert "streamlit" not in source


def test_a_file_name_is_shown_on_one_line_without_folders(lenet):
    with pytest.raises(W.WeightsError, match=r"^evil\.pt is empty \(0 bytes\)") as e:
        W.load_weights(lenet, b"", "../../etc/ev\nil.pt")
    assert "\n" not in str(e.value) and "etc" not in str(e.value)
