"""The DeepStack / CodeProject.AI-compatible API, on the wire each client in CLIENTS.md uses.

In-process tests send the exact bytes ``requests`` builds for each client (a multipart body with
the file part named ``image``, file name ``image`` and no content type); the slow tests do the
same against a real gunicorn server.
"""

from __future__ import annotations

import http.client
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from flask.testing import FlaskClient
from PIL import Image

from conftest import COCO_TINY, MODELS, LiveServer, app_for, jpeg_bytes, live_server_for, require, serving
from factories import b64
from specks.config import CompatAPIs, Limits, Settings
from specks.core.pipeline import Detector
from specks.web import create_app
from specks.web.compat_schemas import DEEPSTACK_MIN_CONFIDENCE
from specks.web.deepstack import parse_min_confidence

PERSON_PHOTO = "000000085329.jpg"  # 640x449, one person
BUSY_PHOTO = "000000296649.jpg"  # 640x427: ten predictions at 0.40, more than twenty at 0.1
DETECTION = "/v1/vision/detection"
PREDICTION_KEYS = {"label", "confidence", "x_min", "y_min", "x_max", "y_max"}
CODEPROJECT_INT_FIELDS = ("count", "inferenceMs", "processMs", "analysisRoundTripMs")


def photo(name: str) -> bytes:
    return require(COCO_TINY / "images" / name).read_bytes()


def frigate_frame(name: str = PERSON_PHOTO, side_px: int = 320) -> bytes:
    """What Frigate sends: its model-input frame (a square region, resized to 320x320) as JPEG."""
    image = Image.open(io.BytesIO(photo(name))).convert("RGB")
    square = min(image.size)
    left = image.width - square  # the person stands on the right of PERSON_PHOTO
    frame = image.crop((left, 0, left + square, square)).resize((side_px, side_px))
    buffer = io.BytesIO()
    frame.save(buffer, format="JPEG")  # Frigate: PIL's default quality
    return buffer.getvalue()


def requests_multipart(image: bytes | None, fields: dict[str, str] | None = None) -> tuple[bytes, str]:
    """The body and Content-Type ``requests.post(url, files={"image": image}, data=fields)`` sends."""
    files = {"image": image} if image is not None else None
    prepared = requests.Request("POST", "http://specks.test/", files=files, data=fields or None).prepare()
    body = prepared.body if isinstance(prepared.body, bytes) else (prepared.body or "").encode()
    return body, prepared.headers.get("Content-Type", "")


def post_form(client: FlaskClient, path: str, image: bytes | None, **fields: str) -> Any:
    body, content_type = requests_multipart(image, fields)
    return client.post(path, data=body, content_type=content_type)


@pytest.fixture(scope="module")
def capped_client(yolov5n_detector: Detector, cache_dir: Path) -> FlaskClient:
    return app_for(yolov5n_detector, cache_dir, compat=CompatAPIs(max_predictions=3)).test_client()


def assert_deepstack_answer(body: dict[str, Any], width: int, height: int) -> None:
    """The contract every DeepStack client relies on (CLIENTS.md)."""
    assert body["success"] is True
    predictions = body["predictions"]
    assert body["count"] == len(predictions)
    confidences = [p["confidence"] for p in predictions]
    assert confidences == sorted(confidences, reverse=True)
    for prediction in predictions:
        assert set(prediction) == PREDICTION_KEYS
        assert isinstance(prediction["label"], str)
        assert 0.0 <= prediction["confidence"] <= 1.0
        for key in ("x_min", "y_min", "x_max", "y_max"):
            assert type(prediction[key]) is int, key  # deepstack-sdk draws them with OpenCV
        assert 0 <= prediction["x_min"] < prediction["x_max"] <= width
        assert 0 <= prediction["y_min"] < prediction["y_max"] <= height
    for field in CODEPROJECT_INT_FIELDS:
        assert type(body[field]) is int, field
    assert body["moduleId"] == "specks"
    assert body["executionProvider"] == "CPU"
    assert body["canUseGPU"] is False


# -- the answer ---------------------------------------------------------------------------------


def test_detection_answer_shape(client: FlaskClient) -> None:
    response = post_form(client, DETECTION, photo(PERSON_PHOTO), api_key="", min_confidence="0.45")

    assert response.status_code == 200
    assert response.headers["Content-Length"] == str(len(response.get_data()))
    body = response.get_json()
    assert_deepstack_answer(body, 640, 449)
    assert body["command"] == "detect"
    assert [p["label"] for p in body["predictions"]] == ["person"]
    assert all(p["confidence"] >= 0.45 for p in body["predictions"])


def test_predictions_match_predict_in_integer_pixels(client: FlaskClient) -> None:
    """The same detections as POST /predict with conf 0.40 (and the cap), corners rounded to ints."""
    data = photo(BUSY_PHOTO)
    deepstack = post_form(client, DETECTION, data).get_json()["predictions"]
    own = client.post("/predict", json={"image": b64(data), "conf": 0.4, "max_det": 20}).get_json()["detections"]

    assert len(deepstack) == len(own) == 10
    for mine, theirs in zip(own, deepstack, strict=True):
        assert theirs["label"] == mine["label"]
        assert theirs["confidence"] == mine["confidence"]
        box = mine["box"]
        assert [theirs["x_min"], theirs["y_min"], theirs["x_max"], theirs["y_max"]] == [
            round(box["x1"]),
            round(box["y1"]),
            round(box["x2"]),
            round(box["y2"]),
        ]


def test_small_object_mode_applies_as_on_predict(client: FlaskClient) -> None:
    """A 2000x1500 drone photo is sliced (server default auto) on both routes: same detections."""
    data = require(MODELS.parent / "data" / "visdrone_dev10" / "images" / "9999999_00023_d_0000001.jpg").read_bytes()
    own = client.post("/predict", json={"image": b64(data), "conf": 0.3, "max_det": 20}).get_json()
    deepstack = post_form(client, DETECTION, data, min_confidence="0.3").get_json()

    assert own["tiles"] > 0
    assert len(deepstack["predictions"]) == len(own["detections"]) == 20
    assert [p["confidence"] for p in deepstack["predictions"]] == [d["confidence"] for d in own["detections"]]
    assert_deepstack_answer(deepstack, 2000, 1500)


def test_min_confidence_defaults_to_deepstacks_040(client: FlaskClient) -> None:
    data = photo(BUSY_PHOTO)
    without = post_form(client, DETECTION, data, api_key="").get_json()["predictions"]
    at_040 = post_form(client, DETECTION, data, min_confidence="0.40").get_json()["predictions"]
    at_010 = post_form(client, DETECTION, data, min_confidence="0.1").get_json()["predictions"]

    assert DEEPSTACK_MIN_CONFIDENCE == 0.40
    assert without == at_040
    assert min(p["confidence"] for p in without) >= 0.40
    assert len(at_010) > len(without)


def test_predictions_are_capped_by_the_server_setting(capped_client: FlaskClient, client: FlaskClient) -> None:
    data = photo(BUSY_PHOTO)
    capped = post_form(capped_client, DETECTION, data, min_confidence="0.1").get_json()
    default_cap = post_form(client, DETECTION, data, min_confidence="0.1").get_json()

    assert len(capped["predictions"]) == capped["count"] == 3
    assert len(default_cap["predictions"]) == 20  # Frigate's 20 rows, the default
    assert capped["predictions"] == default_cap["predictions"][:3]  # the best three


def test_custom_model_route_serves_the_model_by_name(client: FlaskClient) -> None:
    data = photo(PERSON_PHOTO)
    custom = post_form(client, "/v1/vision/custom/yolov5n.onnx", data)
    plain = post_form(client, DETECTION, data)

    assert custom.status_code == 200
    assert custom.get_json()["command"] == "custom"
    assert custom.get_json()["predictions"] == plain.get_json()["predictions"]


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_custom_list_names_the_served_models(client: FlaskClient, method: str) -> None:
    response = client.open("/v1/vision/custom/list", method=method)

    assert response.status_code == 200
    body = response.get_json()
    assert body["success"] is True
    assert body["models"] == ["yolov5n.onnx"]
    assert body["command"] == "list"


@pytest.mark.parametrize("path", ["/v1/status/ping", "/v1/server/status/ping"])
def test_status_pings(client: FlaskClient, path: str) -> None:
    response = client.get(path)

    assert response.status_code == 200
    body = response.get_json()
    assert body["success"] is True
    assert body["version"] == body["message"] != ""


# -- each client's request ----------------------------------------------------------------------


def test_deepstack_python_request(client: FlaskClient) -> None:
    """deepstack-python 0.9 (and Home Assistant through it): api_key always, min_confidence as text."""
    response = post_form(client, DETECTION, photo(PERSON_PHOTO), api_key="", min_confidence="0.1")

    assert response.status_code == 200
    predictions = response.get_json()["predictions"]  # a KeyError in the client if absent
    # Home Assistant divides by its own image size and filters by confidence x 100.
    assert all(0 <= p["x_max"] / 640 <= 1 and 0 <= p["y_max"] / 449 <= 1 for p in predictions)
    assert any(p["label"] == "person" and p["confidence"] * 100 > 50 for p in predictions)


def test_deepstack_sdk_request_draws_with_opencv(client: FlaskClient) -> None:
    """deepstack-sdk 0.2.1: min_confidence 0.4, no api_key; it draws the boxes with cv2.rectangle."""
    cv2 = pytest.importorskip("cv2")
    response = post_form(client, DETECTION, photo(PERSON_PHOTO), min_confidence="0.4")
    canvas = np.zeros((449, 640, 3), np.uint8)

    for p in response.get_json()["predictions"]:
        cv2.rectangle(canvas, (p["x_min"], p["y_min"]), (p["x_max"], p["y_max"]), (0, 255, 0), 2)
    assert canvas.any()


def frigate_parse(answer: dict[str, Any], labels: list[str]) -> np.ndarray:
    """Frigate's deepstack detector, as it reads an answer (frigate/detectors/plugins/deepstack.py)."""
    detections = np.zeros((20, 6), np.float32)
    size = 320
    for i, detection in enumerate(answer.get("predictions") or []):
        if detection["confidence"] < 0.4 or detection["label"] not in labels:
            break
        detections[i] = [
            labels.index(detection["label"]),
            float(detection["confidence"]),
            detection["y_min"] / size,
            detection["x_min"] / size,
            detection["y_max"] / size,
            detection["x_max"] / size,
        ]
    return detections


def test_frigate_frame_is_answered_in_its_format(client: FlaskClient) -> None:
    """Frigate: a 320x320 JPEG, api_key "" and no min_confidence; it walks at most 20 rows."""
    response = post_form(client, DETECTION, frigate_frame(), api_key="")

    assert response.status_code == 200
    answer = response.get_json()
    assert_deepstack_answer(answer, 320, 320)
    rows = frigate_parse(answer, labels=["person", "car", "dog"])
    assert rows[0][0] == 0  # a person first
    assert 0.4 <= rows[0][1] <= 1
    assert 0 <= rows[0][2] < rows[0][4] <= 1 and 0 <= rows[0][3] < rows[0][5] <= 1


def test_frigate_never_overflows_its_20_rows(client: FlaskClient) -> None:
    answer = post_form(client, DETECTION, photo(BUSY_PHOTO), api_key="", min_confidence="0.01").get_json()

    assert len(answer["predictions"]) == 20
    frigate_parse(answer, labels=sorted({p["label"] for p in answer["predictions"]}))  # no IndexError


def test_blue_iris_request_with_file_name_and_content_type(client: FlaskClient) -> None:
    """Blue Iris (via CodeProject.AI) names the file and may give it a type; the answer has a length."""
    data = photo(PERSON_PHOTO)
    files = {"image": ("snapshot.jpg", data, "image/jpeg")}
    prepared = requests.Request("POST", "http://x/", files=files, data={"min_confidence": "0.5"}).prepare()
    response = client.post(DETECTION, data=prepared.body, content_type=prepared.headers["Content-Type"])

    assert response.status_code == 200
    assert int(response.headers["Content-Length"]) == len(response.get_data())
    assert "Transfer-Encoding" not in response.headers
    assert response.get_json()["predictions"][0]["label"] == "person"


def test_a_text_field_named_image_does_not_hide_the_file_part(client: FlaskClient) -> None:
    body, content_type = requests_multipart(photo(PERSON_PHOTO), {"image": "http://camera/snapshot.jpg"})
    response = client.post(DETECTION, data=body, content_type=content_type)

    assert body.index(b"http://camera") < body.index(b'filename="image"')  # the text part comes first
    assert response.status_code == 200
    assert response.get_json()["predictions"][0]["label"] == "person"


def test_form_urlencoded_without_image_is_a_clear_400(client: FlaskClient) -> None:
    response = client.post(DETECTION, data={"min_confidence": "0.5"})

    assert response.status_code == 400
    assert "file part 'image'" in response.get_json()["error"]


# -- refusals -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        pytest.param(None, True, id="absent"),
        pytest.param("", True, id="empty"),
        pytest.param("0", True, id="zero"),
        pytest.param("1", True, id="one"),
        pytest.param(" 0.45 ", True, id="spaces"),
        pytest.param("45", False, id="percent"),
        pytest.param("-0.1", False, id="negative"),
        pytest.param("nan", False, id="nan"),
        pytest.param("inf", False, id="inf"),
        pytest.param("high", False, id="word"),
        pytest.param("0.4" * 100, False, id="long"),
    ],
)
def test_parse_min_confidence(value: str | None, valid: bool) -> None:
    if valid:
        threshold = parse_min_confidence(value)
        assert 0.0 <= threshold <= 1.0
        assert threshold == (0.40 if not (value or "").strip() else float(value or "nan"))
    else:
        with pytest.raises(Exception, match="'min_confidence' must be a number from 0 to 1") as caught:
            parse_min_confidence(value)
        assert getattr(caught.value, "field", None) == "min_confidence"
        assert len(str(caught.value)) < 200


def huge_multipart(size_bytes: int) -> tuple[bytes, str]:
    return requests_multipart(b"\xff\xd8" + b"\x00" * size_bytes)


JPEG_64 = jpeg_bytes(64, 64)
HOSTILE = [
    # (id, path, body builder, expected status, words in the error)
    ("no image part", DETECTION, lambda: requests_multipart(None, {"min_confidence": "0.5"}), 400, "file part 'image'"),
    ("empty body", DETECTION, lambda: (b"", "multipart/form-data; boundary=x"), 400, "file part 'image'"),
    ("text file as image", DETECTION, lambda: requests_multipart(b"hello, I am a text file\n"), 400, "not a supported"),
    ("empty image", DETECTION, lambda: requests_multipart(b""), 400, "image"),
    ("truncated jpeg", DETECTION, lambda: requests_multipart(jpeg_bytes(64, 64)[:200]), 400, "image"),
    ("bad min_confidence", DETECTION, lambda: requests_multipart(JPEG_64, {"min_confidence": "x"}), 400, "0 to 1"),
    ("min_confidence over 1", DETECTION, lambda: requests_multipart(JPEG_64, {"min_confidence": "1.5"}), 400, "0 to 1"),
    ("image as a url", DETECTION, lambda: requests_multipart(None, {"image": "http://cam/1.jpg"}), 400,
     "file part 'image'"),
    ("json body", DETECTION, lambda: (b'{"image": "abc"}', "application/json"), 400, "multipart/form-data"),
    ("no boundary", DETECTION, lambda: (b"--x\r\n", "multipart/form-data"), 400, "multipart"),
    ("huge body", DETECTION, lambda: huge_multipart(300_000), 413, "limit"),
    ("unknown model", "/v1/vision/custom/no-such-model", lambda: requests_multipart(JPEG_64), 404, "yolov5n.onnx"),
    ("too many parts", DETECTION, lambda: requests_multipart(JPEG_64, {f"f{i}": "x" for i in range(40)}), 400, "parts"),
]  # fmt: skip


@pytest.fixture(scope="module")
def small_body_client(yolov5n_detector: Detector, cache_dir: Path) -> FlaskClient:
    return app_for(yolov5n_detector, cache_dir, limits=Limits(max_body_bytes=256 * 1024)).test_client()


@pytest.mark.parametrize(("case", "path", "build", "status", "words"), HOSTILE, ids=[c[0] for c in HOSTILE])
def test_hostile_inputs_get_deepstack_errors(
    small_body_client: FlaskClient, case: str, path: str, build: Any, status: int, words: str
) -> None:
    body, content_type = build()
    response = small_body_client.post(path, data=body, content_type=content_type)

    assert response.status_code == status, response.get_data()
    answer = response.get_json()
    assert answer["success"] is False
    assert words in answer["error"]
    assert post_form(small_body_client, DETECTION, jpeg_bytes(64, 64)).status_code == 200  # still serving


def test_wrong_method_is_json(client: FlaskClient) -> None:
    response = client.get(DETECTION)

    assert response.status_code == 405
    assert response.is_json


def test_no_model_is_a_503_in_deepstack_form(cache_dir: Path, tmp_path: Path) -> None:
    settings = Settings(cache_dir=cache_dir, model=str(tmp_path / "missing.onnx"))
    application = create_app(settings, load_in_background=False)  # the load fails: no model to serve
    response = post_form(application.test_client(), DETECTION, jpeg_bytes(64, 64))

    assert response.status_code == 503
    assert set(response.get_json()) == {"success", "error"}
    assert response.get_json()["success"] is False
    assert "failed to load" in response.get_json()["error"]
    assert str(tmp_path) not in response.get_json()["error"]  # no file path reaches a client


# -- a real server ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def deepstack_server(cache_dir: Path) -> Iterator[LiveServer]:
    env = {"SPECKS_MAX_BODY_BYTES": str(1024 * 1024)}
    yield from serving(live_server_for(MODELS / "yolov5n.onnx", cache_dir, workers=1, env=env))


@pytest.mark.slow
def test_live_clients_as_they_send(deepstack_server: LiveServer) -> None:
    url = deepstack_server.url + DETECTION
    frigate = requests.post(url, data={"api_key": ""}, files={"image": frigate_frame()}, timeout=10)
    home_assistant = requests.post(
        url, files={"image": photo(PERSON_PHOTO)}, data={"api_key": "", "min_confidence": 0.1}, timeout=10
    )
    codeproject = requests.post(
        deepstack_server.url + "/v1/vision/custom/yolov5n.onnx",
        files={"image": photo(PERSON_PHOTO)},
        data={"min_confidence": 0.45},
        timeout=10,
    )

    assert [r.status_code for r in (frigate, home_assistant, codeproject)] == [200, 200, 200]
    assert_deepstack_answer(frigate.json(), 320, 320)
    assert frigate.json()["predictions"][0]["label"] == "person"
    assert_deepstack_answer(home_assistant.json(), 640, 449)
    assert codeproject.json()["predictions"][0]["label"] == "person"


def raw_request(server: LiveServer, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
                ) -> tuple[http.client.HTTPResponse, bytes]:  # fmt: skip
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response, response.read()
    finally:
        connection.close()


@pytest.mark.slow
def test_live_every_answer_has_a_content_length_and_is_not_chunked(deepstack_server: LiveServer) -> None:
    body, content_type = requests_multipart(jpeg_bytes(320, 320), {"min_confidence": "0.4"})
    bad, bad_type = requests_multipart(b"text, not an image")
    calls = [
        ("POST", DETECTION, body, content_type),
        ("POST", "/v1/vision/custom/yolov5n.onnx", body, content_type),
        ("POST", "/v1/vision/custom/no-such-model", body, content_type),
        ("POST", DETECTION, bad, bad_type),
        ("POST", "/v1/vision/custom/list", b"", "multipart/form-data; boundary=x"),
        ("GET", "/v1/status/ping", b"", ""),
        ("GET", "/v1/server/status/ping", b"", ""),
        ("GET", DETECTION, b"", ""),
        ("OPTIONS", DETECTION, b"", ""),
    ]
    for method, path, payload, kind in calls:
        response, data = raw_request(deepstack_server, method, path, payload, {"Content-Type": kind} if kind else {})
        assert response.getheader("Transfer-Encoding") is None, (method, path)
        assert response.getheader("Content-Length") == str(len(data)), (method, path)


@pytest.mark.slow
def test_live_hostile_inputs_and_server_alive(deepstack_server: LiveServer) -> None:
    url = deepstack_server.url + DETECTION
    huge = requests.post(url, files={"image": b"\xff\xd8" + b"\x00" * (2 * 1024 * 1024)}, timeout=30)

    def chunks() -> Iterator[bytes]:
        body, _ = huge_multipart(2 * 1024 * 1024)
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    boundary_type = huge_multipart(10)[1]
    chunked = requests.post(url, data=chunks(), headers={"Content-Type": boundary_type}, timeout=30)
    text = requests.post(url, files={"image": b"just text"}, timeout=10)
    missing = requests.post(url, data={"image": "http://camera/snapshot.jpg"}, timeout=10)
    bad_confidence = requests.post(url, files={"image": JPEG_64}, data={"min_confidence": "lots"}, timeout=10)
    unknown = requests.post(deepstack_server.url + "/v1/vision/custom/nope", files={"image": jpeg_bytes(64, 64)},
                            timeout=10)  # fmt: skip

    statuses = [r.status_code for r in (huge, chunked, text, missing, bad_confidence, unknown)]
    assert statuses == [413, 413, 400, 400, 400, 404]
    for response in (huge, chunked, text, missing, bad_confidence, unknown):
        assert response.json()["success"] is False
        assert response.json()["error"]
    alive = requests.post(url, files={"image": frigate_frame()}, timeout=10)
    assert alive.status_code == 200 and alive.json()["success"] is True



# -- the real client libraries, live ------------------------------------------------------------


@pytest.fixture(scope="module")
def secured_deepstack_server(cache_dir: Path) -> Iterator[LiveServer]:
    env = {"SPECKS_API_KEYS": "s3cret"}
    yield from serving(live_server_for(MODELS / "yolov5n.onnx", cache_dir, workers=1, env=env))


@pytest.mark.slow
def test_deepstack_python_library(deepstack_server: LiveServer, secured_deepstack_server: LiveServer) -> None:
    """deepstack-python 0.9, the library Home Assistant's deepstack_object integration uses."""
    from deepstack.core import DeepstackException, DeepstackObject

    image = photo(PERSON_PHOTO)
    predictions = DeepstackObject(ip="127.0.0.1", port=deepstack_server.port, min_confidence=0.1).detect(image)
    custom = DeepstackObject(ip="127.0.0.1", port=deepstack_server.port, custom_model="yolov5n.onnx").detect(image)
    keyed = DeepstackObject(ip="127.0.0.1", port=secured_deepstack_server.port, api_key="s3cret").detect(image)

    assert predictions[0]["label"] == "person"
    assert custom[0]["label"] == keyed[0]["label"] == "person"
    with pytest.raises(DeepstackException, match="Bad url"):  # 404: an unknown custom model
        DeepstackObject(ip="127.0.0.1", port=deepstack_server.port, custom_model="nope").detect(image)
    with pytest.raises(DeepstackException, match="status code: 401"):
        DeepstackObject(ip="127.0.0.1", port=secured_deepstack_server.port, api_key="wrong").detect(image)


@pytest.mark.slow
def test_codeproject_ai_api_library(deepstack_server: LiveServer) -> None:
    from codeprojectai.core import CodeProjectAIException, CodeProjectAIObject

    client = CodeProjectAIObject(ip="127.0.0.1", port=deepstack_server.port)  # min_confidence 0.45
    predictions = client.detect(photo(PERSON_PHOTO))

    assert [p["label"] for p in predictions] == ["person"]
    assert predictions[0]["confidence"] >= 0.45
    with pytest.raises(CodeProjectAIException, match="error: 400"):
        client.detect(b"not an image")


@pytest.mark.slow
def test_deepstack_sdk_library_draws_the_boxes(deepstack_server: LiveServer, tmp_path: Path) -> None:
    """deepstack-sdk 0.2.1 (the official one): it draws the answer with OpenCV and saves the picture."""
    from deepstack_sdk import Detection, ServerConfig

    detection = Detection(ServerConfig(deepstack_server.url))
    output = tmp_path / "drawn.jpg"
    response = detection.detectObject(photo(PERSON_PHOTO), min_confidence=0.4, output=str(output))

    assert [d.label for d in response] == ["person"]
    assert output.stat().st_size > 0
    drawn = np.asarray(Image.open(output))
    assert drawn.shape == (449, 640, 3)
    with pytest.raises(Exception, match="Invalid image"):  # its message for a 400
        detection.detectObject(b"not an image")


def test_metrics_cover_the_deepstack_routes(client: FlaskClient) -> None:
    """Requests, stages and tiles of each DeepStack route are recorded under its route label."""
    from prometheus_client.parser import text_string_to_metric_families

    def samples() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        text = client.get("/metrics").get_data(as_text=True)
        return {
            (s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def count(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
        return sum(v for (n, ls), v in found.items() if n == name and set(labels.items()) <= ls)

    before = samples()
    post_form(client, DETECTION, frigate_frame())
    post_form(client, "/v1/vision/custom/yolov5n.onnx", frigate_frame())
    after = samples()

    for route in (DETECTION, "/v1/vision/custom/<model>"):
        stage = {"route": route, "stage": "inference"}
        assert count(after, "specks_stage_duration_seconds_count", **stage) - count(
            before, "specks_stage_duration_seconds_count", **stage
        ) == 1
        assert count(after, "specks_requests_total", route=route, status="200") - count(
            before, "specks_requests_total", route=route, status="200"
        ) == 1
