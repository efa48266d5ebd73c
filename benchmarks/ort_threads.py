"""ONNX Runtime thread settings on one model, measured in one process, interleaved run by run.

Prints, for a model at one input size:
- run time with idle threads never spinning (Specks' setting until December 2026) against
  spinning during a run and stopping when it returns (``session.force_spinning_stop``, Specks'
  setting now), both on every core;
- the CPU time a process burns during a pause after a run, with ONNX Runtime's defaults and with
  the spinning stopped at the run's end (what a bare-call yardstick takes from a server beside it);
- one thread against every core (what a lone client gains from adaptive threads);
- the resident memory a second, every-core session adds once it has run (adaptive threads' cost).

    .venv/bin/python benchmarks/ort_threads.py                                   # the embedded default, 640x480
    .venv/bin/python benchmarks/ort_threads.py --model ../shared/models/yolov5n.onnx --size 640x640
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort

from specks.config import RuntimeOptions, cpu_count
from specks.models import load_model
from specks.models.onnx_model import session_options

PAUSE_S = 0.05
ort.set_default_logger_severity(3)  # no warning for the overwritten spinning entry


def session(graph: str | bytes, threads: int, **config: str) -> ort.InferenceSession:
    options = session_options(threads)
    for key, value in config.items():
        options.add_session_config_entry(key, value)
    return ort.InferenceSession(graph, sess_options=options, providers=["CPUExecutionProvider"])


def interleaved_ms(runs: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    for run in runs.values():
        for _ in range(3):
            run()
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            samples[name].append((time.perf_counter() - start) * 1000)
    return samples


def cpu_ms_in_pause_after_run(run: Callable[[], object], rounds: int) -> float:
    total = 0.0
    for _ in range(rounds):
        run()
        start = time.process_time()
        time.sleep(PAUSE_S)
        total += time.process_time() - start
    return total / rounds * 1000


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096 / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model", help="an .onnx file (default: the embedded YOLOX-Nano)")
    parser.add_argument("--size", default="640x480", help="input WxH (default 640x480)")
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()

    width, height = (int(v) for v in args.size.split("x"))
    model = load_model(args.model, runtime=RuntimeOptions(), threads=1, cache_dir=Path("/tmp/specks-ort-threads"))
    graph = str(model.graph) if isinstance(model.graph, Path) else model.graph
    assert graph is not None
    feed = {model.info.input_name: np.random.default_rng(0).random((1, 3, height, width), dtype=np.float32)}
    cores = cpu_count()

    for _ in range(2):
        model.session.run(None, feed)
    before_mib = rss_mib()
    wide = session(graph, cores)
    for _ in range(2):
        wide.run(None, feed)
    wide_mib = rss_mib() - before_mib
    del wide
    sessions = {
        f"no spinning, {cores} threads": session(graph, cores, **{"session.intra_op.allow_spinning": "0"}),
        f"spinning during runs, {cores} threads": session(graph, cores),
        "spinning during runs, 1 thread": session(graph, 1),
    }
    runs = {name: (lambda s=s: s.run(None, feed)) for name, s in sessions.items()}
    samples = interleaved_ms(runs, args.rounds)
    print(f"{model.info.name} at {width}x{height}, {args.rounds} interleaved rounds, median ms (quartiles):")
    for name, values in samples.items():
        low, median, high = statistics.quantiles(values, n=4)
        print(f"  {name:34s} {median:7.2f}  ({low:.2f}..{high:.2f})")
    names = list(samples)
    paired = [a / b for a, b in zip(samples[names[0]], samples[names[1]], strict=True)]
    alone = [a / b for a, b in zip(samples[names[2]], samples[names[1]], strict=True)]
    print(f"  no spinning / spinning during runs: {statistics.median(paired):.2f} (median of pairs)")
    print(f"  1 thread / {cores} threads:            {statistics.median(alone):.2f} (median of pairs)")

    defaults = ort.SessionOptions()
    defaults.intra_op_num_threads = cores
    plain = ort.InferenceSession(graph, sess_options=defaults, providers=["CPUExecutionProvider"])
    stopped = session(graph, cores)
    rounds = max(10, args.rounds // 2)
    print(f"a second session on {cores} threads, after two runs: +{wide_mib:.0f} MiB resident")
    print(f"CPU burnt during a {PAUSE_S * 1000:.0f} ms pause after each run ({rounds} runs):")
    burnt_plain = cpu_ms_in_pause_after_run(lambda: plain.run(None, feed), rounds)
    burnt_stopped = cpu_ms_in_pause_after_run(lambda: stopped.run(None, feed), rounds)
    print(f"  ONNX Runtime defaults:              {burnt_plain:.1f} ms")
    print(f"  spinning stopped at the run's end:  {burnt_stopped:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
