"""The training loop: `fit` over (model, data, recipe), and `train(cfg)` around it.

`fit` is a plain function: in-memory tensors, a seeded shuffle per epoch, per-batch and per-epoch callbacks, the
validation split measured after every epoch; it returns the history and trains the model in place. It is
deterministic on the CPU: each epoch's shuffle, augmentation and dropout draw from seeds made of (seed, epoch),
deterministic algorithms are on, so the same config gives the same history bit for bit in one process, and a run
resumed from an epoch's checkpoint continues exactly as an uninterrupted one.

A loss that becomes NaN or infinite stops the run with `TrainingError`, whose ``last_state`` is the model at the
end of the last epoch whose weights were all finite (before the first epoch: the starting weights).
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from . import datasets as datasets_module
from . import segmentation
from .config import MAX_BATCH, TrainConfig
from .datasets import Dataset, PreviewSample, Splits
from .errors import TrainingError
from .networks import Prepared, fit_data, fold_target_scale, folded_state, prepare_model
from .recipes import Recipe, Schedule, make_recipe, preview_schedule

__all__ = ["fit", "train", "prepare", "RunPlan", "evaluate", "TrainResult", "FitResult", "trainable_parameters",
           "lr_schedule", "augmentation_preview", "choose_device", "make_augmenter", "sample_indices",
           "sample_predictions", "SAMPLES", "TrainingMemory", "training_memory", "memory_of", "EpochEstimate",
           "estimate_epoch", "scored_test_images"]

SAMPLES = 8  # validation images whose predictions a run shows after every epoch

EVAL_BATCH = 256


# -- device ------------------------------------------------------------------------------------------------------
def choose_device(preference: str = "auto") -> torch.device:
    """CUDA when present, then Apple's MPS, then the CPU; an explicit choice that is not there is a sentence."""
    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if preference == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if preference == "cuda" and not cuda:
        raise TrainingError("There is no CUDA GPU on this machine; choose device auto or cpu.")
    if preference == "mps" and not mps:
        raise TrainingError("Apple's MPS is not available on this machine; choose device auto or cpu.")
    return torch.device(preference)


def training_loss(out: torch.Tensor, target: torch.Tensor, task: str, label_smoothing: float = 0.0,
                  ignore_index: int | None = None) -> torch.Tensor:
    """What a training step minimises: the MSE of the (standardised) target, cross-entropy with smoothing, or for
    segmentation the per-pixel cross-entropy over the pixels that are not ``ignore_index``."""
    if task == "regression":
        return F.mse_loss(out[:, 0].float(), target)
    if task == "segmentation":
        return segmentation.segmentation_loss(out, target, ignore_index, label_smoothing)
    return F.cross_entropy(out.float(), target, label_smoothing=label_smoothing)


# -- augmentation ------------------------------------------------------------------------------------------------
def make_augmenter(augmentation, mean, std, size: tuple[int, int]) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """A function of a normalised batch that changes each image on its own (torchvision.transforms.v2 draws one
    set of random parameters per call, so the images are transformed one by one), in pixel space, background 0."""
    if not augmentation.active:
        return None
    from torchvision.transforms import InterpolationMode, v2

    steps = []
    if augmentation.hflip:
        steps.append(v2.RandomHorizontalFlip())
    if augmentation.crop_padding:
        steps.append(v2.RandomCrop(size, padding=augmentation.crop_padding, fill=0.0))
    if augmentation.rotation:
        steps.append(v2.RandomRotation(augmentation.rotation, interpolation=InterpolationMode.BILINEAR, fill=0.0))
    if augmentation.color_jitter:
        steps.append(v2.ColorJitter(brightness=augmentation.color_jitter, contrast=augmentation.color_jitter))
    transform = v2.Compose(steps)

    def apply(batch: torch.Tensor) -> torch.Tensor:
        c = batch.shape[1]
        m = torch.tensor(mean if len(mean) == c else [sum(mean) / len(mean)] * c, dtype=batch.dtype).view(-1, 1, 1)
        s = torch.tensor(std if len(std) == c else [sum(std) / len(std)] * c, dtype=batch.dtype).view(-1, 1, 1)
        pixels = (batch.cpu() * s + m).clamp_(0.0, 1.0)
        out = torch.stack([transform(img) for img in pixels])
        return ((out - m) / s).to(batch.device)

    return apply


# -- metrics -----------------------------------------------------------------------------------------------------
@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, task: str, num_classes: int | None = None, *,
             scale: tuple[float, float] | None = None, pairs: bool = False, batch_size: int = EVAL_BATCH,
             autocast=contextlib.nullcontext, ignore_index: int | None = None) -> dict:
    """Metrics of ``model`` (in eval mode) on ``x`` / ``y``.

    Classification: ``loss`` (cross-entropy, no smoothing), ``accuracy`` (top-1), ``top5`` (more than five
    classes), ``confusion`` (rows: true class, columns: predicted), ``correct``, ``count``.
    Regression: ``mse``, ``mae`` (in the target's unit), ``loss`` (= mse), ``count``. With ``pairs``, the
    (predicted, true) value or class of every sample, in order (what a confusion cell or a scatter point counts).
    ``scale`` = (mean, std) of a model still predicting the standardised target.
    Segmentation: `segmentation.evaluate_segmentation` (``loss``, ``pixel_accuracy``, ``miou``, ``iou``, ``dice``,
    ``mean_dice``, ``confusion`` of pixels, ``count`` images, ``pixels`` scored), ``ignore_index`` not scored.
    """
    if task == "segmentation":
        return segmentation.evaluate_segmentation(model, x, y, num_classes, ignore_index,
                                                  batch_size=min(batch_size, segmentation.EVAL_BATCH),
                                                  autocast=autocast)
    was_training = model.training
    model.eval()
    outs = []
    for start in range(0, len(x), batch_size):
        with autocast():
            outs.append(model(x[start:start + batch_size]).float())
    model.train(was_training)
    out = torch.cat(outs) if outs else torch.zeros((0, num_classes or 1))
    n = len(y)
    if task == "regression":
        pred = out[:, 0]
        if scale is not None:
            pred = pred * scale[1] + scale[0]
        err = pred - y.to(pred.dtype)
        result = {"mse": float((err ** 2).mean()), "mae": float(err.abs().mean()), "count": n}
        result["loss"] = result["mse"]
        if pairs:
            result["pairs"] = torch.stack([pred, y.to(pred.dtype)], 1).cpu().tolist()
        return result
    num_classes = num_classes or out.shape[1]
    predicted = out.argmax(1)
    correct = int((predicted == y).sum())
    result = {"loss": float(F.cross_entropy(out, y)), "accuracy": correct / max(n, 1), "correct": correct, "count": n}
    if num_classes > 5:
        top5 = out.topk(5, dim=1).indices
        result["top5"] = float((top5 == y[:, None]).any(1).float().mean())
    result["confusion"] = torch.bincount(y.cpu() * num_classes + predicted.cpu(),
                                         minlength=num_classes ** 2).view(num_classes, num_classes).tolist()
    if pairs:
        result["pairs"] = torch.stack([predicted, y], 1).cpu().tolist()
    return result


# -- the loop ----------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class FitResult:
    history: list[dict]
    stopped: str | None  # why the run ended before its last epoch, in a sentence
    lrs: dict[str, list[float]]  # the learning rate of every step, per parameter group, as the optimiser used it
    validation: dict  # the last epoch's full validation metrics
    seconds: float


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7_919) % (2**63 - 1)


def _snapshot(model: nn.Module) -> dict | None:
    """A CPU copy of the state dict, or None if any tensor is not finite."""
    state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    finite = all(bool(torch.isfinite(v).all()) for v in state.values() if v.is_floating_point())
    return state if finite else None


def fit(model: nn.Module, data: Splits, recipe: Recipe, *, task: str, num_classes: int | None = None,
        label_smoothing: float = 0.0, augment: Callable | None = None, frozen_batchnorms=(),
        target_scale: tuple[float, float] | None = None, seed: int = 0, early_stopping: int | None = None,
        time_budget: float | None = None, device: torch.device | str = "cpu",
        on_batch: Callable[[dict], None] | None = None, on_epoch: Callable[[dict], None] | None = None,
        should_stop: Callable[[], bool] | None = None, on_checkpoint: Callable[[dict], None] | None = None,
        after_epoch: Callable[[nn.Module, int], None] | None = None, resume: dict | None = None,
        ignore_index: int | None = None) -> FitResult:
    """Train ``model`` in place on ``data.x_train`` with ``recipe``; measure ``data.x_val`` after every epoch.

    ``target_scale`` (regression): (mean, std) of the training targets; the model learns the standardised target
    and metrics are reported in the target's unit (fold the scale into the output layer afterwards).
    ``frozen_batchnorms`` stay in eval mode (their running statistics unchanged). Callbacks: ``on_batch`` gets
    {epoch, batch, step, loss, lr, lrs} after each step, ``on_epoch`` the history row, ``on_checkpoint`` a
    resumable state (model, optimiser, scheduler, history) after each complete epoch, ``after_epoch(model,
    epoch)`` the model after each epoch's validation (to look at it, not to change it), ``should_stop()`` is asked
    after each step (a stop mid-epoch records that epoch's row with ``stopped_after_batch`` and no checkpoint).
    ``resume`` is such a state: training continues with the next epoch, exactly as an uninterrupted run.
    Segmentation (``task="segmentation"``): ``y`` are N×H×W masks, the loss is per pixel (``ignore_index`` pixels
    left out), ``augment(x, y)`` changes images and masks together, the training accuracy is the pixel accuracy
    and the validation metrics come from one confusion matrix (`segmentation.scores`).
    """
    device = torch.device(device)
    cuda = device.type == "cuda"
    model.to(device)
    if cuda:
        model.to(memory_format=torch.channels_last)
    amp_dtype = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if cuda else None

    def autocast():
        return torch.autocast("cuda", dtype=amp_dtype) if cuda else contextlib.nullcontext()

    scaler = torch.amp.GradScaler("cuda") if cuda and amp_dtype == torch.float16 else None

    x_train, x_val = data.x_train.to(device), data.x_val.to(device)
    if cuda:
        x_train, x_val = (t.contiguous(memory_format=torch.channels_last) for t in (x_train, x_val))
    if task == "regression":
        mean, std = target_scale or (0.0, 1.0)
        y_train = ((data.y_train.to(torch.float32) - mean) / std).to(device)
    else:
        y_train = data.y_train.to(device)
    y_val = data.y_val.to(device)
    n_train = len(y_train)
    steps = recipe.steps_per_epoch
    batch_size = recipe.batch_size

    optimizer = recipe.optimizer()
    scheduler, when = recipe.scheduler(optimizer)
    history: list[dict] = []
    lrs: dict[str, list[float]] = {g["name"]: [] for g in optimizer.param_groups}
    best_loss, best_epoch, bad_epochs, start_epoch, elapsed_before = math.inf, 0, 0, 1, 0.0
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        if scheduler is not None and resume.get("scheduler") is not None:
            scheduler.load_state_dict(resume["scheduler"])
        history = [dict(r) for r in resume["history"]]
        lrs = {k: list(v) for k, v in resume["lrs"].items()}
        best_loss, best_epoch, bad_epochs = resume["best_loss"], resume["best_epoch"], resume["bad_epochs"]
        start_epoch = resume["epoch"] + 1
        elapsed_before = history[-1]["seconds"] if history else 0.0
    safe_state = _snapshot(model)

    def loss_of(out, target):
        return training_loss(out, target, task, label_smoothing, ignore_index)

    def checkpoint(epoch: int) -> dict:
        # deep copies: the optimiser's state dict holds its live moment tensors, which the next step changes
        return {"epoch": epoch, "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
                "optimizer": copy.deepcopy(optimizer.state_dict()),
                "scheduler": copy.deepcopy(scheduler.state_dict()) if scheduler else None,
                "history": [dict(r) for r in history], "lrs": {k: list(v) for k, v in lrs.items()},
                "best_loss": best_loss, "best_epoch": best_epoch, "bad_epochs": bad_epochs}

    stopped = None
    validation: dict = {}
    start = time.perf_counter() - elapsed_before
    step = (start_epoch - 1) * steps
    deterministic = torch.are_deterministic_algorithms_enabled()
    # Max-unpooling is flagged as having no deterministic kernel; on the CPU, with the indices of a max pool whose
    # windows do not overlap (each output pixel written once), its result is the same on every run, so it may run.
    unpools = any(isinstance(m, (nn.MaxUnpool1d, nn.MaxUnpool2d, nn.MaxUnpool3d)) for m in model.modules())
    torch.use_deterministic_algorithms(True, warn_only=device.type != "cpu" or unpools)
    try:
        with torch.random.fork_rng(devices=[device] if cuda else []):
            for epoch in range(start_epoch, recipe.epochs + 1):
                epoch_start = time.perf_counter()
                generator = torch.Generator().manual_seed(_epoch_seed(seed, epoch))
                torch.manual_seed(_epoch_seed(seed, epoch) ^ 0x5EED)  # dropout and augmentation draw from it
                order = torch.randperm(n_train, generator=generator).to(device)
                model.train()
                for m in frozen_batchnorms:
                    m.eval()
                loss_sum, seen, partial = 0.0, 0, None
                correct = torch.zeros((), dtype=torch.int64, device=device)
                scored_pixels = torch.zeros((), dtype=torch.int64, device=device)  # segmentation
                for b in range(steps):
                    idx = order[b * batch_size:(b + 1) * batch_size]
                    xb, yb = x_train[idx], y_train[idx]
                    if augment is not None:
                        if task == "segmentation":
                            xb, yb = augment(xb, yb)
                        else:
                            xb = augment(xb)
                    used = [g["lr"] for g in optimizer.param_groups]
                    optimizer.zero_grad(set_to_none=True)
                    try:
                        with autocast():
                            out = model(xb)
                            loss = loss_of(out, yb)
                        value = loss.item()
                        if not math.isfinite(value):
                            what = "NaN" if math.isnan(value) else "infinite"
                            raise TrainingError(
                                f"The loss became {what} at epoch {epoch}, batch {b + 1}; lower the learning rate "
                                f"(now {used[-1]:.3g}).", epoch=epoch, batch=b + 1, last_state=safe_state)
                        if scaler is not None:
                            scaler.scale(loss).backward()
                            scaler.step(optimizer)
                            scaler.update()
                        else:
                            loss.backward()
                            optimizer.step()
                    except (torch.OutOfMemoryError, MemoryError):
                        raise TrainingError(f"The {'GPU' if cuda else 'computer'} ran out of memory for a batch of "
                                            f"{len(idx)} at epoch {epoch}, batch {b + 1}; lower the batch size or "
                                            "the input size.", epoch=epoch, batch=b + 1,
                                            last_state=safe_state) from None
                    if when == "batch":
                        scheduler.step()
                    step += 1
                    for g, lr in zip(optimizer.param_groups, used):
                        lrs[g["name"]].append(lr)
                    loss_sum += value * len(idx)
                    seen += len(idx)
                    if task == "classification":
                        correct += (out.argmax(1) == yb).sum()
                    elif task == "segmentation":
                        scored = yb != (-100 if ignore_index is None else ignore_index)
                        correct += ((out.argmax(1) == yb) & scored).sum()
                        scored_pixels += scored.sum()
                    if on_batch is not None:
                        on_batch({"epoch": epoch, "batch": b + 1, "step": step, "loss": value, "lr": used[-1],
                                  "lrs": dict(zip((g["name"] for g in optimizer.param_groups), used))})
                    if should_stop is not None and should_stop():
                        stopped = f"stopped on request during epoch {epoch}, after batch {b + 1}"
                        partial = b + 1
                        break
                train_seconds = time.perf_counter() - epoch_start
                validation = evaluate(model, x_val, y_val, task, num_classes, scale=target_scale,
                                      autocast=autocast, ignore_index=ignore_index)
                row = {"epoch": epoch, "epochs": recipe.epochs}
                if task == "segmentation":
                    row["train_loss"] = loss_sum / max(seen, 1)
                    row["train_pixel_accuracy"] = int(correct) / max(int(scored_pixels), 1)
                    row.update(val_loss=validation["loss"], val_pixel_accuracy=validation["pixel_accuracy"],
                               val_miou=validation["miou"], val_mean_dice=validation["mean_dice"])
                elif task == "regression":  # the training loss in the target's unit, like the validation MSE
                    row["train_loss"] = loss_sum / max(seen, 1) * (target_scale[1] ** 2 if target_scale else 1.0)
                    row.update(val_loss=validation["loss"], val_mse=validation["mse"], val_mae=validation["mae"])
                else:
                    row["train_loss"] = loss_sum / max(seen, 1)
                    row["train_accuracy"] = int(correct) / max(seen, 1)
                    row.update(val_loss=validation["loss"], val_accuracy=validation["accuracy"])
                    if "top5" in validation:
                        row["val_top5"] = validation["top5"]
                row["lr"] = used[-1]
                row.update({f"lr_{k}": v[-1] for k, v in lrs.items() if len(lrs) > 1})
                row["train_seconds"] = train_seconds
                row["images_per_second"] = seen / train_seconds if train_seconds > 0 else 0.0
                row["epoch_seconds"] = time.perf_counter() - epoch_start
                row["seconds"] = time.perf_counter() - start
                if partial is not None:
                    row["stopped_after_batch"] = partial
                if when == "epoch":
                    scheduler.step(validation["loss"])
                if validation["loss"] < best_loss:
                    best_loss, best_epoch, bad_epochs = validation["loss"], epoch, 0
                else:
                    bad_epochs += 1
                history.append(row)
                if after_epoch is not None:
                    after_epoch(model, epoch)
                snapshot = _snapshot(model)
                if snapshot is not None:
                    safe_state = snapshot
                if on_epoch is not None:
                    on_epoch(dict(row))
                if on_checkpoint is not None and partial is None:
                    # a part of an epoch is not a checkpoint: resuming repeats the whole epoch, as it would have run
                    on_checkpoint(checkpoint(epoch))
                if stopped:
                    break
                if epoch < recipe.epochs:
                    if early_stopping is not None and bad_epochs >= early_stopping:
                        stopped = (f"stopped early after epoch {epoch} of {recipe.epochs}: the validation loss has "
                                   f"not fallen for {bad_epochs} epoch{'s' if bad_epochs > 1 else ''} (lowest "
                                   f"{best_loss:.4g} at epoch "
                                   f"{best_epoch})")
                        break
                    if time_budget is not None and row["seconds"] > time_budget:
                        stopped = (f"stopped after epoch {epoch} of {recipe.epochs}: the time budget of "
                                   f"{time_budget:g} s was passed ({row['seconds']:.1f} s)")
                        break
    finally:
        torch.use_deterministic_algorithms(deterministic)
    return FitResult(history, stopped, lrs, validation, time.perf_counter() - start)


# -- train(cfg) --------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class TrainResult:
    config: TrainConfig
    model: nn.Module  # trained, in eval mode, on the CPU; a composition keeps its backbone / neck / head
    dataset: Dataset
    history: list[dict]  # one row per epoch
    validation: dict  # the last epoch's validation metrics
    test: dict  # the test split at the end: accuracy / top5 / confusion / loss, or mse / mae / pairs, or
    # (segmentation) loss / pixel_accuracy / miou / iou / dice / mean_dice / confusion / count / pixels
    lrs: dict[str, list[float]]  # the learning rate of every step, per parameter group
    notes: list[str]  # what was adapted or decided, each a phrase
    stopped: str | None
    device: str
    seconds: float
    trainable_parameters: int
    total_parameters: int
    pretrained: str | None

    @property
    def epochs_run(self) -> int:
        return len(self.history)

    def state_dict(self) -> dict:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}


@dataclasses.dataclass
class RunPlan:
    """What `train` will run, made before it starts: the data set, the model with its starting weights, the data
    at the model's input, the recipe."""
    cfg: TrainConfig
    dataset: Dataset
    prepared: Prepared
    data: Splits  # at the model's input
    recipe: Recipe
    mean: tuple  # the normalisation of ``data`` (the data set's, or what pretrained weights expect)
    std: tuple


def _rows(n: int, k: int, seed: int) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:k].sort().values


def _subset(splits: Splits, k: int | None, seed: int, notes: list[str]) -> Splits:
    n = len(splits.y_train)
    if k is None or k >= n:
        return splits
    idx = _rows(n, k, seed)
    notes.append(f"{k:,} of the {n:,} training images used (a random subset)")
    return dataclasses.replace(splits, x_train=splits.x_train[idx].contiguous(), y_train=splits.y_train[idx])


_EVAL_SEED_OFFSET = {"val": 1, "test": 2}  # each evaluation split draws its own subset


def _eval_rows(n: int, k: int | None, seed: int, split: str) -> torch.Tensor | None:
    """Which of a split's ``n`` images `eval_samples` = ``k`` keeps (None: all of them)."""
    return None if k is None or k >= n else _rows(n, k, seed + _EVAL_SEED_OFFSET[split])


def _eval_subset(splits: Splits, k: int | None, seed: int, notes: list[str]) -> Splits:
    """The validation and test splits cut to ``k`` images each, for quick looks."""
    changes, said = {}, []
    for split, name in (("val", "validation"), ("test", "test")):
        x, y = getattr(splits, f"x_{split}"), getattr(splits, f"y_{split}")
        idx = _eval_rows(len(y), k, seed, split)
        if idx is not None:
            changes.update({f"x_{split}": x[idx].contiguous(), f"y_{split}": y[idx]})
            said.append(f"{k:,} of the {len(y):,} {name}")
    if said:
        notes.append(f"{' and '.join(said)} images used (random subsets: the scores rest on fewer images)")
    return dataclasses.replace(splits, **changes) if changes else splits


def scored_test_images(cfg: TrainConfig) -> torch.Tensor:
    """The test images (as the data set has them) that a run of ``cfg`` scored, in the order of its test pairs."""
    x = datasets_module.get(cfg.dataset).splits().x_test
    kept = _eval_rows(len(x), cfg.eval_samples, cfg.seed, "test")
    return x if kept is None else x[kept]


def prepare(cfg: TrainConfig) -> RunPlan:
    """Everything `train(cfg)` needs, built (the model, seeded) but not trained: for counts, estimates and benches."""
    dataset = datasets_module.get(cfg.dataset)
    splits = dataset.splits()
    prepared = prepare_model(cfg, dataset)
    data, mean, std = fit_data(splits, dataset, prepared.input_shape, prepared.notes, prepared.input_norm)
    data = _subset(data, cfg.train_samples, cfg.seed, prepared.notes)
    data = _eval_subset(data, cfg.eval_samples, cfg.seed, prepared.notes)
    recipe = make_recipe(cfg, prepared.backbone_params, prepared.head_params, len(data.y_train))
    if not recipe.groups:
        raise TrainingError("Nothing in this network would train (every parameter is frozen); choose mode finetune, "
                            "or unfreeze some stages.")
    return RunPlan(cfg, dataset, prepared, data, recipe, mean, std)


@contextlib.contextmanager
def _threads(n: int | None):
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train(cfg: TrainConfig, *, on_batch=None, on_epoch=None, should_stop=None, on_checkpoint=None,
          on_samples=None, resume: dict | None = None) -> TrainResult:
    """Run ``cfg`` in this process and return the trained model with its history and test metrics; callbacks and
    ``resume`` as `fit`; ``on_samples(epoch, samples)`` gets, after each epoch, the predictions on a fixed set of
    validation images (`sample_predictions`). Raises `TrainingError` (one sentence) for a config that cannot run
    or a loss that became NaN / infinite."""
    if not isinstance(cfg, TrainConfig):
        raise TrainingError(f"train() takes a TrainConfig; got {type(cfg).__name__}.")
    device = choose_device(cfg.device)
    with _threads(cfg.threads):
        run = prepare(cfg)
        p, ds, data = run.prepared, run.dataset, run.data
        scale = None
        if ds.task == "regression":
            y = data.y_train.to(torch.float64)
            scale = (float(y.mean()), float(y.std()) or 1.0)
        if ds.task == "segmentation":
            augment = segmentation.make_joint_augmenter(cfg.augmentation, run.mean, run.std,
                                                        tuple(p.input_shape[1:]), ds.ignore_index)
        else:
            augment = make_augmenter(cfg.augmentation, run.mean, run.std, tuple(p.input_shape[1:]))
        if cfg.augmentation.active:
            p.notes.append(f"augmentation: {cfg.augmentation.describe()}")
        p.notes.append(f"recipe: {run.recipe.describe()}")
        p.notes.append(f"trained on {device.type.upper() if device.type != 'cpu' else 'the CPU'}"
                       + (" (mixed precision, channels_last)" if device.type == "cuda" else ""))
        after_epoch = None
        if on_samples is not None:
            chosen = sample_indices(data.y_val, ds.task)
            pictures = ds.splits().x_val  # as the data set has them, not resized for the network
            kept = _eval_rows(len(pictures), cfg.eval_samples, cfg.seed, "val")
            pictures = (pictures if kept is None else pictures[kept])[chosen]

            def after_epoch(model, epoch):
                on_samples(epoch, sample_predictions(model, data.x_val[chosen].to(device), data.y_val[chosen], ds,
                                                     pictures, scale))
        try:
            fitted = fit(p.model, data, run.recipe, task=ds.task, num_classes=ds.num_classes,
                         label_smoothing=cfg.label_smoothing, augment=augment, frozen_batchnorms=p.frozen_batchnorms,
                         target_scale=scale, seed=cfg.seed, early_stopping=cfg.early_stopping,
                         time_budget=cfg.time_budget, device=device, on_batch=on_batch, on_epoch=on_epoch,
                         should_stop=should_stop, on_checkpoint=on_checkpoint, after_epoch=after_epoch,
                         resume=resume, ignore_index=ds.ignore_index)
        except TrainingError as e:
            if e.last_state is not None and scale is not None:  # hand back weights that predict the target itself
                p.model.load_state_dict(e.last_state)
                e.last_state = folded_state(p.model, p.regression_layer, scale)
            raise
        model = p.model
        if scale is not None:
            fold_target_scale(p.regression_layer, *scale)
        test = evaluate(model, data.x_test.to(device), data.y_test.to(device), ds.task, ds.num_classes, pairs=True,
                        ignore_index=ds.ignore_index)
        model.cpu().eval()
        if device.type == "cuda":
            model.to(memory_format=torch.contiguous_format)
    if fitted.stopped:
        p.notes.append(fitted.stopped)
    trainable = sum(t.numel() for t in p.trainable())
    total = sum(t.numel() for t in model.parameters())
    return TrainResult(cfg, model, ds, fitted.history, fitted.validation, test, fitted.lrs, p.notes, fitted.stopped,
                       device.type, fitted.seconds, trainable, total, p.pretrained)


# -- before the run ----------------------------------------------------------------------------------------------
def trainable_parameters(cfg: TrainConfig) -> dict:
    """Before the start: {"trainable", "frozen", "total"} parameter counts of the run's model, and the notes."""
    run = prepare(cfg)
    trainable = sum(t.numel() for t in run.prepared.trainable())
    total = sum(t.numel() for t in run.prepared.model.parameters())
    return {"trainable": trainable, "frozen": total - trainable, "total": total, "notes": list(run.prepared.notes)}


def lr_schedule(cfg: TrainConfig) -> Schedule:
    """The learning rate of every step of the run, per parameter group, before it starts (to be drawn)."""
    dataset = datasets_module.get(cfg.dataset)
    n = len(dataset.splits().y_train)
    if cfg.train_samples is not None:
        n = min(n, cfg.train_samples)
    dummy_backbone = [torch.zeros(1, requires_grad=True)]
    dummy_head = [torch.zeros(1, requires_grad=True)]
    recipe = make_recipe(cfg, dummy_backbone if cfg.mode != "frozen" else [], dummy_head, n)
    return preview_schedule(recipe)


def augmentation_preview(cfg: TrainConfig, n: int = 8) -> list[tuple[PreviewSample, PreviewSample]]:
    """The first ``n`` training images of the data set, each as it is and as the run's augmentation may change it
    (seeded by ``cfg.seed``)."""
    dataset = datasets_module.get(cfg.dataset)
    splits = dataset.splits()
    x = splits.x_train[:n]
    if dataset.task == "segmentation":  # the masks move with the images; the label names the classes in view
        joint = segmentation.make_joint_augmenter(cfg.augmentation, dataset.mean, dataset.std,
                                                  tuple(dataset.input_shape[1:]), dataset.ignore_index)
        augment = None if joint is None else (lambda batch: joint(batch, splits.y_train[:n])[0])
    else:
        augment = make_augmenter(cfg.augmentation, dataset.mean, dataset.std, tuple(dataset.input_shape[1:]))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        changed = augment(x) if augment is not None else x
    from .datasets import _as_picture

    return [(PreviewSample(_as_picture(dataset.unnormalise(a)), dataset.label(y)),
             PreviewSample(_as_picture(dataset.unnormalise(b)), dataset.label(y)))
            for a, b, y in zip(x, changed, splits.y_train[:n])]


# -- sample predictions after every epoch ------------------------------------------------------------------------
def sample_indices(y_val: torch.Tensor, task: str, n: int = SAMPLES) -> torch.Tensor:
    """A fixed set of ``n`` validation images: for classification the first image of each class in turn (so the
    grid shows several classes), else the first ``n``."""
    if task != "classification":
        return torch.arange(min(n, len(y_val)))
    chosen: list[int] = []
    by_class: dict[int, list[int]] = {}
    for i, c in enumerate(y_val.tolist()):
        by_class.setdefault(c, []).append(i)
    queues = [by_class[c] for c in sorted(by_class)]
    depth = 0
    while len(chosen) < min(n, len(y_val)):
        for q in queues:
            if depth < len(q) and len(chosen) < n:
                chosen.append(q[depth])
        depth += 1
    return torch.tensor(sorted(chosen), dtype=torch.long)


@torch.no_grad()
def sample_predictions(model: nn.Module, x: torch.Tensor, y: torch.Tensor, dataset: Dataset,
                       pictures: torch.Tensor, scale: tuple[float, float] | None = None) -> list[dict]:
    """One dict per image: ``image`` (H×W or H×W×3 floats in [0, 1], as a person sees it), ``truth`` and
    ``predicted`` (class names, or values in the target's unit), ``confidence`` (the softmax of the predicted
    class; regression: None), ``correct`` (regression: None). Segmentation: ``truth_mask`` and
    ``predicted_mask`` (H×W×3 pictures, `segmentation.colour_mask`), ``truth`` ("3 classes"), ``predicted``
    ("mIoU 71%"), that image's ``miou`` and ``pixel_accuracy``."""
    from .datasets import _as_picture

    was_training = model.training
    model.eval()
    out = model(x).float().cpu()
    model.train(was_training)
    samples = []
    for i in range(len(y)):
        image = _as_picture(dataset.unnormalise(pictures[i]))
        if dataset.task == "segmentation":
            samples.append(_segmentation_sample(image, out[i], y[i].cpu(), dataset))
        elif dataset.task == "regression":
            value = float(out[i, 0]) * (scale[1] if scale else 1.0) + (scale[0] if scale else 0.0)
            samples.append({"image": image, "truth": dataset.label(y[i]), "predicted": dataset.label(value),
                            "error": value - float(y[i]), "confidence": None, "correct": None})
        else:
            p = torch.softmax(out[i], 0)
            k = int(p.argmax())
            samples.append({"image": image, "truth": dataset.label(y[i]), "predicted": dataset.label(k),
                            "confidence": float(p[k]), "correct": k == int(y[i])})
    return samples


def _segmentation_sample(image, logits: torch.Tensor, mask: torch.Tensor, dataset: Dataset) -> dict:
    predicted = logits.argmax(0)
    if tuple(mask.shape) != tuple(predicted.shape):  # the network's input was resized: score at its size
        mask = F.interpolate(mask[None, None].float(), size=predicted.shape, mode="nearest")[0, 0].long()
    score = segmentation.image_scores(predicted, mask, dataset.num_classes, dataset.ignore_index)
    scored = mask[mask != (-100 if dataset.ignore_index is None else dataset.ignore_index)]
    present = len(set(scored.unique().tolist()))
    return {"image": image, "truth_mask": segmentation.colour_mask(mask, dataset.ignore_index),
            "predicted_mask": segmentation.colour_mask(predicted), "truth": f"{present} class{'es' if present != 1 else ''}",
            "predicted": f"mIoU {score['miou']:.0%}", "miou": score["miou"], "pixel_accuracy": score["pixel_accuracy"],
            "confidence": None, "correct": None}


# -- before the run: memory and time -----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class TrainingMemory:
    """What one training step holds in memory, in bytes: the activations autograd saves for the batch, and the
    weights, their gradients and the optimiser's state (Adam: two moments per trainable parameter; SGD with
    momentum: one). The data set at the network's input comes on top (held once, not per batch)."""
    batch_size: int
    saved_per_image: int
    weights: int
    gradients: int
    optimizer: int

    @property
    def activations(self) -> int:
        return self.saved_per_image * self.batch_size

    @property
    def fixed(self) -> int:
        return self.weights + self.gradients + self.optimizer

    @property
    def total(self) -> int:
        return self.activations + self.fixed

    def largest_batch(self, budget: int) -> int:
        """The largest batch whose step fits in ``budget`` bytes (0: not even one image)."""
        if self.saved_per_image <= 0:
            return MAX_BATCH
        return max(0, min(MAX_BATCH, (budget - self.fixed) // self.saved_per_image))



def memory_of(cfg: TrainConfig, saved_per_image: int, total_parameters: int, trainable: int,
              bytes_per_value: int = 4) -> TrainingMemory:
    """`TrainingMemory` from the analysis' per-image figure and the parameter counts (float32)."""
    moments = 1 if cfg.recipe == "resnet" else 2
    return TrainingMemory(cfg.batch_size, int(saved_per_image), total_parameters * bytes_per_value,
                          trainable * bytes_per_value, moments * trainable * bytes_per_value)


def training_memory(cfg: TrainConfig) -> tuple[TrainingMemory | None, int | None]:
    """(the memory of one training step, MACs per image) of ``cfg``'s model, from one traced forward on the meta
    device (no arithmetic); (None, None) when the analysis cannot follow the network."""
    from ..analysis import AnalysisError, analyze
    from .networks import prepare_model

    dataset = datasets_module.get(cfg.dataset)
    prepared = prepare_model(cfg, dataset)
    try:
        a = analyze(prepared.model, prepared.input_shape)
    except AnalysisError:
        return None, None
    if a.training_bytes is None:
        return None, a.macs
    trainable = sum(t.numel() for t in prepared.trainable())
    total = sum(t.numel() for t in prepared.model.parameters())
    return memory_of(cfg, a.training_bytes, total, trainable), a.macs


@dataclasses.dataclass(frozen=True)
class EpochEstimate:
    """Measured before the start: real training steps of the run's model on a batch of its size."""
    step_seconds: float  # one optimiser step (augmentation, forward, backward, update), the median of the timed
    eval_seconds: float  # the validation split, once
    steps_per_epoch: int
    epochs: int

    @property
    def epoch_seconds(self) -> float:
        return self.step_seconds * self.steps_per_epoch + self.eval_seconds

    @property
    def total_seconds(self) -> float:
        return self.epoch_seconds * self.epochs


def estimate_epoch(cfg: TrainConfig, steps: int = 3, step_budget: float = 0.5) -> EpochEstimate:
    """Time real training steps of ``cfg``'s model (random images of its input, with the config's threads) and one
    validation forward; the rest is arithmetic. A step expected to take longer than ``step_budget`` seconds (a
    large network on the CPU) is timed on a smaller batch and scaled up linearly, so the estimate itself stays
    within a few seconds. Nothing of it is kept: the random state of this process is as it was."""
    from .networks import prepare_model

    dataset = datasets_module.get(cfg.dataset)
    sizes = dataset.splits().sizes()
    n_train = min(sizes["train"], cfg.train_samples or sizes["train"])
    device = choose_device(cfg.device)
    with _threads(cfg.threads), torch.random.fork_rng(devices=[]):
        prepared = prepare_model(cfg, dataset)
        recipe = make_recipe(cfg, prepared.backbone_params, prepared.head_params, n_train)
        if not recipe.groups:
            raise TrainingError("Nothing in this network would train (every parameter is frozen); choose mode "
                                "finetune, or unfreeze some stages.")
        model = prepared.model.to(device).train()
        for m in prepared.frozen_batchnorms:
            m.eval()
        seg = dataset.task == "segmentation"
        if seg:
            augment = segmentation.make_joint_augmenter(cfg.augmentation, dataset.mean, dataset.std,
                                                        tuple(prepared.input_shape[1:]), dataset.ignore_index)
        else:
            augment = make_augmenter(cfg.augmentation, dataset.mean, dataset.std, tuple(prepared.input_shape[1:]))
        optimizer = recipe.optimizer()

        def step(n: int) -> float:
            x = torch.randn(n, *prepared.input_shape, device=device)
            y = (torch.randn(n, device=device) if dataset.task == "regression" else
                 torch.randint(0, dataset.num_classes, (n, *prepared.input_shape[1:]) if seg else (n,),
                               device=device))
            t = time.perf_counter()
            if augment is not None:
                x, y = augment(x, y) if seg else (augment(x), y)
            optimizer.zero_grad(set_to_none=True)
            out = model(x)
            loss = training_loss(out, y, dataset.task, cfg.label_smoothing, dataset.ignore_index)
            loss.backward()
            optimizer.step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            return time.perf_counter() - t

        batch = max(1, min(cfg.batch_size, n_train))
        probe = min(batch, 2)  # BatchNorm needs two images to train
        step(probe)  # warm-up: first-call allocations and kernel choices
        per_image = step(probe) / probe
        timed = batch if per_image * batch <= step_budget else max(probe, int(step_budget / per_image))
        if timed != probe:
            step(timed)
        times = sorted(step(timed) for _ in range(steps if timed == batch else 1))
        step_seconds = times[len(times) // 2] * batch / timed
        n_val = min(sizes["validation"], cfg.eval_samples or sizes["validation"])
        look = max(1, min(n_val, EVAL_BATCH, timed))
        model.eval()
        with torch.no_grad():
            xv = torch.randn(look, *prepared.input_shape, device=device)
            t = time.perf_counter()
            model(xv)
            eval_seconds = (time.perf_counter() - t) * n_val / look
    return EpochEstimate(step_seconds, eval_seconds, recipe.steps_per_epoch, cfg.epochs)
