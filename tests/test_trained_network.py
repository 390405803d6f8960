"""`Network.trained(folder)`: a finished run of the Train page as a network of Predict, Explain and Feature maps —
the run's model with its final weights, the data set's classes and preprocessing, labelled with its test score.

The runs are tiny (one or two epochs on a few hundred digits), trained in this process by the worker the Train
page spawns (`explorer.training.worker.run`) into a temporary runs folder, so their folders are the real thing.
"""
from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from explorer.images import digit_image, digit_preprocess, digit_samples
from explorer.network import Network
from explorer.predict import predict
from explorer.spec import ArchitectureSpec
from explorer.training import TrainConfig, TrainingError, datasets, prepare, worker
from explorer.training.runfolder import RunFolder

_serial = iter(range(10**6))


def finished_run(root: Path, cfg: TrainConfig) -> Path:
    """A run folder of ``cfg`` under ``root``, trained to the end as the Train page's worker trains it."""
    run_id = f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{next(_serial):06x}"
    folder = RunFolder(root / run_id)
    folder.path.mkdir(parents=True)
    folder.write_config(cfg)
    folder.update_status(state="queued", owner=None, submitted=time.time(), queued_at=time.time(), epoch=0,
                         epochs=cfg.epochs)
    assert worker.run(folder.path) == "finished", folder.status()
    return folder.path


def composition(task: str, channels: int, size: int) -> ArchitectureSpec:
    return ArchitectureSpec.from_dict({"task": task, "input": {"channels": channels, "height": size, "width": size},
                                       "backbone": {"name": "custom", "stages": [{"block": "conv"}, {"block": "conv"}]},
                                       "head": {"kind": task}})


LENET = TrainConfig(network="lenet5", dataset="digits", epochs=2, train_samples=512, threads=1)
# a composition at another input than the digits' 1×32×32: the run resized and repeated them
WIDE = TrainConfig(network=composition("classification", 3, 48), dataset="digits", epochs=1, train_samples=128,
                   threads=1)
ANGLE = TrainConfig(network=composition("regression", 1, 32), dataset="rotated_digits", epochs=1, train_samples=128,
                    threads=1)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    return {"lenet": finished_run(root, LENET), "wide": finished_run(root, WIDE), "angle": finished_run(root, ANGLE)}


def test_a_finished_run_is_a_network_labelled_with_its_data_set_and_score(runs):
    folder = runs["lenet"]
    run = RunFolder(folder)
    accuracy = run.result()["test"]["accuracy"]
    percent = f"{accuracy * 100:.1f} %"
    net = Network.trained(folder)
    assert (net.kind, net.key, net.title, net.input_shape, net.task, net.num_classes) == (
        "trained", run.run_id, "lenet5", (1, 32, 32), "classification", 10)
    assert net.classes == tuple("0123456789")
    assert (net.provenance, net.fully_trained) == ("trained in the app", True)
    assert net.headline == "Trained in the app: lenet5"
    assert net.weights_label == f"trained in the app on Digits (32×32), test accuracy {percent} (run {run.run_id})"
    assert net.label == f"lenet5 on Digits (32×32) · trained in the app · {percent}"
    assert net.description == (f"lenet5 trained in the app on Digits (32×32): 2 epochs from scratch, Adam; test "
                               f"accuracy {percent} on its 360 test images.")
    digest = hashlib.sha256(run.final_path.read_bytes()).hexdigest()
    assert net.cache_key == f"trained|{run.run_id}|run:{digest}"
    # its held-out samples and its canvas are the digits'; no pretrained switch (the weights are the run's)
    assert (net.dataset, net.digit_set, net.backbone_name) == ("digits", "digits", None)
    assert net.parameter_count() == 61_706


def test_its_model_predicts_the_test_split_as_the_run_measured(runs):
    run = RunFolder(runs["lenet"])
    test = run.result()["test"]
    built = Network.trained(run.path).build()
    assert not built.model.training and not any(p.requires_grad for p in built.model.parameters())
    split = datasets.get("digits").splits()
    predicted = predict(built.model, split.x_test, network=built.network).probabilities.argmax(1)
    confusion = torch.bincount(split.y_test * 10 + predicted, minlength=100).view(10, 10).tolist()
    assert confusion == test["confusion"]  # every test digit predicted as the run predicted it
    assert int((predicted == split.y_test).sum()) == test["correct"]
    # a photo of a held-out digit is prepared as the digits were for training
    index, label = digit_samples(1)[0]
    picture = digit_image(index)
    x, steps = built.network.preprocess(picture)
    assert x.shape == (1, 1, 32, 32)
    assert torch.equal(x, digit_preprocess(picture, "digits")[0]) and steps == digit_preprocess(picture, "digits")[1]


def test_a_run_at_another_input_sees_the_digits_as_its_training_did(runs):
    run = RunFolder(runs["wide"])
    net = Network.trained(run.path)
    assert net.input_shape == (3, 48, 48) and net.title == "custom → classification at 3×48×48"
    assert net.kind == "trained" and net.spec is not None and net.spec.head.settings["num_classes"] == 10
    split = datasets.get("digits").splits()
    seen = prepare(WIDE).data.x_test  # the test digits at the run's input, as `train` fed them
    assert torch.equal(net.dataset_input(split.x_test), seen)
    built = net.build()
    predicted = built.model(seen).argmax(1)
    assert int((predicted == split.y_test).sum()) == run.result()["test"]["correct"]
    x, steps = net.preprocess(digit_image(digit_samples(1)[0][0]))
    assert x.shape == (1, 3, 48, 48)
    assert "the 32×32 images are resized to the network's 48×48 input" in steps
    assert "the grey images are given to the network's 3 input channels (repeated)" in steps


def test_a_regression_run_gives_the_angle_with_its_unit(runs):
    run = RunFolder(runs["angle"])
    mae = run.result()["test"]["mae"]
    net = Network.trained(run.path)
    assert (net.task, net.num_classes, net.classes) == ("regression", None, None)
    assert net.target_label == "rotation angle (°)"
    assert net.weights_label == (f"trained in the app on Rotated digits (angle in degrees), test MAE {mae:.3g}° "
                                 f"(run {run.run_id})")
    assert net.label.endswith(f"· trained in the app · MAE {mae:.3g}°")
    split = datasets.get("rotated_digits").splits()
    values = predict(net.build().model, split.x_test, network=net).values[:, 0]
    assert float((values - split.y_test).abs().mean()) == pytest.approx(mae, abs=1e-4)


def copy_run(folder: Path, run_id: str) -> RunFolder:
    copy = folder.parent / run_id
    shutil.copytree(folder, copy)
    return RunFolder(copy)


def test_a_run_that_is_not_a_finished_one_says_why(runs, tmp_path):
    folder = runs["lenet"]
    with pytest.raises(TrainingError, match=r"^There is no run '20990101-000000-000000' in .*; pick a finished "
                                            r"run on Train\.$"):
        Network.trained(folder.parent / "20990101-000000-000000")
    for state in ("running", "stopped", "failed"):
        run = copy_run(folder, f"20990101-000000-00000{len(state)}")
        run.update_status(state=state)
        with pytest.raises(TrainingError, match=rf"^The run {run.run_id} is {state}, not finished; wait for it to "
                                                r"finish on Train, or pick a finished run\.$"):
            Network.trained(run.path)
        shutil.rmtree(run.path)
    run = copy_run(folder, "20990101-000000-0000aa")
    run.final_path.unlink()
    with pytest.raises(TrainingError, match=rf"^The run {run.run_id} has no final.safetensors in its folder; train "
                                            r"it again on Train\.$"):
        Network.trained(run.path)
    shutil.rmtree(run.path)


def test_other_weights_in_the_folder_are_another_network(runs):
    folder = runs["lenet"]
    run = copy_run(folder, "20990101-000000-0000bb")
    first = Network.trained(run.path)
    state = load_file(str(run.final_path))
    state["classifier.output.bias"] = state["classifier.output.bias"] + 1.0
    save_file(state, str(run.final_path))
    second = Network.trained(run.path)
    assert first.cache_key != second.cache_key  # a cached model is never the old weights under a new file
    state.pop("classifier.output.bias")
    save_file(state, str(run.final_path))
    with pytest.raises(TrainingError, match=rf"^The final weights of run {run.run_id} do not fit its network: its "
                                            r"final.safetensors lacks 'classifier.output.bias' \(1 missing, 0 of "
                                            r"another shape, 0 unknown\); train it again on Train\.$"):
        Network.trained(run.path).build()
    shutil.rmtree(run.path)
