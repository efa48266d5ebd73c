"""specks.tools.loadtest: the report maths on made-up samples, the client against a stub server, and the CI smoke."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import MODELS, VISDRONE, free_port, require
from specks.cli import main
from specks.config import Settings
from specks.errors import ConfigError, SpecksError
from specks.tools.loadtest import BARE_RUNS, BARE_WARMUP, LoadReport, RequestRecord, _target, run_load
from specks.tools.server_process import (
    ServerProcess,
    child_pids,
    peak_rss_mb,
    reset_peak_rss,
    rss_mb,
    wait_until_steadily_ready,
)
from specks.tools.yardstick import BareModel, bare_rate_per_s, predict_body, synthetic_photo_jpeg

# -- LoadReport maths ----------------------------------------------------------------------------


def ok(finished_s: float, latency_s: float = 0.1) -> RequestRecord:
    return RequestRecord(finished_s - latency_s, finished_s, 200)


def report(records: list[RequestRecord], **fields: object) -> LoadReport:
    values: dict[str, object] = {"url": "http://127.0.0.1:1", "concurrency": 2, "duration_s": 10.0, "warmup_s": 2.0}
    values.update(fields)
    return LoadReport(records=tuple(records), **values)  # type: ignore[arg-type]


def test_throughput_counts_successes_inside_the_window_after_warmup() -> None:
    # 1 s warm-up replies, 16 replies inside 2..10 s, 1 reply that landed after sending stopped.
    records = [ok(0.5), ok(1.5), *[ok(2.0 + 0.5 * i) for i in range(16)], ok(10.4)]
    result = report(records)
    assert result.window_s() == (2.0, 10.0)
    assert result.throughput_per_s == pytest.approx(16 / 8)
    assert result.requests == 19
    assert len(result.measured()) == 17  # the late reply has a latency, just no place in the window


def test_window_ends_when_sending_stopped() -> None:
    result = report([ok(2.5), ok(3.0), ok(4.0)], duration_s=4.0)  # the request budget ran out at 4 s
    assert result.window_s() == (2.0, 4.0)
    assert result.throughput_per_s == pytest.approx(3 / 2)


def test_errors_count_in_warmup_too_but_stay_out_of_throughput_and_latency() -> None:
    records = [
        RequestRecord(0.0, 0.4, 0, "ConnectionRefusedError"),
        ok(3.0, latency_s=0.2),
        RequestRecord(3.0, 4.0, 500, "HTTP 500"),
        RequestRecord(3.0, 9.0, 0, "timeout"),
        ok(5.0, latency_s=0.4),
    ]
    result = report(records)
    assert result.errors == 3
    assert result.error_kinds() == {"ConnectionRefusedError": 1, "HTTP 500": 1, "timeout": 1}
    assert result.throughput_per_s == pytest.approx(2 / 8)
    assert result.latency_percentiles_ms() == pytest.approx({"p50": 300.0, "p95": 390.0, "p99": 398.0})


def test_no_successful_reply_gives_no_percentiles_and_zero_throughput() -> None:
    result = report([RequestRecord(2.0, 3.0, 503, "HTTP 503")])
    assert result.latency_percentiles_ms() is None
    assert result.throughput_per_s == 0.0
    assert result.to_dict()["latency_ms"] is None


def test_memory_growth_is_end_minus_first_sample_after_warmup_largest_worker() -> None:
    memory = {
        11: [(0.0, 100.0), (1.0, 180.0), (2.1, 200.0), (5.0, 205.0), (10.2, 210.0)],
        12: [(0.0, 90.0), (2.0, 150.0), (6.0, 260.0), (10.2, 175.0)],
    }
    result = report([ok(3.0)], memory_mb=memory)
    assert result.memory_at_warmup_mb() == {11: 200.0, 12: 150.0}
    assert result.memory_end_mb() == {11: 210.0, 12: 175.0}
    assert result.memory_growth_mb == pytest.approx(25.0)


def test_memory_growth_is_none_without_samples() -> None:
    assert report([ok(3.0)]).memory_growth_mb is None
    assert report([ok(3.0)], memory_mb={7: []}).memory_growth_mb is None


def test_to_dict_rounds_and_carries_the_memory_series() -> None:
    memory = {11: [(2.0, 100.04), (9.0, 101.26)]}
    data = report([ok(3.0, 0.123456), ok(4.0)], memory_mb=memory).to_dict()
    assert data["requests"] == 2
    assert data["errors"] == 0
    assert data["throughput_per_s"] == pytest.approx(0.25)
    assert data["latency_ms"]["p50"] == pytest.approx(111.73, abs=0.01)
    worker = data["memory"]["workers"]["11"]
    assert worker == {"at_warmup_mb": 100.0, "at_end_mb": 101.3, "series_mb": [[2.0, 100.0], [9.0, 101.3]]}
    assert data["memory"]["growth_mb"] == pytest.approx(1.2)


def test_peaks_add_up_per_worker_and_samples_add_up_per_moment() -> None:
    memory = {
        11: [(0.0, 100.0), (1.0, 300.0), (2.0, 120.0)],
        12: [(0.0, 90.0), (1.0, 95.0), (2.0, 250.0)],
    }
    result = report([ok(3.0)], memory_mb=memory, peak_mb={11: 320.0, 12: 260.0})
    assert result.peak_total_mb == 580.0  # an upper bound: the two peaks need not coincide
    assert result.sampled_peak_total_mb() == 395.0  # max(190, 395, 370): a lower bound
    shown = result.to_dict()["memory"]
    assert shown["peak_mb"] == {"11": 320.0, "12": 260.0}
    assert (shown["peak_total_mb"], shown["sampled_peak_total_mb"], shown["peak_since"]) == (580.0, 395.0, "warm-up")


def test_no_peaks_without_workers() -> None:
    result = report([ok(3.0)])
    assert result.peak_total_mb is None and result.sampled_peak_total_mb() is None
    assert result.to_dict()["memory"]["peak_total_mb"] is None


# -- targets, processes, memory ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:6060", ("127.0.0.1", 6060, "/predict")),
        ("http://127.0.0.1:6060/", ("127.0.0.1", 6060, "/predict")),
        ("http://localhost:8000/v1/predict", ("localhost", 8000, "/v1/predict")),
        ("http://127.0.0.1", ("127.0.0.1", 80, "/predict")),
    ],
)
def test_target_splits_the_url_and_defaults_to_predict(url: str, expected: tuple[str, int, str]) -> None:
    assert _target(url) == expected


@pytest.mark.parametrize("url", ["https://127.0.0.1:6060", "127.0.0.1:6060", "http://"])
def test_target_refuses_what_it_cannot_load(url: str) -> None:
    with pytest.raises(ConfigError):
        _target(url)


def test_child_pids_and_rss_see_a_child_process() -> None:
    script = "import time; print('up', flush=True); time.sleep(30)"
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline() == b"up\n"  # running Python, not half-spawned
        assert child.pid in child_pids(os.getpid())
        rss = rss_mb(child.pid)
        assert rss is not None and 1 < rss < 500
    finally:
        child.kill()
        child.wait(timeout=10)
    assert rss_mb(child.pid) is None


ALLOCATE_AND_FREE = """
import sys, time
block = bytearray(300 * 1024 * 1024)  # touched: resident
del block
print("up", flush=True)
time.sleep(30)
"""


@pytest.fixture()
def peaked_child() -> Iterator[subprocess.Popen[bytes]]:
    """A process that was 300 MiB bigger than it is now."""
    child = subprocess.Popen([sys.executable, "-c", ALLOCATE_AND_FREE], stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline() == b"up\n"
        yield child
    finally:
        child.kill()
        child.wait(timeout=10)


def test_peak_rss_remembers_freed_memory_until_reset(peaked_child: subprocess.Popen[bytes]) -> None:
    pid = peaked_child.pid
    now, peak = rss_mb(pid), peak_rss_mb(pid)
    assert now is not None and peak is not None
    assert peak - now > 250
    if not reset_peak_rss(pid):
        pytest.skip("this kernel does not let /proc/<pid>/clear_refs reset the peak")
    after_reset = peak_rss_mb(pid)
    assert after_reset is not None and after_reset - now < 50


def test_run_load_reads_peaks_from_the_warmup_on(stub_url: str, peaked_child: subprocess.Popen[bytes]) -> None:
    pid = peaked_child.pid
    result = run_load(stub_url, b"{}", concurrency=1, duration_s=0.6, warmup_s=0.2, worker_pids=[pid], timeout_s=5)
    assert set(result.peak_mb) == {pid}
    if result.peak_since == "warm-up":  # the 300 MiB before the run no longer count
        assert result.peak_mb[pid] < max(rss for _, rss in result.memory_mb[pid]) + 50
    else:
        assert result.peak_since == "worker start" and result.peak_mb[pid] > 250


# -- the client against a stub server ------------------------------------------------------------


class _Stub(BaseHTTPRequestHandler):
    """Answers POSTs: 200, or 500 for every third request."""

    protocol_version = "HTTP/1.1"  # keep-alive, as gunicorn does
    count = 0
    lock = threading.Lock()
    fail_every = 0

    connections = 0
    connection_headers: list[str | None] = []

    def setup(self) -> None:
        super().setup()
        with self.lock:
            type(self).connections += 1

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers["Content-Length"]))
        with self.lock:
            type(self).count += 1
            type(self).connection_headers.append(self.headers.get("Connection"))
            failing = self.fail_every and type(self).count % self.fail_every == 0
        payload = b'{"detections": []}'
        self.send_response(500 if failing else 200)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    ready_after = 0  # GET /ready answers 503 this many times first
    gets = 0

    def do_GET(self) -> None:  # noqa: N802
        with self.lock:
            type(self).gets += 1
            ready = type(self).gets > self.ready_after
        self.send_response(200 if ready else 503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def stub_url() -> Iterator[str]:
    _Stub.count, _Stub.fail_every, _Stub.gets, _Stub.ready_after, _Stub.connections = 0, 0, 0, 0, 0
    _Stub.connection_headers = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_run_load_sends_exactly_the_request_budget(stub_url: str) -> None:
    result = run_load(stub_url, b'{"image": "x"}', concurrency=4, duration_s=10, max_requests=40, timeout_s=5)
    assert result.requests == 40
    assert result.errors == 0
    assert _Stub.count == 40
    assert result.duration_s < 10
    assert result.throughput_per_s > 0


@pytest.mark.parametrize(("keep_alive", "connections"), [(True, 2), (False, 20)])
def test_run_load_keeps_connections_alive_or_opens_one_per_request(
    stub_url: str, keep_alive: bool, connections: int
) -> None:
    result = run_load(
        stub_url, b"{}", concurrency=2, duration_s=10, max_requests=20, timeout_s=5, keep_alive=keep_alive
    )
    assert result.errors == 0
    assert _Stub.connections == connections
    assert set(_Stub.connection_headers) == ({None} if keep_alive else {"close"})


def test_run_load_stops_sending_when_told(stub_url: str) -> None:
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    started = time.monotonic()
    result = run_load(stub_url, b"{}", concurrency=2, duration_s=60, timeout_s=5, stop=stop)
    assert time.monotonic() - started < 5
    assert result.requests > 0
    assert result.duration_s < 5
    assert result.started_at_s == pytest.approx(started, abs=0.5)


def test_run_load_counts_http_errors(stub_url: str) -> None:
    _Stub.fail_every = 3
    result = run_load(stub_url, b"{}", concurrency=2, duration_s=10, max_requests=30, timeout_s=5)
    assert result.requests == 30
    assert result.error_kinds() == {"HTTP 500": 10}


def test_run_load_samples_the_memory_of_the_given_pids(stub_url: str) -> None:
    result = run_load(
        stub_url, b"{}", concurrency=1, duration_s=0.6, worker_pids=[os.getpid()], sample_every_s=0.2, timeout_s=5
    )
    series = result.memory_mb[os.getpid()]
    assert len(series) >= 3  # every 0.2 s plus one at the end
    assert all(rss > 1 for _, rss in series)
    assert result.requests > 0
    assert result.duration_s == 0.6


def test_run_load_against_nothing_counts_refused_connections_and_stops_in_time() -> None:
    result = run_load(f"http://127.0.0.1:{free_port()}", b"{}", concurrency=2, duration_s=0.5, timeout_s=2)
    assert result.requests > 0
    assert result.errors == result.requests
    assert set(result.error_kinds()) == {"ConnectionRefusedError"}
    assert result.requests < 2 * 0.5 / 0.05 + 4  # the back-off keeps a dead server from being hammered


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"concurrency": 0, "duration_s": 1}, "concurrency"),
        ({"concurrency": 1, "duration_s": 0}, "warmup"),
        ({"concurrency": 1, "duration_s": 5, "warmup_s": 5}, "warmup"),
    ],
)
def test_run_load_refuses_a_shape_it_cannot_measure(fields: dict[str, float], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        run_load("http://127.0.0.1:1", b"{}", **fields)  # type: ignore[arg-type]


def test_cli_load_against_a_url_prints_the_figures(stub_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    image = Path(__file__)  # any bytes: the stub does not decode them
    argv = ["load", "--url", stub_url, "--image", str(image), "--concurrency", "2", "--duration", "1.5"]
    code = main([*argv, "--warmup", "0.5"])
    out = capsys.readouterr().out
    assert code == 0
    assert "errors 0" in out
    assert "throughput:" in out and "req/s" in out
    assert "p50" in out and "p99" in out
    assert "memory:        not sampled" in out


def test_cli_load_json_reports_errors_and_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    argv = ["load", "--url", url, "--image", __file__, "--concurrency", "1", "--duration", "0.3", "--warmup", "0"]
    code = main([*argv, "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 1
    assert data["errors"] == data["requests"] > 0
    assert data["throughput_per_s"] == 0


def test_steadily_ready_needs_successes_in_a_row(stub_url: str) -> None:
    _Stub.ready_after = 3
    wait_until_steadily_ready(stub_url, successes=5, timeout_s=10)
    assert _Stub.gets == 3 + 5


def test_steadily_ready_gives_up_at_its_deadline() -> None:
    started = time.monotonic()
    with pytest.raises(SpecksError, match="GET /ready"):
        wait_until_steadily_ready(f"http://127.0.0.1:{free_port()}", timeout_s=0.5)
    assert time.monotonic() - started < 3


def test_steadily_ready_treats_a_garbage_answer_as_not_ready() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def answer_garbage() -> None:
            while True:
                try:
                    connection, _ = listener.accept()
                except OSError:  # the listener was closed
                    return
                with connection:
                    connection.recv(1024)
                    connection.sendall(b"NOT HTTP AT ALL\r\n\r\n")

        threading.Thread(target=answer_garbage, daemon=True).start()
        with pytest.raises(SpecksError, match="GET /ready"):
            wait_until_steadily_ready(f"http://127.0.0.1:{port}", timeout_s=0.6)


def test_steadily_ready_stops_when_the_server_is_dead() -> None:
    def dead() -> None:
        raise SpecksError("the server exited")

    started = time.monotonic()
    with pytest.raises(SpecksError, match="exited"):
        wait_until_steadily_ready(f"http://127.0.0.1:{free_port()}", timeout_s=30, check_alive=dead)
    assert time.monotonic() - started < 1


# -- the CI smoke: a real server, 60 s at concurrency 8 ------------------------------------------


def _photo_2000x1500() -> bytes:
    images = sorted((VISDRONE / "images").glob("*.jpg")) if (VISDRONE / "images").is_dir() else []
    return images[0].read_bytes() if images else synthetic_photo_jpeg(2000, 1500)


@pytest.mark.slow
def test_load_smoke_60s_concurrency_8(cache_dir: Path) -> None:
    model = str(require(MODELS / "yolov5n.onnx"))
    image = _photo_2000x1500()
    server = ServerProcess(Settings(model=model, cache_dir=cache_dir), workers=2, env={"SPECKS_SLICE": "off"})
    try:
        server.wait_until_all_workers_ready()
        workers = child_pids(server.pid)
        assert len(workers) == 2
        result = run_load(
            server.url, predict_body(image), concurrency=8, duration_s=60, warmup_s=5, worker_pids=workers
        )
    finally:
        server.stop()
    settings = Settings(model=model, cache_dir=cache_dir)
    bare = BareModel(settings, image, settings.threads_for(1))
    bare_per_s = bare_rate_per_s(bare, 0.0, min_calls=BARE_RUNS, warmup=BARE_WARMUP)  # as `specks load` does
    data = result.to_dict()
    print(
        f"\nload smoke: {data['requests']} requests, {data['errors']} errors, {data['throughput_per_s']} req/s, "
        f"latency {data['latency_ms']}, memory growth {data['memory']['growth_mb']} MiB; bare session.run "
        f"{bare_per_s:.2f}/s, throughput / bare {result.throughput_per_s / bare_per_s:.3f} (target >= 0.75)"
    )
    assert result.errors == 0, result.error_kinds()
    assert result.throughput_per_s > 0
    assert set(result.memory_at_warmup_mb()) == set(workers)
    for pid, start_mb in result.memory_at_warmup_mb().items():
        assert result.memory_end_mb()[pid] - start_mb < 50, data["memory"]["workers"][str(pid)]
        assert result.peak_mb[pid] >= max(rss for _, rss in result.memory_mb[pid]) - 1  # sampled <= the true peak
