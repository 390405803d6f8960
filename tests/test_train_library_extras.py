"""What the Train page shows before, during and after a run, checked in the library: the estimated time per epoch,
the server's memory budget, the sample predictions a run writes after every epoch, the (predicted, true) pair of
every test image behind the confusion matrix, an earlier run as the network for another task, who may steer a run,
and the standalone PyTorch script that reproduces a run exactly.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from explorer import catalog
from explorer.spec import ArchitectureSpec
from explorer.training import (TrainConfig, TrainingError, datasets, estimate_epoch, evaluate, memory_budget,
                               memory_refusal, train, trainable_parameters, training_memory, worker)
from explorer.training.jobs import RunManager
from explorer.training.loop import memory_of, prepare, sample_indices, scored_test_images
from explorer.training.networks import network_for_task
from explorer.training.runfolder import RunFolder, png_image
from explorer.training.script import training_script
from explorer.ui.training import cell_indices, sample_caption, time_left

REPO = Path(__file__).resolve().parents[1]


def _tiny(**changes) -> TrainConfig:
    base = dict(network="lenet5", dataset="digits", epochs=2, train_samples=128, threads=1)
    return TrainConfig(**{**base, **changes})


# -- before the start --------------------------------------------------------------------------------------------
@pytest.mark.training
def test_the_estimate_per_epoch_is_near_a_real_epoch():
    cfg = TrainConfig(network="lenet5", dataset="digits", epochs=3, threads=1)
    estimate = estimate_epoch(cfg)
    assert estimate.steps_per_epoch == 40  # 1,258 training digits in batches of 32 (the last one of 10)
    assert estimate.total_seconds == estimate.epoch_seconds * 3
    real = train(cfg.replace(epochs=1)).history[0]["epoch_seconds"]
    # timed on a loaded two-core machine: the same order of magnitude is what a person plans with
    assert real / 3 < estimate.epoch_seconds < real * 3, (estimate, real)


def test_a_training_step_over_the_budget_is_refused_with_both_figures(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPLORER_TRAIN_MEMORY_MB", "2")
    assert memory_budget() == 2_000_000  # MB as the pages print them, 10⁶ bytes
    cfg = _tiny(batch_size=64)
    step, macs = training_memory(cfg)
    assert macs == 416_520 and step.saved_per_image == 36_432  # LeNet-5 at 32×32, as the page's metrics
    assert step.weights == 61_706 * 4 and step.optimizer == 2 * 61_706 * 4  # Adam: two moments per weight
    largest = step.largest_batch(2_000_000)
    assert memory_of(cfg.replace(batch_size=largest), 36_432, 61_706, 61_706).total <= 2_000_000
    assert memory_of(cfg.replace(batch_size=largest + 1), 36_432, 61_706, 61_706).total > 2_000_000
    manager = RunManager(tmp_path, max_concurrent=1)
    with pytest.raises(TrainingError) as refused:
        manager.submit(cfg, owner="ann")
    assert str(refused.value) == (
        "Training a batch of 64 needs about 3.32 MB (2.33 MB of activations saved for the backward pass, 987.30 kB "
        "of weights, gradients and optimiser state), more than this server's training budget of 2.00 MB; choose a "
        "batch of at most 27, or build the network for a smaller input.")
    assert largest == 27 and manager.list() == []  # nothing was queued
    # less than the weights, gradients and moments alone
    assert memory_refusal(step, 900_000).endswith("even one image does not fit: build the network for a smaller "
                                                  "input, or choose a smaller network.")
    monkeypatch.setenv("EXPLORER_TRAIN_MEMORY_MB", "not a number")  # falls back to a quarter of the RAM
    assert memory_budget() == os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4


# -- while it runs: sample predictions ---------------------------------------------------------------------------
def test_the_sample_images_cover_several_classes():
    y = datasets.get("digits").splits().y_val
    chosen = sample_indices(y, "classification")
    assert len(chosen) == 8 and len(set(y[chosen].tolist())) == 8  # eight different digits
    assert chosen.tolist() == sorted(chosen.tolist())


@pytest.mark.training
def test_a_run_writes_its_sample_predictions_after_every_epoch(tmp_path):
    cfg = _tiny()
    seen = []
    result = train(cfg, on_samples=lambda epoch, samples: seen.append((epoch, samples)))
    assert [e for e, _ in seen] == [1, 2]
    plain = train(cfg)
    assert [r["val_loss"] for r in plain.history] == [r["val_loss"] for r in result.history]  # nothing disturbed
    # the last epoch's samples are the trained model's own predictions on those validation images
    ds = datasets.get("digits")
    idx = sample_indices(ds.splits().y_val, "classification")
    with torch.no_grad():
        p = torch.softmax(result.model(ds.splits().x_val[idx]), 1)
    last = seen[-1][1]
    assert [s["predicted"] for s in last] == [ds.classes[k] for k in p.argmax(1).tolist()]
    assert [s["truth"] for s in last] == [ds.classes[k] for k in ds.splits().y_val[idx].tolist()]
    assert [s["confidence"] for s in last] == pytest.approx(p.max(1).values.tolist(), abs=1e-6)

    folder = RunFolder(tmp_path / "20260101-000000-0000c1")  # the worker's files, in this process
    folder.path.mkdir()
    folder.write_config(cfg)
    folder.update_status(state="queued", owner="ann")
    assert worker.run(folder.path) == "finished"
    written = folder.samples()
    assert written["epoch"] == 2 and len(written["samples"]) == 8
    assert [{k: v for k, v in s.items() if k != "png"} for s in written["samples"]] == \
        [{k: v for k, v in s.items() if k != "image"} for s in last]
    image = png_image(written["samples"][0]["png"])
    assert image.shape == (32, 32) and image.dtype.name == "uint8"
    assert (image.astype(float) / 255 - last[0]["image"]).__abs__().max() <= 0.5 / 255 + 1e-6
    captions = [sample_caption(s) for s in written["samples"]]
    assert all(re.fullmatch(r"\d ✓ \d+ %|\d ✗ \d+ % \(true \d\)", c) for c in captions), captions
    # the stop message says where once (the old one said "stopped on request" twice)
    assert folder.status()["message"].startswith("Finished 2 epochs; test accuracy ")


@pytest.mark.training
def test_a_run_scored_on_fewer_images_says_so_and_its_pairs_name_those_images():
    cfg = _tiny(epochs=1, eval_samples=50)
    seen = []
    result = train(cfg, on_samples=lambda epoch, samples: seen.append(samples))
    assert "50 of the 179 validation and 50 of the 360 test images used (random subsets: the scores rest on fewer " \
           "images)" in result.notes
    assert result.test["count"] == 50 and len(result.test["pairs"]) == 50
    assert result.history[-1]["val_accuracy"] * 50 == pytest.approx(round(result.history[-1]["val_accuracy"] * 50))
    # the test pairs are in the order of scored_test_images, whose truths and predictions they are
    s = datasets.get("digits").splits()
    scored = scored_test_images(cfg)
    assert scored.shape == (50, *s.x_test.shape[1:])
    rows = [next(i for i in range(len(s.x_test)) if torch.equal(s.x_test[i], x)) for x in scored]
    assert rows == sorted(rows) and len(set(rows)) == 50
    assert [t for _, t in result.test["pairs"]] == s.y_test[rows].tolist()
    with torch.no_grad():
        assert [p for p, _ in result.test["pairs"]] == result.model(scored).argmax(1).tolist()
    assert scored_test_images(cfg.replace(eval_samples=None)).shape == s.x_test.shape  # all of them without it
    # the sample pictures are of the scored validation images, each beside its own truth
    ds = datasets.get("digits")
    every, scored_val = prepare(cfg.replace(eval_samples=None)).data.x_val, prepare(cfg).data.x_val
    val = [i for i in range(len(every)) if any(torch.equal(every[i], x) for x in scored_val)]
    assert len(val) == 50
    chosen = [val[k] for k in sample_indices(s.y_val[val], "classification").tolist()]
    assert [x["truth"] for x in seen[-1]] == [ds.classes[k] for k in s.y_val[chosen].tolist()]
    for sample, i in zip(seen[-1], chosen):
        assert abs(sample["image"] - datasets._as_picture(ds.unnormalise(s.x_val[i]))).max() == 0
    with pytest.raises(TrainingError, match=r"^'eval_samples' must be a whole number"):
        _tiny(eval_samples=0.5)


def test_time_left_from_the_epochs_done():
    epochs = [{"epoch": 1, "epoch_seconds": 2.0}, {"epoch": 2, "epoch_seconds": 4.0}]
    assert time_left(epochs, 10) == (3.0, 24.0)  # 3 s an epoch, eight to go
    assert time_left([], 10) is None
    assert time_left(epochs + [{"epoch": 3, "epoch_seconds": 0.1, "stopped_after_batch": 2}], 10) == (3.0, 21.0)


# -- after: the confusion matrix's cells -------------------------------------------------------------------------
def test_each_confusion_cell_counts_the_images_it_names():
    ds = datasets.get("digits")
    s = ds.splits()
    torch.manual_seed(0)
    model = catalog.build("lenet5", num_classes=10)
    test = evaluate(model, s.x_test, s.y_test, "classification", 10, pairs=True)
    assert len(test["pairs"]) == 360 and [t for _, t in test["pairs"]] == s.y_test.tolist()
    for t in range(10):
        for p in range(10):
            assert len(cell_indices(test["pairs"], t, p)) == test["confusion"][t][p]


# -- an earlier run as the network -------------------------------------------------------------------------------
def test_an_earlier_digit_classifier_starts_a_rotation_regressor(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(3)
    earlier = catalog.build("lenet5", num_classes=10)
    path = tmp_path / "final.safetensors"
    save_file({k: v.contiguous() for k, v in earlier.state_dict().items()}, str(path))
    network = network_for_task("lenet5", "regression")
    assert isinstance(network, ArchitectureSpec) and network.summary() == "lenet5 → regression at 1×32×32"
    assert network_for_task("lenet5", "classification") == "lenet5"
    assert network_for_task(network, "regression") is network
    counts = trainable_parameters(TrainConfig(network=network, dataset="rotated_digits", mode="frozen",
                                              pretrained_from=path))
    assert counts["trainable"] == 121  # the regression head: 120 features → 1 angle
    assert counts["notes"][0] == "the backbone starts from the backbone of an earlier run (final.safetensors)"
    back = network_for_task(network, "classification")
    assert back.task == "classification" and back.backbone.name == "lenet5"


# -- who may steer a run -----------------------------------------------------------------------------------------
def test_only_its_owner_may_stop_pause_or_resume_a_run(tmp_path):
    folder = RunFolder(tmp_path / "20260101-000000-0000d1")
    folder.path.mkdir()
    folder.write_config(_tiny())
    folder.update_status(state="paused", owner="ann", submitted=1.0)
    manager = RunManager(tmp_path, max_concurrent=1)
    sentence = ("The run 20260101-000000-0000d1 belongs to another session, so it is shown read-only; start a run "
                "of your own to stop, pause or resume it.")
    for request in (manager.stop, manager.resume, manager.pause):
        with pytest.raises(TrainingError) as e:
            request("20260101-000000-0000d1", owner="bob")
        assert str(e.value) == sentence
    assert manager.status("20260101-000000-0000d1")["state"] == "paused"
    assert manager.stop("20260101-000000-0000d1", owner="ann") == "The run is stopped; its checkpoint is kept."


# -- the standalone script ---------------------------------------------------------------------------------------
def _run_script(text: str, cwd: Path) -> str:
    script = cwd / "train_run.py"
    script.write_text(text)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(script)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (cwd / "trained.pt").exists()
    return done.stdout


@pytest.mark.training
def test_the_training_script_prints_the_runs_test_accuracy_exactly(tmp_path):
    cfg = _tiny(recipe="one_cycle", epochs=1, augmentation={"crop_padding": 2, "rotation": 10.0})
    text = training_script(cfg, title="run 20260101-000000-0000e1")
    assert "optimizer = torch.optim.Adam(" in text and "OneCycleLR" in text and "v2.RandomRotation" in text
    here = train(cfg)
    out = _run_script(text, tmp_path)
    assert f"test accuracy {here.test['accuracy']} ({here.test['correct']} of 360 right)" in out.splitlines()


@pytest.mark.training
def test_the_training_script_reproduces_a_fine_tuned_regression_run(tmp_path):
    spec = ArchitectureSpec.from_dict({"task": "regression", "input": {"channels": 1, "height": 32, "width": 32},
                                       "backbone": {"name": "lenet5"}, "head": {"kind": "regression"}})
    cfg = TrainConfig(network=spec, dataset="rotated_digits", mode="discriminative", recipe="resnet", lr=0.01,
                      epochs=2, train_samples=128, plateau_patience=0, threads=1)
    text = training_script(cfg)
    assert "torch.optim.SGD(groups, lr=LR, momentum=0.9" in text and "BACKBONE_LR_FACTOR = 0.1" in text
    here = train(cfg)
    out = _run_script(text, tmp_path)
    assert f"test MAE {here.test['mae']} °, MSE {here.test['mse']}" in out.splitlines()


# -- your own data as a run ----------------------------------------------------------------------------------
@pytest.mark.training
def test_an_uploaded_zip_trains_as_a_run_by_its_name(tmp_path, monkeypatch):
    from test_training import _good_entries, _zip

    monkeypatch.setenv("EXPLORER_DATA", str(tmp_path / "data"))
    zipped = _zip(_good_entries())  # two shades, six 12×12 images each
    name = datasets.store_upload(zipped, title="shades")
    assert re.fullmatch(r"zip:[0-9a-f]{16}", name)
    cfg = TrainConfig(network="lenet5", dataset=name, epochs=1, batch_size=4, threads=1)  # the name is a setting
    folder = RunFolder(tmp_path / "20260101-000000-0000f1")
    folder.path.mkdir()
    folder.write_config(cfg)
    folder.update_status(state="queued", owner="ann")
    assert worker.run(folder.path) == "finished", folder.status()["message"]
    assert folder.result()["dataset"] == name and folder.result()["test"]["count"] >= 2
    assert f"'dataset': '{name}'" in training_script(cfg)
