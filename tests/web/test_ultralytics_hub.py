"""The Ultralytics HUB-compatible inference API, as the scripts written for HUB call it.

In-process tests send what ``requests.post(url, headers={"x-api-key": ...}, files=..., data=...)``
builds (the file part ``file``, or ``image`` for older scripts); the slow test runs the HUB docs'
own Python example against a real gunicorn server.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask.testing import FlaskClient

from conftest import COCO_TINY, MODELS, LiveServer, app_for, jpeg_bytes, live_server_for, require, serving
from factories import b64
from specks.config import Security
from specks.core.pipeline import Detector
from specks.web.compat_schemas import HubResponse

PERSON_PHOTO = "000000085329.jpg"  # 640x449, one person
BUSY_PHOTO = "000000296649.jpg"  # 640x427, many objects
MODEL_ID = "R6nMlK6kQjSsQ76MPqQM"  # the shape of a HUB model id: not a model this server serves by name
HUB_KEY_HEADER = {"x-api-key": "a-hub-key"}


def photo(name: str) -> bytes:
    return require(COCO_TINY / "images" / name).read_bytes()


def hub_post(client: FlaskClient, image: bytes | None, *, part: str = "file", model_id: str = MODEL_ID,
             headers: dict[str, str] | None = None, **fields: object) -> Any:  # fmt: skip
    """The request ``requests.post(url, headers=..., files={part: image}, data=fields)`` sends."""
    files = {part: image} if image is not None else None
    prepared = requests.Request(
        "POST", f"http://specks.test/v1/predict/{model_id}", files=files, data=fields or None
    ).prepare()
    body = prepared.body if isinstance(prepared.body, bytes) else (prepared.body or "").encode()
    return client.post(
        f"/v1/predict/{model_id}",
        data=body,
        content_type=prepared.headers.get("Content-Type", ""),
        headers=headers if headers is not None else HUB_KEY_HEADER,
    )


def results_of(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.get_json()
    return response.get_json()["images"][0]["results"]


@pytest.fixture(scope="module")
def dynamic_client(default_detector: Detector, cache_dir: Path) -> FlaskClient:
    """The embedded default, whose input size a request may choose."""
    return app_for(default_detector, cache_dir).test_client()


# -- the answer ---------------------------------------------------------------------------------


def test_answer_is_hubs_detection_response(client: FlaskClient) -> None:
    response = hub_post(client, photo(PERSON_PHOTO), imgsz=640, conf=0.25, iou=0.45)

    assert response.status_code == 200
    body = response.get_json()
    HubResponse.model_validate(body)
    (image,) = body["images"]
    assert image["shape"] == [449, 640]  # [height, width]
    assert [r["name"] for r in image["results"]][:1] == ["person"]
    assert set(image["speed"]) == {"preprocess", "inference", "postprocess"}
    assert image["speed"]["inference"] > 0
    for result in image["results"]:
        assert set(result) == {"class", "name", "confidence", "box"}
        assert result["confidence"] >= 0.25
        box = result["box"]
        assert 0 <= box["x1"] < box["x2"] <= 640 and 0 <= box["y1"] < box["y2"] <= 449
    confidences = [r["confidence"] for r in image["results"]]
    assert confidences == sorted(confidences, reverse=True)


def test_results_are_those_of_predict_in_hubs_names(client: FlaskClient) -> None:
    data = photo(BUSY_PHOTO)
    hub = results_of(hub_post(client, data, conf=0.3, iou=0.5))
    own = client.post("/predict", json={"image": b64(data), "conf": 0.3, "iou": 0.5}).get_json()["detections"]

    assert len(hub) == len(own) > 3
    for mine, theirs in zip(own, hub, strict=True):
        assert (theirs["name"], theirs["class"], theirs["confidence"]) == (
            mine["label"],
            mine["class_id"],
            mine["confidence"],
        )
        assert theirs["box"] == pytest.approx({k: mine["box"][k] for k in ("x1", "y1", "x2", "y2")}, abs=0.01)


def test_older_scripts_field_and_part_names_mean_the_same(client: FlaskClient) -> None:
    data = photo(BUSY_PHOTO)
    current = results_of(hub_post(client, data, conf=0.5))
    older = results_of(hub_post(client, data, part="image", confidence=0.5, size=640))
    assert older == current
    assert all(r["confidence"] >= 0.5 for r in current)
    assert len(results_of(hub_post(client, data, conf=0.1))) > len(current)


def test_conf_defaults_to_hubs_025(client: FlaskClient) -> None:
    data = photo(BUSY_PHOTO)
    assert results_of(hub_post(client, data)) == results_of(hub_post(client, data, conf=0.25))


def test_any_model_id_is_answered_by_the_served_model_and_metadata_says_which(client: FlaskClient) -> None:
    body = hub_post(client, photo(PERSON_PHOTO)).get_json()
    assert body["metadata"]["model_id"] == MODEL_ID
    assert body["metadata"]["model"]["name"] == "yolov5n.onnx"
    by_name = hub_post(client, photo(PERSON_PHOTO), model_id="yolov5n.onnx").get_json()
    assert by_name["images"][0]["results"] == body["images"][0]["results"]


def test_imgsz_sets_the_input_of_a_dynamic_model_as_predict_does(dynamic_client: FlaskClient) -> None:
    data = photo(BUSY_PHOTO)
    small = results_of(hub_post(dynamic_client, data, imgsz=320))
    own = dynamic_client.post("/predict", json={"image": b64(data), "imgsz": 320}).get_json()["detections"]
    assert [r["confidence"] for r in small] == [d["confidence"] for d in own]
    assert small != results_of(hub_post(dynamic_client, data, imgsz=640))


def test_a_fixed_size_model_ignores_imgsz_where_predict_refuses_it(client: FlaskClient) -> None:
    data = photo(PERSON_PHOTO)
    assert results_of(hub_post(client, data, imgsz=320)) == results_of(hub_post(client, data))
    assert client.post("/predict", json={"image": b64(data), "imgsz": 320}).status_code == 400


def test_small_object_mode_applies_as_on_predict(client: FlaskClient) -> None:
    """A 2000x1500 drone photo is sliced (server default auto) on both routes: same detections."""
    data = require(MODELS.parent / "data" / "visdrone_dev10" / "images" / "9999999_00023_d_0000001.jpg").read_bytes()
    hub = results_of(hub_post(client, data, conf=0.3))
    own = client.post("/predict", json={"image": b64(data), "conf": 0.3}).get_json()
    assert own["tiles"] > 1
    assert len(hub) == len(own["detections"]) > 10


def test_the_index_lists_the_route(client: FlaskClient) -> None:
    assert "POST /v1/predict/<model_id>" in client.get("/").get_json()["endpoints"]


# -- refusals -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "status", "message_part"),
    [
        pytest.param({"conf": "abc"}, 400, "'conf' must be a number from 0 to 1 (got 'abc')", id="conf-text"),
        pytest.param({"confidence": "1.5"}, 400, "'confidence' must be a number from 0 to 1", id="old-conf-range"),
        pytest.param({"iou": "nan"}, 400, "'iou' must be a number from 0 to 1", id="iou-nan"),
        pytest.param({"imgsz": "10"}, 400, "'imgsz' must be a whole number from 32 to 4096", id="imgsz-small"),
        pytest.param({"size": "640.5"}, 400, "'size' must be a whole number", id="size-fraction"),
    ],
)
def test_bad_fields_are_hub_errors_naming_the_field(
    client: FlaskClient, fields: dict[str, str], status: int, message_part: str
) -> None:
    response = hub_post(client, photo(PERSON_PHOTO), **fields)
    assert response.status_code == status
    body = response.get_json()
    assert set(body) == {"success", "message"} and body["success"] is False
    assert message_part in body["message"]


def test_a_request_without_a_file_part_says_which_to_send(client: FlaskClient) -> None:
    response = hub_post(client, None, conf=0.5)
    assert response.status_code == 400
    assert "file part 'file'" in response.get_json()["message"]
    text_only = hub_post(client, None, file="not a file part")
    assert text_only.status_code == 400


@pytest.mark.parametrize(
    ("make", "status", "message_part"),
    [
        pytest.param(lambda c: hub_post(c, b"text, not an image"), 400, "not a supported image", id="not-an-image"),
        pytest.param(lambda c: hub_post(c, photo(PERSON_PHOTO)[:2000]), 400, "truncated or corrupt", id="truncated"),
        pytest.param(
            lambda c: c.post(f"/v1/predict/{MODEL_ID}", json={"file": b64(jpeg_bytes(32, 32))}),
            415,
            "multipart/form-data with the file part 'file'",
            id="json-body",
        ),
    ],
)
def test_hostile_requests_get_hub_errors_and_the_server_keeps_serving(
    client: FlaskClient, make: Any, status: int, message_part: str
) -> None:
    response = make(client)
    assert response.status_code == status
    body = response.get_json()
    assert body["success"] is False and message_part in body["message"]
    assert hub_post(client, photo(PERSON_PHOTO)).status_code == 200


def test_wrong_method_is_json(client: FlaskClient) -> None:
    response = client.get(f"/v1/predict/{MODEL_ID}")
    assert response.status_code == 405
    assert response.is_json


def test_api_keys_are_read_from_hubs_x_api_key_header(yolov5n_detector: Detector, cache_dir: Path) -> None:
    client = app_for(yolov5n_detector, cache_dir, security=Security(api_keys=("k3y",))).test_client()
    missing = hub_post(client, photo(PERSON_PHOTO), headers={})
    wrong = hub_post(client, photo(PERSON_PHOTO))
    right = hub_post(client, photo(PERSON_PHOTO), headers={"x-api-key": "k3y"})
    assert [missing.status_code, wrong.status_code, right.status_code] == [401, 401, 200]
    assert missing.get_json()["success"] is False and "API key" in missing.get_json()["message"]


# -- a real server ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hub_server(cache_dir: Path) -> Iterator[LiveServer]:
    yield from serving(live_server_for(MODELS / "yolov5n.onnx", cache_dir, workers=1))


@pytest.mark.slow
def test_live_the_hub_docs_python_example(hub_server: LiveServer, tmp_path: Path) -> None:
    """HUB's documented script, with only its URL changed (and the picture saved to a file first)."""
    image_path = tmp_path / "image.jpg"
    image_path.write_bytes(photo(PERSON_PHOTO))

    url = f"{hub_server.url}/v1/predict/{MODEL_ID}"
    headers = {"x-api-key": "API_KEY"}
    data = {"imgsz": 640, "conf": 0.25, "iou": 0.45}
    with open(image_path, "rb") as image_file:
        files = {"file": image_file}
        response = requests.post(url, headers=headers, files=files, data=data, timeout=30)

    assert response.status_code == 200
    assert response.headers["Content-Length"] == str(len(response.content))
    result = response.json()["images"][0]
    assert result["shape"] == [449, 640]
    assert result["results"][0]["name"] == "person"
    broken = requests.post(url, headers=headers, files={"file": b"not an image"}, timeout=30)
    assert broken.status_code == 400 and broken.json()["success"] is False
    assert requests.post(url, headers=headers, files={"file": photo(PERSON_PHOTO)}, timeout=30).status_code == 200
