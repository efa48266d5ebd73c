"""Tests of the pure box maths, against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from specks.boxes import areas, batched_nms, clip_xyxy, cxcywh_to_xyxy, iou_matrix, nms


def boxes(*rows: list[float]) -> np.ndarray:
    """(N, 4) float32 boxes from plain lists; no rows gives an empty (0, 4) array."""
    return np.asarray(rows, np.float32).reshape(-1, 4)


def scores(*values: float) -> np.ndarray:
    return np.asarray(values, np.float32)


def classes(*values: int) -> np.ndarray:
    return np.asarray(values, np.int32)


UNIT = [0, 0, 10, 10]


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        pytest.param(UNIT, UNIT, 1.0, id="identical"),
        pytest.param(UNIT, [20, 20, 30, 30], 0.0, id="disjoint"),
        pytest.param(UNIT, [10, 0, 20, 10], 0.0, id="touching-edges"),
        pytest.param(UNIT, [5, 0, 15, 10], 50 / 150, id="half-shifted"),
        pytest.param(UNIT, [0, 0, 5, 5], 25 / 100, id="contained"),
        pytest.param(UNIT, [0, 0, 10, 5], 0.5, id="top-half"),
        pytest.param([2.5, 2.5, 7.5, 7.5], [5, 5, 10, 10], 6.25 / 43.75, id="fractional"),
        pytest.param([5, 5, 5, 5], UNIT, 0.0, id="zero-area-inside"),
        pytest.param([5, 5, 5, 5], [5, 5, 5, 5], 0.0, id="zero-area-both"),
        pytest.param([10, 10, 0, 0], UNIT, 0.0, id="inverted"),
    ],
)
def test_iou_matrix_of_one_pair(a: list[float], b: list[float], expected: float) -> None:
    result = iou_matrix(boxes(a), boxes(b))

    assert result.shape == (1, 1)
    assert result.dtype == np.float32
    assert result[0, 0] == pytest.approx(expected, abs=1e-6)
    # IoU is symmetric.
    assert iou_matrix(boxes(b), boxes(a))[0, 0] == pytest.approx(expected, abs=1e-6)


def test_iou_matrix_pairs_every_box_of_a_with_every_box_of_b() -> None:
    a = boxes(UNIT, [5, 0, 15, 10])
    b = boxes(UNIT, [0, 0, 5, 5], [100, 100, 110, 110])

    expected = np.array([[1.0, 0.25, 0.0], [50 / 150, 0.0, 0.0]], np.float32)
    np.testing.assert_allclose(iou_matrix(a, b), expected, atol=1e-6)


@pytest.mark.parametrize(
    ("a", "b", "expected_shape"),
    [
        pytest.param(boxes(), boxes(UNIT, UNIT, UNIT), (0, 3), id="a-empty"),
        pytest.param(boxes(UNIT, UNIT), boxes(), (2, 0), id="b-empty"),
        pytest.param(boxes(), boxes(), (0, 0), id="both-empty"),
    ],
)
def test_iou_matrix_of_empty_arrays_has_an_empty_shape(a: np.ndarray, b: np.ndarray, expected_shape: tuple) -> None:
    assert iou_matrix(a, b).shape == expected_shape


@pytest.mark.parametrize(
    ("xyxy", "expected"),
    [
        pytest.param(boxes([0, 0, 10, 5]), [50.0], id="plain"),
        pytest.param(boxes([1.5, 1.5, 2.5, 4]), [2.5], id="fractional"),
        pytest.param(boxes([2, 3, 2, 9]), [0.0], id="zero-width"),
        pytest.param(boxes([10, 0, 0, 5]), [0.0], id="inverted-x"),
        pytest.param(boxes([0, 5, 10, 0]), [0.0], id="inverted-y"),
        pytest.param(boxes([-4, -4, -2, -1], [0, 0, 1, 1]), [6.0, 1.0], id="negative-and-two-rows"),
        pytest.param(boxes(), [], id="empty"),
    ],
)
def test_areas(xyxy: np.ndarray, expected: list[float]) -> None:
    np.testing.assert_allclose(areas(xyxy), np.asarray(expected, np.float32).reshape(-1))


@pytest.mark.parametrize(
    ("cxcywh", "expected"),
    [
        pytest.param(boxes([5, 5, 10, 10]), boxes(UNIT), id="square"),
        pytest.param(boxes([10, 20, 4, 6]), boxes([8, 17, 12, 23]), id="rectangle"),
        pytest.param(boxes([0, 0, 0, 0]), boxes([0, 0, 0, 0]), id="zero-size"),
        pytest.param(boxes([1, 1, 3, 5]), boxes([-0.5, -1.5, 2.5, 3.5]), id="crosses-origin"),
        pytest.param(boxes([5, 5, 10, 10], [1, 1, 2, 2]), boxes(UNIT, [0, 0, 2, 2]), id="two-rows"),
        pytest.param(boxes(), boxes(), id="empty"),
    ],
)
def test_cxcywh_to_xyxy(cxcywh: np.ndarray, expected: np.ndarray) -> None:
    result = cxcywh_to_xyxy(cxcywh)

    assert result.shape == expected.shape
    assert result.dtype == np.float32
    np.testing.assert_allclose(result, expected)


@pytest.mark.parametrize(
    ("xyxy", "expected"),
    [
        pytest.param(boxes([10, 10, 20, 20]), boxes([10, 10, 20, 20]), id="inside-unchanged"),
        pytest.param(boxes([-10, -5, 110, 60]), boxes([0, 0, 100, 50]), id="overflows-every-side"),
        pytest.param(boxes([120, 10, 130, 20]), boxes([100, 10, 100, 20]), id="right-of-image"),
        pytest.param(boxes([10, -30, 20, -20]), boxes([10, 0, 20, 0]), id="above-image"),
        pytest.param(boxes([0, 0, 100, 50]), boxes([0, 0, 100, 50]), id="exactly-the-image"),
        pytest.param(boxes(), boxes(), id="empty"),
    ],
)
def test_clip_xyxy_to_a_100_by_50_image(xyxy: np.ndarray, expected: np.ndarray) -> None:
    np.testing.assert_array_equal(clip_xyxy(xyxy, 100, 50), expected)


def test_clip_xyxy_leaves_its_argument_alone() -> None:
    xyxy = boxes([-10, -5, 110, 60])

    clip_xyxy(xyxy, 100, 50)

    np.testing.assert_array_equal(xyxy, boxes([-10, -5, 110, 60]))


# A and B overlap with IoU 1/3; B and C overlap with IoU 1/3; A and C only touch.
CHAIN = boxes([0, 0, 10, 10], [5, 0, 15, 10], [10, 0, 20, 10])
# IoU of the first two is 90 / 110 = 0.82.
NEAR_DUPLICATES = boxes([0, 0, 10, 10], [1, 0, 11, 10])
FOUR_DISJOINT = boxes([0, 0, 1, 1], [10, 10, 11, 11], [20, 20, 21, 21], [30, 30, 31, 31])


@pytest.mark.parametrize(
    ("xyxy", "box_scores", "iou_threshold", "max_keep", "expected"),
    [
        pytest.param(boxes(), scores(), 0.5, None, [], id="empty"),
        pytest.param(boxes(UNIT), scores(0.1), 0.5, None, [0], id="single"),
        pytest.param(NEAR_DUPLICATES, scores(0.9, 0.8), 0.5, None, [0], id="duplicate-dropped"),
        pytest.param(NEAR_DUPLICATES, scores(0.8, 0.9), 0.5, None, [1], id="higher-score-wins"),
        pytest.param(NEAR_DUPLICATES, scores(0.9, 0.8), 0.9, None, [0, 1], id="below-threshold-kept"),
        pytest.param(boxes(UNIT, [0, 0, 10, 5]), scores(0.9, 0.8), 0.5, None, [0, 1], id="iou-equal-threshold-kept"),
        pytest.param(CHAIN, scores(0.9, 0.8, 0.7), 0.3, None, [0, 2], id="greedy-dropped-box-suppresses-nothing"),
        pytest.param(CHAIN, scores(0.9, 0.8, 0.7), 0.4, None, [0, 1, 2], id="chain-below-threshold"),
        pytest.param(FOUR_DISJOINT, scores(0.3, 0.9, 0.6, 0.1), 0.5, None, [1, 2, 0, 3], id="sorted-by-score"),
        pytest.param(FOUR_DISJOINT, scores(0.3, 0.9, 0.6, 0.1), 0.5, 2, [1, 2], id="max-keep"),
        pytest.param(FOUR_DISJOINT, scores(0.3, 0.9, 0.6, 0.1), 0.5, 0, [], id="max-keep-zero"),
        pytest.param(FOUR_DISJOINT, scores(0.5, 0.5, 0.5, 0.5), 0.5, None, [0, 1, 2, 3], id="ties-keep-index-order"),
        pytest.param(
            boxes([5, 5, 5, 5], [5, 5, 5, 5]),
            scores(0.9, 0.8),
            0.5,
            None,
            [0, 1],
            id="zero-area-never-overlap",
        ),
        pytest.param(
            boxes(UNIT, UNIT, [40, 40, 50, 50], [41, 40, 51, 50]),
            scores(0.6, 0.5, 0.8, 0.7),
            0.5,
            2,
            [2, 0],
            id="max-keep-counts-kept-boxes-only",
        ),
    ],
)
def test_nms(
    xyxy: np.ndarray, box_scores: np.ndarray, iou_threshold: float, max_keep: int | None, expected: list[int]
) -> None:
    keep = nms(xyxy, box_scores, iou_threshold, max_keep)

    assert keep.dtype == np.intp
    assert keep.tolist() == expected


@pytest.mark.parametrize(
    ("xyxy", "box_scores", "class_id", "max_keep", "expected"),
    [
        pytest.param(boxes(), scores(), classes(), None, [], id="empty"),
        pytest.param(boxes(UNIT, UNIT), scores(0.9, 0.8), classes(0, 0), None, [0], id="same-class-merged"),
        pytest.param(boxes(UNIT, UNIT), scores(0.8, 0.9), classes(3, 7), None, [1, 0], id="other-class-kept"),
        pytest.param(
            NEAR_DUPLICATES[[0, 1, 0]],
            scores(0.9, 0.8, 0.7),
            classes(0, 1, 0),
            None,
            [0, 1],
            id="mixed",
        ),
        pytest.param(
            boxes([-20, -20, -10, -10], [-20, -20, -10, -10], [-19, -20, -9, -10]),
            scores(0.9, 0.8, 0.7),
            classes(0, 1, 1),
            None,
            [0, 1],
            id="negative-coordinates",
        ),
        pytest.param(
            boxes(UNIT, UNIT, UNIT),
            scores(0.7, 0.9, 0.8),
            classes(0, 1, 2),
            2,
            [1, 2],
            id="max-keep",
        ),
    ],
)
def test_batched_nms_is_class_aware(
    xyxy: np.ndarray, box_scores: np.ndarray, class_id: np.ndarray, max_keep: int | None, expected: list[int]
) -> None:
    assert batched_nms(xyxy, box_scores, class_id, 0.5, max_keep).tolist() == expected
