"""Training recipes for the small weights the app ships with.

    python -m explorer.train lenet-digits [--epochs N] [--seed S] [--out assets/weights/lenet5_digits.safetensors]
    python -m explorer.train gap-digits-canvas [--epochs N] [--seed S]
                             [--out assets/weights/gap_cnn_digits_canvas.safetensors]

``lenet-digits`` trains LeNet-5 (``catalog.build("lenet5")``) on the training part of scikit-learn's digits
(:func:`explorer.samples.digits`) with Adam and a one-cycle learning-rate schedule, batches of 32 and random
shifts of up to ±2 pixels as augmentation.

``gap-digits-canvas`` trains the GAP CNN (``catalog.build("gap_cnn")``) on the same digits, 24 px high, pasted at a
new random place on a blank 64×64 canvas in every batch (:func:`explorer.samples.digits_on_canvas` holds the
held-out canvases), with the same optimiser, schedule and batch size plus weight decay 1e-4.

Both report loss and held-out accuracy after every epoch, and write the state dict with safetensors plus a JSON
file with the metrics next to it. Training runs on the CPU with a fixed seed and deterministic algorithms, so the
same command gives the same weights on the same machine.

An unknown recipe prints one sentence and exits with status 2.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from . import catalog
from .samples import CANVAS_DIGIT_SIZE, CANVAS_SIZE, canvas_training_digits, digits, digits_on_canvas, place_digits

__all__ = ["RECIPES", "Recipe", "train_lenet_digits", "train_gap_digits_canvas", "evaluate", "save_checkpoint", "main"]

BATCH_SIZE = 32
LEARNING_RATE = 3e-3  # peak of the one-cycle schedule
MAX_SHIFT = 2  # LeNet augmentation: each batch shifted by up to ±2 pixels (32×32 input, background -1 at the edges)

DIGITS_META = {
    "model": "lenet5",
    "dataset": "scikit-learn digits upsampled to 32×32",
    "normalisation": "mean 0.5, std 0.5",
}
CANVAS_META = {
    "model": "gap_cnn",
    "dataset": f"scikit-learn digits, {CANVAS_DIGIT_SIZE}×{CANVAS_DIGIT_SIZE} at random places on a "
               f"{CANVAS_SIZE}×{CANVAS_SIZE} canvas",
    "normalisation": "none (values 0 to 1, background 0)",
}
LENET_OUT = Path("assets/weights/lenet5_digits.safetensors")
CANVAS_OUT = Path("assets/weights/gap_cnn_digits_canvas.safetensors")
LENET_EPOCHS = 15
CANVAS_EPOCHS = 20


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> tuple[int, float]:
    """(number correct, mean cross-entropy loss) of ``model`` on ``x``/``y``, in eval mode."""
    was_training = model.training
    model.eval()
    correct, loss_sum = 0, 0.0
    for start in range(0, len(x), batch_size):
        logits = model(x[start:start + batch_size])
        target = y[start:start + batch_size]
        loss_sum += F.cross_entropy(logits, target, reduction="sum").item()
        correct += int((logits.argmax(1) == target).sum())
    model.train(was_training)
    return correct, loss_sum / max(len(x), 1)


Augment = Callable[[torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]  # (indices, batch, generator)


def _fit(model: nn.Module, x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor,
         y_test: torch.Tensor, *, epochs: int, seed: int, augment: Augment, progress, batch_size: int, lr: float,
         weight_decay: float = 0.0) -> tuple[nn.Module, dict]:
    """The training loop both recipes share: Adam, one-cycle schedule, a seeded shuffle per epoch, ``augment``
    applied to each batch, held-out accuracy after every epoch; deterministic algorithms while it runs."""
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, not {epochs}.")
    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        model.train()
        optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
        n_train = len(x_train)
        steps_per_epoch = (n_train + batch_size - 1) // batch_size
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=epochs * steps_per_epoch)
        generator = torch.Generator().manual_seed(seed)

        history: list[dict] = []
        start = time.perf_counter()
        for epoch in range(1, epochs + 1):
            order = torch.randperm(n_train, generator=generator)
            loss_sum = 0.0
            for begin in range(0, n_train, batch_size):
                idx = order[begin:begin + batch_size]
                batch = augment(idx, x_train[idx], generator)
                optimizer.zero_grad(set_to_none=True)
                loss = F.cross_entropy(model(batch), y_train[idx])
                loss.backward()
                optimizer.step()
                scheduler.step()
                loss_sum += loss.item() * len(idx)
            correct, test_loss = evaluate(model, x_test, y_test)
            row = {
                "epoch": epoch,
                "epochs": epochs,
                "loss": loss_sum / n_train,
                "test_loss": test_loss,
                "test_accuracy": correct / len(x_test),
                "test_correct": correct,
                "seconds": time.perf_counter() - start,
            }
            history.append(row)
            if progress is not None:
                progress(row)
        model.eval()
        metrics = {
            "test_accuracy": history[-1]["test_accuracy"],
            "test_correct": history[-1]["test_correct"],
            "epochs": epochs,
            "seed": seed,
            "samples": {"train": n_train, "test": len(x_test)},
            "seconds": history[-1]["seconds"],
            "history": history,
        }
        return model, metrics
    finally:
        torch.use_deterministic_algorithms(previous_deterministic)


def train_lenet_digits(
    epochs: int = LENET_EPOCHS,
    seed: int = 0,
    progress: Callable[[dict], None] | None = None,
    batch_size: int = BATCH_SIZE,
    lr: float = LEARNING_RATE,
    max_shift: int = MAX_SHIFT,
) -> tuple[nn.Module, dict]:
    """Train LeNet-5 on the digits training split; return ``(model, metrics)``.

    ``progress`` (optional) is called after every epoch with a dict ``{"epoch", "epochs", "loss",
    "test_loss", "test_accuracy", "seconds"}`` so a page can show a progress bar. ``metrics`` holds the final
    ``test_accuracy`` (correct / number of test samples), ``test_correct``, ``epochs``, ``seed``,
    ``samples`` ({"train": n, "test": n}), ``seconds`` and the per-epoch ``history``.
    """
    torch.manual_seed(seed)
    x, y, split = digits(seed)

    def shift(idx, batch, generator):
        if not max_shift:
            return batch
        dy, dx = torch.randint(-max_shift, max_shift + 1, (2,), generator=generator).tolist()
        return torch.roll(batch, shifts=(dy, dx), dims=(2, 3))  # the digits' borders are blank

    model = catalog.build("lenet5")
    return _fit(model, x[split["train"]], y[split["train"]], x[split["test"]], y[split["test"]], epochs=epochs,
                seed=seed, augment=shift, progress=progress, batch_size=batch_size, lr=lr)


def train_gap_digits_canvas(
    epochs: int = CANVAS_EPOCHS,
    seed: int = 0,
    progress: Callable[[dict], None] | None = None,
    batch_size: int = BATCH_SIZE,
    lr: float = LEARNING_RATE,
) -> tuple[nn.Module, dict]:
    """Train the GAP CNN on digits at random places on a 64×64 canvas (a new place for every digit in every
    batch); held out: the test split of `digits_on_canvas` at its fixed places. Returns ``(model, metrics)`` as
    `train_lenet_digits`."""
    torch.manual_seed(seed)
    x, y, split, _ = digits_on_canvas(seed)
    small = canvas_training_digits()

    def place(idx, batch, generator):
        corners = torch.randint(0, CANVAS_SIZE - CANVAS_DIGIT_SIZE + 1, (len(idx), 2), generator=generator)
        return place_digits(batch, corners)

    model = catalog.build("gap_cnn")
    return _fit(model, small[split["train"]], y[split["train"]], x[split["test"]], y[split["test"]], epochs=epochs,
                seed=seed, augment=place, progress=progress, batch_size=batch_size, lr=lr, weight_decay=1e-4)


def save_checkpoint(model: nn.Module, metrics: dict, out: Path, about: dict = DIGITS_META) -> Path:
    """Write ``out`` (safetensors state dict) and ``out`` with suffix .json (``about``: model, dataset,
    normalisation; plus the metrics); return the JSON path."""
    from safetensors.torch import save_file

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(out), metadata={"model": about["model"], "dataset": about["dataset"]})
    meta = {
        "model": about["model"],
        "dataset": about["dataset"],
        "split": f"stratified 80/20, seed {metrics['seed']}",
        "test_accuracy": metrics["test_accuracy"],
        "test_correct": metrics["test_correct"],
        "epochs": metrics["epochs"],
        "samples": metrics["samples"],
        "normalisation": about["normalisation"],
    }
    json_path = out.with_suffix(".json")
    json_path.write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return json_path


class Recipe:
    """One recipe of the command line: what it trains, where it writes, how long by default."""

    def __init__(self, train: Callable[..., tuple[nn.Module, dict]], about: dict, out: Path, epochs: int):
        self.train, self.about, self.out, self.epochs = train, about, out, epochs

    def __call__(self, args: argparse.Namespace) -> int:
        def report(row: dict) -> None:
            print(f"epoch {row['epoch']}/{row['epochs']}  loss {row['loss']:.4f}  "
                  f"test accuracy {row['test_accuracy'] * 100:.2f} %  ({row['seconds']:.1f} s)", flush=True)

        model, metrics = self.train(epochs=args.epochs or self.epochs, seed=args.seed, progress=report)
        out = args.out or self.out
        json_path = save_checkpoint(model, metrics, out, self.about)
        print(f"wrote {out} and {json_path} (test accuracy {metrics['test_accuracy'] * 100:.2f} %, "
              f"{metrics['seconds']:.1f} s)")
        return 0


RECIPES: dict[str, Recipe] = {
    "lenet-digits": Recipe(train_lenet_digits, DIGITS_META, LENET_OUT, LENET_EPOCHS),
    "gap-digits-canvas": Recipe(train_gap_digits_canvas, CANVAS_META, CANVAS_OUT, CANVAS_EPOCHS),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m explorer.train", description="Train the app's small weights.")
    parser.add_argument("recipe", help="recipe to run: " + ", ".join(RECIPES))
    parser.add_argument("--epochs", type=int, default=None, help="default: the recipe's own")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="default: the recipe's file under assets/weights")
    args = parser.parse_args(argv)
    recipe = RECIPES.get(args.recipe)
    if recipe is None:
        print(f"Unknown recipe '{args.recipe}'; choose one of: {', '.join(RECIPES)}.", file=sys.stderr)
        return 2
    if args.epochs is not None and args.epochs < 1:
        print(f"--epochs must be at least 1, not {args.epochs}.", file=sys.stderr)
        return 2
    return recipe(args)


if __name__ == "__main__":
    sys.exit(main())
