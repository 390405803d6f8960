"""Analysis speed, as ratios against the peer tools in the same run.

    .venv/bin/python bench/analysis.py              # every torchvision model; torchinfo on the CPU for each
    .venv/bin/python bench/analysis.py --quick      # skip torchinfo on the largest models (minutes of CPU)

For each model:
  explorer   `analyze(name)`: build on meta + one traced forward (params, MACs, shapes, receptive fields,
             activation memory) + the training-memory pass. Build included.
  flopcount  build on meta (same builder) + `FlopCounterMode` alone: MACs only, nothing else.
  torchinfo  `torchinfo.summary` as people run it: a CPU model (built and initialised) and a real CPU forward.
Then the explorer once more with two worker processes (this machine has two cores).
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from explorer import analyze, catalog  # noqa: E402

BIG = {"vit_h_14", "regnet_y_128gf", "regnet_y_32gf", "efficientnet_b7", "efficientnet_b6", "efficientnet_v2_l",
       "vit_l_16", "regnet_y_16gf", "efficientnet_b5", "efficientnet_v2_m", "convnext_large", "swin_v2_b",
       "vit_l_32", "regnet_x_32gf", "swin_b", "swin_v2_s", "resnext101_64x4d", "resnext101_32x8d",
       "wide_resnet101_2", "efficientnet_b4", "convnext_base"}


def time_explorer(name):
    t = time.perf_counter()
    a = analyze(name)
    return time.perf_counter() - t, a.macs


def time_flopcounter(name):
    t = time.perf_counter()
    m = catalog.build_meta(name).eval()
    x = torch.empty((1,) + catalog.info(name).input_size, device="meta")
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        m(x)
    return time.perf_counter() - t, fc.get_total_flops() // 2


def time_torchinfo(name):
    import torchinfo

    t = time.perf_counter()
    m = catalog.build(name).eval()
    s = torchinfo.summary(m, input_size=(1,) + catalog.info(name).input_size, verbose=0, device="cpu")
    return time.perf_counter() - t, s.total_mult_adds


def _explorer_worker(names):
    return [(n, *time_explorer(n)) for n in names]


def parallel_explorer(names, workers):
    """Analyse ``names`` in ``workers`` forked processes; wall time of the whole batch."""
    chunks = [names[i::workers] for i in range(workers)]
    t = time.perf_counter()
    with mp.get_context("fork").Pool(workers) as pool:
        pool.map(_explorer_worker, chunks)
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="skip torchinfo on the largest models")
    ap.add_argument("--models", nargs="*", help="only these models")
    args = ap.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    names = args.models or catalog.names("torchvision")
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"torch {torch.__version__}")

    rows, tot = [], {"explorer": 0.0, "flopcount": 0.0, "torchinfo": 0.0, "torchinfo_models": 0}
    # Fresh caches for the serial explorer run: fork the measurement so earlier imports don't warm it.
    for name in names:
        te, macs = time_explorer(name)
        tf, fmacs = time_flopcounter(name)
        assert macs == fmacs, (name, macs, fmacs)
        ti = None
        if not (args.quick and name in BIG):
            ti, _ = time_torchinfo(name)
            tot["torchinfo"] += ti
            tot["torchinfo_models"] += 1
        tot["explorer"] += te
        tot["flopcount"] += tf
        rows.append((name, te, tf, ti))
        print(f"{name:22s} explorer {te:7.3f}s  flopcount {tf:7.3f}s  "
              f"torchinfo {'' if ti is None else f'{ti:7.3f}s'}", flush=True)

    par = parallel_explorer(names, 2)
    r50 = next((r for r in rows if r[0] == "resnet50"), None)
    print()
    print("| measure | value |")
    print("|---|---|")
    print(f"| models | {len(names)} |")
    print(f"| explorer full analysis, serial (build + trace + training memory) | {tot['explorer']:.1f} s |")
    print(f"| explorer full analysis, 2 worker processes | {par:.1f} s |")
    print(f"| FlopCounterMode alone on meta (build + MACs only) | {tot['flopcount']:.1f} s |")
    print(f"| explorer / FlopCounterMode | {tot['explorer'] / tot['flopcount']:.2f}× |")
    if tot["torchinfo_models"]:
        sub = sum(r[1] for r in rows if r[3] is not None)
        print(f"| torchinfo.summary on CPU ({tot['torchinfo_models']} models) | {tot['torchinfo']:.1f} s |")
        print(f"| explorer / torchinfo (same {tot['torchinfo_models']} models) | {sub / tot['torchinfo']:.3f}× |")
    if r50 and r50[3]:
        # resnet50 alone, best of 5, both warm (the first-run numbers above include one-off caches).
        te = min(time_explorer("resnet50")[0] for _ in range(5))
        ti = min(time_torchinfo("resnet50")[0] for _ in range(5))
        print(f"| resnet50: explorer {te * 1000:.0f} ms vs torchinfo {ti * 1000:.0f} ms (best of 5) | "
              f"{te / ti:.2f}× |")


if __name__ == "__main__":
    main()
