"""One run in its own process: ``python -m explorer.training.worker FOLDER`` (`main`) is what a `RunManager` starts;
`run(folder)` is the work.

The worker reads the folder's config.json, trains with `train`, appends every step and epoch to metrics.jsonl,
writes status.json at the start, after every epoch and at the end, and a checkpoint after every complete epoch
(only while the weights are finite). It honours requests written into the folder, checked after every step:

- ``stop``: stop now; the model as it is becomes final.safetensors (with its test metrics), status ``stopped``;
  the last complete epoch's checkpoint stays, so the run can still be resumed.
- after every epoch, the predictions on a fixed set of validation images go to samples.json (replaced whole).
- ``pause``: finish the current epoch, checkpoint it, status ``paused``, exit. A pause file holding ``now`` stops
  after the current step instead; the part-epoch is dropped and a resume runs that epoch again.

When the folder holds a checkpoint the run resumes from it (metrics after its epoch are dropped first), so a
resumed run ends exactly as an uninterrupted one. `run` can be called in process too (tests); `main` adds what
only a process of its own should do: its output into worker.log.

``python -m explorer.training.worker <folder> --stream`` is the entrypoint of a Ray job (`ray_jobs`): the same
run, in a folder on the cluster, that also prints every change it makes to that folder on stdout as one
``@@explorer {json}`` line each — a metrics line, a status update, a file written (base64 in chunks: samples,
checkpoints, result, final weights) or removed — so the job's log carries the whole folder back to a server
without a shared filesystem (`ray_jobs.apply_stream` replays it). There a stop request arrives as SIGTERM (Ray's
``stop_job``), which becomes a stop request file: the run stops after its current step and hands its model back.
"""
from __future__ import annotations

import base64
import json
import os
import pathlib
import signal
import sys
import traceback

from .errors import TrainingError
from .runfolder import RunFolder, load_checkpoint, now, save_checkpoint, save_state, write_json_atomic

__all__ = ["main", "run", "stream_main", "STREAM_PREFIX"]

STREAM_PREFIX = "@@explorer "  # a line of the job's log that carries a change of the run folder
STREAM_CHUNK = 1 << 16  # base64 characters per line: a few MB of weights is a few dozen lines
WORKER_NICE = 10  # a local worker's niceness (os.nice): the server's pages come first, training takes the rest


class _Paused(Exception):
    """Raised from the checkpoint callback to leave the loop after a complete epoch was saved."""


def _finite(state: dict) -> bool:
    import torch

    return all(bool(torch.isfinite(v).all()) for v in state.values() if v.is_floating_point())


def _emit(message: dict) -> None:
    sys.stdout.write(STREAM_PREFIX + json.dumps(message, allow_nan=True) + "\n")
    sys.stdout.flush()


class _StreamingFolder(RunFolder):
    """A run folder that also prints each change it makes on stdout (see the module docstring)."""

    def append_metrics(self, line: dict) -> None:
        super().append_metrics(line)
        _emit({"file": self.metrics_path.name, "line": line})

    def keep_metrics_through(self, epoch: int) -> None:
        super().keep_metrics_through(epoch)
        _emit({"file": self.metrics_path.name, "keep_through": epoch})

    def update_status(self, **changes) -> dict:
        status = super().update_status(**changes)
        _emit({"file": self.status_path.name, "update": changes})
        return status

    def write_samples(self, epoch: int, samples: list[dict]) -> None:
        super().write_samples(epoch, samples)
        self.wrote(self.samples_path)

    def wrote(self, path: pathlib.Path) -> None:
        text = base64.b64encode(path.read_bytes()).decode("ascii")
        chunks = [text[i:i + STREAM_CHUNK] for i in range(0, len(text), STREAM_CHUNK)] or [""]
        for i, chunk in enumerate(chunks):
            _emit({"file": path.name, "chunk": i, "chunks": len(chunks), "base64": chunk})

    def removed(self, path: pathlib.Path) -> None:
        _emit({"file": path.name, "remove": True})


def _wrote(runs: RunFolder, path: pathlib.Path) -> None:
    if isinstance(runs, _StreamingFolder):
        runs.wrote(path)


def run(folder: str | os.PathLike, stream: bool = False) -> str:
    """Train the run in ``folder``; returns the state it ended in (finished, stopped, paused or failed). With
    ``stream``, every change to the folder is also printed on stdout (`stream_main`)."""
    from .loop import train

    runs = _StreamingFolder(folder) if stream else RunFolder(folder)
    started = now()
    try:
        cfg = runs.config()
    except TrainingError as e:
        runs.update_status(state="failed", ended=now(), message=str(e), pid=os.getpid())
        return "failed"
    resume = None
    if runs.checkpoint_path.exists():
        try:
            resume = load_checkpoint(runs.checkpoint_path)
        except Exception as e:  # not by our atomic writes; by hand or a full disk: say so rather than start over
            runs.update_status(state="failed", ended=now(),
                               message=f"Its checkpoint could not be read ({type(e).__name__}: {str(e)[:120]}); "
                                       "delete checkpoint.safetensors from its folder to start it again.")
            return "failed"
        runs.keep_metrics_through(resume["epoch"])
    else:
        runs.keep_metrics_through(0)
    for leftover in (runs.final_path, runs.result_path, runs.last_finite_path):
        leftover.unlink(missing_ok=True)  # a resumed stopped run ends anew
        if stream:
            runs.removed(leftover)
    runs.update_status(state="running", pid=os.getpid(), started=started, ended=None, message="",
                       epoch=resume["epoch"] if resume else 0, epochs=cfg.epochs,
                       resumed_from=resume["epoch"] if resume else None,
                       first_started=runs.status().get("first_started") or started)

    stop_file, pause_file = runs.request_path("stop"), runs.request_path("pause")

    def pause_now() -> bool:
        try:
            return pause_file.read_text().strip() == "now"
        except FileNotFoundError:
            return False

    def on_batch(row: dict) -> None:
        runs.append_metrics({"kind": "batch", **{k: v for k, v in row.items() if k != "lrs"}})

    def on_epoch(row: dict) -> None:
        runs.append_metrics({"kind": "epoch", **row})
        runs.update_status(epoch=row["epoch"], last_epoch=row)

    def on_checkpoint(state: dict) -> None:
        if _finite(state["model"]):  # a NaN run keeps the last finite checkpoint
            save_checkpoint(runs.checkpoint_path, state)
            _wrote(runs, runs.checkpoint_path)
            runs.update_status(checkpoint_epoch=state["epoch"])
        if pause_file.exists():
            raise _Paused(state["epoch"])

    asked: list[str] = []  # what made the loop stop after a step: "stop" or "pause"

    def on_samples(epoch: int, samples: list[dict]) -> None:
        runs.write_samples(epoch, samples)

    def should_stop() -> bool:
        if stop_file.exists():
            asked.append("stop")
        elif pause_now():
            asked.append("pause")
        return bool(asked)

    try:
        result = train(cfg, on_batch=on_batch, on_epoch=on_epoch, should_stop=should_stop,
                       on_checkpoint=on_checkpoint, on_samples=on_samples, resume=resume)
    except _Paused as p:
        pause_file.unlink(missing_ok=True)
        runs.update_status(state="paused", ended=now(),
                           message=f"Paused after epoch {p.args[0]} of {cfg.epochs}; resume continues with the next.")
        return "paused"
    except TrainingError as e:
        if e.last_state is not None:
            save_state(runs.last_finite_path, e.last_state)
            _wrote(runs, runs.last_finite_path)
        runs.update_status(state="failed", ended=now(), message=str(e))
        return "failed"
    except Exception as e:  # a fault of the explorer, not of the config: say so, keep the traceback in the log
        traceback.print_exc()
        runs.update_status(state="failed", ended=now(),
                           message=f"The run failed with an error in the explorer ({type(e).__name__}: "
                                   f"{str(e)[:200]}); its worker.log has the details.")
        return "failed"

    if asked and asked[0] == "pause":
        pause_file.unlink(missing_ok=True)
        epoch = load_checkpoint(runs.checkpoint_path)["epoch"] if runs.checkpoint_path.exists() else 0
        runs.keep_metrics_through(epoch)
        runs.update_status(state="paused", ended=now(), epoch=epoch,
                           message=f"Paused during epoch {epoch + 1}; resume runs it again from the start.")
        return "paused"
    save_state(runs.final_path, result.state_dict(), {"network": json.dumps(cfg.to_dict()["network"]),
                                                      "dataset": result.dataset.name})
    _wrote(runs, runs.final_path)
    state = "stopped" if asked else "finished"
    test = {k: v for k, v in result.test.items() if k != "pairs"}
    write_json_atomic(runs.result_path, {
        "test": test, "pairs": result.test.get("pairs"), "notes": result.notes, "stopped": result.stopped,
        "device": result.device, "seconds": result.seconds, "epochs_run": result.epochs_run,
        "trainable_parameters": result.trainable_parameters, "total_parameters": result.total_parameters,
        "pretrained": result.pretrained, "dataset": result.dataset.name})
    _wrote(runs, runs.result_path)
    stop_file.unlink(missing_ok=True)
    score = (f"test mIoU {test['miou']:.1%}, pixel accuracy {test['pixel_accuracy']:.1%}" if "miou" in test else
             f"test accuracy {test['accuracy']:.1%}" if "accuracy" in test else
             f"test MAE {test['mae']:.3g}" if "mae" in test else "")
    # result.stopped says where ("stopped on request during epoch 3, after batch 2"); after the last step: nothing
    where = result.stopped or "stopped on request after its last step"
    message = (f"{where[0].upper()}{where[1:]}; {score}." if state == "stopped" else
               f"Finished {result.epochs_run} epoch{'s' if result.epochs_run != 1 else ''}; {score}.")
    runs.update_status(state=state, ended=now(), message=message, epoch=result.epochs_run,
                       test={k: v for k, v in test.items() if k != "confusion"})
    return state


def main(folder: str) -> None:
    """The worker process's entry point (`LocalProcessBackend`): its output goes to the run's worker.log."""
    path = pathlib.Path(folder)
    log = open(path / "worker.log", "a", buffering=1)
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    sys.stdout = sys.stderr = log
    try:  # below the server: a page a student clicks waits less for a run, which still gets every idle cycle
        os.nice(WORKER_NICE)
    except OSError:
        pass
    print(f"worker {os.getpid()} for {path.name}, nice {os.nice(0)}", flush=True)
    import torch

    try:  # one inter-op thread; the intra-op threads are the config's (`train` sets them)
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    state = run(path)
    print(f"worker {os.getpid()} ended: {state}", flush=True)


def stream_main(folder: str) -> None:
    """A Ray job's entrypoint: the run in ``folder`` (in the job's working directory), streamed on stdout."""
    path = pathlib.Path(folder)
    # Ray's stop_job sends SIGTERM (SIGKILL a few seconds later): stop after the current step, as a stop request
    signal.signal(signal.SIGTERM, lambda *_: RunFolder(path).request_path("stop").write_text("stop"))
    print(f"worker {os.getpid()} for {path.name}", flush=True)
    import torch

    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    state = run(path, stream=True)
    print(f"worker {os.getpid()} ended: {state}", flush=True)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m explorer.training.worker",
                                     description="Train the run whose config.json is in FOLDER.")
    parser.add_argument("folder")
    parser.add_argument("--stream", action="store_true",
                        help="also print every change to the folder on stdout (a Ray job's entrypoint)")
    args = parser.parse_args()
    stream_main(args.folder) if args.stream else main(args.folder)
