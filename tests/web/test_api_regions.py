"""Regions over HTTP: POST /predict (one image and batches) keeps what is anchored inside, refuses bad
polygons with a 400 naming them, and documents the fields."""

from __future__ import annotations

from typing import Any

import numpy as np

from conftest import COCO_TINY, jpeg_bytes, require
from factories import b64
from specks.core.regions import RegionAnchor, anchor_points, inside_polygon

CROWD_PHOTO = "000000463730.jpg"  # 640x426: 14 people and 8 other objects across the frame
LEFT_HALF = {"points": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]], "units": "fraction"}


def photo() -> str:
    return b64(require(COCO_TINY / "images" / CROWD_PHOTO).read_bytes())


def anchors(answer: dict[str, Any], anchor: RegionAnchor = RegionAnchor.BOTTOM_CENTER) -> np.ndarray:
    boxes = np.array([[d["box"][k] for k in ("x1", "y1", "x2", "y2")] for d in answer["detections"]], np.float32)
    return anchor_points(boxes.reshape(-1, 4), anchor)


def test_only_detections_anchored_in_the_region_are_answered(client) -> None:  # type: ignore[no-untyped-def]
    everything = client.post("/predict", json={"image": photo(), "conf": 0.1}).get_json()
    left = client.post("/predict", json={"image": photo(), "conf": 0.1, "regions": [LEFT_HALF]})
    assert left.status_code == 200
    answer = left.get_json()
    width = answer["image"]["width"]
    assert answer["image"] == everything["image"]  # boxes and size stay in original-image pixels
    assert len(answer["detections"]) >= 3 and (anchors(answer)[:, 0] <= width / 2).all()
    right_of_middle = (anchors(everything)[:, 0] > width / 2).sum()
    assert right_of_middle >= 3 and len(answer["detections"]) < len(everything["detections"])


def test_an_exclude_region_and_the_centre_anchor(client) -> None:  # type: ignore[no-untyped-def]
    request = {"image": photo(), "conf": 0.1, "regions": [{**LEFT_HALF, "exclude": True}], "region_anchor": "center"}
    answer = client.post("/predict", json=request).get_json()
    width = answer["image"]["width"]
    assert len(answer["detections"]) >= 3
    assert (anchors(answer, RegionAnchor.CENTER)[:, 0] >= width / 2).all()


def test_pixel_regions_and_an_empty_list(client) -> None:  # type: ignore[no-untyped-def]
    triangle = [[0, 426], [640, 426], [320, 150]]
    answer = client.post("/predict", json={"image": photo(), "conf": 0.1, "regions": [{"points": triangle}]}).get_json()
    assert inside_polygon(anchors(answer).astype(np.float64), np.array(triangle, np.float64)).all()
    whole = client.post("/predict", json={"image": photo(), "conf": 0.1}).get_json()
    assert (
        client.post("/predict", json={"image": photo(), "conf": 0.1, "regions": []}).get_json()["detections"]
        == (whole["detections"])
    )


def test_a_batch_applies_the_regions_to_every_image(client) -> None:  # type: ignore[no-untyped-def]
    request = {"images": [photo(), photo()], "conf": 0.1, "regions": [LEFT_HALF]}
    first, second = client.post("/predict", json=request).get_json()["results"]
    assert first["detections"] == second["detections"] and len(first["detections"]) >= 3
    assert (anchors(first)[:, 0] <= first["image"]["width"] / 2).all()


def test_regions_with_a_picture(client) -> None:  # type: ignore[no-untyped-def]
    answer = client.post("/predict", json={"image": photo(), "regions": [LEFT_HALF], "visualize": True})
    assert answer.status_code == 200 and answer.get_json()["visualization"]


def test_bad_regions_are_a_400_naming_the_region_and_the_server_keeps_serving(client) -> None:  # type: ignore[no-untyped-def]
    image = b64(jpeg_bytes(64, 48))
    bow_tie = {"points": [[0, 0], [10, 10], [10, 0], [0, 10]]}
    crossed = client.post("/predict", json={"image": image, "regions": [LEFT_HALF, bow_tie]})
    assert crossed.status_code == 400
    assert crossed.get_json()["error"] == {
        "code": "invalid_field",
        "message": "'regions[1]' crosses itself; list its corners in order around the outline",
        "field": "regions",
    }
    outside = client.post(
        "/predict", json={"image": image, "regions": [{"points": [[100, 100], [200, 100], [200, 200]]}]}
    )
    assert outside.status_code == 400
    assert "'regions[0]' lies wholly outside the 64x48 image" in outside.get_json()["error"]["message"]
    assert client.post("/predict", json={"image": image}).status_code == 200


def test_the_model_route_and_openapi_document_the_fields(client) -> None:  # type: ignore[no-untyped-def]
    defaults = client.get("/model").get_json()["defaults"]
    assert defaults["regions"] == [] and defaults["region_anchor"] == "bottom_center"
    document = client.get("/openapi.json").get_json()
    region = document["components"]["schemas"]["RegionModel"]
    assert set(region["properties"]) == {"points", "units", "exclude"}
    assert "regions" in document["components"]["schemas"]["PredictRequest"]["properties"]
