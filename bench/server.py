"""The app on a loopback port, and the headless Chromium that drives it: shared by `bench/load.py` and the browser
tests (`tests/test_browser.py`, `tests/test_load.py`), so both start the server and the browser the same way."""
from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")  # Debian's chromium (`make test` installs it); Playwright's own is not used
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 "--disable-renderer-backgrounding", "--disable-background-timer-throttling",
                 "--disable-backgrounding-occluded-windows"]
STARTUP_S = 90  # importing torch on a cold machine is the slow part


# What every page probe reads first (JS, one round trip, textContent: no layout forced): `q(selector, root)`, the
# metric labels and values, and the page's state. `bench/load.py`'s and `bench/load_training.py`'s probes start
# with it and return `{...pageState(), ...}`.
PAGE_STATE_JS = r"""
  const q = (s, root) => Array.from((root || document).querySelectorAll(s));
  const metrics = {};
  for (const m of q('[data-testid="stMetric"]')) {
    const l = m.querySelector('[data-testid="stMetricLabel"]'), v = m.querySelector('[data-testid="stMetricValue"]');
    if (l && v) { const k = l.textContent.trim(); if (!(k in metrics)) metrics[k] = v.textContent.trim(); }
  }
  const main = document.querySelector('[data-testid="stMain"]') || document.body;
  const body = document.body ? document.body.textContent : '';
  const pageState = () => ({
    path: location.pathname, search: location.search,
    idle: !document.querySelector('[data-testid="stStatusWidget"]'),
    exception: q('[data-testid="stException"]').length,
    exceptionText: q('[data-testid="stException"]').map(e => e.textContent.trim().slice(0, 200)).join(' | '),
    traceback: body.includes('Traceback'),
    metrics,
  });
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`streamlit run app.py` on a free loopback port, its output in ``log_path``; `stop()` terminates it (kill
    after 10 s). sys.executable is the venv's python under `make test`, so the server sees the same packages."""

    def __init__(self, log_path: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
             "--server.address", "127.0.0.1", "--server.port", str(self.port), "--server.fileWatcherType", "none",
             "--browser.gatherUsageStats", "false"],
            cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_healthy(self, timeout: float = STARTUP_S) -> None:
        """Return once /_stcore/health answers; RuntimeError with a sentence if the server exits or is too slow."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with {self.proc.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"streamlit did not answer /_stcore/health within {timeout} s; see {self.log_path}")
            time.sleep(0.25)

    def active_sessions(self) -> int | None:
        try:
            with urllib.request.urlopen(f"{self.url}/_stcore/metrics", timeout=5) as r:
                m = re.search(rb"^active_sessions (\d+)", r.read(), re.M)
                return int(m.group(1)) if m else None
        except OSError:
            return None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()


@contextlib.contextmanager
def serving(log_path: Path) -> Iterator[str]:
    """The app's URL while it runs (a `Server`, healthy); RuntimeError with a sentence if it does not start."""
    server = Server(log_path)
    try:
        server.wait_healthy()
        yield server.url
    finally:
        server.stop()


def launch_chromium(playwright, timeout_ms: int = 30_000):
    """Debian's Chromium, headless, with the arguments every browser test and the load bench use."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=timeout_ms)
