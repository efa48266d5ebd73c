"""Refusals stay small: short echoes of client input, bounded logs, cheap refusals, no Host reflection.

Every answer to a refused request is at most 8 KB, and each refusal adds at most 4 KB of log,
however large the input it quotes (issue 20, findings 6 and 7).
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from flask import Flask
from flask.testing import FlaskClient

from conftest import app_for, jpeg_bytes, specks_log
from factories import b64
from specks.config import Limits, Security
from specks.core.pipeline import Detector
from specks.logs import LogFormat
from specks.service.service import DetectionService
from specks.web import forms
from specks.web.errors import gunicorn_error_page

MAX_ANSWER_BYTES = 8 * 1024
MAX_LOG_BYTES_PER_REFUSAL = 4 * 1024
MEGABYTE_NAME = "n" * 1_000_000
INFER = "/infer/object_detection"


@pytest.fixture(params=list(LogFormat), ids=[f.value for f in LogFormat])
def log_stream(request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture) -> Iterator[io.StringIO]:
    """Everything the ``specks`` loggers write while the test runs, in each log format."""
    with specks_log(request.param, caplog) as stream:
        yield stream


def roboflow_image(size_bytes: int) -> dict[str, str]:
    return {"type": "base64", "value": b64(b"\xff\xd8" + bytes(size_bytes))}


# -- short echoes, in answers and logs -------------------------------------------------------------

REFUSED: list[tuple[str, str, dict[str, Any], int]] = [
    ("unknown 1 MB field name", "/predict", {"image": "x", MEGABYTE_NAME: 1}, 400),
    ("1 MB class name", "/predict", {"image": b64(jpeg_bytes(64, 48)), "classes": [MEGABYTE_NAME]}, 400),
    ("long classes list", "/predict", {"image": "x", "classes": [MEGABYTE_NAME] * 2 + [1.5] * 5000}, 400),
    ("long scales list", "/predict", {"image": "x", "scales": [1.0] * 5000}, 400),
    ("long model name", "/predict", {"image": "x", "model": MEGABYTE_NAME}, 400),
    ("roboflow image type", INFER, {"image": {"type": MEGABYTE_NAME, "value": "x"}}, 400),
    ("roboflow 65 images", INFER, {"image": [roboflow_image(64 * 1024)] * 65}, 413),
    ("roboflow unknown class", INFER, {"image": roboflow_image(10), "class_filter": [MEGABYTE_NAME]}, 400),
]


@pytest.mark.parametrize(("case", "path", "body", "status"), REFUSED, ids=[case[0] for case in REFUSED])
def test_a_refusal_answers_and_logs_a_few_kb_whatever_it_quotes(
    client: FlaskClient, log_stream: io.StringIO, case: str, path: str, body: dict[str, Any], status: int
) -> None:
    raw = orjson.dumps(body)
    logged_before = len(log_stream.getvalue().encode())

    response = client.post(path, data=raw, content_type="application/json")

    assert response.status_code == status, response.get_data()[:300]
    assert len(response.get_data()) <= MAX_ANSWER_BYTES
    assert len(log_stream.getvalue().encode()) - logged_before <= MAX_LOG_BYTES_PER_REFUSAL


def test_an_unknown_field_is_named_short_in_message_and_field(client: FlaskClient) -> None:
    response = client.post("/predict", json={"image": "x", MEGABYTE_NAME: 1})

    error = response.get_json()["error"]
    assert error["code"] == "invalid_field"
    assert "...(1000000 characters)..." in error["message"]
    assert "allowed fields: " in error["message"]  # what to send instead survives the cut
    assert "...(1000000 characters)..." in error["field"] and len(error["field"]) <= 200


def test_an_unknown_class_name_is_quoted_short(client: FlaskClient) -> None:
    response = client.post("/predict", json={"image": b64(jpeg_bytes(64, 48)), "classes": ["forklift" * 100_000]})

    message = response.get_json()["error"]["message"]
    assert "unknown class name 'forkliftfork" in message
    assert "(800000 characters)" in message
    assert "this model knows e.g." in message


# -- the Roboflow batch is a /predict batch ----------------------------------------------------------


def test_a_roboflow_batch_takes_as_many_images_as_predict(client: FlaskClient) -> None:
    image = {"type": "base64", "value": b64(jpeg_bytes(32, 24))}

    response = client.post(INFER, json={"image": [image] * (Limits().max_batch_images + 1)})

    assert response.status_code == 413
    assert "SPECKS_MAX_BATCH_IMAGES" in response.get_json()["message"]


def test_a_roboflow_batch_follows_the_batch_image_setting(yolov5n_detector: Detector, cache_dir: Path) -> None:
    client = app_for(yolov5n_detector, cache_dir, limits=Limits(max_batch_images=3)).test_client()
    image = {"type": "base64", "value": b64(jpeg_bytes(32, 24))}

    accepted = client.post(INFER, json={"image": [image] * 3})
    refused = client.post(INFER, json={"image": [image] * 4})

    assert accepted.status_code == 200
    assert len(accepted.get_json()) == 3
    assert refused.status_code == 413


def test_a_roboflow_batch_counts_its_bytes_like_predict(yolov5n_detector: Detector, cache_dir: Path) -> None:
    app = app_for(yolov5n_detector, cache_dir, limits=Limits(max_batch_bytes=4000))
    image = jpeg_bytes(64, 48)
    assert 1000 < len(image) < 4000
    images = [{"type": "base64", "value": b64(image)}] * 3

    response = app.test_client().post(INFER, json={"image": images})
    single = app.test_client().post(INFER, json={"image": images[0]})

    assert response.status_code == 413
    assert "SPECKS_MAX_BATCH_BYTES" in response.get_json()["message"]
    assert single.status_code == 200  # one image is not a batch


def test_a_roboflow_batch_with_one_bad_image_is_one_error(client: FlaskClient) -> None:
    good = {"type": "base64", "value": b64(jpeg_bytes(32, 24))}
    bad = {"type": "base64", "value": b64(b"not an image at all")}

    response = client.post(INFER, json={"image": [good, bad, good]})

    assert response.status_code == 400
    assert set(response.get_json()) == {"message"}


# -- plain messages, not Werkzeug's --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status", "words"),
    [
        ("GET", "/nope", 404, "GET / lists the endpoints"),
        ("DELETE", "/predict", 405, "Allow header"),
        ("GET", "/infer/object_detection", 405, "Allow header"),
        ("GET", "/v1/vision/detection", 405, "Allow header"),
    ],
)
def test_routing_errors_say_what_to_do(client: FlaskClient, method: str, path: str, status: int, words: str) -> None:
    response = client.open(path, method=method)

    assert response.status_code == status
    assert words in response.get_data(as_text=True)
    assert "requested URL" not in response.get_data(as_text=True)  # Werkzeug's wording


@pytest.mark.parametrize(
    ("body", "content_type", "words"),
    [
        (b"garbage", "multipart/form-data; boundary=B", "malformed or cut short"),
        (b"--B\r\n\r\n\r\n--B--", "multipart/form-data; boundary=B", "malformed or cut short"),
        (b"x", "multipart/form-data", "no boundary"),
    ],
)
def test_a_malformed_form_is_explained_without_parser_states(
    client: FlaskClient, body: bytes, content_type: str, words: str
) -> None:
    response = client.post("/v1/vision/detection", data=body, content_type=content_type)

    assert response.status_code == 400
    message = response.get_json()["error"]
    assert words in message
    assert "State." not in message and "Content-Disposition header" not in message


# -- no Location from the client's Host ----------------------------------------------------------------


def test_doubled_slashes_are_not_redirected_to_the_clients_host(client: FlaskClient) -> None:
    response = client.get("/model//registry?api_key=None", headers={"Host": "evil.example"})

    assert response.status_code == 404
    assert "Location" not in response.headers
    assert "evil" not in response.get_data(as_text=True)


def test_no_route_redirects_to_add_a_trailing_slash(app: Flask) -> None:
    """A rule ending in '/' would redirect '/rule' with a Location built from the Host header."""
    assert [rule.rule for rule in app.url_map.iter_rules() if rule.rule.endswith("/") and rule.rule != "/"] == []


def test_a_doubled_leading_slash_still_matches(client: FlaskClient) -> None:
    response = client.get("/", environ_overrides={"PATH_INFO": "//model/registry", "QUERY_STRING": "api_key=None"})

    assert response.status_code == 200


# -- keyed servers: the key before the body is parsed ----------------------------------------------


@pytest.fixture(scope="module")
def keyed_app(yolov5n_detector: Detector, cache_dir: Path) -> Flask:
    return app_for(yolov5n_detector, cache_dir, security=Security(api_keys=("k1",)))  # type: ignore[no-any-return]


@pytest.fixture()
def parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The body parses the routes start: a JSON decode or a form parse, by name."""
    seen: list[str] = []
    decode_json = DetectionService.decode_json
    form_from_body = forms.form_from_body

    def counted_json(self: DetectionService, raw: bytes, *, content_type: str | None) -> Any:
        seen.append("json")
        return decode_json(self, raw, content_type=content_type)

    def counted_form(raw: bytes, content_type: str | None, *, file_part: str) -> Any:
        seen.append("form")
        return form_from_body(raw, content_type, file_part=file_part)

    monkeypatch.setattr(DetectionService, "decode_json", counted_json)
    monkeypatch.setattr("specks.web.deepstack.form_from_body", counted_form)
    return seen


@pytest.mark.parametrize(
    ("path", "key", "status"),
    [(INFER, None, 401), (INFER, "wrong", 401), (INFER, "k1", 200), ("/model/add", None, 401)],
)
def test_roboflow_checks_the_body_key_before_parsing(
    keyed_app: Flask, parses: list[str], path: str, key: str | None, status: int
) -> None:
    body = {"api_key": key, "model_id": "coco/3", "image": {"type": "base64", "value": b64(jpeg_bytes(32, 24))}}

    response = keyed_app.test_client().post(path, json=body)

    assert response.status_code == status
    assert parses == (["json"] if status == 200 else [])


@pytest.mark.parametrize(
    ("path", "fields", "status"),
    [
        ("/v1/vision/detection", {}, 401),
        ("/v1/vision/detection", {"api_key": "wrong"}, 401),
        ("/v1/vision/detection", {"api_key": "k1"}, 200),
        ("/v1/vision/custom/list", {"api_key": "wrong"}, 401),
    ],
)
def test_deepstack_checks_the_form_key_before_parsing(
    keyed_app: Flask, parses: list[str], path: str, fields: dict[str, str], status: int
) -> None:
    data: dict[str, Any] = {**fields, "image": (io.BytesIO(jpeg_bytes(32, 24)), "image.jpg")}

    response = keyed_app.test_client().post(path, data=data, content_type="multipart/form-data")

    assert response.status_code == status
    assert parses == (["form"] if status == 200 else [])


def test_a_20_mb_body_without_a_key_is_refused_in_milliseconds(keyed_app: Flask) -> None:
    raw = b'{"model_id": "coco/3", "image": [' + b"1.5e300," * 2_000_000 + b"0]}"

    started = time.perf_counter()
    response = keyed_app.test_client().post(INFER, data=raw, content_type="application/json")
    elapsed_s = time.perf_counter() - started

    assert response.status_code == 401
    assert elapsed_s < 1.0


# -- gunicorn's own error pages --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "reason", "code"),
    [
        (400, "Bad Request", "invalid_request"),
        (414, "URI Too Long", "uri_too_long"),
        (431, "Request Header Fields Too Large", "headers_too_large"),
        (501, "Not Implemented", "not_implemented"),
        (500, "Internal Server Error", "internal_error"),
        (418, "Odd\r\nX-Injected: 1", "http_error"),
    ],
)
def test_gunicorn_error_pages_are_the_json_envelope(status: int, reason: str, code: str) -> None:
    page = gunicorn_error_page(status, reason)

    head, _, body = page.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in header_lines)
    assert status_line.startswith(f"HTTP/1.1 {status} ")
    assert headers == {"Connection": "close", "Content-Type": "application/json", "Content-Length": str(len(body))}
    error = orjson.loads(body)["error"]
    assert error["code"] == code
    assert error["message"] and "<" not in error["message"]
