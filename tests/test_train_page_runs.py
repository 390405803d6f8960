"""Train page (AppTest), what issue 13 adds around a run: the estimated time before the start, the memory budget's
refusal, the sample predictions, the images of a confusion cell, the last finite weights of a NaN run, pruning,
the comparison of runs, an earlier run as the network, and a shared link that is read-only.

Runs are made by the worker's own function in this process (`worker.run` on a run folder: the files a spawned
worker writes, in a second), into a temporary ``EXPLORER_RUNS``.
"""
import json
import re
import time

import pytest
import torch

from apptest_pages import assert_clean, open_page
from explorer.training import TrainConfig, datasets, worker
from explorer.training.runfolder import RunFolder
from test_train_page import charts, metrics

OWNER = "0123456789abcdef"  # a session id as the page makes them (16 hex digits)


def make_run(root, n: int, owner: str = OWNER, **changes) -> str:
    """A finished run of LeNet-5 on 64 digits for one epoch (``changes`` to the config), owned by ``owner``."""
    run_id = f"20260101-0000{n:02d}-00000{n % 10}"
    folder = RunFolder(root / run_id)
    folder.path.mkdir()
    cfg = TrainConfig(**{**dict(network="lenet5", dataset="digits", epochs=1, train_samples=64, threads=1),
                         **changes})
    folder.write_config(cfg)
    folder.update_status(state="queued", owner=owner, submitted=float(n), queued_at=float(n), epochs=cfg.epochs,
                         macs=416_520)
    worker.run(folder.path)
    return run_id


def run_line(at) -> str:
    lines = [m.value for m in at.markdown if m.value.startswith("Run `")]
    return lines[0] if lines else ""


def test_the_estimated_time_per_epoch_before_the_start(runs_root):
    at = open_page("train")
    per_epoch = metrics(at)["Time per epoch"]
    assert re.fullmatch(r"≈ [\d.]+ s", per_epoch), per_epoch
    line = next(c.value for c in at.caption if c.value.startswith("≈ "))
    seconds = float(per_epoch.split()[1])
    found = re.match(r"≈ ([\d.]+) s per epoch, ≈ ([\d.]+) s in all — measured: a training step of 32 images "
                     r"takes [\d.e-]+ s here with 1 thread, as the run will train, × 40 steps, plus validation\.$",
                     line)
    assert found, line
    assert float(found.group(1)) == seconds
    # ten epochs; the shown epoch is rounded to a tenth of a second (0.35 s reads "0.4 s"), the total not
    assert float(found.group(2)) == pytest.approx(10 * seconds, abs=10 * 0.05 + 0.05)
    at.number_input(key="w.train.epochs").set_value(20).run()
    assert metrics(at)["Time per epoch"] == per_epoch  # measured once per config: more epochs, the same epoch
    line = next(c.value for c in at.caption if c.value.startswith("≈ "))
    # past a minute the total reads "1 min 5 s" (a loaded machine measures slower steps)
    total = re.match(r"≈ [\d.]+ s per epoch, ≈ (?:(\d+) min ?)?(?:([\d.]+) s)? in all", line)
    assert total, line
    assert 60 * float(total.group(1) or 0) + float(total.group(2) or 0) == \
        pytest.approx(20 * seconds, abs=20 * 0.05 + 0.5)


def test_a_batch_over_the_memory_budget_is_refused_before_the_start(runs_root, monkeypatch):
    monkeypatch.setenv("EXPLORER_TRAIN_MEMORY_MB", "3")
    at = open_page("train")
    assert not at.error and not at.button(key="w.train.start").disabled  # a batch of 32 digits: 2.1 MB
    at.number_input(key="w.train.batch").set_value(64).run()
    assert_clean(at)
    assert [e.value for e in at.error] == [
        "Training a batch of 64 needs about 3.32 MB (2.33 MB of activations saved for the backward pass, 987.30 kB "
        "of weights, gradients and optimiser state), more than this server's training budget of 3.00 MB; choose a "
        "batch of at most 55, or build the network for a smaller input."]
    assert at.button(key="w.train.start").disabled
    assert metrics(at)["Training, batch 64"] == "2.33 MB"  # the figure is still shown beside the refusal
    at.number_input(key="w.train.batch").set_value(55).run()
    assert not at.error and not at.button(key="w.train.start").disabled


@pytest.mark.training
def test_a_finished_run_shows_its_samples_its_confusion_cells_and_its_script(runs_root):
    run_id = make_run(runs_root, 1, train_samples=256, epochs=2)
    folder = RunFolder(runs_root / run_id)
    at = open_page("train", run=run_id, owner=OWNER)
    assert "**finished**" in run_line(at)
    samples = folder.samples()["samples"]
    right = sum(s["correct"] for s in samples)
    assert any(m.value.startswith(f"**Predictions on 8 validation images after epoch 2** ({right} of 8 right)")
               for m in at.markdown)
    grids = [g for g in at.get("image") if len(g.captions) == 8 and any("✓" in c or "✗" in c for c in g.captions)]
    assert len(grids) == 1
    assert sum("✓" in c for c in grids[0].captions) == right
    assert [c.split()[0] for c in grids[0].captions] == [s["predicted"] for s in samples]

    result = folder.result()
    confusion = result["test"]["confusion"]
    # the selectors open on the most frequent mistake
    off = [(n, t, p) for t, row in enumerate(confusion) for p, n in enumerate(row) if t != p]
    n, t, p = max(off, key=lambda x: (x[0], -x[1], -x[2]))
    assert at.selectbox(key=f"w.train.cell.true.{run_id}").value == t
    assert at.selectbox(key=f"w.train.cell.pred.{run_id}").value == p
    at.selectbox(key=f"w.train.cell.true.{run_id}").set_value(3).run()
    at.selectbox(key=f"w.train.cell.pred.{run_id}").set_value(3).run()
    assert_clean(at)
    count = confusion[3][3]
    assert any(m.value.startswith(f"**{count} test images: true 3, predicted 3**") for m in at.markdown)
    cell = [g for g in at.get("image") if g.captions and all(c.startswith("#") for c in g.captions)]
    shown = [int(c[1:]) for c in cell[0].captions]
    y_test = datasets.get("digits").splits().y_test
    assert len(shown) == min(count, 24) and all(int(y_test[i]) == 3 for i in shown)
    assert all(result["pairs"][i] == [3, 3] for i in shown)
    assert "Download a PyTorch training script (.py)" in [b.label for b in at.get("download_button")]


def test_a_shared_link_is_read_only_and_the_runs_table_is_this_sessions(runs_root):
    folder = RunFolder(runs_root / "20260101-000000-0000a1")
    folder.path.mkdir()
    folder.write_config(TrainConfig(network="lenet5", dataset="digits", epochs=3))
    folder.update_status(state="paused", owner=OWNER, submitted=1.0, epoch=1, epochs=3, message="Paused.")
    other = open_page("train", run="20260101-000000-0000a1")  # the link alone, as someone shares it
    assert "**paused**" in run_line(other)
    assert any(c.value.startswith("This run belongs to another session: shown read-only") for c in other.caption)
    assert not [b for b in other.button if b.key and b.key.startswith("w.train.resume.")]
    assert any(c.value == "No runs yet in this session." for c in other.caption)
    mine = open_page("train", run="20260101-000000-0000a1", owner=OWNER)  # the owner's reload
    assert mine.button(key="w.train.resume.20260101-000000-0000a1")
    share = "To show it to someone, read-only: the link `/train?run=20260101-000000-0000a1`."
    assert share in [c.value for c in mine.caption] and share not in [c.value for c in other.caption]
    assert list(mine.dataframe[-1].value["run"]) == ["20260101-000000-0000a1"]


def test_a_nan_run_offers_its_last_finite_weights(runs_root):
    from safetensors.torch import save_file

    folder = RunFolder(runs_root / "20260101-000000-0000b1")
    folder.path.mkdir()
    folder.write_config(TrainConfig(network="lenet5", dataset="digits", epochs=3, lr=5.0))
    folder.update_status(state="failed", owner=OWNER, submitted=1.0, epoch=2, epochs=3,
                         message="The loss became NaN at epoch 2, batch 3; lower the learning rate (now 5).")
    save_file({"w": torch.ones(2)}, str(folder.last_finite_path))
    at = open_page("train", run="20260101-000000-0000b1", owner=OWNER)
    assert any(c.value == "The loss became NaN at epoch 2, batch 3; lower the learning rate (now 5)."
               for c in at.caption)
    assert any(w.value.startswith("The run stopped because its loss stopped being a finite number")
               for w in at.warning)
    labels = [b.label for b in at.get("download_button")]
    assert labels == ["Download the last finite weights (.safetensors)"]


def test_the_page_says_when_old_runs_were_pruned(runs_root, monkeypatch):
    monkeypatch.setenv("EXPLORER_RUNS_MAX_MB", "0.02")  # 20 kB
    for n, ended in ((1, 10.0), (2, 20.0)):
        folder = RunFolder(runs_root / f"20260101-00000{n}-00000{n}")
        folder.path.mkdir()
        folder.write_config(TrainConfig())
        folder.update_status(state="finished", owner=OWNER, submitted=ended, ended=ended)
        (folder.path / "final.safetensors").write_bytes(b"\0" * 15_000)
    at = open_page("train")
    assert_clean(at)
    info = [i.value for i in at.info if i.value.startswith("Removed the")]
    assert info and info[0].startswith("Removed the 1 oldest ended run (20260101-000001-000001; ")
    assert not (runs_root / "20260101-000001-000001").exists() and (runs_root / "20260101-000002-000002").exists()
    kept = sum(f.stat().st_size for f in (runs_root / "20260101-000002-000002").iterdir())
    assert any(re.match(rf"The runs folder \(.*\) holds {kept / 1000:.2f} kB of its 20\.00 kB cap", c.value)
               for c in at.caption)


@pytest.mark.training
def test_compare_runs_overlays_their_curves_and_lists_what_differs(runs_root):
    first = make_run(runs_root, 1, epochs=2)
    second = make_run(runs_root, 2, epochs=2, seed=1, recipe="one_cycle")
    make_run(runs_root, 3, owner="fedcba9876543210")  # another session's: not offered
    at = open_page("train", run=second, owner=OWNER)
    box = at.multiselect(key="w.train.compare")
    assert box.options == [second, first]
    box.set_value([first, second]).run()
    assert_clean(at)
    shown = charts(at)
    accuracy = shown["Validation accuracy per epoch"]["data"]
    assert [t["name"] for t in accuracy] == [first, second]
    for trace, run_id in zip(accuracy, (first, second)):
        epochs = [m for m in RunFolder(runs_root / run_id).metrics() if m["kind"] == "epoch"]
        assert trace["y"] == [e["val_accuracy"] for e in epochs] and trace["x"] == [1, 2]
    assert len(shown["Validation loss per epoch"]["data"]) == 2
    settings = next(d.value for d in at.dataframe if "seed" in d.value.columns)
    assert list(settings.columns) == ["run", "recipe", "lr", "seed"]  # one-cycle brings its own 3e-3
    assert settings.to_dict("records") == [{"run": first, "recipe": "adam", "lr": 1e-3, "seed": 0},
                                           {"run": second, "recipe": "one_cycle", "lr": 3e-3, "seed": 1}]
    results = next(d.value for d in at.dataframe if "MACs per image" in d.value.columns)
    for row, run_id in zip(results.to_dict("records"), (first, second)):
        r = RunFolder(runs_root / run_id).result()
        assert row["test accuracy"] == f"{r['test']['accuracy']:.1%}"
        assert row["parameters"] == 61_706 and row["trainable parameters"] == 61_706
        assert row["MACs per image"] == 416_520 and row["training time (s)"] == round(r["seconds"], 1)


@pytest.mark.training
def test_an_earlier_run_as_the_network_with_a_regression_head(runs_root):
    run_id = make_run(runs_root, 1, epochs=1)
    at = open_page("train", run=run_id, owner=OWNER)
    at.radio(key="w.train.source").set_value("run").run()
    assert at.selectbox(key="w.train.earlier").value == run_id
    at.selectbox(key="w.train.dataset").set_value("rotated_digits").run()
    at.selectbox(key="w.train.mode").set_value("frozen").run()
    assert_clean(at)
    assert not at.error
    assert metrics(at)["Trainable parameters"] == "121"  # the regression head on the run's frozen backbone
    assert any("the backbone starts from the backbone of an earlier run (final.safetensors)" in c.value
               for c in at.caption)
    assert any(c.value.startswith(f"Trains the network of the run {run_id}: pretrained backbone frozen")
               for c in at.caption)
    # and it trains: the angle from the earlier digit classifier's frozen backbone
    at.number_input(key="w.train.epochs").set_value(1).run()
    at.number_input(key="w.train.samples").set_value(64).run()
    at.button(key="w.train.start").click().run()
    assert_clean(at)
    new = at.query_params["run"]
    new = new[0] if isinstance(new, list) else new
    assert new != run_id
    deadline = time.monotonic() + 120
    while "**finished**" not in run_line(at) and time.monotonic() < deadline:
        time.sleep(0.5)
        at.run()
    assert "**finished**" in run_line(at), run_line(at)
    assert metrics(at)["Test MAE"].endswith(" °")
    cfg = TrainConfig.from_dict(json.loads((runs_root / new / "config.json").read_text()))
    assert cfg.pretrained_from == str(runs_root / run_id / "final.safetensors") and cfg.mode == "frozen"


def test_a_download_not_on_disk_offers_its_button_and_cannot_start(runs_root, tmp_path, monkeypatch):
    monkeypatch.setenv("EXPLORER_DATA", str(tmp_path / "data"))  # nothing downloaded there
    at = open_page("train")
    box = at.selectbox(key="w.train.dataset")
    offline = [datasets.get(n).title for n in datasets.names()]
    assert box.options == offline + ["CIFAR-10 (a download)", "Oxford-IIIT Pets, 37 breeds at 96×96 (a download)",
                                     "Oxford-IIIT Pets trimaps (segmentation, 96×96) (a download)",
                                     "Your own data: a zip of one folder per class"]
    box.set_value("cifar10").run()
    assert_clean(at)
    assert at.button(key="w.data.download.cifar10")  # the download panel's button; nothing fetched
    assert [e.value for e in at.error] == [
        f"{datasets.get('cifar10').title} is not on this server yet; download it above to train on it."]
    assert at.button(key="w.train.start").disabled
    box.set_value("zip").run()
    assert_clean(at)
    assert [e.value for e in at.error] == ["Upload a zip of one folder per class to train on it."]


def test_your_own_zip_is_a_dataset_to_train_on(runs_root, tmp_path, monkeypatch):
    from test_training import _good_entries, _zip

    monkeypatch.setenv("EXPLORER_DATA", str(tmp_path / "data"))
    zipped = _zip(_good_entries())  # two shades, six 12×12 images each
    at = open_page("train")
    at.selectbox(key="w.train.dataset").set_value("zip").run()
    at.file_uploader(key="w.data.zip").set_value(("shades.zip", zipped, "application/zip")).run()
    assert_clean(at)
    assert not at.error and not at.button(key="w.train.start").disabled
    assert "Trains the catalog model lenet5 — LeNet (1998): from scratch (fresh random weights), on shades.zip." in \
        [c.value for c in at.caption]
    train_images = datasets.get(datasets.store_upload(zipped, title="shades.zip")).splits().sizes()["train"]
    assert metrics(at)["Training images"] == str(train_images)
