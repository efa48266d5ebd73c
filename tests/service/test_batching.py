"""Batches: which images share a session.run, the memory bound per run, per-image errors, the limits."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from conftest import COCO_TINY, jpeg_bytes, require
from specks.config import Limits, SharedRuns
from specks.core.options import DetectOptions
from specks.core.pipeline import MAX_BATCH_INPUT_PIXELS, Detector, Prediction
from specks.core.shared_runs import predict_same_size
from specks.errors import BatchTooLargeError, ImageDecodeError, SpecksError
from specks.service.batching import (
    check_batch_bytes,
    check_batch_count,
    plan_batch,
    predict_in_windows,
    run_unit,
    shared_run_pixels,
)

BROKEN = b"\xff\xd8 not a jpeg"


def photos(count: int) -> list[bytes]:
    """COCO photos of one size (640x480), so they can share runs."""
    from PIL import Image

    found = []
    for path in sorted((require(COCO_TINY) / "images").glob("*.jpg")):
        with Image.open(path) as image:
            if image.size == (640, 480):
                found.append(path.read_bytes())
        if len(found) == count:
            return found
    pytest.skip("not enough 640x480 photos")


def counting_runs(monkeypatch: pytest.MonkeyPatch, detector: Detector) -> list[int]:
    """Batch sizes of every session.run the detector makes from now on."""
    sizes: list[int] = []
    run = detector.model.run

    def counted(tensor: Any) -> Any:
        sizes.append(len(tensor))
        return run(tensor)

    monkeypatch.setattr(detector.model, "run", counted)
    return sizes


def test_same_size_full_image_passes_share_a_run_in_order(yolov5n_dynamic_detector: Detector) -> None:
    images = dict(enumerate([*photos(2), jpeg_bytes(500, 300), photos(3)[2], jpeg_bytes(2400, 1800), BROKEN]))
    plan = plan_batch(yolov5n_dynamic_detector, images, DetectOptions())
    # The three 640x480 photos form one run at the first one's place; the 2400x1800 one is sliced.
    assert plan.units == ((0, 1, 3), (2,), (4,))
    assert list(plan.refused) == [5] and isinstance(plan.refused[5], ImageDecodeError)


def test_a_model_with_a_fixed_batch_of_one_runs_each_image_alone(yolov5n_detector: Detector) -> None:
    plan = plan_batch(yolov5n_detector, dict(enumerate(photos(3))), DetectOptions())
    assert plan.units == ((0,), (1,), (2,))


def test_runs_are_bounded_by_input_pixels_and_kept_pictures_count_theirs(yolov5n_dynamic_detector: Detector) -> None:
    small = dict(enumerate([jpeg_bytes(64, 48)] * 10))
    per_run = MAX_BATCH_INPUT_PIXELS // (640 * 640)
    plan = plan_batch(yolov5n_dynamic_detector, small, DetectOptions())
    assert [len(unit) for unit in plan.units] == [per_run, 10 - per_run]
    big = dict(enumerate([jpeg_bytes(2000, 1500)] * 3))
    unsliced = DetectOptions(slice=False)
    assert [len(u) for u in plan_batch(yolov5n_dynamic_detector, big, unsliced).units] == [3]
    kept = plan_batch(yolov5n_dynamic_detector, big, unsliced, keep_image=True)
    assert [len(u) for u in kept.units] == [1, 1, 1]  # 3 megapixels kept each: one per run


@pytest.mark.parametrize(
    ("mode", "providers", "shared"),
    [
        (SharedRuns.AUTO, ("CPUExecutionProvider",), False),
        (SharedRuns.AUTO, ("CUDAExecutionProvider", "CPUExecutionProvider"), True),
        (SharedRuns.ON, ("CPUExecutionProvider",), True),
        (SharedRuns.OFF, ("CUDAExecutionProvider",), False),
    ],
)
def test_runs_are_shared_by_default_only_off_the_cpu(
    mode: SharedRuns, providers: tuple[str, ...], shared: bool
) -> None:
    assert shared_run_pixels(mode, providers) == (MAX_BATCH_INPUT_PIXELS if shared else 0)


def test_with_sharing_off_every_image_runs_alone(yolov5n_dynamic_detector: Detector) -> None:
    plan = plan_batch(yolov5n_dynamic_detector, dict(enumerate(photos(3))), DetectOptions(), max_batch_input_pixels=0)
    assert plan.units == ((0,), (1,), (2,))


def test_a_shared_run_answers_what_each_image_alone_would(
    yolov5n_dynamic_detector: Detector, monkeypatch: pytest.MonkeyPatch
) -> None:
    images = photos(3)
    options = DetectOptions(conf=0.2)
    alone = [yolov5n_dynamic_detector.predict_bytes(data, options) for data in images]
    runs = counting_runs(monkeypatch, yolov5n_dynamic_detector)
    shared = predict_same_size(yolov5n_dynamic_detector, images, options)
    assert runs == [3]  # one session.run for the three
    for one, together in zip(alone, shared, strict=True):
        assert isinstance(together, Prediction)
        assert len(one.detections) == len(together.detections) > 0
        np.testing.assert_allclose(one.detections.xyxy, together.detections.xyxy, atol=0.05)
        np.testing.assert_array_equal(one.detections.class_id, together.detections.class_id)
        assert together.image_size == one.image_size
    inference = {p.timing_ms["inference"] for p in shared if isinstance(p, Prediction)}
    assert len(inference) == 1  # an equal share each
    timing = shared[0].timing_ms if isinstance(shared[0], Prediction) else {}
    assert timing["total"] == pytest.approx(sum(v for k, v in timing.items() if k != "total"), abs=0.01)


def test_a_broken_image_in_a_shared_run_fails_alone(yolov5n_dynamic_detector: Detector) -> None:
    good = photos(2)
    results = predict_same_size(yolov5n_dynamic_detector, [good[0], BROKEN, good[1]], DetectOptions())
    assert isinstance(results[0], Prediction) and isinstance(results[2], Prediction)
    assert isinstance(results[1], ImageDecodeError)


def test_run_unit_of_one_image_keeps_its_error(yolov5n_dynamic_detector: Detector) -> None:
    answers = run_unit(yolov5n_dynamic_detector, {7: BROKEN}, (7,), DetectOptions())
    assert isinstance(answers[7], ImageDecodeError)


def test_predict_in_windows_answers_every_source_in_order(yolov5n_dynamic_detector: Detector) -> None:
    sources = ["a", "b", "missing", "c", "d"]
    data = dict(zip(["a", "b", "c", "d"], [*photos(3), jpeg_bytes(300, 200)], strict=True))

    def read(name: str) -> bytes:
        if name not in data:
            raise SpecksError(f"cannot read {name}")
        return data[name]

    done: list[int] = []
    results = list(
        predict_in_windows(yolov5n_dynamic_detector, sources, read, DetectOptions(), window=2, on_done=done.append)
    )
    assert [source for source, _ in results] == sources
    assert [type(result).__name__ for _, result in results] == ["Prediction"] * 2 + ["SpecksError"] + ["Prediction"] * 2
    assert sum(done) == len(sources)


@pytest.mark.parametrize(
    ("check", "value", "message"),
    [
        (check_batch_count, 5, r"holds 5 images; the limit is 4 images per request \(SPECKS_MAX_BATCH_IMAGES\)"),
        (check_batch_bytes, 1001, r"add up to 1001 bytes; the limit is 1000 bytes .*\(SPECKS_MAX_BATCH_BYTES\)"),
    ],
)
def test_batch_limits_name_the_limit_and_the_setting(check: Any, value: int, message: str) -> None:
    limits = Limits(max_batch_images=4, max_batch_bytes=1000)
    check(value - 1, limits)  # at the limit: fine
    with pytest.raises(BatchTooLargeError, match=message) as caught:
        check(value, limits)
    assert caught.value.code == "batch_too_large" and caught.value.field == "images"
