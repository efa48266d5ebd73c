"""Specks' own POST /predict body handling (``web.predict``), without Flask or a model file: the JSON
body read and checked, base64 decoded here and timed, the door called, the answer encoded."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from factories import b64
from fakes import FakeDetector
from specks import errors
from specks.config import Limits, Settings
from specks.service.holder import ModelHolder
from specks.service.service import DetectionService
from specks.web.errors import INTERNAL_ERROR_MESSAGE
from specks.web.predict import encode_batch, handle_predict

IMAGE = b"not really a jpeg"


def make_service(settings: Settings | None = None) -> tuple[DetectionService, FakeDetector]:
    settings = settings or Settings(limits=Limits(max_body_bytes=1000))
    detector = FakeDetector()
    return DetectionService(settings, ModelHolder(settings, detector)), detector  # type: ignore[arg-type]


def post(service: DetectionService, raw: bytes, content_type: str = "application/json") -> dict[str, Any]:
    return handle_predict(service, lambda size: raw[:size], content_type=content_type, content_length=len(raw))


def body(**fields: Any) -> bytes:
    return orjson.dumps({"image": b64(IMAGE), **fields})


def test_one_image_is_decoded_here_predicted_through_the_door_and_encoded() -> None:
    service, detector = make_service()
    answer = post(service, body(conf=0.5, classes=["car"]))
    assert answer["detections"] == [
        {"box": {"x1": 1.0, "y1": 2.0, "x2": 30.0, "y2": 40.0}, "class_id": 1, "label": "car", "confidence": 0.9}
    ]
    assert answer["tiles"] == 3 and answer["model"]["name"] == "fake.onnx"
    ((image, options),) = detector.calls
    assert image == IMAGE  # the door got the file's bytes, not base64
    assert options.conf == 0.5 and options.classes == ["car"]
    assert answer["timing_ms"]["decode"] > 1.0  # the base64 time counts in decode (1.0 ms: the detector's own)
    assert list(answer["timing_ms"])[-1] == "total" and "tiles" not in answer["timing_ms"]


@pytest.mark.parametrize(
    ("raw", "content_type", "error"),
    [
        (body(), "text/plain", errors.UnsupportedMediaTypeError),
        (b"{", "application/json", errors.InvalidJSONError),
        (b"[1]", "application/json", errors.InvalidRequestError),
        (body(conf=2), "application/json", errors.InvalidFieldError),
        (body(confidence=0.3), "application/json", errors.InvalidFieldError),
        (orjson.dumps({"image": "not base64!"}), "application/json", errors.InvalidBase64Error),
    ],
)
def test_bad_bodies_are_refused_before_the_door(raw: bytes, content_type: str, error: type[Exception]) -> None:
    service, detector = make_service()
    with pytest.raises(error):
        post(service, raw, content_type)
    assert detector.calls == []


def test_a_request_chooses_its_model_by_name() -> None:
    service, _ = make_service()
    with pytest.raises(errors.NotFoundError, match="unknown model 'other'"):
        post(service, body(model="other"))
    assert post(service, body(model="fake.onnx"))["model"]["name"] == "fake.onnx"


def test_a_batch_answers_each_image_in_its_place_and_an_unreadable_one_with_its_own_error() -> None:
    service, _ = make_service(Settings())
    raw = orjson.dumps({"images": ["not base64!", "also not!"]})
    answer = post(service, raw)
    assert [result["status"] for result in answer["results"]] == [400, 400]
    assert answer["results"][0]["error"]["code"] == "invalid_base64"


def test_a_batch_error_slot_holds_the_envelope_and_its_status() -> None:
    results = [errors.ImageTooLargeError("too many pixels"), RuntimeError("secret /srv")]
    encoded = encode_batch(results, [0.0, 0.0])  # type: ignore[arg-type]
    assert encoded == {
        "results": [
            {"error": {"code": "image_too_large", "message": "too many pixels"}, "status": 413},
            {"error": {"code": "internal_error", "message": INTERNAL_ERROR_MESSAGE}, "status": 500},
        ]
    }


def test_a_batch_over_the_image_limit_is_refused_before_any_image_is_decoded() -> None:
    service, detector = make_service(Settings(limits=Limits(max_batch_images=2)))
    with pytest.raises(errors.BatchTooLargeError):
        post(service, orjson.dumps({"images": ["not base64!"] * 3}))
    assert detector.calls == []
