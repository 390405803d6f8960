"""The lectures' experiments as presets (explorer.training.experiments): every preset's runs build at both budgets,
the tiny homework group trains as jobs and its report carries the three models' rows with their numbers, the
verdict sentences carry the runs' numbers, an experiment survives a new manager (a restart)."""
import io
import re
import zipfile

import pytest

from explorer.training import RunManager, TrainingError, experiments, trainable_parameters
from explorer.training.experiments import RunSummary

OWNER = "0123456789abcdef"


@pytest.mark.parametrize("name", experiments.names())
def test_every_preset_builds_at_both_budgets(name):
    preset = experiments.get(name)
    assert preset.missing() is None
    tiny, default = preset.runs("tiny"), preset.runs("default")
    assert len(tiny) == len(default) >= 2
    for cfg in tiny.values():
        counts = trainable_parameters(cfg)
        assert counts["trainable"] > 0
    assert all(t.epochs < d.epochs for t, d in zip(tiny.values(), default.values()))


def test_the_budget_must_be_one_of_the_two():
    with pytest.raises(TrainingError, match="The budget must be one of tiny, default; got 'huge'."):
        experiments.get("homework").runs("huge")


def _summary(label, **test):
    return RunSummary(label, "20260101-000000-000000", "finished", [{"epoch": 1, "train_loss": 0.5}], test, 12.0,
                      1000, 1000, 5000)


def test_the_homework_verdict_says_the_margin_and_when_it_does_not_hold():
    labels = list(experiments.SEGMENTATION_NETWORKS)
    runs = {labels[0]: _summary(labels[0], miou=0.40, pixel_accuracy=0.80),
            labels[1]: _summary(labels[1], miou=0.45, pixel_accuracy=0.82),
            labels[2]: _summary(labels[2], miou=0.62, pixel_accuracy=0.90)}
    lines = experiments.get("homework").judge(runs)
    assert "“U-Net (skips)”: test mIoU 62.0 %, pixel accuracy 90.0 %, 1,000 parameters, trained in 12.0 s." in lines
    assert any("raise the test mIoU by +22.0 percentage points" in s and "(62.0 % against 40.0 %)" in s
               for s in lines)
    runs[labels[2]] = _summary(labels[2], miou=0.42, pixel_accuracy=0.81)
    assert any(s.startswith("The claim does not hold clearly") and "+2.0 percentage points" in s
               for s in experiments.get("homework").judge(runs))


def test_the_depth_verdict_says_higher_or_lower_in_words():
    def run(label, loss):
        return RunSummary(label, "20260101-000000-000000", "finished",
                          [{"epoch": 1, "train_loss": loss, "train_accuracy": 0.9}], {"accuracy": 0.9}, 12.0,
                          1000, 1000, 5000)

    labels = list(experiments.get("depth").runs("tiny"))
    plain, residual = [x for x in labels if x.startswith("plain")], [x for x in labels if x.startswith("residual")]
    losses = {plain[0]: 0.300, plain[1]: 0.161, residual[0]: 0.250, residual[1]: 0.260}
    lines = experiments.get("depth").judge({k: run(k, v) for k, v in losses.items()})
    assert any(s.startswith("Not as the lecture says: here the deeper plain network reaches a training loss 0.139 "
                            "lower than the shallow one") for s in lines), lines
    assert "Here the residual network also trains worse when deeper: its training loss is 0.010 higher than the " \
           "shallow one's (for the plain networks: 0.139 lower), so this run does not show the residual advantage." \
           in lines
    losses[residual[1]] = 0.2502  # a difference that rounds to nothing
    assert any("training loss is the same as the shallow one's" in s
               for s in experiments.get("depth").judge({k: run(k, v) for k, v in losses.items()}))
    losses.update({plain[1]: 0.320, residual[1]: 0.200})
    lines = experiments.get("depth").judge({k: run(k, v) for k, v in losses.items()})
    assert "As the lecture says, the deeper plain network trains worse: its final training loss is 0.020 higher " \
           "than the shallow one's." in lines
    assert "With residual connections depth does not hurt: the deeper residual network's training loss is 0.050 " \
           "lower than the shallow one's (for the plain networks: 0.020 higher)." in lines


@pytest.mark.slow
@pytest.mark.training
def test_the_tiny_homework_trains_and_its_report_has_the_three_rows(tmp_path):
    manager = RunManager(tmp_path / "runs", max_concurrent=3, max_per_owner=3, max_running_per_owner=3)
    exp = experiments.start("homework", "tiny", manager, owner=OWNER)
    assert list(exp.runs) == list(experiments.SEGMENTATION_NETWORKS) and all(exp.runs.values())
    for run_id in exp.runs.values():
        assert manager.wait(run_id, timeout=240)["state"] == "finished"
    again = experiments.load(exp.id, RunManager(tmp_path / "runs"))  # a restart finds the group
    assert again.runs == exp.runs and again.budget == "tiny"
    runs = experiments.summaries(again, manager)
    rows = experiments.table_rows(again, runs)
    assert [r["run"] for r in rows] == list(experiments.SEGMENTATION_NETWORKS)
    for r in rows:
        assert 0 <= r["test mIoU"] <= 1 and 0 <= r["test pixel accuracy"] <= 1 and r["parameters"] > 0
        assert r["epochs"] == 1 and r["MACs per image"] > 0
    with zipfile.ZipFile(io.BytesIO(experiments.report(again, manager))) as z:
        assert {"report.md", "curves.png"} <= set(z.namelist())
        md = z.read("report.md").decode()
    for r in rows:
        line = next(x for x in md.splitlines() if x.startswith(f"| {r['run']} |"))
        assert f"{100 * r['test mIoU']:.1f} %" in line and f"{r['parameters']:,}" in line
    verdict = experiments.verdict(again, manager)
    assert any(f"test mIoU {100 * runs['U-Net (skips)'].test['miou']:.1f} %" in s for s in verdict)


def test_a_damaged_experiment_id_is_a_sentence(tmp_path):
    with pytest.raises(TrainingError, match=r"^There is no experiment called '\.\./x'; start one of the presets\.$"):
        experiments.load("../x", RunManager(tmp_path / "runs"))


@pytest.mark.slow
@pytest.mark.training
@pytest.mark.serial
def test_the_unet_beats_the_no_skip_model_at_the_homework_budget(tmp_path):
    # The lecture's budget, three jobs at once with one torch thread each (about 3 minutes on two cores).
    manager = RunManager(tmp_path / "runs", max_concurrent=3, max_per_owner=3, max_running_per_owner=3)
    exp = experiments.start("homework", "default", manager, owner=OWNER)
    for run_id in exp.runs.values():
        assert manager.wait(run_id, timeout=600)["state"] == "finished"
    runs = experiments.summaries(exp, manager)
    plain, unet = runs["no skips (strided convs)"], runs["U-Net (skips)"]
    from explorer.training import datasets

    truth = datasets.get("shapes").splits().y_test
    chance = float((truth == 0).double().mean()) / 5  # all called background: its share as its IoU, the others 0
    assert all(r.test["miou"] > chance for r in runs.values()), {k: r.test["miou"] for k, r in runs.items()}
    margin = unet.test["miou"] - plain.test["miou"]
    print(f"U-Net {unet.test['miou']:.3f} ({unet.seconds:.0f} s), no skips {plain.test['miou']:.3f} "
          f"({plain.seconds:.0f} s), margin {margin:.3f}")
    assert margin >= 0.05
    assert any(s.startswith("The lecture's claim holds here") for s in experiments.verdict(exp, manager, runs))
