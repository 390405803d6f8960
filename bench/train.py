"""Training throughput of `explorer.training.train` against a bare PyTorch loop: same model, batch, optimiser, data.

    .venv/bin/python bench/train.py                 # LeNet-5 on digits, resnet18 at 64 px, an encoder–decoder on
                                                    # the shapes masks (CPU, 2 threads)
    .venv/bin/python bench/train.py --quick         # fewer repeats
    .venv/bin/python bench/train.py --device cuda --threads 4

For each case, `explorer.training.prepare(cfg)` gives the model (seeded init) and the training images at its input
(the digits at 32×32 for LeNet-5; resized to 64×64 and repeated into three channels for resnet18). Then, calls
alternating after a warm-up of each:

  bare      the loop of PyTorch's tutorials on those tensors: per epoch a seeded `randperm`, per batch
            `zero_grad`, `cross_entropy(model(x[idx]), y[idx])` (per pixel for masks), `backward`, `step`,
            `running += loss.item()`;
            Adam at 1e-3, the model built afresh for each call.
  train()   `train(cfg)` with recipe "adam" (Adam at 1e-3), the same batch size and images. Two figures: its
            training steps alone (the sum of the epochs' ``train_seconds``: the loop with its NaN check, callbacks,
            learning-rate record and accuracy count), and the whole call (also building the model, the validation
            split after every epoch and the test split at the end).

Images per second of the median call of each (and the ratio of the fastest calls, which other work on a shared
machine moves least); the ratio target is ≥ 0.95× for the steps. Torch threads are capped
for both (``--threads``, default 2) and the machine's load is printed: other work on it moves every figure.

``--accuracy`` adds time to accuracy (one run each, seed 0): LeNet-5 from scratch on digits, the two ready digit
models' recipes (`python -m explorer.train`: held-out accuracy and the 40 people's digits they read), and frozen
against fine-tuned transfer from the shipped LeNet-5 to the rotation angle (test MAE in degrees, beside always
predicting the mean angle) and to scikit-image's faces (test accuracy).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from explorer.spec import ArchitectureSpec  # noqa: E402
from explorer.training import TrainConfig, choose_device, prepare, train  # noqa: E402


def cases(device: str, threads: int) -> list[tuple[str, TrainConfig]]:
    resnet = ArchitectureSpec.from_dict({"task": "classification", "input": {"channels": 3, "height": 64, "width": 64},
                                         "backbone": {"name": "resnet18"}, "head": {"kind": "classification"}})
    common = dict(dataset="digits", mode="scratch", recipe="adam", batch_size=32, seed=0, device=device,
                  threads=threads)
    return [("LeNet-5 on digits (1×32×32), 1,258 images × 2 epochs",
             TrainConfig(network="lenet5", epochs=2, **common)),
            ("resnet18 at 64 px (3×64×64), 256 images × 1 epoch",
             TrainConfig(network=resnet, epochs=1, train_samples=256, **common)),
            ("seg_encoder_decoder on shapes (3×64×64, per-pixel loss), 256 images × 1 epoch",
             TrainConfig(network="seg_encoder_decoder", epochs=1, train_samples=256, **{**common, "dataset": "shapes",
                                                                                          "batch_size": 16}))]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_call(cfg: TrainConfig, device: torch.device) -> float:
    """Images per second of the bare loop (the model built and moved before the clock starts)."""
    plan = prepare(cfg)
    model = plan.prepared.model.to(device)
    x, y = plan.data.x_train.to(device), plan.data.y_train.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    generator = torch.Generator().manual_seed(cfg.seed)
    steps, n = plan.recipe.steps_per_epoch, len(y)
    model.train()
    _sync(device)
    start = time.perf_counter()
    seen = 0
    for _ in range(cfg.epochs):
        order = torch.randperm(n, generator=generator).to(device)
        running = 0.0
        for b in range(steps):
            idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            optimizer.step()
            running += loss.item()
            seen += len(idx)
    _sync(device)
    return seen / (time.perf_counter() - start)


def train_call(cfg: TrainConfig) -> tuple[float, float]:
    """(images per second of the training steps, images per second of the whole call)."""
    start = time.perf_counter()
    result = train(cfg)
    wall = time.perf_counter() - start
    images = sum(row["images_per_second"] * row["train_seconds"] for row in result.history)
    steps = sum(row["train_seconds"] for row in result.history)
    return images / steps, images / wall


def accuracy_runs(device: str, threads: int) -> None:
    regression = ArchitectureSpec.from_dict({"task": "regression", "input": {"channels": 1, "height": 32, "width": 32},
                                             "backbone": {"name": "lenet5"}, "head": {"kind": "regression"}})
    common = dict(seed=0, device=device, threads=threads)
    runs = [("LeNet-5 from scratch on digits, one_cycle, 12 epochs, label smoothing 0.1, 2 px crops",
             TrainConfig(network="lenet5", dataset="digits", recipe="one_cycle", epochs=12, label_smoothing=0.1,
                         augmentation={"crop_padding": 2}, **common))]
    for mode in ("frozen", "finetune"):
        runs.append((f"rotation angle, LeNet-5 backbone of the shipped model + regression head, {mode}, adam, 5 epochs",
                     TrainConfig(network=regression, dataset="rotated_digits", mode=mode, epochs=5, **common)))
    for mode in ("frozen", "finetune"):
        runs.append((f"faces (lfw_subset), the shipped LeNet-5, {mode}, adam lr 3e-3, 20 epochs",
                     TrainConfig(network="lenet5_digits", dataset="faces", mode=mode, epochs=20, lr=3e-3, **common)))
    print("\n| run | test metric | training time |")
    print("|---|---|---|")
    for title, cfg in runs:
        result = train(cfg)
        if result.dataset.task == "regression":
            s = result.dataset.splits()
            constant = float((s.y_test - s.y_train.mean()).abs().mean())
            metric = f"MAE {result.test['mae']:.2f}° (constant: {constant:.2f}°)"
        else:
            metric = f"accuracy {result.test['accuracy']:.1%} ({result.test['correct']} of {result.test['count']})"
        print(f"| {title} | {metric} | {result.seconds:.1f} s |", flush=True)
    from explorer import train as recipes

    for title, run, digit_set in (
            ("ready LeNet-5: `python -m explorer.train lenet-digits`", recipes.train_lenet_digits, "digits"),
            ("ready GAP CNN: `python -m explorer.train gap-digits-canvas`", recipes.train_gap_digits_canvas,
             "digits_on_canvas")):
        model, metrics = run()
        people, count = recipes.people_digits_correct(model, digit_set)
        print(f"| {title}, {metrics['epochs']} epochs | accuracy {metrics['test_accuracy']:.1%} "
              f"({metrics['test_correct']} of {metrics['samples']['test']}); people's digits {people} of {count} "
              f"| {metrics['seconds']:.1f} s |", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "mps", "auto"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="3 calls of each")
    parser.add_argument("--accuracy", action="store_true", help="also time to accuracy (one run each)")
    parser.add_argument("--no-throughput", action="store_true", help="skip the throughput table")
    args = parser.parse_args(argv)
    repeats = 3 if args.quick else args.repeats
    device = choose_device(args.device)
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, device {device.type}, {args.threads} torch threads, {os.cpu_count()} cores, "
          f"load average {load:.2f} at the start; median of {repeats} alternating calls\n")
    if not args.no_throughput:
        throughput(args, repeats, device)
    if args.accuracy:
        accuracy_runs(args.device, args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nload average {load:.2f} at the end")
    return 0


def throughput(args, repeats: int, device: torch.device) -> None:
    print("| case | bare img/s | train() steps img/s | ratio | whole train() call img/s | ratio | ratio of the best "
          "calls (steps) |")
    print("|---|---|---|---|---|---|---|")
    for title, cfg in cases(args.device, args.threads):
        bare_call(cfg, device)  # warm-up: caches, allocator, the analysis compose.build reads
        train_call(cfg)
        bare, steps, whole = [], [], []
        for _ in range(repeats):
            bare.append(bare_call(cfg, device))
            s, w = train_call(cfg)
            steps.append(s)
            whole.append(w)
        b, s, w = statistics.median(bare), statistics.median(steps), statistics.median(whole)
        best = max(steps) / max(bare)  # less moved by other work on a shared machine than the medians
        print(f"| {title} | {b:,.0f} | {s:,.0f} | {s / b:.3f}× | {w:,.0f} | {w / b:.3f}× | {best:.3f}× |",
              flush=True)


if __name__ == "__main__":
    sys.exit(main())
