"""A run backend on a Ray cluster: each run is a Ray job whose log streams its run folder back.

    export EXPLORER_RAY_ADDRESS=http://head:8265     # the cluster's dashboard; `RunManager` then uses this backend
    export EXPLORER_RAY_GPUS=0.25                    # optional: the GPU share each run asks for (default 0)

`RayJobsBackend.start` submits the job ``python -m explorer.training.worker <run id> --stream`` with, as its
runtime environment, a working directory holding a copy of the run's config.json, status.json and (to resume)
checkpoint.safetensors, and a copy of the ``explorer`` package beside the ``assets`` folder it reads (the shipped
weights; so not as a py_module, which Ray unpacks alone) — the cluster needs torch and torchvision and nothing of
ours. It asks for the run's torch threads as CPUs and ``$EXPLORER_RAY_GPUS`` as GPUs (Ray sets
CUDA_VISIBLE_DEVICES, so the worker's ``choose_device("auto")`` finds the GPU the job got).

The worker prints every change it makes to its folder as an ``@@explorer`` line (see `worker`); `sync` reads the
job's log from where it stopped last time and replays those lines into the local run folder (`apply_stream`):
metrics lines are appended as the local worker writes them, so metrics.jsonl is the same file, status updates
are applied (without the remote pid), files (samples, checkpoints, result, final weights) are written whole once
their last chunk arrived. The log's other lines go to the local worker.log. No shared filesystem is needed.

A stop or pause request file cannot reach a remote worker, so `sync` answers one with Ray's ``stop_job``: the
worker gets SIGTERM and stops after its current step (a pause stops too; its checkpoint is kept, so resume
continues from it). A job that Ray stopped or that failed before the worker could say so is marked ``stopped``
or ``failed`` here with the epochs done. Ray is imported only when this backend is used.
"""
from __future__ import annotations

import base64
import dataclasses
import json
import os
import pathlib
import shutil
import tempfile
import time

from .errors import TrainingError
from .runfolder import ACTIVE_STATES, RunFolder, now

__all__ = ["RayJobsBackend", "ADDRESS_ENV", "GPUS_ENV", "apply_stream", "StreamState"]

ADDRESS_ENV = "EXPLORER_RAY_ADDRESS"  # the Ray dashboard, e.g. http://127.0.0.1:8265; unset: local processes
GPUS_ENV = "EXPLORER_RAY_GPUS"  # the GPU share a run asks for, e.g. 0.25; default 0
_PREFIX = "@@explorer "  # worker.STREAM_PREFIX (not imported: the worker module imports torch)
_STAGED = ("config.json", "status.json", "checkpoint.safetensors")  # what a job takes along
_FILES = ("samples.json", "checkpoint.safetensors", "final.safetensors", "last_finite.safetensors", "result.json")


def _gpus_from_env() -> float:
    raw = os.environ.get(GPUS_ENV, "").strip()
    try:
        value = float(raw) if raw else 0.0
    except ValueError:
        raise TrainingError(f"{GPUS_ENV} is {raw!r}, not a number; set it to the share of a GPU each run asks "
                            "for, such as 0.25, or unset it for none.") from None
    if value < 0:
        raise TrainingError(f"{GPUS_ENV} is {raw!r}; set it to a share of a GPU of 0 or more, such as 0.25.")
    return value


def _write_atomic(path: pathlib.Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


@dataclasses.dataclass
class StreamState:
    """How far a job's log has been replayed: characters read, and the chunks of files still arriving."""
    offset: int = 0
    chunks: dict = dataclasses.field(default_factory=dict)  # file name -> list of base64 chunks so far


def apply_stream(text: str, folder: RunFolder, state: StreamState) -> None:
    """Replay the complete lines of ``text[state.offset:]`` (a job's log) into ``folder``; advances the offset
    past the last complete line, so a line still being written is read next time."""
    end = text.rfind("\n", state.offset) + 1
    if end <= state.offset:
        return
    lines, state.offset = text[state.offset:end].splitlines(), end
    plain = []
    for raw in lines:
        if not raw.startswith(_PREFIX):
            plain.append(raw)
            continue
        try:
            message = json.loads(raw[len(_PREFIX):])
            name = message["file"]
        except (json.JSONDecodeError, KeyError, TypeError):
            plain.append(raw)
            continue
        if name == folder.metrics_path.name and "line" in message:
            folder.append_metrics(message["line"])
        elif name == folder.metrics_path.name and "keep_through" in message:
            folder.keep_metrics_through(message["keep_through"])
        elif name == folder.status_path.name:
            changes = dict(message.get("update") or {})
            if "pid" in changes:  # a process on another machine: never this server's to signal
                changes["remote_pid"] = changes.pop("pid")
            folder.update_status(**changes)
        elif name in _FILES and message.get("remove"):
            (folder.path / name).unlink(missing_ok=True)
            state.chunks.pop(name, None)
        elif name in _FILES and "base64" in message:
            parts = state.chunks.setdefault(name, [])
            if message.get("chunk") == 0:  # a file written again before its last copy was complete
                parts.clear()
            parts.append(message["base64"])
            if len(parts) == message.get("chunks"):
                _write_atomic(folder.path / name, base64.b64decode("".join(state.chunks.pop(name))))
        else:
            plain.append(raw)
    if plain:
        with open(folder.log_path, "a") as log:
            log.write("\n".join(plain) + "\n")


@dataclasses.dataclass
class RayJob:
    """A run this backend submitted: its Ray submission id and how far its log was replayed."""
    submission_id: str
    folder: RunFolder
    stream: StreamState = dataclasses.field(default_factory=StreamState)
    asked: str | None = None  # "stop" or "pause": the request answered with stop_job
    pid = None  # the manager's status shows a local pid; a job has none here


class RayJobsBackend:
    """Runs as Ray jobs on the cluster whose dashboard is at ``address`` (see the module docstring)."""

    name = "ray"

    def __init__(self, address: str | None = None, gpus: float | None = None):
        self.address = (address or os.environ.get(ADDRESS_ENV, "")).strip()
        if not self.address:
            raise TrainingError(f"The Ray backend needs the address of a Ray cluster's dashboard; set {ADDRESS_ENV}, "
                                "for example to http://127.0.0.1:8265.")
        self.gpus = _gpus_from_env() if gpus is None else float(gpus)
        self._client = None
        self._jobs: dict[str, RayJob] = {}

    def _unreachable(self, why: str) -> TrainingError:
        return TrainingError(f"The Ray cluster at {self.address} cannot be reached ({why}); start one with "
                             "`ray start --head --dashboard-port 8265` on its head node, or unset "
                             f"{ADDRESS_ENV} to train on this server.")

    def client(self):
        """The JobSubmissionClient (connected on first use); refused with a sentence when the cluster is away."""
        if self._client is None:
            try:
                from ray.job_submission import JobSubmissionClient
            except ImportError:
                raise TrainingError(f"{ADDRESS_ENV} is set but Ray is not installed; install it with "
                                    "`pip install 'ray[default]>=2.60'`, or unset it to train on this server.") from None
            try:
                self._client = JobSubmissionClient(self.address)
            except Exception as e:  # ConnectionError, a wrong scheme, a server that is not Ray's
                raise self._unreachable(f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}") \
                    from None
        return self._client

    def check(self) -> None:
        """Raise the sentence of `client` when the cluster cannot be reached (before a run is queued)."""
        self.client()

    # -- the backend interface of `jobs.RunManager` ------------------------------------------------------------
    def start(self, run_id: str, folder: RunFolder) -> RayJob:
        """Submit the run as a job; raises TrainingError with a sentence when the cluster cannot take it."""
        import explorer

        client = self.client()
        cfg = folder.config()
        threads = cfg.threads or 1
        staging = pathlib.Path(tempfile.mkdtemp(prefix="explorer-ray-"))
        try:
            (staging / run_id).mkdir()
            for name in _STAGED:
                if (folder.path / name).exists():
                    shutil.copy2(folder.path / name, staging / run_id / name)
            package = pathlib.Path(explorer.__file__).resolve().parent
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
            shutil.copytree(package, staging / "explorer", ignore=ignore)
            if (package.parent / "assets").is_dir():
                shutil.copytree(package.parent / "assets", staging / "assets", ignore=ignore)
            submission_id = f"explorer-{run_id}-{int(time.time() * 1000) % 10**9:09d}"  # a resume is a new job
            runtime_env = {"working_dir": str(staging),  # the job's cwd: `python -m explorer…` finds it there
                           "env_vars": {"OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}}
            try:
                client.submit_job(entrypoint=f"python -m explorer.training.worker {run_id} --stream",
                                  submission_id=submission_id, runtime_env=runtime_env,
                                  entrypoint_num_cpus=threads, entrypoint_num_gpus=self.gpus or None,
                                  metadata={"explorer_run": run_id})
            except Exception as e:
                if type(e).__name__ in ("ConnectionError", "ConnectTimeout", "ReadTimeout"):
                    raise self._unreachable(type(e).__name__) from None
                raise TrainingError(f"The Ray cluster at {self.address} refused the job ({type(e).__name__}: "
                                    f"{str(e)[:200]}).") from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        folder.update_status(ray_job=submission_id, ray_address=self.address,
                             message=f"Submitted to the Ray cluster at {self.address} as {submission_id}.")
        job = self._jobs[run_id] = RayJob(submission_id, folder)
        return job

    def _status(self, job: RayJob) -> str | None:
        try:
            return str(self.client().get_job_status(job.submission_id).value)
        except Exception:  # the cluster went away: the job is lost with it
            return None

    def alive(self, run_id: str) -> bool:
        return self._status(self._jobs[run_id]) in ("PENDING", "RUNNING")

    def sync(self, run_id: str, folder: RunFolder | None = None) -> None:
        """Replay the job's new log lines into the run folder; answer a stop or pause request with stop_job."""
        job = self._jobs[run_id]
        folder = folder or job.folder
        try:
            text = self.client().get_job_logs(job.submission_id)
        except Exception:
            return  # read again at the next poll
        apply_stream(text, folder, job.stream)
        if job.asked is None:
            for what in ("stop", "pause"):
                if folder.request_path(what).exists():
                    job.asked = what
                    self.stop(run_id)
                    break

    def ended(self, run_id: str) -> tuple[int | None, str]:
        """After the job ended: the last of its log replayed, and a run the worker did not end marked stopped
        (Ray stopped it) or failed; the driver's exit code and how it ended, in words."""
        job = self._jobs[run_id]
        self.sync(run_id)
        folder = job.folder
        try:
            info = self.client().get_job_info(job.submission_id)
        except Exception as e:
            return None, f"the Ray cluster at {self.address} could not be reached ({type(e).__name__})"
        code, state = info.driver_exit_code, str(info.status.value)
        status = folder.status()
        epoch = status.get("epoch") or 0
        kept = status.get("checkpoint_epoch")
        if status.get("state") in ACTIVE_STATES and state == "STOPPED":
            folder.update_status(state="stopped", ended=now(), epoch=epoch,
                                 message=f"Stopped on the Ray cluster after {epoch} of {status.get('epochs')} "
                                         "epochs; " + (f"its checkpoint of epoch {kept} is kept." if kept else
                                                       "no epoch was complete."))
        elif status.get("state") in ACTIVE_STATES and state == "FAILED":
            why = (info.message or "").strip().splitlines()
            reason = (why[-1] if why else "no reason given")[:200]
            folder.update_status(state="failed", ended=now(),
                                 message=f"Its Ray job {job.submission_id} failed ({reason}); its worker.log has the "
                                         "job's output.")
        for what in ("stop", "pause"):
            folder.request_path(what).unlink(missing_ok=True)
        return code, f"Ray job {job.submission_id} {state.lower()}, exit code {code}"

    def stop(self, run_id: str) -> None:
        """Ask Ray to stop the job: SIGTERM (the worker stops after its step), SIGKILL a few seconds later."""
        try:
            self.client().stop_job(self._jobs[run_id].submission_id)
        except Exception:
            pass  # already ended, or the cluster is gone; `ended` says which

    def forget(self, run_id: str) -> None:
        self._jobs.pop(run_id, None)
