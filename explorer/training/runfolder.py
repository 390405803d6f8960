"""The folder a run owns, and how each of its files is written and read (no streamlit, no processes).

    <root>/<run id>/
      config.json             the TrainConfig (`TrainConfig.to_dict`), written once at submission
      status.json             state, epoch, times, pid, message; always replaced whole (temp file + os.replace)
      metrics.jsonl           a JSON object a line: {"kind": "batch", ...} each step, {"kind": "epoch", ...} each epoch
      checkpoint.safetensors  the last complete epoch, resumable: model, optimiser and scheduler state, history
      final.safetensors       the trained model's state dict (finished or stopped runs)
      last_finite.safetensors the weights before a loss became NaN / infinite (failed runs)
      result.json             test metrics, notes, the (predicted, true) pair of every test image
      samples.json            the predictions on a fixed set of validation images after the last epoch, with the
                              images as small PNGs (base64)
      stop, pause             requests to the worker (their presence is the request)
      worker.log              what the worker process printed

Every file but metrics.jsonl and worker.log is replaced atomically, so a process killed at any moment leaves
each of them either as it was or as it became; metrics.jsonl may end in a partial line, which readers skip.
"""
from __future__ import annotations

import json
import os
import pathlib
import re
import tempfile
import time
from typing import Any

import torch

from .config import TrainConfig
from .errors import TrainingError

__all__ = ["RunFolder", "STATES", "ACTIVE_STATES", "RESUMABLE_STATES", "TERMINAL_STATES", "RUN_ID", "now",
           "write_json_atomic", "save_checkpoint", "load_checkpoint", "save_state", "pid_alive", "png_image"]

STATES = ("queued", "running", "paused", "stopped", "finished", "failed", "interrupted")
ACTIVE_STATES = ("queued", "running")
RESUMABLE_STATES = ("paused", "interrupted", "stopped")
TERMINAL_STATES = ("finished", "stopped", "failed")  # what `prune` may remove
RUN_ID = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{6}$")


def now() -> float:
    return round(time.time(), 3)


# -- atomic writes -----------------------------------------------------------------------------------------------
def _atomic(path: pathlib.Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with _quiet():
            os.unlink(tmp)
        raise


class _quiet:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return exc[0] is not None and issubclass(exc[0], OSError)


def write_json_atomic(path: pathlib.Path, data: Any) -> None:
    _atomic(path, lambda f: f.write(json.dumps(data, indent=1, allow_nan=True).encode()))


def _read_json(path: pathlib.Path) -> Any:
    return json.loads(path.read_text())


# -- checkpoints: tensors in safetensors, the rest as JSON in its metadata ---------------------------------------
def _encode(value, tensors: dict, prefix: str):
    """Plain JSON for a nested state (optimiser / scheduler state dicts, history); tensors are moved out into
    ``tensors`` by name. Tuples and non-string dict keys (the optimiser's parameter ids) are kept as such."""
    if isinstance(value, torch.Tensor):
        tensors[prefix] = value.detach().cpu().contiguous()
        return {"__tensor__": prefix}
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            return {k: _encode(v, tensors, f"{prefix}.{k}") for k, v in value.items()}
        return {"__items__": [[k, _encode(v, tensors, f"{prefix}.{k}")] for k, v in value.items()]}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, tensors, f"{prefix}.{i}") for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, tensors, f"{prefix}.{i}") for i, v in enumerate(value)]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot store a {type(value).__name__} in a checkpoint ({prefix})")


def _decode(value, tensors: dict):
    if isinstance(value, dict):
        if "__tensor__" in value:
            return tensors[value["__tensor__"]]
        if "__items__" in value:
            return {k: _decode(v, tensors) for k, v in value["__items__"]}
        if "__tuple__" in value:
            return tuple(_decode(v, tensors) for v in value["__tuple__"])
        return {k: _decode(v, tensors) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    return value


def save_checkpoint(path: pathlib.Path, state: dict) -> None:
    """The loop's resumable state (`fit`'s ``on_checkpoint``) as one safetensors file, written atomically."""
    from safetensors.torch import save

    tensors: dict = {}
    model = {k: v.detach().cpu().contiguous() for k, v in state["model"].items()}
    rest = _encode({k: v for k, v in state.items() if k != "model"}, tensors, "state")
    blob = save({**{"model." + k: v for k, v in model.items()}, **tensors},
                metadata={"checkpoint": json.dumps(rest, allow_nan=True), "format": "explorer-checkpoint-1"})
    _atomic(path, lambda f: f.write(blob))


def load_checkpoint(path: pathlib.Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if meta.get("format") != "explorer-checkpoint-1":
        raise TrainingError(f"{path.name} is not a checkpoint of a run of this explorer.")
    state = _decode(json.loads(meta["checkpoint"]), tensors)
    state["model"] = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    return state


def save_state(path: pathlib.Path, state_dict: dict, metadata: dict | None = None) -> None:
    """A model's state dict as safetensors (atomically); shared tensors are stored once each as a copy."""
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state_dict.items()}
    blob = save(tensors, metadata={k: str(v) for k, v in (metadata or {}).items()})
    _atomic(path, lambda f: f.write(blob))


def _png_base64(image) -> str:
    import base64
    import io

    import numpy as np
    from PIL import Image

    a = (np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0) * 255).round().astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(a).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def png_image(text: str):
    """A base64 PNG of `RunFolder.write_samples` as an array (H×W or H×W×3, uint8)."""
    import base64
    import io

    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(text))))


# -- processes ---------------------------------------------------------------------------------------------------
def pid_alive(pid: int | None) -> bool:
    """Whether a process with this id runs (a zombie — ended, not yet reaped — does not)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = pathlib.Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


# -- one run's folder --------------------------------------------------------------------------------------------
class RunFolder:
    """The files of one run, by name; reading never raises for a half-written metrics line."""

    def __init__(self, path: str | os.PathLike):
        self.path = pathlib.Path(path)
        self.run_id = self.path.name

    config_path = property(lambda self: self.path / "config.json")
    status_path = property(lambda self: self.path / "status.json")
    metrics_path = property(lambda self: self.path / "metrics.jsonl")
    checkpoint_path = property(lambda self: self.path / "checkpoint.safetensors")
    final_path = property(lambda self: self.path / "final.safetensors")
    last_finite_path = property(lambda self: self.path / "last_finite.safetensors")
    result_path = property(lambda self: self.path / "result.json")
    samples_path = property(lambda self: self.path / "samples.json")
    log_path = property(lambda self: self.path / "worker.log")

    def request_path(self, what: str) -> pathlib.Path:
        return self.path / what

    # config
    def write_config(self, cfg: TrainConfig) -> None:
        write_json_atomic(self.config_path, cfg.to_dict())

    def config(self) -> TrainConfig:
        return TrainConfig.from_dict(_read_json(self.config_path))

    # status
    def status(self) -> dict:
        try:
            return _read_json(self.status_path)
        except FileNotFoundError:
            return {"run_id": self.run_id, "state": "unknown", "message": "This run has no status file."}
        except (json.JSONDecodeError, OSError) as e:  # not by our writes (atomic); by hand, or a full disk
            return {"run_id": self.run_id, "state": "unknown", "message": f"Its status file is unreadable ({e})."}

    def update_status(self, **changes) -> dict:
        status = self.status()
        if status.get("state") == "unknown":
            status = {"run_id": self.run_id}
        status.update(changes, updated=now())
        write_json_atomic(self.status_path, status)
        return status

    # metrics
    def append_metrics(self, line: dict) -> None:
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(line, allow_nan=True) + "\n")

    def metrics(self) -> list[dict]:
        try:
            text = self.metrics_path.read_text()
        except FileNotFoundError:
            return []
        out = []
        for raw in text.splitlines():
            try:
                out.append(json.loads(raw))
            except json.JSONDecodeError:  # the last line of a process killed while writing it
                continue
        return out

    def keep_metrics_through(self, epoch: int) -> None:
        """Drop the lines after ``epoch`` (a part of an epoch that a resume runs again), atomically."""
        kept = [m for m in self.metrics() if m.get("epoch", 0) <= epoch]
        _atomic(self.metrics_path, lambda f: f.write("".join(json.dumps(m, allow_nan=True) + "\n"
                                                             for m in kept).encode()))

    # sample predictions
    def write_samples(self, epoch: int, samples: list[dict]) -> None:
        """`loop.sample_predictions` of ``epoch``, the images as PNG (base64), replaced whole."""
        pictures = {"image": "png", "truth_mask": "truth_png", "predicted_mask": "predicted_png"}  # segmentation
        rows = [{**{k: v for k, v in s.items() if k not in pictures},
                 **{png: _png_base64(s[k]) for k, png in pictures.items() if k in s}} for s in samples]
        write_json_atomic(self.samples_path, {"epoch": epoch, "samples": rows})

    def samples(self) -> dict | None:
        """{"epoch", "samples": [{"png", "truth", "predicted", "confidence", "correct", ...}]}, or None."""
        try:
            return _read_json(self.samples_path)
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def result(self) -> dict | None:
        try:
            return _read_json(self.result_path)
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def size(self) -> int:
        return sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())
