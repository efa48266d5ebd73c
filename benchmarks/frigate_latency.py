"""Frigate-style latency of the DeepStack-compatible API: what Frigate's deepstack detector waits for.

Frigate's detector sends its 320x320 model-input frame as a JPEG (PIL's default quality) to
``POST /v1/vision/detection`` with ``requests.post(url, data={"api_key": ""}, files={"image": jpeg},
timeout=0.1)`` -- a new connection per frame, no min_confidence -- and gives up after 0.1 s. This
script does the same against a real ``specks serve`` (started here, one worker by default) or
``--url``, after a warm-up, and prints the client-side latency and the server's own stage times.
For a machine whose speed varies, each frame is paired with a bare ``session.run`` of the same
model on the frame's prepared input (same thread count, in this process, right after the answer):
the median of the per-frame ratios moves much less with the machine's load than either time.

Run from the repository root:

    .venv/bin/python benchmarks/frigate_latency.py --model ../shared/models/yolov5n.onnx --runs 200

A script, not part of the package: neither ``specks`` nor the tests import it.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import requests
from PIL import Image

from specks.config import Settings
from specks.service.loading import load_detector
from specks.tools.server_process import ServerProcess
from specks.tools.yardstick import percentile

FRIGATE_TIMEOUT_S = 0.1
DEFAULT_IMAGE = Path("../shared/data/coco_val2017_tiny50/images/000000085329.jpg")


def frigate_frame(path: Path, side_px: int) -> bytes:
    """A square region of the photo (its right-hand side) resized to side_px, as Frigate encodes it."""
    image = Image.open(path).convert("RGB")
    square = min(image.size)
    left = image.width - square
    frame = image.crop((left, 0, left + square, square)).resize((side_px, side_px))
    buffer = io.BytesIO()
    frame.save(buffer, format="JPEG")
    return buffer.getvalue()


def measure(
    url: str, jpeg: bytes, runs: int, warmup: int, bare_run: Callable[[], object] | None
) -> tuple[list[float], list[float], list[dict[str, int]]]:
    """Per frame: client latency in ms (a new connection, as Frigate), the bare run's ms, the server's timings."""
    latencies_ms: list[float] = []
    bare_ms: list[float] = []
    server_ms: list[dict[str, int]] = []
    for index in range(warmup + runs):
        started = time.perf_counter()
        # A generous timeout here: a slow answer is measured, not dropped as Frigate would.
        response = requests.post(url, data={"api_key": ""}, files={"image": jpeg}, timeout=30)
        elapsed_ms = (time.perf_counter() - started) * 1000
        answer = response.json()
        if response.status_code != 200 or not answer.get("success"):
            raise SystemExit(f"the server answered {response.status_code}: {answer}")
        if bare_run is not None:
            started = time.perf_counter()
            bare_run()
            bare_elapsed_ms = (time.perf_counter() - started) * 1000
        if index >= warmup:
            latencies_ms.append(elapsed_ms)
            server_ms.append({k: answer[k] for k in ("inferenceMs", "processMs", "analysisRoundTripMs")})
            if bare_run is not None:
                bare_ms.append(bare_elapsed_ms)
    return latencies_ms, bare_ms, server_ms


def bare_session_run(settings: Settings, jpeg: bytes, threads: int) -> Callable[[], object]:
    """The bare model run on the frame's prepared input (no HTTP, decoding or postprocessing)."""
    detector = load_detector(settings, threads=threads)
    model, info = detector.model, detector.model.info
    tensor = detector.prepared_input(jpeg)
    return lambda: model.session.run(None, {info.input_name: tensor})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model file for the server started here (default: the embedded one)")
    parser.add_argument("--url", help="an already running server (e.g. http://127.0.0.1:32168) instead")
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE, help="photo the frame is cut from")
    parser.add_argument("--side", type=int, default=320, help="frame side in pixels (Frigate's default 320)")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads per worker")
    args = parser.parse_args()

    jpeg = frigate_frame(args.image, args.side)
    settings = Settings(model=args.model)
    threads = args.threads or settings.threads_for(args.workers)
    server = None
    bare_run = None
    if args.url:
        base_url = args.url.rstrip("/")
    else:
        server = ServerProcess(settings, workers=args.workers, threads=threads)
        bare_run = bare_session_run(settings, jpeg, threads)
        server.wait_ready()
        base_url = server.url
    try:
        url = base_url + "/v1/vision/detection"
        latencies_ms, bare_ms, server_ms = measure(url, jpeg, args.runs, args.warmup, bare_run)
    finally:
        if server is not None:
            server.stop()

    within = sum(ms <= FRIGATE_TIMEOUT_S * 1000 for ms in latencies_ms)
    print(f"frame: {args.side}x{args.side} JPEG, {len(jpeg)} bytes; {args.runs} runs after {args.warmup} warm-up")
    print(
        f"client latency (new connection per frame): median {statistics.median(latencies_ms):.1f} ms, "
        f"p95 {percentile(latencies_ms, 95):.1f} ms, max {max(latencies_ms):.1f} ms"
    )
    print(f"within Frigate's {FRIGATE_TIMEOUT_S * 1000:.0f} ms budget: {within}/{len(latencies_ms)}")
    for field in ("inferenceMs", "processMs", "analysisRoundTripMs"):
        print(f"server {field}: median {statistics.median(s[field] for s in server_ms):.0f}")
    if bare_ms:
        ratios = [client / bare for client, bare in zip(latencies_ms, bare_ms, strict=True)]
        print(f"bare session.run ({threads} threads, same frame's input): median {statistics.median(bare_ms):.1f} ms")
        print(f"client latency / bare session.run, per frame: median {statistics.median(ratios):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
