"""Every request bounded, against live gunicorn servers: slow and idle clients, the request deadline,
fair slots inside a worker and between workers.

Each server here runs the embedded default with short limits so that the tests stay short:
SPECKS_READ_TIMEOUT_S=2 and SPECKS_REQUEST_TIMEOUT_S=6. Every loop is bounded in count and in
time and talks to 127.0.0.1 only; every socket opened is closed by the test.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from conftest import LiveServer, jpeg_bytes
from factories import b64, slow_body
from specks.config import Settings

JSON = {"Content-type": "application/json"}
LIMITS_ENV = {"SPECKS_READ_TIMEOUT_S": "2", "SPECKS_REQUEST_TIMEOUT_S": "6"}


def _server(cache_dir, workers: int) -> Iterator[LiveServer]:  # type: ignore[no-untyped-def]
    server = LiveServer(Settings(cache_dir=cache_dir), workers=workers, env=LIMITS_ENV)
    try:
        server.wait_until_all_workers_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def one_worker(cache_dir) -> Iterator[LiveServer]:  # type: ignore[no-untyped-def]
    yield from _server(cache_dir, workers=1)


@pytest.fixture(scope="module")
def two_workers(cache_dir) -> Iterator[LiveServer]:  # type: ignore[no-untyped-def]
    yield from _server(cache_dir, workers=2)


def post(server: LiveServer, payload: dict[str, object], timeout_s: float = 30) -> requests.Response:
    return requests.post(server.url + "/predict", data=json.dumps(payload), headers=JSON, timeout=timeout_s)


def timed_post(server: LiveServer, payload: dict[str, object]) -> tuple[int, float]:
    started = time.monotonic()
    response = post(server, payload)
    return response.status_code, time.monotonic() - started


SMALL = {"image": b64(jpeg_bytes(320, 240))}


@pytest.mark.slow
def test_slow_uploads_and_idle_connections_leave_normal_clients_answered(one_worker: LiveServer) -> None:
    """One worker, 64 clients trickling a body and 150 silent connections: normal requests answered in time."""
    stop = threading.Event()
    trickling = [threading.Thread(target=slow_body, args=(one_worker.port, stop), daemon=True) for _ in range(64)]
    idle: list[socket.socket] = []
    try:
        for thread in trickling:
            thread.start()
        idle = [socket.create_connection(("127.0.0.1", one_worker.port), timeout=5) for _ in range(150)]
        time.sleep(1.0)  # let the worker take them all in
        answers = [timed_post(one_worker, SMALL) for _ in range(5)]
    finally:
        stop.set()
        for sock in idle:
            sock.close()
        for thread in trickling:
            thread.join(10)
    assert [status for status, _ in answers] == [200] * 5
    slowest_s = max(waited for _, waited in answers)
    assert slowest_s < 3, f"a normal request waited {slowest_s:.1f} s"


@pytest.mark.slow
def test_a_body_slower_than_the_minimum_rate_is_cut_off_with_a_json_408(one_worker: LiveServer) -> None:
    with socket.create_connection(("127.0.0.1", one_worker.port), timeout=10) as sock:
        started = time.monotonic()
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
        )
        answer = b""
        with contextlib.suppress(OSError):
            for _ in range(40):  # a byte every 0.25 s, until the server answers
                sock.sendall(b" ")
                sock.settimeout(0.25)
                with contextlib.suppress(TimeoutError):
                    answer += sock.recv(65536)
                head, _, body = answer.partition(b"\r\n\r\n")
                declared = [line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
                if declared and len(body) >= int(declared[0].split(b":")[1]):
                    break
        waited_s = time.monotonic() - started
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), answer[:200]
    assert json.loads(body)["error"]["code"] == "request_timeout"
    assert waited_s < 6  # 2 s of read time plus 100 bytes at the minimum rate
    assert post(one_worker, SMALL).status_code == 200


@pytest.mark.slow
def test_headers_trickled_past_the_read_timeout_are_cut_off(one_worker: LiveServer) -> None:
    with socket.create_connection(("127.0.0.1", one_worker.port), timeout=10) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        closed = False
        for _ in range(40):
            try:
                sock.sendall(b"a")
                sock.settimeout(0.25)
                if sock.recv(65536) == b"":
                    closed = True
                    break
            except TimeoutError:
                continue
            except OSError:
                closed = True
                break
        waited_s = time.monotonic() - started
    assert closed and waited_s < 5, f"still open after {waited_s:.1f} s"


def heavy_batch(images: int) -> dict[str, object]:
    """A batch whose images are each sliced and flipped: 2-5 s of work per image here."""
    return {"images": [b64(jpeg_bytes(2400, 1800))] * images, "slice": "on", "flip": True}


def medium_batch(images: int) -> dict[str, object]:
    """A batch whose images are each sliced: about a second of work per image here."""
    return {"images": [b64(jpeg_bytes(1600, 1200))] * images, "slice": "on"}


@pytest.mark.slow
def test_a_request_past_the_deadline_is_stopped_with_503_and_frees_its_worker(one_worker: LiveServer) -> None:
    started = time.monotonic()
    response = post(one_worker, heavy_batch(8), timeout_s=60)  # 8 x 2-5 s of work
    waited_s = time.monotonic() - started
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "deadline_exceeded"
    assert "SPECKS_REQUEST_TIMEOUT_S" in response.json()["error"]["message"]
    # 6 s of deadline, plus the upload and base64 before it starts and the stage in progress at it
    # (a tile's run: seconds on a busy machine); the whole batch would take 16-40 s.
    assert waited_s < 6 + 8, f"stopped only after {waited_s:.1f} s"
    assert post(one_worker, SMALL).status_code == 200


@pytest.mark.slow
def test_a_request_sent_into_a_running_batch_is_answered_before_the_batch_ends(one_worker: LiveServer) -> None:
    """The batch yields its slot between images; the waiting request takes it first."""
    one_image_s = timed_post(one_worker, medium_batch(1))[1]
    finished: dict[str, float] = {}

    def batch() -> None:
        post(one_worker, medium_batch(4), timeout_s=60)
        finished["batch"] = time.monotonic()

    runner = threading.Thread(target=batch)
    runner.start()
    time.sleep(one_image_s * 0.5)  # the batch is on its first image
    sent = time.monotonic()
    response = post(one_worker, SMALL)
    finished["normal"] = time.monotonic()
    runner.join(60)
    assert response.status_code == 200, response.text
    assert finished["normal"] < finished["batch"]
    assert finished["normal"] - sent < 2 * one_image_s + 1, "it waited for more than the image in progress"


@pytest.mark.slow
def test_a_busy_worker_leaves_new_connections_to_an_idle_sibling(two_workers: LiveServer) -> None:
    one_image_s = timed_post(two_workers, heavy_batch(1))[1]
    runner = threading.Thread(target=post, args=(two_workers, heavy_batch(3)), kwargs={"timeout_s": 60})
    runner.start()
    time.sleep(min(1.0, one_image_s * 0.3))
    waits = [timed_post(two_workers, SMALL)[1] for _ in range(4)]  # a new connection each
    runner.join(60)
    assert max(waits) < min(1.0, one_image_s * 0.5), f"a request queued behind the batch ({max(waits):.1f} s)"
