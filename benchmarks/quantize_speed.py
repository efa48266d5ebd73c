"""fp32 against `specks quantize`'s INT8 copy of the embedded default: AP50 on both development sets,
time per drone photo and per COCO photo.

For each development set, the embedded default is quantized on a calibration part (seed 0, 30% held
out) as `specks quantize` does, and both models are scored on the held-out part and on the whole
other set (`specks eval`'s code, conf 0.001, maxDets 500). Then the pipeline's own requests are
timed, fp32 and INT8 alternating round by round: the default small-object path on the 2000x1500
drone photos (one native 2016x1504 pass), and the full-image pass on COCO photos; and the bare model
run at both sizes. Times are min / median / max over rounds, and the speed-up is the ratio within
each round (the machine is shared: compare ratios, not absolute times).

    .venv/bin/python benchmarks/quantize_speed.py [--rounds 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from specks.config import Settings
from specks.core.options import parse_detect_options
from specks.core.pipeline import Detector
from specks.service.loading import load_detector
from specks.tools.evaluation import CocoDataset, evaluate
from specks.tools.quantization import EVAL_CONF, EVAL_MAX_DETS, QuantizeRequest, quantize_model

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SETS = {"visdrone": SHARED / "visdrone_dev10", "coco": SHARED / "coco_val2017_tiny50"}
COCO_TIMED_IMAGES = 10


def spread(values: list[float], digits: int = 0) -> str:
    return "/".join(f"{v:.{digits}f}" for v in (min(values), statistics.median(values), max(values)))


def scores(detector: Detector, dataset: CocoDataset) -> dict[str, Any]:
    options = parse_detect_options({"conf": EVAL_CONF, "max_det": EVAL_MAX_DETS})
    return evaluate(detector, dataset, options, max_dets=EVAL_MAX_DETS, progress=False)


def accuracy(settings: Settings, folder: Path, threads: int) -> tuple[dict[str, Path], list[list[str]]]:
    """Quantize on each set's calibration part; AP50 rows (held-out part, and the other whole set)."""
    fp32 = load_detector(settings, threads=threads)
    models, rows = {}, []
    for name, path in SETS.items():
        started = time.perf_counter()
        models[name] = folder / f"int8-{name}.onnx"
        request = QuantizeRequest(model=None, calibration=path, output=models[name], force=True)
        card = quantize_model(request, settings, threads=threads)
        minutes = (time.perf_counter() - started) / 60
        rows.append([f"calibrated on {name} ({card['images']['calibration']} images, {minutes:.1f} min)",
                     f"{name} held out ({card['images']['held_out']})",
                     f"{card['scores']['float']['AP50']:.4f}", f"{card['scores']['int8']['AP50']:.4f}",
                     f"{card['scores']['float']['AP']:.4f}", f"{card['scores']['int8']['AP']:.4f}"])  # fmt: skip
        int8 = load_detector(dataclasses.replace(settings, model=str(models[name])), threads=threads)
        for other, other_path in SETS.items():
            if other != name:
                dataset = CocoDataset.load(other_path)
                before, after = scores(fp32, dataset), scores(int8, dataset)
                rows.append(["", f"{other} whole ({len(dataset.images)})", f"{before['AP50']:.4f}",
                             f"{after['AP50']:.4f}", f"{before['AP']:.4f}", f"{after['AP']:.4f}"])  # fmt: skip
    return models, rows


def alternate(runs: dict[str, Callable[[], None]], rounds: int, repeats: int) -> dict[str, list[float]]:
    """Milliseconds per call of each run, per round; the runs alternate within every round."""
    for run in runs.values():
        run()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            started = time.perf_counter()
            for _ in range(repeats):
                run()
            times[name].append((time.perf_counter() - started) * 1000 / repeats)
    return times


def speed_rows(label: str, times: dict[str, list[float]]) -> list[str]:
    fp32, int8 = times["fp32"], times["int8"]
    ratios = [a / b for a, b in zip(fp32, int8, strict=True)]
    return [label, spread(fp32), spread(int8), spread(ratios, 2)]


def speed(settings: Settings, int8_path: Path, threads: int, rounds: int) -> list[list[str]]:
    detectors = {
        "fp32": load_detector(settings, threads=threads),
        "int8": load_detector(dataclasses.replace(settings, model=str(int8_path)), threads=threads),
    }
    options = parse_detect_options({})  # what a request with no options gets
    drone = [p.read_bytes() for p in sorted((SETS["visdrone"] / "images").iterdir())[:3]]
    coco = [p.read_bytes() for p in sorted((SETS["coco"] / "images").iterdir())[:COCO_TIMED_IMAGES]]

    def requests(detector: Detector, photos: list[bytes]) -> Callable[[], None]:
        def run() -> None:
            for photo in photos:
                detector.predict_bytes(photo, options)

        return run

    def bare(detector: Detector, hw: tuple[int, int]) -> Callable[[], None]:
        tensor = np.random.default_rng(0).uniform(0, 255, (1, 3, *hw)).astype(np.float32)

        def run() -> None:
            detector.model.run(tensor)

        return run

    rows = []
    for label, make, photos, repeats in (
        ("drone photo 2000x1500, small-object path (ms/photo)", requests, drone, 1),
        ("COCO photo, full image at 640 (ms/photo)", requests, coco, 1),
    ):
        times = alternate({name: make(d, photos) for name, d in detectors.items()}, rounds, repeats)
        rows.append(speed_rows(label, {k: [v / len(photos) for v in vs] for k, vs in times.items()}))
    for label, hw, repeats in (("bare run 2016x1504 (ms)", (1504, 2016), 2), ("bare run 640x480 (ms)", (480, 640), 10)):
        rows.append(speed_rows(label, alternate({n: bare(d, hw) for n, d in detectors.items()}, rounds, repeats)))
    return rows


def table(header: list[str], rows: list[list[str]]) -> str:
    return "\n".join("| " + " | ".join(row) + " |" for row in [header, ["---"] * len(header), *rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="timing rounds (default 5)")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads (default 2)")
    parser.add_argument("--int8", type=Path, help="time this INT8 file and skip the accuracy part")
    args = parser.parse_args()
    settings = Settings.from_env()
    with tempfile.TemporaryDirectory(prefix="specks-quantize-bench-") as folder:
        int8_path = args.int8
        if int8_path is None:
            models, rows = accuracy(settings, Path(folder), args.threads)
            print(table(["INT8 model", "scored on", "fp32 AP50", "int8 AP50", "fp32 AP", "int8 AP"], rows))
            int8_path = models["visdrone"]
        print()
        rows = speed(settings, int8_path, args.threads, args.rounds)
        print(table(["timed", "fp32 min/med/max", "int8 min/med/max", "speed-up min/med/max"], rows))


if __name__ == "__main__":
    main()
