"""Process-wide torch settings for serving a class from one machine.

Streamlit runs every session's script in its own thread. Left alone, each torch op in each session uses all the
cores (intra-op threads), so a few sessions computing at once oversubscribe the machine and all of them slow
down. The server therefore gives each op a share of the cores: half of them (at least one, at most four) unless
``EXPLORER_TORCH_THREADS`` says otherwise; a single user loses a little speed, a room of sixty keeps the server
responsive.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import threading

import torch

__all__ = ["server_threads", "configure_torch_for_server", "seeded"]

_SEEDING = threading.Lock()  # torch's global generator is shared by every session's thread

ENV = "EXPLORER_TORCH_THREADS"


def server_threads(cores: int | None = None, env: str | None = None) -> int:
    """Intra-op threads per torch op on a shared server: ``$EXPLORER_TORCH_THREADS`` if it is a positive whole
    number, else half the cores, between 1 and 4."""
    raw = os.environ.get(ENV) if env is None else env
    if raw:
        try:
            value = int(raw)
        except ValueError:
            value = 0
        if value > 0:
            return value
    cores = cores or os.cpu_count() or 1
    return max(1, min(4, cores // 2))


def configure_torch_for_server() -> int:
    """Apply `server_threads` (app.py calls this on every rerun: cheap when the count is already right) and one
    inter-op thread (settable only before the first parallel work, so later calls leave it); returns the intra-op
    thread count in use."""
    n = server_threads()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    try:  # inter-op threads can only be set before any parallel work has started
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    return torch.get_num_threads()


@contextlib.contextmanager
def seeded(name: str):
    """Random initialisation inside this block is fixed by ``name``: a cached model rebuilt after the cache dropped
    it is the same model (results cached for it stay true), and everyone opening one link sees the same untrained
    outputs. Builds take turns; the caller's own random stream is left as it was."""
    seed = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") >> 1
    with _SEEDING, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
