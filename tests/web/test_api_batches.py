"""POST /predict with "images": answers in order, one broken image among good ones, each limit's 413."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from conftest import COCO_TINY, require
from factories import b64
from specks.config import Limits, Settings
from specks.core.pipeline import Detector
from specks.models.letterboxer import ort_detector
from specks.web import create_app

PHOTOS = ["000000085329.jpg", "000000037777.jpg", "000000006818.jpg"]


def photo(name: str) -> str:
    return b64(require(COCO_TINY / "images" / name).read_bytes())


@pytest.fixture(scope="module")
def limited(yolov5n_dynamic_detector: Detector, cache_dir: Path) -> Iterator[FlaskClient]:
    """A server allowing batches of 3 images and 150 000 image bytes."""
    limits = Limits(max_batch_images=3, max_batch_bytes=150_000, max_image_pixels=1_000_000)
    detector = ort_detector(yolov5n_dynamic_detector.model, limits)  # the same session under these limits
    app = create_app(Settings(cache_dir=cache_dir, limits=limits), detector=detector)
    yield app.test_client()


def test_a_batch_is_answered_in_order_and_one_broken_image_fails_alone(client: FlaskClient) -> None:
    images = [photo(PHOTOS[0]), "not*base64", photo(PHOTOS[1]), b64(b"\x89PNG\r\n\x1a\n broken"), photo(PHOTOS[2])]
    response = client.post("/predict", json={"images": images, "conf": 0.3})
    assert response.status_code == 200
    results = response.get_json()["results"]
    assert len(results) == 5
    assert results[1] == {
        "error": {
            "code": "invalid_base64",
            "message": "image contains '*' at position 3, which is not a base64 character",
            "field": "image",
        },
        "status": 400,
    }
    assert results[3]["status"] == 400 and results[3]["error"]["code"] == "invalid_image"
    for slot, name in zip((0, 2, 4), PHOTOS, strict=True):
        alone = client.post("/predict", json={"image": photo(name), "conf": 0.3}).get_json()
        assert results[slot]["image"] == alone["image"]
        assert results[slot]["detections"] == alone["detections"]
        assert set(results[slot]) == {"detections", "image", "model", "timing_ms", "tiles"}


def test_an_image_over_the_pixel_limit_is_413_in_its_place(limited: FlaskClient) -> None:
    from conftest import jpeg_bytes

    images = [b64(jpeg_bytes(1200, 1000, quality=20)), b64(jpeg_bytes(64, 48))]
    results = limited.post("/predict", json={"images": images}).get_json()["results"]
    assert results[0]["status"] == 413 and results[0]["error"]["code"] == "image_too_large"
    assert "detections" in results[1]


def test_a_batch_over_the_image_count_is_413_naming_the_setting(limited: FlaskClient) -> None:
    response = limited.post("/predict", json={"images": ["AAAA"] * 4})
    assert response.status_code == 413
    error = response.get_json()["error"]
    assert error["code"] == "batch_too_large" and error["field"] == "images"
    assert "holds 4 images; the limit is 3" in error["message"] and "SPECKS_MAX_BATCH_IMAGES" in error["message"]


def test_a_batch_over_the_total_bytes_is_413_naming_the_setting(limited: FlaskClient) -> None:
    images = [photo(PHOTOS[0]), photo(PHOTOS[1]), photo(PHOTOS[2])]  # about 170 kB together
    response = limited.post("/predict", json={"images": images})
    assert response.status_code == 413
    error = response.get_json()["error"]
    assert error["code"] == "batch_too_large"
    assert "the limit is 150000 bytes" in error["message"] and "SPECKS_MAX_BATCH_BYTES" in error["message"]
    assert limited.post("/predict", json={"images": images[1:]}).status_code == 200  # under it: answered


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"image": "AAAA", "images": ["AAAA"]}, "send either 'image' (one image) or 'images'"),
        ({"images": []}, "'images' should be"),
        ({"images": "AAAA"}, "'images' should be"),
        ({"images": ["AAAA"], "confidence": 0.3}, "unknown field 'confidence'"),
    ],
)
def test_malformed_batches_are_400(client: FlaskClient, body: dict[str, object], message: str) -> None:
    response = client.post("/predict", json=body)
    assert response.status_code == 400
    assert message in response.get_json()["error"]["message"]


def test_a_batch_for_an_unknown_model_is_404(client: FlaskClient) -> None:
    response = client.post("/predict", json={"images": [photo(PHOTOS[0])], "model": "nope"})
    assert response.status_code == 404
    assert response.get_json()["error"]["message"] == "unknown model 'nope'; this server serves 'yolov5n.onnx'"


@pytest.mark.parametrize(("mode", "runs"), [("on", [3]), ("auto", [1, 1, 1]), ("off", [1, 1, 1])])
def test_same_size_images_share_one_run_where_the_setting_allows(
    yolov5n_dynamic_detector: Detector, cache_dir: Path, monkeypatch: pytest.MonkeyPatch, mode: str, runs: list[int]
) -> None:
    """auto shares only off the CPU (these tests run on the CPU provider)."""
    app = create_app(Settings(cache_dir=cache_dir, shared_runs=mode), detector=yolov5n_dynamic_detector)
    seen: list[int] = []
    run = yolov5n_dynamic_detector.model.run

    def counted(tensor: Any) -> Any:
        seen.append(len(tensor))
        return run(tensor)

    monkeypatch.setattr(yolov5n_dynamic_detector.model, "run", counted)
    same_size = [photo(name) for name in ("000000017627.jpg", "000000025560.jpg", "000000041888.jpg")]  # 640x480
    results = app.test_client().post("/predict", json={"images": same_size}).get_json()["results"]
    assert {(r["image"]["width"], r["image"]["height"]) for r in results} == {(640, 480)}
    assert seen == runs
