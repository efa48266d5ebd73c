"""The gunicorn process model: what the master imports, how workers start, fail, recycle and shut down."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from conftest import MODELS, LiveServer, jpeg_bytes, live_server_for, require
from factories import b64
from specks.config import Settings
from specks.service.holder import ModelHolder
from specks.tools.loadtest import LoadReport, RequestRecord, run_load
from specks.tools.server_process import child_pids
from specks.tools.yardstick import predict_body
from specks.web import server as server_module
from specks.web.server import SpecksServer, SpecksWorker, wait_for_model

# What `specks serve` runs in the gunicorn master before forking (cli.cmd_serve up to serve()).
MASTER_STEPS = """
import sys
from pathlib import Path
from specks.cli import build_parser, settings_from_args
from specks.service.memory import check_worker_memory, estimate_worker_memory
from specks.models import prepare_model
from specks.service.served import served_models
from specks.web.server import SpecksServer, prepare_metrics_dir

args = build_parser().parse_args(["serve", "--model", sys.argv[1], "--model", "second=" + sys.argv[1]])
settings = settings_from_args(args)
prepared = {spec.name: prepare_model(spec.path, Path(sys.argv[2])) for spec in served_models(settings)}
sizes = {name: model.onnx_path.stat().st_size for name, model in prepared.items()}
check_worker_memory(settings, estimate_worker_memory(settings, sizes))
prepare_metrics_dir()
SpecksServer(settings)
print("onnxruntime" in sys.modules)
"""


@pytest.mark.parametrize("model", ["yolov5n.onnx", "default"])
def test_the_gunicorn_master_never_imports_onnxruntime(model: str, tmp_path: Path) -> None:
    """ONNX Runtime starts a thread on import; a worker forked after that aborts at exit."""
    spec = str(require(MODELS / model)) if model.endswith(".onnx") else model
    result = subprocess.run(
        [sys.executable, "-c", MASTER_STEPS, spec, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False", f"{model}: the master imported onnxruntime"


def test_workers_exit_cleanly_on_sigterm(cache_dir: Path) -> None:
    server = live_server_for(MODELS / "yolov5n.onnx", cache_dir, workers=2)
    try:
        server.wait_until_all_workers_ready()
        for _ in range(4):  # reaches both workers in practice; either one aborted before the fix
            payload = json.dumps({"image": b64(jpeg_bytes(320, 240))})
            response = requests.post(
                server.url + "/predict", data=payload, headers={"Content-type": "application/json"}, timeout=30
            )
            assert response.status_code == 200
        server.process.terminate()
        assert server.process.wait(timeout=30) == 0
        output = server.output_tail(50_000)
    finally:
        server.stop()
    assert "Worker exiting" in output
    assert "terminate called" not in output
    assert "SIGABRT" not in output


# -- a starting worker takes no connection before its model is loaded ---------------------------


class SlowHolder:
    """A ModelHolder stand-in whose loading ends after ``load_s`` seconds."""

    def __init__(self, load_s: float) -> None:
        self.done_at = time.monotonic() + load_s

    def wait_loaded(self, timeout_s: float) -> bool:
        time.sleep(max(0.0, min(timeout_s, self.done_at - time.monotonic())))
        return time.monotonic() >= self.done_at


def test_a_loading_worker_keeps_telling_the_master_it_is_alive(monkeypatch: pytest.MonkeyPatch) -> None:
    """gunicorn kills a worker silent for its timeout: a slow load must not look like a hang."""
    monkeypatch.setattr(server_module, "LOADING_HEARTBEAT_S", 0.05)
    beats: list[float] = []
    waited_s = wait_for_model(SlowHolder(0.5), lambda: beats.append(time.monotonic()), lambda: True)  # type: ignore[arg-type]
    assert waited_s >= 0.5
    assert len(beats) >= 5
    assert max(b - a for a, b in zip(beats, beats[1:], strict=False)) < 0.3


def test_a_worker_told_to_exit_stops_waiting_for_its_model() -> None:
    started = time.monotonic()
    wait_for_model(SlowHolder(60), lambda: None, lambda: time.monotonic() - started < 0.2)  # type: ignore[arg-type]
    assert time.monotonic() - started < 5


def test_gunicorn_runs_specks_workers_with_the_recycling_settings() -> None:
    settings = Settings(workers=3, max_requests=500, max_requests_jitter=50, request_timeout_s=45)
    server = SpecksServer(settings)
    assert server.cfg.worker_class is SpecksWorker
    assert (server.cfg.max_requests, server.cfg.max_requests_jitter) == (500, 50)
    assert (server.cfg.workers, server.cfg.timeout) == (3, 45)
    assert server.cfg.preload_app is False  # each worker loads its own model, after the fork
    if "control_socket_disable" in server.cfg.settings:
        assert server.cfg.control_socket_disable is True


def test_wait_loaded_is_true_once_the_model_is_there(yolov5n_detector) -> None:  # type: ignore[no-untyped-def]
    holder = ModelHolder(Settings(), yolov5n_detector)
    holder.start_loading()  # nothing to load
    assert holder.wait_loaded(0.01) is True
    assert holder.ready


def test_wait_loaded_is_true_after_a_failed_load(tmp_path: Path) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    holder = ModelHolder(Settings(model=str(broken), cache_dir=tmp_path))
    holder.start_loading()
    assert holder.wait_loaded(60) is True
    assert not holder.ready
    assert "failed to load" in holder.not_ready_reason


# -- faults and restarts under load, on loopback --------------------------------------------------
#
# Clients open one connection per request (keep_alive=False) unless said otherwise: a request
# then fails only when the process that accepted it dies, which is the property under test.

FAULT_CONCURRENCY = 4
FAULT_IMAGE = jpeg_bytes(640, 480)
SLACK_S = 0.005


@dataclass
class Moment:
    """When the test did something, on the load run's clock: between before_s and after_s."""

    before_s: float
    after_s: float


def act(action: Callable[[], object]) -> tuple[float, float]:
    before = time.monotonic()
    action()
    return before, time.monotonic()


def on_clock(report: LoadReport, moment: tuple[float, float]) -> Moment:
    return Moment(moment[0] - report.started_at_s, moment[1] - report.started_at_s)


def in_flight_at(record: RequestRecord, moment: Moment) -> bool:
    return record.started_s <= moment.after_s + SLACK_S and record.finished_s >= moment.before_s - SLACK_S


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.05)


def load_in_background(server: LiveServer, stop: threading.Event, **options: Any) -> Callable[[], LoadReport]:
    """Start run_load in a thread (at most 5 minutes); the returned function joins it and gives the report."""
    result: list[LoadReport] = []
    shape: dict[str, Any] = {"concurrency": FAULT_CONCURRENCY, "duration_s": 300, "timeout_s": 90, "keep_alive": False}
    shape.update(options)
    thread = threading.Thread(
        target=lambda: result.append(run_load(server.url, predict_body(FAULT_IMAGE), stop=stop, **shape)), daemon=True
    )
    thread.start()

    def report() -> LoadReport:
        stop.set()
        thread.join(timeout=shape["duration_s"] + shape["timeout_s"] + 30)
        assert result, "the load run did not finish"
        return result[0]

    return report


def ok_after(report: LoadReport, start_s: float) -> int:
    return sum(r.ok and r.started_s > start_s for r in report.records)


@pytest.mark.slow
def test_a_starting_server_answers_no_request_with_503(cache_dir: Path) -> None:
    """From the first connection on, requests wait for a ready worker instead of meeting a loading one."""
    server = live_server_for(MODELS / "yolov5n.onnx", cache_dir, workers=2)
    statuses: list[int | str] = []
    try:
        deadline = time.monotonic() + 180
        while (len(server.ready_worker_pids()) < 2 or statuses.count(200) < 5) and time.monotonic() < deadline:
            try:
                statuses.append(requests.get(server.url + "/ready", timeout=90).status_code)
            except requests.ConnectionError:
                statuses.append("refused")  # before gunicorn has bound the port
                time.sleep(0.02)
        server.wait_until_all_workers_ready()
    finally:
        server.stop()
    assert 200 in statuses
    assert set(statuses) <= {200, "refused"}, f"answers while the workers loaded: {sorted(set(map(str, statuses)))}"


@pytest.mark.slow
def test_kill_9_of_a_worker_under_load_fails_only_its_requests_in_flight(cache_dir: Path) -> None:
    """Both original workers die in turn; the replacements take over and no request sees a 503."""
    server = live_server_for(MODELS / "yolov5n.onnx", cache_dir, workers=2)
    try:
        first, second = server.wait_until_all_workers_ready()
        stop = threading.Event()
        finish = load_in_background(server, stop)
        time.sleep(2)
        kill_first = act(lambda: os.kill(first, signal.SIGKILL))
        wait_for(lambda: len(set(child_pids(server.pid)) - {first, second}) == 1, 60, "a replacement worker")
        # The second dies before the replacement may be ready: for a moment no worker takes
        # connections, and the requests wait for one rather than fail.
        kill_second = act(lambda: os.kill(second, signal.SIGKILL))
        replacements = server.wait_until_all_workers_ready(timeout_s=180)
        time.sleep(2)
        report = finish()
    finally:
        server.stop()
    kills = [on_clock(report, kill_first), on_clock(report, kill_second)]
    failed = [r for r in report.records if not r.ok]
    assert all(r.status == 0 for r in failed), f"HTTP errors: {report.error_kinds()}"  # no 503 from a loading worker
    assert all(any(in_flight_at(r, k) for k in kills) for r in failed), f"failed but not in flight: {failed}"
    assert len(failed) <= 2 * FAULT_CONCURRENCY
    assert not {first, second} & set(replacements)
    assert ok_after(report, kills[1].after_s) >= 10, "the replacement workers served nothing"


@pytest.mark.slow
@pytest.mark.parametrize("keep_alive", [False, True], ids=["connection-per-request", "keep-alive"])
def test_sigterm_of_the_master_under_load_drops_no_accepted_request(cache_dir: Path, keep_alive: bool) -> None:
    """Every request sent before the stop is answered 200; after it, connections are refused.

    One race is the kernel's: a connection that completes its handshake after the last worker
    took what was queued, but before that worker closes the shared listening socket, is reset
    (not refused) by the close. Only a request sent after SIGTERM can be in that window.
    """
    server = live_server_for(MODELS / "yolov5n.onnx", cache_dir, workers=2)
    try:
        server.wait_until_all_workers_ready()
        stop = threading.Event()
        finish = load_in_background(server, stop, keep_alive=keep_alive)
        time.sleep(3)
        sigterm = act(server.process.terminate)
        exit_code = server.process.wait(timeout=60)
        stopped = act(lambda: None)
        time.sleep(0.5)  # a few refused attempts after the exit
        report = finish()
        output = server.output()
    finally:
        server.stop()
    term, exited = on_clock(report, sigterm), on_clock(report, stopped)
    assert exit_code == 0
    failed = [r for r in report.records if not r.ok]
    assert {r.error for r in failed} <= {"ConnectionRefusedError", "ConnectionResetError"}, report.error_kinds()
    assert all(r.ok for r in report.records if r.started_s < term.before_s), "a request sent before SIGTERM failed"
    assert any(r.ok and in_flight_at(r, term) for r in report.records), "nothing was in flight at SIGTERM"
    assert any(r.started_s > exited.after_s for r in failed), "the clients never saw the server gone"
    assert "Worker exiting" in output


@pytest.mark.slow
def test_worker_recycling_under_load_loses_nothing(cache_dir: Path) -> None:
    """--max-requests 10 with jitter 4: 48 requests need at least 4 workers, so 2+ are replaced."""
    server = live_server_for(
        MODELS / "yolov5n.onnx",
        cache_dir,
        workers=2,
        env={"SPECKS_MAX_REQUESTS": "10", "SPECKS_MAX_REQUESTS_JITTER": "4"},
    )
    try:
        server.wait_until_all_workers_ready()
        report = run_load(
            server.url,
            predict_body(FAULT_IMAGE),
            concurrency=FAULT_CONCURRENCY,
            duration_s=300,
            max_requests=48,
            timeout_s=90,
            keep_alive=True,
        )
        output, ready_workers = server.output(), server.ready_worker_pids()
    finally:
        server.stop()
    assert report.requests == 48
    assert report.errors == 0, report.error_kinds()
    assert output.count("Autorestarting worker after current request") >= 2
    assert len(ready_workers) >= 3  # replacements took connections, after loading
