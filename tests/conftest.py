"""What every test module shares: the hypothesis profiles and the small helpers written once.

Profiles: ``full`` (what ``make test`` and CI run: the fuzz at 1,000 examples) and ``check`` (``make check``, the
fast lane: 50). Choose one with ``HYPOTHESIS_PROFILE``; ``full`` is the default, so a bare ``pytest`` is CI's run.
A test that sets ``max_examples`` itself keeps its own number in both.

``CHECK_CASES=N`` (``make check`` sets 1) runs only the first N cases of each parametrised test (the sweeps over
every catalog model, neck or page); ``make test`` runs every case.
"""
from __future__ import annotations

import os

import pytest
from hypothesis import settings
from torch import nn

FULL_EXAMPLES = 1000
settings.register_profile("full", max_examples=FULL_EXAMPLES)
settings.register_profile("check", max_examples=50)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "full"))


def pytest_collection_modifyitems(config, items):
    cases = int(os.environ.get("CHECK_CASES") or 0)
    if cases <= 0:
        return
    seen: dict[str, int] = {}
    kept, dropped = [], []
    for item in items:
        test = item.nodeid.split("[", 1)[0]  # a parametrised test's cases share it
        seen[test] = seen.get(test, 0) + 1
        (kept if "[" not in item.nodeid or seen[test] <= cases else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(autouse=True, scope="session")
def _private_data_and_runs(tmp_path_factory):
    """Data sets and runs go to temporary folders for the whole session (servers the tests start inherit them):
    a CIFAR-10 someone downloaded into ~/.cache must not change what a test sees, and no test writes there.
    A test that needs its own folder still sets ``EXPLORER_RUNS`` / ``EXPLORER_DATA`` with monkeypatch."""
    saved = {k: os.environ.get(k) for k in ("EXPLORER_DATA", "EXPLORER_RUNS")}
    os.environ["EXPLORER_DATA"] = str(tmp_path_factory.mktemp("data"))
    os.environ["EXPLORER_RUNS"] = str(tmp_path_factory.mktemp("runs"))
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def runs_root(tmp_path, monkeypatch):
    """This test's own runs folder (``EXPLORER_RUNS``); the pages' manager is cached per folder, so it gets its own."""
    root = tmp_path / "runs"
    root.mkdir()
    monkeypatch.setenv("EXPLORER_RUNS", str(root))
    return root


def assert_clean(at) -> None:
    """No exception element on an AppTest page (the app shows its own sentences with st.error instead)."""
    assert not at.exception, [e.value for e in at.exception]


def n_params(module: nn.Module) -> int:
    """Parameters of ``module``, each tied tensor once (``parameters()`` yields a shared tensor once)."""
    return sum(p.numel() for p in module.parameters())


def examples_run() -> int:
    """How many examples a fuzz test of the loaded profile draws (its thresholds scale with it)."""
    return settings.default.max_examples
