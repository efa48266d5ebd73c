"""Timing harnesses that return data; the CLI prints it.

``run_latency_benchmark`` measures, on one model and one image in one run:
- the median end-to-end ``POST /predict`` latency against a real ``specks serve`` process
  (one worker, seed-style JSON body plus ``"slice": false``, keep-alive connection), and
- the median bare ``InferenceSession.run`` time on the already prepared input tensor,
and their ratio, the overhead of everything that is not the network forward pass.
"""

from __future__ import annotations

import base64
import http.client
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import orjson

from .config import Settings
from .errors import SpecksError


def synthetic_photo_jpeg(width: int = 2000, height: int = 1500, quality: int = 90) -> bytes:
    """A photo-like JPEG (smooth shapes plus sensor noise), deterministic."""
    from PIL import Image

    rng = np.random.default_rng(42)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([xx / width * 200, yy / height * 180, (xx + yy) / (width + height) * 220], axis=2)
    for _ in range(60):  # scattered blobs, some small, as in a drone photo
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(4, 80)
        mask = (xx - cx) ** 2 + (yy - cy) ** 2 < r * r
        base[mask] = rng.uniform(0, 255, 3)
    pixels = np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def image_or_synthetic(path: Path | None) -> bytes:
    """The image file's bytes (an unreadable path is a SpecksError), or the synthetic photo."""
    if path is None:
        return synthetic_photo_jpeg()
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SpecksError(f"cannot read {path}: {exc.strerror}") from exc


def _median_ms(fn: Callable[[], object], runs: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_steadily_ready(
    url: str, *, successes: int = 20, timeout_s: float = 120, check_alive: Callable[[], None] | None = None
) -> None:
    """Wait until ``GET /ready`` answers 200 on ``successes`` fresh connections in a row.

    A gunicorn server answers ready as soon as one worker has loaded its model; the others
    may still answer 503 for a while. Each connection goes to whichever worker accepts it,
    so 20 successes in a row leave a still-loading worker of two a one-in-a-million chance.
    ``check_alive`` raises when the server has died (no point waiting for it).
    """
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    deadline = time.monotonic() + timeout_s
    in_a_row = 0
    while in_a_row < successes:
        if check_alive is not None:
            check_alive()
        if time.monotonic() > deadline:
            raise SpecksError(f"{url} did not answer GET /ready steadily within {timeout_s:.0f} s")
        connection = http.client.HTTPConnection(host, port, timeout=5)
        try:
            connection.request("GET", "/ready")
            response = connection.getresponse()
            response.read()
            in_a_row = in_a_row + 1 if response.status == 200 else 0
        except (OSError, http.client.HTTPException):
            in_a_row = 0
        finally:
            connection.close()
        if in_a_row == 0:
            time.sleep(0.2)


class ServerProcess:
    """A ``specks serve`` subprocess on a free loopback port, for timing through real HTTP.

    workers / threads None keep the server's defaults (one worker per core, cores / workers
    inference threads); ``env`` adds SPECKS_* variables, e.g. ``{"SPECKS_SLICE": "off"}``.
    Its output goes to a temporary file, not a pipe: a pipe nobody reads would fill up under
    load and block the server's logging.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        workers: int | None = None,
        threads: int | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "specks.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        if workers is not None:
            command += ["--workers", str(workers)]
        if threads is not None:
            command += ["--threads", str(threads)]
        if settings.model:
            command += ["--model", settings.model]
        for spec in settings.models:
            command += ["--model", f"{spec.name}={spec.path}"]
        full_env = {**os.environ, "SPECKS_CACHE_DIR": str(settings.cache_dir), **(env or {})}
        self._output = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the server; closed in stop)
        self.process = subprocess.Popen(command, env=full_env, stdout=self._output, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        """The gunicorn master's process id (its children are the workers)."""
        return self.process.pid

    def output_tail(self, chars: int = 2000) -> str:
        self._output.seek(0)
        return self._output.read().decode(errors="replace")[-chars:]

    def wait_ready(self, timeout_s: float = 120, *, successes: int = 1) -> None:
        """Wait for ``successes`` 200s from ``GET /ready`` in a row (see ``wait_until_steadily_ready``)."""
        wait_until_steadily_ready(self.url, successes=successes, timeout_s=timeout_s, check_alive=self._check_alive)

    def _check_alive(self) -> None:
        if self.process.poll() is not None:
            raise SpecksError(f"the benchmark server exited early:\n{self.output_tail()}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=20)
        self._output.close()


def post_predict(connection: http.client.HTTPConnection, body: bytes) -> dict[str, Any]:
    """One seed-style ``POST /predict`` on a kept-alive connection -> the decoded JSON answer.

    Anything but 200 is a SpecksError: a benchmark must not time error answers.
    """
    connection.request("POST", "/predict", body=body, headers={"Content-type": "application/json"})
    response = connection.getresponse()
    payload = response.read()
    if response.status != 200:
        raise SpecksError(f"POST /predict answered {response.status}: {payload[:300]!r}")
    answer: dict[str, Any] = orjson.loads(payload)
    return answer


def _post_predict(port: int, body: bytes, runs: int, warmup: int) -> tuple[float, list[dict[str, float]]]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    stage_timings: list[dict[str, float]] = []

    def one_request() -> None:
        stage_timings.append(post_predict(connection, body)["timing_ms"])

    median_ms = _median_ms(one_request, runs, warmup)
    connection.close()
    return median_ms, stage_timings[warmup:]


def run_latency_benchmark(
    settings: Settings, *, image_path: Path | None = None, runs: int = 50, warmup: int = 5
) -> dict[str, Any]:
    """End-to-end POST /predict vs bare session.run on the same model, image and thread count."""
    from .imaging import read_image_size
    from .pipeline import load_detector

    image_bytes = image_or_synthetic(image_path)
    threads = settings.threads_for(1)
    # Full-image inference at the model's input size: the path whose overhead this measures
    # ("auto" would slice a large photo into tiles, which is a different workload).
    body = orjson.dumps({"image": base64.b64encode(image_bytes).decode("ascii"), "slice": False})

    server = ServerProcess(settings, workers=1, threads=threads)
    try:
        server.wait_ready()
        end_to_end_ms, stage_timings = _post_predict(server.port, body, runs, warmup)
    finally:
        server.stop()

    detector = load_detector(settings, threads=threads)
    model, info = detector.model, detector.model.info
    tensor = detector.prepared_input(image_bytes)
    size, _ = read_image_size(image_bytes)
    bare_ms = _median_ms(lambda: model.session.run(None, {info.input_name: tensor}), runs, warmup)

    stages = {key: statistics.median(t[key] for t in stage_timings) for key in stage_timings[0]}
    return {
        "model": info.name,
        "image": {
            "path": str(image_path) if image_path else "synthetic",
            "bytes": len(image_bytes),
            "width": size.width,
            "height": size.height,
        },
        "input_tensor_shape": list(tensor.shape),
        "threads": threads,
        "runs": runs,
        "end_to_end_ms": round(end_to_end_ms, 2),
        "bare_session_run_ms": round(bare_ms, 2),
        "ratio": round(end_to_end_ms / bare_ms, 3),
        "server_stage_median_ms": {k: round(v, 2) for k, v in stages.items()},
    }


def format_latency_report(report: dict[str, Any]) -> str:
    image = report["image"]
    lines = [
        f"model:                 {report['model']}",
        f"image:                 {image['path']} ({image['width']}x{image['height']}, {image['bytes']} bytes)",
        f"input tensor:          {report['input_tensor_shape']}, {report['threads']} thread(s), {report['runs']} runs",
        f"end-to-end POST /predict median: {report['end_to_end_ms']:8.2f} ms",
        f"bare session.run median:         {report['bare_session_run_ms']:8.2f} ms",
        f"ratio end-to-end / bare:         {report['ratio']:8.3f}",
        "server-side stages (median ms): " + ", ".join(f"{k} {v}" for k, v in report["server_stage_median_ms"].items()),
    ]
    return "\n".join(lines)
