"""Tests of the raw-output decoders on synthetic outputs with known boxes, and of layout detection."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from specks.core import postprocess as postprocess_module
from specks.core.postprocess import YOLOX_STRIDES, OutputLayout, PostprocessParams, postprocess, yolox_grid
from specks.core.types import Detections
from specks.errors import InferenceError, UnsupportedModelError
from specks.models.inspection import detect_layout

NUM_CLASSES = 3
INPUT_HW = (640, 640)  # the input size the synthetic outputs come from
Box = tuple[tuple[float, float, float, float], float, int]  # xyxy in input pixels, score, class id


def cxcywh(xyxy: Sequence[float]) -> list[float]:
    x1, y1, x2, y2 = xyxy
    return [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]


def one_hot(class_id: int, score: float, num_classes: int = NUM_CLASSES) -> list[float]:
    scores = [0.0] * num_classes
    scores[class_id] = score
    return scores


def yolov5_row(xyxy: Sequence[float], objectness: float, class_scores: Sequence[float]) -> list[float]:
    return [*cxcywh(xyxy), objectness, *class_scores]


def yolov5_raw(rows: Sequence[Sequence[float]], background: int = 20) -> np.ndarray:
    """(background + N, 5 + nc): empty anchors, then the given rows."""
    width = len(rows[0]) if rows else 5 + NUM_CLASSES
    return np.vstack([np.zeros((background, width)), np.asarray(rows).reshape(-1, width)]).astype(np.float32)


def yolox_raw(
    found: Sequence[tuple[Sequence[float], float, Sequence[float]]], input_hw: tuple[int, int] = INPUT_HW
) -> np.ndarray:
    """(N, 5 + nc) raw YOLOX grid offsets at ``input_hw`` holding (xyxy, objectness, class scores):
    box i sits in the cell under its centre on the grid of stride YOLOX_STRIDES[i % 3], written
    backwards from the decoding (dx = cx / stride - grid_x, log_w = log(w / stride))."""
    grid_xy, stride_px = yolox_grid(input_hw)
    num_classes = len(found[0][2]) if found else NUM_CLASSES
    raw = np.zeros((len(grid_xy), 5 + num_classes), np.float32)
    used: set[int] = set()
    for index, (xyxy, objectness, class_scores) in enumerate(found):
        cx, cy, w, h = cxcywh(xyxy)
        stride = YOLOX_STRIDES[index % len(YOLOX_STRIDES)]
        cell = (np.floor(cx / stride), np.floor(cy / stride))
        row = int(np.flatnonzero((stride_px[:, 0] == stride) & np.all(grid_xy == cell, axis=1))[0])
        assert row not in used, "two planted boxes in one cell"
        used.add(row)
        raw[row, :4] = [cx / stride - cell[0], cy / stride - cell[1], np.log(w / stride), np.log(h / stride)]
        raw[row, 4:] = [objectness, *class_scores]
    return raw


def raw_output(layout: OutputLayout, found: Sequence[Box], background: int = 20) -> np.ndarray:
    """A raw output of ``layout`` holding exactly the boxes ``found`` (objectness 1 for YOLOv5 / YOLOX)."""
    if layout in (OutputLayout.YOLOV5, OutputLayout.YOLOX_DECODED):
        return yolov5_raw([yolov5_row(xyxy, 1.0, one_hot(c, s)) for xyxy, s, c in found], background)
    if layout is OutputLayout.YOLOX:
        return yolox_raw([(xyxy, 1.0, one_hot(c, s)) for xyxy, s, c in found])
    if layout is OutputLayout.ULTRALYTICS:
        columns = [[*cxcywh(xyxy), *one_hot(c, s)] for xyxy, s, c in found]
        rows = np.vstack([np.zeros((background, 4 + NUM_CLASSES)), np.asarray(columns).reshape(-1, 4 + NUM_CLASSES)])
        return rows.T.astype(np.float32).copy()
    rows_e2e = [[*xyxy, s, c] for xyxy, s, c in found]
    return np.vstack([np.asarray(rows_e2e).reshape(-1, 6), np.zeros((background, 6))]).astype(np.float32)


def assert_detections(result: Detections, expected: Sequence[Box]) -> None:
    """``result`` holds exactly ``expected``, in that order."""
    assert result.xyxy.dtype == np.float32
    assert result.confidence.dtype == np.float32
    assert result.class_id.dtype == np.int32
    np.testing.assert_allclose(result.xyxy, np.asarray([b[0] for b in expected], np.float32).reshape(-1, 4), atol=1e-4)
    np.testing.assert_allclose(result.confidence, [b[1] for b in expected], atol=1e-6)
    assert result.class_id.tolist() == [b[2] for b in expected]


ALL_LAYOUTS = list(OutputLayout)
NMS_LAYOUTS = [OutputLayout.YOLOV5, OutputLayout.ULTRALYTICS, OutputLayout.YOLOX, OutputLayout.YOLOX_DECODED]

A = (10.0, 20.0, 50.0, 80.0)
A_SHIFTED = (12.0, 20.0, 52.0, 80.0)  # IoU with A = 38 * 60 / (2 * 40 * 60 - 38 * 60) = 0.90
B = (100.0, 100.0, 160.0, 130.5)
C = (300.0, 10.0, 310.0, 20.0)
D = (400.0, 400.0, 500.0, 600.0)
E = (0.0, 0.0, 4.0, 4.0)


@pytest.mark.parametrize("layout", ALL_LAYOUTS)
@pytest.mark.parametrize(
    ("found", "params", "expected"),
    [
        pytest.param([(A, 0.9, 1)], PostprocessParams(), [(A, 0.9, 1)], id="one-box"),
        pytest.param([], PostprocessParams(), [], id="nothing"),
        pytest.param(
            [(A, 0.5, 0), (B, 0.9, 2), (C, 0.7, 1)],
            PostprocessParams(),
            [(B, 0.9, 2), (C, 0.7, 1), (A, 0.5, 0)],
            id="sorted-best-first",
        ),
        pytest.param(
            [(A, 0.2, 0), (B, 0.3, 1), (C, 0.25, 2)],
            PostprocessParams(conf_threshold=0.25),
            [(B, 0.3, 1)],
            id="conf-threshold-is-strict",
        ),
        pytest.param(
            [(A, 0.02, 0), (B, 0.001, 1)],
            PostprocessParams(conf_threshold=0.01),
            [(A, 0.02, 0)],
            id="low-conf",
        ),
        pytest.param(
            [(A, 0.9, 0), (B, 0.8, 1), (C, 0.7, 2)],
            PostprocessParams(class_ids=frozenset({0, 2})),
            [(A, 0.9, 0), (C, 0.7, 2)],
            id="class-filter",
        ),
        pytest.param(
            [(A, 0.9, 0)],
            PostprocessParams(class_ids=frozenset({1, 57})),
            [],
            id="class-filter-excludes-all",
        ),
        pytest.param(
            [(A, 0.5, 0), (B, 0.9, 1), (C, 0.7, 2), (D, 0.6, 0), (E, 0.4, 1)],
            PostprocessParams(max_detections=3),
            [(B, 0.9, 1), (C, 0.7, 2), (D, 0.6, 0)],
            id="max-detections",
        ),
    ],
)
def test_postprocess_recovers_known_boxes(
    layout: OutputLayout, found: list[Box], params: PostprocessParams, expected: list[Box]
) -> None:
    result = postprocess(raw_output(layout, found), layout, params, INPUT_HW)

    assert_detections(result, expected)


@pytest.mark.parametrize("layout", NMS_LAYOUTS)
@pytest.mark.parametrize(
    ("found", "expected"),
    [
        pytest.param([(A, 0.8, 1), (A_SHIFTED, 0.9, 1)], [(A_SHIFTED, 0.9, 1)], id="same-class-merged"),
        pytest.param([(A, 0.8, 1), (A_SHIFTED, 0.9, 2)], [(A_SHIFTED, 0.9, 2), (A, 0.8, 1)], id="other-class-kept"),
        pytest.param(
            [(A, 0.9, 0), (A_SHIFTED, 0.8, 0), (A, 0.7, 2), (B, 0.6, 0)],
            [(A, 0.9, 0), (A, 0.7, 2), (B, 0.6, 0)],
            id="mixed",
        ),
    ],
)
def test_nms_merges_duplicates_of_one_class_only(layout: OutputLayout, found: list[Box], expected: list[Box]) -> None:
    assert_detections(postprocess(raw_output(layout, found), layout, PostprocessParams(), INPUT_HW), expected)


@pytest.mark.parametrize("layout", NMS_LAYOUTS)
@pytest.mark.parametrize("soft_nms", [False, True], ids=["nms", "soft-nms"])
def test_class_agnostic_nms_lets_any_class_suppress_an_overlapping_box(layout: OutputLayout, soft_nms: bool) -> None:
    raw = raw_output(layout, [(A, 0.8, 1), (A_SHIFTED, 0.9, 2), (B, 0.6, 1)])
    params = PostprocessParams(class_agnostic=True, soft_nms=soft_nms, conf_threshold=0.5)
    found = postprocess(raw, layout, params, INPUT_HW)
    # The car-and-truck pair is one object: only its best box stays, with its own class.
    assert found.class_id.tolist() == [2, 1]
    assert found.confidence[0] == pytest.approx(0.9, abs=1e-5)


@pytest.mark.parametrize(
    ("iou_threshold", "expected"),
    [
        pytest.param(0.95, [(A_SHIFTED, 0.9, 1), (A, 0.8, 1)], id="loose"),
        pytest.param(0.5, [(A_SHIFTED, 0.9, 1)], id="strict"),
    ],
)
def test_nms_follows_the_iou_threshold(iou_threshold: float, expected: list[Box]) -> None:
    raw = raw_output(OutputLayout.ULTRALYTICS, [(A, 0.8, 1), (A_SHIFTED, 0.9, 1)])

    assert_detections(
        postprocess(raw, OutputLayout.ULTRALYTICS, PostprocessParams(iou_threshold=iou_threshold), INPUT_HW), expected
    )


def test_end_to_end_output_is_not_deduplicated_again() -> None:
    raw = raw_output(OutputLayout.END_TO_END, [(A, 0.8, 1), (A_SHIFTED, 0.9, 1)])

    result = postprocess(raw, OutputLayout.END_TO_END, PostprocessParams(), INPUT_HW)

    assert_detections(result, [(A_SHIFTED, 0.9, 1), (A, 0.8, 1)])


def test_end_to_end_class_ids_are_rounded() -> None:
    raw = raw_output(OutputLayout.END_TO_END, [(A, 0.9, 2)])
    raw[0, 5] = 1.9999

    assert postprocess(raw, OutputLayout.END_TO_END, PostprocessParams(), INPUT_HW).class_id.tolist() == [2]


@pytest.mark.parametrize(
    ("objectness", "class_scores", "params", "expected_score", "expected_class"),
    [
        pytest.param(0.8, [0.1, 0.9, 0.2], PostprocessParams(), 0.72, 1, id="score-is-obj-times-class"),
        pytest.param(0.9, [0.3, 0.0, 0.0], PostprocessParams(conf_threshold=0.25), 0.27, 0, id="product-above"),
        pytest.param(0.9, [0.3, 0.0, 0.0], PostprocessParams(conf_threshold=0.3), None, None, id="product-below"),
        pytest.param(0.2, [0.0, 0.0, 1.0], PostprocessParams(), None, None, id="low-objectness"),
        pytest.param(1.0, [0.9, 0.6, 0.0], PostprocessParams(class_ids=frozenset({1})), 0.6, 1, id="best-allowed"),
        pytest.param(1.0, [0.9, 0.6, 0.0], PostprocessParams(class_ids=frozenset({2})), None, None, id="allowed-zero"),
    ],
)
@pytest.mark.parametrize("layout", [OutputLayout.YOLOV5, OutputLayout.YOLOX, OutputLayout.YOLOX_DECODED])
def test_objectness_times_class_scores(
    layout: OutputLayout,
    objectness: float,
    class_scores: list[float],
    params: PostprocessParams,
    expected_score: float | None,
    expected_class: int | None,
) -> None:
    if layout is OutputLayout.YOLOX:
        raw = yolox_raw([(B, objectness, class_scores)])
    else:
        raw = yolov5_raw([yolov5_row(B, objectness, class_scores)])

    result = postprocess(raw, layout, params, INPUT_HW)

    expected = [] if expected_score is None else [(B, expected_score, expected_class)]
    assert_detections(result, expected)


def test_ultralytics_best_class_among_allowed() -> None:
    raw = raw_output(OutputLayout.ULTRALYTICS, [(B, 0.9, 0)])
    raw[4 + 1, -1] = 0.6  # the same box also scores 0.6 for class 1

    result = postprocess(raw, OutputLayout.ULTRALYTICS, PostprocessParams(class_ids=frozenset({1})), INPUT_HW)

    assert_detections(result, [(B, 0.6, 1)])


@pytest.mark.parametrize("layout", NMS_LAYOUTS)
@pytest.mark.parametrize(
    ("cap", "expected"),
    [
        (4, [(B, 0.9, 1), (C, 0.7, 2), (D, 0.6, 0), (A, 0.5, 0)]),  # at the cap: every candidate
        (3, [(B, 0.9, 1), (C, 0.7, 2), (D, 0.6, 0)]),
        (2, [(B, 0.9, 1), (C, 0.7, 2)]),
    ],
)
def test_candidates_are_capped_to_the_best_before_nms(
    layout: OutputLayout, cap: int, expected: list[Box], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(postprocess_module, "MAX_CANDIDATES_BEFORE_NMS", cap)
    raw = raw_output(layout, [(A, 0.5, 0), (B, 0.9, 1), (C, 0.7, 2), (D, 0.6, 0)])

    assert_detections(postprocess(raw, layout, PostprocessParams(), INPUT_HW), expected)


@pytest.mark.parametrize("layout", NMS_LAYOUTS)
@pytest.mark.parametrize(
    ("cap", "expected"),
    [
        (4, [(B, 0.9, 1), (A, 0.8, 2), (A, 0.6, 0), (B, 0.3, 0)]),  # every box x class above the threshold
        (3, [(B, 0.9, 1), (A, 0.8, 2), (A, 0.6, 0)]),
        (1, [(B, 0.9, 1)]),
    ],
)
def test_multi_label_candidates_are_capped_per_box_and_class(
    layout: OutputLayout, cap: int, expected: list[Box], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(postprocess_module, "MAX_CANDIDATES_BEFORE_NMS", cap)
    raw = raw_output(layout, [(A, 0.6, 0), (B, 0.9, 1)])
    scores = raw if layout is not OutputLayout.ULTRALYTICS else raw.T  # rows: boxes, columns: fields
    first = 4 if layout is OutputLayout.ULTRALYTICS else 5
    a_row, b_row = np.flatnonzero(scores[:, first] == 0.6)[0], np.flatnonzero(scores[:, first + 1] == 0.9)[0]
    scores[a_row, first + 2] = 0.8  # box A also scores 0.8 for class 2
    scores[b_row, first] = 0.3  # box B also scores 0.3 for class 0
    params = PostprocessParams(conf_threshold=0.25, multi_label=True)

    assert_detections(postprocess(raw, layout, params, INPUT_HW), expected)


@pytest.mark.parametrize("layout", NMS_LAYOUTS)
def test_the_cap_ranks_rows_by_their_best_allowed_class(layout: OutputLayout, monkeypatch: pytest.MonkeyPatch) -> None:
    """B scores best, but for a class the request filters out: A, the best allowed, is the one kept."""
    monkeypatch.setattr(postprocess_module, "MAX_CANDIDATES_BEFORE_NMS", 1)
    raw = raw_output(layout, [(A, 0.5, 0), (B, 0.9, 1), (C, 0.4, 0)])

    result = postprocess(raw, layout, PostprocessParams(class_ids=frozenset({0})), INPUT_HW)

    assert_detections(result, [(A, 0.5, 0)])


@pytest.mark.parametrize("multi_label", [False, True])
@pytest.mark.parametrize("layout", [OutputLayout.YOLOV5, OutputLayout.YOLOX])
def test_conf_zero_hands_nms_only_the_best_candidates(
    layout: OutputLayout, multi_label: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every row of a 1280x1280 YOLOX-sized output scores above 0 for all 80 classes (2.7 M box x class
    pairs): NMS receives the MAX_CANDIDATES_BEFORE_NMS best, none of them expanded beyond it."""
    rng = np.random.default_rng(0)
    rows = len(yolox_grid((1280, 1280))[0])
    raw = rng.uniform(0.01, 1.0, (rows, 85)).astype(np.float32)
    raw[:, :2] = rng.uniform(0, 1, (rows, 2)) if layout is OutputLayout.YOLOX else rng.uniform(0, 1280, (rows, 2))
    raw[:, 2:4] = rng.uniform(-1, 1, (rows, 2)) if layout is OutputLayout.YOLOX else rng.uniform(4, 100, (rows, 2))
    seen: list[np.ndarray] = []
    real_nms = postprocess_module.batched_nms

    def spy(xyxy: np.ndarray, scores: np.ndarray, *args: object) -> np.ndarray:
        seen.append(scores)
        return real_nms(xyxy, scores, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(postprocess_module, "batched_nms", spy)
    params = PostprocessParams(conf_threshold=0.0, iou_threshold=1.0, max_detections=10_000, multi_label=multi_label)
    result = postprocess(raw, layout, params, (1280, 1280))

    cap = postprocess_module.MAX_CANDIDATES_BEFORE_NMS
    assert len(seen[0]) == len(result) == cap  # iou 1 drops nothing
    class_scores = raw[:, 5:] * raw[:, 4:5]
    every_score = np.sort(class_scores.ravel() if multi_label else class_scores.max(axis=1))[::-1]
    np.testing.assert_array_equal(np.sort(seen[0])[::-1], every_score[:cap])


def test_yolox_rows_decode_as_the_models_readme_says() -> None:
    """A row written by hand at a 384x640 input: stride-16 cell (3, 2) is row 48*80 + 2*40 + 3."""
    raw = np.zeros((48 * 80 + 24 * 40 + 12 * 20, 5 + 2), np.float32)
    raw[3923] = [0.5, 0.25, np.log(2.0), 0.0, 0.8, 0.0, 0.5]  # dx, dy, log_w, log_h, objectness, 2 classes

    result = postprocess(raw, OutputLayout.YOLOX, PostprocessParams(), (384, 640))

    # cx = (0.5 + 3) * 16 = 56, cy = (0.25 + 2) * 16 = 36, w = 2 * 16, h = 1 * 16; score 0.8 * 0.5.
    assert_detections(result, [((40.0, 28.0, 72.0, 44.0), 0.4, 1)])


@pytest.mark.parametrize("input_hw", [(416, 416), (320, 480), (1504, 2016)], ids=["416", "320x480", "2016x1504"])
@pytest.mark.parametrize("num_classes", [1, 80])
def test_yolox_boxes_on_every_stride_at_any_size(input_hw: tuple[int, int], num_classes: int) -> None:
    height, width = input_hw
    boxes = [(6.0, 10.0, 14.0, 30.0), (width - 50.0, 40.0, width - 2.0, 100.0), (100, height - 300, 300, height - 1)]
    planted = list(zip(boxes, [0.9, 0.8, 0.7], strict=True))  # on the stride 8, 16 and 32 grids
    last = num_classes - 1
    found = [(xyxy, 1.0, one_hot(last, score, num_classes)) for xyxy, score in planted]

    result = postprocess(yolox_raw(found, input_hw), OutputLayout.YOLOX, PostprocessParams(), input_hw)

    assert_detections(result, [(xyxy, score, last) for xyxy, score in planted])


def test_yolox_output_of_another_size_is_refused() -> None:
    raw = yolox_raw([(A, 1.0, one_hot(0, 0.9))], (416, 416))

    with pytest.raises(InferenceError, match="should have 8400 rows"):
        postprocess(raw, OutputLayout.YOLOX, PostprocessParams(), (640, 640))


def test_yolox_huge_sizes_stay_finite() -> None:
    raw = yolox_raw([(A, 1.0, one_hot(0, 0.9))])
    raw[:, 2:4] = 1000.0  # random weights can say anything

    result = postprocess(raw, OutputLayout.YOLOX, PostprocessParams(), INPUT_HW)

    assert len(result) == 1
    assert np.all(np.isfinite(result.xyxy))


@pytest.mark.parametrize(
    ("output_shape", "input_hw", "end2end_hint", "expected"),
    [
        pytest.param((1, 25200, 85), (640, 640), False, OutputLayout.YOLOV5, id="yolov5-640"),
        pytest.param((1, 84, 8400), (640, 640), False, OutputLayout.ULTRALYTICS, id="yolov8-640"),
        pytest.param((1, 5, 8400), (640, 640), False, OutputLayout.ULTRALYTICS, id="ultralytics-one-class"),
        pytest.param((1, 84, 3150), (320, 480), False, OutputLayout.ULTRALYTICS, id="ultralytics-320x480"),
        pytest.param((1, 300, 6), (640, 640), True, OutputLayout.END_TO_END, id="e2e-with-hint"),
        pytest.param((1, 300, 6), (640, 640), False, OutputLayout.END_TO_END, id="e2e-without-hint"),
        pytest.param((1, 2535, 85), (416, 416), False, OutputLayout.YOLOV5, id="yolov3-tiny-416"),
        pytest.param((1, 10647, 85), (416, 416), False, OutputLayout.YOLOV5, id="yolov3-416"),
        pytest.param((1, 9450, 85), (320, 480), False, OutputLayout.YOLOV5, id="yolov5-320x480"),
        pytest.param((1, 25200, 6), (640, 640), False, OutputLayout.YOLOV5, id="yolov5-one-class"),
        pytest.param((1, 25200, 6), (640, 640), True, OutputLayout.END_TO_END, id="hint-wins"),
        pytest.param((1, 3549, 85), (416, 416), False, OutputLayout.YOLOX, id="yolox-416"),
        pytest.param((1, 8400, 85), (640, 640), False, OutputLayout.YOLOX, id="yolox-640"),
        pytest.param((1, 4410, 85), (480, 448), False, OutputLayout.YOLOX, id="yolox-480x448"),
        pytest.param((1, 3150, 6), (320, 480), False, OutputLayout.YOLOX, id="yolox-one-class"),
        pytest.param((1, 3150, 6), (320, 480), True, OutputLayout.END_TO_END, id="hint-wins-over-yolox"),
        pytest.param((1, 1000, 20), (640, 640), False, OutputLayout.YOLOV5, id="unknown-anchor-count"),
    ],
)
def test_detect_layout(
    output_shape: tuple[int, ...], input_hw: tuple[int, int], end2end_hint: bool, expected: OutputLayout
) -> None:
    assert detect_layout(output_shape, input_hw, end2end_hint) is expected


@pytest.mark.parametrize(
    "output_shape",
    [
        pytest.param((25200, 85), id="rank-2"),
        pytest.param((1, 1, 25200, 85), id="rank-4"),
        pytest.param((1, 100, 5), id="too-few-columns"),
    ],
)
def test_detect_layout_rejects(output_shape: tuple[int, ...]) -> None:
    with pytest.raises(UnsupportedModelError, match="output"):
        detect_layout(output_shape, (640, 640), False)


def test_above_class_conf_keeps_each_detection_above_its_own_class_threshold() -> None:
    from specks.core.postprocess import above_class_conf

    found = Detections.from_arrays(
        [[0, 0, 1, 1]] * 5, [0.3, 0.7, 0.3, 0.7, 0.9], [0, 0, 1, 1, 7]
    )  # class 7: beyond the thresholds given, never kept
    kept = above_class_conf(found, (0.5, 0.2))
    assert kept.confidence.tolist() == pytest.approx([0.7, 0.3, 0.7])
    assert kept.class_id.tolist() == [0, 1, 1]
