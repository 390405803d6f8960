"""Train page (AppTest): what a run will cost before it starts, a bad choice as a sentence, and a tiny run started
on the page that trains in its own process to the end, then shows its test accuracy, its files and the Runs table.

Runs go to a temporary folder (``EXPLORER_RUNS``); the manager is cached per folder, so each test gets its own.
"""
import json
import time

import pytest

from apptest_pages import assert_clean, open_page
from explorer.training import TrainConfig, datasets, train

RUN_TIMEOUT = 120  # seconds: a spawned worker takes ~3 s to import torch, the tiny run a second more


def metrics(at) -> dict:
    return {m.label: m.value for m in at.metric}


def charts(at) -> dict:
    """Plotly charts on the page by their title."""
    out = {}
    for c in at.get("plotly_chart"):
        spec = json.loads(c.proto.spec)
        out[spec["layout"].get("title", {}).get("text", "")] = spec
    return out


def param(at, name: str) -> str:
    value = at.query_params[name]
    return value[0] if isinstance(value, list) else value


def run_line(at) -> str:
    lines = [m.value for m in at.markdown if m.value.startswith("Run `")]
    return lines[0] if lines else ""


def run_until(at, predicate, what: str, timeout: float = RUN_TIMEOUT):
    """Rerun the page (as the fragment's poll would) until ``predicate(at)``; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        at.run()
        assert_clean(at)
        if predicate(at):
            return
        time.sleep(0.5)
    pytest.fail(f"waited {timeout} s for {what}; the page says {run_line(at)!r}")


def test_train_page_opens_with_lenet5_on_digits(runs_root):
    at = open_page("train")
    m = metrics(at)
    assert m["Trainable parameters"] == "61,706"  # LeNet-5 from scratch, every parameter trains
    assert m["MACs per image"] == "416.52 K"
    assert m["Training, batch 32"] == "1.17 MB"  # 36,432 bytes autograd saves per image × 32
    assert m["Training images"] == "1,258"
    assert "Trains the catalog model lenet5 — LeNet (1998): from scratch (fresh random weights), on Digits (32×32)." \
        in [c.value for c in at.caption]
    schedule = charts(at)["Learning rate per step"]
    lrs = schedule["data"][0]["y"]
    assert len(lrs) == 400 and set(lrs) == {0.001}  # Adam: 10 epochs × 40 batches of 32, constant 1e-3
    # the preview: the first twelve training digits with their labels, and the class counts per split
    preview = at.get("image")[0]
    assert preview.captions == [p.label for p in datasets.get("digits").preview(10)]
    counts = at.dataframe[0].value
    assert list(counts.index) == ["train", "val.", "test"]
    assert counts.loc["train"].sum() == 1258 and counts.loc["test"].sum() == 360
    assert any("No runs yet in this session." == c.value for c in at.caption)
    assert not at.error


def test_frozen_mode_trains_only_the_head_and_the_schedule_follows_the_recipe(runs_root):
    at = open_page("train")
    at.selectbox(key="w.train.mode").set_value("frozen").run()
    assert_clean(at)
    assert metrics(at)["Trainable parameters"] == "850"  # classifier.output: 84 × 10 + 10
    assert any("the backbone starts from the shipped LeNet-5" in c.value for c in at.caption)
    at.selectbox(key="w.train.recipe").set_value("one_cycle").run()
    lrs = charts(at)["Learning rate per step"]["data"][0]["y"]
    assert at.number_input(key="w.train.lr.one_cycle").value == pytest.approx(3e-3)
    assert max(lrs) == pytest.approx(3e-3) and lrs[0] < 3e-4 and lrs[-1] < 1e-5  # rises to the peak, anneals


def test_a_choice_that_cannot_train_is_one_sentence(runs_root, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no pretrained weights anywhere
    at = open_page("train")
    at.selectbox(key="w.train.catalog").set_value("resnet18").run()
    at.selectbox(key="w.train.mode").set_value("frozen").run()
    assert_clean(at)
    assert len(at.error) == 1
    assert at.error[0].value.startswith("The pretrained weights for resnet18 are not in torchvision's cache")
    assert "Traceback" not in at.error[0].value
    assert at.button(key="w.train.start").disabled
    assert not at.metric  # nothing is claimed about a run that cannot start


def test_a_damaged_run_link_is_a_sentence(runs_root):
    at = open_page("train", run="not-a-run")
    assert any("There is no run called 'not-a-run'" in e.value for e in at.error)
    assert "run" not in at.query_params


@pytest.mark.training
def test_start_a_tiny_run_see_it_finish_and_reattach_by_its_link(runs_root):
    at = open_page("train")
    at.number_input(key="w.train.epochs").set_value(2).run()
    at.number_input(key="w.train.samples").set_value(128).run()
    assert metrics(at)["Training images"] == "128"
    at.button(key="w.train.start").click().run()
    assert_clean(at)
    run_id = param(at, "run")
    assert run_line(at).startswith(f"Run `{run_id}` · **")
    run_until(at, lambda a: "**finished**" in run_line(a), "the run to finish")
    assert "epoch 2 of 2" in run_line(at)

    # the same config in this process gives the same model (deterministic, one thread as the worker)
    expected = train(TrainConfig(network="lenet5", dataset="digits", epochs=2, train_samples=128, lr=1e-3,
                                 weight_decay=0.0, threads=1))
    m = metrics(at)
    assert m["Test accuracy"] == f"{expected.test['accuracy']:.1%}"
    assert f"**{expected.test['correct']} of 360** test images classified correctly." in [x.value for x in at.markdown]
    shown = charts(at)
    assert len(shown["Training loss per batch"]["data"][0]["y"]) == 8  # 2 epochs × 4 batches of 32
    assert shown["Loss per epoch"]["data"][1]["y"] == pytest.approx([r["val_loss"] for r in expected.history])
    assert shown["Confusion matrix (test split)"]["data"][0]["z"] == expected.test["confusion"]
    labels = [b.label for b in at.get("download_button")]
    assert labels == ["Download the trained weights (.safetensors)", "Download the metrics (CSV)",
                      "Download a PyTorch training script (.py)"]
    runs = at.dataframe[-1].value
    assert list(runs["run"]) == [run_id] and list(runs["state"]) == ["finished"]
    assert list(runs["test"]) == [f"{expected.test['accuracy']:.1%} accuracy"]

    # a reload is a new session on the same address (the run and its owner): it shows the run and the runs again
    assert param(at, "owner")
    again = open_page("train", run=run_id, owner=param(at, "owner"))
    assert "**finished**" in run_line(again)
    assert metrics(again)["Test accuracy"] == m["Test accuracy"]
    assert list(again.dataframe[-1].value["run"]) == [run_id]


@pytest.mark.training
def test_stop_a_running_run_from_the_page(runs_root):
    at = open_page("train")
    at.number_input(key="w.train.epochs").set_value(200).run()  # long enough to be stopped while it trains
    at.button(key="w.train.start").click().run()
    run_until(at, lambda a: "**running**" in run_line(a) and a.get("plotly_chart") and
              "Training loss per batch" in charts(a), "the first batches")
    run_id = run_line(at).split("`")[1]
    at.button(key=f"w.train.stop.{run_id}").click().run()
    run_until(at, lambda a: "**stopped**" in run_line(a), "the run to stop")
    assert any(c.value.startswith("Stopped on request during epoch") and "; test accuracy " in c.value
               and c.value.lower().count("stopped on request") == 1 for c in at.caption)  # said once
    assert "Test accuracy" in metrics(at)  # the model as it was becomes final, with its test metrics
    assert at.button(key=f"w.train.resume.{run_id}")  # a stopped run can be resumed from its checkpoint
    # Predict, Explain and Feature maps open finished runs only: no link that would answer with a refusal
    assert not [p.proto.label for p in at.get("page_link") if p.proto.label == "Predict with it"]


@pytest.mark.training
def test_the_runs_picker_opens_an_earlier_run(runs_root):
    at = open_page("train")
    at.number_input(key="w.train.epochs").set_value(1).run()
    at.number_input(key="w.train.samples").set_value(64).run()
    at.button(key="w.train.start").click().run()
    run_until(at, lambda a: "**finished**" in run_line(a), "the first run to finish")
    first = run_line(at).split("`")[1]
    assert [p.proto.query_string for p in at.get("page_link") if p.proto.label == "Predict with it"] == \
        [f"source=run%3A{first}"]  # a finished run opens on Predict
    at.selectbox(key="w.train.dataset").set_value("faces").run()
    at.button(key="w.train.start").click().run()
    run_until(at, lambda a: "**finished**" in run_line(a) and first not in run_line(a), "the second run to finish")
    second = run_line(at).split("`")[1]
    assert list(at.dataframe[-1].value["run"]) == [second, first]  # newest first
    assert at.selectbox(key="w.train.open").value == second
    assert set(charts(at)["Confusion matrix (test split)"]["data"][0]["x"]) == {"not a face", "face"}
    at.selectbox(key="w.train.open").set_value(first).run()
    assert_clean(at)
    assert first in run_line(at) and param(at, "run") == first
    assert len(charts(at)["Confusion matrix (test split)"]["data"][0]["x"]) == 10  # the digits run again


@pytest.mark.slow
def test_the_composition_and_a_ready_model_as_the_network(runs_root):
    at = open_page("train")
    at.radio(key="w.train.source").set_value("composition").run()
    assert_clean(at)
    # the default composition, resnet18 → classification, its head sized to the ten digits: 11,689,512 − 513,000
    # (the 1000-class fc) + 5,130
    assert metrics(at)["Trainable parameters"] == "11,181,642"
    assert any(c.value.startswith("Trains your composition, resnet18") for c in at.caption)
    assert any("the head's 1000 classes set to the data set's 10" in c.value for c in at.caption)
    at.radio(key="w.train.source").set_value("gap_cnn_digits_canvas").run()
    at.selectbox(key="w.train.dataset").set_value("digits_canvas").run()
    assert_clean(at)
    assert metrics(at)["Trainable parameters"] == "24,058"
    assert metrics(at)["Training images"] == "1,258"


@pytest.mark.training
def test_a_fourth_run_is_refused_with_the_limit_named_and_queued_runs_say_their_place(runs_root, monkeypatch):
    monkeypatch.setenv("EXPLORER_QUOTA_RUNS", "3")  # the server's per-session quota (default 8)
    at = open_page("train")
    at.number_input(key="w.train.epochs").set_value(500).run()  # none of them ends during the test
    ids = []
    for seed in range(3):  # three different runs (an identical config would be trained once and shared)
        at.number_input(key="w.train.seed").set_value(seed).run()
        at.button(key="w.train.start").click().run()
        assert_clean(at)
        ids.append(param(at, "run"))
    assert len(set(ids)) == 3
    # one slot on two cores: the first trains (or is starting), the other two wait in order
    assert "2nd in line" in run_line(at) and "**queued**" in run_line(at)
    at.number_input(key="w.train.seed").set_value(3).run()
    at.button(key="w.train.start").click().run()
    assert [e.value for e in at.error] == [
        "You already have 3 runs queued or running, the limit of 3 per session; wait for one to end, or stop one."]
    assert param(at, "run") == ids[-1]  # still showing the last run that started
    at.button(key=f"w.train.stop.{ids[-1]}").click().run()
    assert "**stopped**" in run_line(at)
    assert any(c.value == "Stopped before it started." for c in at.caption)
    for run_id in ids[:2]:
        at.selectbox(key="w.train.open").set_value(run_id).run()
        at.button(key=f"w.train.stop.{run_id}").click().run()
    run_until(at, lambda a: set(a.dataframe[-1].value["state"]) == {"stopped"}, "every run to stop")
