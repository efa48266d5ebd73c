"""'visualize': the drawn picture has the image's size and its outlines are where the API's boxes are."""

from __future__ import annotations

import base64
import io
import math

import numpy as np
from flask.testing import FlaskClient
from PIL import Image

from conftest import COCO_TINY, require
from factories import b64, exif_rotated_jpeg
from specks.core.visualize import class_color

PERSON_PHOTO = "000000085329.jpg"


def picture_of(answer: dict) -> np.ndarray:  # type: ignore[type-arg]
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(answer["visualization"]))).convert("RGB")).astype(int)


def side_distance(picture: np.ndarray, box: dict[str, float], color: np.ndarray, offset: int) -> float:
    """Median distance to ``color`` of the pixels ``offset`` outside the box's left and right sides
    (negative: inside), leaving the corners out (labels may sit there)."""
    x1, y1, x2, y2 = math.floor(box["x1"]), math.floor(box["y1"]), math.ceil(box["x2"]), math.ceil(box["y2"])
    rows = slice(y1 + 4, y2 - 4)
    sides = np.concatenate([picture[rows, x1 - offset], picture[rows, x2 - 1 + offset]])
    return float(np.median(np.abs(sides - color).sum(axis=1)))


def test_the_picture_matches_the_image_and_outlines_sit_on_the_api_boxes(client: FlaskClient) -> None:
    data = require(COCO_TINY / "images" / PERSON_PHOTO).read_bytes()
    answer = client.post("/predict", json={"image": b64(data), "visualize": True, "conf": 0.5}).get_json()
    picture = picture_of(answer)
    assert picture.shape[:2] == (answer["image"]["height"], answer["image"]["width"])
    assert answer["timing_ms"]["visualize"] > 0
    checked = 0
    for detection in answer["detections"]:
        box = detection["box"]
        if box["x1"] < 3 or box["x2"] > answer["image"]["width"] - 3 or box["y2"] - box["y1"] < 20:
            continue
        color = np.array(class_color(detection["class_id"]))
        on_edge = side_distance(picture, box, color, 1)
        assert on_edge < 90, (detection, on_edge)
        assert on_edge < side_distance(picture, box, color, -6)  # the colour is at the edge, not inside
        assert on_edge < side_distance(picture, box, color, 8)  # nor further out
        checked += 1
    assert checked >= 1


def test_the_picture_is_of_the_image_as_displayed(client: FlaskClient) -> None:
    answer = client.post("/predict", json={"image": b64(exif_rotated_jpeg((400, 300), 6)), "visualize": True})
    assert picture_of(answer.get_json()).shape[:2] == (400, 300)  # EXIF orientation applied


def test_no_picture_unless_asked(client: FlaskClient) -> None:
    data = require(COCO_TINY / "images" / PERSON_PHOTO).read_bytes()
    answer = client.post("/predict", json={"image": b64(data)}).get_json()
    assert "visualization" not in answer and "visualize" not in answer["timing_ms"]


def test_a_batch_draws_every_image(client: FlaskClient) -> None:
    data = b64(require(COCO_TINY / "images" / PERSON_PHOTO).read_bytes())
    results = client.post("/predict", json={"images": [data, data], "visualize": True}).get_json()["results"]
    assert [picture_of(r).shape[:2] == (r["image"]["height"], r["image"]["width"]) for r in results] == [True, True]
