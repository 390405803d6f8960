"""python -m explorer: the same numbers on the command line, one sentence and exit 2 on a person's mistake.

The logic is tested in process through ``main(argv)`` (no interpreter start, no torch import per call); one test
runs the real command to check the entry point itself.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from explorer.__main__ import main

ROOT = Path(__file__).resolve().parents[1]


@dataclasses.dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str


def run(*args) -> Run:
    """``python -m explorer ARGS`` in process: its exit code (argparse's SystemExit included) and its output."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 2
    return Run(code, out.getvalue(), err.getvalue())


@pytest.mark.slow
def test_the_command_runs_as_a_module():
    p = subprocess.run([sys.executable, "-m", "explorer", "summary", "resnet5"], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.strip().startswith("error: There is no architecture called 'resnet5'")


def test_rf_prints_the_lecture_stage_table():
    p = run("rf", "resnet18", "resnet34", "resnet50", "resnet101", "--input", "224")
    assert p.returncode == 0, p.stderr
    lines = [l.replace(" ", "") for l in p.stdout.splitlines()]
    assert "|stage|resnet18|resnet34|resnet50|resnet101|" in lines
    for row in ["|conv1|7|7|7|7|", "|maxpool|11|11|11|11|", "|layer1|43|59|35|35|", "|layer2|99|179|91|91|",
                "|layer3|211|547|267|811|", "|layer4|435|899|427|971|", "|avgpool|global|global|global|global|"]:
        assert row in lines


def test_summary_formats():
    p = run("summary", "vgg16", "--input", "224")
    assert p.returncode == 0, p.stderr
    assert "138,357,544" in p.stdout and "15,237,608" in p.stdout and "15,470,264,320" in p.stdout
    csv = run("summary", "vgg16", "--format", "csv").stdout.splitlines()
    assert csv[0].startswith("layer,kind,output,activations") and len(csv) == 1 + 40
    md = run("summary", "resnet50", "--input", "224", "--format", "markdown").stdout
    assert "25,557,032 parameters" in md
    js = json.loads(run("summary", "lenet5", "--format", "json").stdout)
    assert js["totals"]["params"] == 61_706 and js["totals"]["input"] == [1, 32, 32]


def test_list():
    p = run("list")
    assert p.returncode == 0
    assert len(p.stdout.splitlines()) == 1 + 105  # every source: 80 + 8 + 3 + 12 int8 + 2 optical flow
    assert any(l.startswith("raft_small ") and "3×512×512 and 3×512×512" in l and "990,162" in l
               for l in p.stdout.splitlines())
    assert any(l.startswith("vgg16 ") and "138,357,544" in l for l in p.stdout.splitlines())


def test_mistakes_are_one_sentence_and_exit_2():
    p = run("summary", "resnet5")
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.strip().splitlines() == [
        "error: There is no architecture called 'resnet5' in the catalog. Did you mean resnet50, resnet152, resnet34?"]
    p = run("summary", "vgg16", "--input", "16")
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1
    assert "vgg16 cannot take a 3×16×16 input" in p.stderr and "3×32×32" in p.stderr
    p = run("summary", "vgg16", "--input", "big")
    assert p.returncode == 2 and "is not a size" in p.stderr


def test_kinds_lists_every_registered_kind_as_markdown():
    from explorer import components

    p = run("kinds")
    assert p.returncode == 0 and p.stderr == ""
    lines = p.stdout.splitlines()
    assert [l.split("**")[1] for l in lines if l.startswith("- ")] == ["Blocks", "Necks", "Heads"]
    assert all(f"`{c.name}`" in p.stdout for c in components.all_components())
    text = " ".join(p.stdout.split())  # the items wrap
    assert "`bottleneck_1x1` 1×1 bottleneck" in text and "`vgg` VGG stage" in text
