"""Timing harnesses that return data; the CLI prints it.

``run_latency_benchmark`` measures, on one model and one image in one run:
- the median end-to-end ``POST /predict`` latency against a real ``specks serve`` process
  (one worker, seed-style JSON body plus ``"slice": false``, keep-alive connection), and
- the median bare ``InferenceSession.run`` time on the already prepared input tensor
  (the yardstick, ``yardstick.BareModel``),
and their ratio, the overhead of everything that is not the network forward pass.
"""

from __future__ import annotations

import http.client
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from ..config import Settings
from ..errors import SpecksError
from .loadtest import run_load
from .server_process import ServerProcess
from .yardstick import BareModel, bare_rate_per_s, full_image_body, image_or_synthetic, percentile, predict_body


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


@dataclass(frozen=True)
class Interleaved:
    """Paired samples: one end-to-end request, then one bare call, ``runs`` times over.

    Pairing keeps the ratio meaningful on a machine whose speed drifts: each pair ran within
    a few tens of milliseconds of each other.
    """

    end_to_end_ms: tuple[float, ...]
    bare_ms: tuple[float, ...]
    stage_ms: tuple[Mapping[str, float], ...]

    @property
    def pair_ratios(self) -> list[float]:
        return sorted(e / b for e, b in zip(self.end_to_end_ms, self.bare_ms, strict=True))

    def summary(self) -> dict[str, Any]:
        ratios = self.pair_ratios
        stages = {key: statistics.median(t[key] for t in self.stage_ms) for key in self.stage_ms[0]}
        return {
            "end_to_end_ms": round(statistics.median(self.end_to_end_ms), 2),
            "bare_session_run_ms": round(statistics.median(self.bare_ms), 2),
            # The median of the pairs' ratios, and the quartiles of that spread.
            "ratio": round(statistics.median(ratios), 3),
            "ratio_quartiles": [round(percentile(ratios, q), 3) for q in (25, 75)],
            "server_stage_median_ms": {k: round(v, 2) for k, v in stages.items()},
        }


def interleave(
    request: Callable[[], Mapping[str, float]], bare: Callable[[], object], *, runs: int, warmup: int
) -> Interleaved:
    """``request`` (returning the server's timing_ms) and ``bare`` in turn, each timed alone."""
    for _ in range(warmup):
        request()
        bare()
    end_to_end, bare_ms, stages = [], [], []
    for _ in range(runs):
        start = time.perf_counter()
        stages.append(request())
        end_to_end.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        bare()
        bare_ms.append((time.perf_counter() - start) * 1000)
    return Interleaved(tuple(end_to_end), tuple(bare_ms), tuple(stages))


def run_latency_benchmark(
    settings: Settings,
    *,
    image_path: Path | None = None,
    runs: int = 50,
    warmup: int = 5,
    workers: int = 1,
    threads: int | None = None,
) -> dict[str, Any]:
    """End-to-end POST /predict vs bare session.run, interleaved, on the same model, image and cores.

    The server gets ``workers`` workers of ``threads`` inference threads (default: one worker with
    every core); the bare session gets ``threads`` too (default every core).
    """
    from ..core.imaging import read_image_size

    image_bytes = image_or_synthetic(image_path)
    threads = threads or settings.threads_for(1)
    body = full_image_body(image_bytes)
    bare = BareModel(settings, image_bytes, threads)
    server = ServerProcess(settings, workers=workers, threads=threads)
    try:
        server.wait_ready(successes=20)
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        result = interleave(lambda: post_predict(connection, body)["timing_ms"], bare, runs=runs, warmup=warmup)
        connection.close()
    finally:
        server.stop()
    size, _ = read_image_size(image_bytes)
    return {
        "model": bare.info.name,
        "image": {
            "path": str(image_path) if image_path else "synthetic",
            "bytes": len(image_bytes),
            "width": size.width,
            "height": size.height,
        },
        "input_tensor_shape": list(bare.tensors[0].shape),
        "workers": workers,
        "threads": threads,
        "runs": runs,
        **result.summary(),
    }


def format_latency_report(report: dict[str, Any]) -> str:
    image = report["image"]
    low, high = report["ratio_quartiles"]
    lines = [
        f"model:                 {report['model']}",
        f"image:                 {image['path']} ({image['width']}x{image['height']}, {image['bytes']} bytes)",
        f"input tensor:          {report['input_tensor_shape']}, server {report['workers']} worker(s) x "
        f"{report['threads']} thread(s), bare {report['threads']} thread(s), {report['runs']} interleaved pairs",
        f"end-to-end POST /predict median: {report['end_to_end_ms']:8.2f} ms",
        f"bare session.run median:         {report['bare_session_run_ms']:8.2f} ms",
        f"ratio end-to-end / bare:         {report['ratio']:8.3f}  (median of pairs; quartiles {low}..{high})",
        "server-side stages (median ms): " + ", ".join(f"{k} {v}" for k, v in report["server_stage_median_ms"].items()),
    ]
    return "\n".join(lines)


# -- the default configuration: `specks serve` with no flags -------------------------------------


def interleaved_throughput(
    url: str, body: bytes, bare: Callable[[], object], *, concurrency: int, rounds: int, round_s: float
) -> dict[str, Any]:
    """``rounds`` times: ``concurrency`` clients for ``round_s`` s, then bare sequential calls for
    ``round_s`` / 2 s; each round's ratio is its throughput over the bare rate next to it."""
    warmup_s = min(2.0, round_s / 3)
    rates, bare_rates, errors = [], [], 0
    for _ in range(rounds):
        report = run_load(url, body, concurrency=concurrency, duration_s=round_s, warmup_s=warmup_s)
        rates.append(report.throughput_per_s)
        errors += report.errors
        bare_rates.append(bare_rate_per_s(bare, round_s / 2))
    ratios = [r / b for r, b in zip(rates, bare_rates, strict=True)]
    return {
        "concurrency": concurrency,
        "rounds": rounds,
        "round_s": round_s,
        "errors": errors,
        "throughput_per_s": [round(r, 2) for r in rates],
        "bare_sequential_per_s": [round(b, 2) for b in bare_rates],
        "ratio": round(statistics.median(ratios), 3),
        "ratio_range": [round(min(ratios), 3), round(max(ratios), 3)],
    }


def run_default_config_benchmark(
    settings: Settings,
    *,
    image_path: Path | None = None,
    runs: int = 40,
    warmup: int = 5,
    concurrency: int = 8,
    rounds: int = 4,
    round_s: float = 10.0,
) -> dict[str, Any]:
    """``specks serve`` with no flags (default workers, threads, slicing), in one run:

    - one client, full-image requests, interleaved with bare calls using every core;
    - ``concurrency`` clients, full-image requests, against bare sequential calls (throughput);
    - ``concurrency`` clients, seed-style requests (small-object mode, server defaults), against
      the bare cost of the same model passes (every tensor such a request runs, in turn).
    """
    from ..config import cpu_count
    from ..core.options import DetectOptions

    image_bytes = image_or_synthetic(image_path)
    cores = cpu_count()
    bare = BareModel(settings, image_bytes, cores)
    bare_passes = BareModel(settings, image_bytes, cores, options=DetectOptions())  # server defaults

    full_body = full_image_body(image_bytes)
    server = ServerProcess(settings)  # no --workers, no --threads: the defaults
    try:
        server.wait_ready(successes=20)  # every worker has its model
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        single = interleave(lambda: post_predict(connection, full_body)["timing_ms"], bare, runs=runs, warmup=warmup)
        connection.close()
        full_load = interleaved_throughput(
            server.url, full_body, bare, concurrency=concurrency, rounds=rounds, round_s=round_s
        )
        small_load = interleaved_throughput(
            server.url, predict_body(image_bytes), bare_passes, concurrency=concurrency, rounds=rounds, round_s=round_s
        )
    finally:
        server.stop()
    return {
        "model": bare.info.name,
        "image": str(image_path) if image_path else "synthetic",
        "server": {
            "workers": settings.resolved_workers(),
            "threads_per_worker": settings.resolved_threads(),
            "threads_when_alone": settings.wide_threads() or settings.resolved_threads(),
        },
        "bare_threads": cores,
        "single_client": {"runs": runs, **single.summary()},
        "full_image_load": full_load,
        "small_object_load": {
            "model_passes": [list(t.shape) for t in bare_passes.tensors],
            **small_load,
        },
    }


def format_default_config_report(report: dict[str, Any]) -> str:
    single, full, small = report["single_client"], report["full_image_load"], report["small_object_load"]
    server = report["server"]
    low, high = single["ratio_quartiles"]

    def load_line(name: str, load: dict[str, Any]) -> str:
        rates = "/".join(f"{r:g}" for r in load["throughput_per_s"])
        bares = "/".join(f"{b:g}" for b in load["bare_sequential_per_s"])
        low_r, high_r = load["ratio_range"]
        return (
            f"{name}: {rates} req/s vs bare {bares} per s; ratio {load['ratio']:.3f} "
            f"(range {low_r}..{high_r} over {load['rounds']} rounds, {load['errors']} errors)"
        )

    passes = ", ".join("x".join(map(str, shape)) for shape in small["model_passes"])
    return "\n".join(
        [
            f"model:          {report['model']}    image: {report['image']}",
            f"server:         defaults, {server['workers']} worker(s) x {server['threads_per_worker']} thread(s) "
            f"({server['threads_when_alone']} while no other request is in progress); "
            f"bare: {report['bare_threads']} thread(s)",
            f"one client:     end-to-end {single['end_to_end_ms']} ms, bare {single['bare_session_run_ms']} ms, "
            f"ratio {single['ratio']:.3f} (quartiles {low}..{high}, {single['runs']} pairs)",
            "                server stages (median ms): "
            + ", ".join(f"{k} {v}" for k, v in single["server_stage_median_ms"].items()),
            load_line(f"full image, concurrency {full['concurrency']}", full),
            f"small-object passes per request: {passes}",
            load_line(f"small-object, concurrency {small['concurrency']}", small),
        ]
    )
