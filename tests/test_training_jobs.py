"""Runs as jobs (explorer.training.jobs / worker / runfolder): real spawned worker processes on tiny budgets.

Each spawned worker needs about 3 s to start (a fresh interpreter importing torch); the training itself is LeNet-5
on a subset of digits for a few epochs with one torch thread, so results are bit-identical to `train(cfg)` run in
this process with the same config.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from explorer.spec import ArchitectureSpec
from explorer.training import TrainConfig, TrainingError, train
from explorer.training.jobs import RunManager
from explorer.training.runfolder import RunFolder, load_checkpoint, pid_alive
from explorer.training import worker

TIMEOUT = 90  # seconds for one run on a loaded 2-core machine; each run here trains for a second or two
TIME_KEYS = ("train_seconds", "images_per_second", "epoch_seconds", "seconds")


def _cfg(**changes) -> TrainConfig:
    base = dict(network="lenet5", dataset="digits", recipe="one_cycle", epochs=2, train_samples=128,
                augmentation={"crop_padding": 2}, seed=0, threads=1)
    return TrainConfig(**{**base, **changes})


def _timeless(rows):
    return [{k: v for k, v in r.items() if k not in TIME_KEYS + ("kind",)} for r in rows]


def _until(predicate, what: str, timeout: float = TIMEOUT, manager: RunManager | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if manager is not None:
            manager.poll()
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    pytest.fail(f"waited {timeout} s for {what}")


def _ended(manager: RunManager, run_id: str) -> dict:
    status = manager.wait(run_id, TIMEOUT)
    if status["state"] in ("queued", "running"):
        log = (manager.folder(run_id) / "worker.log")
        pytest.fail(f"run {run_id} still {status['state']} after {TIMEOUT} s; its log: "
                    f"{log.read_text() if log.exists() else '(none)'}")
    return status


def _same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# -- no training -------------------------------------------------------------------------------------------------
def test_config_round_trips_through_json():
    spec = ArchitectureSpec.from_dict({"task": "regression", "input": {"channels": 1, "height": 32, "width": 32},
                                       "backbone": {"name": "lenet5"}, "head": {"kind": "regression"}})
    cfg = TrainConfig(network=spec, dataset="rotated_digits", mode="finetune", augmentation={"rotation": 5},
                      lr=3e-4, early_stopping=2)
    again = TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and isinstance(again.network, ArchitectureSpec)
    with pytest.raises(TrainingError, match="A training config has no setting 'learning_rate'"):
        TrainConfig.from_dict({"learning_rate": 0.1})


def test_scan_marks_dead_runs_interrupted_and_prune_removes_the_oldest_ended_first(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a pid that no longer runs: a worker of a server that was restarted
    runs = {  # run id: (state, ended, pid)
        "20260101-000000-000001": ("finished", 100.0, None),
        "20260101-000000-000002": ("failed", 50.0, None),  # ended first: pruned first
        "20260101-000000-000003": ("stopped", 200.0, None),
        "20260101-000000-000004": ("running", None, os.getpid()),  # a live worker of a previous server
        "20260101-000000-000005": ("queued", None, None),
        "20260101-000000-000006": ("paused", 10.0, None),  # oldest, but resumable: kept
        "20260101-000000-000007": ("running", None, gone.pid),
    }
    for run_id, (state, ended, pid) in runs.items():
        folder = RunFolder(tmp_path / run_id)
        folder.path.mkdir()
        folder.write_config(_cfg())
        folder.update_status(state=state, ended=ended, pid=pid, owner="ann", submitted=1.0, queued_at=1.0)
        (folder.path / "final.safetensors").write_bytes(b"\0" * 10_000)
    manager = RunManager(tmp_path, max_concurrent=1)  # scanned, never polled: nothing starts
    status = manager.status("20260101-000000-000007")
    assert status["state"] == "interrupted"
    assert status["message"] == ("The run was interrupted: its worker was not running when the explorer started; "
                                 "resume starts it again (no epoch was complete).")
    assert manager.status("20260101-000000-000004")["state"] == "running"
    assert manager.status("20260101-000000-000005")["queue_position"] == 1
    total = sum(RunFolder(tmp_path / r).size() for r in runs)
    report = manager.prune(total - 15_000)  # two runs' worth must go
    assert report.removed == ["20260101-000000-000002", "20260101-000000-000001"]
    assert report.freed >= 20_000 and report.total == total - report.freed
    assert report.message.startswith("Removed the 2 oldest ended runs (20260101-000000-000002, "
                                     "20260101-000000-000001; ")
    kept = {s["run_id"] for s in manager.list()}
    assert kept == set(runs) - set(report.removed)
    everything = manager.prune(0)
    assert everything.removed == ["20260101-000000-000003"]
    assert everything.message.endswith("The rest are queued, running, paused or interrupted, and are kept.")
    assert {s["state"] for s in manager.list()} == {"running", "queued", "paused", "interrupted"}
    with pytest.raises(TrainingError, match=r"^There is no run called '\.\./etc' in "):
        manager.status("../etc")
    with pytest.raises(TrainingError, match="only a paused, interrupted or stopped run can be resumed"):
        manager.resume("20260101-000000-000005")


# -- spawned runs ------------------------------------------------------------------------------------------------
@pytest.mark.training
def test_a_spawned_run_finishes_as_the_same_run_in_process(tmp_path):
    cfg = _cfg()
    manager = RunManager(tmp_path, max_concurrent=1)
    run_id = manager.submit(cfg, owner="ann")
    status = _ended(manager, run_id)
    here = train(cfg)
    assert status["state"] == "finished", status["message"]
    result = manager.result(run_id)
    assert result["test"]["accuracy"] == here.test["accuracy"]  # 0.5167 here: two short epochs on 128 images
    assert result["test"]["confusion"] == here.test["confusion"]
    assert status["message"] == f"Finished 2 epochs; test accuracy {here.test['accuracy']:.1%}."
    assert _same_weights(load_file(manager.folder(run_id) / "final.safetensors"), here.state_dict())
    epochs = manager.metrics(run_id, "epoch")
    assert _timeless(epochs) == _timeless(here.history)
    batches = manager.metrics(run_id, "batch")
    assert len(batches) == 2 * 4 and [b["step"] for b in batches] == list(range(1, 9))  # 128 images, batches of 32
    assert manager.config(run_id) == cfg
    assert status["started"] <= status["ended"] and status["pid"] > 0 and status["pid"] != os.getpid()
    assert load_checkpoint(manager.folder(run_id) / "checkpoint.safetensors")["epoch"] == 2
    # a worker of its own, below the server's priority (`python -m explorer.training.worker`, not a spawned copy)
    first = (manager.folder(run_id) / "worker.log").read_text().splitlines()[0]
    assert first == f"worker {status['pid']} for {run_id}, nice {min(19, os.nice(0) + worker.WORKER_NICE)}"


@pytest.mark.training
def test_stop_on_request_keeps_the_last_checkpoint(tmp_path):
    manager = RunManager(tmp_path, max_concurrent=1)
    run_id = manager.submit(_cfg(epochs=200, train_samples=512), owner="ann")
    _until(lambda: (manager.status(run_id).get("checkpoint_epoch") or 0) >= 1, "the first checkpoint",
           manager=manager)
    assert manager.stop(run_id) == "The run stops after its current step."
    status = _ended(manager, run_id)
    assert status["state"] == "stopped", status["message"]
    epochs = manager.metrics(run_id, "epoch")
    complete = [e for e in epochs if "stopped_after_batch" not in e]
    assert 1 <= len(complete) < 200
    assert load_checkpoint(manager.folder(run_id) / "checkpoint.safetensors")["epoch"] == len(complete)
    last = epochs[-1]
    where = (f"stopped on request during epoch {last['epoch']}, after batch {last['stopped_after_batch']}"
             if "stopped_after_batch" in last else None)
    result = manager.result(run_id)
    if where:  # the usual case: the request arrives mid-epoch
        # where it stopped, said once: "Stopped on request during epoch 3, after batch 2; test accuracy …"
        assert result["stopped"] == where and status["message"].startswith(f"S{where[1:]}; test accuracy ")
        assert status["message"].count("stopped on request") + status["message"].count("Stopped on request") == 1
    assert 0 < result["test"]["accuracy"] <= 1 and result["test"]["count"] == 360
    assert (manager.folder(run_id) / "final.safetensors").exists()
    assert not (manager.folder(run_id) / "stop").exists()


@pytest.mark.training
def test_pause_then_resume_gives_the_uninterrupted_run(tmp_path):
    cfg = _cfg(epochs=3, train_samples=256)
    manager = RunManager(tmp_path, max_concurrent=1)
    run_id = manager.submit(cfg, owner="ann")
    # asked before the worker has even started: it pauses at the end of epoch 1, every time
    assert manager.pause(run_id) == "The run pauses at the end of its current epoch."
    status = _ended(manager, run_id)
    assert status["state"] == "paused", status["message"]
    assert status["message"] == "Paused after epoch 1 of 3; resume continues with the next."
    assert len(manager.metrics(run_id, "epoch")) == 1
    assert not (manager.folder(run_id) / "final.safetensors").exists()
    assert manager.resume(run_id) == "The run is queued to resume."
    status = _ended(manager, run_id)
    assert status["state"] == "finished" and status["resumed_from"] == 1, status["message"]
    whole = train(cfg)
    assert _timeless(manager.metrics(run_id, "epoch")) == _timeless(whole.history)
    assert manager.result(run_id)["test"] == {k: v for k, v in whole.test.items() if k != "pairs"}
    assert _same_weights(load_file(manager.folder(run_id) / "final.safetensors"), whole.state_dict())


@pytest.mark.training
def test_a_killed_worker_leaves_a_resumable_run(tmp_path):
    cfg = _cfg(epochs=4, train_samples=640)  # 20 steps an epoch
    manager = RunManager(tmp_path, max_concurrent=1)
    run_id = manager.submit(cfg, owner="ann")
    _until(lambda: any(b["epoch"] >= 2 for b in manager.metrics(run_id, "batch")), "epoch 2 to begin")
    pid = manager.status(run_id)["pid"]
    os.kill(pid, signal.SIGKILL)  # mid-epoch, maybe mid-write
    _until(lambda: not pid_alive(pid), "the killed worker to end")
    restarted = RunManager(tmp_path, max_concurrent=1)  # a server restart: a new manager scans the root
    status = restarted.status(run_id)
    assert status["state"] == "interrupted"
    done = status["checkpoint_epoch"]
    assert 1 <= done < 4
    assert status["message"] == ("The run was interrupted: its worker was not running when the explorer started; "
                                 f"resume continues after epoch {done}, its last checkpoint.")
    folder = restarted.folder(run_id)
    for name in ("config.json", "status.json"):  # every file still parses
        json.loads((folder / name).read_text())
    assert load_checkpoint(folder / "checkpoint.safetensors")["epoch"] == done
    assert len(restarted.metrics(run_id, "epoch")) >= done
    restarted.resume(run_id)
    status = _ended(restarted, run_id)
    assert status["state"] == "finished" and status["resumed_from"] == done, status["message"]
    whole = train(cfg)
    assert _timeless(restarted.metrics(run_id, "epoch")) == _timeless(whole.history)
    steps = [b["step"] for b in restarted.metrics(run_id, "batch")]
    assert steps == list(range(1, 4 * 20 + 1))  # the part-epoch before the kill is not kept twice
    assert _same_weights(load_file(folder / "final.safetensors"), whole.state_dict())


@pytest.mark.training
def test_queue_bound_and_quota_per_owner(tmp_path):
    manager = RunManager(tmp_path, max_concurrent=1, max_per_owner=2)
    first = manager.submit(_cfg(epochs=1), owner="ann")
    second = manager.submit(_cfg(epochs=1, seed=1), owner="ann")
    assert manager.status(first)["state"] == "running"
    assert manager.status(second)["state"] == "queued" and manager.status(second)["queue_position"] == 1
    with pytest.raises(TrainingError, match=r"^You already have 2 runs queued or running, the limit of 2 per "
                                            r"session; wait for one to end, or stop one\.$"):
        manager.submit(_cfg(), owner="ann")
    other = manager.submit(_cfg(epochs=1, seed=2), owner="bob")  # another session's quota is its own
    # Fair sharing: bob has nothing running and ann has one, so bob's run is next, ahead of ann's second.
    assert manager.status(other)["queue_position"] == 1 and manager.status(second)["queue_position"] == 2
    assert [s["run_id"] for s in manager.list(owner="ann")] == [second, first]
    assert manager.stop(other) == "The run was taken off the queue."
    assert manager.status(other)["state"] == "stopped" and "queue_position" not in manager.status(other)
    assert manager.status(second)["queue_position"] == 1
    first_status = _ended(manager, first)
    assert first_status["state"] == "finished"
    assert manager.status(second)["state"] == "running"  # started by the poll that saw the first end
    second_status = _ended(manager, second)
    assert second_status["state"] == "finished"
    assert second_status["started"] >= first_status["ended"]
    assert manager.result(second)["test"]["accuracy"] != manager.result(first)["test"]["accuracy"]  # seed 1 vs 0


@pytest.mark.training
def test_a_nan_learning_rate_fails_with_the_sentence_and_keeps_the_last_finite_checkpoint(tmp_path):
    spec = ArchitectureSpec.from_dict({"task": "regression", "input": {"channels": 1, "height": 32, "width": 32},
                                       "backbone": {"name": "lenet5"}, "head": {"kind": "regression"}})
    cfg = TrainConfig(network=spec, dataset="rotated_digits", recipe="resnet", lr=1.0, epochs=4, train_samples=128,
                      batch_size=16, threads=1)
    folder = RunFolder(tmp_path / "20260101-000000-00000a")
    folder.path.mkdir()
    folder.write_config(cfg)
    folder.update_status(state="queued")
    assert worker.run(folder.path) == "failed"  # the worker's work, in this process
    status = folder.status()
    assert status["state"] == "failed"
    assert status["message"] == "The loss became infinite at epoch 2, batch 4; lower the learning rate (now 1)."
    checkpoint = load_checkpoint(folder.checkpoint_path)
    assert checkpoint["epoch"] == 1
    assert all(bool(torch.isfinite(v).all()) for v in checkpoint["model"].values() if v.is_floating_point())
    last = load_file(folder.last_finite_path)
    assert all(bool(torch.isfinite(v).all()) for v in last.values() if v.is_floating_point())
    assert not folder.final_path.exists() and folder.result() is None


@pytest.mark.training
def test_pause_at_once_drops_the_part_epoch(tmp_path):
    cfg = _cfg(epochs=3)
    folder = RunFolder(tmp_path / "20260101-000000-00000b")
    folder.path.mkdir()
    folder.write_config(cfg)
    folder.update_status(state="queued")
    folder.request_path("pause").write_text("now")  # as `RunManager.pause(run_id, at_once=True)` writes it
    assert worker.run(folder.path) == "paused"
    status = folder.status()
    assert status["message"] == "Paused during epoch 1; resume runs it again from the start."
    assert folder.metrics() == [] and not folder.checkpoint_path.exists() and not folder.request_path("pause").exists()
    assert worker.run(folder.path) == "finished"  # the resume: from the start, as if never paused
    whole = train(cfg)
    assert _timeless(m for m in folder.metrics() if m["kind"] == "epoch") == _timeless(whole.history)
    assert _same_weights(load_file(folder.final_path), whole.state_dict())
