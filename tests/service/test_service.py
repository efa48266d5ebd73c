"""The service core without a web framework or a model file: decode, predict, encode, errors."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pytest
from prometheus_client import CollectorRegistry

from factories import b64
from specks import errors
from specks.config import Limits, Settings
from specks.core.deadline import Deadline
from specks.core.imaging import DecodedImage
from specks.core.options import DetectOptions, SlicingSettings
from specks.core.pipeline import Prediction
from specks.core.postprocess import OutputLayout
from specks.core.regions import NO_REGIONS
from specks.core.slicing import SliceMode
from specks.core.types import Detections, ImageSize
from specks.service.holder import ModelHolder
from specks.service.metrics import Metrics
from specks.service.service import INTERNAL_ERROR_MESSAGE, DetectionService, encode_error, status_for


@dataclass(frozen=True)
class FakeInfo:
    names: tuple[str, ...] = ("person", "car")
    name: str = "fake.onnx"
    source_format: str = "onnx"
    input_hw: tuple[int, int] = (640, 640)
    layout: OutputLayout = OutputLayout.YOLOV5

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "names": list(self.names)}


@dataclass
class FakeModel:
    info: FakeInfo = field(default_factory=FakeInfo)


class FakeDetector:
    """Answers every image with one car; records what it was asked and the gauge while it ran."""

    def __init__(self, metrics: Metrics | None = None, slicing: SlicingSettings | None = None) -> None:
        self.model = FakeModel()
        self.slicing = slicing or SlicingSettings()
        self.regions = NO_REGIONS
        self.profile = None
        self.metrics = metrics
        self.calls: list[tuple[Any, DetectOptions]] = []
        self.in_flight_seen: list[float] = []
        self.deadlines: list[Deadline | None] = []

    def _answer(self, image: Any, options: DetectOptions, keep_image: bool) -> Prediction:
        self.calls.append((image, options))
        if self.metrics is not None:
            self.in_flight_seen.append(self.metrics.images_in_flight.labels(route="/r")._value.get())
        found = Detections.from_arrays([[1, 2, 30, 40]], [0.9], [1])
        pixels = DecodedImage(np.full((48, 64, 3), 128, np.uint8), ImageSize(64, 48), "PNG") if keep_image else None
        timing_ms = {"decode": 1.0, "inference": 2.0, "total": 3.5}
        return Prediction(found, ImageSize(64, 48), timing_ms, tile_count=3, image=pixels)

    def predict_base64(
        self, image_b64: str, options: DetectOptions, *, keep_image: bool = False, deadline: Deadline | None = None
    ) -> Prediction:
        self.deadlines.append(deadline)
        return self._answer(image_b64, options, keep_image)

    def predict_bytes(
        self, data: bytes, options: DetectOptions, *, keep_image: bool = False, deadline: Deadline | None = None
    ) -> Prediction:
        self.deadlines.append(deadline)
        return self._answer(data, options, keep_image)


def make_service(settings: Settings | None = None, *, with_metrics: bool = False) -> tuple[DetectionService, Any]:
    settings = settings or Settings(limits=Limits(max_body_bytes=1000))
    metrics = Metrics.create(CollectorRegistry()) if with_metrics else None
    detector = FakeDetector(metrics, settings.slicing)
    return DetectionService(settings, ModelHolder(settings, detector), metrics), detector  # type: ignore[arg-type]


def body(**fields: Any) -> bytes:
    return orjson.dumps({"image": b64(b"not really a jpeg"), **fields})


def reader(data: bytes) -> Any:
    return lambda size: data[:size]


def test_handle_predict_decodes_predicts_and_encodes() -> None:
    service, detector = make_service()
    raw = body(conf=0.5, classes=["car"])
    answer = service.handle_predict(reader(raw), content_type="application/json", content_length=len(raw))
    assert answer["detections"] == [
        {"box": {"x1": 1.0, "y1": 2.0, "x2": 30.0, "y2": 40.0}, "class_id": 1, "label": "car", "confidence": 0.9}
    ]
    assert answer["tiles"] == 3
    assert "tiles" not in answer["timing_ms"]  # timing_ms holds milliseconds only
    ((image, options),) = detector.calls
    assert options.conf == 0.5 and options.classes == ["car"]


def test_predict_records_stage_metrics_and_the_in_flight_gauge_for_its_route() -> None:
    service, detector = make_service(with_metrics=True)
    metrics = service.metrics
    assert metrics is not None
    request = service.decode_request(body(), content_type="application/json")
    service.predict(request, route="/r")
    service.predict_bytes(b"raw", DetectOptions(), route="/other")
    assert detector.in_flight_seen == [1.0, 0.0]  # the second ran on another route
    assert metrics.images_in_flight.labels(route="/r")._value.get() == 0
    assert metrics.stage_seconds._labelnames == ("route", "stage")
    inference_s = metrics.stage_seconds.labels(route="/r", stage="inference")._sum.get()
    assert inference_s == pytest.approx(0.002)
    assert metrics.tiles.labels(route="/other")._sum.get() == 3


def test_a_prediction_waits_for_a_slot() -> None:
    settings = Settings(predictions_per_worker=1)
    service, _ = make_service(settings)
    request = service.decode_request(body(), content_type="application/json")
    service.holder.prediction_slots.acquire()
    done = threading.Event()
    worker = threading.Thread(target=lambda: (service.predict(request, route="/r"), done.set()))
    worker.start()
    assert not done.wait(0.2)  # queued, not refused
    service.holder.prediction_slots.release()
    assert done.wait(5)
    worker.join()


def test_read_body_refuses_a_declared_length_before_reading() -> None:
    service, _ = make_service()

    def must_not_read(size: int) -> bytes:
        raise AssertionError("read a body whose declared length was over the limit")

    with pytest.raises(errors.PayloadTooLargeError, match="1001 bytes; the limit is 1000"):
        service.read_body(must_not_read, 1001)


def test_read_body_refuses_a_chunked_body_past_the_limit_after_reading_one_byte_more() -> None:
    service, _ = make_service()
    asked: list[int] = []

    def read(size: int) -> bytes:
        asked.append(size)
        return b"x" * min(size, 5000)

    with pytest.raises(errors.PayloadTooLargeError, match="more than 1000 bytes"):
        service.read_body(read, None)
    assert asked == [1001]
    assert service.read_body(reader(b"y" * 1000), None) == b"y" * 1000  # exactly the limit passes


@pytest.mark.parametrize(
    ("raw", "content_type", "error"),
    [
        (body(), "text/plain", errors.UnsupportedMediaTypeError),
        (b"{", "application/json", errors.InvalidJSONError),
        (b"[1]", "application/json", errors.InvalidRequestError),
        (body(conf=2), "application/json", errors.InvalidFieldError),
        (body(confidence=0.3), "application/json", errors.InvalidFieldError),
    ],
)
def test_decode_request_refuses(raw: bytes, content_type: str, error: type[Exception]) -> None:
    service, _ = make_service()
    with pytest.raises(error):
        service.decode_request(raw, content_type=content_type)


def test_predict_before_the_model_is_loaded_is_503() -> None:
    settings = Settings()
    service = DetectionService(settings, ModelHolder(settings))
    request = service.decode_request(body(), content_type="application/json")
    with pytest.raises(errors.ModelNotReadyError) as caught:
        service.predict(request, route="/predict")
    assert status_for(caught.value) == 503


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (errors.InvalidBase64Error("bad char '!' at 3", field="image"), 400, "invalid_base64"),
        (errors.ImageTooLargeError("too many pixels"), 413, "image_too_large"),
        (errors.UnsupportedMediaTypeError("not json"), 415, "unsupported_media_type"),
        (errors.AuthenticationError("no key"), 401, "unauthorized"),
        (errors.NotFoundError("no model 'x'"), 404, "not_found"),
        (errors.ModelNotReadyError("loading"), 503, "model_not_ready"),
    ],
)
def test_expected_refusals_keep_their_message_and_log_no_traceback(
    exc: errors.SpecksError, status: int, code: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="specks")
    answer = encode_error(exc)
    assert (answer.status, answer.code, answer.message) == (status, code, exc.message)
    assert answer.envelope()["error"]["message"] == exc.message
    records = [r for r in caplog.records if r.name == "specks.service.service"]
    assert len(records) == 1
    assert records[0].exc_info is None
    assert records[0].levelno == (logging.WARNING if status == 503 else logging.INFO)


@pytest.mark.parametrize(
    "exc",
    [
        errors.InferenceError("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : /srv/models/secret.onnx Got invalid dims"),
        errors.ModelLoadError("cannot read /srv/models/secret.onnx"),
        RuntimeError("secret internal detail /srv"),
    ],
)
def test_5xx_answers_leak_nothing_and_are_logged_with_the_traceback(
    exc: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    try:
        raise exc
    except Exception as raised:
        answer = encode_error(raised)
    assert answer.status == 500
    assert answer.message == INTERNAL_ERROR_MESSAGE
    assert "/srv" not in orjson.dumps(answer.envelope()).decode()
    (record,) = [r for r in caplog.records if r.name == "specks.service.service"]
    assert record.levelno == logging.ERROR and record.exc_info is not None


def test_model_details_show_no_file_path_and_carry_the_server_defaults() -> None:
    settings = Settings(slicing=SlicingSettings(mode=SliceMode.OFF, overlap_ratio=0.3, tile_px=800))
    service, _ = make_service(settings)
    details = service.model_details()
    assert "path" not in details
    defaults = details["defaults"]
    assert (defaults["slice"], defaults["overlap"], defaults["tile"]) == ("off", 0.3, 800)
    assert (defaults["conf"], defaults["max_det"], defaults["merge"]) == (0.25, 300, "nms")
    assert set(DetectOptions.model_fields) <= set(defaults)


def test_a_model_is_chosen_by_its_name_and_an_unknown_name_is_404() -> None:
    service, detector = make_service()
    assert service.model_names() == ["fake.onnx"]
    assert service.detector("fake.onnx") is detector
    assert service.detector() is detector
    with pytest.raises(errors.NotFoundError, match="unknown model 'other'; this server serves 'fake.onnx'") as caught:
        service.predict_bytes(b"x", DetectOptions(), route="/r", model="other")
    assert status_for(caught.value) == 404 and caught.value.field == "model"
    assert detector.calls == []


def test_visualize_draws_inside_the_prediction_slot_and_lets_the_pixels_go(monkeypatch: pytest.MonkeyPatch) -> None:
    from specks.service import service as service_module

    service, _ = make_service(Settings(predictions_per_worker=1))
    slot_free_while_drawing: list[bool] = []
    draw = service_module.visualize_prediction

    def watched(prediction: Prediction, names: Any) -> str:
        slot_free_while_drawing.append(service.holder.prediction_slots.try_acquire())
        return draw(prediction, names)

    monkeypatch.setattr(service_module, "visualize_prediction", watched)
    request = service.decode_request(body(visualize=True), content_type="application/json")
    prediction, detector = service.predict(request, route="/r")
    assert slot_free_while_drawing == [False]  # drawn while the request still held the only slot
    assert prediction.image is None and prediction.visualization_jpeg_b64
    assert prediction.timing_ms["visualize"] > 0 and list(prediction.timing_ms)[-1] == "total"
    assert prediction.timing_ms["total"] == pytest.approx(3.5 + prediction.timing_ms["visualize"], abs=0.01)
    answer = service.encode_response(prediction, detector)
    assert answer["visualization"] == prediction.visualization_jpeg_b64


def test_a_request_chooses_its_model_and_a_front_end_may_choose_for_it() -> None:
    service, _ = make_service()
    request = service.decode_request(body(model="other"), content_type="application/json")
    with pytest.raises(errors.NotFoundError):
        service.predict(request, route="/r")
    prediction, detector = service.predict(request, route="/r", model="fake.onnx")  # the front-end's choice wins
    assert detector.model.info.name == "fake.onnx"


def test_a_batch_error_slot_holds_the_envelope_and_its_status() -> None:
    service, detector = make_service()
    results = [errors.ImageTooLargeError("too many pixels"), RuntimeError("secret /srv")]
    encoded = service.encode_batch_response(results, detector)  # type: ignore[arg-type]
    assert encoded == {
        "results": [
            {"error": {"code": "image_too_large", "message": "too many pixels"}, "status": 413},
            {"error": {"code": "internal_error", "message": INTERNAL_ERROR_MESSAGE}, "status": 500},
        ]
    }


@pytest.mark.parametrize(
    ("names", "model_id", "expected"),
    [
        pytest.param(["yolov5n.onnx"], "coco/3", "yolov5n.onnx", id="single-model-answers-any-id"),
        pytest.param(["yolov5n.onnx"], None, "yolov5n.onnx", id="single-model-no-id"),
        pytest.param(["people.onnx", "boats.onnx"], "boats.onnx", "boats.onnx", id="several-by-name"),
        pytest.param(["people.onnx", "boats.onnx"], "coco/3", "people.onnx", id="several-unknown-id-is-the-default"),
    ],
)
def test_a_compatible_apis_model_id_picks_the_model_of_that_name_else_the_default(
    names: list[str], model_id: str | None, expected: str
) -> None:
    settings = Settings()
    detectors = {}
    for name in names:
        detector = FakeDetector()
        detector.model = FakeModel(FakeInfo(name=name))
        detectors[name] = detector
    service = DetectionService(settings, ModelHolder(settings, detectors=detectors))  # type: ignore[arg-type]
    assert service.model_for_client_id(model_id) == expected


def test_every_prediction_runs_under_the_request_timeout_as_its_deadline() -> None:
    service, detector = make_service(Settings(request_timeout_s=7))
    request = service.decode_request(body(), content_type="application/json")
    service.predict(request, route="/r")
    service.predict_bytes(b"...", DetectOptions(), route="/r")
    assert len(detector.deadlines) == 2
    for deadline in detector.deadlines:
        assert deadline is not None and deadline.timeout_s == 7 and 6 < deadline.remaining_s() <= 7


def test_time_waiting_for_a_slot_is_added_to_the_deadline() -> None:
    service, detector = make_service(Settings(predictions_per_worker=1))
    request = service.decode_request(body(), content_type="application/json")
    service.holder.prediction_slots.acquire()
    deadline = Deadline.after(5)
    worker = threading.Thread(target=service.predict, args=(request,), kwargs={"route": "/r", "deadline": deadline})
    worker.start()
    time.sleep(0.3)
    service.holder.prediction_slots.release()
    worker.join(5)
    assert detector.deadlines == [deadline]
    assert deadline.remaining_s() > 5 - 0.1  # the 0.3 s of waiting did not count

