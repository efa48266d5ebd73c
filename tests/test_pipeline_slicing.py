"""Sliced inference in the pipeline: plan resolution, tile budget, timings, small-object recall, the API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import specks.pipeline
from conftest import VISDRONE, coco_annotations, jpeg_bytes
from factories import b64, huge_bilevel_png
from specks.boxes import iou_matrix
from specks.config import Limits, Settings, SlicingSettings
from specks.errors import ImageTooLargeError, TooManyTilesError
from specks.pipeline import Detector, SlicePlan
from specks.preprocess import plan_letterbox
from specks.schemas import DetectOptions
from specks.slicing import MatchMetric, MergeStrategy
from specks.types import ImageSize
from specks.web import create_app

STATIC, DYNAMIC = "yolov5n_detector", "yolov5n_dynamic_detector"
NMS, NMM = MergeStrategy.NMS, MergeStrategy.NMM
IOU, IOS = MatchMetric.IOU, MatchMetric.IOS


def with_slicing(detector: Detector, **settings: Any) -> Detector:
    """The same loaded model under other server slicing defaults."""
    return Detector(detector.model, detector.limits, SlicingSettings(**settings), use_ort_letterbox=False)


def plan_for(detector: Detector, options: DetectOptions, image_wh: tuple[int, int]) -> SlicePlan | None:
    return detector.slice_plan(options, ImageSize(*image_wh), detector.input_hw(options.imgsz))


# -- plan resolution ---------------------------------------------------------------------------------

# Each row: model, server SlicingSettings, request options, image size, expected plan fields (None: no plan).
PLAN_CASES = {
    "slice false": (STATIC, {}, {"slice": False}, (2000, 1500), None),
    "server on, request false": (STATIC, {"mode": "on"}, {"slice": False}, (2000, 1500), None),
    "auto, 800x600 on a 640 model": (STATIC, {}, {}, (800, 600), None),
    "auto, longer side just under 2 inputs": (STATIC, {}, {}, (1279, 900), None),
    "auto, longer side 2 inputs": (STATIC, {}, {}, (1280, 900), {"tile_px": 640}),
    "auto, portrait 2 inputs tall": (STATIC, {}, {}, (600, 1500), {"tile_px": 640}),
    "auto, 2000x1500: server defaults": (
        STATIC,
        {},
        {},
        (2000, 1500),
        {
            "tile_px": 640,
            "overlap_ratio": 0.2,
            "full_image_pass": True,
            "merge": NMS,
            "merge_metric": IOU,
            "merge_threshold": 0.5,
        },
    ),
    "true on a small image": (STATIC, {}, {"slice": True}, (320, 240), {"tile_px": 640}),
    "server off, request auto": (STATIC, {"mode": "off"}, {}, (2000, 1500), None),
    "server off, request true": (STATIC, {"mode": "off"}, {"slice": True}, (320, 240), {"tile_px": 640}),
    "server on, request auto, small image": (STATIC, {"mode": "on"}, {}, (320, 240), {"tile_px": 640}),
    "server defaults other than the built-in ones": (
        STATIC,
        {
            "tile_px": 800,
            "overlap_ratio": 0.1,
            "full_image_pass": False,
            "merge": "nmm",
            "merge_metric": "ios",
            "merge_threshold": 0.6,
            "tile_scale": 1.5,
        },
        {"slice": True},
        (2000, 1500),
        {
            "tile_px": 800,
            "tile_scale": 1.5,
            "overlap_ratio": 0.1,
            "full_image_pass": False,
            "merge": NMM,
            "merge_metric": IOS,
            "merge_threshold": 0.6,
        },
    ),
    "request overrides beat server defaults": (
        STATIC,
        {
            "tile_px": 800,
            "overlap_ratio": 0.1,
            "full_image_pass": True,
            "merge": "nms",
            "merge_metric": "iou",
            "merge_threshold": 0.6,
            "tile_scale": 1.5,
        },
        {
            "slice": True,
            "tile": 1024,
            "overlap": 0.4,
            "full_image": False,
            "merge": "nmm",
            "merge_metric": "ios",
            "merge_threshold": 0.3,
            "tile_scale": 2.0,
        },
        (2000, 1500),
        {
            "tile_px": 1024,
            "tile_scale": 2.0,
            "overlap_ratio": 0.4,
            "full_image_pass": False,
            "merge": NMM,
            "merge_metric": IOS,
            "merge_threshold": 0.3,
        },
    ),
    "request zero / false values beat server defaults": (
        STATIC,
        {"overlap_ratio": 0.3, "full_image_pass": True, "merge_threshold": 0.6},
        {"slice": True, "overlap": 0.0, "full_image": False, "merge_threshold": 0.0},
        (2000, 1500),
        {"overlap_ratio": 0.0, "full_image_pass": False, "merge_threshold": 0.0},
    ),
    "fixed-size model: request tile_scale shrinks the default tile": (
        STATIC,
        {},
        {"slice": True, "tile_scale": 2.0},
        (2000, 1500),
        {"tile_px": 320, "tile_scale": 2.0},
    ),
    "fixed-size model: server tile_scale (dynamic models only) keeps native tiles": (
        STATIC,
        {"tile_scale": 2.0},
        {"slice": True},
        (2000, 1500),
        {"tile_px": 640},
    ),
    "dynamic model: max_tile_input_px / tile_scale": (
        DYNAMIC,
        {},
        {"slice": True},
        (2000, 1500),
        {"tile_px": 2560, "tile_scale": 1.0},
    ),
    "dynamic model, auto on 2000x1500": (DYNAMIC, {}, {}, (2000, 1500), {"tile_px": 2560}),
    "dynamic model, auto on 800x600": (DYNAMIC, {}, {}, (800, 600), None),
    "dynamic model, auto with imgsz 1280 on 2000x1500": (DYNAMIC, {}, {"imgsz": 1280}, (2000, 1500), None),
    "dynamic model, request tile_scale": (
        DYNAMIC,
        {},
        {"slice": True, "tile_scale": 2.0},
        (2000, 1500),
        {"tile_px": 1280, "tile_scale": 2.0},
    ),
    "dynamic model, server tile_scale": (
        DYNAMIC,
        {"tile_scale": 2.0},
        {"slice": True},
        (2000, 1500),
        {"tile_px": 1280, "tile_scale": 2.0},
    ),
    "dynamic model, server max_tile_input_px": (
        DYNAMIC,
        {"max_tile_input_px": 1280},
        {"slice": True},
        (2000, 1500),
        {"tile_px": 1280},
    ),
    "dynamic model, server tile_px": (
        DYNAMIC,
        {"tile_px": 900},
        {"slice": True},
        (2000, 1500),
        {"tile_px": 900},
    ),
    "dynamic model, request tile": (
        DYNAMIC,
        {},
        {"slice": True, "tile": 700},
        (2000, 1500),
        {"tile_px": 700},
    ),
}


@pytest.mark.parametrize(
    ("model", "settings", "options", "image_wh", "expected"), list(PLAN_CASES.values()), ids=list(PLAN_CASES)
)
def test_slice_plan(
    request: pytest.FixtureRequest,
    model: str,
    settings: dict[str, Any],
    options: dict[str, Any],
    image_wh: tuple[int, int],
    expected: dict[str, Any] | None,
) -> None:
    detector = with_slicing(request.getfixturevalue(model), **settings)
    plan = plan_for(detector, DetectOptions(**options), image_wh)
    if expected is None:
        assert plan is None
    else:
        assert plan is not None
        assert {name: getattr(plan, name) for name in expected} == expected


def plan(tile_px: int, tile_scale: float) -> SlicePlan:
    return SlicePlan(tile_px, tile_scale, 0.2, True, NMS, IOU, 0.5)


# Dynamic models: each side * tile_scale, rounded up to the stride (32), capped at max_tile_input_px.
@pytest.mark.parametrize(
    ("model", "settings", "tile_wh", "tile_plan", "expected_hw"),
    [
        (DYNAMIC, {}, (2000, 1500), plan(2048, 1.25), (1888, 2528)),  # 1875 -> 1888, 2500 -> 2528
        (DYNAMIC, {}, (2048, 2048), plan(2048, 1.25), (2560, 2560)),  # exactly the cap
        (DYNAMIC, {}, (640, 640), plan(640, 1.25), (800, 800)),
        (DYNAMIC, {}, (100, 2000), plan(2048, 1.25), (2528, 128)),  # (w, h) in, (h, w) out; 125 -> 128
        (DYNAMIC, {}, (2000, 1500), plan(2000, 2.0), (2560, 2560)),  # 3000, 4000 capped
        (DYNAMIC, {}, (640, 480), plan(640, 1.0), (480, 640)),
        (DYNAMIC, {"max_tile_input_px": 1280}, (1024, 768), plan(1024, 1.25), (960, 1280)),
        (DYNAMIC, {"max_tile_input_px": 1280}, (2000, 1500), plan(2000, 1.25), (1280, 1280)),
        (STATIC, {}, (2000, 1500), plan(2048, 1.25), (640, 640)),  # fixed input whatever the tile
        (STATIC, {}, (320, 200), plan(320, 2.0), (640, 640)),
    ],
)
def test_tile_input_hw(
    request: pytest.FixtureRequest,
    model: str,
    settings: dict[str, Any],
    tile_wh: tuple[int, int],
    tile_plan: SlicePlan,
    expected_hw: tuple[int, int],
) -> None:
    detector = with_slicing(request.getfixturevalue(model), **settings)
    assert detector.tile_input_hw(tile_wh, tile_plan, (640, 640)) == expected_hw


def test_dynamic_default_plan_is_one_native_tile(yolov5n_dynamic_detector: Detector) -> None:
    detector = yolov5n_dynamic_detector
    resolved = plan_for(detector, DetectOptions(slice=True), (2000, 1500))
    assert resolved is not None and resolved.tile_px == 2560
    assert detector.check_tile_budget(ImageSize(2000, 1500), resolved) == 1
    input_hw = detector.tile_input_hw((2000, 1500), resolved, (640, 640))
    assert input_hw == (1504, 2016)  # rounded up to the stride
    letterbox_plan = plan_letterbox((2000, 1500), input_hw, stride=32, minimal_padding=True)
    assert (letterbox_plan.scale, letterbox_plan.content_wh) == (1.0, (2000, 1500))  # padded, not resampled


# -- the tile budget ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("max_tiles", "image_wh", "tile", "overlap", "expected"),
    [
        (12, (2000, 1500), 640, 0.2, 12),
        (11, (2000, 1500), 640, 0.2, TooManyTilesError),
        (4, (2000, 1500), 640, 0.2, TooManyTilesError),
        (4, (2000, 1500), 1024, 0.0, 4),  # x: 0, 976; y: 0, 476
        (5, (2000, 1500), 1024, 0.2, TooManyTilesError),  # step 819: x: 0, 819, 976; y: 0, 476
        (1, (640, 640), 640, 0.2, 1),
        (1, (641, 640), 640, 0.2, TooManyTilesError),
        (200, (8000, 8000), 640, 0.2, TooManyTilesError),  # 16 x 16 = 256
        (256, (8000, 8000), 640, 0.2, 256),
    ],
)
def test_check_tile_budget(
    yolov5n_detector: Detector,
    max_tiles: int,
    image_wh: tuple[int, int],
    tile: int,
    overlap: float,
    expected: int | type[Exception],
) -> None:
    detector = with_slicing(yolov5n_detector, max_tiles=max_tiles)
    tile_plan = SlicePlan(tile, 1.0, overlap, True, NMS, IOU, 0.5)
    if isinstance(expected, int):
        assert detector.check_tile_budget(ImageSize(*image_wh), tile_plan) == expected
    else:
        with pytest.raises(expected):
            detector.check_tile_budget(ImageSize(*image_wh), tile_plan)


def test_too_many_tiles_is_refused_before_decoding(yolov5n_detector: Detector, monkeypatch: pytest.MonkeyPatch) -> None:
    detector = Detector(yolov5n_detector.model, yolov5n_detector.limits, SlicingSettings(max_tiles=4))

    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("the image was decoded before the tile budget was checked")

    monkeypatch.setattr(specks.pipeline, "decode_image", no_decoding)
    with pytest.raises(TooManyTilesError) as caught:
        detector.predict_bytes(jpeg_bytes(2000, 1500), DetectOptions(slice=True))
    assert "12 tiles" in caught.value.message
    assert "limit is 4" in caught.value.message
    assert caught.value.code == "too_many_tiles"


def test_an_image_over_the_pixel_limit_is_refused_as_such_not_as_too_many_tiles(yolov5n_detector: Detector) -> None:
    """10000 x 6000 = 60 MP: over the 40 MP limit and, sliced, over 200 tiles; the pixel limit answers."""
    detector = Detector(yolov5n_detector.model, Limits(max_image_pixels=40_000_000), SlicingSettings(max_tiles=200))
    with pytest.raises(ImageTooLargeError) as caught:
        detector.predict_bytes(huge_bilevel_png(10_000, 6_000), DetectOptions(slice=True))
    assert caught.value.code == "image_too_large"
    assert "10000x6000" in caught.value.message


def test_too_many_tiles_is_413_over_http(yolov5n_detector: Detector, cache_dir: Path) -> None:
    detector = Detector(yolov5n_detector.model, yolov5n_detector.limits, SlicingSettings(max_tiles=4))
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
    assert prediction.timing_ms["tiles"] == expected_tiles
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
        tiles.append(prediction.timing_ms["tiles"])
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
        ("slice", None),
        ("tile", 10),
        ("tile", 99999),
        ("tile", 640.5),
        ("overlap", 0.9),
        ("overlap", -0.1),
        ("full_image", "no"),
        ("merge", "wbf"),
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
    assert payload["timing_ms"]["tiles"] == 6  # x: 0, 576, 960; y: 0, 560
    assert "merge" in payload["timing_ms"]
    assert payload["image"] == {"width": 1600, "height": 1200}


class WholeTileModel:
    """A stand-in model: for every image in the batch, one box twice the size of its input,
    so only clipping brings it back to the tile."""

    threads = 1

    def __init__(self) -> None:
        from specks.models.onnx_model import ModelInfo
        from specks.postprocess import OutputLayout

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
    from specks.imaging import DecodedImage
    from specks.pipeline import StageTimer
    from specks.postprocess import PostprocessParams
    from specks.slicing import tile_grid
    from specks.types import ImageSize

    detector = Detector(WholeTileModel(), use_ort_letterbox=False)  # type: ignore[arg-type]
    image = DecodedImage(np.zeros((128, 160, 3), np.uint8), ImageSize(160, 128), "PNG")
    tiles = tile_grid((160, 128), 64, 0.0)
    found = detector._detect_tiles(image, tiles, (64, 64), PostprocessParams(conf_threshold=0.5), StageTimer())
    assert len(found) == len(tiles) == 6  # x: 0, 64, 96 (shifted inward); y: 0, 64
    for tile, detections in zip(tiles.tolist(), found, strict=True):
        np.testing.assert_allclose(detections.xyxy[0], tile, atol=0.5)
