"""Server-side time of a Compose rerun after a widget change (AppTest), for resnet50 + FPN + YOLO-style head.

    .venv/bin/python bench/app.py [--repeats 7]

Cache miss: the change makes a composition the app has not analysed yet (a new number of classes).
Cache hit: a change back to one it has. Targets: ≤ 300 ms on a miss, ≤ 50 ms on a hit. For scale, the same run
also times the analysis alone (`analyze_spec`, what a miss has to do) and reports the ratio.
"""
from __future__ import annotations

import argparse
import statistics
import sys
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
    args = ap.parse_args()
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

    rerun_with(20)  # warm: imports, first render
    misses, hits, alone = [], [], []
    for i in range(args.repeats):
        n = 21 + i  # a composition not analysed before
        misses.append(rerun_with(n))
        hits.append(rerun_with(20))  # analysed before: served from st.cache_data
        t = time.perf_counter()
        analyze_spec(ArchitectureSpec.from_dict({**SPEC, "head": {"kind": "yolo", "num_classes": 100 + i}}))
        alone.append(time.perf_counter() - t)
    miss, hit, work = (statistics.median(x) * 1000 for x in (misses, hits, alone))
    print("| Compose rerun, resnet50 + FPN + YOLO at 512 px | median of %d | target |" % args.repeats)
    print("|---|---|---|")
    print(f"| cache miss (new composition) | {miss:.0f} ms | ≤ 300 ms |")
    print(f"| cache hit | {hit:.0f} ms | ≤ 50 ms |")
    print(f"| `analyze_spec` alone (the work of a miss) | {work:.0f} ms | |")
    print(f"| miss / analysis alone | {miss / work:.2f}× | |")


if __name__ == "__main__":
    main()
