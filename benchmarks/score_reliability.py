"""Whether a model's confidences mean what they say: precision per score bin, and P / R / F1 per threshold.

Runs the model (``specks.core.pipeline``, the server's default slicing) on a COCO-format folder at conf
0.01, matches each detection to an unmatched ground-truth box of its category at IoU >= 0.5 (best
score first, as COCO does), and prints, per score bin, how many detections fall in it and what
share of them are right; then precision, recall and F1 at several thresholds. A model whose bins
read close to their scores is calibrated, and the threshold with the best F1 is the one to serve.

    .venv/bin/python benchmarks/score_reliability.py yolox-nano-thermal ../shared/data/hit_uav_val
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import numpy.typing as npt

from specks.config import ModelSpec, Settings
from specks.core.options import DetectOptions
from specks.service.loading import load_detector
from specks.tools.evaluation import CocoDataset, model_to_dataset_categories

SCORE_BINS = (0.01, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.7, 1.0)
THRESHOLDS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)


def iou_xyxy(box: npt.NDArray[np.float32], others: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """IoU of one (4,) box against (N, 4) boxes, all x1 y1 x2 y2 in pixels."""
    x1, y1 = np.maximum(box[0], others[:, 0]), np.maximum(box[1], others[:, 1])
    x2, y2 = np.minimum(box[2], others[:, 2]), np.minimum(box[3], others[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    union = (box[2] - box[0]) * (box[3] - box[1]) + (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return inter / (union - inter)


def matched(model: str, root: Path) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_], int]:
    """(score of each detection, whether it is right, ground-truth boxes) over the whole folder."""
    detector = load_detector(Settings(), spec=ModelSpec(model, model))
    dataset = CocoDataset.load(root)
    category_of = model_to_dataset_categories(dataset, detector.model.info.names)
    truths: dict[int, list[dict]] = {}  # type: ignore[type-arg]
    for annotation in dataset.annotations["annotations"]:
        if not annotation.get("iscrowd") and annotation["category_id"] in category_of.values():
            truths.setdefault(annotation["image_id"], []).append(annotation)
    scores: list[float] = []
    right: list[bool] = []
    for image in dataset.images:
        found = detector.predict_bytes(dataset.image_path(image).read_bytes(), DetectOptions(conf=0.01)).detections
        boxes = truths.get(image["id"], [])
        taken: set[int] = set()
        for i in np.argsort(-found.confidence):
            category = category_of.get(int(found.class_id[i]))
            free = [j for j, box in enumerate(boxes) if box["category_id"] == category and j not in taken]
            hit = False
            if free:
                xyxy = np.array([[b[0], b[1], b[0] + b[2], b[1] + b[3]] for b in (boxes[j]["bbox"] for j in free)])
                overlaps = iou_xyxy(found.xyxy[i], xyxy)
                best = int(np.argmax(overlaps))
                hit = bool(overlaps[best] >= 0.5)
                if hit:
                    taken.add(free[best])
            scores.append(float(found.confidence[i]))
            right.append(hit)
    return np.array(scores), np.array(right), sum(len(boxes) for boxes in truths.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="an .onnx file or a named model")
    parser.add_argument("dataset", type=Path, help="a COCO-format folder")
    args = parser.parse_args()
    scores, right, truths = matched(args.model, args.dataset)
    print(f"{args.dataset}: {truths} boxes, {len(scores)} detections at conf >= 0.01")
    for low, high in zip(SCORE_BINS, SCORE_BINS[1:], strict=False):
        inside = (scores >= low) & (scores < high)
        share = right[inside].mean() if inside.any() else 0.0
        print(f"  scores {low:.2f}-{high:.2f}: {inside.sum():5d} detections, {share:.0%} right")
    for threshold in THRESHOLDS:
        kept = scores >= threshold
        hits = int(right[kept].sum())
        precision, recall = hits / max(int(kept.sum()), 1), hits / max(truths, 1)
        f1 = 2 * precision * recall / max(precision + recall, 1e-9)
        print(f"  conf {threshold:.2f}: precision {precision:.3f}  recall {recall:.3f}  F1 {f1:.3f}")


if __name__ == "__main__":
    main()
