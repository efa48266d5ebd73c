"""What a region of interest costs and changes: its answer against the whole image's, filtered by it.

For each image of a COCO-format folder and each region shape, runs the default model twice with
the server's defaults, in alternation: once on the whole image (its answer then filtered by the
region, as a client would), once with the region in the request. Prints, per shape:

- the share of the filtered whole-image boxes that the region answer has too, same class, every
  corner within 1 px;
- AP50 of both answers at conf 0.01 against the ground truth anchored in the region (the same
  anchor rule as the answers), so the accuracy a region costs or gains is measured, not assumed;
- the time of the region request over the whole-image one, per image (min / median / max).

    .venv/bin/python benchmarks/regions.py ../shared/data/visdrone_dev10
    .venv/bin/python benchmarks/regions.py ../shared/data/hit_uav_val --model yolox-nano-thermal --images 40
    .venv/bin/python benchmarks/regions.py ../shared/data/visdrone_dev10 --shape quarter --margin 0.08

``--margin`` replaces the crop's margin (``regions.REGION_MARGIN_FRACTION``, a share of the image's
longer side) to see what a wider or narrower one trades: sameness near the crop's edge for time.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from specks.config import ModelSpec, Settings
from specks.core import regions
from specks.core.knobs import DEFAULT_MAX_DET
from specks.core.options import DetectOptions, parse_detect_options
from specks.core.pipeline import Detector, Prediction
from specks.core.regions import RegionPlan
from specks.core.types import Detections
from specks.service.loading import load_detector
from specks.tools.evaluation import CocoDataset, detections_to_coco, model_to_dataset_categories, score_coco

# Region shapes in fractions of the image: a centred quarter, a road-like trapezoid along the
# bottom, and a mask over the top third (the sky or a treeline) with nothing included.
SHAPES: dict[str, list[dict[str, Any]]] = {
    "quarter": [{"points": [[0.25, 0.25], [0.75, 0.25], [0.75, 0.75], [0.25, 0.75]], "units": "fraction"}],
    "trapezoid": [{"points": [[0.4, 0.45], [0.6, 0.45], [0.85, 1.0], [0.15, 1.0]], "units": "fraction"}],
    "exclude-top-third": [{"points": [[0, 0], [1, 0], [1, 0.333], [0, 0.333]], "units": "fraction", "exclude": True}],
}
SAME_BOX_PX = 1.0
AP_CONF = 0.01


def timed(detector: Detector, data: bytes, options: DetectOptions) -> tuple[Prediction, float]:
    started = time.perf_counter()
    prediction = detector.predict_bytes(data, options)
    return prediction, time.perf_counter() - started


def same_boxes(expected: Detections, got: Detections) -> int:
    """How many of ``expected`` have a box in ``got`` of the same class with every corner within SAME_BOX_PX."""
    count = 0
    for box, class_id in zip(expected.xyxy, expected.class_id, strict=True):
        near = np.abs(got.xyxy - box).max(axis=1) <= SAME_BOX_PX if len(got) else np.zeros(0, bool)
        count += bool((near & (got.class_id == class_id)).any())
    return count


def truths_in(annotations: list[dict[str, Any]], regions: RegionPlan) -> list[dict[str, Any]]:
    """The ground-truth boxes whose anchor the regions keep."""
    if not annotations:
        return []
    xywh = np.array([a["bbox"] for a in annotations], np.float32)
    xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
    return [a for a, kept in zip(annotations, regions.keeps(xyxy), strict=True) if kept]


def run_shape(
    detector: Detector, dataset: CocoDataset, shape: list[dict[str, Any]], ap_options: dict[str, Any]
) -> dict[str, Any]:
    category_of = model_to_dataset_categories(dataset, detector.model.info.names)
    whole_options = parse_detect_options({})
    region_options = parse_detect_options({"regions": shape})
    by_image: dict[int, list[dict[str, Any]]] = {}
    for annotation in dataset.annotations["annotations"]:
        by_image.setdefault(annotation["image_id"], []).append(annotation)
    ratios, areas, expected_boxes, kept_boxes = [], [], 0, 0
    kept_truths: list[dict[str, Any]] = []
    whole_results: list[dict[str, Any]] = []
    region_results: list[dict[str, Any]] = []
    for image in dataset.images:
        data = dataset.image_path(image).read_bytes()
        detector.predict_bytes(data, region_options)  # warm this size's sessions for both
        whole, whole_s = timed(detector, data, whole_options)
        inside, inside_s = timed(detector, data, region_options)
        assert inside.regions is not None
        ratios.append(inside_s / whole_s)
        areas.append(inside.regions.crop_size.pixels / inside.image_size.pixels)
        expected = inside.regions.filter(whole.detections)
        expected_boxes += len(expected)
        kept_boxes += same_boxes(expected, inside.detections)
        kept_truths += truths_in(by_image.get(image["id"], []), inside.regions)
        low_whole = detector.predict_bytes(data, parse_detect_options({**ap_options, "conf": AP_CONF})).detections
        low_inside = detector.predict_bytes(
            data, parse_detect_options({**ap_options, "conf": AP_CONF, "regions": shape})
        )
        whole_results += detections_to_coco(image["id"], inside.regions.filter(low_whole), category_of)
        region_results += detections_to_coco(image["id"], low_inside.detections, category_of)
    scored = {**dataset.annotations, "annotations": kept_truths}
    return {
        "same": kept_boxes / max(expected_boxes, 1),
        "boxes": expected_boxes,
        "truths": len(kept_truths),
        "ap50_whole": score_coco(scored, whole_results)["AP50"],
        "ap50_region": score_coco(scored, region_results)["AP50"],
        "ratios": np.array(ratios),
        "area": float(np.mean(areas)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path, help="a COCO-format folder")
    parser.add_argument("--model", help="an .onnx file or a named model (default: the embedded one)")
    parser.add_argument("--images", type=int, help="only the first N images")
    parser.add_argument("--shape", choices=list(SHAPES), action="append", help="only these shapes (repeatable)")
    parser.add_argument("--margin", type=float, help="the crop's margin, a share of the image's longer side")
    parser.add_argument(
        "--max-det",
        type=int,
        default=DEFAULT_MAX_DET,
        help="most detections per answer when AP50 is scored (default: a request's); dense images need more, "
        "or the whole image's answer is cut by boxes outside the region",
    )
    args = parser.parse_args()
    if args.margin is not None:
        regions.REGION_MARGIN_FRACTION = args.margin
    spec = ModelSpec(args.model, args.model) if args.model else None
    detector = load_detector(Settings(), spec=spec)
    dataset = CocoDataset.load(args.dataset)
    if args.images:
        dataset = dataset.first(args.images)
    print(f"{args.dataset.name}: {len(dataset.images)} images, model {detector.model.info.name}")
    for name, shape in SHAPES.items():
        if args.shape and name not in args.shape:
            continue
        result = run_shape(detector, dataset, shape, {"max_det": args.max_det})
        ratios = result["ratios"]
        print(
            f"  {name:18s} crop {result['area']:.0%} of the pixels, "
            f"same boxes {result['same']:.1%} of {result['boxes']}  "
            f"AP50 whole-then-filtered {result['ap50_whole']:.3f} region {result['ap50_region']:.3f} "
            f"({result['truths']} truths)  time x{np.min(ratios):.2f} / x{np.median(ratios):.2f} / "
            f"x{np.max(ratios):.2f} (min / median / max)"
        )


if __name__ == "__main__":
    main()
