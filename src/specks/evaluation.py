"""Scoring detections against COCO-format ground truth (images/ + annotations.coco.json).

Uses pycocotools' COCOeval for matching and reads AP/AR straight from its precision
and recall arrays, so any ``max_dets`` works (its own ``summarize`` hard-codes 100).
"""

from __future__ import annotations

import contextlib
import io
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InvalidRequestError
from .models.names import canonical_names
from .types import Detections

ANNOTATIONS_FILE = "annotations.coco.json"
METRIC_NAMES = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "AR", "AR_small", "AR_medium", "AR_large")


@dataclass(frozen=True)
class CocoDataset:
    root: Path
    annotations: dict[str, Any]

    @classmethod
    def load(cls, root: Path) -> CocoDataset:
        path = root / ANNOTATIONS_FILE
        if not path.is_file():
            raise InvalidRequestError(f"not a COCO-format dataset: {path} is missing (expected images/ + {ANNOTATIONS_FILE})")
        return cls(root, json.loads(path.read_text(encoding="utf-8")))

    @property
    def images(self) -> list[dict[str, Any]]:
        return list(self.annotations["images"])

    def image_path(self, image: dict[str, Any]) -> Path:
        return self.root / "images" / image["file_name"]

    def category_ids_for(self, model_names: tuple[str, ...]) -> dict[int, int]:
        """Model class id -> dataset category id, matched by (canonical) name."""
        by_name = {name.lower(): cat["id"] for cat, name in zip(
            self.annotations["categories"], canonical_names([c["name"] for c in self.annotations["categories"]]),
            strict=True,
        )}
        return {i: by_name[n.lower()] for i, n in enumerate(model_names) if n.lower() in by_name}


def detections_to_coco(image_id: int, found: Detections, category_of: dict[int, int]) -> list[dict[str, Any]]:
    """Detections in original pixels -> COCO result dicts (bbox as x, y, w, h); unmatched classes dropped."""
    results = []
    for box, score, class_id in zip(found.xyxy.tolist(), found.confidence.tolist(), found.class_id.tolist(), strict=True):
        if class_id in category_of:
            x1, y1, x2, y2 = box
            results.append({"image_id": image_id, "category_id": category_of[class_id],
                            "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score})
    return results


def _mean_valid(values: np.ndarray) -> float:
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else -1.0


def score_coco(annotations: dict[str, Any], results: list[dict[str, Any]], *, max_dets: int = 100) -> dict[str, float]:
    """COCO bbox metrics at ``max_dets`` detections per image (AP, AP50, AP75, by size, AR)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = annotations
        gt.createIndex()
        dt = gt.loadRes(results) if results else COCO()
        evaluator = COCOeval(gt, dt, "bbox")
        evaluator.params.maxDets = [1, 10, max_dets]
        if results:
            evaluator.evaluate()
            evaluator.accumulate()
    if not results:
        return dict.fromkeys(METRIC_NAMES, 0.0)
    precision = evaluator.eval["precision"][..., -1]  # [iou, recall, class, area] at max_dets
    recall = evaluator.eval["recall"][..., -1]  # [iou, class, area]
    iou_50 = int(np.argmin(np.abs(evaluator.params.iouThrs - 0.5)))
    iou_75 = int(np.argmin(np.abs(evaluator.params.iouThrs - 0.75)))
    metrics = {
        "AP": _mean_valid(precision[..., 0]),
        "AP50": _mean_valid(precision[iou_50, ..., 0]),
        "AP75": _mean_valid(precision[iou_75, ..., 0]),
        "AP_small": _mean_valid(precision[..., 1]),
        "AP_medium": _mean_valid(precision[..., 2]),
        "AP_large": _mean_valid(precision[..., 3]),
        "AR": _mean_valid(recall[..., 0]),
        "AR_small": _mean_valid(recall[..., 1]),
        "AR_medium": _mean_valid(recall[..., 2]),
        "AR_large": _mean_valid(recall[..., 3]),
    }
    return {k: round(v, 4) for k, v in metrics.items()}


def iter_predictions(
    dataset: CocoDataset, predict: Callable[[bytes], Detections]
) -> Iterator[tuple[dict[str, Any], Detections, float]]:
    """(image record, detections in original pixels, seconds) for each image of the set."""
    for image in dataset.images:
        data = dataset.image_path(image).read_bytes()
        start = time.perf_counter()
        found = predict(data)
        yield image, found, time.perf_counter() - start
