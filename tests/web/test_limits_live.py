"""Limits against a live gunicorn server: pixel bombs, slow clients, and worker memory under large requests.

Every loop here is bounded in count and in time, and talks to 127.0.0.1 only.
"""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
import requests

from conftest import LiveServer, jpeg_bytes
from factories import b64, huge_bilevel_png
from specks.tools.loadtest import run_load
from specks.tools.server_process import child_pids, rss_mb, wait_until_steadily_ready
from specks.tools.yardstick import predict_body

JSON = {"Content-type": "application/json"}


@pytest.fixture()
def server(live_server: LiveServer) -> LiveServer:
    """The shared live server once both workers have their model (the first ready one is not enough)."""
    wait_until_steadily_ready(live_server.url)
    return live_server


def post_image(server: LiveServer, image: bytes, timeout_s: float = 60, **fields: object) -> requests.Response:
    payload = json.dumps({"image": b64(image), **fields})
    return requests.post(server.url + "/predict", data=payload, headers=JSON, timeout=timeout_s)


def assert_serving(server: LiveServer) -> None:
    assert requests.get(server.url + "/health", timeout=5).json() == {"status": "ok"}
    assert post_image(server, jpeg_bytes(320, 240), timeout_s=30).status_code == 200


# -- (a) a pixel bomb below Pillow's own error threshold -----------------------------------------


@pytest.mark.slow
def test_144_megapixel_png_is_refused_by_the_pixel_limit_quickly(server: LiveServer) -> None:
    """12000 x 12000 = 144 MP: past Pillow's warning (~89 MP), short of its error (~179 MP).

    Only Specks' own limit (40 MP by default) stands between it and a 432 MB decode.
    """
    bomb = huge_bilevel_png(12_000, 12_000)
    assert len(bomb) < 1_000_000  # cheap to send; the cost would all be in decoding
    started = time.monotonic()
    response = post_image(server, bomb, timeout_s=30)
    elapsed_s = time.monotonic() - started
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "image_too_large"
    assert elapsed_s < 5, f"refused only after {elapsed_s:.1f} s"
    assert_serving(server)


# -- (b) slow clients ----------------------------------------------------------------------------

SLOW_CLIENTS = 8
TRICKLE_S = 6.0  # each slow client trickles for this long, then gives up
TRICKLE_EVERY_S = 0.25


def trickle_headers(port: int, until: float, opened: threading.Semaphore) -> None:
    """Open a connection and send a request's headers a byte at a time, never finishing them."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-Slow: ")
        opened.release()
        for _ in range(int(TRICKLE_S / TRICKLE_EVERY_S) + 1):  # bounded in count as well as time
            if time.monotonic() >= until:
                break
            try:
                sock.sendall(b"a")
            except OSError:  # the server may hang up on a slow client, which is fine
                return
            time.sleep(TRICKLE_EVERY_S)


@pytest.mark.slow
def test_a_normal_request_is_answered_while_slow_clients_hang(server: LiveServer) -> None:
    until = time.monotonic() + TRICKLE_S
    opened = threading.Semaphore(0)
    slow = [
        threading.Thread(target=trickle_headers, args=(server.port, until, opened), daemon=True)
        for _ in range(SLOW_CLIENTS)
    ]
    for thread in slow:
        thread.start()
    for _ in slow:
        assert opened.acquire(timeout=5), "a slow client could not connect"
    time.sleep(0.5)  # let the server take them in
    started = time.monotonic()
    try:
        response = post_image(server, jpeg_bytes(640, 480), timeout_s=TRICKLE_S + 5)
    finally:
        answered = time.monotonic()
        for thread in slow:
            thread.join(timeout=TRICKLE_S + 5)
    assert response.status_code == 200
    waited_s = answered - started
    assert answered < until, f"answered only after the slow clients gave up ({waited_s:.1f} s)"
    assert waited_s < 3, f"a normal request waited {waited_s:.1f} s behind {SLOW_CLIENTS} slow clients"
    assert_serving(server)


# -- (c) worker memory after bursts of large requests --------------------------------------------

# Three rounds of 4 per burst: each worker runs about 6 of them, past the first one's growth (its
# arenas reach their plateau on the first large request; 20 per burst took 3 minutes of CI for the
# same answer).
BURST_REQUESTS = 12
BURST_CONCURRENCY = 4
MEMORY_GROWTH_LIMIT_MB = 50
# yolov5n, 6000x4000 sliced requests, 2 at once per worker: ~220 MiB measured (was 1-2 GiB before
# large buffers were returned to the OS and the letterboxer lost its memory arena). Every worker
# also holds the embedded default, always served (about +120 MiB at rest, docs/performance.md, "Memory per model").
WORKER_MEMORY_CEILING_MB = 720


def worker_rss_mb(pids: list[int]) -> dict[int, float]:
    found = {pid: rss_mb(pid) for pid in pids}
    assert all(rss is not None for rss in found.values()), f"a worker went away: {found}"
    return {pid: rss for pid, rss in found.items() if rss is not None}


def burst(server: LiveServer, body: bytes, pids: list[int]) -> None:
    """BURST_REQUESTS large requests, 4 at a time (at most 10 minutes), then a few hostile ones."""
    result = run_load(
        server.url,
        body,
        concurrency=BURST_CONCURRENCY,
        duration_s=600,
        max_requests=BURST_REQUESTS,
        worker_pids=pids,
        timeout_s=120,
    )
    assert result.requests == BURST_REQUESTS
    assert result.errors == 0, result.error_kinds()
    hostile = [
        (huge_bilevel_png(12_000, 12_000), 413),
        (huge_bilevel_png(), 413),  # 40000 x 40000
        (jpeg_bytes(2000, 1500)[:150_000], 400),  # truncated
    ]
    for image, status in hostile:
        assert post_image(server, image, timeout_s=30).status_code == status
    invalid = requests.post(server.url + "/predict", data='{"image": "%%%"}', headers=JSON, timeout=10)
    assert invalid.status_code == 400


@pytest.mark.slow
def test_worker_memory_is_flat_across_a_second_burst_of_large_requests(server: LiveServer) -> None:
    """6000 x 4000 JPEGs, sliced (the default "auto"): the first burst may grow the workers, the second not."""
    pids = child_pids(server.process.pid)
    assert len(pids) == 2
    body = predict_body(jpeg_bytes(6000, 4000))
    burst(server, body, pids)
    after_first = worker_rss_mb(pids)
    burst(server, body, pids)
    after_second = worker_rss_mb(pids)
    shown = {pid: (round(after_first[pid]), round(after_second[pid])) for pid in pids}
    # Workers are identical but share requests at random: one may reach in burst 2 the plateau the
    # other reached in burst 1. Bounded memory means the highest worker does not climb further.
    growth = max(after_second.values()) - max(after_first.values())
    assert growth < MEMORY_GROWTH_LIMIT_MB, f"RSS MiB after bursts 1 and 2: {shown}"
    assert max(after_second.values()) < WORKER_MEMORY_CEILING_MB, f"RSS MiB after bursts 1 and 2: {shown}"
    assert_serving(server)


WIDE_BURST_CONCURRENCY = 12  # three times the c4 bursts: more requests than the workers run at once


@pytest.mark.slow
def test_a_burst_wider_than_the_workers_waits_instead_of_growing_them(server: LiveServer) -> None:
    """12 large requests at once: those beyond the prediction slots queue with their bodies only, so
    each worker's peak (VmHWM, restarted when the burst starts) stays under the c4 bursts' ceiling."""
    pids = child_pids(server.process.pid)
    result = run_load(
        server.url,
        predict_body(jpeg_bytes(6000, 4000)),
        concurrency=WIDE_BURST_CONCURRENCY,
        duration_s=600,
        max_requests=WIDE_BURST_CONCURRENCY,
        warmup_s=0,
        worker_pids=pids,
        timeout_s=300,
    )
    assert result.requests == WIDE_BURST_CONCURRENCY
    assert result.errors == 0, result.error_kinds()
    if result.peak_since != "warm-up":
        pytest.skip("this kernel does not let the workers' peak RSS be restarted")
    peaks = {pid: round(peak) for pid, peak in result.peak_mb.items()}
    assert set(peaks) == set(pids)
    assert max(peaks.values()) < WORKER_MEMORY_CEILING_MB, f"peak RSS MiB per worker: {peaks}"
    assert_serving(server)


# -- (d) a chunked body (no Content-Length) -------------------------------------------------------


def post_chunked(server: LiveServer, body: bytes, chunk_bytes: int = 64 * 1024) -> requests.Response:
    """POST with Transfer-Encoding: chunked (requests streams a generator without a Content-Length)."""

    def chunks() -> object:
        for start in range(0, len(body), chunk_bytes):
            yield body[start : start + chunk_bytes]

    return requests.post(server.url + "/predict", data=chunks(), headers=JSON, timeout=60)


@pytest.mark.slow
def test_a_chunked_body_past_the_limit_is_413_like_a_declared_one(live_server: LiveServer) -> None:
    wait_until_steadily_ready(live_server.url)
    limit = 20 * 1024 * 1024  # SPECKS_MAX_BODY_BYTES default
    oversized = json.dumps({"image": "A" * (limit + 10)}).encode()
    try:
        response = post_chunked(live_server, oversized)
    except requests.ConnectionError:  # the server may close while the client still sends; never a 400
        pytest.fail("the server dropped the connection instead of answering 413")
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert "SPECKS_MAX_BODY_BYTES" in response.json()["error"]["message"]
    # A chunked body within the limit is served as usual.
    small = json.dumps({"image": b64(jpeg_bytes(320, 240))}).encode()
    assert post_chunked(live_server, small, chunk_bytes=1000).status_code == 200
