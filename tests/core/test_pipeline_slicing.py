"""Sliced inference in the pipeline: plan resolution, tile budget, timings, small-object recall, the API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_overlap import assert_same_detections, reference_merge

import specks.core.pipeline
from conftest import VISDRONE, coco_annotations, jpeg_bytes, require
from factories import b64, huge_bilevel_png, iou_matrix
from specks.config import Limits, Settings
from specks.core.knobs import SlicingSettings
from specks.core.options import DetectOptions
from specks.core.overlap import MatchMetric, MergeStrategy
from specks.core.pipeline import Detector
from specks.core.types import Detections, ImageSize
from specks.errors import ImageTooLargeError, TooManyInputPixelsError, TooManyTilesError
from specks.models.letterboxer import ort_detector
from specks.service.batching import plan_batch
from specks.web import create_app

STATIC, DYNAMIC = "yolov5n_detector", "yolov5n_dynamic_detector"
NMS, NMM = MergeStrategy.NMS, MergeStrategy.NMM
IOU, IOS = MatchMetric.IOU, MatchMetric.IOS


def with_slicing(detector: Detector, **settings: Any) -> Detector:
    """The same loaded model under other server slicing defaults."""
    return ort_detector(detector.model, detector.limits, SlicingSettings(**settings))


def test_too_many_tiles_is_refused_before_decoding(yolov5n_detector: Detector, monkeypatch: pytest.MonkeyPatch) -> None:
    detector = ort_detector(yolov5n_detector.model, yolov5n_detector.limits, SlicingSettings(max_tiles=4))

    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("the image was decoded before the tile budget was checked")

    monkeypatch.setattr(specks.core.pipeline, "decode_image", no_decoding)
    with pytest.raises(TooManyTilesError) as caught:
        detector.predict_bytes(jpeg_bytes(2000, 1500), DetectOptions(slice=True))
    assert "12 tiles" in caught.value.message
    assert "limit is 4" in caught.value.message
    assert caught.value.code == "too_many_tiles"


def test_an_image_over_the_pixel_limit_is_refused_as_such_not_as_too_many_tiles(yolov5n_detector: Detector) -> None:
    """10000 x 6000 = 60 MP: over the 40 MP limit and, sliced, over 200 tiles; the pixel limit answers."""
    detector = ort_detector(yolov5n_detector.model, Limits(max_image_pixels=40_000_000), SlicingSettings(max_tiles=200))
    with pytest.raises(ImageTooLargeError) as caught:
        detector.predict_bytes(huge_bilevel_png(10_000, 6_000), DetectOptions(slice=True))
    assert caught.value.code == "image_too_large"
    assert "10000x6000" in caught.value.message


def test_too_many_input_pixels_is_refused_before_decoding_with_its_own_413(
    yolov5n_detector: Detector, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """2000x1500 sliced on the 640 model: 12 tiles and the full image, 13 x 640 x 640 = 5.3 MP of model input."""
    budget = SlicingSettings(max_input_pixels_per_request=13 * 640 * 640 - 1)
    detector = ort_detector(yolov5n_detector.model, yolov5n_detector.limits, budget)

    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("the image was decoded before the pixel budget was checked")

    monkeypatch.setattr(specks.core.pipeline, "decode_image", no_decoding)
    with pytest.raises(TooManyInputPixelsError):
        detector.predict_bytes(jpeg_bytes(2000, 1500), DetectOptions(slice=True))
    monkeypatch.undo()
    client = create_app(Settings(cache_dir=cache_dir), detector=detector).test_client()
    response = client.post("/predict", json={"image": b64(jpeg_bytes(2000, 1500)), "slice": True})
    assert response.status_code == 413
    error = response.get_json()["error"]
    assert error["code"] == "too_many_input_pixels"
    assert "5.3 megapixels" in error["message"] and "SPECKS_MAX_INPUT_PIXELS" in error["message"]


def test_a_batch_refuses_only_the_image_over_the_budget(yolov5n_detector: Detector) -> None:
    """Each image of a batch is its own plan: a 2000x1500 one sliced is over 5 MP, an 800x600 one is not."""
    budget = SlicingSettings(max_input_pixels_per_request=5_000_000)
    detector = ort_detector(yolov5n_detector.model, yolov5n_detector.limits, budget)
    images = {0: jpeg_bytes(800, 600), 1: jpeg_bytes(2000, 1500), 2: jpeg_bytes(640, 480)}

    plan = plan_batch(detector, images, DetectOptions())

    assert list(plan.refused) == [1] and isinstance(plan.refused[1], TooManyInputPixelsError)
    assert sorted(index for unit in plan.units for index in unit) == [0, 2]


def test_too_many_tiles_is_413_over_http(yolov5n_detector: Detector, cache_dir: Path) -> None:
    detector = ort_detector(yolov5n_detector.model, yolov5n_detector.limits, SlicingSettings(max_tiles=4))
    client = create_app(Settings(cache_dir=cache_dir), detector=detector).test_client()
    response = client.post("/predict", json={"image": b64(jpeg_bytes(2000, 1500)), "slice": True})
    assert response.status_code == 413
    error = response.get_json()["error"]
    assert error["code"] == "too_many_tiles"
    assert "12 tiles" in error["message"] and "limit is 4" in error["message"]


# -- timings --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "slice_option", "expected_tiles", "merged"),
    [
        (STATIC, True, 12, True),  # 640 tiles, overlap 0.2: 4 x 3, plus the full image, merged
        (STATIC, "auto", 12, True),  # 2000 >= 2 x 640
        (STATIC, False, 0, False),
        (DYNAMIC, True, 1, False),  # one upscaled tile covers the image: nothing to merge
    ],
)
def test_timing_counts_tiles(
    request: pytest.FixtureRequest, model: str, slice_option: bool | str, expected_tiles: int, merged: bool
) -> None:
    detector: Detector = request.getfixturevalue(model)
    prediction = detector.predict_bytes(jpeg_bytes(2000, 1500), DetectOptions(slice=slice_option))
    assert prediction.tile_count == expected_tiles
    assert ("merge" in prediction.timing_ms) is merged
    assert (prediction.image_size.width, prediction.image_size.height) == (2000, 1500)


# -- recall on small objects ------------------------------------------------------------------------------

COCO_TO_MODEL = {1: 0, 3: 2}  # person, car
DRONE_IMAGES = ("9999999_00037_d_0000007.jpg", "9999999_00043_d_0000009.jpg")  # many tiny cars and people


def small_truth(dataset: dict[str, Any], image_id: int, category_id: int) -> np.ndarray:
    boxes = [
        a["bbox"]
        for a in dataset["annotations"]
        if a["image_id"] == image_id
        and a["category_id"] == category_id
        and not a["iscrowd"]
        and a["bbox"][2] * a["bbox"][3] < 32 * 32
    ]
    return np.array([[x, y, x + w, y + h] for x, y, w, h in boxes], np.float32).reshape(-1, 4)


def small_objects_found(detector: Detector, slice_option: bool) -> tuple[int, int, list[float]]:
    """(ground-truth boxes under 32x32 matched at IoU >= 0.5, their number, tiles per image)."""
    dataset = coco_annotations(VISDRONE)
    matched, total, tiles = 0, 0, []
    options = DetectOptions(conf=0.1, classes=["person", "car"], slice=slice_option)
    for image in (i for i in dataset["images"] if i["file_name"] in DRONE_IMAGES):
        prediction = detector.predict_bytes((VISDRONE / "images" / image["file_name"]).read_bytes(), options)
        tiles.append(prediction.tile_count)
        for category_id, class_id in COCO_TO_MODEL.items():
            truth = small_truth(dataset, image["id"], category_id)
            found = prediction.detections[prediction.detections.class_id == class_id]
            total += len(truth)
            if len(truth) and len(found):
                matched += int((iou_matrix(truth, found.xyxy).max(axis=1) >= 0.5).sum())
    return matched, total, tiles


@pytest.mark.parametrize(
    ("model", "expected_tiles"),
    [(STATIC, 12), (DYNAMIC, 1)],  # native 640 tiles; one native 2000x1500 tile
)
def test_slicing_finds_many_more_small_objects_on_drone_photos(
    request: pytest.FixtureRequest, model: str, expected_tiles: int
) -> None:
    detector: Detector = request.getfixturevalue(model)
    full, total, full_tiles = small_objects_found(detector, slice_option=False)
    sliced, _, sliced_tiles = small_objects_found(detector, slice_option=True)
    assert total >= 50
    assert full_tiles == [0, 0]
    assert sliced_tiles == [expected_tiles, expected_tiles]
    assert sliced >= 2 * full
    assert sliced >= full + 10


# -- the API ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("slice", "yes"),
        ("slice", 1),
        ("tile", 10),
        ("tile", 99999),
        ("tile", 640.5),
        ("overlap", 0.9),
        ("overlap", -0.1),
        ("full_image", "no"),
        ("merge", "soft"),
        ("scales", [1.0, 9.0]),
        ("scales", []),
        ("flip", "yes"),
        ("soft_nms", 1),
        ("merge_metric", "dice"),
        ("merge_threshold", 1.5),
        ("tile_scale", 10),
        ("tile_scale", 0.1),
    ],
)
def test_api_validates_slicing_fields(client, field: str, value: object) -> None:  # type: ignore[no-untyped-def]
    response = client.post("/predict", json={"image": b64(jpeg_bytes(64, 48)), field: value})
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "invalid_field"
    assert error["field"] == field
    assert field in error["message"]


def test_api_sliced_request(client) -> None:  # type: ignore[no-untyped-def]
    body = {"image": b64(jpeg_bytes(1600, 1200)), "slice": True, "tile": 640, "overlap": 0.1}
    response = client.post("/predict", json=body)
    assert response.status_code == 200, response.get_json()
    payload = response.get_json()
    assert payload["tiles"] == 6  # x: 0, 576, 960; y: 0, 560
    assert "merge" in payload["timing_ms"]
    assert payload["image"] == {"width": 1600, "height": 1200}


class WholeTileModel:
    """A stand-in model: for every image in the batch, one box twice the size of its input,
    so only clipping brings it back to the tile."""

    threads = 1

    def __init__(self) -> None:
        from specks.core.postprocess import OutputLayout
        from specks.models.inspection import ModelInfo

        self.info = ModelInfo(
            name="stub",
            path="stub",
            source_format="onnx",
            input_name="images",
            input_hw=(64, 64),
            dynamic_hw=False,
            dynamic_batch=True,
            stride=32,
            layout=OutputLayout.YOLOV5,
            names=("thing",),
            providers=("CPUExecutionProvider",),
        )

    def run(self, tensor: np.ndarray) -> np.ndarray:
        batch, _, height, width = tensor.shape
        row = np.array([width / 2, height / 2, 2 * width, 2 * height, 1.0, 1.0], np.float32)
        return np.tile(row, (batch, 1, 1))


def test_batched_tiles_are_each_clipped_to_their_own_tile() -> None:
    """Regression: tiles of one batch were clipped with the last tile's far corner."""
    from specks.core.imaging import DecodedImage
    from specks.core.pipeline import StageTimer

    detector = Detector(WholeTileModel())  # type: ignore[arg-type]
    image = DecodedImage(np.zeros((128, 160, 3), np.uint8), ImageSize(160, 128), "PNG")
    plan = detector.plan(DetectOptions(slice=True, tile=64, overlap=0.0, conf=0.5), image.size)
    assert plan.slicing is not None
    tiles = plan.slicing.tiles_xyxy
    found = detector._detect_tiles(image, plan.slicing, plan.postprocess, StageTimer())
    assert len(found) == len(tiles) == 6  # x: 0, 64, 96 (shifted inward); y: 0, 64
    for tile, detections in zip(tiles.tolist(), found, strict=True):
        np.testing.assert_allclose(detections.xyxy[0], tile, atol=0.5)


# -- merging bounded, the same answers ---------------------------------------------------------------------


@pytest.mark.parametrize("conf", [0.25, 0.05])
def test_merging_a_real_sliced_request_matches_the_plain_loops(
    yolov5n_detector: Detector, monkeypatch: pytest.MonkeyPatch, conf: float
) -> None:
    """The 13 runs of a 2000x1500 drone photo (12 tiles and the full image), merged by each strategy,
    give what the one-box-at-a-time merges gave."""
    captured: list[Detections] = []
    real_merge = specks.core.pipeline.merge_detections

    def spy(found: Detections, *args: Any, **kwargs: Any) -> Detections:
        captured.append(found)
        return real_merge(found, *args, **kwargs)

    monkeypatch.setattr(specks.core.pipeline, "merge_detections", spy)
    photo = sorted((require(VISDRONE) / "images").iterdir())[0].read_bytes()
    yolov5n_detector.predict_bytes(photo, DetectOptions(slice=True, conf=conf, max_det=500))
    (found,) = captured
    assert len(found) > 20
    for strategy, metric, threshold in [(NMS, IOU, 0.5), (NMM, IOS, 0.5), (MergeStrategy.WBF, IOU, 0.55)]:
        merged = real_merge(found, strategy, metric, threshold, max_keep=500)
        assert_same_detections(merged, reference_merge(found, strategy, metric, threshold, 1, False)[:500])
