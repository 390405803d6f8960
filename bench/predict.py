"""Inference throughput of `explorer.predict` against the bare torchvision eval loop, same model, same batch.

    .venv/bin/python bench/predict.py                 # resnet18, mobilenet_v3_small at 224 px, lenet5 at 32 px
    .venv/bin/python bench/predict.py --quick         # fewer repeats
    .venv/bin/python bench/predict.py --device cuda --batch 64 --models resnet50

For each model (random weights, seeded; eval mode, gradients off, as the app caches it) and one random input batch:
  bare      `with torch.inference_mode(): model(x).softmax(1)`, as torchvision's docs run a classifier ("prediction
            = model(batch).squeeze(0).softmax(0)"; fp32; on a GPU the batch is moved with `.to(device)` and the clock
            read after synchronising).
  explorer  `predict(model, x, device)`: the same forward plus the task's post-processing (softmax, the top-5
            indices and probabilities per image), with its input checks and device handling (on CUDA: pinned
            input, channels_last, bf16/fp16 autocast). The top-5 as (index, label, probability) text is built
            when `.top` is first read, for the images a page shows; the column "reading .top" adds that cost.
Calls alternate bare and explorer after a warm-up, so both see the same machine state; the median call of each
(≥ 7 calls with --quick, ≥ 21 without, more for fast models) is reported as images per second. Target on the
CPU: explorer ≥ 0.95× bare. Written to bench/results/predict.md.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from explorer import catalog  # noqa: E402
from explorer.predict import choose_device, device_label, predict  # noqa: E402

# (model, side, batch or None for --batch). LeNet-5 also at 256 digits a call: its whole batch of 16 takes under a
# millisecond, so predict's fixed ~80 µs per call (softmax, top-5 with labels) shows there and fades with the batch.
DEFAULT = [("resnet18", 224, None), ("mobilenet_v3_small", 224, None), ("lenet5", 32, None), ("lenet5", 32, 256)]


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def bare_call(model, x, device):
    """One bare forward, timed: seconds."""
    t = time.perf_counter()
    with torch.inference_mode():
        y = model(x.to(device) if device.type != "cpu" else x).softmax(1)
    _sync(device)
    dt = time.perf_counter() - t
    del y
    return dt


def explorer_call(model, x, device, read_top=False):
    """One whole `predict` call (input checks, device choice, forward, post-processing), timed from outside (not
    the figure predict reports of itself), with ``read_top`` also building every image's top-5 text: seconds."""
    t = time.perf_counter()
    result = predict(model, x, device, batch_size=x.shape[0])
    if read_top:
        result.top
    return time.perf_counter() - t


def measure(name, size, batch, device, repeats, warmup, budget):
    torch.manual_seed(0)
    model = catalog.build(name).eval().requires_grad_(False)
    c = catalog.info(name).input_size[0]
    x = torch.randn(batch, c, size, size, generator=torch.Generator().manual_seed(1))
    # The bare loop needs the model on the device: its own instance there (predict keeps its own private copy).
    bare_model = model
    if device.type != "cpu":
        bare_model = catalog.build(name).eval().requires_grad_(False).to(device)
        bare_model.load_state_dict(model.state_dict())
    for _ in range(warmup):
        bare_call(bare_model, x, device)
        explorer_call(model, x, device)
    # At least `repeats` calls each, more for a fast model (up to about `budget` seconds), one bare and one explorer
    # call in turn, alternating which goes first; the median call of each is robust to the moments another
    # process takes the CPU.
    one = min(bare_call(bare_model, x, device) for _ in range(3))
    pairs = max(repeats, min(5000, round(budget / (3 * one))))
    bare, ours, with_top = [], [], []
    for i in range(pairs):
        calls = [lambda: bare.append(bare_call(bare_model, x, device)),
                 lambda: ours.append(explorer_call(model, x, device)),
                 lambda: with_top.append(explorer_call(model, x, device, read_top=True))]
        for k in range(3):  # each of the three goes first in turn
            calls[(i + k) % 3]()
    rate = lambda times: batch / statistics.median(times)  # noqa: E731
    return rate(bare), rate(ours), rate(with_top), pairs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer repeats (≥ 7 calls each instead of ≥ 21)")
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--models", nargs="*", help="only these catalog models (at their catalog input size)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "predict.md"))
    args = ap.parse_args()
    device = choose_device(args.device)
    repeats, warmup, budget = (7, 2, 2.0) if args.quick else (21, 3, 10.0)
    models = [(m, catalog.info(m).input_size[1], None) for m in args.models] if args.models else DEFAULT

    header = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
              f"{device_label(device)}; median call of ≥ {repeats} alternating calls each (more for fast models, "
              f"up to ~{budget:g} s) after {warmup} warm-up calls each")
    lines = [f"# explorer.predict vs the bare eval loop ({'quick' if args.quick else 'full'})", "", header, "",
             "| model | input | batch | device | bare img/s | explorer img/s | ratio (target ≥ 0.95×) "
             "| predict − bare, per call | reading .top too | calls each |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    print(lines[2], flush=True)
    for name, size, batch in models:
        batch = batch or args.batch
        bare, ours, with_top, calls = measure(name, size, batch, device, repeats, warmup, budget)
        c = catalog.info(name).input_size[0]
        row = (f"| {name} | {c}×{size}×{size} | {batch} | {device.type} | {bare:,.1f} | {ours:,.1f} | "
               f"{ours / bare:.3f}× | {(batch / ours - batch / bare) * 1e6:+,.0f} µs | {with_top / bare:.3f}× | "
               f"{calls} |")
        lines.append(row)
        print(row, flush=True)
    notes = ["", "bare: `with torch.inference_mode(): model(x).softmax(1)`, as torchvision's docs run a classifier; "
             "explorer: the whole `predict(model, x, device)` call (input checks, softmax, top-5 indices and "
             "probabilities), timed from outside; reading .top too: the same call plus building every image's "
             "(index, label, probability) top-5 text, which a page does only for the images it shows.",
             "predict − bare is the difference of the median calls: predict's fixed cost per call where the forward is "
             "short (lenet5), within run-to-run noise where it takes hundreds of milliseconds."]
    if device.type == "cuda":
        notes.append("On CUDA the bare loop is the plain fp32 loop (input `.to(device)`, contiguous NCHW), while "
                     "predict uses pinned input, channels_last and bf16/fp16 autocast, so the ratio shows that "
                     "benefit rather than overhead.")
    lines += notes
    print("\n".join(notes))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(f"\nwritten to {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")


if __name__ == "__main__":
    main()
