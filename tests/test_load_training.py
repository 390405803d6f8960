"""Issue 15's classroom load with training, at N = 3: two sessions each start a small run of their own on /train
while a third browses; every run must finish (or wait in the queue with its position), no page may show an error
or another session's run, and each run folder must belong to the session that started it. Speed is measured by
`bench/load_training.py` and never asserted here. The first tests check, without a browser, how the bench reads
the Train page: the queue position in either wording, the runs table, another session's run.
"""
import importlib.util
import sys
from pathlib import Path

import pytest

from bench.server import CHROMIUM

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_load_training", ROOT / "bench" / "load_training.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while the class is being made
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def lt():
    return _bench()


def _probe(run_lines=(), table=None, queued=()):
    tables = [] if table is None else [table]
    return {"runLines": list(run_lines), "tables": tables, "queuedTexts": list(queued), "metrics": {},
            "numbers": {}, "search": "", "idle": True, "exception": 0, "traceback": False, "errors": []}


def test_queue_position_is_read_from_todays_and_the_new_wording(lt):
    assert lt._position("Run 20261202-080711-ea5b43 · queued · epoch 0 of 4 · position 3 in the queue") == 3
    assert lt._position("Queued: 3rd in line, expected to start in about 2 min") == 3
    assert lt._position("queued · 12th in the queue") == 12
    # neither the epochs, the run id nor a time is a position
    assert lt._position("Run 20261202-080711-ea5b43 · queued · epoch 0 of 4") is None
    assert lt._position("queued, expected to start in about 2 min") is None


def test_another_sessions_run_on_a_trainers_page_is_named(lt):
    plans = lt.make_trainer_plans(3, 64)
    assert [(p.epochs, p.seed) for p in plans] == [(1, 0), (2, 1), (3, 2)]
    registry = {"20261202-080711-aaaaaa": 0, "20261202-080712-bbbbbb": 1}
    me = lt.Trainer(plans[0], page=None, base="", step_timeout=1, registry=registry,
                    epochs_of={p.epochs: p.index for p in plans})
    me.result.run_id = "20261202-080711-aaaaaa"
    head = ["run", "state", "network", "dataset", "mode", "recipe", "epochs", "test"]
    mine = ["20261202-080711-aaaaaa", "finished", "lenet5", "digits", "scratch", "adam", "1 of 1", "40.0% accuracy"]
    theirs = ["20261202-080712-bbbbbb", "running", "lenet5", "digits", "scratch", "adam", "0 of 2", ""]
    assert lt._runs_table(_probe(table=[head, mine])) == [dict(zip(head, mine))]
    assert me._foreign(_probe(["Run 20261202-080711-aaaaaa · finished · epoch 1 of 1"], [head, mine])) is None
    assert me._foreign(_probe(["Run 20261202-080712-bbbbbb · running · epoch 0 of 2"])) == \
        "the live view shows run 20261202-080712-bbbbbb (trainer 1)"
    assert me._foreign(_probe(table=[head, mine, theirs])) == \
        "the runs table lists run 20261202-080712-bbbbbb (trainer 1)"
    me.result.run_id = None  # before its own run has an id, another's epoch count still gives it away
    assert me._foreign(_probe(["Run 20261202-080713-cccccc · queued · epoch 0 of 3"])) == \
        "the live view shows a run of 3 epochs (trainer 2)"


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.training
@pytest.mark.serial  # it measures latency: alone on the machine
@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is missing: install Debian's chromium "
                    "(`make browser` or `apt-get install -y chromium`) to run the browser tests")
def test_three_sessions_two_train_one_browses_none_sees_anothers_run(lt, tmp_path):
    pytest.importorskip("playwright.async_api", reason="Playwright for Python is not installed")
    # One round, no warm-up: the sessions meet the server's cold caches, and the walk stays near 90 s.
    runs = lt.run([3], log_dir=tmp_path, rounds=1, warmup=False, deadline_b=lambda n: 150,
                  progress=lambda *_: None)
    (r,) = runs
    text = lt.report(runs, ["--quick"], browse_steps=lt.BROWSE_STEPS, rounds=1, train_images=64, concurrency=4,
                     step_timeout=90, deadlines="A 78 s, B 150 s")
    assert r.mixed_up == 0, text
    assert r.errors == 0, text
    assert (len(r.trainers), r.browsers) == (2, 1), text
    assert r.accounted, text
    # here more than the bench's target: every run finished, or was queued with its position at the deadline
    assert all(t.outcome in ("finished", "queued") for t in r.trainers), text
    assert r.outcomes()["finished"] >= 1, text
    for t, plan in zip(r.trainers, r.plans):
        assert t.run_id and t.owner and t.folder_check == "", text
        if t.outcome == "finished":
            assert t.accuracy.endswith("%") and t.time_to_result_s > 0, text
    assert r.folder_problems == [], text
    assert len({t.owner for t in r.trainers}) == 2, text  # two sessions, two owners
    # the browser did its steps in both phases, and in phase B some of them while a run was queued or running
    assert r.alone.count("ok") == len(lt.BROWSE_STEPS), text
    assert r.training.count("ok") >= len(lt.BROWSE_STEPS), text
    assert any(x.training for x in r.training.steps if x.status == "ok"), text
    assert "| 3 | 2 / 1 |" in text
