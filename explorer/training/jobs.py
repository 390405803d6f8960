"""Runs as jobs: each run trains in a process of its own, started by one `RunManager` per server process.

    manager = RunManager(root)                       # the page holds one with st.cache_resource
    run_id = manager.submit(cfg, owner=session_id)   # queued; started at once if a slot is free
    manager.poll()                                   # on every refresh: reap ended workers, start queued runs
    manager.status(run_id), manager.metrics(run_id), manager.result(run_id)
    manager.stop(run_id), manager.pause(run_id), manager.resume(run_id), manager.prune(max_bytes)

A submission is refused, with both figures, when one training step (activations for the batch, weights, gradients,
optimiser state) needs more memory than the server's budget (``$EXPLORER_TRAIN_MEMORY_MB``, default a quarter of
the RAM). Stop, pause and resume given an ``owner`` act only on that owner's runs. With ``max_bytes`` (the page:
``$EXPLORER_RUNS_MAX_MB``, default 2000 MB), `poll` prunes the oldest ended runs past it and keeps the last report
that removed any (`last_removal`).

A run's state lives only in its folder (see `runfolder`), so a new manager on the same root — a server restart —
finds every run again: finished ones are listed, queued ones queue again in their order, and one whose status says
running but whose process is gone is marked ``interrupted`` and can be resumed from its last checkpoint.

Workers are spawned (`multiprocessing` "spawn": a fresh interpreter whose target, `worker.main`, is importable —
Streamlit's script functions cannot be pickled) as daemon processes: they end with the server, and the next
manager marks them interrupted. Each worker uses ``threads_per_run`` torch threads unless its config says.

Thread safety: Streamlit runs each session's script in its own thread and they share the one manager, so every
public method holds one re-entrant lock. No background thread: `poll` does the bookkeeping when a page calls it.
Two managers (two server processes) on one root are not coordinated; give each server its own root.
"""
from __future__ import annotations

import dataclasses
import multiprocessing
import os
import pathlib
import secrets
import shutil
import signal
import threading
import time

from ..fields import fmt_bytes as _size
from .config import TrainConfig
from .errors import TrainingError
from .runfolder import (ACTIVE_STATES, RESUMABLE_STATES, RUN_ID, TERMINAL_STATES, RunFolder, load_checkpoint, now,
                        pid_alive)

__all__ = ["RunManager", "PruneReport", "default_runs_root", "RUNS_ENV", "MEMORY_ENV", "RUNS_MAX_ENV",
           "memory_budget", "runs_max_bytes", "memory_refusal"]

RUNS_ENV = "EXPLORER_RUNS"
# sizes in MB of 10⁶ bytes, as the pages print them
MEMORY_ENV = "EXPLORER_TRAIN_MEMORY_MB"  # what one run's training step may hold; default: a quarter of the RAM
RUNS_MAX_ENV = "EXPLORER_RUNS_MAX_MB"  # the runs folder's size cap; default 2000 MB
DEFAULT_RUNS_MAX_MB = 2000


def _megabytes_from_env(name: str) -> int | None:
    raw = os.environ.get(name, "").strip()
    try:
        value = float(raw)
    except ValueError:
        return None
    return int(value * 10**6) if value > 0 else None


def memory_budget() -> int:
    """The training memory one run may use, in bytes: ``$EXPLORER_TRAIN_MEMORY_MB``, else a quarter of the RAM."""
    budget = _megabytes_from_env(MEMORY_ENV)
    if budget is not None:
        return budget
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4
    except (ValueError, OSError, AttributeError):
        return 2 * 2**30


def runs_max_bytes() -> int:
    """The runs folder's size cap in bytes: ``$EXPLORER_RUNS_MAX_MB``, else 2000 MB."""
    return _megabytes_from_env(RUNS_MAX_ENV) or DEFAULT_RUNS_MAX_MB * 10**6


def memory_refusal(memory, budget: int) -> str | None:
    """The sentence refusing a run whose training step (a `loop.TrainingMemory`) needs more than ``budget``
    bytes, with both figures and what to change; None when it fits."""
    if memory is None or memory.total <= budget:
        return None
    largest = memory.largest_batch(budget)
    what = (f"choose a batch of at most {largest:,}, or build the network for a smaller input" if largest else
            "even one image does not fit: build the network for a smaller input, or choose a smaller network")
    return (f"Training a batch of {memory.batch_size:,} needs about {_size(memory.total)} ({_size(memory.activations)} "
            f"of activations saved for the backward pass, {_size(memory.fixed)} of weights, gradients and optimiser "
            f"state), more than this server's training budget of {_size(budget)}; {what}.")


def default_runs_root() -> pathlib.Path:
    """``$EXPLORER_RUNS``, else ~/.cache/cnn-explorer/runs."""
    return pathlib.Path(os.environ.get(RUNS_ENV) or pathlib.Path.home() / ".cache" / "cnn-explorer" / "runs")




def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


@dataclasses.dataclass(frozen=True)
class PruneReport:
    removed: list[str]  # run ids, oldest first
    freed: int  # bytes
    total: int  # bytes the runs folder holds afterwards
    max_bytes: int
    message: str  # a sentence for the page


class RunManager:
    """The runs under ``root``: a FIFO queue, at most ``max_concurrent`` running at once (default one per two
    cores, at least one), at most ``max_per_owner`` queued or running per owner (a session id)."""

    def __init__(self, root: str | os.PathLike | None = None, max_concurrent: int | None = None, *,
                 max_per_owner: int = 3, threads_per_run: int = 1, max_bytes: int | None = None,
                 memory_budget: int | None = None):
        self.root = pathlib.Path(root) if root is not None else default_runs_root()
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_concurrent = max_concurrent or max(1, (os.cpu_count() or 1) // 2)
        self.max_per_owner = max_per_owner
        self.threads_per_run = threads_per_run
        self.max_bytes = max_bytes  # when set, `poll` prunes to it
        self.memory_budget = memory_budget  # None: `memory_budget()`, read at each submission
        self.last_prune: PruneReport | None = None
        self.last_removal: PruneReport | None = None  # the last prune that removed runs (the page says so)
        self._lock = threading.RLock()
        self._context = multiprocessing.get_context("spawn")
        self._processes: dict[str, multiprocessing.process.BaseProcess] = {}  # the workers this manager started
        self._foreign: dict[str, int] = {}  # runs a previous server started whose worker still lives: id -> pid
        self._queue: list[str] = []
        self.scan()

    # -- the folder ----------------------------------------------------------------------------------------------
    def _folder(self, run_id: str) -> RunFolder:
        if not isinstance(run_id, str) or not RUN_ID.match(run_id) or not (self.root / run_id).is_dir():
            raise TrainingError(f"There is no run called {str(run_id)[:40]!r} in {self.root}; choose one from the "
                                "list of runs.")
        return RunFolder(self.root / run_id)

    def _run_ids(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and RUN_ID.match(p.name))

    def scan(self) -> None:
        """Read every run folder: queue the queued runs in their order, mark runs whose worker is gone
        interrupted. The constructor calls it; call it again after another process changed the root."""
        with self._lock:
            queued = []
            for run_id in self._run_ids():
                if run_id in self._processes:
                    continue
                folder = RunFolder(self.root / run_id)
                status = folder.status()
                if status.get("state") == "queued":
                    queued.append((status.get("queued_at") or 0, run_id))
                elif status.get("state") == "running":
                    if pid_alive(status.get("pid")):
                        self._foreign[run_id] = status["pid"]
                    else:
                        self._mark_interrupted(folder, "its worker was not running when the explorer started")
            self._queue = [r for _, r in sorted(queued)]

    def _mark_interrupted(self, folder: RunFolder, why: str) -> None:
        epoch = 0
        if folder.checkpoint_path.exists():
            try:
                epoch = load_checkpoint(folder.checkpoint_path)["epoch"]
            except Exception:  # an unreadable checkpoint: the resume starts over (and says so in its log)
                epoch = 0
        then = (f"resume continues after epoch {epoch}, its last checkpoint" if epoch else
                "resume starts it again (no epoch was complete)")
        folder.update_status(state="interrupted", pid=None, ended=now(), checkpoint_epoch=epoch or None,
                             message=f"The run was interrupted: {why}; {then}.")

    # -- submitting ----------------------------------------------------------------------------------------------
    def _check_quota(self, owner) -> None:
        if owner is None or not self.max_per_owner:
            return
        mine = [s for s in self.list(owner=owner) if s.get("state") in ACTIVE_STATES]
        if len(mine) >= self.max_per_owner:
            raise TrainingError(f"You already have {_plural(len(mine), 'run')} queued or running, the limit of "
                                f"{self.max_per_owner} per session; wait for one to end, or stop one.")

    def submit(self, cfg: TrainConfig, owner: str | None = None) -> str:
        """Queue ``cfg`` as a new run of ``owner`` (a session id) and start it if a slot is free; returns its id.
        Refused with a sentence: not a TrainConfig, a data set that is not a registered name (an uploaded zip
        cannot travel to a worker yet), a network that cannot be built, a training step that needs more memory
        than the budget (`memory_refusal`), or the owner's quota full (no quota for owner None). The status keeps
        the MACs per image and the training memory for the Runs comparison."""
        from . import datasets
        from .loop import training_memory

        if not isinstance(cfg, TrainConfig):
            raise TrainingError(f"A run is made from a TrainConfig; got {type(cfg).__name__}.")
        if isinstance(cfg.dataset, datasets.Dataset) and cfg.dataset.name not in datasets.names(include_downloads=True):
            raise TrainingError(f"{cfg.dataset.name} is an uploaded data set, which runs in the page's process only "
                                "for now; choose one of the offline data sets to run it as a job.")
        if cfg.threads is None:  # capped, so the pages stay responsive while it trains
            cfg = cfg.replace(threads=self.threads_per_run)
        memory, macs = training_memory(cfg)  # builds the model: a network that cannot be built is refused here
        refused = memory_refusal(memory, self.memory_budget or memory_budget())
        if refused:
            raise TrainingError(refused)
        with self._lock:
            self._check_quota(owner)
            run_id = f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(3)}"
            path = self.root / run_id
            path.mkdir()
            folder = RunFolder(path)
            folder.write_config(cfg)
            t = now()
            folder.update_status(state="queued", owner=owner, submitted=t, queued_at=t, epoch=0, epochs=cfg.epochs,
                                 pid=None, started=None, ended=None, message="Waiting for a free slot.",
                                 macs=macs, training_memory=None if memory is None else memory.total)
            self._queue.append(run_id)
            self.poll()
            return run_id

    # -- the processes -------------------------------------------------------------------------------------------
    def _start(self, run_id: str) -> None:
        from . import worker

        folder = RunFolder(self.root / run_id)
        # written before the start, so the worker's own status writes (pid, epochs) always come after it
        folder.update_status(state="running", pid=None, message="Starting its worker process.")
        process = self._context.Process(target=worker.main, args=(str(folder.path),), daemon=True,
                                        name=f"explorer-run-{run_id}")
        try:
            process.start()
        except Exception as e:
            folder.update_status(state="failed", ended=now(), message=f"Its worker process could not start ({e}).")
            return
        self._processes[run_id] = process

    def running(self) -> list[str]:
        with self._lock:
            return list(self._processes) + list(self._foreign)

    def poll(self) -> None:
        """Reap ended workers (one that ended without saying how is marked interrupted), forget foreign workers
        that are gone, start queued runs while slots are free, and prune if ``max_bytes`` is set."""
        with self._lock:
            for run_id, process in list(self._processes.items()):
                if process.is_alive():
                    continue
                process.join()
                del self._processes[run_id]
                folder = RunFolder(self.root / run_id)
                if folder.status().get("state") in ACTIVE_STATES:
                    code = process.exitcode
                    how = (f"killed by signal {signal.Signals(-code).name}" if code is not None and code < 0 else
                           f"exit code {code}")
                    self._mark_interrupted(folder, f"its worker process ended unexpectedly ({how})")
            for run_id, pid in list(self._foreign.items()):
                if not pid_alive(pid):
                    del self._foreign[run_id]
                    folder = RunFolder(self.root / run_id)
                    if folder.status().get("state") in ACTIVE_STATES:
                        self._mark_interrupted(folder, "its worker process ended unexpectedly")
            while self._queue and len(self._processes) + len(self._foreign) < self.max_concurrent:
                self._start(self._queue.pop(0))
            if self.max_bytes is not None:
                self.last_prune = self.prune(self.max_bytes)
                if self.last_prune.removed:
                    self.last_removal = self.last_prune

    def wait(self, run_id: str, timeout: float, interval: float = 0.1) -> dict:
        """Poll until ``run_id`` has ended and its worker process is gone (or ``timeout`` seconds pass); its
        status."""
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            status = self.status(run_id)
            ended = status["state"] not in ACTIVE_STATES and run_id not in self._processes  # its slot is free
            if ended or time.monotonic() > deadline:
                return status
            time.sleep(interval)

    # -- reading -------------------------------------------------------------------------------------------------
    def status(self, run_id: str) -> dict:
        """status.json, with ``queue_position`` (1 = next to start) for a queued run, ``requested`` ("stop" /
        "pause") while a request waits for the worker, and the worker's pid."""
        with self._lock:
            folder = self._folder(run_id)
            status = folder.status()
            status["run_id"] = run_id
            if run_id in self._queue:
                status["queue_position"] = self._queue.index(run_id) + 1
            if run_id in self._processes and status.get("pid") is None:
                status["pid"] = self._processes[run_id].pid
            for what in ("stop", "pause"):
                if status.get("state") == "running" and folder.request_path(what).exists():
                    status["requested"] = what
            return status

    def list(self, owner: str | None = None) -> list[dict]:
        """Every run's status (an owner's only, if given), the newest first."""
        with self._lock:
            out = [self.status(run_id) for run_id in self._run_ids()]
            out = [s for s in out if owner is None or s.get("owner") == owner]
            return sorted(out, key=lambda s: (s.get("submitted") or 0, s["run_id"]), reverse=True)

    def metrics(self, run_id: str, kind: str | None = None) -> list[dict]:
        """The lines of metrics.jsonl (``kind`` "batch" or "epoch" for one sort)."""
        lines = self._folder(run_id).metrics()
        return lines if kind is None else [m for m in lines if m.get("kind") == kind]

    def result(self, run_id: str) -> dict | None:
        """result.json of a finished or stopped run (test metrics, notes), else None."""
        return self._folder(run_id).result()

    def config(self, run_id: str) -> TrainConfig:
        return self._folder(run_id).config()

    def samples(self, run_id: str) -> dict | None:
        """samples.json: the predictions on the fixed validation images after the latest epoch, or None."""
        return self._folder(run_id).samples()

    def size(self) -> int:
        """Bytes the runs folder holds."""
        with self._lock:
            return sum(RunFolder(self.root / r).size() for r in self._run_ids())

    def folder(self, run_id: str) -> pathlib.Path:
        """Where the run's files are (final.safetensors, checkpoint.safetensors, metrics.jsonl: the downloads)."""
        return self._folder(run_id).path

    # -- requests ------------------------------------------------------------------------------------------------
    def _check_owner(self, folder: RunFolder, owner: str | None) -> None:
        if owner is not None and folder.status().get("owner") != owner:
            raise TrainingError(f"The run {folder.run_id} belongs to another session, so it is shown read-only; "
                                "start a run of your own to stop, pause or resume it.")

    def stop(self, run_id: str, owner: str | None = None) -> str:
        """Stop a run: a running one after its current step (its model so far becomes final, its last checkpoint
        stays); a queued, paused or interrupted one at once. With ``owner``, only that owner's run (as pause and
        resume). Returns a sentence."""
        with self._lock:
            folder = self._folder(run_id)
            self._check_owner(folder, owner)
            state = folder.status().get("state")
            if state == "running":
                folder.request_path("stop").write_text("stop")
                return "The run stops after its current step."
            if state == "queued":
                self._queue.remove(run_id)
                folder.update_status(state="stopped", ended=now(), message="Stopped before it started.")
                return "The run was taken off the queue."
            if state in ("paused", "interrupted"):
                folder.update_status(state="stopped", message=f"Stopped while {state}; its checkpoint is kept.")
                return "The run is stopped; its checkpoint is kept."
            raise TrainingError(f"The run {run_id} has already ended ({state}); there is nothing to stop.")

    def pause(self, run_id: str, at_once: bool = False, owner: str | None = None) -> str:
        """Ask a running run to checkpoint at the end of its current epoch and exit (``at_once``: after the current
        step; the part-epoch is trained again on resume). Returns a sentence."""
        with self._lock:
            folder = self._folder(run_id)
            self._check_owner(folder, owner)
            state = folder.status().get("state")
            if state != "running":
                raise TrainingError(f"The run {run_id} is {state}, not running; only a running run can be paused"
                                    + (" (stop takes it off the queue)." if state == "queued" else "."))
            folder.request_path("pause").write_text("now" if at_once else "epoch")
            return ("The run pauses after its current step." if at_once else
                    "The run pauses at the end of its current epoch.")

    def resume(self, run_id: str, owner: str | None = None) -> str:
        """Queue a paused, interrupted or stopped run to continue from its last checkpoint. Returns a sentence."""
        with self._lock:
            folder = self._folder(run_id)
            self._check_owner(folder, owner)
            status = folder.status()
            state = status.get("state")
            if state not in RESUMABLE_STATES:
                raise TrainingError(f"The run {run_id} is {state}; only a paused, interrupted or stopped run can be "
                                    "resumed.")
            self._check_quota(status.get("owner"))
            for what in ("stop", "pause"):
                folder.request_path(what).unlink(missing_ok=True)
            epoch = status.get("checkpoint_epoch") or 0
            folder.update_status(state="queued", queued_at=now(), ended=None, pid=None,
                                 message=f"Waiting to resume after epoch {epoch}." if epoch else
                                 "Waiting to start again from the beginning (no checkpoint).")
            self._queue.append(run_id)
            self.poll()
            return "The run is queued to resume."

    # -- the size cap --------------------------------------------------------------------------------------------
    def prune(self, max_bytes: int) -> PruneReport:
        """Remove the oldest ended runs (finished, stopped, failed; by their end time) until the runs folder holds
        at most ``max_bytes``; never a queued, running, paused or interrupted one."""
        with self._lock:
            sizes = {r: RunFolder(self.root / r).size() for r in self._run_ids()}
            total = sum(sizes.values())
            candidates = []
            for run_id in sizes:
                status = RunFolder(self.root / run_id).status()
                if (status.get("state") in TERMINAL_STATES and run_id not in self._processes
                        and run_id not in self._foreign and run_id not in self._queue):
                    candidates.append((status.get("ended") or status.get("submitted") or 0, run_id))
            removed, freed = [], 0
            for _, run_id in sorted(candidates):
                if total - freed <= max_bytes:
                    break
                shutil.rmtree(self.root / run_id, ignore_errors=True)
                removed.append(run_id)
                freed += sizes[run_id]
            total -= freed
            limit = _size(max_bytes)
            if not removed:
                message = f"The runs folder holds {_size(total)}, within its {limit} limit; nothing was removed."
                if total > max_bytes:
                    message = (f"The runs folder holds {_size(total)}, over its {limit} limit, but every run in it is "
                               "queued, running, paused or interrupted; nothing was removed.")
            else:
                message = (f"Removed the {_plural(len(removed), 'oldest ended run')} ({', '.join(removed)}; "
                           f"{_size(freed)}) to keep the runs folder within {limit}; it holds {_size(total)}.")
                if total > max_bytes:
                    message += " The rest are queued, running, paused or interrupted, and are kept."
            return PruneReport(removed, freed, total, max_bytes, message)
