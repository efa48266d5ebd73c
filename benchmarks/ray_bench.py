"""Specks through Ray Serve against Specks on gunicorn, on one machine, in one run.

(a) Latency the proxy adds: a gunicorn ``specks serve --workers 1`` and a one-replica Ray Serve
    deployment run side by side with the same model, inference threads and settings; seed-style
    ``POST /predict`` requests alternate between them over keep-alive connections, one at a time,
    so both see the same machine state. Reports both medians, their ratio and the difference.
(b) Throughput of 1 vs 2 replicas (1 CPU and 1 inference thread each) at each concurrency, with
    gunicorn at 1 and 2 workers (1 thread each) beside them, each loaded for --duration seconds.

Both servers run with SPECKS_SLICE=off, so a large photo is one full-image inference per request,
as in ``specks bench`` and ``specks load``. Run from the repository root with the ray extra
installed (``make dev`` or ``make ray``):

    .venv/bin/python benchmarks/ray_bench.py --model ../shared/models/yolov5n.onnx \\
        --image ../shared/data/visdrone_dev10/images/9999999_00023_d_0000001.jpg

A script, not part of the package: neither ``specks`` nor the tests import it. It starts its own
local Ray (2 CPUs, a small object store, proxy on loopback) and shuts it down through the API.
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import ray
from ray import serve

from specks.benchmark import ServerProcess, free_port, image_or_synthetic, post_predict
from specks.config import Settings
from specks.loadtest import predict_body, run_load
from specks.web.ray_config import APP_NAME, RayDeployment, Scaling, replica_environ
from specks.web.ray_serve import bind

SETTINGS_ENV = {"SPECKS_SLICE": "off"}
RAY_CPUS = 2


def _connection(url: str) -> http.client.HTTPConnection:
    host, port = url.removeprefix("http://").split(":")
    return http.client.HTTPConnection(host, int(port), timeout=60)


def alternating_medians_ms(urls: dict[str, str], body: bytes, runs: int, warmup: int) -> dict[str, float]:
    """Median latency of each server, timing one request to each in turn (keep-alive)."""
    connections = {name: _connection(url) for name, url in urls.items()}
    samples: dict[str, list[float]] = {name: [] for name in urls}
    for index in range(warmup + runs):
        for name, connection in connections.items():
            started = time.perf_counter()
            post_predict(connection, body)
            if index >= warmup:
                samples[name].append((time.perf_counter() - started) * 1000)
    for connection in connections.values():
        connection.close()
    return {name: statistics.median(values) for name, values in samples.items()}


@contextmanager
def local_ray() -> Iterator[str]:
    """A local Ray with Serve's proxy on a free loopback port -> the proxy's URL."""
    port = free_port()
    ray.init(
        address="local",
        num_cpus=RAY_CPUS,
        include_dashboard=False,
        object_store_memory=200 * 2**20,
        _node_ip_address="127.0.0.1",
        log_to_driver=False,
    )
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        yield f"http://127.0.0.1:{port}"
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()


def deploy(settings: Settings, replicas: int, replica_cpus: float, threads: int) -> None:
    """(Re)deploy Specks with ``replicas`` replicas; returns once every replica has its model."""
    environ = replica_environ(
        {**SETTINGS_ENV, "SPECKS_CACHE_DIR": str(settings.cache_dir)},
        replica_cpus=replica_cpus,
        model=settings.model,
        threads=threads,
    )
    deployment = RayDeployment(Scaling(replicas=replicas), replica_cpus=replica_cpus)
    serve.run(bind(deployment, environ), name=APP_NAME, route_prefix="/")


@contextmanager
def gunicorn(settings: Settings, workers: int, threads: int) -> Iterator[ServerProcess]:
    server = ServerProcess(settings, workers=workers, threads=threads, env=SETTINGS_ENV)
    try:
        server.wait_ready(successes=20)
        yield server
    finally:
        server.stop()


def load(url: str, body: bytes, concurrency: int, args: argparse.Namespace) -> dict[str, Any]:
    report = run_load(url, body, concurrency=concurrency, duration_s=args.duration, warmup_s=args.warmup).to_dict()
    return {key: report[key] for key in ("throughput_per_s", "errors", "measured_requests", "latency_ms")}


def run(args: argparse.Namespace) -> dict[str, Any]:
    settings = Settings(model=args.model, cache_dir=Settings.from_env().cache_dir)
    body = predict_body(image_or_synthetic(args.image))
    results: dict[str, Any] = {"model": args.model, "image": str(args.image or "synthetic"), "latency": {}}
    throughput: dict[str, dict[int, dict[str, Any]]] = {}
    with local_ray() as ray_url:
        # (a) latency: one gunicorn worker and one replica, the same threads, requests alternating.
        deploy(settings, replicas=1, replica_cpus=RAY_CPUS, threads=args.threads)
        with gunicorn(settings, workers=1, threads=args.threads) as server:
            medians = alternating_medians_ms({"gunicorn": server.url, "ray": ray_url}, body, args.runs, args.warmups)
        results["latency"] = {
            "threads": args.threads,
            "runs": args.runs,
            "gunicorn_median_ms": round(medians["gunicorn"], 2),
            "ray_median_ms": round(medians["ray"], 2),
            "ray_over_gunicorn": round(medians["ray"] / medians["gunicorn"], 3),
            "added_ms": round(medians["ray"] - medians["gunicorn"], 2),
        }
        # (b) throughput: 1 and 2 replicas of 1 CPU and 1 thread.
        for replicas in (1, 2):
            serve.delete(APP_NAME)
            deploy(settings, replicas=replicas, replica_cpus=1, threads=1)
            throughput[f"ray, {replicas} replica(s)"] = {c: load(ray_url, body, c, args) for c in args.concurrency}
        serve.delete(APP_NAME)
    for workers in (1, 2):
        with gunicorn(settings, workers=workers, threads=1) as server:
            throughput[f"gunicorn, {workers} worker(s)"] = {
                c: load(server.url, body, c, args) for c in args.concurrency
            }
    results["throughput"] = throughput
    return results


def format_report(results: dict[str, Any], args: argparse.Namespace) -> str:
    latency = results["latency"]
    lines = [
        f"model {results['model']}, image {results['image']}, SPECKS_SLICE=off",
        f"latency, {latency['runs']} alternating requests, {latency['threads']} inference thread(s):",
        f"  gunicorn --workers 1 median {latency['gunicorn_median_ms']:.1f} ms, "
        f"Ray Serve 1 replica median {latency['ray_median_ms']:.1f} ms, "
        f"ratio {latency['ray_over_gunicorn']:.3f}, added {latency['added_ms']:+.1f} ms",
        f"throughput (req/s), {args.duration:.0f} s each after {args.warmup:.0f} s warm-up, "
        "1 thread per replica or worker:",
    ]
    header = "  " + "configuration".ljust(26) + "".join(f"concurrency {c}".rjust(26) for c in args.concurrency)
    lines.append(header)
    for name, by_concurrency in results["throughput"].items():
        cells = []
        for concurrency in args.concurrency:
            row = by_concurrency[concurrency]
            p50 = row["latency_ms"]["p50"] if row["latency_ms"] else float("nan")
            cells.append(f"{row['throughput_per_s']:.2f} (p50 {p50:.0f} ms, {row['errors']} err)".rjust(26))
        lines.append("  " + name.ljust(26) + "".join(cells))
    ray_one, ray_two = (results["throughput"][f"ray, {n} replica(s)"] for n in (1, 2))
    ratios = ", ".join(
        f"x{ray_two[c]['throughput_per_s'] / ray_one[c]['throughput_per_s']:.2f} at {c}" for c in args.concurrency
    )
    lines.append(f"  2 replicas / 1 replica: {ratios}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="an .onnx file (e.g. ../shared/models/yolov5n.onnx)")
    parser.add_argument("--image", type=Path, help="a JPEG (default: a synthetic 2000x1500 photo-like JPEG)")
    parser.add_argument("--threads", type=int, default=2, help="inference threads in the latency part (2)")
    parser.add_argument("--runs", type=int, default=60, help="timed requests per server, latency part (60)")
    parser.add_argument("--warmups", type=int, default=5, help="untimed requests per server first (5)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[4, 8], help="throughput part (4 8)")
    parser.add_argument("--duration", type=float, default=25, help="seconds of load per configuration (25)")
    parser.add_argument("--warmup", type=float, default=5, help="first seconds left out of the figures (5)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    results = run(args)
    if args.json:
        print(orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode())
    else:
        print(format_report(results, args))


if __name__ == "__main__":
    main()
