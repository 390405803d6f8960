"""Fair sharing of one server (issue 15): the queue round-robin over sessions, the per-session quota, the expected
start of each queued run, and identical configurations trained once and shared.

No worker is started: a "running" run whose pid is this test process holds the only slot (a previous server's
live worker, as `RunManager.scan` finds it), so the queue stays as the test writes it.
"""
import os

import pytest

from explorer.training import TrainConfig, TrainingError
from explorer.training.jobs import RunManager, queue_phrase
from explorer.training.runfolder import RunFolder


def _cfg(seed: int) -> TrainConfig:
    return TrainConfig(network="lenet5", dataset="digits", epochs=1, train_samples=64, seed=seed, threads=1)


def _run(root, n: int, owner: str, state: str, **status) -> str:
    run_id = f"20260101-0000{n:02d}-00000{n % 10}"
    folder = RunFolder(root / run_id)
    folder.path.mkdir()
    cfg = _cfg(seed=n)
    folder.write_config(cfg)
    folder.update_status(**{"state": state, "owner": owner, "submitted": float(n), "queued_at": float(n),
                            "epoch": 0, "epochs": cfg.epochs, **status})
    return run_id


@pytest.fixture
def busy(tmp_path):
    """ann trains (epoch 2 of 5, 10 s an epoch); ann, bob and cat wait with known estimates."""
    ids = {"running": _run(tmp_path, 1, "ann", "running", pid=os.getpid(), epoch=2, epochs=5,
                           last_epoch={"epoch": 2, "epoch_seconds": 10.0}),
           "a1": _run(tmp_path, 2, "ann", "queued", estimate_seconds=40.0),
           "a2": _run(tmp_path, 3, "ann", "queued", estimate_seconds=40.0),
           "b1": _run(tmp_path, 4, "bob", "queued", estimate_seconds=20.0),
           "c1": _run(tmp_path, 5, "cat", "queued", estimate_seconds=60.0),
           "b2": _run(tmp_path, 6, "bob", "queued", estimate_seconds=10.0)}
    return RunManager(tmp_path, max_concurrent=1, max_per_owner=3), ids


def test_the_queue_takes_turns_over_sessions_and_says_when_each_starts(busy):
    manager, ids = busy
    names = {v: k for k, v in ids.items()}
    # bob and cat run nothing and come first (bob waited longer); then one each in turn; FIFO within ann
    assert [names[r] for r in manager.queue_order()] == ["b1", "c1", "a1", "b2", "a2"]
    positions = {names[s["run_id"]]: (s["queue_position"], s["expected_start"]) for s in manager.list()
                 if s["state"] == "queued"}
    # 3 epochs left × 10 s = 30 s, then 20 (b1), 60 (c1), 40 (a1), 10 (b2) one after another
    assert positions == {"b1": (1, 30.0), "c1": (2, 50.0), "a1": (3, 110.0), "b2": (4, 150.0), "a2": (5, 160.0)}
    assert queue_phrase(manager.status(ids["a1"])) == "3rd in line, expected to start in about 2 min"
    assert queue_phrase(manager.status(ids["b1"])) == "1st in line, expected to start in about 30 s"


def test_a_run_with_no_estimate_makes_the_starts_after_it_unknown(tmp_path):
    _run(tmp_path, 1, "ann", "running", pid=os.getpid(), epoch=0, epochs=5)  # no epoch timed, no estimate
    waiting = _run(tmp_path, 2, "bob", "queued", estimate_seconds=5.0)
    manager = RunManager(tmp_path, max_concurrent=1)
    assert manager.status(waiting)["expected_start"] is None
    assert queue_phrase(manager.status(waiting)) == "1st in line, start time unknown (no run has been timed yet)"


def test_the_quota_counts_a_sessions_queued_and_running_runs(busy):
    manager, ids = busy
    with pytest.raises(TrainingError, match=r"^You already have 3 runs queued or running, the limit of 3 per "
                                            r"session; wait for one to end, or stop one\.$"):
        manager.submit(_cfg(seed=99), owner="ann")
    assert len(list(manager.root.iterdir())) == 6  # nothing was made


def test_an_identical_config_is_trained_once_and_shared(busy):
    manager, ids = busy
    folders = len(list(manager.root.iterdir()))
    # ann's queued a1 (seed 2), submitted by dan: the same run, not a second one; the thread count aside
    same = manager.submit(_cfg(seed=2).replace(threads=2), owner="dan")
    assert same == ids["a1"] and len(list(manager.root.iterdir())) == folders
    assert manager.status(same)["owner"] == "ann" and manager.status(same)["sharers"] == ["dan"]
    assert [s["run_id"] for s in manager.list(owner="dan")] == [same]
    assert ids["a1"] in [s["run_id"] for s in manager.list(owner="ann")]
    # it counts in ann's quota only: dan may still queue eight of his own (the default quota)
    assert manager.max_per_owner == 3 and RunManager(manager.root.parent / "other").max_per_owner == 8
    # dan's stop leaves it to ann; ann's stop then takes it off the queue
    assert manager.stop(same, owner="dan") == "You left the run; it goes on for the 1 other session that shares it."
    assert manager.status(same)["state"] == "queued" and manager.status(same)["sharers"] == []
    assert manager.list(owner="dan") == []
    with pytest.raises(TrainingError, match="belongs to another session"):
        manager.pause(same, owner="dan")
    assert manager.stop(same, owner="ann") == "The run was taken off the queue."
    assert manager.status(same)["state"] == "stopped"
    # a stopped run is not shared: the same config again is a new run
    again = manager.submit(_cfg(seed=2), owner="dan")
    assert again != same and len(list(manager.root.iterdir())) == folders + 1
    assert manager.submit(_cfg(seed=2), owner="eve") == again  # now that one is shared
    fresh = manager.submit(_cfg(seed=2), owner="eve", fresh=True)
    assert fresh not in (again, same) and len(list(manager.root.iterdir())) == folders + 2


def test_a_teacher_stops_a_shared_run_for_everyone(busy):
    manager, ids = busy
    manager.submit(_cfg(seed=5), owner="ann")  # cat's c1
    assert manager.status(ids["c1"])["sharers"] == ["ann"]
    assert manager.stop(ids["c1"], teacher=True) == "The run was taken off the queue."
    assert manager.status(ids["c1"])["state"] == "stopped"
    assert manager.stop(ids["running"], teacher=True) == "The run stops after its current step."


def test_a_session_runs_at_most_its_share_of_the_slots(tmp_path):
    _run(tmp_path, 1, "ann", "running", pid=os.getpid(), epoch=0, epochs=5)
    _run(tmp_path, 2, "ann", "queued")
    manager = RunManager(tmp_path, max_concurrent=2)  # one free slot; ann's share is one
    assert manager.max_running_per_owner == 1
    assert manager._next_queued() is None  # the free slot waits for another session
