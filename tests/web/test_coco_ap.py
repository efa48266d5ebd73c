"""Accuracy through the API: yolov5n served by Specks scores COCO AP >= 0.33 on coco_val2017_tiny50."""

from __future__ import annotations

import pytest

from conftest import COCO_TINY, require
from factories import b64
from specks.core.names import COCO80_NAMES
from specks.tools.evaluation import CocoDataset, score_coco


@pytest.mark.slow
def test_yolov5n_through_the_api_scores_coco_ap(client) -> None:  # type: ignore[no-untyped-def]
    dataset = CocoDataset.load(require(COCO_TINY))
    category_of = dataset.category_ids_for(COCO80_NAMES)
    results = []
    for image in dataset.images:
        image_b64 = b64(dataset.image_path(image).read_bytes())
        response = client.post("/predict", json={"image": image_b64, "conf": 0.001})
        assert response.status_code == 200
        for detection in response.get_json()["detections"]:
            if detection["class_id"] in category_of:
                box = detection["box"]
                results.append(
                    {
                        "image_id": image["id"],
                        "category_id": category_of[detection["class_id"]],
                        "bbox": [box["x1"], box["y1"], box["x2"] - box["x1"], box["y2"] - box["y1"]],
                        "score": detection["confidence"],
                    }
                )
    metrics = score_coco(dataset.annotations, results, max_dets=100)
    assert metrics["AP"] >= 0.33
    assert metrics["AP50"] >= 0.5
