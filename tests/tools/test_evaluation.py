"""specks.tools.evaluation: COCO scoring at any maxDets, category mapping, and the evaluate() loop."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import COCO_TINY, coco_annotations, require
from fakes import FakeInfo, FakeModel
from specks.core.names import COCO80_NAMES
from specks.core.options import DetectOptions
from specks.core.pipeline import Prediction
from specks.core.types import Detections, ImageSize
from specks.errors import InvalidRequestError
from specks.tools.evaluation import (
    METRIC_NAMES,
    CocoDataset,
    detections_to_coco,
    evaluate,
    format_table,
    metrics_table,
    score_coco,
)


@pytest.fixture(scope="module")
def tiny() -> dict[str, Any]:
    return coco_annotations(COCO_TINY)


def perfect_results(annotations: dict[str, Any]) -> list[dict[str, Any]]:
    """Every non-crowd ground-truth box as a detection with score 1."""
    return [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": list(a["bbox"]), "score": 1.0}
        for a in annotations["annotations"]
        if not a.get("iscrowd", 0)
    ]


def noisy_results(annotations: dict[str, Any], seed: int = 0) -> list[dict[str, Any]]:
    """Ground truth with jittered boxes, random scores, 20% missed and some false positives."""
    rng = np.random.default_rng(seed)
    results = []
    for result in perfect_results(annotations):
        if rng.random() < 0.2:
            continue
        x, y, w, h = result["bbox"]
        dx, dy, dw, dh = rng.normal(0, 0.08, 4) * [w, h, w, h]
        results.append(
            {
                **result,
                "bbox": [x + dx, y + dy, max(1.0, w + dw), max(1.0, h + dh)],
                "score": float(rng.uniform(0.05, 1.0)),
            }
        )
    for image in annotations["images"][::3]:
        x, y = rng.uniform(0, 300, 2)
        results.append(
            {
                "image_id": image["id"],
                "category_id": 1,
                "bbox": [x, y, 40.0, 60.0],
                "score": float(rng.uniform(0.05, 1.0)),
            }
        )
    return results


def pycocotools_stats(annotations: dict[str, Any], results: list[dict[str, Any]]) -> np.ndarray:
    """COCOeval.summarize() as anyone would run it (maxDets 1, 10, 100)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = annotations
        gt.createIndex()
        evaluator = COCOeval(gt, gt.loadRes(results), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator.stats


# -- score_coco ----------------------------------------------------------------------------------


def test_score_coco_agrees_with_pycocotools_summarize(tiny: dict[str, Any]) -> None:
    results = noisy_results(tiny)
    stats = pycocotools_stats(tiny, results)
    metrics = score_coco(tiny, results, max_dets=100)
    assert 0.1 < metrics["AP"] < 0.9  # a case where the numbers mean something
    expected = {
        "AP": stats[0],
        "AP50": stats[1],
        "AP75": stats[2],
        "AP_small": stats[3],
        "AP_medium": stats[4],
        "AP_large": stats[5],
        "AR": stats[8],
        "AR_small": stats[9],
    }
    for name, value in expected.items():
        assert metrics[name] == pytest.approx(value, abs=1e-4), name


def test_perfect_detections_score_one(tiny: dict[str, Any]) -> None:
    metrics = score_coco(tiny, perfect_results(tiny), max_dets=100)
    for name in ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "AR", "AR_small"):
        assert metrics[name] == pytest.approx(1.0), name


def test_no_detections_score_zero(tiny: dict[str, Any]) -> None:
    assert score_coco(tiny, [], max_dets=500) == dict.fromkeys(METRIC_NAMES, 0.0)


def people_of(annotations: dict[str, Any], image_id: int) -> dict[str, Any]:
    """One image and its person boxes only: COCOeval caps detections per image *and category*."""
    images = [i for i in annotations["images"] if i["id"] == image_id]
    people = [a for a in annotations["annotations"] if a["image_id"] == image_id and a["category_id"] == 1]
    return {**annotations, "images": images, "annotations": people}


def test_max_dets_caps_detections_per_image_and_class(tiny: dict[str, Any]) -> None:
    crowd = people_of(tiny, 296649)  # 14 people
    results = perfect_results(crowd)
    assert len(results) > 10
    assert score_coco(crowd, results, max_dets=100)["AR"] == pytest.approx(1.0)
    assert score_coco(crowd, results, max_dets=10)["AR"] == pytest.approx(10 / len(results), abs=1e-4)
    assert score_coco(crowd, results, max_dets=1)["AR"] == pytest.approx(1 / len(results), abs=1e-4)


def test_max_dets_above_100_keeps_detections_that_summarize_would_drop(tiny: dict[str, Any]) -> None:
    # 150 false people scored above the true ones push the true ones past the 100th place.
    crowd = people_of(tiny, 296649)
    truth = [{**r, "score": 0.5} for r in perfect_results(crowd)]
    junk = [{"image_id": 296649, "category_id": 1, "bbox": [float(i), 0.0, 1.0, 1.0], "score": 0.9} for i in range(150)]
    assert score_coco(crowd, junk + truth, max_dets=100)["AR"] == 0.0
    assert score_coco(crowd, junk + truth, max_dets=500)["AR"] == pytest.approx(1.0)


# -- categories and conversion -------------------------------------------------------------------


def dataset_with(categories: list[tuple[int, str]]) -> CocoDataset:
    annotations = {"images": [], "annotations": [], "categories": [{"id": i, "name": n} for i, n in categories]}
    return CocoDataset(Path("."), annotations)


@pytest.mark.parametrize(
    ("dataset_categories", "model_names", "expected"),
    [
        ([(1, "person"), (3, "car")], ("person", "bicycle", "car"), {0: 1, 2: 3}),
        ([(4, "motorcycle"), (62, "tv")], ("motorbike", "tvmonitor"), {0: 4, 1: 62}),  # Darknet model
        ([(7, "motorbike"), (9, "sofa")], ("couch", "motorcycle"), {0: 9, 1: 7}),  # VOC-style dataset
        ([(1, "Person")], ("person",), {0: 1}),
        ([(1, "widget")], ("person",), {}),
    ],
)
def test_category_ids_for_matches_by_canonical_name(
    dataset_categories: list[tuple[int, str]], model_names: tuple[str, ...], expected: dict[int, int]
) -> None:
    assert dataset_with(dataset_categories).category_ids_for(model_names) == expected


def test_coco80_model_names_map_onto_the_coco_tiny_categories(tiny: dict[str, Any]) -> None:
    category_of = CocoDataset(COCO_TINY, tiny).category_ids_for(COCO80_NAMES)
    assert category_of[0] == 1  # person
    assert category_of[79] == 90  # toothbrush: COCO ids have gaps


def test_detections_to_coco_writes_xywh_and_drops_unmapped_classes() -> None:
    found = Detections.from_arrays([[10, 20, 50, 80], [0, 0, 5, 5]], [0.9, 0.4], [2, 7])
    assert detections_to_coco(42, found, {2: 3}) == [
        {"image_id": 42, "category_id": 3, "bbox": [10.0, 20.0, 40.0, 60.0], "score": pytest.approx(0.9)}
    ]


def test_first_keeps_only_the_annotations_of_the_kept_images(tiny: dict[str, Any]) -> None:
    subset = CocoDataset(COCO_TINY, tiny).first(3)
    kept = {image["id"] for image in subset.images}
    assert len(kept) == 3
    assert subset.annotations["annotations"]
    assert {a["image_id"] for a in subset.annotations["annotations"]} <= kept
    assert len(tiny["images"]) == 50  # the original is untouched


def test_first_refuses_a_zero_limit(tiny: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequestError, match="at least 1"):
        CocoDataset(COCO_TINY, tiny).first(0)


def test_load_names_the_missing_annotations_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError, match="annotations.coco.json"):
        CocoDataset.load(tmp_path)


# -- evaluate ------------------------------------------------------------------------------------


class GroundTruthDetector:
    """Answers each image with its own ground truth, so evaluate() alone decides the score."""

    model = FakeModel(FakeInfo(names=COCO80_NAMES))

    def __init__(self, dataset: CocoDataset) -> None:
        coco80_of = {v: k for k, v in dataset.category_ids_for(COCO80_NAMES).items()}
        self.truth: dict[bytes, Detections] = {}
        for image in dataset.images:
            boxes = [a for a in dataset.annotations["annotations"] if a["image_id"] == image["id"] and not a["iscrowd"]]
            xyxy = [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in boxes)]
            classes = [coco80_of[a["category_id"]] for a in boxes]
            found = Detections.from_arrays(xyxy, [1.0] * len(boxes), classes)
            self.truth[dataset.image_path(image).read_bytes()] = found
        self.calls = 0

    def predict_bytes(self, data: bytes, options: DetectOptions) -> Prediction:
        self.calls += 1
        return Prediction(self.truth[data], ImageSize(1, 1), {"total": 1.0}, tile_count=4)


def test_evaluate_scores_only_the_limited_images() -> None:
    dataset = CocoDataset.load(require(COCO_TINY))
    detector = GroundTruthDetector(dataset.first(4))
    summary = evaluate(detector, dataset, DetectOptions(), max_dets=100, limit=4, progress=False)  # type: ignore[arg-type]
    assert summary["AP"] == pytest.approx(1.0)
    assert summary["AR"] == pytest.approx(1.0)  # the other 46 images' boxes are not counted as misses
    assert summary["images"] == 4
    assert summary["tiles_per_image"] == 4
    assert detector.calls == 5  # one warm-up, then one per image


def test_evaluate_refuses_a_model_with_no_class_of_the_dataset(tiny: dict[str, Any]) -> None:
    detector = GroundTruthDetector(CocoDataset(COCO_TINY, tiny).first(1))
    widgets = CocoDataset(COCO_TINY, {**tiny, "categories": [{"id": 1, "name": "widget"}]})
    with pytest.raises(InvalidRequestError, match="match the dataset"):
        evaluate(detector, widgets, DetectOptions(), max_dets=100, progress=False)  # type: ignore[arg-type]
    assert detector.calls == 0  # refused before any inference


def test_evaluate_runs_the_real_pipeline(yolov5n_detector: Any) -> None:
    dataset = CocoDataset.load(require(COCO_TINY))
    options = DetectOptions(conf=0.001, max_det=300)
    summary = evaluate(yolov5n_detector, dataset, options, max_dets=300, limit=5, progress=False)
    assert set(METRIC_NAMES) <= set(summary)
    assert summary["images"] == 5
    assert summary["AP50"] > 0.3  # yolov5n finds most of these COCO objects
    assert 0 < summary["seconds_per_image"] < 5


# -- tables --------------------------------------------------------------------------------------


def test_metrics_table_has_one_column_per_run_and_one_row_per_metric() -> None:
    run = {**dict.fromkeys(METRIC_NAMES, 0.25), "AP_large": -1.0, "seconds_per_image": 0.0421}
    lines = metrics_table({"full image": run, "sliced": {**run, "AP": 0.5}}).splitlines()
    assert lines[0].split() == ["metric", "full", "image", "sliced"]
    assert lines[1].split() == ["AP", "0.250", "0.500"]
    assert lines[6].split() == ["AP_large", "n/a", "n/a"]  # nothing of that size in the set
    assert lines[-1].split() == ["seconds", "per", "image", "0.042", "0.042"]
    assert len(lines) == 10


def test_format_table_aligns_columns() -> None:
    lines = format_table(["name", "value"], [["a", "1"], ["longer", "100"]]).splitlines()
    assert lines == ["name    value", "a           1", "longer    100"]


def test_score_coco_refuses_max_dets_below_one(tiny: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequestError, match="max_dets"):
        score_coco(tiny, perfect_results(tiny), max_dets=0)


def test_evaluate_scores_a_model_on_the_categories_it_has() -> None:
    """A person-only model that finds every person scores 1.0, not 1/37 for the dataset's other classes."""
    dataset = CocoDataset.load(require(COCO_TINY)).first(6)
    detector = GroundTruthDetector(dataset)
    people = {
        data: Detections.from_arrays(found.xyxy[found.class_id == 0], found.confidence[found.class_id == 0],
                                     np.zeros(int((found.class_id == 0).sum())))
        for data, found in detector.truth.items()
    }  # fmt: skip
    detector.truth = people
    detector.model = FakeModel(FakeInfo(names=("person",)))
    summary = evaluate(detector, dataset, DetectOptions(), max_dets=100, progress=False)  # type: ignore[arg-type]
    assert summary["AP"] == pytest.approx(1.0)
    assert summary["categories_scored"] == 1 < summary["categories"]
