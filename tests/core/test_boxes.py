"""Tests of the pure box maths, against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from factories import boxes
from specks.core.boxes import areas, clip_xyxy, cxcywh_to_xyxy

UNIT = [0, 0, 10, 10]


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
