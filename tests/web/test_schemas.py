"""Tests of request validation (errors name the field) and of the response encoding."""

from __future__ import annotations

from typing import Any

import pytest

from fakes import FakeInfo
from specks.core.options import DetectOptions, parse_detect_options
from specks.core.pipeline import Prediction
from specks.core.types import Detections, ImageSize
from specks.errors import InvalidFieldError, InvalidRequestError
from specks.web.schemas import PredictRequest, PredictResponse, encode_prediction, parse_predict_request

IMAGE = "aGVsbG8="


def body(**fields: Any) -> dict[str, Any]:
    """A request body with a valid image plus ``fields``."""
    return {"image": IMAGE, **fields}


def test_minimal_body_gets_the_defaults() -> None:
    request = parse_predict_request(body())

    assert request.image == IMAGE
    assert request.conf is None  # the model profile's conf, else 0.25
    assert request.iou is None  # the Detector picks 0.45, or 0.6 when sliced
    assert request.multi_label is None
    assert request.max_det == 300
    assert request.classes is None
    assert request.imgsz is None


@pytest.mark.parametrize(
    ("fields", "attribute", "expected"),
    [
        pytest.param({"conf": 0.5}, "conf", 0.5, id="conf"),
        pytest.param({"conf": 0}, "conf", 0.0, id="conf-int-zero"),
        pytest.param({"conf": 1}, "conf", 1.0, id="conf-int-one"),
        pytest.param({"iou": 0.7}, "iou", 0.7, id="iou"),
        pytest.param({"max_det": 1}, "max_det", 1, id="max-det-min"),
        pytest.param({"max_det": 10_000}, "max_det", 10_000, id="max-det-max"),
        pytest.param({"classes": ["person", 2]}, "classes", ["person", 2], id="classes-names-and-ids"),
        pytest.param({"classes": []}, "classes", [], id="classes-empty"),
        pytest.param({"classes": None}, "classes", None, id="classes-null"),
        pytest.param({"imgsz": 1280}, "imgsz", 1280, id="imgsz"),
        pytest.param({"imgsz": None}, "imgsz", None, id="imgsz-null"),
        pytest.param({"image": "data:image/png;base64,AAAA"}, "image", "data:image/png;base64,AAAA", id="data-uri"),
    ],
)
def test_optional_fields(fields: dict[str, Any], attribute: str, expected: Any) -> None:
    assert getattr(parse_predict_request(body(**fields)), attribute) == expected


@pytest.mark.parametrize(
    ("request_body", "field_name", "message"),
    [
        pytest.param(body(conf="0.5"), "conf", "got '0.5'", id="conf-string"),
        pytest.param(body(conf=1.5), "conf", "less than or equal to 1", id="conf-above-one"),
        pytest.param(body(conf=-0.1), "conf", "greater than or equal to 0", id="conf-negative"),
        pytest.param(body(conf=True), "conf", "got True", id="conf-bool"),
        pytest.param(body(iou=2), "iou", "less than or equal to 1", id="iou-above-one"),
        pytest.param(body(max_det=0), "max_det", "greater than or equal to 1", id="max-det-zero"),
        pytest.param(body(max_det=10_001), "max_det", "less than or equal to 10000", id="max-det-too-many"),
        pytest.param(body(max_det=2.0), "max_det", "valid integer", id="max-det-float"),
        pytest.param(body(max_det="5"), "max_det", "got '5'", id="max-det-string"),
        pytest.param(body(imgsz=31), "imgsz", "greater than or equal to 32", id="imgsz-too-small"),
        pytest.param(body(imgsz=4097), "imgsz", "less than or equal to 4096", id="imgsz-too-large"),
        pytest.param(body(classes="person"), "classes", "valid list", id="classes-not-a-list"),
        pytest.param(
            body(classes=[1.5]),
            "classes",
            "valid integer or a valid string (got 1.5)",
            id="classes-float-item",
        ),
        pytest.param(body(classes=["person", None]), "classes", "got None", id="classes-null-item"),
        pytest.param(body(classes=list(range(1001))), "classes", "at most 1000", id="classes-too-many"),
        pytest.param({"image": 123}, "image", "got 123", id="image-number"),
        pytest.param({"image": ["a"]}, "image", "valid string", id="image-list"),
        pytest.param(body(conf="x" * 100), "conf", "got a string of 100 characters", id="long-value-not-echoed"),
        pytest.param({}, "image", "'image' is required", id="image-missing"),
        pytest.param({"conf": 0.5}, "image", "'image' is required", id="only-options"),
        pytest.param(body(confidence=0.5), "confidence", "unknown field 'confidence'", id="unknown-field"),
    ],
)
def test_invalid_fields_are_named(request_body: dict[str, Any], field_name: str, message: str) -> None:
    with pytest.raises(InvalidFieldError) as caught:
        parse_predict_request(request_body)

    assert caught.value.field == field_name
    assert message in caught.value.message
    assert f"'{field_name}'" in caught.value.message


def test_unknown_field_message_lists_the_allowed_fields() -> None:
    with pytest.raises(InvalidFieldError) as caught:
        parse_predict_request(body(confidence=0.5))

    allowed = caught.value.message.split("allowed fields: ")[1].split(", ")
    assert allowed == sorted(PredictRequest.model_fields)
    assert {"image", "conf", "iou", "max_det", "classes", "imgsz"} <= set(allowed)


@pytest.mark.parametrize(
    "request_body",
    [
        pytest.param([{"image": IMAGE}], id="list"),
        pytest.param(IMAGE, id="string"),
        pytest.param(None, id="null"),
        pytest.param(3, id="number"),
    ],
)
def test_body_that_is_not_an_object(request_body: Any) -> None:
    with pytest.raises(InvalidRequestError, match="must be an object") as caught:
        parse_predict_request(request_body)

    assert type(caught.value) is InvalidRequestError
    assert type(request_body).__name__ in caught.value.message


def test_detect_options_reject_an_image_field() -> None:
    assert parse_detect_options({"conf": 0.1}).conf == 0.1
    with pytest.raises(InvalidFieldError) as caught:
        parse_detect_options({"image": IMAGE})

    assert caught.value.field == "image"
    allowed = caught.value.message.split("allowed fields: ")[1].split(", ")
    assert allowed == sorted(DetectOptions.model_fields)
    assert "image" not in allowed


TINY = FakeInfo(names=("person", "bicycle", "car"), name="tiny.onnx", input_hw=(384, 640))


def answered(found: Detections) -> Prediction:
    return Prediction(found, ImageSize(width=1280, height=720), {"decode": 1.5, "total": 12.25}, 0, model=TINY)


def test_encode_prediction() -> None:
    found = Detections.from_arrays([[1.234, 2.345, 10.0, 20.5], [100.0, 50.0, 300.126, 400.0]], [0.876543, 0.5], [2, 7])

    encoded = encode_prediction(answered(found))

    assert encoded == {
        "detections": [
            {
                "box": {"x1": 1.23, "y1": 2.35, "x2": 10.0, "y2": 20.5},
                "class_id": 2,
                "label": "car",
                "confidence": 0.8765,
            },
            {
                "box": {"x1": 100.0, "y1": 50.0, "x2": 300.13, "y2": 400.0},
                "class_id": 7,
                "label": "7",
                "confidence": 0.5,
            },
        ],
        "image": {"width": 1280, "height": 720},
        "model": {
            "name": "tiny.onnx",
            "format": "onnx",
            "input_size": {"width": 640, "height": 384},
            "layout": "yolov5",
        },
        "timing_ms": {"decode": 1.5, "total": 12.25},
        "tiles": 0,
    }
    assert PredictResponse.model_validate(encoded).detections[0].label == "car"


def test_encode_prediction_without_detections() -> None:
    encoded = encode_prediction(answered(Detections.empty()))

    assert encoded["detections"] == []
    assert PredictResponse.model_validate(encoded).image.width == 1280
