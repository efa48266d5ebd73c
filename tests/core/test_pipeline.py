"""The pipeline on real photos: the embedded default (YOLOX-Nano) finds people and cars where the
ground truth says, in COCO photos and in drone photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import COCO_TINY, VISDRONE, coco_annotations, jpeg_bytes, require
from factories import encode, exif_rotated_jpeg, iou_matrix
from specks.core import postprocess as postprocess_module
from specks.core.imaging import decode_image
from specks.core.options import DetectOptions
from specks.core.pipeline import Detector
from specks.core.planning import resolve_input_hw
from specks.core.postprocess import PostprocessParams, postprocess
from specks.errors import InvalidFieldError

COCO_TO_MODEL = {1: 0, 3: 2}  # person, car


def ground_truth(image_id: int, category_id: int, root: Path = COCO_TINY) -> np.ndarray:
    annotations = coco_annotations(root)["annotations"]
    boxes = [
        a["bbox"]
        for a in annotations
        if a["image_id"] == image_id and a["category_id"] == category_id and not a["iscrowd"]
    ]
    return np.array([[x, y, x + w, y + h] for x, y, w, h in boxes], np.float32).reshape(-1, 4)


@pytest.mark.slow
@pytest.mark.parametrize("category_id", [1, 3], ids=["person", "car"])
def test_default_model_finds_people_and_cars(default_detector: Detector, category_id: int) -> None:
    """Over the photos holding big enough instances, most are found with IoU >= 0.5."""
    dataset = coco_annotations(COCO_TINY)
    found_total, truth_total = 0, 0
    for image in dataset["images"]:
        truth = ground_truth(image["id"], category_id)
        truth = truth[(truth[:, 2] - truth[:, 0]) * (truth[:, 3] - truth[:, 1]) >= 64 * 64]
        if not len(truth):
            continue
        data = (COCO_TINY / "images" / image["file_name"]).read_bytes()
        found = default_detector.predict_bytes(data, DetectOptions(conf=0.2)).detections
        found = found[found.class_id == COCO_TO_MODEL[category_id]]
        truth_total += len(truth)
        if len(found):
            found_total += int((iou_matrix(truth, found.xyxy).max(axis=1) >= 0.5).sum())
    assert truth_total >= 8
    assert found_total / truth_total >= 0.6


def hits(truth_xyxy: np.ndarray, found_xyxy: np.ndarray) -> int:
    """How many of the first boxes have a second box with IoU >= 0.5."""
    if not len(truth_xyxy) or not len(found_xyxy):
        return 0
    return int((iou_matrix(truth_xyxy, found_xyxy).max(axis=1) >= 0.5).sum())


@pytest.mark.slow
@pytest.mark.parametrize("file_name", ["9999999_00027_d_0000002.jpg", "9999999_00037_d_0000007.jpg"])
def test_default_model_finds_the_cars_of_drone_photos(default_detector: Detector, file_name: str) -> None:
    """2000x1500 photos of streets and parking lots, 40% of the cars under 32x32 px: the default
    small-object mode (the whole photo at native pixels, which the size-agnostic YOLOX graph
    allows) finds most cars, and the small ones that one pass at the nominal 640 misses."""
    image = next(i for i in coco_annotations(VISDRONE)["images"] if i["file_name"] == file_name)
    truth = ground_truth(image["id"], 3, VISDRONE)
    small = truth[(truth[:, 2] - truth[:, 0]) * (truth[:, 3] - truth[:, 1]) < 32 * 32]
    data = (VISDRONE / "images" / file_name).read_bytes()

    found = default_detector.predict_bytes(data, DetectOptions(conf=0.2)).detections
    cars = found[found.class_id == COCO_TO_MODEL[3]]
    shrunk = default_detector.predict_bytes(data, DetectOptions(conf=0.2, slice=False)).detections
    shrunk_cars = shrunk[shrunk.class_id == COCO_TO_MODEL[3]]

    assert len(truth) >= 50 and len(small) >= 20
    assert hits(truth, cars.xyxy) >= 0.5 * len(truth)  # recall
    assert hits(cars.xyxy, truth) >= 0.6 * len(cars)  # precision
    assert hits(small, cars.xyxy) >= 0.35 * len(small)
    assert hits(small, shrunk_cars.xyxy) <= hits(small, cars.xyxy) / 3


def test_boxes_are_in_original_pixels_whatever_the_decode_scale(yolov5n_detector: Detector) -> None:
    """A photo decoded at reduced JPEG scale gives the same boxes as a full-size PNG of it."""
    image = next(i for i in coco_annotations(COCO_TINY)["images"] if i["file_name"] == "000000085329.jpg")
    from PIL import Image

    photo = Image.open(COCO_TINY / "images" / image["file_name"]).convert("RGB")
    big = photo.resize((photo.width * 3, photo.height * 3))
    as_jpeg = yolov5n_detector.predict_bytes(encode(big, "JPEG", quality=95), DetectOptions()).detections
    as_png = yolov5n_detector.predict_bytes(encode(big, "PNG"), DetectOptions()).detections
    assert len(as_png) > 0
    best = iou_matrix(as_png.xyxy, as_jpeg.xyxy).max(axis=1)
    assert np.median(best) > 0.9
    assert as_png.xyxy[:, 2].max() > photo.width  # coordinates are in the 3x image's frame


def test_detections_are_clipped_and_sorted(yolov5n_detector: Detector) -> None:
    prediction = yolov5n_detector.predict_bytes(jpeg_bytes(500, 300), DetectOptions(conf=0.001))
    found = prediction.detections
    assert prediction.image_size.width == 500
    assert np.all(found.xyxy >= 0)
    assert np.all(found.xyxy[:, [0, 2]] <= 500) and np.all(found.xyxy[:, [1, 3]] <= 300)
    assert np.all(np.diff(found.confidence) <= 0)


def test_exif_orientation_maps_boxes_to_the_displayed_frame(yolov5n_detector: Detector) -> None:
    prediction = yolov5n_detector.predict_bytes(exif_rotated_jpeg((640, 200), 6), DetectOptions())
    assert (prediction.image_size.width, prediction.image_size.height) == (200, 640)


def test_imgsz_only_on_dynamic_models(yolov5n_detector: Detector, yolov5n_dynamic_detector: Detector) -> None:
    with pytest.raises(InvalidFieldError):
        yolov5n_detector.predict_bytes(jpeg_bytes(800, 600), DetectOptions(imgsz=1280))
    assert resolve_input_hw(yolov5n_detector.model.info, 640) == (640, 640)
    assert resolve_input_hw(yolov5n_dynamic_detector.model.info, 1000) == (1024, 1024)  # rounded up to the stride
    prediction = yolov5n_dynamic_detector.predict_bytes(jpeg_bytes(800, 600), DetectOptions(imgsz=320))
    assert prediction.image_size.width == 800


def test_multi_label_lets_a_box_carry_several_classes(yolov5n_detector: Detector) -> None:
    data = sorted((VISDRONE / "images").glob("*.jpg"))[0].read_bytes()
    single = yolov5n_detector.predict_bytes(data, DetectOptions(conf=0.01, multi_label=False, slice=False)).detections
    multi = yolov5n_detector.predict_bytes(data, DetectOptions(conf=0.01, multi_label=True, slice=False)).detections
    assert len(multi) > len(single)
    boxes = {tuple(b) for b in multi.xyxy.round(1).tolist()}
    assert len(boxes) < len(multi)  # some box appears with more than one label


@pytest.mark.parametrize(
    ("size_wh", "content_wh", "expected"),
    [
        ((2000, 1500), (640, 480), (1000, 750)),  # 1/2: 1/4 would be 500 px, too small
        ((6000, 4000), (640, 427), (750, 500)),  # 1/8
        ((640, 480), (640, 480), (640, 480)),  # no reduction possible
        ((4000, 3000), (416, 312), (500, 375)),  # 1/8 is the smallest libjpeg scale
        ((1999, 1499), (640, 480), (1000, 750)),  # rounds up: never below the content
    ],
)
def test_power_of_two_cover(size_wh, content_wh, expected) -> None:  # type: ignore[no-untyped-def]
    from specks.core.pipeline import power_of_two_cover

    assert power_of_two_cover(size_wh, content_wh) == expected


PERSON_PHOTO = "000000085329.jpg"  # two people (tests/web/test_api.py uses it too)


def test_mirror_boxes_undoes_mirroring() -> None:
    from specks.core.imaging import DecodedImage
    from specks.core.pipeline import mirror_boxes, mirrored
    from specks.core.types import Detections, ImageSize

    rgb = np.zeros((4, 10, 3), np.uint8)
    rgb[:, 1] = 255  # a bright column at x = 1
    image = DecodedImage(rgb, ImageSize(10, 4), "PNG")
    assert mirrored(image).rgb[0, 8, 0] == 255  # ... lands at x = 8
    found = Detections.from_arrays([[1, 0, 3, 4]], [0.5], [0])
    assert mirror_boxes(found, 10).xyxy.tolist() == [[7, 0, 9, 4]]
    assert mirror_boxes(mirror_boxes(found, 10), 10).xyxy.tolist() == found.xyxy.tolist()


@pytest.mark.parametrize("options", [{"flip": True}, {"scales": [1.0, 1.5]}, {"flip": True, "merge": "wbf"}])
def test_fused_passes_still_find_the_people_of_a_real_photo(yolov5n_dynamic_detector: Detector, options) -> None:  # type: ignore[no-untyped-def]
    photo = require(COCO_TINY / "images" / PERSON_PHOTO)
    annotations = coco_annotations(COCO_TINY)["annotations"]
    truth = [a["bbox"] for a in annotations if a["category_id"] == 1 and a["image_id"] == int(photo.stem)]
    assert truth
    single = yolov5n_dynamic_detector.predict_bytes(photo.read_bytes(), DetectOptions(conf=0.3))
    fused = yolov5n_dynamic_detector.predict_bytes(photo.read_bytes(), DetectOptions(conf=0.3, **options))
    people = lambda found: found.xyxy[found.class_id == 0]  # noqa: E731
    truth_xyxy = np.array([[x, y, x + w, y + h] for x, y, w, h in truth], np.float32)
    for found in (single, fused):
        best_iou = iou_matrix(truth_xyxy, people(found.detections)).max(axis=1)
        assert np.mean(best_iou > 0.5) >= 0.5  # most people found, boxes in the right frame
    assert "merge" in fused.timing_ms  # the passes were fused


# -- bounded work, the same answers ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_raw_outputs(default_detector: Detector) -> dict[str, tuple[np.ndarray, tuple[int, int]]]:
    """Raw YOLOX-Nano outputs, and their input sizes, of four COCO photos (640) and one drone photo
    (the default small-object plan of a 2000x1500 photo: one 2016x1504 input)."""
    photos = {path.name: (path, (640, 640)) for path in sorted((require(COCO_TINY) / "images").iterdir())[:4]}
    drone = sorted((require(VISDRONE) / "images").iterdir())[0]
    photos["drone"] = (drone, (1504, 2016))
    outputs = {}
    for name, (path, input_hw) in photos.items():
        image = decode_image(path.read_bytes(), max_image_pixels=default_detector.limits.max_image_pixels)
        tensor, plan = default_detector.full_image_input(image, input_hw)
        outputs[name] = (default_detector.model.run(tensor)[0], plan.input_hw)
    return outputs


@pytest.mark.parametrize(
    ("conf", "iou", "max_det", "multi_label"),
    [(0.25, 0.45, 300, False), (0.001, 0.45, 300, False), (0.001, 0.6, 500, True), (0.01, 0.6, 500, True)],
)
def test_the_candidate_cap_changes_no_answer_at_usual_confidences(
    default_detector: Detector,
    real_raw_outputs: dict[str, tuple[np.ndarray, tuple[int, int]]],
    monkeypatch: pytest.MonkeyPatch,
    conf: float,
    iou: float,
    max_det: int,
    multi_label: bool,
) -> None:
    """The same detections with MAX_CANDIDATES_BEFORE_NMS as without any cap, though the drone photo at
    conf 0.001, multi-label, has ~17,000 candidates."""
    layout = default_detector.model.info.layout
    params = PostprocessParams(conf, iou, max_det, multi_label=multi_label)
    for name, (raw, input_hw) in real_raw_outputs.items():
        capped = postprocess(raw, layout, params, input_hw)
        with monkeypatch.context() as uncapped_run:
            uncapped_run.setattr(postprocess_module, "MAX_CANDIDATES_BEFORE_NMS", 10**9)
            uncapped = postprocess(raw, layout, params, input_hw)
            candidates = len(postprocess_module.decode_yolox(raw, params, input_hw))
        if name == "drone" and conf == 0.001:
            assert candidates > postprocess_module.MAX_CANDIDATES_BEFORE_NMS
        np.testing.assert_array_equal(capped.xyxy, uncapped.xyxy, err_msg=name)
        np.testing.assert_array_equal(capped.confidence, uncapped.confidence, err_msg=name)
        np.testing.assert_array_equal(capped.class_id, uncapped.class_id, err_msg=name)
