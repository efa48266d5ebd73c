"""Specks through Ray Serve against Specks on gunicorn, on one machine, in one run.

(a) Latency the proxy adds: a gunicorn ``specks serve --workers 1`` and a one-replica Ray Serve
    deployment run side by side with the same model, inference threads and settings; seed-style
    ``POST /predict`` requests alternate between them over keep-alive connections, one at a time,
    so both see the same machine state. Reports both medians, their ratio and the difference, the
    server-side totals (``timing_ms.total``: the work inside the app) and ``GET /health`` medians.
(b) Throughput of 1 vs 2 replicas (1 CPU and 1 inference thread each) at each concurrency, with
    gunicorn at 1 and 2 workers (1 thread each) beside them. All four run at once; each is loaded
    in turn for --duration seconds, --rounds times, so all see the same mix of machine states
    (this machine is shared and its speed drifts; idle servers cost next to nothing).

Both servers run with SPECKS_SLICE=off, so a large photo is one full-image inference per request,
as in ``specks bench`` and ``specks load``. Run from the repository root with the ray extra
installed (``make dev`` or ``make ray``):

    .venv/bin/python benchmarks/ray_bench.py --model ../shared/models/yolov5n.onnx \\
        --image ../shared/data/visdrone_dev10/images/9999999_00023_d_0000001.jpg

A script, not part of the package: neither ``specks`` nor the tests import it. It starts its own
local Ray (3 logical CPUs, a small object store, proxy on loopback) and shuts it down through the API.
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import ray
from ray import serve

from specks.config import Settings
from specks.tools.benchmark import post_predict
from specks.tools.loadtest import run_load
from specks.tools.server_process import ServerProcess, free_port
from specks.tools.yardstick import image_or_synthetic, predict_body
from specks.web.ray_config import RayDeployment, Scaling, replica_environ
from specks.web.ray_serve import bind

SETTINGS_ENV = {"SPECKS_SLICE": "off"}
# Logical CPUs for Ray's scheduling: three 1-CPU replicas are up at once in the throughput part
# (idle ones cost nothing); the machine's cores are what they share.
RAY_CPUS = 3


def _connection(url: str) -> http.client.HTTPConnection:
    host, port = url.removeprefix("http://").split(":")
    return http.client.HTTPConnection(host, int(port), timeout=60)


def _get_health(connection: http.client.HTTPConnection) -> None:
    connection.request("GET", "/health")
    response = connection.getresponse()
    response.read()
    if response.status != 200:
        raise RuntimeError(f"GET /health answered {response.status}")


def alternating_medians_ms(urls: dict[str, str], body: bytes, runs: int, warmup: int) -> dict[str, dict[str, float]]:
    """Per server: median ``POST /predict`` latency, its server-side total, and ``GET /health`` latency.

    One request to each server in turn (keep-alive), so both see the same machine state.
    """
    connections = {name: _connection(url) for name, url in urls.items()}
    samples: dict[str, dict[str, list[float]]] = {name: {"predict": [], "server": [], "health": []} for name in urls}
    for index in range(warmup + runs):
        for name, connection in connections.items():
            started = time.perf_counter()
            answer = post_predict(connection, body)
            predict_ms = (time.perf_counter() - started) * 1000
            started = time.perf_counter()
            _get_health(connection)
            health_ms = (time.perf_counter() - started) * 1000
            if index >= warmup:
                samples[name]["predict"].append(predict_ms)
                samples[name]["server"].append(answer["timing_ms"]["total"])
                samples[name]["health"].append(health_ms)
    for connection in connections.values():
        connection.close()
    return {name: {kind: statistics.median(v) for kind, v in kinds.items()} for name, kinds in samples.items()}


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


def deploy(settings: Settings, name: str, prefix: str, replicas: int, replica_cpus: float, threads: int) -> str:
    """Deploy Specks as application ``name`` at ``prefix``; returns once every replica has its model."""
    environ = replica_environ(
        {**SETTINGS_ENV, "SPECKS_CACHE_DIR": str(settings.cache_dir)},
        replica_cpus=replica_cpus,
        model=settings.model,
        threads=threads,
    )
    deployment = RayDeployment(Scaling(replicas=replicas), replica_cpus=replica_cpus)
    serve.run(bind(deployment, environ), name=name, route_prefix=prefix)
    return prefix


@contextmanager
def gunicorn(settings: Settings, workers: int, threads: int) -> Iterator[ServerProcess]:
    server = ServerProcess(settings, workers=workers, threads=threads, env=SETTINGS_ENV)
    try:
        server.wait_ready(successes=20)
        yield server
    finally:
        server.stop()


def interleaved_throughput(
    urls: dict[str, str], body: bytes, concurrency: int, args: argparse.Namespace
) -> dict[str, dict[str, Any]]:
    """Each server loaded in turn for --rounds short rounds, so all see the same machine states.

    Throughput is measured requests over measured seconds, summed over the rounds; latency
    percentiles are the medians of the rounds' p50.
    """
    requests: dict[str, int] = dict.fromkeys(urls, 0)
    seconds: dict[str, float] = dict.fromkeys(urls, 0.0)
    errors: dict[str, int] = dict.fromkeys(urls, 0)
    p50s: dict[str, list[float]] = {name: [] for name in urls}
    for _ in range(args.rounds):
        for name, url in urls.items():
            report = run_load(url, body, concurrency=concurrency, duration_s=args.duration, warmup_s=args.warmup)
            start_s, end_s = report.window_s()
            requests[name] += round(report.throughput_per_s * (end_s - start_s))
            seconds[name] += end_s - start_s
            errors[name] += report.errors
            percentiles = report.latency_percentiles_ms()
            if percentiles:
                p50s[name].append(percentiles["p50"])
    return {
        name: {
            "throughput_per_s": round(requests[name] / seconds[name], 3),
            "measured_requests": requests[name],
            "errors": errors[name],
            "p50_ms": round(statistics.median(p50s[name]), 1) if p50s[name] else None,
        }
        for name in urls
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    settings = Settings(model=args.model, cache_dir=Settings.from_env().cache_dir)
    body = predict_body(image_or_synthetic(args.image))
    results: dict[str, Any] = {"model": args.model, "image": str(args.image or "synthetic")}
    with local_ray() as proxy:
        # (a) latency: one gunicorn worker and one replica, the same threads, requests alternating.
        deploy(settings, "latency", "/", replicas=1, replica_cpus=2, threads=args.threads)
        with gunicorn(settings, workers=1, threads=args.threads) as server:
            urls = {"gunicorn": server.url, "ray": proxy}
            medians = alternating_medians_ms(urls, body, args.runs, args.warmups)
        serve.delete("latency")
        results["latency"] = {
            "threads": args.threads,
            "runs": args.runs,
            **{f"{name}_median_ms": {k: round(v, 2) for k, v in m.items()} for name, m in medians.items()},
            "ray_over_gunicorn": round(medians["ray"]["predict"] / medians["gunicorn"]["predict"], 3),
            "added_ms": round(medians["ray"]["predict"] - medians["gunicorn"]["predict"], 2),
        }
        # (b) throughput: 1 and 2 replicas, 1 and 2 gunicorn workers, 1 thread each, all up at once.
        one = deploy(settings, "one", "/one", replicas=1, replica_cpus=1, threads=1)
        two = deploy(settings, "two", "/two", replicas=2, replica_cpus=1, threads=1)
        with gunicorn(settings, workers=1, threads=1) as g1, gunicorn(settings, workers=2, threads=1) as g2:
            urls = {
                "ray, 1 replica": proxy + one + "/predict",
                "ray, 2 replicas": proxy + two + "/predict",
                "gunicorn, 1 worker": g1.url,
                "gunicorn, 2 workers": g2.url,
            }
            by_concurrency = {c: interleaved_throughput(urls, body, c, args) for c in args.concurrency}
    results["throughput"] = {name: {c: by_concurrency[c][name] for c in args.concurrency} for name in urls}
    results["load_average_1m_at_end"] = os.getloadavg()[0]
    return results


def format_report(results: dict[str, Any], args: argparse.Namespace) -> str:
    latency = results["latency"]
    gunicorn, ray_ = latency["gunicorn_median_ms"], latency["ray_median_ms"]
    lines = [
        f"model {results['model']}, image {results['image']}, SPECKS_SLICE=off",
        f"latency, {latency['runs']} alternating requests, {latency['threads']} inference thread(s):",
        f"  POST /predict median: gunicorn --workers 1 {gunicorn['predict']:.1f} ms, "
        f"Ray Serve 1 replica {ray_['predict']:.1f} ms, "
        f"ratio {latency['ray_over_gunicorn']:.3f}, added {latency['added_ms']:+.1f} ms",
        f"  server-side timing_ms.total median: gunicorn {gunicorn['server']:.1f} ms, Ray {ray_['server']:.1f} ms",
        f"  GET /health median: gunicorn {gunicorn['health']:.1f} ms, Ray {ray_['health']:.1f} ms",
        f"throughput (req/s), {args.rounds} interleaved rounds of {args.duration:.0f} s "
        f"({args.warmup:.0f} s warm-up each), 1 inference thread per replica or worker:",
        "  " + "configuration".ljust(22) + "".join(f"concurrency {c}".rjust(28) for c in args.concurrency),
    ]
    for name, by_concurrency in results["throughput"].items():
        cells = [
            f"{row['throughput_per_s']:.2f} (p50 {row['p50_ms']} ms, {row['errors']} err)".rjust(28)
            for row in (by_concurrency[c] for c in args.concurrency)
        ]
        lines.append("  " + name.ljust(22) + "".join(cells))
    throughput = results["throughput"]
    for upper, lower in (("ray, 2 replicas", "ray, 1 replica"), ("ray, 2 replicas", "gunicorn, 2 workers")):
        ratios = ", ".join(
            f"x{throughput[upper][c]['throughput_per_s'] / throughput[lower][c]['throughput_per_s']:.2f} at {c}"
            for c in args.concurrency
        )
        lines.append(f"  {upper} / {lower}: {ratios}")
    lines.append(f"load average (1 min) at the end: {results['load_average_1m_at_end']:.2f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="an .onnx file (e.g. ../shared/models/yolov5n.onnx)")
    parser.add_argument("--image", type=Path, help="a JPEG (default: a synthetic 2000x1500 photo-like JPEG)")
    parser.add_argument("--threads", type=int, default=2, help="inference threads in the latency part (2)")
    parser.add_argument("--runs", type=int, default=60, help="timed requests per server, latency part (60)")
    parser.add_argument("--warmups", type=int, default=5, help="untimed requests per server first (5)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[4, 8], help="throughput part (4 8)")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds per concurrency (4)")
    parser.add_argument("--duration", type=float, default=8, help="seconds of load per configuration and round (8)")
    parser.add_argument("--warmup", type=float, default=1, help="first seconds of each round left out (1)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    results = run(args)
    if args.json:
        print(orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode())
    else:
        print(format_report(results, args))


if __name__ == "__main__":
    main()
