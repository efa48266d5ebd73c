"""The Roboflow-compatible API: its answer shape and options in-process, and the real clients live.

The slow tests run Roboflow's own ``inference-sdk`` (``InferenceHTTPClient``) unchanged against a
real gunicorn server and parse its answers with supervision's ``Detections.from_inference``.
"""

from __future__ import annotations

import base64
import http.client
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from conftest import COCO_TINY, MODELS, LiveServer, jpeg_bytes, live_server_for, require, serving
from factories import b64
from specks.config import Limits, Settings
from specks.core.pipeline import Detector
from specks.web import create_app
from specks.web.roboflow import DEFAULT_CONFIDENCE

MAX_BATCH_IMAGES = Limits().max_batch_images  # as POST /predict's batches
PERSON_PHOTO = "000000085329.jpg"  # 640x449, one person
BUSY_PHOTO = "000000296649.jpg"  # 640x427, people, cars and motorcycles
INFER = "/infer/object_detection"
PREDICTION_KEYS = {"x", "y", "width", "height", "confidence", "class", "class_id", "detection_id"}


def photo_path(name: str) -> Path:
    return require(COCO_TINY / "images" / name)


def image_ref(data: bytes) -> dict[str, str]:
    return {"type": "base64", "value": b64(data)}


def infer_body(image: Any, **options: Any) -> dict[str, Any]:
    """What inference-sdk sends (CLIENTS.md), plus the options a user configured."""
    return {
        "api_key": None,
        "model_id": "coco/3",
        "visualize_predictions": False,
        "disable_active_learning": False,
        "image": image,
        **options,
    }


def infer(client: FlaskClient, image: Any, **options: Any) -> Any:
    return client.post(INFER, json=infer_body(image, **options))


def is_uuid(text: str) -> bool:
    return str(uuid.UUID(text)) == text


@pytest.fixture(scope="module")
def busy() -> bytes:
    return photo_path(BUSY_PHOTO).read_bytes()


# -- registry, add, info ------------------------------------------------------------------------


def test_registry_lists_the_served_model_as_object_detection(client: FlaskClient) -> None:
    response = client.get("/model/registry?api_key=None")

    assert response.status_code == 200
    assert response.get_json() == {"models": [{"model_id": "yolov5n.onnx", "task_type": "object-detection"}]}


def test_registry_with_a_trailing_slash_client_url(client: FlaskClient) -> None:
    """inference-sdk with api_url ending in '/' asks for //model/registry."""
    response = client.get("/", environ_overrides={"PATH_INFO": "//model/registry", "QUERY_STRING": "api_key=None"})

    assert response.status_code == 200
    assert response.get_json()["models"][0]["task_type"] == "object-detection"


@pytest.mark.parametrize("model_id", ["coco/3", "yolov8n-640", "my-workspace/people/7", "yolov5n.onnx"])
def test_model_add_echoes_the_clients_id(client: FlaskClient, model_id: str) -> None:
    response = client.post("/model/add", json={"model_id": model_id, "api_key": None})

    assert response.status_code == 200
    models = response.get_json()["models"]
    assert models[0] == {"model_id": model_id, "task_type": "object-detection"}
    assert [m["model_id"] for m in models].count(model_id) == 1


def test_model_add_without_an_id_is_a_400_message(client: FlaskClient) -> None:
    response = client.post("/model/add", json={"api_key": None})

    assert response.status_code == 400
    assert response.get_json() == {"message": "'model_id' is required"}


def test_info_names_the_server_with_a_stable_uuid(client: FlaskClient) -> None:
    first, second = client.get("/info").get_json(), client.get("/info").get_json()

    assert set(first) == {"name", "version", "uuid"}
    assert all(isinstance(v, str) for v in first.values())
    assert is_uuid(first["uuid"])
    assert first == second


# -- inference ----------------------------------------------------------------------------------


def test_answer_shape_and_centre_boxes(client: FlaskClient, busy: bytes) -> None:
    response = infer(client, image_ref(busy))
    own = client.post("/predict", json={"image": b64(busy), "conf": DEFAULT_CONFIDENCE}).get_json()

    assert response.status_code == 200
    answer = response.get_json()
    assert set(answer) == {"inference_id", "time", "image", "predictions", "model"}
    assert is_uuid(answer["inference_id"])
    assert 0 < answer["time"] < 60  # seconds
    assert answer["image"] == {"width": 640, "height": 427}
    assert answer["model"]["name"] == "yolov5n.onnx"  # which model answered "coco/3"
    assert len(answer["predictions"]) == len(own["detections"]) > 3
    for prediction, detection in zip(answer["predictions"], own["detections"], strict=True):
        assert set(prediction) == PREDICTION_KEYS
        box = detection["box"]
        assert prediction["x"] == pytest.approx((box["x1"] + box["x2"]) / 2, abs=0.02)
        assert prediction["y"] == pytest.approx((box["y1"] + box["y2"]) / 2, abs=0.02)
        assert prediction["width"] == pytest.approx(box["x2"] - box["x1"], abs=0.02)
        assert prediction["height"] == pytest.approx(box["y2"] - box["y1"], abs=0.02)
        assert (prediction["class"], prediction["class_id"]) == (detection["label"], detection["class_id"])
        assert prediction["confidence"] == detection["confidence"]
        assert is_uuid(prediction["detection_id"])
    assert len({p["detection_id"] for p in answer["predictions"]}) == len(answer["predictions"])


def test_a_list_of_images_gets_a_list_of_answers_in_order(client: FlaskClient, busy: bytes) -> None:
    images = [image_ref(busy), image_ref(jpeg_bytes(200, 100)), image_ref(photo_path(PERSON_PHOTO).read_bytes())]
    response = infer(client, images)

    assert response.status_code == 200
    answers = response.get_json()
    assert [a["image"] for a in answers] == [
        {"width": 640, "height": 427},
        {"width": 200, "height": 100},
        {"width": 640, "height": 449},
    ]
    assert len({a["inference_id"] for a in answers}) == 3
    assert infer(client, [image_ref(busy)]).is_json and isinstance(infer(client, [image_ref(busy)]).get_json(), list)


@pytest.mark.parametrize(
    ("options", "check"),
    [
        pytest.param({}, lambda ps, base: min(p["confidence"] for p in ps) >= 0.4, id="default-0.4"),
        pytest.param({"confidence": "default"}, lambda ps, base: ps == base, id="default-word"),
        pytest.param({"confidence": "best"}, lambda ps, base: ps == base, id="best-word"),
        pytest.param({"confidence": 0.7}, lambda ps, base: 0 < len(ps) < len(base), id="confidence"),
        pytest.param({"confidence": 0.1}, lambda ps, base: len(ps) > len(base), id="low-confidence"),
        pytest.param({"max_detections": 2}, lambda ps, base: ps == base[:2], id="max-detections"),
        pytest.param({"class_filter": ["car"]}, lambda ps, base: {p["class"] for p in ps} == {"car"}, id="filter"),
        pytest.param({"class_filter": []}, lambda ps, base: ps == base, id="empty-filter-is-none"),
        pytest.param({"class_agnostic_nms": False}, lambda ps, base: ps == base, id="class-nms-false"),
        pytest.param({"class_agnostic_nms": True}, lambda ps, base: 0 < len(ps) <= len(base), id="class-nms"),
        pytest.param({"iou_threshold": 0.9, "confidence": 0.1}, lambda ps, base: len(ps) >= len(base), id="iou"),
        pytest.param({"visualize_predictions": True}, lambda ps, base: ps == base, id="visualize-same-boxes"),
        pytest.param({"max_candidates": 3000, "fix_batch_size": True, "disable_preproc_auto_orient": False,
                      "source": "workflow", "source_info": "x", "visualization_labels": True,
                      "visualization_stroke_width": 2},
                     lambda ps, base: ps == base, id="roboflow-only-fields-ignored"),
    ],
)  # fmt: skip
def test_options(client: FlaskClient, busy: bytes, options: dict[str, Any], check: Any) -> None:
    def drop_ids(answer: dict[str, Any]) -> list[dict[str, Any]]:
        return [{k: v for k, v in p.items() if k != "detection_id"} for p in answer["predictions"]]

    base = drop_ids(infer(client, image_ref(busy)).get_json())
    response = infer(client, image_ref(busy), **options)

    assert response.status_code == 200, response.get_data()
    assert ("visualization" in response.get_json()) is bool(options.get("visualize_predictions"))
    assert check(drop_ids(response.get_json()), base)


def test_visualize_predictions_answers_the_annotated_picture(client: FlaskClient, busy: bytes) -> None:
    import base64
    import io

    from PIL import Image

    answer = infer(client, image_ref(busy), visualize_predictions=True).get_json()
    picture = Image.open(io.BytesIO(base64.b64decode(answer["visualization"])))
    assert picture.format == "JPEG"
    assert picture.size == (answer["image"]["width"], answer["image"]["height"])


def test_iou_threshold_is_the_nms_iou(client: FlaskClient, busy: bytes) -> None:
    mine = infer(client, image_ref(busy), confidence=0.05, iou_threshold=0.2).get_json()["predictions"]
    own = client.post("/predict", json={"image": b64(busy), "conf": 0.05, "iou": 0.2}).get_json()["detections"]

    assert [p["confidence"] for p in mine] == [d["confidence"] for d in own]


# -- refusals -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_body_app(yolov5n_detector: Detector, cache_dir: Path) -> Flask:
    settings = Settings(cache_dir=cache_dir, limits=Limits(max_body_bytes=256 * 1024))
    application = create_app(settings, detector=yolov5n_detector)
    application.testing = True
    return application


TEXT_FILE = b"hello, I am a text file\n"
HOSTILE: list[tuple[str, Any, str, int, str]] = [
    # (id, JSON body or raw bytes, content type, status, words in the message)
    ("image as a url", infer_body({"type": "url", "value": "http://cam/1.jpg"}), "application/json", 403,
     "images by URL are off"),
    ("pickled numpy", infer_body({"type": "numpy", "value": "gASV"}), "application/json", 400, "type 'numpy'"),
    ("url in a batch", infer_body([image_ref(jpeg_bytes(32, 32)), {"type": "url", "value": "http://x/y.jpg"}]),
     "application/json", 403, "images by URL are off"),
    ("no image", {"model_id": "coco/3", "api_key": None}, "application/json", 400, "'image' is required"),
    ("empty batch", infer_body([]), "application/json", 400, "'image'"),
    ("too many images", infer_body([image_ref(b"x")] * (MAX_BATCH_IMAGES + 1)), "application/json", 413,
     "SPECKS_MAX_BATCH_IMAGES"),
    ("text file as image", infer_body(image_ref(TEXT_FILE)), "application/json", 400, "not a supported image"),
    ("not base64", infer_body({"type": "base64", "value": "%%%not base64%%%"}), "application/json", 400, "base64"),
    ("value not text", infer_body({"type": "base64", "value": 12}), "application/json", 400, "image"),
    ("confidence over 1", infer_body(image_ref(jpeg_bytes(32, 32)), confidence=1.5), "application/json", 400,
     "'confidence'"),
    ("confidence word", infer_body(image_ref(jpeg_bytes(32, 32)), confidence="worst"), "application/json", 400,
     "'confidence'"),
    ("class agnostic nms not bool", infer_body(image_ref(jpeg_bytes(32, 32)), class_agnostic_nms="yes"),
     "application/json", 400, "class_agnostic_nms"),
    ("unknown class", infer_body(image_ref(jpeg_bytes(32, 32)), class_filter=["forklift"]), "application/json", 400,
     "forklift"),
    ("not json", b"{nope", "application/json", 400, "not valid JSON"),
    ("json list", b"[1, 2]", "application/json", 400, "must be an object"),
    ("form body", b"image=abc", "application/x-www-form-urlencoded", 415, "application/json"),
    ("huge body", infer_body(image_ref(b"\xff\xd8" + b"\x00" * 300_000)), "application/json", 413, "limit"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "body", "content_type", "status", "words"), HOSTILE, ids=[c[0] for c in HOSTILE])
def test_hostile_inputs_get_roboflow_errors(
    small_body_app: Flask, case: str, body: Any, content_type: str, status: int, words: str
) -> None:
    client = small_body_app.test_client()
    if isinstance(body, bytes):
        response = client.post(INFER, data=body, content_type=content_type)
    else:
        response = client.post(INFER, json=body, content_type=content_type)

    assert response.status_code == status, response.get_data()
    answer = response.get_json()
    assert set(answer) == {"message"}
    assert words in answer["message"]
    assert infer(client, image_ref(jpeg_bytes(64, 48))).status_code == 200  # still serving


# -- the real clients, live ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def roboflow_server(cache_dir: Path) -> Iterator[LiveServer]:
    yield from serving(live_server_for(MODELS / "yolov5n.onnx", cache_dir, workers=1))


@pytest.fixture(scope="module")
def secured_roboflow_server(cache_dir: Path) -> Iterator[LiveServer]:
    env = {"SPECKS_API_KEYS": "s3cret"}
    yield from serving(live_server_for(MODELS / "yolov5n.onnx", cache_dir, workers=1, env=env))


def boxes_from_predict(server: LiveServer, data: bytes, conf: float = DEFAULT_CONFIDENCE) -> np.ndarray:
    detections = requests.post(server.url + "/predict", json={"image": b64(data), "conf": conf}, timeout=60).json()
    return np.array([[d["box"][k] for k in ("x1", "y1", "x2", "y2")] for d in detections["detections"]])


@pytest.mark.slow
@pytest.mark.parametrize("trailing_slash", [False, True], ids=["url", "url-with-slash"])
def test_inference_sdk_single_image_and_supervision(roboflow_server: LiveServer, trailing_slash: bool) -> None:
    from inference_sdk import InferenceHTTPClient

    sv = pytest.importorskip("supervision")
    client = InferenceHTTPClient(api_url=roboflow_server.url + ("/" if trailing_slash else ""), api_key=None)
    result = client.infer(str(photo_path(BUSY_PHOTO)), model_id="yolov8n-640")  # an alias: sent as coco/3

    assert isinstance(result, dict)
    assert result["model"]["name"] == "yolov5n.onnx"
    detections = sv.Detections.from_inference(result)
    expected = boxes_from_predict(roboflow_server, photo_path(BUSY_PHOTO).read_bytes())
    assert len(detections) == len(expected) > 3
    np.testing.assert_allclose(detections.xyxy, expected, atol=0.02)
    assert set(detections.data["class_name"]) <= {"person", "car", "motorcycle", "bus", "truck", "bicycle"}
    assert detections.class_id.dtype.kind == "i"
    assert np.all(detections.confidence >= 0.4)


@pytest.mark.slow
def test_inference_sdk_batches(roboflow_server: LiveServer) -> None:
    from inference_sdk import InferenceConfiguration, InferenceHTTPClient

    paths = [str(photo_path(BUSY_PHOTO)), str(photo_path(PERSON_PHOTO)), str(photo_path(BUSY_PHOTO))]
    client = InferenceHTTPClient(api_url=roboflow_server.url).configure(
        InferenceConfiguration(max_batch_size=2, confidence_threshold=0.3, max_concurrent_requests=2)
    )
    results = client.infer(paths, model_id="people-counter/2")

    assert isinstance(results, list)
    assert [r["image"]["height"] for r in results] == [427, 449, 427]
    assert results[0]["predictions"][0]["confidence"] == results[2]["predictions"][0]["confidence"]
    assert all(p["confidence"] >= 0.3 for r in results for p in r["predictions"])


@pytest.mark.slow
def test_inference_sdk_errors_carry_the_servers_message(roboflow_server: LiveServer) -> None:
    from inference_sdk import InferenceConfiguration, InferenceHTTPClient
    from inference_sdk.http.errors import HTTPCallErrorError

    client = InferenceHTTPClient(api_url=roboflow_server.url).configure(
        InferenceConfiguration(class_filter=["forklift"])
    )
    with pytest.raises(HTTPCallErrorError) as caught:
        client.infer(str(photo_path(PERSON_PHOTO)), model_id="coco/3")

    assert caught.value.status_code == 400
    assert "unknown class name 'forklift'" in caught.value.api_message
    assert InferenceHTTPClient(api_url=roboflow_server.url).get_server_info().version


@pytest.mark.slow
def test_inference_sdk_with_api_keys(secured_roboflow_server: LiveServer) -> None:
    from inference_sdk import InferenceConfiguration, InferenceHTTPClient
    from inference_sdk.http.errors import HTTPCallErrorError

    image = str(photo_path(PERSON_PHOTO))
    in_query_and_body = InferenceHTTPClient(api_url=secured_roboflow_server.url, api_key="s3cret")
    in_header = InferenceHTTPClient(api_url=secured_roboflow_server.url, api_key="s3cret").configure(
        InferenceConfiguration(api_key_transport="header")
    )
    assert in_query_and_body.infer(image, model_id="coco/3")["predictions"][0]["class"] == "person"
    assert in_header.infer(image, model_id="coco/3")["predictions"][0]["class"] == "person"

    for api_key in (None, "wrong"):  # None: the client sends the literal api_key=None
        with pytest.raises(HTTPCallErrorError) as caught:
            InferenceHTTPClient(api_url=secured_roboflow_server.url, api_key=api_key).infer(image, model_id="coco/3")
        assert caught.value.status_code == 401
        assert "API key" in caught.value.api_message


def raw(server: LiveServer, method: str, path: str, body: bytes = b"") -> tuple[int, bytes, dict[str, str]]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        headers = {"Content-Type": "application/json"} if body else {}
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read(), dict(response.getheaders())
    finally:
        connection.close()


@pytest.mark.slow
def test_live_double_slash_paths_and_content_length(roboflow_server: LiveServer) -> None:
    import orjson

    body = orjson.dumps(infer_body(image_ref(jpeg_bytes(64, 48))))
    url_body = orjson.dumps(infer_body({"type": "url", "value": "http://127.0.0.1:9/never.jpg"}))
    calls = [
        ("GET", "//model/registry?api_key=None", b"", 200),
        ("POST", "//model/add", b'{"model_id": "coco/3", "api_key": null}', 200),
        ("POST", "//infer/object_detection", body, 200),
        ("POST", "/infer/object_detection", url_body, 403),  # images by URL are off by default
        ("GET", "/info", b"", 200),
    ]
    for method, path, payload, status in calls:
        got, data, headers = raw(roboflow_server, method, path, payload)
        assert got == status, (path, data)
        assert headers.get("Content-Length") == str(len(data)), path
        assert "Transfer-Encoding" not in headers
        assert orjson.loads(data)


def test_base64_value_may_be_a_data_uri(client: FlaskClient) -> None:
    data = jpeg_bytes(64, 48)
    response = infer(client, {"type": "base64", "value": "data:image/jpeg;base64," + base64.b64encode(data).decode()})

    assert response.status_code == 200
    assert response.get_json()["image"] == {"width": 64, "height": 48}


def test_metrics_count_each_image_of_a_batch(client: FlaskClient) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    def inferences() -> float:
        text = client.get("/metrics").get_data(as_text=True)
        return sum(
            s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == "specks_stage_duration_seconds_count"
            and s.labels == {"route": INFER, "stage": "inference"}
        )

    before = inferences()
    assert infer(client, [image_ref(jpeg_bytes(64, 48)), image_ref(jpeg_bytes(48, 64))]).status_code == 200

    assert inferences() - before == 2
