"""Does sharing the batch axis help? Same-size images one by one against one shared session.run.

On one Detector (one process, the given ONNX Runtime threads), for N images of one size:

  alone   N x ``Detector.predict_bytes`` (N session.run calls of batch 1), as N requests would;
  shared  one ``predict_same_size`` (one session.run of batch N), as a batch request does;

plus the bare model on the already prepared tensors (N runs of batch 1 against one run of batch
N). The two ways alternate, ``--rounds`` times, and the median milliseconds per image are printed
with their ratio (shared / alone: below 1 means batching helps). Detections are checked to agree.

    .venv/bin/python benchmarks/batch_inference.py --model ../shared/models/yolov5n_dynamic.onnx \
        --images ../shared/data/coco_val2017_tiny50/images --size 640x480 --count 8 --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from specks.config import Settings
from specks.core.options import DetectOptions
from specks.core.pipeline import Detector, Prediction
from specks.core.shared_runs import predict_same_size
from specks.service.loading import load_detector


def same_size_images(folder: Path, size_wh: tuple[int, int], count: int) -> list[bytes]:
    found = []
    for path in sorted(folder.glob("*.jpg")):
        with Image.open(path) as image:
            if image.size == size_wh:
                found.append(path.read_bytes())
        if len(found) == count:
            return found
    raise SystemExit(f"only {len(found)} images of {size_wh[0]}x{size_wh[1]} in {folder}")


def timed_ms(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return (time.perf_counter() - started) * 1000


def compare(detector: Detector, images: list[bytes], rounds: int) -> dict[str, float]:
    options = DetectOptions(slice=False)
    alone = [detector.predict_bytes(data, options) for data in images]  # warm-up, and the reference
    shared = predict_same_size(detector, images, options)
    for one, together in zip(alone, shared, strict=True):
        assert isinstance(together, Prediction)
        np.testing.assert_allclose(one.detections.xyxy, together.detections.xyxy, atol=0.05)
    tensors = [detector.prepared_input(data) for data in images]
    batch = np.concatenate(tensors)
    run = detector.model.run
    samples: dict[str, list[float]] = {"alone": [], "shared": [], "bare_alone": [], "bare_shared": []}
    for _ in range(rounds):
        samples["alone"].append(timed_ms(lambda: [detector.predict_bytes(data, options) for data in images]))
        samples["shared"].append(timed_ms(lambda: predict_same_size(detector, images, options)))
        samples["bare_alone"].append(timed_ms(lambda: [run(tensor) for tensor in tensors]))
        samples["bare_shared"].append(timed_ms(lambda: run(batch)))
    per_image = {name: statistics.median(values) / len(images) for name, values in samples.items()}
    per_image["ratio"] = per_image["shared"] / per_image["alone"]
    per_image["bare_ratio"] = per_image["bare_shared"] / per_image["bare_alone"]
    return per_image


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="an ONNX model with a dynamic batch axis")
    parser.add_argument("--images", type=Path, required=True, help="a folder of JPEGs")
    parser.add_argument("--size", default="640x480", help="use images of this size, WxH (default 640x480)")
    parser.add_argument("--count", type=int, default=8, help="images per batch (default 8)")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads (default 2)")
    parser.add_argument("--rounds", type=int, default=10, help="alternating timed rounds (default 10)")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    detector = load_detector(Settings(model=args.model), threads=args.threads)
    if not detector.model.info.dynamic_batch:
        raise SystemExit(f"{args.model} has a fixed batch of one: nothing to share")
    figures = compare(detector, same_size_images(args.images, (width, height), args.count), args.rounds)
    print(f"{detector.model.info.name}, {args.count} images of {width}x{height}, {args.threads} thread(s), "
          f"median of {args.rounds} rounds, ms per image:")
    print(f"  end to end: alone {figures['alone']:.1f}, shared {figures['shared']:.1f}, ratio {figures['ratio']:.3f}")
    print(
        f"  bare model: alone {figures['bare_alone']:.1f}, shared {figures['bare_shared']:.1f}, "
        f"ratio {figures['bare_ratio']:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
