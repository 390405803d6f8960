"""explorer.training: data sets, modes, recipes, the loop, and what a person checks in the numbers.

Every test that trains is marked ``training`` (left out of ``make check``) and runs on a small subset for one to a
few epochs, except the LeNet-5 accuracy test, which trains on the whole digits training split (about 7 s).
"""
from __future__ import annotations

import io
import math
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from explorer.spec import ArchitectureSpec
from explorer.training import (TrainConfig, TrainingError, augmentation_preview, datasets, lr_schedule, prepare,
                               train, trainable_parameters)
from explorer.weights import READY_MODELS, ready_model

TIME_KEYS = ("train_seconds", "images_per_second", "epoch_seconds", "seconds")


def _spec(task: str, backbone: str, size: int, channels: int = 1, **head) -> ArchitectureSpec:
    return ArchitectureSpec.from_dict({"task": task, "input": {"channels": channels, "height": size, "width": size},
                                       "backbone": {"name": backbone}, "head": {"kind": task, **head}})


def _timeless(history):
    return [{k: v for k, v in row.items() if k not in TIME_KEYS} for row in history]


# -- data sets (no training) -------------------------------------------------------------------------------------
def test_offline_datasets_are_declared_with_fixed_splits():
    assert {"digits", "digits_canvas", "rotated_digits", "faces"} <= set(datasets.names())
    expected = {"digits": ("classification", (1, 32, 32), (1258, 179, 360)),
                "digits_canvas": ("classification", (1, 64, 64), (1258, 179, 360)),
                "rotated_digits": ("regression", (1, 32, 32), (1258, 179, 360)),
                "faces": ("classification", (1, 25, 25), (120, 40, 40))}
    for name, (task, shape, sizes) in expected.items():
        ds = datasets.get(name)
        s = ds.splits()
        assert (ds.task, ds.input_shape, tuple(s.sizes().values())) == (task, shape, sizes), name
        assert ds.source and len(ds.preview(4)) == 4
    assert datasets.get("faces").class_counts()["test"] == {"not a face": 20, "face": 20}
    assert datasets.get("rotated_digits").target.unit == "°"
    angles = datasets.get("rotated_digits").splits().y_train
    assert -45 <= float(angles.min()) < -40 and 40 < float(angles.max()) <= 45
    # the downloads are declared, with their source, but not offered as trainable
    assert "cifar10" in datasets.names(include_downloads=True) and "cifar10" not in datasets.names()
    with pytest.raises(datasets.DatasetError, match="opt-in download"):
        datasets.get("cifar10").splits()


def test_digits_are_the_shipped_lenet_input():
    # The test split is the shipped model's held-out 20 %, normalised as it was trained: it scores its record.
    s = datasets.get("digits").splits()
    model = ready_model("lenet5_digits")
    with torch.no_grad():
        correct = int((model(s.x_test).argmax(1) == s.y_test).sum())
    assert correct / 360 == pytest.approx(READY_MODELS["lenet5_digits"].accuracy, abs=1e-12)  # 357 of 360: 99.2 %


def test_counts_and_notes_before_the_run():
    assert trainable_parameters(TrainConfig(network="lenet5"))["trainable"] == 61_706
    gap = _spec("classification", "gap_cnn", 64)
    counts = trainable_parameters(TrainConfig(network=gap, dataset="digits_canvas", mode="frozen"))
    assert counts["trainable"] == 64 * 10 + 10 and counts["frozen"] == 23_408  # 24,058 − the 650 of the head
    assert "the backbone starts from the backbone of the shipped GAP CNN" in counts["notes"][0]
    notes = trainable_parameters(TrainConfig(network="lenet5", dropout=0.3))["notes"]
    assert any("lenet5 has no dropout layer" in n for n in notes)
    with_hidden = _spec("classification", "lenet5", 32, hidden=[64])
    notes = trainable_parameters(TrainConfig(network=with_hidden, dropout=0.3))["notes"]
    assert any("head dropout 0.3" in n for n in notes)


def test_refusals_are_sentences(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty torchvision cache: no pretrained resnet18
    with pytest.raises(TrainingError, match=r"^The pretrained weights for resnet18 are not in torchvision's cache; "
                                            r".*copy https://\S+ into \S+ as resnet18-f37072fd\.pth, or train from "
                                            r"scratch, or pass pretrained_from="):
        trainable_parameters(TrainConfig(network=_spec("classification", "resnet18", 64, 3), mode="frozen"))
    with pytest.raises(TrainingError, match="zfnet has no pretrained weights .*train from scratch"):
        trainable_parameters(TrainConfig(network="zfnet", mode="finetune"))
    with pytest.raises(TrainingError, match="A custom backbone has no pretrained weights"):
        custom = ArchitectureSpec.from_dict({"input": {"channels": 1, "height": 32, "width": 32},
                                             "backbone": {"name": "custom", "stages": [{"block": "conv"}]},
                                             "head": {"kind": "classification"}})
        trainable_parameters(TrainConfig(network=custom, mode="frozen"))
    with pytest.raises(TrainingError, match="regression data set and this composition does classification"):
        trainable_parameters(TrainConfig(network=_spec("classification", "lenet5", 32), dataset="rotated_digits"))
    with pytest.raises(TrainingError, match="compose it as the backbone of a regression head"):
        trainable_parameters(TrainConfig(network="lenet5", dataset="rotated_digits"))
    with pytest.raises(TrainingError, match="'mode' must be one of scratch, frozen, finetune, discriminative"):
        TrainConfig(mode="freeze")
    with pytest.raises(TrainingError, match="'epochs' must be from 1"):
        TrainConfig(epochs=0)
    with pytest.raises(TrainingError, match="no data set called"):
        trainable_parameters(TrainConfig(dataset="mnist"))


def test_lr_schedule_before_the_run():
    cfg = TrainConfig(recipe="one_cycle", epochs=3, batch_size=64)
    s = lr_schedule(cfg)
    assert s.steps_per_epoch == 20 and len(s.steps) == 60  # 1,258 images in batches of 64
    assert max(s.steps) == pytest.approx(3e-3) and s.steps[0] == pytest.approx(3e-3 / 25)  # OneCycleLR's start
    disc = lr_schedule(TrainConfig(network="lenet5_digits", mode="discriminative", recipe="adam", epochs=1))
    assert set(disc.groups) == {"backbone", "head"} and disc.groups["backbone"][0] == pytest.approx(1e-4)
    resnet = lr_schedule(TrainConfig(recipe="resnet", epochs=1))
    assert resnet.steps[0] == 0.1 and "÷10" in resnet.note


def test_augmentation_preview_changes_each_image_the_same_way_for_a_seed():
    cfg = TrainConfig(augmentation={"rotation": 30, "crop_padding": 4})
    pairs = augmentation_preview(cfg, 6)
    assert len(pairs) == 6 and all(a.label == b.label for a, b in pairs)
    assert all(not np.allclose(a.image, b.image) for a, b in pairs)
    again = augmentation_preview(cfg, 6)
    assert all(np.array_equal(b.image, c.image) for (_, b), (_, c) in zip(pairs, again))


# -- your own data: zips -----------------------------------------------------------------------------------------
def _png(value: int, size: int = 12) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((size, size), value, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _zip(entries: dict[str, bytes], links=()) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries.items():
            z.writestr(name, data)
        for name in links:
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o120777 << 16)  # a symbolic link
            z.writestr(info, "../../etc/passwd")
    return buf.getvalue()


def _good_entries(root: str = "") -> dict[str, bytes]:
    entries = {f"{root}dark/{i}.png": _png(20 + i) for i in range(6)}
    entries.update({f"{root}light/{i}.png": _png(230 - i) for i in range(6)})
    return entries


def test_zip_refusals_each_in_a_sentence():
    limits = datasets.ZipLimits(max_files=20, max_bytes=5 * 2**20)
    cases = {
        "not a zip archive": b"PK but not really a zip",
        "looks like a zip bomb": _zip({"a/bomb.png": b"\0" * (4 * 2**20), **_good_entries()}),
        "more than the 20 file limit": _zip({f"a/{i}.png": _png(i) for i in range(21)}),
        "more than the 5.0 MB limit": _zip({"a/big.png": np.random.default_rng(0).bytes(6 * 2**20),
                                            **_good_entries()}),
        "points outside the folder with '..'": _zip({"../evil/x.png": _png(1), **_good_entries()}),
        "has an absolute path": _zip({"/abs/x.png": _png(1), **_good_entries()}),
        "is a symbolic link": _zip(_good_entries(), links=["dark/link.png"]),
        "one class only ('dark')": _zip({f"dark/{i}.png": _png(i) for i in range(5)}),
        "outside a class folder": _zip({"loose.png": _png(1), **_good_entries()}),
        "is not a readable image": _zip({**_good_entries(), "dark/broken.png": b"\x89PNG\r\n\x1a\nnot really"}),
        "needs at least 3": _zip({"dark/1.png": _png(1), "light/1.png": _png(200), "light/2.png": _png(201),
                                  "light/3.png": _png(202)}),
    }
    for phrase, data in cases.items():
        with pytest.raises(datasets.DatasetError) as e:
            datasets.from_zip(data, limits, name="pets.zip")
        message = str(e.value)
        assert phrase in message, (phrase, message)
        assert message.endswith(".") and "\n" not in message


def test_zip_of_two_folders_is_a_dataset():
    ds = datasets.from_zip(_zip(_good_entries("mine/")), name="mine.zip")  # one enclosing folder is fine
    assert ds.classes == ("dark", "light") and ds.input_shape == (1, 64, 64) and ds.task == "classification"
    assert sum(ds.splits().sizes().values()) == 12
    assert ds.class_counts()["test"] == {"dark": 1, "light": 1}


# -- training ----------------------------------------------------------------------------------------------------
@pytest.mark.training
def test_lenet5_from_scratch_reaches_97_percent():
    cfg = TrainConfig(network="lenet5", dataset="digits", mode="scratch", recipe="one_cycle", epochs=12,
                      label_smoothing=0.1, augmentation={"crop_padding": 2}, seed=0, threads=1)
    result = train(cfg)
    assert result.test["count"] == 360
    assert result.test["accuracy"] >= 0.97, result.test["accuracy"]  # 352 of 360 (97.8 %) here
    assert np.trace(np.array(result.test["confusion"])) == result.test["correct"]
    assert len(result.history) == 12 and result.history[-1]["val_accuracy"] > 0.97
    assert "top5" in result.test and result.test["top5"] >= result.test["accuracy"]


def _backbone_tensors(model) -> dict:
    return {k: v.clone() for k, v in model.backbone.state_dict().items()}


@pytest.mark.training
def test_frozen_keeps_every_backbone_tensor_and_trains_the_head():
    spec = _spec("classification", "gap_cnn", 64)
    cfg = TrainConfig(network=spec, dataset="digits_canvas", mode="frozen", recipe="adam", lr=1e-2, epochs=2,
                      train_samples=320, seed=0, threads=1)
    result = train(cfg)
    model = result.model
    assert {n for n, _ in model.named_children()} == {"backbone", "neck", "head"}
    shipped = {"body." + k: v for k, v in ready_model("gap_cnn_digits_canvas").state_dict().items()
               if not k.startswith("fc.")}
    after = model.backbone.state_dict()
    assert set(after) == set(shipped)
    assert sum(1 for k in after if "running_" in k) == 6  # three BatchNorms' statistics among them
    for key, value in shipped.items():
        assert torch.equal(after[key], value), key  # parameters and BatchNorm buffers, bit for bit
    # the head started from a fresh init (seeded: `prepare` makes the same) and moved
    start = prepare(cfg).prepared.model
    assert not torch.equal(model.head.fc.weight, start.head.fc.weight)
    assert float((model.head.fc.weight - start.head.fc.weight).detach().abs().max()) > 1e-3
    assert result.trainable_parameters == 650
    assert result.test["accuracy"] > 0.8, result.test["accuracy"]  # the shipped features carry over


@pytest.mark.training
def test_frozen_torchvision_backbone_from_the_cache(tmp_path, monkeypatch):
    # torchvision's file for resnet18, as a person would copy it into the cache (here: seeded random weights with
    # BatchNorm statistics that are not the defaults, so a moved statistic would show)
    from explorer import catalog
    from explorer.weights import cache_dir

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.manual_seed(5)
    published = catalog.build("resnet18").state_dict()
    for key, value in published.items():
        if key.endswith("running_mean"):
            value.normal_()
        elif key.endswith("running_var"):
            value.uniform_(0.5, 2.0)
    cache_dir().mkdir(parents=True)
    torch.save(published, cache_dir() / "resnet18-f37072fd.pth")
    spec = _spec("classification", "resnet18", 32, channels=3)
    result = train(TrainConfig(network=spec, dataset="digits", mode="frozen", epochs=1, train_samples=64,
                               batch_size=16, lr=1e-2, threads=1))
    assert result.pretrained == "torchvision's ResNet18_Weights.IMAGENET1K_V1 weights"
    assert any("grey images are given to the network's 3 input channels" in n for n in result.notes)
    after = result.model.backbone.state_dict()
    assert len(after) == len(published) - 2  # all of resnet18 but its fc
    for key, value in after.items():
        assert torch.equal(value, published[key.removeprefix("body.")]), key
    assert result.trainable_parameters == 512 * 10 + 10


@pytest.mark.training
def test_finetune_changes_backbone_and_head():
    spec = _spec("classification", "gap_cnn", 64)
    cfg = TrainConfig(network=spec, dataset="digits_canvas", mode="finetune", recipe="adam", epochs=1,
                      train_samples=160, seed=0, threads=1)
    result = train(cfg)
    assert not torch.equal(result.model.head.fc.weight, prepare(cfg).prepared.model.head.fc.weight)
    shipped = ready_model("gap_cnn_digits_canvas").state_dict()
    after = result.model.backbone.state_dict()
    conv = "features.conv1.conv.weight"
    assert not torch.equal(after["body." + conv], shipped[conv])
    assert not torch.equal(after["body.features.conv1.bn.running_mean"], shipped["features.conv1.bn.running_mean"])
    assert result.trainable_parameters == result.total_parameters == 24_058


@pytest.mark.training
def test_regression_head_on_the_digits_backbone_learns_the_angle():
    spec = _spec("regression", "lenet5", 32)
    result = train(TrainConfig(network=spec, dataset="rotated_digits", mode="finetune", recipe="adam", epochs=5,
                               seed=0, threads=1))
    s = result.dataset.splits()
    constant_mae = float((s.y_test - s.y_train.mean()).abs().mean())  # always predicting the mean angle: 22°
    assert result.test["mae"] < 0.6 * constant_mae, (result.test["mae"], constant_mae)  # 5.3° here
    assert result.pretrained.startswith("the backbone of the shipped LeNet-5")
    # the model predicts degrees itself (the target's scale is folded into its output layer)
    with torch.no_grad():
        predicted = result.model(s.x_test)[:, 0]
    assert float((predicted - s.y_test).abs().mean()) == pytest.approx(result.test["mae"], rel=1e-5)
    assert len(result.test["pairs"]) == 360


@pytest.mark.training
def test_backbone_of_an_earlier_run_starts_a_new_one(tmp_path):
    from safetensors.torch import save_file

    first = train(TrainConfig(network="lenet5", dataset="digits", epochs=1, train_samples=256, seed=1, threads=1))
    path = tmp_path / "run.safetensors"
    save_file(first.state_dict(), str(path))
    second = train(TrainConfig(network=_spec("regression", "lenet5", 32), dataset="rotated_digits", mode="frozen",
                               pretrained_from=path, epochs=1, train_samples=128, threads=1))
    before = first.model.state_dict()
    for key, value in second.model.backbone.state_dict().items():
        assert torch.equal(value, before[key.removeprefix("body.")]), key
    assert second.pretrained == "the backbone of an earlier run (run.safetensors)"


@pytest.mark.training
def test_a_nan_making_learning_rate_stops_with_a_sentence():
    spec = _spec("regression", "lenet5", 32)
    with pytest.raises(TrainingError) as e:
        train(TrainConfig(network=spec, dataset="rotated_digits", recipe="resnet", lr=5.0, epochs=2,
                          train_samples=320, threads=1))
    message = str(e.value)
    assert message.startswith("The loss became ") and "lower the learning rate (now 5)" in message
    assert f"at epoch {e.value.epoch}, batch {e.value.batch};" in message
    state = e.value.last_state
    assert state is not None and all(bool(torch.isfinite(v).all()) for v in state.values() if v.is_floating_point())


@pytest.mark.training
def test_same_seed_same_history_and_weights():
    cfg = TrainConfig(network=_spec("classification", "lenet5", 32, hidden=[32]), dataset="digits",
                      recipe="one_cycle", epochs=2, train_samples=256, dropout=0.2,
                      augmentation={"rotation": 10, "crop_padding": 2}, seed=3, threads=1)
    a, b = train(cfg), train(cfg)
    assert _timeless(a.history) == _timeless(b.history)
    assert a.test == b.test and a.lrs == b.lrs
    assert all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))
    other = train(cfg.replace(seed=4))
    assert _timeless(other.history) != _timeless(a.history)


@pytest.mark.training
def test_lr_schedule_is_what_the_optimiser_used():
    for cfg in (TrainConfig(network="lenet5_digits", mode="discriminative", recipe="one_cycle", epochs=2,
                            train_samples=200, batch_size=32, threads=1),
                TrainConfig(network="lenet5", recipe="adam", epochs=1, train_samples=65, batch_size=32, threads=1)):
        planned = lr_schedule(cfg)
        result = train(cfg)
        assert result.lrs == planned.groups
    assert planned.steps_per_epoch == 2  # 65 images: two batches of 32, the last single image left out


@pytest.mark.training
def test_resnet_recipe_divides_by_ten_on_a_plateau():
    result = train(TrainConfig(network="lenet5", recipe="resnet", lr=0.5, plateau_patience=0, epochs=4,
                               train_samples=256, threads=1))
    best = math.inf
    for row, nxt in zip(result.history, result.history[1:]):
        fell = row["val_loss"] < best
        best = min(best, row["val_loss"])
        assert nxt["lr"] == pytest.approx(row["lr"] if fell else row["lr"] / 10)
    assert result.history[0]["lr"] == 0.5


@pytest.mark.training
def test_stops_on_time_budget_early_stopping_and_request():
    quick = TrainConfig(network="lenet5", epochs=5, train_samples=96, threads=1)
    timed = train(quick.replace(time_budget=1e-6))
    assert len(timed.history) == 1 and "the time budget of 1e-06 s was passed" in timed.stopped
    early = train(quick.replace(early_stopping=1, lr=0.02, epochs=8))
    losses = [r["val_loss"] for r in early.history]  # 1.52, 0.94, 0.69, 0.80: the fourth is not lower
    assert len(losses) == 4 and losses[3] > losses[2] == min(losses)
    assert early.stopped.startswith("stopped early after epoch 4 of 8: the validation loss has not fallen for 1 "
                                    "epoch (lowest 0.69")
    batches = []
    asked = train(quick, on_batch=batches.append, should_stop=lambda: len(batches) >= 2)
    assert len(batches) == 2 and "stopped on request during epoch 1, after batch 2" in asked.stopped


@pytest.mark.training
def test_resume_from_a_checkpoint_gives_the_uninterrupted_run():
    cfg = TrainConfig(network="lenet5", recipe="one_cycle", epochs=3, train_samples=128, dropout=None,
                      augmentation={"crop_padding": 2}, threads=1)
    checkpoints = []
    whole = train(cfg, on_checkpoint=checkpoints.append)
    resumed = train(cfg, resume=checkpoints[0])
    assert _timeless(resumed.history) == _timeless(whole.history)
    assert all(torch.equal(x, y) for x, y in zip(whole.model.state_dict().values(),
                                                resumed.model.state_dict().values()))


@pytest.mark.training
def test_transfer_to_faces_and_own_zip():
    faces = train(TrainConfig(network="lenet5_digits", dataset="faces", mode="finetune", epochs=3, threads=1))
    assert faces.test["count"] == 40 and "top5" not in faces.test
    assert any("25×25 images are resized to the network's 32×32" in n for n in faces.notes)
    assert any("replaced by a fresh one for the data set's 2 classes" in n for n in faces.notes)
    mine = datasets.from_zip(_zip(_good_entries()), name="mine.zip")
    result = train(TrainConfig(network="lenet5", dataset=mine, epochs=3, lr=1e-2, threads=1))
    assert result.test["accuracy"] == 1.0  # dark against light: a task a network must not miss
