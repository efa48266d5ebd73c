"""``specks bench`` and ``specks load``: latency and throughput of the HTTP API, and their reports.

``bench`` times one client against bare ``session.run``; ``load`` keeps a fixed number of requests in
flight against a server it starts (or one at ``--url``) and samples its workers' memory.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import orjson

from .args import SLICE_MODES, Subparsers, add_model_args, settings_from_args


def add_bench_parser(sub: Subparsers) -> None:
    """``specks bench``: one client's latency against bare session.run."""
    bench = sub.add_parser("bench", help="end-to-end POST /predict latency vs bare session.run")
    bench.add_argument("--image", type=Path, help="a JPEG (default: a synthetic 2000x1500 photo-like JPEG)")
    bench.add_argument("--runs", type=int, default=50, help="timed requests (default 50)")
    bench.add_argument("--warmup", type=int, default=5, help="untimed requests first (default 5)")
    bench.add_argument(
        "--default-config",
        action="store_true",
        help="serve with no flags: one client vs bare on every core, then concurrency 8 full-image and "
        "small-object load vs bare sequential (ignores --threads for the server)",
    )
    bench.add_argument("--rounds", type=int, default=4, help="--default-config: load rounds (default 4)")
    bench.add_argument("--round-seconds", type=float, default=10, help="--default-config: seconds a round (default 10)")
    bench.add_argument("--json", action="store_true", help="print JSON")
    add_model_args(bench)


def cmd_bench(args: argparse.Namespace) -> int:
    """Time POST /predict against bare session.run and print the report (or JSON)."""

    from ..tools.benchmark import (
        format_default_config_report,
        format_latency_report,
        run_default_config_benchmark,
        run_latency_benchmark,
    )

    settings = settings_from_args(args)
    if args.default_config:
        report = run_default_config_benchmark(
            settings,
            image_path=args.image,
            runs=args.runs,
            warmup=args.warmup,
            rounds=args.rounds,
            round_s=args.round_seconds,
        )
        text = format_default_config_report(report)
    else:
        report = run_latency_benchmark(settings, image_path=args.image, runs=args.runs, warmup=args.warmup)
        text = format_latency_report(report)
    print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() if args.json else text)
    return 0


def add_load_parser(sub: Subparsers) -> None:
    """``specks load``: a load test at a fixed concurrency."""
    load = sub.add_parser(
        "load",
        help="load test: throughput, latency percentiles, errors and worker memory at a fixed concurrency",
        description="Sends the seed-style request (a JSON body with the base64 image) back to back from "
        "--concurrency keep-alive connections. With --model (or neither option) it starts its own "
        "'specks serve' on 127.0.0.1 with the default workers and SPECKS_SLICE=off, so a large photo runs "
        "the model once on the whole image (slicing a 2000x1500 photo would be about 13 model runs per "
        "request, a different workload), samples the workers' memory, and afterwards times bare "
        "session.run on the same model for comparison.",
    )
    target = load.add_mutually_exclusive_group()
    target.add_argument("--url", help="load a server that is already running, e.g. http://127.0.0.1:6060")
    target.add_argument(
        "--model", help="start a server with this model (default: the embedded one); slicing off, see above"
    )
    load.add_argument("--image", type=Path, help="a JPEG (default: a synthetic photo-like JPEG, see --image-size)")
    load.add_argument(
        "--image-size", type=_size_wh, default=(2000, 1500), help="the synthetic photo's WxH (default 2000x1500)"
    )
    load.add_argument("--concurrency", type=int, default=8, help="requests in flight (default 8)")
    load.add_argument("--duration", type=float, default=60, help="seconds of sending (default 60)")
    load.add_argument("--requests", type=int, help="stop after this many requests (default: no limit)")
    load.add_argument("--warmup", type=float, default=5, help="first seconds left out of the figures (default 5)")
    load.add_argument("--timeout", type=float, default=60, help="seconds a request may take (default 60)")
    load.add_argument("--workers", type=int, help="workers of the server started here (default: one per core)")
    load.add_argument(
        "--slice",
        choices=list(SLICE_MODES),
        default="off",
        help="SPECKS_SLICE of the server started here (default off: one model run per request)",
    )
    load.add_argument("--json", action="store_true", help="print JSON")


def _size_wh(text: str) -> tuple[int, int]:
    """'6000x4000' -> (6000, 4000)."""
    width, sep, height = text.lower().partition("x")
    if not (sep and width.isdigit() and height.isdigit() and int(width) > 0 and int(height) > 0):
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT in pixels, e.g. 6000x4000, got {text!r}")
    return int(width), int(height)


def cmd_load(args: argparse.Namespace) -> int:
    """Run the load test and print its report (or JSON); exit status 1 when any request failed."""

    from ..tools.loadtest import run_load, run_load_benchmark
    from ..tools.yardstick import image_or_synthetic, predict_body

    image_bytes = image_or_synthetic(args.image, size_wh=args.image_size)
    shape: dict[str, Any] = {
        "concurrency": args.concurrency,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "max_requests": args.requests,
        "timeout_s": args.timeout,
    }
    if args.url:
        report = run_load(args.url, predict_body(image_bytes), **shape).to_dict()
    else:
        report = run_load_benchmark(settings_from_args(args), image_bytes, slice_mode=args.slice, **shape)
    if args.json:
        print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    else:
        print(format_load_report(report))
    return 0 if report["errors"] == 0 else 1


def format_load_report(report: dict[str, Any]) -> str:
    """``specks load``'s report, one figure a line: target, load, requests, latency, memory."""
    window = report["window_s"]
    target = f"target:        {report['url']}"
    if "model" in report:  # a server started here
        target += f"  (model {report['model']}, {report['workers']} workers, slice {report['slice']})"
    lines = [target]
    lines.append(
        f"load:          concurrency {report['concurrency']}, {report['duration_s']:.0f} s, "
        f"measured {window[0]:.0f}..{window[1]:.0f} s after a {report['warmup_s']:.0f} s warm-up"
    )
    errors = f"{report['errors']}" + (f" {report['error_kinds']}" if report["errors"] else "")
    lines.append(f"requests:      {report['requests']} ({report['measured_requests']} measured), errors {errors}")
    lines.append(f"throughput:    {report['throughput_per_s']:.2f} req/s")
    latency = report["latency_ms"]
    if latency:
        lines.append("latency:       " + ", ".join(f"{k} {v:.1f} ms" for k, v in latency.items()))
    memory = report["memory"]
    for pid, worker in memory["workers"].items():
        start, end = worker["at_warmup_mb"], worker["at_end_mb"]
        shown = f"{start} MiB after warm-up, {end} MiB at end"
        if start is not None and end is not None:
            shown += f" ({end - start:+.1f})"
        lines.append(f"worker {pid}:  {shown}, {len(worker['series_mb'])} samples")
    if memory["growth_mb"] is not None:
        lines.append(f"memory growth: {memory['growth_mb']:+.1f} MiB (largest of any worker)")
    if memory.get("peak_total_mb") is not None:
        peaks = ", ".join(f"{peak:.0f}" for peak in memory["peak_mb"].values())
        lines.append(
            f"peak RSS:      {memory['peak_total_mb']:.0f} MiB, the workers' peaks ({peaks} MiB, VmHWM, "
            f"since {memory['peak_since']}) added up; {memory['sampled_peak_total_mb']:.0f} MiB at most at one sample"
        )
    elif not memory["workers"]:
        lines.append("memory:        not sampled (the server was not started here)")
    if "bare_session_run_per_s" in report:
        lines.append(f"bare session.run: {report['bare_session_run_per_s']:.2f} calls/s (sequential, all cores)")
        lines.append(f"throughput / bare: {report['throughput_over_bare']:.3f}")
    return "\n".join(lines)
