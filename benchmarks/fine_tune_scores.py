"""A fine-tuned model against the embedded default, on the same classes, over several COCO-format folders.

A model made by `specks train` knows only its dataset's classes; `specks eval` scores it on those,
so the default model is scored here on the same categories too (the model's class names), each
folder at the server's default settings (conf 0.01 floor, 500 boxes). Prints AP50, AP_small and
seconds per image for both, per folder, and the AP50 ratio; models are interleaved folder by folder.

    .venv/bin/python benchmarks/fine_tune_scores.py runs/train-visdrone_dev10/model.onnx \\
        ../shared/data/coco_val2017_tiny50 ~/.cache/specks/mosaics/<the folder specks mosaic printed>
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from specks.config import Settings
from specks.core.options import parse_detect_options
from specks.core.pipeline import Detector
from specks.service.loading import load_detector
from specks.tools.evaluation import CocoDataset, evaluate, format_table

OPTIONS = parse_detect_options({"conf": 0.01, "max_det": 500})


def score(detector: Detector, dataset: CocoDataset) -> dict[str, float]:
    return evaluate(detector, dataset, OPTIONS, max_dets=500, progress=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="the fine-tuned .onnx")
    parser.add_argument("datasets", type=Path, nargs="+", help="COCO-format folders")
    parser.add_argument("--threads", type=int, help="ONNX Runtime threads (default: every core)")
    args = parser.parse_args()
    settings = Settings.from_env()
    tuned = load_detector(dataclasses.replace(settings, model=str(args.model)), threads=args.threads)
    default = load_detector(dataclasses.replace(settings, model=None), threads=args.threads)
    names = {name.lower() for name in tuned.model.info.names}
    rows = []
    for folder in args.datasets:
        dataset = CocoDataset.load(folder)
        shared = {c["id"] for c in dataset.annotations["categories"] if c["name"].lower() in names}
        on_shared = dataset.on_categories(shared)
        before, after = score(default, on_shared), score(tuned, on_shared)
        rows.append([
            folder.name, str(len(shared)), f"{before['AP50']:.3f}", f"{after['AP50']:.3f}",
            f"x{after['AP50'] / max(before['AP50'], 1e-9):.2f}", f"{before['AP_small']:.3f}",
            f"{after['AP_small']:.3f}", f"{before['seconds_per_image']:.3f}", f"{after['seconds_per_image']:.3f}",
        ])  # fmt: skip
    print(f"{args.model} ({', '.join(tuned.model.info.names)}) against the embedded default, on the same classes")
    header = ["dataset", "classes", "AP50 default", "AP50 tuned", "ratio", "AP_small default", "AP_small tuned",
              "s/img default", "s/img tuned"]  # fmt: skip
    print(format_table(header, rows))


if __name__ == "__main__":
    main()
