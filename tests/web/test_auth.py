"""API keys: where a key is read from, how it is compared, what stays open and what a refusal looks like."""

from __future__ import annotations

import dataclasses
import hmac
import io
import logging
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from conftest import app_for, jpeg_bytes
from factories import b64
from specks.config import Security, Settings
from specks.core.pipeline import Detector
from specks.web import create_app
from specks.web.auth import INVALID_KEY_MESSAGE, MISSING_KEY_MESSAGE, KeySource, accepts_key_in, field_key

KEYS = ("k1", "k2")


def make_app(detector: Detector, cache_dir: Path, security: Security) -> Flask:
    return app_for(detector, cache_dir, security=security)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def secured_app(yolov5n_detector: Detector, cache_dir: Path) -> Flask:
    return make_app(yolov5n_detector, cache_dir, Security(api_keys=KEYS))


@pytest.fixture()
def secured(secured_app: Flask) -> FlaskClient:
    return secured_app.test_client()


@pytest.fixture(scope="module")
def predict_body() -> dict[str, str]:
    return {"image": b64(jpeg_bytes(96, 64))}


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"X-API-Key": "wrong"}, 401),
        ({"X-API-Key": "k1"}, 200),
        ({"X-API-Key": "k2"}, 200),
        ({"X-API-Key": "K1"}, 401),  # keys are case-sensitive
        ({"X-API-Key": "k"}, 401),  # a prefix of a key
        ({"X-API-Key": "k1k2"}, 401),
        ({"Authorization": "Bearer k2"}, 200),
        ({"Authorization": "bearer k2"}, 200),
        ({"Authorization": "BEARER k1"}, 200),
        ({"Authorization": "Basic k1"}, 401),
        ({"Authorization": "k1"}, 401),  # no scheme
        ({"Authorization": "Bearer "}, 401),
        ({"Authorization": "Bearer"}, 401),
        ({"Authorization": "Bearer wrong"}, 401),
        ({"X-API-Key": "", "Authorization": "Bearer k1"}, 200),  # an empty X-API-Key is no key
        ({"X-API-Key": "wrong", "Authorization": "Bearer k1"}, 401),  # X-API-Key wins
        ({"X-API-Key": "k1", "Authorization": "Bearer wrong"}, 200),
    ],
)
def test_predict_needs_a_valid_key(
    secured: FlaskClient, predict_body: dict[str, str], headers: dict[str, str], status: int
) -> None:
    response = secured.post("/predict", json=predict_body, headers=headers)
    assert response.status_code == status
    if status == 200:
        assert "detections" in response.get_json()


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, MISSING_KEY_MESSAGE),
        ({"Authorization": "Basic k1"}, MISSING_KEY_MESSAGE),
        ({"Authorization": "Bearer "}, MISSING_KEY_MESSAGE),
        ({"X-API-Key": "guess-omega"}, INVALID_KEY_MESSAGE),
        ({"Authorization": "Bearer guess-omega"}, INVALID_KEY_MESSAGE),
    ],
)
def test_refusal_is_a_json_envelope_with_a_bearer_challenge(
    secured: FlaskClient, predict_body: dict[str, str], headers: dict[str, str], message: str
) -> None:
    response = secured.post("/predict", json=predict_body, headers=headers)
    assert response.status_code == 401
    assert response.mimetype == "application/json"
    assert response.get_json() == {"error": {"code": "unauthorized", "message": message}}
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert b"guess-omega" not in response.data


@pytest.mark.parametrize(
    ("method", "path", "status_without_key", "status_with_key"),
    [
        ("GET", "/no-such-path", 401, 404),  # unknown paths are not revealed
        ("GET", "/predict", 401, 405),  # nor the methods a path allows
        ("GET", "/healthz", 401, 404),  # an open path is not a string prefix
        ("GET", "/model", 401, 200),
        ("GET", "/", 401, 200),
    ],
)
def test_without_a_key_every_closed_path_answers_401(
    secured: FlaskClient, method: str, path: str, status_without_key: int, status_with_key: int
) -> None:
    without_key = secured.open(path, method=method)
    assert without_key.status_code == status_without_key
    assert without_key.get_json()["error"]["code"] == "unauthorized"
    assert secured.open(path, method=method, headers={"X-API-Key": "k1"}).status_code == status_with_key


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/health", 200),
        ("/ready", 200),
        ("/metrics", None),  # 404 while metrics are off or not mounted; never 401
        ("/openapi.json", None),
        ("/docs", None),
        ("/docs/swagger-ui.css", None),  # an open path covers the paths below it
        ("/health/extra", 404),  # below an open path, unknown paths are plain 404
    ],
)
def test_default_open_paths_need_no_key(secured: FlaskClient, path: str, status: int | None) -> None:
    response = secured.get(path)
    assert response.status_code != 401
    assert "WWW-Authenticate" not in response.headers
    if status is not None:
        assert response.status_code == status


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/health", {}, 200),
        ("/ready", {}, 401),
        ("/ready", {"X-API-Key": "k2"}, 200),
        ("/metrics", {}, 401),
        ("/docs", {}, 401),
    ],
)
def test_open_paths_are_configurable(
    yolov5n_detector: Detector, cache_dir: Path, path: str, headers: dict[str, str], status: int
) -> None:
    app = make_app(yolov5n_detector, cache_dir, Security(api_keys=KEYS, open_paths=("/health",)))
    assert app.test_client().get(path, headers=headers).status_code == status


@pytest.mark.parametrize(
    ("path", "open_paths", "expected"),
    [
        ("/docs", ("/docs",), True),
        ("/docs/swagger-ui.css", ("/docs",), True),
        ("/docs", ("/docs/",), True),
        ("/docs/a/b.js", ("/docs/",), True),
        ("/docsx", ("/docs",), False),
        ("/Docs", ("/docs",), False),
        ("/", ("/",), True),
        ("/predict", ("/",), False),  # "/" opens only the index, not everything
        ("/predict", (), False),
        ("/ready", ("/health", "/ready"), True),
    ],
)
def test_is_open_path(path: str, open_paths: tuple[str, ...], expected: bool) -> None:
    assert Security(open_paths=open_paths).is_open(path) is expected


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Origin": "https://example.org", "Access-Control-Request-Method": "POST"}, 200),
        ({"Origin": "https://example.org"}, 401),  # a plain OPTIONS is no preflight
        ({}, 401),
    ],
)
def test_cors_preflight_passes_without_a_key(secured: FlaskClient, headers: dict[str, str], status: int) -> None:
    assert secured.options("/predict", headers=headers).status_code == status


def test_without_keys_everything_is_open(client: FlaskClient, predict_body: dict[str, str]) -> None:
    responses = [
        client.post("/predict", json=predict_body),
        client.get("/model"),
        client.get("/ready"),
        client.get("/no-such-path"),
    ]
    assert [r.status_code for r in responses] == [200, 200, 200, 404]
    assert all("WWW-Authenticate" not in r.headers for r in responses)


@pytest.mark.parametrize(
    ("key", "status"),
    [
        ("k-file-1", 200),
        ("k-file-2", 200),
        ("k-env", 200),
        ("k-commented", 401),
        ("# k-commented", 401),
        ("", 401),
    ],
)
def test_keys_from_file_and_environment(
    yolov5n_detector: Detector, cache_dir: Path, tmp_path: Path, key: str, status: int
) -> None:
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text("# one key per line\n\n  k-file-1  \n# k-commented\n\nk-file-2\n", encoding="utf-8")
    settings = Settings.from_env({"SPECKS_API_KEYS_FILE": str(keys_file), "SPECKS_API_KEYS": "k-env"})
    app = create_app(dataclasses.replace(settings, cache_dir=cache_dir), detector=yolov5n_detector)
    assert app.test_client().get("/model", headers={"X-API-Key": key}).status_code == status


@pytest.mark.parametrize(
    ("keys", "presented", "status"),
    [
        (("k1", "k2"), "k1", 200),  # the first key matches: the second is still compared
        (("k1", "k2"), "k2", 200),
        (("k1", "k2"), "wrong", 401),
        (("a", "bb", "a-much-longer-key-than-the-others"), "a", 200),
        (("a", "bb", "a-much-longer-key-than-the-others"), "a-much-longer-key-than-the-others", 200),
    ],
)
def test_every_key_is_compared_in_constant_time(
    yolov5n_detector: Detector,
    cache_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    keys: tuple[str, ...],
    presented: str,
    status: int,
) -> None:
    app = make_app(yolov5n_detector, cache_dir, Security(api_keys=keys))
    compared: list[tuple[int, int]] = []
    real_compare_digest = hmac.compare_digest

    def counting_compare_digest(a: Any, b: Any) -> bool:
        compared.append((len(a), len(b)))
        return real_compare_digest(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting_compare_digest)
    assert app.test_client().get("/model", headers={"X-API-Key": presented}).status_code == status
    assert len(compared) == len(keys)
    assert len(set(compared)) == 1, "compared values must have equal lengths whatever the key lengths"


@pytest.mark.parametrize(
    ("header_value", "status"),
    [
        ("clé-ключ".encode().decode("latin-1"), 200),  # what a WSGI server hands over for UTF-8 bytes
        ("clé-ключ", 200),  # text as given, e.g. by the test client
        ("cle-kljuch", 401),
    ],
)
def test_non_ascii_key(yolov5n_detector: Detector, cache_dir: Path, header_value: str, status: int) -> None:
    app = make_app(yolov5n_detector, cache_dir, Security(api_keys=("clé-ключ",)))
    assert app.test_client().get("/model", headers={"X-API-Key": header_value}).status_code == status


def test_keys_are_never_logged(
    yolov5n_detector: Detector, cache_dir: Path, predict_body: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    app = make_app(yolov5n_detector, cache_dir, Security(api_keys=("s3cret-alpha", "s3cret-beta")))
    client = app.test_client()
    for headers in ({"X-API-Key": "s3cret-alpha"}, {"Authorization": "Bearer s3cret-beta"}, {"X-API-Key": "guess"}):
        client.post("/predict", json=predict_body, headers=headers)
    assert "API keys required (2 configured)" in caplog.text  # the capture works
    assert "s3cret" not in caplog.text
    assert "guess" not in caplog.text


# -- keys in the query or the body (the compatible APIs) ----------------------------------------


def deepstack_post(client: FlaskClient, fields: dict[str, str], headers: dict[str, str] | None = None) -> Any:
    """What deepstack-python sends: the image file part and the api_key form field."""
    form: dict[str, Any] = {"image": (io.BytesIO(jpeg_bytes(96, 64)), "image"), **fields}
    return client.post("/v1/vision/detection", data=form, content_type="multipart/form-data", headers=headers or {})


@pytest.mark.parametrize(
    ("fields", "headers", "status"),
    [
        ({"api_key": "k1"}, {}, 200),
        ({"api_key": " k2 "}, {}, 200),
        ({"api_key": "wrong"}, {}, 401),
        ({"api_key": ""}, {}, 401),  # deepstack-python's default: no key
        ({"api_key": "None"}, {}, 401),
        ({}, {}, 401),
        ({}, {"X-API-Key": "k1"}, 200),
        ({"api_key": "wrong"}, {"X-API-Key": "k1"}, 200),  # a valid header key is enough
        ({"api_key": "k1"}, {"X-API-Key": "wrong"}, 401),  # a wrong header key is refused at once
        ({"api_key": "k1"}, {"Authorization": "Bearer wrong"}, 401),
    ],
)
def test_deepstack_form_field_key(
    secured: FlaskClient, fields: dict[str, str], headers: dict[str, str], status: int
) -> None:
    response = deepstack_post(secured, fields, headers)

    assert response.status_code == status
    body = response.get_json()
    assert body["success"] is (status == 200)
    if status == 401:
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert "API key" in body["error"]
        assert b"wrong" not in response.data


def test_a_missing_form_key_is_checked_before_the_image(secured: FlaskClient) -> None:
    """An unauthenticated client learns nothing about its image, the models or its fields."""
    no_image = secured.post("/v1/vision/detection", data={"min_confidence": "x"}, content_type="multipart/form-data")
    form = {"image": (io.BytesIO(b"x"), "image")}
    unknown_model = secured.post("/v1/vision/custom/secret-model", data=form, content_type="multipart/form-data")

    assert [no_image.status_code, unknown_model.status_code] == [401, 401]
    assert "yolov5n" not in unknown_model.get_data(as_text=True)


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/model/registry?api_key=k1", 200),
        ("/model/registry?api_key=wrong", 401),
        ("/model/registry?api_key=None", 401),  # inference-sdk without a key
        ("/model/registry", 401),
        ("/info?api_key=k2", 200),
        ("/model?api_key=k1", 401),  # Specks' own routes read keys from headers only
        ("/ready?api_key=k1", 401),
    ],
)
def test_query_key_only_where_clients_send_it(
    yolov5n_detector: Detector, cache_dir: Path, path: str, status: int
) -> None:
    app = make_app(yolov5n_detector, cache_dir, Security(api_keys=KEYS, open_paths=()))
    assert app.test_client().get(path).status_code == status


@pytest.mark.parametrize(
    ("query", "body_key", "status"),
    [
        ("", "k1", 200),
        ("", None, 401),  # what inference-sdk sends without a key
        ("", "None", 401),
        ("", "wrong", 401),
        ("?api_key=k2", None, 200),
        ("?api_key=None", "k1", 200),
        ("?api_key=wrong", "k1", 401),
    ],
)
def test_roboflow_json_body_key(secured: FlaskClient, query: str, body_key: str | None, status: int) -> None:
    body = {"model_id": "coco/3", "api_key": body_key, "image": {"type": "base64", "value": b64(jpeg_bytes(64, 48))}}
    response = secured.post("/infer/object_detection" + query, json=body)

    assert response.status_code == status
    if status == 401:
        assert set(response.get_json()) == {"message"}


def test_keys_off_ignore_query_and_body_keys(client: FlaskClient) -> None:
    assert client.get("/model/registry?api_key=None").status_code == 200
    assert deepstack_post(client, {"api_key": "anything"}).status_code == 200


def test_a_marked_view_that_never_checks_its_body_key_is_refused(cache_dir: Path, yolov5n_detector: Detector) -> None:
    """The safety net: a view promising to read the key from its body but forgetting to."""
    app = make_app(yolov5n_detector, cache_dir, Security(api_keys=KEYS))

    @app.post("/forgetful")
    @accepts_key_in(KeySource.BODY)
    def forgetful() -> dict[str, str]:
        return {"secret": "data"}

    refused = app.test_client().post("/forgetful", data={"api_key": "k1"})
    with_header = app.test_client().post("/forgetful", headers={"X-API-Key": "k1"})

    assert refused.status_code == 401
    assert b"secret" not in refused.data
    assert with_header.status_code == 200


@pytest.mark.parametrize(
    ("value", "expected"),
    [("k1", "k1"), (" k1 ", "k1"), ("", None), ("  ", None), ("None", None), (None, None), (5, None)],
)
def test_field_key(value: object, expected: str | None) -> None:
    assert field_key(value) == expected
