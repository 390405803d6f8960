"""Every lecture experiment (explorer.training.experiments) at a budget on this machine, as jobs of one
`RunManager` in a temporary runs folder, one run at a time: a Markdown table of each preset's wall time and its
headline numbers (the table rows and the verdict), for the README.

    .venv/bin/python bench/experiments.py                  # every preset at its default budget
    .venv/bin/python bench/experiments.py tiny homework    # a budget, then some presets
"""
import pathlib
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from explorer.training import RunManager, experiments  # noqa: E402
from explorer.training.experiments import markdown_table, table_rows  # noqa: E402

HEADLINE = ("run", "test accuracy", "test MAE (°)", "test pixel accuracy", "test mIoU", "training accuracy",
            "validation accuracy", "parameters", "training time (s)")


def run_preset(name: str, budget: str, manager: RunManager) -> tuple[float, list[dict], list[str]]:
    start = time.perf_counter()
    exp = experiments.start(name, budget, manager, owner="0123456789abcdef")
    while True:
        manager.poll()
        experiments.advance(exp, manager)
        runs = experiments.summaries(exp, manager)
        if all(r.state not in ("queued", "running", "waiting") for r in runs.values()):
            break
        time.sleep(1.0)
    rows = [{k: v for k, v in row.items() if k in HEADLINE} for row in table_rows(exp, runs)]
    return time.perf_counter() - start, rows, experiments.verdict(exp, manager, runs)


def main() -> None:
    args = sys.argv[1:]
    budget = args.pop(0) if args and args[0] in experiments.BUDGETS else "default"
    names = args or experiments.names()
    with tempfile.TemporaryDirectory() as root:
        manager = RunManager(root, max_concurrent=1, max_per_owner=8)
        print(f"Budget: {experiments.BUDGET_TITLES[budget]}; one run at a time, one torch thread each.\n")
        for name in names:
            seconds, rows, verdict = run_preset(name, budget, manager)
            print(f"### {experiments.get(name).title} — {seconds:.0f} s wall time\n")
            print(markdown_table(rows))
            print()
            for sentence in verdict:
                print(f"- {sentence}")
            print(flush=True)


if __name__ == "__main__":
    main()
