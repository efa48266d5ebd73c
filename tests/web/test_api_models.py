"""Several models per server: GET /models, choosing with "model", two models answering differently,
and an unknown name answered 404 with the known names on every route that takes one."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from conftest import COCO_TINY, MODELS, require
from factories import b64
from specks.config import ModelSpec, Settings
from specks.core.options import DetectOptions
from specks.errors import NotFoundError
from specks.models import DEFAULT_MODEL_NAME
from specks.web import create_app
from specks.web.http import current_service

PERSON_PHOTO = "000000085329.jpg"
KNOWN = f"'v5', 'v11', '{DEFAULT_MODEL_NAME}'"


@pytest.fixture(scope="module")
def two_models(cache_dir: Path) -> Iterator[FlaskClient]:
    """A server with yolov5n as 'v5' (the default), YOLO11n with random weights as 'v11', and the embedded default."""
    settings = Settings(
        cache_dir=cache_dir,
        workers=1,
        models=(
            ModelSpec("v5", str(require(MODELS / "yolov5n.onnx"))),
            ModelSpec("v11", str(require(MODELS / "yolo11n_random_weights_dynamic.onnx"))),
        ),
    )
    app = create_app(settings, load_in_background=False)
    yield app.test_client()


def photo() -> str:
    return b64(require(COCO_TINY / "images" / PERSON_PHOTO).read_bytes())


def test_models_lists_every_model_with_its_input_size_classes_and_profile(two_models: FlaskClient) -> None:
    listing = two_models.get("/models").get_json()
    assert listing["default"] == "v5"
    assert [m["name"] for m in listing["models"]] == ["v5", "v11", DEFAULT_MODEL_NAME]
    v5, v11, embedded = listing["models"]
    assert (v5["default"], v11["default"], embedded["default"]) == (True, False, False)
    assert v5["input_size"] == {"height": 640, "width": 640} and v5["dynamic_input_size"] is False
    assert v11["dynamic_input_size"] is True and v11["layout"] == "ultralytics"
    assert embedded["input_size"] == {"height": 640, "width": 640}  # YOLOX-Nano runs full images at 640
    assert all(m["num_classes"] == 80 and m["names"][0] == "person" and m["profile"] is None for m in listing["models"])
    assert all("path" not in m and "providers" not in m for m in listing["models"])


def test_models_says_which_file_each_worker_loaded_and_when(two_models: FlaskClient) -> None:
    """What an operator checks after swapping a model file and reloading: did the new one take?"""
    import hashlib
    from datetime import datetime

    from specks.models.default import EMBEDDED_DEFAULT_SHA256

    v5, _, embedded = two_models.get("/models").get_json()["models"]
    assert v5["sha256"] == hashlib.sha256(require(MODELS / "yolov5n.onnx").read_bytes()).hexdigest()
    assert embedded["sha256"] == EMBEDDED_DEFAULT_SHA256
    loaded_at = datetime.fromisoformat(v5["loaded_at"])
    assert loaded_at.tzinfo is not None and (datetime.now(loaded_at.tzinfo) - loaded_at).total_seconds() < 3600


def test_two_models_answer_the_same_image_differently(two_models: FlaskClient) -> None:
    answers = {
        name: two_models.post("/predict", json={"image": photo(), "model": name, "conf": 0.05}).get_json()
        for name in ("v5", "v11")
    }
    assert answers["v5"]["model"]["name"] == "v5" and answers["v11"]["model"]["name"] == "v11"
    assert answers["v5"]["model"]["layout"] == "yolov5" and answers["v11"]["model"]["layout"] == "ultralytics"
    assert "person" in [d["label"] for d in answers["v5"]["detections"]]
    assert answers["v5"]["detections"] != answers["v11"]["detections"]
    unnamed = two_models.post("/predict", json={"image": photo(), "conf": 0.05}).get_json()
    assert unnamed["model"]["name"] == "v5" and unnamed["detections"] == answers["v5"]["detections"]


def test_the_embedded_default_is_served_under_its_name(two_models: FlaskClient) -> None:
    answer = two_models.post("/predict", json={"image": photo(), "model": DEFAULT_MODEL_NAME}).get_json()
    assert answer["model"]["name"] == DEFAULT_MODEL_NAME


def test_ready_names_every_model(two_models: FlaskClient) -> None:
    assert two_models.get("/ready").get_json() == {
        "status": "ready",
        "model": "v5",
        "models": ["v5", "v11", DEFAULT_MODEL_NAME],
    }


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/predict", {"image": "AAAA", "model": "v8"}),
        ("post", "/predict", {"images": ["AAAA"], "model": "v8"}),
        ("get", "/model?name=v8", None),
    ],
    ids=["predict", "predict-batch", "model"],
)
def test_an_unknown_model_is_404_with_the_known_names(
    two_models: FlaskClient, method: str, path: str, body: dict[str, object] | None
) -> None:
    response = getattr(two_models, method)(path, json=body)
    assert response.status_code == 404
    assert response.get_json()["error"] == {
        "code": "not_found",
        "message": f"unknown model 'v8'; this server serves {KNOWN}",
        "field": "model",
    }


def test_other_front_ends_get_the_same_404_from_the_service(two_models: FlaskClient) -> None:
    """The compatible routes (Roboflow's model_id, DeepStack's custom/<model>) resolve names through it."""
    with two_models.application.app_context():
        service = current_service()
        assert service.detector("v11").model.info.name == "v11"
        with pytest.raises(NotFoundError, match=re.escape(f"unknown model 'v8'; this server serves {KNOWN}")):
            service.predict(b"", DetectOptions(), route="/v1/vision/custom/v8", model="v8")


def test_model_details_by_name(two_models: FlaskClient) -> None:
    assert two_models.get("/model").get_json()["name"] == "v5"
    assert two_models.get("/model?name=v11").get_json()["layout"] == "ultralytics"


@pytest.mark.slow
def test_specks_serve_serves_named_models_from_the_command_line(cache_dir: Path) -> None:
    """`specks serve --model v5=... --model v11=...` in a real gunicorn worker."""
    import requests

    from conftest import LiveServer

    settings = Settings(
        cache_dir=cache_dir,
        models=(
            ModelSpec("v5", str(require(MODELS / "yolov5n.onnx"))),
            ModelSpec("v11", str(require(MODELS / "yolo11n_random_weights_dynamic.onnx"))),
        ),
    )
    server = LiveServer(settings, workers=1)
    try:
        server.wait_ready()
        listing = requests.get(server.url + "/models", timeout=10).json()
        assert [m["name"] for m in listing["models"]] == ["v5", "v11", DEFAULT_MODEL_NAME]
        answer = requests.post(server.url + "/predict", json={"image": photo(), "model": "v11"}, timeout=60).json()
        assert answer["model"]["name"] == "v11"
        unknown = requests.post(server.url + "/predict", json={"image": photo(), "model": "v8"}, timeout=60)
        assert unknown.status_code == 404
    finally:
        server.stop()
