"""The lectures' experiments as presets: each a group of runs trained alike and shown side by side.

    preset = experiments.get("homework")
    preset.claim, preset.runs("tiny")                       # {label: TrainConfig}, before anything runs
    exp = experiments.start("homework", "tiny", manager, owner=session_id)   # submits the runs, kept as JSON
    experiments.advance(exp, manager)                       # on each refresh: submit what waited for a slot
    summaries = experiments.summaries(exp, manager)         # {label: RunSummary}: curves, test metrics, cost
    experiments.verdict(exp, manager)                       # "what this run shows", sentences with numbers
    experiments.report(exp, manager)                        # a zip: report.md and its figures as PNG

A preset is declared beside its runs with `register` (as torchvision's ``register_model``): a name, a title, the
lecture's claim, the runs per budget (``"tiny"``: seconds, for tests and a quick look; ``"default"``: the lecture's
comparison at a size that trains on a CPU in minutes) and a verdict function that turns the finished runs into
sentences with their numbers — also when the claim does not hold here.

An `Experiment` (preset + budget + owner + {label: run_id}) lives in ``<runs root>/experiments/<id>.json``, so a
reload or a server restart finds it again. The runs themselves are ordinary jobs of `RunManager` (their own
folders, their own processes); a run the manager's quota did not admit yet waits in the experiment (run id None)
and `advance` submits it when the owner's earlier runs have ended. `RunManager.submit` may hand back the id of
an existing identical run: the experiment then shows that run.
"""
from __future__ import annotations

import dataclasses
import io
import json
import math
import pathlib
import re
import secrets
import time
import zipfile
from typing import Callable

from . import datasets
from .config import TrainConfig
from .errors import TrainingError
from .runfolder import ACTIVE_STATES, write_json_atomic

__all__ = ["Preset", "Experiment", "RunSummary", "BUDGETS", "BUDGET_TITLES", "register", "names", "get", "start",
           "load", "save", "advance", "summaries", "verdict", "table_rows", "report", "experiments_folder",
           "EXPERIMENT_ID", "SEGMENTATION_NETWORKS"]

BUDGETS = ("tiny", "default")
BUDGET_TITLES = {"tiny": "a quick look (seconds)", "default": "the lecture's (minutes)"}
EXPERIMENT_ID = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{6}$")
# The homework's three encoder–decoders, in the order the lecture names them, with the labels the page shows.
SEGMENTATION_NETWORKS = {"no skips (strided convs)": "seg_encoder_decoder",
                         "pool / unpool": "seg_pool_unpool",
                         "U-Net (skips)": "seg_unet"}


def _sentence(msg: str):
    raise TrainingError(msg)


# -- what a finished (or running) run shows ----------------------------------------------------------------------
@dataclasses.dataclass
class RunSummary:
    """One run of an experiment as its folder has it now (the run may still be queued or training)."""
    label: str
    run_id: str | None  # None: waiting to be submitted (the owner's quota)
    state: str  # queued / running / finished / ... ; "waiting" before it is submitted
    epochs: list[dict]  # the per-epoch history rows so far
    test: dict  # result.json's test metrics once it ended, else {}
    seconds: float | None  # training time (result.json), else the time so far
    parameters: int | None
    trainable: int | None
    macs: int | None  # per image, as the submission measured it
    message: str = ""

    @property
    def finished(self) -> bool:
        return self.state == "finished" and bool(self.test)

    def last(self, key: str):
        """The last epoch's value of ``key`` (None before the first epoch)."""
        values = [e[key] for e in self.epochs if e.get(key) is not None]
        return values[-1] if values else None

    def best(self, key: str, lowest: bool = False):
        values = [e[key] for e in self.epochs if e.get(key) is not None]
        return (min(values) if lowest else max(values)) if values else None


# -- presets -----------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Preset:
    name: str
    title: str
    claim: str  # what the lecture says, in a sentence or two
    task: str  # "classification" | "regression" | "segmentation"
    metric: str  # the test metric compared: "accuracy" | "mae" | "miou"
    build: Callable[[str], dict[str, TrainConfig]] = dataclasses.field(repr=False)
    judge: Callable[[dict[str, RunSummary]], list[str]] = dataclasses.field(repr=False)
    # the claim is about overfitting: the page draws training and validation curves together
    train_and_validation: bool = False
    needs: tuple[str, ...] = ()  # data sets that must be registered (the homework's shapes)

    def missing(self) -> str | None:
        """Why this preset cannot run here (a sentence), or None."""
        for name in self.needs:
            try:
                dataset = datasets.get(name)
            except TrainingError:
                return (f"{self.title} needs the {name!r} data set, which this explorer does not have yet; choose "
                        "another experiment.")
            if not dataset.available:
                return dataset.missing()
        return None

    def runs(self, budget: str) -> dict[str, TrainConfig]:
        """{label: TrainConfig} of ``budget`` ("tiny" or "default")."""
        if budget not in BUDGETS:
            _sentence(f"The budget must be one of {', '.join(BUDGETS)}; got {str(budget)[:40]!r}.")
        missing = self.missing()
        if missing:
            _sentence(missing)
        return self.build(budget)


_REGISTRY: dict[str, Preset] = {}


def register(name: str, *, title: str, claim: str, task: str, metric: str, judge, train_and_validation=False,
             needs: tuple[str, ...] = ()):
    """Decorator: register the function ``budget -> {label: TrainConfig}`` as the runs of a preset."""
    def wrap(build):
        if name in _REGISTRY:
            raise ValueError(f"An experiment called {name!r} is already registered.")
        _REGISTRY[name] = Preset(name, title, claim, task, metric, build, judge, train_and_validation, needs)
        return build
    return wrap


def names() -> list[str]:
    return list(_REGISTRY)


def get(name: str) -> Preset:
    if name not in _REGISTRY:
        _sentence(f"There is no experiment called {str(name)[:40]!r}; choose one of {', '.join(_REGISTRY)}.")
    return _REGISTRY[name]


# -- helpers for the verdicts ------------------------------------------------------------------------------------
def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f} %"


def _pp(v: float) -> str:
    return f"{100 * v:+.1f} percentage points"


def _secs(v: float | None) -> str:
    return "–" if v is None else f"{v:.1f} s"


def _pending(runs: dict[str, RunSummary]) -> list[str]:
    done = [r for r in runs.values() if r.finished]
    if len(done) == len(runs):
        return []
    ended = [r for r in runs.values() if r.state not in ACTIVE_STATES and r.state != "waiting" and not r.finished]
    out = [f"{len(done)} of {len(runs)} runs have finished; the verdict is drawn when all have."]
    out += [f"“{r.label}” ended {r.state}: {r.message}" for r in ended]
    return out


def _block(fact: str) -> str:
    """The block kind the registry marks with ``fact`` (kinds are spelled in their own modules only)."""
    from .. import components

    return components.with_fact("block", fact)[0]


def _custom(task: str, shape, stages: list[dict], stem: dict | None, head: dict):
    from ..spec import ArchitectureSpec

    c, h, w = shape
    return ArchitectureSpec.from_dict({  # no neck: the spec's default
        "task": task, "input": {"channels": c, "height": h, "width": w},
        "backbone": {"name": "custom", "stem": stem, "stages": stages}, "head": head})


# -- 1. the homework: three encoder–decoders ---------------------------------------------------------------------
def _judge_homework(runs: dict[str, RunSummary]) -> list[str]:
    pending = _pending(runs)
    if pending:
        return pending
    out = []
    for r in runs.values():
        out.append(f"“{r.label}”: test mIoU {_pct(r.test.get('miou'))}, pixel accuracy "
                   f"{_pct(r.test.get('pixel_accuracy'))}, {r.parameters:,} parameters, trained in "
                   f"{_secs(r.seconds)}.")
    labels = list(SEGMENTATION_NETWORKS)
    plain, unet = runs[labels[0]], runs[labels[2]]
    margin = unet.test["miou"] - plain.test["miou"]
    clear = 0.05  # five percentage points of mIoU: more than seeds and a few test images move it
    if margin >= clear:
        out.append(f"The lecture's claim holds here: the U-Net's skip connections raise the test mIoU by "
                   f"{_pp(margin)} over the encoder–decoder without skips ({_pct(unet.test['miou'])} against "
                   f"{_pct(plain.test['miou'])}).")
    else:
        out.append(f"The claim does not hold clearly in this run: the U-Net's test mIoU is {_pct(unet.test['miou'])}, "
                   f"the no-skip model's {_pct(plain.test['miou'])}, a margin of {_pp(margin)} (less than "
                   f"{100 * clear:.0f}); train longer (the lecture's budget) to see it.")
    best = max(runs.values(), key=lambda r: r.test["miou"])
    fastest = min(runs.values(), key=lambda r: r.seconds or math.inf)
    out.append(f"Best test mIoU: “{best.label}”; fastest to train: “{fastest.label}” ({_secs(fastest.seconds)}).")
    return out


@register("homework", title="The homework: three encoder–decoders for segmentation",
          claim="Segmentation needs both what and where: an encoder–decoder without skip connections loses the "
                "fine detail its strided convolutions threw away, max-pooling with unpooling puts features back "
                "where the maxima were, and the U-Net's skip concatenations give the decoder the encoder's "
                "full-resolution maps, so it segments best (highest IoU) at a similar cost.",
          task="segmentation", metric="miou", judge=_judge_homework, needs=("shapes",))
def _homework(budget: str) -> dict[str, TrainConfig]:
    if budget == "tiny":
        # scored on 32 of the 150 validation and test images each: at this budget the evaluation would otherwise
        # take three quarters of the run
        common = dict(dataset="shapes", epochs=1, batch_size=16, train_samples=32, eval_samples=32, seed=0)
    else:  # the U-Net (577 M MACs at 64×64) takes about 40 s an epoch of 300 images on one CPU thread
        common = dict(dataset="shapes", epochs=3, batch_size=16, train_samples=300, seed=0)
    return {label: TrainConfig(network=net, **common) for label, net in SEGMENTATION_NETWORKS.items()}


# -- 2. scratch vs frozen vs fine-tune ---------------------------------------------------------------------------
_TRANSFER = {"from scratch": "scratch", "pretrained, frozen backbone": "frozen", "pretrained, fine-tuned": "finetune"}


def _judge_transfer(runs: dict[str, RunSummary]) -> list[str]:
    pending = _pending(runs)
    if pending:
        return pending
    scratch, frozen, tuned = (runs[k] for k in _TRANSFER)
    out = [f"“{r.label}”: test accuracy {_pct(r.test['accuracy'])} ({r.trainable:,} of {r.parameters:,} parameters "
           f"trained, {_secs(r.seconds)})." for r in runs.values()]
    best_pretrained = max(frozen, tuned, key=lambda r: r.test["accuracy"])
    gain = best_pretrained.test["accuracy"] - scratch.test["accuracy"]
    if gain > 0:
        out.append(f"The lecture's advice holds here: starting from the pretrained digit LeNet (“{best_pretrained.label}”) "
                   f"beats training from scratch by {_pp(gain)} on this small set.")
    else:
        out.append(f"The claim does not hold in this run: training from scratch is {_pp(-gain)} better than the best "
                   f"pretrained start (“{best_pretrained.label}”); digits are far from faces, so what the digit "
                   "LeNet learned transfers little.")
    out.append(f"Freezing trains {frozen.trainable:,} parameters instead of {tuned.trainable:,}: "
               f"{_secs(frozen.seconds)} against {_secs(tuned.seconds)} here.")
    return out


@register("transfer", title="From scratch, frozen, or fine-tuned on a small data set",
          claim="With a very small data set, freeze a pretrained backbone and train only the new head; with a bit "
                "more, fine-tune it; training from scratch needs the most data. \"In practice we use pretrained "
                "weights even if our dataset is large.\"",
          task="classification", metric="accuracy", judge=_judge_transfer)
def _transfer(budget: str) -> dict[str, TrainConfig]:
    # The only pretrained weights shipped offline are the digit LeNet-5's; the small set is another task: faces.
    common = dict(network="lenet5_digits", dataset="faces", seed=0, batch_size=16)
    common.update(epochs=1, train_samples=32) if budget == "tiny" else common.update(epochs=15)
    return {label: TrainConfig(mode=mode, **common) for label, mode in _TRANSFER.items()}


# -- 3. depth without and with residual connections --------------------------------------------------------------
def _depth_stages(block: str, per_stage: int) -> list[dict]:
    return [{"block": block, "repeats": per_stage, "width": w, "stride": s} for w, s in ((16, 1), (32, 2), (64, 2))]


def _depth_runs(budget: str) -> dict[str, tuple[str, int]]:
    """{label: (block kind, blocks per stage)}: a plain stage of n conv blocks against a residual stage of n / 2
    blocks of two convs, so both have the same layers with weights (3 stages of n convs, the stem, the classifier;
    ResNet's way of counting, shortcut projections not counted)."""
    shallow, deep = (2, 4) if budget == "tiny" else (2, 6)
    runs = {}
    for kind, block in (("plain", _block("plain_stack")), ("residual blocks", _block("residual_stack"))):
        for n in (shallow, deep):
            runs[f"{kind}, {3 * n + 2} layers"] = (block, n if kind == "plain" else n // 2)
    return runs


def _depth_dataset() -> tuple[str, int | None]:
    cifar = datasets.get("cifar10")
    return ("cifar10", 5000) if cifar.available else ("digits", None)


def _judge_depth(runs: dict[str, RunSummary]) -> list[str]:
    pending = _pending(runs)
    if pending:
        return pending
    plain = [r for r in runs.values() if r.label.startswith("plain")]
    residual = [r for r in runs.values() if r.label.startswith("residual blocks")]
    out = [f"“{r.label}”: final training loss {r.last('train_loss'):.3f}, training accuracy "
           f"{_pct(r.last('train_accuracy'))}, test accuracy {_pct(r.test['accuracy'])}, {r.parameters:,} parameters."
           for r in runs.values()]
    plain_gap = plain[1].last("train_loss") - plain[0].last("train_loss")
    residual_gap = residual[1].last("train_loss") - residual[0].last("train_loss")
    if plain_gap > 0:
        out.append(f"As the lecture says, the deeper plain network trains worse: its final training loss is "
                   f"{plain_gap:.3f} higher than the shallow one's.")
    else:
        out.append(f"Not as the lecture says: here the deeper plain network reaches a training loss {-plain_gap:.3f} "
                   "lower than the shallow one (the degradation shows at larger depth and longer training; "
                   "batch normalisation already helps a plain stack this shallow).")
    if residual_gap <= max(0.0, plain_gap):
        out.append(f"With residual connections depth does not hurt: the deeper residual network's training loss is "
                   f"{_than(residual_gap)} the shallow one's (for the plain networks: {_change(plain_gap)}).")
    else:
        out.append(f"Here the residual network also trains worse when deeper: its training loss is "
                   f"{_than(residual_gap)} the shallow one's (for the plain networks: {_change(plain_gap)}), "
                   "so this run does not show the residual advantage.")
    return out


def _change(difference: float) -> str:
    """A difference of two losses in words: "0.139 lower", "0.020 higher", "the same"."""
    if round(difference, 3) == 0:
        return "the same"
    return f"{abs(difference):.3f} {'higher' if difference > 0 else 'lower'}"


def _than(difference: float) -> str:
    return "the same as" if round(difference, 3) == 0 else _change(difference) + " than"


@register("depth", title="Depth without and with residual connections",
          claim="A deeper plain network has a higher training error than a shallower one (the 56-layer against the "
                "20-layer network on CIFAR-10): depth alone degrades training. With residual blocks (y = F(x) + x, "
                "the identity is easy to learn) the deeper network trains at least as well.",
          task="classification", metric="accuracy", judge=_judge_depth)
def _depth(budget: str) -> dict[str, TrainConfig]:
    name, samples = _depth_dataset()
    shape = datasets.get(name).input_shape
    common = dict(dataset=name, seed=0, batch_size=32, train_samples=samples)
    common.update(epochs=1, train_samples=64) if budget == "tiny" else common.update(epochs=6)
    head = {"kind": "classification", "num_classes": 10}
    return {label: TrainConfig(network=_custom("classification", shape, _depth_stages(block, n),
                                               {"width": 16, "stride": 1}, head), **common)
            for label, (block, n) in _depth_runs(budget).items()}


# -- 4. Xception-like vs bipyramidal -----------------------------------------------------------------------------
_XCEPTION, _CLASSIC = "Xception-like (separable convs)", "classic bipyramidal CNN"


def _judge_xception(runs: dict[str, RunSummary]) -> list[str]:
    pending = _pending(runs)
    if pending:
        return pending
    x, c = runs[_XCEPTION], runs[_CLASSIC]

    def gap(r):  # how much better it does on the images it trains on than on the validation images
        return r.last("train_accuracy") - r.last("val_accuracy")

    out = [f"“{r.label}”: {r.parameters:,} parameters; after epoch 1 validation accuracy {_pct(r.epochs[0]['val_accuracy'])}, "
           f"at the end training {_pct(r.last('train_accuracy'))} / validation {_pct(r.last('val_accuracy'))} "
           f"(gap {_pp(gap(r))}), test accuracy {_pct(r.test['accuracy'])}." for r in (x, c)]
    half = max(1, len(x.epochs) // 2)

    def early(r):  # the mean validation accuracy over the first half of the epochs: how fast it learns
        return sum(e["val_accuracy"] for e in r.epochs[:half]) / half

    slower = early(x) < early(c)
    out.append(("It learns more slowly, as the lecture says" if slower else "It does not learn more slowly here")
               + f": over the first {half} epoch{'s' if half > 1 else ''} the Xception-like network's validation "
               f"accuracy averages {_pct(early(x))}, the classic one's {_pct(early(c))}.")
    less = gap(x) < gap(c)
    out.append(("It overfits less, as the lecture says" if less else "It does not overfit less in this run")
               + f": its gap between training and validation accuracy is {_pp(gap(x))}, the classic one's "
               f"{_pp(gap(c))}; test accuracy {_pct(x.test['accuracy'])} against {_pct(c.test['accuracy'])}.")
    return out


@register("xception", title="A small Xception-like network against a classic bipyramidal CNN",
          claim="A small Xception-like model (depthwise separable convolutions, global average pooling) learns more "
                "slowly than a classic bipyramidal CNN (convolutions widening as the maps shrink, then a big fully "
                "connected layer), but overfits less and reaches a higher test accuracy; regularisation and "
                "augmentation still matter.",
          task="classification", metric="accuracy", judge=_judge_xception, train_and_validation=True)
def _xception(budget: str) -> dict[str, TrainConfig]:
    shape = datasets.get("faces").input_shape  # 200 small images: overfitting shows within minutes
    xception = _custom("classification", shape,
                       [{"block": _block("depthwise_separable"), "repeats": 2, "width": w, "stride": 2} for w in (32, 64, 128)],
                       {"width": 16, "stride": 1}, {"kind": "classification", "num_classes": 2, "pooling": "gap"})
    classic = _custom("classification", shape,
                      [{"block": _block("plain_stack"), "repeats": 1, "width": w, "stride": 2} for w in (32, 64, 128)],
                      {"width": 16, "stride": 1},
                      {"kind": "classification", "num_classes": 2, "pooling": "flatten", "hidden": [256]})
    common = dict(dataset="faces", seed=0, batch_size=16)
    common.update(epochs=2, train_samples=32) if budget == "tiny" else common.update(epochs=30)
    return {_XCEPTION: TrainConfig(network=xception, **common), _CLASSIC: TrainConfig(network=classic, **common)}


# -- 5. a regression head on a classification backbone -----------------------------------------------------------
_ROTATION = {"from scratch": "scratch", "digit backbone, frozen": "frozen", "digit backbone, fine-tuned": "finetune"}


def _judge_rotation(runs: dict[str, RunSummary]) -> list[str]:
    pending = _pending(runs)
    if pending:
        return pending
    # Angles are uniform in [-45°, 45°]: always answering 0° is off by 22.5° on average.
    baseline = datasets.MAX_ANGLE / 2
    out = [f"“{r.label}”: test mean absolute error {r.test['mae']:.1f}° ({r.trainable:,} parameters trained, "
           f"{_secs(r.seconds)})." for r in runs.values()]
    best = min(runs.values(), key=lambda r: r.test["mae"])
    if best.test["mae"] < baseline:
        out.append(f"The new head solves another task: “{best.label}” predicts the rotation angle within "
                   f"{best.test['mae']:.1f}° on average, against {baseline:.1f}° for always answering 0°.")
    else:
        out.append(f"No run beats always answering 0° ({baseline:.1f}° on average) yet; the best is "
                   f"“{best.label}” at {best.test['mae']:.1f}°: train longer.")
    frozen, tuned = runs["digit backbone, frozen"], runs["digit backbone, fine-tuned"]
    out.append(f"Frozen, the classifier's features give {frozen.test['mae']:.1f}°; fine-tuned, {tuned.test['mae']:.1f}° "
               "— features learned to tell digits apart are partly blind to their angle, so letting them move "
               + ("helps." if tuned.test["mae"] < frozen.test["mae"] else "did not help here."))
    return out


@register("rotation", title="A regression head on a classification backbone: the angle of digits",
          claim="Replacing the head solves another task on the same backbone: the digit classifier's convolutional "
                "layers with a linear regression output predict the rotation angle of a digit (MATLAB's example).",
          task="regression", metric="mae", judge=_judge_rotation)
def _rotation(budget: str) -> dict[str, TrainConfig]:
    from .networks import network_for_task

    spec = network_for_task("lenet5_digits", "regression")  # LeNet-5's body with a linear output
    common = dict(network=spec, dataset="rotated_digits", seed=0, batch_size=32)
    common.update(epochs=1, train_samples=64) if budget == "tiny" else common.update(epochs=12)
    return {label: TrainConfig(mode=mode, **common) for label, mode in _ROTATION.items()}


# -- experiments: a group of runs, kept as JSON ------------------------------------------------------------------
@dataclasses.dataclass
class Experiment:
    id: str
    preset: str
    budget: str
    owner: str | None
    runs: dict[str, str | None]  # label -> run id (None: not submitted yet)
    created: float
    errors: dict[str, str] = dataclasses.field(default_factory=dict)  # label -> why it could not be submitted

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def experiments_folder(manager) -> pathlib.Path:
    return pathlib.Path(manager.root) / "experiments"


def save(experiment: Experiment, manager) -> None:
    folder = experiments_folder(manager)
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / f"{experiment.id}.json", experiment.to_dict())


def load(experiment_id: str, manager) -> Experiment:
    """The experiment ``experiment_id`` under the manager's root; a damaged or unknown id is a sentence."""
    if not isinstance(experiment_id, str) or not EXPERIMENT_ID.match(experiment_id):
        _sentence(f"There is no experiment called {str(experiment_id)[:40]!r}; start one of the presets.")
    path = experiments_folder(manager) / f"{experiment_id}.json"
    try:
        data = json.loads(path.read_text())
        return Experiment(**data)
    except (FileNotFoundError, json.JSONDecodeError, TypeError):
        _sentence(f"There is no experiment called {experiment_id!r} in {experiments_folder(manager)}; start one of "
                  "the presets.")


def start(preset: str, budget: str, manager, owner: str | None = None) -> Experiment:
    """Submit every run of ``preset`` at ``budget`` (those the owner's quota does not admit yet wait) and keep the
    group as JSON; returns it."""
    runs = get(preset).runs(budget)
    experiment = Experiment(f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(3)}", preset,
                            budget, owner, {label: None for label in runs}, time.time())
    advance(experiment, manager, configs=runs)
    return experiment


def _owner_active(manager, owner) -> bool:
    return owner is not None and any(s.get("state") in ACTIVE_STATES for s in manager.list(owner=owner))


def advance(experiment: Experiment, manager, configs: dict[str, TrainConfig] | None = None) -> bool:
    """Submit the experiment's runs that wait; a refusal while the owner has runs queued or running (the quota)
    waits for the next call, any other refusal is kept as the run's error. Saves it; whether anything changed."""
    waiting = [label for label, run_id in experiment.runs.items()
               if run_id is None and label not in experiment.errors]
    if not waiting:
        return False
    configs = configs or get(experiment.preset).runs(experiment.budget)
    changed = False
    for label in waiting:
        try:
            experiment.runs[label] = manager.submit(configs[label], owner=experiment.owner)
            changed = True
        except TrainingError as e:
            if _owner_active(manager, experiment.owner):
                break  # the owner's quota: the next refresh tries again, in order
            experiment.errors[label] = str(e)
            changed = True
    save(experiment, manager)
    return changed


def summaries(experiment: Experiment, manager) -> dict[str, RunSummary]:
    out = {}
    for label, run_id in experiment.runs.items():
        if run_id is None:
            message = experiment.errors.get(label, "Waits for one of your earlier runs to end (the quota per "
                                                   "session).")
            out[label] = RunSummary(label, None, "refused" if label in experiment.errors else "waiting", [], {},
                                    None, None, None, None, message)
            continue
        try:
            status = manager.status(run_id)
        except TrainingError as e:  # its folder was pruned
            out[label] = RunSummary(label, run_id, "gone", [], {}, None, None, None, None, str(e))
            continue
        result = manager.result(run_id) or {}
        epochs = manager.metrics(run_id, "epoch")
        seconds = result.get("seconds", epochs[-1]["seconds"] if epochs else None)
        out[label] = RunSummary(label, run_id, status.get("state", "unknown"), epochs, result.get("test") or {},
                                seconds, result.get("total_parameters"), result.get("trainable_parameters"),
                                status.get("macs"), status.get("message") or "")
    return out


def verdict(experiment: Experiment, manager, runs: dict[str, RunSummary] | None = None) -> list[str]:
    """What this run shows, in sentences with its numbers (or what it still waits for)."""
    runs = runs if runs is not None else summaries(experiment, manager)
    out = get(experiment.preset).judge(runs)
    if experiment.budget == "tiny" and all(r.finished for r in runs.values()):
        out.append("This was a quick look (an epoch or two on a few dozen images): it shows that the runs train "
                   "and how they are compared, not whether the lecture's claim holds; start the lecture's budget "
                   "to judge it.")
    return out


# -- the table and the report ------------------------------------------------------------------------------------
def table_rows(experiment: Experiment, runs: dict[str, RunSummary]) -> list[dict]:
    """One row per run: the test metrics of the preset's task, parameters, MACs per image, training time."""
    preset = get(experiment.preset)
    rows = []
    for r in runs.values():
        row = {"run": r.label, "state": r.state}
        t = r.test
        if preset.task == "segmentation":
            row["test pixel accuracy"] = t.get("pixel_accuracy")
            row["test mIoU"] = t.get("miou")
            row["test mean Dice"] = t.get("mean_dice")
        elif preset.task == "regression":
            row["test MAE (°)"] = t.get("mae")
        else:
            row["test accuracy"] = t.get("accuracy")
        if preset.train_and_validation or preset.name == "depth":
            row["training accuracy"] = r.last("train_accuracy")
            row["validation accuracy"] = r.last("val_accuracy")
        row["parameters"] = r.parameters
        row["trainable"] = r.trainable
        row["MACs per image"] = r.macs
        row["training time (s)"] = None if r.seconds is None else round(r.seconds, 1)
        row["epochs"] = len(r.epochs)
        row["run id"] = r.run_id or ""
        rows.append(row)
    return rows


def _cell(key: str, v) -> str:
    if v is None:
        return "–"
    if isinstance(v, float) and ("accuracy" in key or "mIoU" in key or "Dice" in key):
        return f"{100 * v:.1f} %"
    if isinstance(v, float):
        return f"{v:.3g}" if "MAE" in key else f"{v:g}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v).replace("|", "\\|")


def markdown_table(rows: list[dict]) -> str:
    if not rows:
        return ""
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(_cell(k, r.get(k)) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def curve_keys(preset: Preset) -> list[tuple[str, str, str]]:
    """(history key, title, axis) of the curves a preset overlays: the loss and its metric."""
    metric = {"miou": [("val_miou", "Validation mIoU", "mIoU"),
                       ("val_pixel_accuracy", "Validation pixel accuracy", "pixel accuracy")],
              "mae": [("val_mae", "Validation mean absolute error", "MAE (°)")],
              "accuracy": [("val_accuracy", "Validation accuracy", "accuracy")]}[preset.metric]
    losses = [("train_loss", "Training loss", "loss")] if preset.name == "depth" else []
    return [("val_loss", "Validation loss", "loss")] + losses + metric


def _figure_png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buffer.getvalue()


def curves_png(preset: Preset, runs: dict[str, RunSummary]) -> bytes:
    """The curves overlaid (one panel per key; with ``train_and_validation`` the training curve dashed beside
    each validation curve), as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = curve_keys(preset)
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.2), squeeze=False)
    for ax, (key, title, axis) in zip(axes[0], keys):
        for i, r in enumerate(runs.values()):
            colour = f"C{i}"
            xs = [e["epoch"] for e in r.epochs if e.get(key) is not None]
            ax.plot(xs, [e[key] for e in r.epochs if e.get(key) is not None], "o-", color=colour, label=r.label,
                    markersize=3)
            train_key = key.replace("val_", "train_")
            if preset.train_and_validation and train_key != key:
                ax.plot([e["epoch"] for e in r.epochs if e.get(train_key) is not None],
                        [e[train_key] for e in r.epochs if e.get(train_key) is not None], "--", color=colour,
                        label=f"{r.label} (training)")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel(axis)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    return _figure_png(fig)


def prediction_grid(runs: dict[str, RunSummary], manager) -> tuple[list[str], list[list]] | None:
    """(column titles, rows of pictures): per validation image, the image, the truth and each run's prediction
    (segmentation runs' samples.json, the same images in every run); None before any run has samples."""
    from .runfolder import png_image

    samples = {r.label: (manager.samples(r.run_id) if r.run_id else None) for r in runs.values()}
    first = next((s for s in samples.values() if s and s.get("samples")), None)
    if first is None:
        return None
    titles = ["image", "truth"] + [f"{label}" for label in samples]
    rows = []
    for i, sample in enumerate(first["samples"]):
        row = [png_image(sample["png"]), png_image(sample["truth_png"]) if "truth_png" in sample else None]
        for label, s in samples.items():
            mine = s["samples"][i] if s and i < len(s.get("samples", [])) else None
            row.append(png_image(mine["predicted_png"]) if mine and "predicted_png" in mine else None)
        rows.append(row)
    return titles, rows


def grid_png(grid: tuple[list[str], list[list]]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    titles, rows = grid
    fig, axes = plt.subplots(len(rows), len(titles), figsize=(1.6 * len(titles), 1.6 * len(rows)), squeeze=False)
    for r, row in enumerate(rows):
        for c, picture in enumerate(row):
            ax = axes[r][c]
            ax.axis("off")
            if picture is not None:
                ax.imshow(picture, cmap="gray" if picture.ndim == 2 else None, interpolation="nearest")
            if r == 0:
                ax.set_title(titles[c], fontsize=7)
    return _figure_png(fig)


def report(experiment: Experiment, manager) -> bytes:
    """A zip: report.md (the claim, the runs' settings, the table, the verdict) and its figures as PNG."""
    preset = get(experiment.preset)
    runs = summaries(experiment, manager)
    rows = table_rows(experiment, runs)
    figures = {"curves.png": curves_png(preset, runs)}
    if preset.task == "segmentation":
        grid = prediction_grid(runs, manager)
        if grid is not None:
            figures["predictions.png"] = grid_png(grid)
    lines = [f"# {preset.title}", "",
             f"Experiment `{experiment.id}`, budget: {BUDGET_TITLES[experiment.budget]}, "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(experiment.created))}.", "",
             "## What the lecture claims", "", preset.claim, "",
             "## The runs", "", markdown_table(rows), "",
             "## What this run shows", ""]
    lines += [f"- {s}" for s in verdict(experiment, manager, runs)]
    lines += ["", "## Curves", "", "![curves](curves.png)", ""]
    if "predictions.png" in figures:
        lines += ["## Predictions on the same validation images", "", "![predictions](predictions.png)", ""]
    configs = {}
    for label, r in runs.items():
        if r.run_id:
            try:
                configs[label] = manager.config(r.run_id).to_dict()
            except TrainingError:
                pass
    lines += ["## Settings", "", "```json", json.dumps(configs, indent=1, default=str), "```", ""]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("report.md", "\n".join(lines))
        for name, data in figures.items():
            z.writestr(name, data)
    return buffer.getvalue()
