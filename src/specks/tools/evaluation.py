"""Scoring detections against COCO-format ground truth (images/ + annotations.coco.json).

Uses pycocotools' COCOeval for matching and reads AP/AR straight from its precision
and recall arrays, so any ``max_dets`` works (its own ``summarize`` hard-codes 100).
"""

from __future__ import annotations

import contextlib
import io
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from tqdm import tqdm

from ..core.names import canonical_names
from ..core.types import Detections
from ..errors import InvalidRequestError

if TYPE_CHECKING:
    from ..core.options import DetectOptions
    from ..core.pipeline import Detector

ANNOTATIONS_FILE = "annotations.coco.json"
METRIC_NAMES = (
    "AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "AR", "AR_small", "AR_medium", "AR_large",
)  # fmt: skip
# Rows of the `specks eval` table, in order; the last one is timing, not a COCO metric.
EVAL_TABLE_ROWS = (
    "AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "AR", "AR_small", "seconds_per_image",
)  # fmt: skip
ROW_LABELS = {"seconds_per_image": "seconds per image"}

PredictionT = TypeVar("PredictionT")


@dataclass(frozen=True)
class CocoDataset:
    """A COCO-format folder: ``root/images/<file_name>`` plus the parsed ``annotations.coco.json``."""

    root: Path
    annotations: dict[str, Any]

    @classmethod
    def load(cls, root: Path) -> CocoDataset:
        path = root / ANNOTATIONS_FILE
        if not path.is_file():
            raise InvalidRequestError(
                f"not a COCO-format dataset: {path} is missing (expected images/ + {ANNOTATIONS_FILE})"
            )
        return cls(root, json.loads(path.read_text(encoding="utf-8")))

    @property
    def images(self) -> list[dict[str, Any]]:
        return list(self.annotations["images"])

    def image_path(self, image: dict[str, Any]) -> Path:
        return self.root / "images" / image["file_name"]

    def first(self, count: int) -> CocoDataset:
        """The first ``count`` images with their annotations only (unseen images must not count as misses)."""
        if count < 1:
            raise InvalidRequestError(f"the image limit must be at least 1, got {count}")
        images = self.images[:count]
        kept_ids = {image["id"] for image in images}
        annotations = [a for a in self.annotations["annotations"] if a["image_id"] in kept_ids]
        return CocoDataset(self.root, {**self.annotations, "images": images, "annotations": annotations})

    def on_categories(self, category_ids: set[int]) -> CocoDataset:
        """The same images with only these categories and their annotations (crowd regions included)."""
        categories = [c for c in self.annotations["categories"] if c["id"] in category_ids]
        annotations = [a for a in self.annotations["annotations"] if a["category_id"] in category_ids]
        return CocoDataset(self.root, {**self.annotations, "categories": categories, "annotations": annotations})

    def category_ids_for(self, model_names: tuple[str, ...]) -> dict[int, int]:
        """Model class id -> dataset category id, matched by canonical name on both sides.

        Darknet/VOC spellings ("motorbike", "tvmonitor") match their COCO names, whichever side uses them.
        """
        categories = self.annotations["categories"]
        dataset_names = canonical_names([c["name"] for c in categories])
        by_name = {name.lower(): cat["id"] for cat, name in zip(categories, dataset_names, strict=True)}
        model_canonical = (name.lower() for name in canonical_names(list(model_names)))
        return {i: by_name[name] for i, name in enumerate(model_canonical) if name in by_name}


def detections_to_coco(image_id: int, found: Detections, category_of: dict[int, int]) -> list[dict[str, Any]]:
    """Detections in original pixels -> COCO result dicts (bbox as x, y, w, h); unmatched classes dropped."""
    results = []
    columns = (found.xyxy.tolist(), found.confidence.tolist(), found.class_id.tolist())
    for box, score, class_id in zip(*columns, strict=True):
        if class_id in category_of:
            x1, y1, x2, y2 = box
            results.append(
                {
                    "image_id": image_id,
                    "category_id": category_of[class_id],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": score,
                }
            )
    return results


def _mean_valid(values: np.ndarray) -> float:
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else -1.0


def score_coco(annotations: dict[str, Any], results: list[dict[str, Any]], *, max_dets: int = 100) -> dict[str, float]:
    """COCO bbox metrics at ``max_dets`` (AP, AP50, AP75, by size, AR).

    As in pycocotools, ``max_dets`` caps the highest-scoring detections per image *and category*.
    """
    if max_dets < 1:
        raise InvalidRequestError(f"max_dets must be at least 1, got {max_dets}")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = annotations
        gt.createIndex()
        dt = gt.loadRes(results) if results else COCO()
        evaluator = COCOeval(gt, dt, "bbox")
        evaluator.params.maxDets = [max_dets]  # evaluate() sorts this list: one entry keeps [-1] at max_dets
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
    dataset: CocoDataset, predict: Callable[[bytes], PredictionT]
) -> Iterator[tuple[dict[str, Any], PredictionT, float]]:
    """(image record, what ``predict`` returned for the file's bytes, seconds it took) per image.

    The file is read before the clock starts; decoding is the predictor's and is timed.
    """
    for image in dataset.images:
        data = dataset.image_path(image).read_bytes()
        start = time.perf_counter()
        found = predict(data)
        yield image, found, time.perf_counter() - start


def evaluate(
    detector: Detector,
    dataset: CocoDataset,
    options: DetectOptions,
    *,
    max_dets: int,
    limit: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run ``detector.predict_bytes`` (the API's pipeline) over the images and score the results.

    Model classes map to dataset categories by name; only the categories the model has are scored
    (a model trained on cars is not marked down for the dataset's dogs). One untimed prediction warms
    the model up first. Returns the COCO metrics at ``max_dets`` plus ``seconds_per_image`` (mean wall time of
    predict_bytes, decoding included), ``images``, ``detections``, ``categories_scored`` of
    ``categories`` and, when the pipeline reports tiles, ``tiles_per_image``.
    """
    subset = dataset.first(limit) if limit is not None else dataset
    if not subset.images:
        raise InvalidRequestError(f"the dataset at {dataset.root} has no images")
    category_of = model_to_dataset_categories(subset, detector.model.info.names)
    scored = subset.on_categories(set(category_of.values()))  # a class the model lacks is not its miss
    detector.predict_bytes(subset.image_path(subset.images[0]).read_bytes(), options)  # warm-up

    results: list[dict[str, Any]] = []
    seconds: list[float] = []
    tiles: list[float] = []
    predictions = iter_predictions(subset, lambda data: detector.predict_bytes(data, options))
    bar = tqdm(predictions, total=len(subset.images), unit="image", file=sys.stderr, disable=not progress)
    for image, prediction, elapsed_s in bar:
        results.extend(detections_to_coco(image["id"], prediction.detections, category_of))
        seconds.append(elapsed_s)
        tiles.append(prediction.tile_count)
    summary: dict[str, Any] = {
        **score_coco(scored.annotations, results, max_dets=max_dets),
        "seconds_per_image": round(statistics.fmean(seconds), 4),
        "images": len(seconds),
        "detections": len(results),
        "categories_scored": len(scored.annotations["categories"]),
        "categories": len(subset.annotations["categories"]),
    }
    if tiles:
        summary["tiles_per_image"] = round(statistics.fmean(tiles), 2)
    return summary


def model_to_dataset_categories(dataset: CocoDataset, model_names: tuple[str, ...]) -> dict[int, int]:
    """Model class id -> dataset category id, matched by name; no name in common is an error."""
    category_of = dataset.category_ids_for(model_names)
    if not category_of:
        categories = ", ".join(c["name"] for c in dataset.annotations["categories"][:8])
        raise InvalidRequestError(
            f"none of the model's classes ({', '.join(model_names[:8])}, ...) match the dataset's categories "
            f"({categories}, ...); evaluate with a model trained on these classes"
        )
    return category_of


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Plain-text table: first column left-aligned, the others right-aligned."""
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        first, *rest = cells
        right = (cell.rjust(width) for cell, width in zip(rest, widths[1:], strict=True))
        return "  ".join([first.ljust(widths[0]), *right])

    return "\n".join([line(header), *(line(row) for row in rows)])


def format_value(value: float) -> str:
    """A metric or a time for a table; COCO's -1 (nothing of that size in the set) shows as n/a."""
    return "n/a" if value < 0 else f"{value:.3f}"


def metrics_table(runs: Mapping[str, Mapping[str, Any]], rows: Sequence[str] = EVAL_TABLE_ROWS) -> str:
    """One column per run (e.g. "full image", "sliced"), one row per metric."""
    body = [[ROW_LABELS.get(name, name), *(format_value(run[name]) for run in runs.values())] for name in rows]
    return format_table(["metric", *runs], body)
