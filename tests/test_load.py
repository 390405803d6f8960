"""Issue 6's load walk at N = 5: five browser sessions at once, each with its own composition, catalog model and
digit, against one server; none may see an error or another session's result. Speed and memory are measured by
`bench/load.py` and never asserted here.
"""
import importlib.util
import sys
from pathlib import Path

import pytest

from bench.server import CHROMIUM

ROOT = Path(__file__).resolve().parents[1]

if not CHROMIUM.exists():
    pytest.skip("/usr/bin/chromium is missing: install Debian's chromium (`make browser` or "
                "`apt-get install -y chromium`) to run the browser tests", allow_module_level=True)
pytest.importorskip("playwright.async_api", reason="Playwright for Python is not installed")

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.serial]  # serial: it measures latency


def _bench():
    spec = importlib.util.spec_from_file_location("bench_load", ROOT / "bench" / "load.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while the class is being made
    spec.loader.exec_module(module)
    return module


def test_five_sessions_at_once_each_see_only_their_own_results(tmp_path):
    load = _bench()
    # No warm-up: the five sessions also meet the server's cold caches at the same moment.
    runs = load.run([5], concurrency=5, step_timeout=60, session_timeout=150, deadline_for=lambda n: 110,
                    log_dir=tmp_path, warmup=False, progress=lambda *_: None)
    (r,) = runs
    text = load.report(runs, ["--sessions", "5"], 5, 60, 150, "110 s")
    assert r.unfinished == 0, text
    assert r.wrong == 0, text
    assert r.errors == 0, text
    done = {x.session for x in r.results if x.step == load.STEPS[-1] and x.status == "ok"}
    assert done == set(range(5)), text
    assert r.peak_active >= 5, text  # all five Streamlit sessions were open at the same time
