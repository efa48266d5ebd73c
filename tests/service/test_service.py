"""The service's door without a web framework or a model file: image bytes and options in, a Prediction out."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from fakes import FakeDetector, FakeInfo, FakeModel
from specks import errors
from specks.config import Limits, Settings
from specks.core.deadline import Deadline
from specks.core.knobs import SlicingSettings
from specks.core.options import DetectOptions
from specks.core.pipeline import Prediction
from specks.core.slicing import SliceMode
from specks.service.holder import ModelHolder
from specks.service.metrics import Metrics
from specks.service.service import DetectionService


def make_service(settings: Settings | None = None, *, with_metrics: bool = False) -> tuple[DetectionService, Any]:
    settings = settings or Settings(limits=Limits(max_body_bytes=1000))
    metrics = Metrics.create(CollectorRegistry()) if with_metrics else None
    detector = FakeDetector(metrics, settings.slicing)
    return DetectionService(settings, ModelHolder(settings, detector), metrics), detector  # type: ignore[arg-type]


def reader(data: bytes) -> Any:
    return lambda size: data[:size]


IMAGE = b"not really a jpeg"


def test_the_door_passes_the_image_and_options_and_the_prediction_names_its_model() -> None:
    service, detector = make_service()
    options = DetectOptions(conf=0.5, classes=["car"])
    prediction = service.predict(IMAGE, options, route="/r")
    assert detector.calls == [(IMAGE, options)]
    assert prediction.model is detector.model.info and prediction.tile_count == 3


def test_predict_records_stage_metrics_and_the_in_flight_gauge_for_its_route() -> None:
    service, detector = make_service(with_metrics=True)
    metrics = service.metrics
    assert metrics is not None
    service.predict(IMAGE, DetectOptions(), route="/r")
    service.predict(b"raw", DetectOptions(), route="/other")
    assert detector.in_flight_seen == [1.0, 0.0]  # the second ran on another route
    assert metrics.images_in_flight.labels(route="/r")._value.get() == 0
    assert metrics.stage_seconds._labelnames == ("route", "stage")
    inference_s = metrics.stage_seconds.labels(route="/r", stage="inference")._sum.get()
    assert inference_s == pytest.approx(0.002)
    assert metrics.tiles.labels(route="/other")._sum.get() == 3


def test_a_prediction_waits_for_a_slot() -> None:
    settings = Settings(predictions_per_worker=1)
    service, _ = make_service(settings)
    service.holder.prediction_slots.acquire()
    done = threading.Event()
    worker = threading.Thread(target=lambda: (service.predict(IMAGE, DetectOptions(), route="/r"), done.set()))
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


def test_predict_before_the_model_is_loaded_is_503() -> None:
    settings = Settings()
    service = DetectionService(settings, ModelHolder(settings))
    with pytest.raises(errors.ModelNotReadyError):
        service.predict(IMAGE, DetectOptions(), route="/predict")


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
        service.predict(b"x", DetectOptions(), route="/r", model="other")
    assert caught.value.field == "model"
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
    prediction = service.predict(IMAGE, DetectOptions(), route="/r", visualize=True)
    assert slot_free_while_drawing == [False]  # drawn while the request still held the only slot
    assert prediction.image is None and prediction.visualization_jpeg_b64
    assert prediction.timing_ms["visualize"] > 0 and list(prediction.timing_ms)[-1] == "total"
    assert prediction.timing_ms["total"] == pytest.approx(3.5 + prediction.timing_ms["visualize"], abs=0.01)


def test_a_batch_keeps_each_image_s_own_error_in_its_place_and_counts_every_image() -> None:
    service, detector = make_service(Settings(limits=Limits(max_batch_images=3)))
    unreadable = [errors.InvalidBase64Error("not base64", field="images"), errors.ImageDecodeError("not an image")]
    assert service.predict_batch(unreadable, DetectOptions(), route="/r") == unreadable
    with pytest.raises(errors.BatchTooLargeError):  # an image that failed its wire format still counts
        service.predict_batch([*unreadable, IMAGE, IMAGE], DetectOptions(), route="/r")
    assert detector.calls == []


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
    service.predict(IMAGE, DetectOptions(), route="/r")
    service.predict(b"...", DetectOptions(), route="/r")
    assert len(detector.deadlines) == 2
    for deadline in detector.deadlines:
        assert deadline is not None and deadline.timeout_s == 7 and 6 < deadline.remaining_s() <= 7


def test_time_waiting_for_a_slot_is_added_to_the_deadline() -> None:
    service, detector = make_service(Settings(predictions_per_worker=1))
    service.holder.prediction_slots.acquire()
    deadline = Deadline.after(5)
    worker = threading.Thread(
        target=service.predict, args=(IMAGE, DetectOptions()), kwargs={"route": "/r", "deadline": deadline}
    )
    worker.start()
    time.sleep(0.3)
    service.holder.prediction_slots.release()
    worker.join(5)
    assert detector.deadlines == [deadline]
    assert deadline.remaining_s() > 5 - 0.1  # the 0.3 s of waiting did not count

