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

Workers are fresh interpreters running ``python -m explorer.training.worker FOLDER`` — the command a Ray job runs
too. Not `multiprocessing`'s "spawn": under ``streamlit run`` it re-ran the page script that started the run in
the child (Streamlit's script runner installs each script as ``__main__``), which cost seconds and filled the
server log with "missing ScriptRunContext". They end with the server (terminated at its exit, as daemon processes
are), and the next manager marks them interrupted. Each worker uses ``threads_per_run`` torch threads unless its
config says.
That is the `LocalProcessBackend`; with ``$EXPLORER_RAY_ADDRESS`` set (or ``backend=RayJobsBackend(address)``)
each run is a Ray job on that cluster instead, whose log streams the run folder back (`ray_jobs`).

Fair sharing (a whole class on one server): when a slot frees, the next run is taken round-robin over owners —
the owner with the fewest running runs, ties by whose first waiting run has waited longest; FIFO within an owner
(`queue_order`, which ``queue_position`` follows). Per owner at most ``max_per_owner`` runs queued or running
(``$EXPLORER_QUOTA_RUNS``, default 8) and ``max_running_per_owner`` running at once (``$EXPLORER_QUOTA_RUNNING``,
default half the slots, at least one); the slots are ``max_concurrent`` (``$EXPLORER_SLOTS``, default one per two
cores). No quota for owner None. A queued run's ``expected_start`` (seconds from now, None when unknown) adds up
what runs before it: the running runs' epochs left × their last epoch's time, and the runs ahead in the queue by
the estimate given at submission (``estimate_seconds``), else MACs × images ÷ the rate finished runs trained at.

Identical configurations are trained once: a submission whose config (its `to_dict` JSON, the thread count aside)
equals a queued, running or finished run's returns that run's id and adds the owner to its sharers (sharers.json
in its folder, written by the manager only, so a worker's status write never loses one; `status` reports them as
``sharers``). The run counts toward the quotas of its first owner only; stop or pause by one of several sessions
sharing it detaches that session only; ``teacher=True`` stops it for all. ``fresh=True`` trains it again anyway.

Thread safety: Streamlit runs each session's script in its own thread and they share the one manager, so every
public method holds one re-entrant lock. No background thread: `poll` does the bookkeeping when a page calls it.
Two managers (two server processes) on one root are not coordinated; give each server its own root.
"""
from __future__ import annotations

import atexit
import dataclasses
import hashlib
import hmac
import json
import os
import pathlib
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time

from ..fields import fmt_bytes as _size
from .config import TrainConfig
from .errors import TrainingError
from .runfolder import (ACTIVE_STATES, RESUMABLE_STATES, RUN_ID, TERMINAL_STATES, RunFolder, load_checkpoint, now,
                        pid_alive, write_json_atomic)

__all__ = ["RunManager", "LocalProcessBackend", "default_backend", "PruneReport", "default_runs_root", "RUNS_ENV", "MEMORY_ENV", "RUNS_MAX_ENV",
           "SLOTS_ENV", "QUOTA_RUNS_ENV", "QUOTA_RUNNING_ENV", "TEACHER_PASSWORD_ENV", "memory_budget",
           "runs_max_bytes", "memory_refusal", "config_key", "owner_tag", "ordinal", "wait_phrase", "queue_phrase",
           "password_matches"]

_PACKAGE_PARENT = pathlib.Path(__file__).resolve().parents[2]  # the folder that holds `explorer/`

RUNS_ENV = "EXPLORER_RUNS"
# sizes in MB of 10⁶ bytes, as the pages print them
MEMORY_ENV = "EXPLORER_TRAIN_MEMORY_MB"  # what one run's training step may hold; default: a quarter of the RAM
RUNS_MAX_ENV = "EXPLORER_RUNS_MAX_MB"  # the runs folder's size cap; default 2000 MB
DEFAULT_RUNS_MAX_MB = 2000
SLOTS_ENV = "EXPLORER_SLOTS"  # runs at once on this server; default one per two cores
QUOTA_RUNS_ENV = "EXPLORER_QUOTA_RUNS"  # queued or running per session; default 8
QUOTA_RUNNING_ENV = "EXPLORER_QUOTA_RUNNING"  # running at once per session; default half the slots
TEACHER_PASSWORD_ENV = "EXPLORER_TEACHER_PASSWORD"  # the Teacher page's password (or teacher_password in secrets)
DEFAULT_QUOTA_RUNS = 8
SHARERS_FILE = "sharers.json"  # {"sharers": [owner, ...], "left": [owner, ...]}, in join order


def _count_from_env(name: str) -> int | None:
    try:
        value = int(os.environ.get(name, "").strip())
    except ValueError:
        return None
    return value if value > 0 else None


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


def _train_images(cfg: TrainConfig) -> int | None:
    """How many images an epoch trains on, for the estimates; None when the data set cannot say here."""
    from . import datasets

    try:
        total = datasets.get(cfg.dataset).splits().sizes()["train"]
    except Exception:  # an unreadable data set fails in the worker, with its sentence
        return cfg.train_samples
    return min(total, cfg.train_samples or total)


def default_runs_root() -> pathlib.Path:
    """``$EXPLORER_RUNS``, else ~/.cache/cnn-explorer/runs."""
    return pathlib.Path(os.environ.get(RUNS_ENV) or pathlib.Path.home() / ".cache" / "cnn-explorer" / "runs")




def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def config_key(config: dict) -> str:
    """What makes two runs the same run: the config's JSON (`TrainConfig.to_dict`) without its thread count,
    which changes the speed, not the numbers."""
    return json.dumps({k: v for k, v in config.items() if k != "threads"}, sort_keys=True, default=str)


def owner_tag(owner: str | None) -> str:
    """A short anonymous name for a session (the teacher view shows it, never the id that steers its runs)."""
    if owner is None:
        return "no session"
    return "session " + hashlib.sha256(str(owner).encode()).hexdigest()[:6]


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, 11th, 12th, 13th, 21st."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def wait_phrase(seconds: float | None) -> str:
    """ "expected to start in about 2 min"; "start time unknown" when nothing could say."""
    if seconds is None:
        return "start time unknown (no run has been timed yet)"
    if seconds < 1:
        return "expected to start in a moment"
    if seconds < 60:
        return f"expected to start in about {round(seconds)} s"
    if seconds < 3600:
        return f"expected to start in about {round(seconds / 60)} min"
    h, m = divmod(round(seconds / 60), 60)
    return f"expected to start in about {h} h {m:02d} min"


def queue_phrase(status: dict) -> str | None:
    """ "3rd in line, expected to start in about 2 min" for a queued run's status, else None."""
    if not status.get("queue_position"):
        return None
    return f"{ordinal(status['queue_position'])} in line, {wait_phrase(status.get('expected_start'))}"


def password_matches(given: str | None, configured: str | None) -> bool:
    """Whether ``given`` is the configured password (in constant time); never when none is configured."""
    if not configured or not given:
        return False
    return hmac.compare_digest(given.encode(), configured.encode())


class LocalProcessBackend:
    """Each run in a worker process of its own on this machine (the default backend; `ray_jobs.RayJobsBackend` is
    the other). A backend starts a run's worker and watches it; the run folder stays the manager's."""

    name = "local"

    def __init__(self):
        self._processes: dict[str, subprocess.Popen] = {}
        atexit.register(self._end_all)

    def start(self, run_id: str, folder: RunFolder):
        """Start the worker; its handle (with a ``pid``). Raises when the process cannot start."""
        env = dict(os.environ)
        # the worker imports this very package, wherever the server was started from
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_PACKAGE_PARENT), env.get("PYTHONPATH")]))
        process = subprocess.Popen([sys.executable, "-m", "explorer.training.worker", str(folder.path)],
                                   env=env, cwd=_PACKAGE_PARENT, stdin=subprocess.DEVNULL)
        self._processes[run_id] = process
        return process

    def alive(self, run_id: str) -> bool:
        return self._processes[run_id].poll() is None

    def sync(self, run_id: str, folder: RunFolder) -> None:
        """Nothing to copy: the worker writes the folder itself."""

    def ended(self, run_id: str) -> tuple[int | None, str]:
        """The exit code of an ended worker, and how it ended in words."""
        code = self._processes[run_id].wait()
        return code, (f"killed by signal {signal.Signals(-code).name}" if code is not None and code < 0 else
                      f"exit code {code}")

    def stop(self, run_id: str) -> None:
        """A hard stop (a stop request not honoured): SIGTERM, then SIGKILL after 5 s."""
        process = self._processes[run_id]
        process.terminate()
        _reap(process)

    def forget(self, run_id: str) -> None:
        self._processes.pop(run_id, None)

    def _end_all(self) -> None:
        # what `multiprocessing` does for daemon processes: a worker does not outlive the server that started it
        for process in list(self._processes.values()):
            if process.poll() is None:
                process.terminate()
        for process in list(self._processes.values()):  # all asked first, so their 5 s run side by side
            _reap(process)


def _reap(process: subprocess.Popen) -> None:
    """Wait for a worker asked to end (SIGTERM); SIGKILL it after 5 s."""
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def default_backend():
    """A `ray_jobs.RayJobsBackend` when ``$EXPLORER_RAY_ADDRESS`` is set (Ray is imported only then), else a
    `LocalProcessBackend`."""
    from .ray_jobs import ADDRESS_ENV

    if os.environ.get(ADDRESS_ENV, "").strip():
        from .ray_jobs import RayJobsBackend

        return RayJobsBackend(os.environ[ADDRESS_ENV])
    return LocalProcessBackend()


@dataclasses.dataclass(frozen=True)
class PruneReport:
    removed: list[str]  # run ids, oldest first
    freed: int  # bytes
    total: int  # bytes the runs folder holds afterwards
    max_bytes: int
    message: str  # a sentence for the page


class RunManager:
    """The runs under ``root``: a queue fair over owners, at most ``max_concurrent`` running at once (default
    ``$EXPLORER_SLOTS``, else one per two cores, at least one), at most ``max_per_owner`` queued or running per
    owner (a session id; ``$EXPLORER_QUOTA_RUNS``, else 8) and ``max_running_per_owner`` of them running
    (``$EXPLORER_QUOTA_RUNNING``, else half the slots, at least one)."""

    def __init__(self, root: str | os.PathLike | None = None, max_concurrent: int | None = None, *,
                 max_per_owner: int | None = None, max_running_per_owner: int | None = None,
                 threads_per_run: int = 1, max_bytes: int | None = None, memory_budget: int | None = None,
                 backend=None):
        self.root = pathlib.Path(root) if root is not None else default_runs_root()
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_concurrent = (max_concurrent or _count_from_env(SLOTS_ENV)
                               or max(1, (os.cpu_count() or 1) // 2))
        self.max_per_owner = max_per_owner or _count_from_env(QUOTA_RUNS_ENV) or DEFAULT_QUOTA_RUNS
        self.max_running_per_owner = (max_running_per_owner or _count_from_env(QUOTA_RUNNING_ENV)
                                      or max(1, self.max_concurrent // 2))
        self._config_keys: dict[str, str] = {}  # run id -> config_key (a config is written once)
        self._rate: tuple[float, float | None] | None = None  # (when, MACs × images per second) of finished runs
        self.threads_per_run = threads_per_run
        self.max_bytes = max_bytes  # when set, `poll` prunes to it
        self.memory_budget = memory_budget  # None: `memory_budget()`, read at each submission
        self.last_prune: PruneReport | None = None
        self.last_removal: PruneReport | None = None  # the last prune that removed runs (the page says so)
        self._lock = threading.RLock()
        self.backend = backend if backend is not None else default_backend()  # starts and watches the workers
        self._processes: dict[str, object] = {}  # the workers this manager started: id -> the backend's handle
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

    # -- sharing -------------------------------------------------------------------------------------------------
    def _sharing(self, run_id: str) -> dict:
        try:
            data = json.loads((self.root / run_id / SHARERS_FILE).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            data = {}
        return {"sharers": list(data.get("sharers") or []), "left": list(data.get("left") or [])}

    def _attached(self, run_id: str, status: dict) -> list:
        """The sessions a run is for, the one whose quota it counts in first: its owner and its sharers, less
        those who left it."""
        sharing = self._sharing(run_id)
        people = [status.get("owner"), *sharing["sharers"]]
        return [p for p in dict.fromkeys(people) if p not in sharing["left"]]

    def _holder(self, run_id: str) -> str | None:
        attached = self._attached(run_id, RunFolder(self.root / run_id).status())
        return attached[0] if attached else None

    def _write_sharing(self, run_id: str, sharing: dict) -> None:
        write_json_atomic(self.root / run_id / SHARERS_FILE, sharing)

    def _config_key(self, run_id: str) -> str | None:
        if run_id not in self._config_keys:
            try:
                self._config_keys[run_id] = config_key(json.loads((self.root / run_id / "config.json").read_text()))
            except (OSError, json.JSONDecodeError):
                return None
        return self._config_keys[run_id]

    def _same_run(self, cfg: TrainConfig) -> str | None:
        """The queued, running or finished run of the same config, the oldest first (it is the one trained)."""
        key = config_key(cfg.to_dict())
        for run_id in self._run_ids():
            if self._config_key(run_id) == key and \
                    RunFolder(self.root / run_id).status().get("state") in (*ACTIVE_STATES, "finished"):
                return run_id
        return None

    def _join(self, run_id: str, owner: str | None) -> None:
        if owner is None:
            return
        sharing = self._sharing(run_id)
        if owner in sharing["left"]:
            sharing["left"].remove(owner)
        elif owner not in self._attached(run_id, RunFolder(self.root / run_id).status()):
            sharing["sharers"].append(owner)
        else:
            return
        self._write_sharing(run_id, sharing)

    def _detach(self, run_id: str, owner: str, others: int) -> str:
        sharing = self._sharing(run_id)
        sharing["left"].append(owner)
        self._write_sharing(run_id, sharing)
        return (f"You left the run; it goes on for the {_plural(others, 'other session')} that share"
                f"{'s' if others == 1 else ''} it.")

    # -- submitting ----------------------------------------------------------------------------------------------
    def _check_quota(self, owner) -> None:
        if owner is None or not self.max_per_owner:
            return
        mine = [r for r in self._run_ids() if RunFolder(self.root / r).status().get("state") in ACTIVE_STATES
                and self._holder(r) == owner]
        if len(mine) >= self.max_per_owner:
            raise TrainingError(f"You already have {_plural(len(mine), 'run')} queued or running, the limit of "
                                f"{self.max_per_owner} per session; wait for one to end, or stop one.")

    def submit(self, cfg: TrainConfig, owner: str | None = None, *, estimate_seconds: float | None = None,
               fresh: bool = False) -> str:
        """Queue ``cfg`` as a new run of ``owner`` (a session id) and start it if a slot is free; returns its id.
        A config identical to a queued, running or finished run's returns that run's id instead, ``owner`` among
        its sharers (``fresh``: a new run all the same). ``estimate_seconds``: how long the whole run should
        take (the page's measured estimate), for the expected starts of the runs queued behind it.
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
        if not fresh:  # before the model is built: a class submitting one preset builds it once
            with self._lock:
                same = self._same_run(cfg)
                if same is not None:
                    self._join(same, owner)
                    return same
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
                                 macs=macs, training_memory=None if memory is None else memory.total,
                                 estimate_seconds=estimate_seconds, train_images=_train_images(cfg))
            self._queue.append(run_id)
            self.poll()
            return run_id

    # -- the processes -------------------------------------------------------------------------------------------
    def _start(self, run_id: str) -> None:
        folder = RunFolder(self.root / run_id)
        # written before the start, so the worker's own status writes (pid, epochs) always come after it
        folder.update_status(state="running", pid=None, message="Starting its worker process.")
        try:
            self._processes[run_id] = self.backend.start(run_id, folder)
        except TrainingError as e:  # a sentence already (a Ray cluster that cannot be reached)
            folder.update_status(state="failed", ended=now(), message=str(e))
        except Exception as e:
            folder.update_status(state="failed", ended=now(), message=f"Its worker process could not start ({e}).")

    def running(self) -> list[str]:
        with self._lock:
            return list(self._processes) + list(self._foreign)

    def poll(self) -> None:
        """Reap ended workers (one that ended without saying how is marked interrupted), forget foreign workers
        that are gone, start queued runs while slots are free, and prune if ``max_bytes`` is set."""
        with self._lock:
            for run_id in list(self._processes):
                folder = RunFolder(self.root / run_id)
                self.backend.sync(run_id, folder)  # a remote worker's new metrics and status, into the folder
                if self.backend.alive(run_id):
                    continue
                _, how = self.backend.ended(run_id)
                self.backend.forget(run_id)
                del self._processes[run_id]
                if folder.status().get("state") in ACTIVE_STATES:
                    self._mark_interrupted(folder, f"its worker process ended unexpectedly ({how})")
            for run_id, pid in list(self._foreign.items()):
                if not pid_alive(pid):
                    del self._foreign[run_id]
                    folder = RunFolder(self.root / run_id)
                    if folder.status().get("state") in ACTIVE_STATES:
                        self._mark_interrupted(folder, "its worker process ended unexpectedly")
            while self._queue and len(self._processes) + len(self._foreign) < self.max_concurrent:
                run_id = self._next_queued()  # fair over owners: see `queue_order`
                if run_id is None:
                    break  # every waiting owner already runs its share of the slots
                self._start(run_id)
            if self.max_bytes is not None:
                self.last_prune = self.prune(self.max_bytes)
                if self.last_prune.removed:
                    self.last_removal = self.last_prune

    def queue_order(self) -> list[str]:
        """The queued runs in the order they will start: each next one from the owner with the fewest runs
        running (or ahead in this order), ties by whose first waiting run has waited longest; FIFO per owner."""
        with self._lock:
            counts: dict = {}
            for run_id in self.running():
                holder = self._holder(run_id)
                counts[holder] = counts.get(holder, 0) + 1
            waiting: dict = {}
            queued_at = {}
            for run_id in self._queue:
                waiting.setdefault(self._holder(run_id), []).append(run_id)
                queued_at[run_id] = RunFolder(self.root / run_id).status().get("queued_at") or 0
            order = []
            while waiting:
                who = min(waiting, key=lambda o: (counts.get(o, 0), queued_at[waiting[o][0]], waiting[o][0]))
                order.append(waiting[who].pop(0))
                counts[who] = counts.get(who, 0) + 1
                if not waiting[who]:
                    del waiting[who]
            return order

    def _next_queued(self) -> str | None:
        """Take the next run of `queue_order` off the queue, or None when its owner already runs
        ``max_running_per_owner`` (then every waiting owner does)."""
        order = self.queue_order()
        if not order:
            return None
        holder = self._holder(order[0])
        if holder is not None and sum(self._holder(r) == holder for r in self.running()) >= self.max_running_per_owner:
            return None
        self._queue.remove(order[0])
        return order[0]

    def _measured_rate(self) -> float | None:
        """MACs × images per second that finished runs trained at (their last epochs), re-read every 30 s."""
        if self._rate is not None and time.monotonic() - self._rate[0] < 30:
            return self._rate[1]
        rates = []
        for run_id in self._run_ids():
            s = RunFolder(self.root / run_id).status()
            last = s.get("last_epoch") or {}
            if s.get("state") == "finished" and s.get("macs") and last.get("images_per_second"):
                rates.append(s["macs"] * last["images_per_second"])
        self._rate = (time.monotonic(), sum(rates) / len(rates) if rates else None)
        return self._rate[1]

    def _seconds_left(self, s: dict, running: bool) -> float | None:
        """How long a run still trains: epochs left × its last epoch's time (running), else its estimate, else
        MACs × images ÷ the measured rate; None when nothing can say."""
        epochs = s.get("epochs") or 0
        done = (s.get("epoch") or 0) if running else (s.get("checkpoint_epoch") or 0)
        left = max(0, epochs - done)
        last = s.get("last_epoch") or {}
        if running and last.get("epoch_seconds"):
            return left * last["epoch_seconds"]
        if s.get("estimate_seconds") and epochs:
            return s["estimate_seconds"] * left / epochs
        rate = self._measured_rate()
        if rate and s.get("macs") and s.get("train_images"):
            return s["macs"] * s["train_images"] * left / rate
        return None

    def _schedule(self) -> dict[str, tuple[int, float | None]]:
        """Queued run id -> (position, seconds until it is expected to start or None): the runs of
        `queue_order` given to the slot that frees first."""
        order = self.queue_order()
        free: list[float | None] = [self._seconds_left(RunFolder(self.root / r).status(), True)
                                    for r in self.running()]
        free += [0.0] * max(0, self.max_concurrent - len(free))
        out = {}
        for position, run_id in enumerate(order, 1):
            if any(t is None for t in free):
                out[run_id] = (position, None)
                continue
            i = min(range(len(free)), key=free.__getitem__)
            start = free[i]
            out[run_id] = (position, start)
            took = self._seconds_left(RunFolder(self.root / run_id).status(), False)
            free[i] = None if took is None else start + took
        return out

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
    def status(self, run_id: str, _schedule: dict | None = None) -> dict:
        """status.json, with ``queue_position`` (1 = next to start, in `queue_order`) and ``expected_start``
        (seconds from now, None when unknown) for a queued run, ``owner`` (whose quota it counts in) and
        ``sharers`` (the other sessions it is trained for), ``requested`` ("stop" / "pause") while a request
        waits for the worker, and the worker's pid."""
        with self._lock:
            folder = self._folder(run_id)
            status = folder.status()
            status["run_id"] = run_id
            attached = self._attached(run_id, status)
            if attached:
                status["owner"], status["sharers"] = attached[0], attached[1:]
            else:
                status["sharers"] = []
            if run_id in self._queue:
                schedule = _schedule if _schedule is not None else self._schedule()
                status["queue_position"], status["expected_start"] = schedule.get(run_id, (None, None))
            if run_id in self._processes and status.get("pid") is None:
                status["pid"] = self._processes[run_id].pid
            for what in ("stop", "pause"):
                if status.get("state") == "running" and folder.request_path(what).exists():
                    status["requested"] = what
            return status

    def list(self, owner: str | None = None) -> list[dict]:
        """Every run's status (an owner's only, if given), the newest first."""
        with self._lock:
            schedule = self._schedule() if self._queue else {}
            out = [self.status(run_id, schedule) for run_id in self._run_ids()]
            out = [s for s in out if owner is None or s.get("owner") == owner or owner in s.get("sharers", ())]
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
        if owner is not None and owner not in self._attached(folder.run_id, folder.status()):
            raise TrainingError(f"The run {folder.run_id} belongs to another session, so it is shown read-only; "
                                "start a run of your own to stop, pause or resume it.")

    def _shared_by_others(self, folder: RunFolder, owner: str | None) -> int:
        if owner is None:
            return 0
        return len([p for p in self._attached(folder.run_id, folder.status()) if p != owner])

    def stop(self, run_id: str, owner: str | None = None, *, teacher: bool = False) -> str:
        """Stop a run: a running one after its current step (its model so far becomes final, its last checkpoint
        stays); a queued, paused or interrupted one at once. With ``owner``, only that owner's run (as pause and
        resume); one that other sessions share goes on for them, without ``owner``. ``teacher``: any run, for
        every session. Returns a sentence."""
        with self._lock:
            folder = self._folder(run_id)
            if teacher:
                owner = None
            self._check_owner(folder, owner)
            state = folder.status().get("state")
            others = self._shared_by_others(folder, owner)
            if others and state in (*ACTIVE_STATES, "paused", "interrupted"):
                return self._detach(run_id, owner, others)
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
            others = self._shared_by_others(folder, owner)
            if others and state == "running":
                return self._detach(run_id, owner, others)
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
            self._check_quota(self._holder(run_id))
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
