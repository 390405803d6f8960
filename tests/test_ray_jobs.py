"""The Ray Jobs backend (explorer.training.ray_jobs) against a local Ray head that the tests start and end.

The head (`ray start --head --block`, its own process group, every port free, a temp dir) gives the Jobs API on
its dashboard; a run submitted through `RunManager(root, backend=RayJobsBackend(address))` must end with the
same metrics.jsonl as the same config run by the local-process backend (timing fields aside), the same test
metrics, and final weights that load; a stopped job must end "stopped".
"""
from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest
import torch
from safetensors.torch import load_file

ray = pytest.importorskip("ray", reason="ray[default] is not installed (requirements-dev.txt)")

from explorer.training import TrainConfig, TrainingError  # noqa: E402
from explorer.training.jobs import RunManager  # noqa: E402
from explorer.training.ray_jobs import RayJobsBackend, StreamState, apply_stream  # noqa: E402
from explorer.training.runfolder import RunFolder, load_checkpoint  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.training]

TIMEOUT = 150  # seconds: a job's runtime env is uploaded and its interpreter imports torch on a loaded machine
TIME_KEYS = ("train_seconds", "images_per_second", "epoch_seconds", "seconds")  # the only fields that may differ


def _cfg(**changes) -> TrainConfig:
    base = dict(network="lenet5", dataset="digits", epochs=2, train_samples=64, batch_size=32, seed=0, threads=1)
    return TrainConfig(**{**base, **changes})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_address():
    """A local Ray head with its dashboard (the Jobs API); ended, with every process it started, afterwards."""
    temp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths must stay under 108 bytes
    dashboard = _free_port()
    bin_dir = pathlib.Path(sys.executable).parent
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
           "RAY_JOB_STOP_WAIT_TIME_S": "20"}
    ports = ["--port", _free_port(), "--dashboard-port", dashboard, "--ray-client-server-port", _free_port(),
             "--dashboard-agent-listen-port", _free_port(), "--dashboard-agent-grpc-port", _free_port(),
             "--metrics-export-port", _free_port(), "--node-manager-port", _free_port(),
             "--object-manager-port", _free_port(), "--runtime-env-agent-port", _free_port()]
    head = subprocess.Popen([str(bin_dir / "ray"), "start", "--head", "--block", "--num-cpus", "2",
                             "--include-dashboard", "true", "--dashboard-host", "127.0.0.1",
                             "--disable-usage-stats", "--object-store-memory", str(100 * 2**20), "--temp-dir", temp,
                             *map(str, ports)], env=env, start_new_session=True,
                            stdout=open(pathlib.Path(temp) / "head.log", "w"), stderr=subprocess.STDOUT)
    address = f"http://127.0.0.1:{dashboard}"
    try:
        from ray.job_submission import JobSubmissionClient

        deadline = time.monotonic() + 90
        while True:
            try:
                JobSubmissionClient(address).list_jobs()
                break
            except Exception:
                if head.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the Ray head did not serve its Jobs API: {(pathlib.Path(temp) / 'head.log').read_text()}")
                time.sleep(1)
        yield address
    finally:
        for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
            try:
                os.killpg(head.pid, sig)
            except ProcessLookupError:
                break
            try:
                head.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue


def _wait(manager: RunManager, run_id: str) -> dict:
    status = manager.wait(run_id, TIMEOUT, interval=0.5)
    if status["state"] in ("queued", "running"):
        log = manager.folder(run_id) / "worker.log"
        pytest.fail(f"run {run_id} still {status['state']} after {TIMEOUT} s; its log: "
                    f"{log.read_text() if log.exists() else '(none)'}")
    return status


def _timeless(rows):
    return [{k: v for k, v in r.items() if k not in TIME_KEYS} for r in rows]


def test_a_ray_job_ends_with_the_metrics_result_and_weights_of_a_local_run(ray_address, tmp_path):
    remote = RunManager(tmp_path / "ray", backend=RayJobsBackend(ray_address))
    local = RunManager(tmp_path / "local")
    ray_run = remote.submit(_cfg())
    local_run = local.submit(_cfg())
    assert remote.status(ray_run)["ray_job"].startswith(f"explorer-{ray_run}-")
    ray_status, local_status = _wait(remote, ray_run), _wait(local, local_run)
    assert (ray_status["state"], local_status["state"]) == ("finished", "finished"), ray_status["message"]
    assert ray_status["message"] == local_status["message"]  # "Finished 2 epochs; test accuracy …"
    assert ray_status["epoch"] == 2 and ray_status.get("pid") is None and ray_status["remote_pid"] > 0

    ray_rows, local_rows = remote.metrics(ray_run), local.metrics(local_run)
    assert [r["kind"] for r in ray_rows] == [r["kind"] for r in local_rows]
    assert [r["epoch"] for r in ray_rows if r["kind"] == "epoch"] == [1, 2]
    assert len([r for r in ray_rows if r["kind"] == "batch"]) == 4  # 64 images in batches of 32, two epochs
    assert _timeless(ray_rows) == _timeless(local_rows)

    ray_result, local_result = remote.result(ray_run), local.result(local_run)
    assert ray_result["test"] == local_result["test"] and ray_result["pairs"] == local_result["pairs"]
    assert ray_result["epochs_run"] == 2 and ray_result["device"] == "cpu"
    assert remote.samples(ray_run) == local.samples(local_run)

    ray_weights = load_file(remote.folder(ray_run) / "final.safetensors")
    local_weights = load_file(local.folder(local_run) / "final.safetensors")
    assert ray_weights.keys() == local_weights.keys()
    assert all(torch.equal(ray_weights[k], local_weights[k]) for k in ray_weights)
    # the resumable checkpoint holds the same tensors and state (its history's timings aside: they also set the
    # length of the file's JSON header, so the files' bytes differ)
    ray_ckpt = load_checkpoint(remote.folder(ray_run) / "checkpoint.safetensors")
    local_ckpt = load_checkpoint(local.folder(local_run) / "checkpoint.safetensors")
    assert ray_ckpt["epoch"] == local_ckpt["epoch"] == 2
    assert all(torch.equal(ray_ckpt["model"][k], local_ckpt["model"][k]) for k in local_ckpt["model"])
    assert _timeless(ray_ckpt["history"]) == _timeless(local_ckpt["history"])
    for k, v in local_ckpt["optimizer"]["state"].items():
        assert all(torch.equal(v[n], ray_ckpt["optimizer"]["state"][k][n]) for n in v if torch.is_tensor(v[n]))
    assert "@@explorer" not in (remote.folder(ray_run) / "worker.log").read_text()  # the stream is replayed, not logged


def test_stopping_a_ray_job_ends_the_run_stopped(ray_address, tmp_path):
    remote = RunManager(tmp_path / "ray", backend=RayJobsBackend(ray_address))
    run_id = remote.submit(_cfg(epochs=30, train_samples=256))
    deadline = time.monotonic() + TIMEOUT
    while not remote.metrics(run_id, "batch"):  # the worker trains: the stop is answered by the worker itself
        assert time.monotonic() < deadline, "the Ray job trained no batch"
        remote.poll()
        time.sleep(0.5)
    assert remote.stop(run_id) == "The run stops after its current step."
    status = _wait(remote, run_id)
    assert status["state"] == "stopped", status["message"]
    assert status["epoch"] < 30
    assert status["message"].startswith("Stopped on request") or status["message"].startswith("Stopped on the Ray")
    assert not (remote.folder(run_id) / "stop").exists()
    assert remote.running() == []


def test_an_unreachable_cluster_is_refused_with_its_address(tmp_path):
    address = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    backend = RayJobsBackend(address)
    with pytest.raises(TrainingError, match=rf"^The Ray cluster at {address} cannot be reached .*ray start --head"):
        backend.check()
    manager = RunManager(tmp_path, backend=backend)
    status = manager.status(manager.submit(_cfg()))
    assert status["state"] == "failed" and status["message"].startswith(f"The Ray cluster at {address} cannot")


def test_a_stream_is_replayed_line_by_line_and_chunk_by_chunk(tmp_path):
    folder = RunFolder(tmp_path)
    folder.update_status(state="running", owner="me")
    weights = b"\x00\x01" * 10
    import base64
    text = base64.b64encode(weights).decode()
    lines = ["plain output",
             "@@explorer " + json.dumps({"file": "metrics.jsonl", "line": {"kind": "epoch", "epoch": 1, "loss": 0.5}}),
             "@@explorer " + json.dumps({"file": "status.json", "update": {"epoch": 1, "pid": 4242}}),
             "@@explorer " + json.dumps({"file": "final.safetensors", "chunk": 0, "chunks": 2, "base64": text[:8]}),
             "@@explorer " + json.dumps({"file": "final.safetensors", "chunk": 1, "chunks": 2, "base64": text[8:]})]
    state = StreamState()
    log = "\n".join(lines) + "\n"
    apply_stream(log[:-10], folder, state)  # the last line is still being written
    assert not folder.final_path.exists() and folder.metrics() == [{"kind": "epoch", "epoch": 1, "loss": 0.5}]
    apply_stream(log, folder, state)
    assert folder.final_path.read_bytes() == weights and state.offset == len(log)
    status = folder.status()
    assert (status["owner"], status["epoch"], status.get("pid"), status["remote_pid"]) == ("me", 1, None, 4242)
    assert folder.log_path.read_text() == "plain output\n"
    assert folder.metrics_path.read_text() == '{"kind": "epoch", "epoch": 1, "loss": 0.5}\n'
