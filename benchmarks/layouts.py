"""Worker / thread layouts of `specks serve`, compared in one run (paired, as `specks bench`).

Starts one server per layout (each a `specks serve` with no flags but the layout's SPECKS_*
variables) side by side, then:
- one client: each round sends one full-image request to every layout in turn and makes one bare
  `session.run` with every core; each layout's ratio is its latency over that round's bare call;
- concurrency N: each round loads every layout in turn for --round-seconds, then times bare
  sequential calls; each layout's ratio is its throughput over that round's bare rate.
Idle servers take no CPU (their inference threads stop spinning when a run returns).

    .venv/bin/python benchmarks/layouts.py --image ../shared/data/visdrone_dev10/images/9999999_00023_d_0000001.jpg

Layouts (--layout NAME=VAR=VALUE,VAR=VALUE; repeatable): by default `adaptive` (the defaults),
`fixed` (SPECKS_ADAPTIVE_THREADS=off: cores / workers threads always) and `wide` (SPECKS_THREADS
= every core in every worker).
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import sys
import time
from pathlib import Path

from specks.config import Settings, cpu_count
from specks.tools.benchmark import post_predict
from specks.tools.loadtest import run_load
from specks.tools.server_process import ServerProcess
from specks.tools.yardstick import BareModel, bare_rate_per_s, full_image_body, image_or_synthetic


def parse_layout(text: str) -> tuple[str, dict[str, str]]:
    name, _, assignments = text.partition("=")
    env = dict(pair.split("=", 1) for pair in assignments.split(",") if pair)
    return name, env


def default_layouts() -> list[tuple[str, dict[str, str]]]:
    return [
        ("adaptive", {}),
        ("fixed", {"SPECKS_ADAPTIVE_THREADS": "off"}),
        ("wide", {"SPECKS_THREADS": str(cpu_count())}),
    ]


def quartiles(values: list[float]) -> str:
    low, median, high = statistics.quantiles(values, n=4)
    return f"{median:.3f} (quartiles {low:.3f}..{high:.3f})"


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} (range {min(values):.3f}..{max(values):.3f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--image", type=Path, help="a JPEG (default: a synthetic 2000x1500 photo)")
    parser.add_argument("--model", help="model (default: the embedded YOLOX-Nano)")
    parser.add_argument("--layout", action="append", type=parse_layout, help="NAME=VAR=VALUE,... (repeatable)")
    parser.add_argument("--runs", type=int, default=40, help="one-client rounds (default 40)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="load rounds (default 3)")
    parser.add_argument("--round-seconds", type=float, default=8.0)
    args = parser.parse_args()

    settings = Settings(model=args.model)
    image_bytes = image_or_synthetic(args.image)
    body = full_image_body(image_bytes)
    bare = BareModel(settings, image_bytes, cpu_count())
    layouts = args.layout or default_layouts()
    servers = {name: ServerProcess(settings, env=env) for name, env in layouts}
    try:
        for server in servers.values():
            server.wait_ready(successes=20)
        connections = {name: http.client.HTTPConnection("127.0.0.1", s.port, timeout=60) for name, s in servers.items()}
        for _ in range(5):  # warm-up
            for connection in connections.values():
                post_predict(connection, body)
        ratios: dict[str, list[float]] = {name: [] for name in servers}
        for _ in range(args.runs):
            elapsed = {}
            for name, connection in connections.items():
                start = time.perf_counter()
                post_predict(connection, body)
                elapsed[name] = time.perf_counter() - start
            start = time.perf_counter()
            bare()
            bare_s = time.perf_counter() - start
            for name, seconds in elapsed.items():
                ratios[name].append(seconds / bare_s)
        for connection in connections.values():
            connection.close()

        throughput: dict[str, list[float]] = {name: [] for name in servers}
        for _ in range(args.rounds):
            rates = {
                name: run_load(
                    server.url, body, concurrency=args.concurrency, duration_s=args.round_seconds, warmup_s=2
                ).throughput_per_s
                for name, server in servers.items()
            }
            bare_rate = bare_rate_per_s(bare, args.round_seconds / 2)
            for name, rate in rates.items():
                throughput[name].append(rate / bare_rate)
    finally:
        for server in servers.values():
            server.stop()

    print(f"model {bare.info.name}, image {args.image or 'synthetic'}, bare: {cpu_count()} threads")
    print(f"{'layout':10s} {'one client / bare':36s} c{args.concurrency} throughput / bare sequential")
    for name, env in layouts:
        shown = ",".join(f"{k}={v}" for k, v in env.items()) or "defaults"
        print(f"{name:10s} {quartiles(ratios[name]):36s} {spread(throughput[name])}   [{shown}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
