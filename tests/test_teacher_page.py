"""Teacher page (AppTest): behind the server's teacher password, every session's runs with Stop on any of them.

The runs are folders written by the test: a "running" run whose pid is this test process holds the only slot
(``EXPLORER_SLOTS=1``), so the queued ones stay queued and no worker starts.
"""
import os

import pytest

from apptest_pages import assert_clean, open_page
from explorer.training import TrainConfig
from explorer.training.jobs import owner_tag
from explorer.training.runfolder import RunFolder

ANN, BOB = "0123456789abcdef", "fedcba9876543210"


def _run(root, n: int, owner: str, state: str, **status) -> str:
    run_id = f"20260101-0000{n:02d}-00000{n % 10}"
    folder = RunFolder(root / run_id)
    folder.path.mkdir()
    folder.write_config(TrainConfig(network="lenet5", dataset="digits", epochs=3, train_samples=64, seed=n))
    folder.update_status(**{"state": state, "owner": owner, "submitted": float(n), "queued_at": float(n),
                            "epoch": 0, "epochs": 3, **status})
    return run_id


@pytest.fixture
def runs_root(runs_root, monkeypatch):  # the shared one (conftest.py), with one slot and no password set
    monkeypatch.setenv("EXPLORER_SLOTS", "1")
    monkeypatch.delenv("EXPLORER_TEACHER_PASSWORD", raising=False)
    return runs_root


def test_no_password_configured_says_how_to_set_one(runs_root):
    at = open_page("teacher")
    assert [i.value for i in at.info] == [
        "No teacher password is set on this server; set teacher_password in .streamlit/secrets.toml, or the "
        "environment variable EXPLORER_TEACHER_PASSWORD, and restart the explorer."]
    assert not at.text_input and not at.dataframe


def test_the_teacher_sees_every_sessions_runs_and_stops_one(runs_root, monkeypatch):
    monkeypatch.setenv("EXPLORER_TEACHER_PASSWORD", "s3cret")
    running = _run(runs_root, 1, ANN, "running", pid=os.getpid(), epoch=1,
                   last_epoch={"epoch": 1, "epoch_seconds": 10.0, "val_accuracy": 0.5})
    mine = _run(runs_root, 2, ANN, "queued", estimate_seconds=30.0)
    theirs = _run(runs_root, 3, BOB, "queued", estimate_seconds=30.0)
    at = open_page("teacher")
    at.text_input(key="w.teacher.password").input("wrong").run()
    assert [e.value for e in at.error] == ["That is not the teacher password; type it again."]
    assert not at.dataframe
    at.text_input(key="w.teacher.password").input("s3cret").run()
    assert_clean(at)
    table = at.dataframe[0].value
    assert list(table["run"]) == [theirs, mine, running]
    assert list(table["session"]) == [owner_tag(BOB), owner_tag(ANN), owner_tag(ANN)]
    assert all(ANN not in str(v) and BOB not in str(v) for v in table.to_dict("list").values())
    # bob runs nothing, so his run goes first; 2 epochs left × 10 s, then bob's 30 s
    assert list(table["expected start"]) == ["expected to start in about 20 s", "expected to start in about 50 s", ""]
    assert list(table["metric"])[-1] == "val. 50.0%"
    assert any("1 of 1 slots in use" in md.value and "8 runs queued or running per session" in md.value
               for md in at.markdown)
    assert "s3cret" not in str([w.value for w in at.text_input])  # never echoed: the box is gone once unlocked
    at.selectbox(key="w.teacher.run").set_value(theirs).run()
    at.button(key="w.teacher.stop").click().run()
    assert [s.value for s in at.success] == ["The run was taken off the queue."]
    assert RunFolder(runs_root / theirs).status()["state"] == "stopped"
