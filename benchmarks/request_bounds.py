"""Hostile requests against a live server, and what normal clients see meanwhile (issue 20's targets).

Starts `specks serve` on loopback (the embedded default, 2 workers, default settings) and prints,
for each probe, the figures its target is about:

  heavy     the 19.5 KB heavy request (3200x3200 one-colour PNG, 4 scales x flip, tile_scale 4,
            conf 0, iou 1, max_det 10000, wbf at 1.0) sent twice at once: statuses, seconds, the
            slowest normal request sent meanwhile, the server's peak memory.
  scans     a 4096x4096 grey progressive JPEG with 20,000 scans on every route: status and seconds.
  slow      128 clients trickling a body plus 300 idle connections: 5 normal requests' seconds,
            and a normal request's seconds before and after.
  batch     a 1-worker server running a 10-image batch: when a normal request sent into it is
            answered, against the batch's end and one image's time.
  echo      a 1 MB unknown field name and a 65-image Roboflow batch: answer bytes, log growth.
  burst     12 concurrent 24 MP sliced requests: statuses and the whole server's peak memory.

    .venv/bin/python benchmarks/request_bounds.py            # every probe (about 3 minutes)
    .venv/bin/python benchmarks/request_bounds.py slow batch # some

Loopback only; every loop is bounded; the servers it starts are stopped by their process id.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests
from PIL import Image

from specks.config import Settings
from specks.tools.server_process import ServerProcess, child_pids, rss_mb

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from factories import scan_bomb, slow_body  # noqa: E402  (the tests' generators, so both probe alike)

SLOW_CLIENT = {"interval_s": 2.5, "sends": 40}  # a byte every 2.5 s for at most 100 s

JSON = {"Content-type": "application/json"}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def encoded(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def photo_jpeg(width: int, height: int) -> bytes:
    """Gradient plus noise, so it compresses like a photo."""
    rng = np.random.default_rng(0)
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None, None]
    pixels = np.clip(x * 0.5 + y * 0.3 + rng.normal(0, 8, (height, width, 3)), 0, 255).astype(np.uint8)
    return encoded(Image.fromarray(pixels), "JPEG", quality=90)


SMALL = {"image": b64(photo_jpeg(320, 240))}


@contextlib.contextmanager
def server(workers: int) -> Iterator[ServerProcess]:
    process = ServerProcess(Settings(), workers=workers)
    try:
        process.wait_until_all_workers_ready()
        yield process
    finally:
        process.stop()


def post(srv: ServerProcess, payload: object, path: str = "/predict", timeout_s: float = 600) -> requests.Response:
    return requests.post(srv.url + path, data=json.dumps(payload), headers=JSON, timeout=timeout_s)


def timed(call: Callable[[], requests.Response]) -> tuple[int, float, int]:
    """(status, seconds, answer bytes)."""
    started = time.monotonic()
    response = call()
    return response.status_code, time.monotonic() - started, len(response.content)


class PeakMemory:
    """The most resident memory of a server (master and workers together), sampled every 0.1 s."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak_mb, self._stop = pid, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _sample(self) -> None:
        while not self._stop.wait(0.1):
            total = sum(rss_mb(pid) or 0.0 for pid in [self.pid, *child_pids(self.pid)])
            self.peak_mb = max(self.peak_mb, total)


def probe_heavy(srv: ServerProcess) -> None:
    png = encoded(Image.new("RGB", (3200, 3200), (90, 90, 90)), "PNG")
    heavy = {"image": b64(png), "scales": [1, 1.5, 2, 2.5], "flip": True, "tile_scale": 4, "conf": 0,
             "iou": 1, "max_det": 10000, "merge": "wbf", "merge_threshold": 1.0}  # fmt: skip
    print(f"heavy: request {len(json.dumps(heavy)) / 1000:.1f} KB, sent twice at once")
    normal_s: list[float] = []
    with PeakMemory(srv.pid) as memory, ThreadPoolExecutor(2) as pool:
        heavies = [pool.submit(timed, lambda: post(srv, heavy)) for _ in range(2)]
        while not all(f.done() for f in heavies):
            normal_s.append(timed(lambda: post(srv, SMALL, timeout_s=120))[1])
            time.sleep(0.5)
    for future in heavies:
        status, seconds, size = future.result()
        print(f"  heavy: {status} in {seconds:.2f} s ({size} bytes)")
    print(f"  normal requests meanwhile: {len(normal_s)}, slowest {max(normal_s, default=0):.2f} s")
    print(f"  server peak memory: {memory.peak_mb:.0f} MiB")


def probe_scans(srv: ServerProcess) -> None:
    bomb = scan_bomb(20_000, (4096, 4096))
    print(f"scans: 4096x4096 progressive JPEG with 20,000 scans, {len(bomb) / 1000:.0f} KB")
    routes: dict[str, Callable[[], requests.Response]] = {
        "/predict": lambda: post(srv, {"image": b64(bomb)}),
        "/v1/vision/detection": lambda: requests.post(srv.url + "/v1/vision/detection", files={"image": bomb}),
        "/infer/object_detection": lambda: post(
            srv, {"model_id": "coco/3", "image": {"type": "base64", "value": b64(bomb)}}, "/infer/object_detection"
        ),
        "/v1/predict/<id>": lambda: requests.post(srv.url + "/v1/predict/abc", files={"file": bomb}),
    }
    for route, call in routes.items():
        status, seconds, _ = timed(call)
        print(f"  {route}: {status} in {seconds:.3f} s")


def probe_slow(srv: ServerProcess) -> None:
    before = [timed(lambda: post(srv, SMALL))[1] for _ in range(5)]
    stop = threading.Event()
    trickling = [
        threading.Thread(target=slow_body, args=(srv.port, stop), kwargs=SLOW_CLIENT, daemon=True) for _ in range(128)
    ]
    idle: list[socket.socket] = []
    try:
        for thread in trickling:
            thread.start()
        idle = [socket.create_connection(("127.0.0.1", srv.port), timeout=5) for _ in range(300)]
        time.sleep(2.0)
        during = [timed(lambda: post(srv, SMALL, timeout_s=60)) for _ in range(5)]
    finally:
        stop.set()
        for sock in idle:
            sock.close()
        for thread in trickling:
            thread.join(10)
    after = [timed(lambda: post(srv, SMALL))[1] for _ in range(5)]
    print("slow: 128 clients trickling a body (1 byte / 2.5 s) + 300 idle connections")
    print(f"  normal requests during: {[status for status, _, _ in during]}, "
          f"seconds {', '.join(f'{s:.2f}' for _, s, _ in during)}")  # fmt: skip
    print(f"  median seconds before {sorted(before)[2]:.3f}, after {sorted(after)[2]:.3f}")


def probe_batch() -> None:
    with server(workers=1) as srv:
        image = b64(photo_jpeg(1600, 1200))
        one_image_s = timed(lambda: post(srv, {"image": image, "slice": "on"}))[1]
        done: dict[str, float] = {}
        runner = threading.Thread(
            target=lambda: (
                post(srv, {"images": [image] * 10, "slice": "on"}),
                done.setdefault("batch", time.monotonic()),
            )
        )
        started = time.monotonic()
        runner.start()
        time.sleep(one_image_s * 2.5)
        sent = time.monotonic()
        status = post(srv, SMALL).status_code
        done["normal"] = time.monotonic()
        runner.join(600)
    print(f"batch: 1 worker, a 10-image batch ({one_image_s:.2f} s per image) started at 0 s")
    print(f"  normal request sent at {sent - started:.2f} s: {status} after {done['normal'] - sent:.2f} s; "
          f"the batch ended at {done['batch'] - started:.2f} s")  # fmt: skip


def probe_echo(srv: ServerProcess) -> None:
    log_before = len(srv.output())
    huge_field = {"image": SMALL["image"], "x" * 1_000_000: 1}
    status, _, size = timed(lambda: post(srv, huge_field))
    print(f"echo: 1 MB unknown field name: {status}, answer {size} bytes")
    roboflow = {"model_id": "coco/3", "image": [{"type": "base64", "value": SMALL["image"]}] * 65}
    status, _, size = timed(lambda: post(srv, roboflow, "/infer/object_detection"))
    print(f"  65-image Roboflow batch: {status}, answer {size} bytes")
    time.sleep(0.5)
    print(f"  log growth over the two refusals: {len(srv.output()) - log_before} bytes")


def probe_burst(srv: ServerProcess) -> None:
    image = b64(photo_jpeg(6000, 4000))
    with PeakMemory(srv.pid) as memory, ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda _: timed(lambda: post(srv, {"image": image, "slice": "on"})), range(12)))
    statuses = [status for status, _, _ in answers]
    print(f"burst: 12 concurrent 24 MP sliced requests: statuses {sorted(set(statuses))} x{len(statuses)}, "
          f"slowest {max(s for _, s, _ in answers):.1f} s, server peak memory {memory.peak_mb:.0f} MiB")  # fmt: skip


PROBES = ("heavy", "scans", "slow", "batch", "echo", "burst")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("probes", nargs="*", help=f"which probes: {', '.join(PROBES)} (default: all)")
    chosen = parser.parse_args().probes or list(PROBES)
    unknown = sorted(set(chosen) - set(PROBES))
    if unknown:
        parser.error(f"unknown probe(s) {', '.join(unknown)}; choose from {', '.join(PROBES)}")
    if "batch" in chosen:
        probe_batch()
    shared = [name for name in chosen if name != "batch"]
    if shared:
        with server(workers=2) as srv:
            for name in shared:
                globals()[f"probe_{name}"](srv)


if __name__ == "__main__":
    main()
