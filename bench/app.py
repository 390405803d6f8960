"""Server-side time of a Compose rerun after a widget change (AppTest), for resnet50 + FPN + YOLO-style head.

    .venv/bin/python bench/app.py [--repeats 7] [--while-training]

Cache miss: the change makes a composition the app has not analysed yet (a new number of classes).
Cache hit: a change back to one it has. Targets: ≤ 300 ms on a miss, ≤ 50 ms on a hit. For scale, the same run
also times the analysis alone (`analyze_spec`, what a miss has to do) and reports the ratio.

``--while-training`` measures the same reruns twice in one process: with no run going, then with one training run
going in its own process (started by the Train page's `RunManager` into a temporary folder, one torch thread, as
the page starts it), and prints the ratio — what a person composing feels while someone else trains.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from streamlit.testing.v1 import AppTest  # noqa: E402

from explorer.compose import analyze_spec  # noqa: E402
from explorer.spec import ArchitectureSpec  # noqa: E402

SPEC = {"task": "detection", "input": {"height": 512, "width": 512}, "backbone": {"name": "resnet50"},
        "neck": {"kind": "fpn"}, "head": {"kind": "yolo", "num_classes": 20}}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--while-training", action="store_true",
                    help="also time the reruns with a training run going, and print the ratio")
    args = ap.parse_args()
    if args.while_training:
        return while_training(args.repeats)
    miss, hit, work = reruns(args.repeats, 20)
    print("| Compose rerun, resnet50 + FPN + YOLO at 512 px | median of %d | target |" % args.repeats)
    print("|---|---|---|")
    print(f"| cache miss (new composition) | {miss:.0f} ms | ≤ 300 ms |")
    print(f"| cache hit | {hit:.0f} ms | ≤ 50 ms |")
    print(f"| `analyze_spec` alone (the work of a miss) | {work:.0f} ms | |")
    print(f"| miss / analysis alone | {miss / work:.2f}× | |")


def while_training(repeats: int) -> None:
    from explorer.training import TrainConfig
    from explorer.training.jobs import RunManager

    idle = reruns(repeats, 20)
    with tempfile.TemporaryDirectory() as root:
        runs = RunManager(root)
        # long enough to outlast the timing: resnet18 on the 64×64 canvas digits
        run_id = runs.submit(TrainConfig(network="resnet18", dataset="digits_canvas", mode="scratch",
                                         recipe="adam", epochs=50, batch_size=64, seed=0), owner="bench")
        status = runs.status(run_id)
        deadline = time.time() + 120
        while status.get("state") != "running" or not runs.metrics(run_id, "batch"):
            if time.time() > deadline:
                raise SystemExit(f"the training run did not start: {runs.status(run_id)}")
            time.sleep(0.5)
            runs.poll()
            status = runs.status(run_id)
        busy = reruns(repeats, 40)  # other compositions than the idle pass, so misses stay misses
        state = runs.status(run_id).get("state")
        runs.stop(run_id)
        runs.wait(run_id, timeout=60)
    if state != "running":
        raise SystemExit(f"the training run ended during the timing ({state}); the numbers would mean nothing")
    print(f"| Compose rerun, resnet50 + FPN + YOLO at 512 px, median of {repeats} | no run | one run training "
          "| ratio |")
    print("|---|---|---|---|")
    for name, a, b in (("cache miss", idle[0], busy[0]), ("cache hit", idle[1], busy[1]),
                       ("`analyze_spec` alone", idle[2], busy[2])):
        print(f"| {name} | {a:.0f} ms | {b:.0f} ms | {b / a:.2f}× |")


def reruns(repeats: int, base: int) -> tuple[float, float, float]:
    """Median milliseconds of a Compose rerun on a cache miss, on a hit, and of the analysis alone."""
    spec = ArchitectureSpec.from_dict(SPEC)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.query_params["spec"] = spec.to_url()
    at.run()
    assert not at.exception, at.exception
    key = "compose.head.yolo.num_classes"

    def rerun_with(n: int) -> float:
        at.number_input(key=key).set_value(n)
        t = time.perf_counter()
        at.run()
        dt = time.perf_counter() - t
        assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
        return dt

    rerun_with(base)  # warm: imports, first render
    misses, hits, alone = [], [], []
    for i in range(repeats):
        n = base + 1 + i  # a composition not analysed before
        misses.append(rerun_with(n))
        hits.append(rerun_with(base))  # analysed before: served from st.cache_data
        t = time.perf_counter()
        analyze_spec(ArchitectureSpec.from_dict({**SPEC, "head": {"kind": "yolo",
                                                                   "num_classes": 5 * base + 100 + i}}))
        alone.append(time.perf_counter() - t)
    return tuple(statistics.median(x) * 1000 for x in (misses, hits, alone))


if __name__ == "__main__":
    main()
