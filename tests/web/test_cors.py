"""CORS: off by default; allowed origins get the headers on every detection route, errors and preflights included."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from conftest import jpeg_bytes
from factories import b64
from specks.config import Cors, Security, Settings
from specks.core.pipeline import Detector
from specks.web import create_app

APP_ORIGIN = "http://localhost:3000"
OTHER_ORIGIN = "http://evil.example:8080"
PHOTO = jpeg_bytes(96, 64)


def make_app(detector: Detector, cache_dir: Path, origins: tuple[str, ...], keys: tuple[str, ...] = ()) -> Flask:
    settings = Settings(cache_dir=cache_dir, cors=Cors(allowed_origins=origins), security=Security(api_keys=keys))
    application = create_app(settings, detector=detector)
    application.testing = True
    return application


@pytest.fixture(scope="module")
def cors_client(yolov5n_detector: Detector, cache_dir: Path) -> FlaskClient:
    return make_app(yolov5n_detector, cache_dir, (APP_ORIGIN,), keys=("k1",)).test_client()


def predict(client: FlaskClient, origin: str, **headers: str) -> Any:
    return client.post("/predict", json={"image": b64(PHOTO)}, headers={"Origin": origin, **headers})


def deepstack(client: FlaskClient, origin: str, **headers: str) -> Any:
    form = {"image": (io.BytesIO(PHOTO), "image"), "api_key": "k1"}
    return client.post("/v1/vision/detection", data=form, content_type="multipart/form-data",
                       headers={"Origin": origin, **headers})  # fmt: skip


def roboflow(client: FlaskClient, origin: str, **headers: str) -> Any:
    body = {"model_id": "coco/3", "api_key": "k1", "image": {"type": "base64", "value": b64(PHOTO)}}
    return client.post("/infer/object_detection", json=body, headers={"Origin": origin, **headers})


def test_off_by_default(client: FlaskClient) -> None:
    preflight = client.options(
        "/predict", headers={"Origin": APP_ORIGIN, "Access-Control-Request-Method": "POST"}
    )
    answer = client.post("/predict", json={"image": b64(PHOTO)}, headers={"Origin": APP_ORIGIN})

    for response in (preflight, answer):
        assert not [name for name, _ in response.headers.items() if name.startswith("Access-Control-")]


@pytest.mark.parametrize("path", ["/predict", "/v1/vision/detection", "/v1/vision/custom/yolov5n.onnx",
                                  "/infer/object_detection", "/model/registry"])  # fmt: skip
@pytest.mark.parametrize("wanted_headers", ["content-type,x-api-key", "content-type,authorization"])
def test_preflight_allows_the_clients_headers(cors_client: FlaskClient, path: str, wanted_headers: str) -> None:
    response = cors_client.options(
        path,
        headers={
            "Origin": APP_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": wanted_headers,
        },
    )

    assert response.status_code == 200  # without a key: browsers never send one on a preflight
    assert response.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    allowed = {h.strip().lower() for h in response.headers["Access-Control-Allow-Headers"].split(",")}
    assert set(wanted_headers.split(",")) <= allowed
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert "Access-Control-Allow-Credentials" not in response.headers


@pytest.mark.parametrize("send", [predict, deepstack, roboflow], ids=["predict", "deepstack", "roboflow"])
def test_allowed_origin_reads_every_detection_route(cors_client: FlaskClient, send: Any) -> None:
    response = send(cors_client, APP_ORIGIN, **{"X-API-Key": "k1"})

    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    assert "X-Request-ID" in response.headers["Access-Control-Expose-Headers"]


@pytest.mark.parametrize("send", [predict, deepstack, roboflow], ids=["predict", "deepstack", "roboflow"])
def test_other_origins_get_no_cors_headers(cors_client: FlaskClient, send: Any) -> None:
    preflight = cors_client.options(
        "/predict", headers={"Origin": OTHER_ORIGIN, "Access-Control-Request-Method": "POST"}
    )
    response = send(cors_client, OTHER_ORIGIN, **{"X-API-Key": "k1"})

    assert "Access-Control-Allow-Origin" not in preflight.headers
    assert "Access-Control-Allow-Origin" not in response.headers  # the browser withholds the answer


def test_errors_carry_cors_headers_so_the_page_can_read_them(cors_client: FlaskClient) -> None:
    refused = predict(cors_client, APP_ORIGIN)  # no key
    bad = cors_client.post("/predict", data=b"{", content_type="application/json",
                           headers={"Origin": APP_ORIGIN, "X-API-Key": "k1"})  # fmt: skip

    assert [refused.status_code, bad.status_code] == [401, 400]
    for response in (refused, bad):
        assert response.headers["Access-Control-Allow-Origin"] == APP_ORIGIN


def test_any_origin(yolov5n_detector: Detector, cache_dir: Path) -> None:
    client = make_app(yolov5n_detector, cache_dir, ("*",)).test_client()

    response = predict(client, OTHER_ORIGIN)

    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_origin_matching_is_exact(yolov5n_detector: Detector, cache_dir: Path) -> None:
    client = make_app(yolov5n_detector, cache_dir, ("http://app.example",)).test_client()

    for near_miss in ("http://app.example.evil", "http://appxexample", "https://app.example", "http://app.example:81"):
        assert "Access-Control-Allow-Origin" not in predict(client, near_miss).headers
    assert predict(client, "http://app.example").headers["Access-Control-Allow-Origin"] == "http://app.example"
