"""Tile geometry by hand-computed offsets, and merging of hand-made tile detections."""

from __future__ import annotations

import numpy as np
import pytest

from specks.slicing import (
    MatchMetric,
    MergeStrategy,
    axis_offsets,
    merge_detections,
    shift_detections,
    tile_count,
    tile_grid,
)
from specks.types import Detections

NMS, NMM = MergeStrategy.NMS, MergeStrategy.NMM
IOU, IOS = MatchMetric.IOU, MatchMetric.IOS


def detections(rows: list[tuple[list[float], float, int]]) -> Detections:
    """Detections from (box, confidence, class id) rows."""
    if not rows:
        return Detections.empty()
    boxes, scores, classes = zip(*rows, strict=True)
    return Detections.from_arrays(boxes, scores, classes)


# -- geometry --------------------------------------------------------------------------------------


# step = round(tile * (1 - overlap)); the last tile is shifted inward to end at the border.
@pytest.mark.parametrize(
    ("length", "tile", "overlap", "expected"),
    [
        (2000, 640, 0.2, [0, 512, 1024, 1360]),  # step 512, last 2000 - 640
        (1500, 640, 0.2, [0, 512, 860]),
        (1600, 640, 0.1, [0, 576, 960]),  # step 576
        (1200, 640, 0.1, [0, 560]),
        (640, 640, 0.2, [0]),  # not longer than a tile: one tile
        (641, 640, 0.2, [0, 1]),  # one pixel longer: a second tile, shifted back to end at 641
        (100, 640, 0.2, [0]),  # shorter than a tile
        (1280, 640, 0.0, [0, 640]),  # exact multiple, no overlap: no shifted extra tile
        (1920, 640, 0.0, [0, 640, 1280]),
        (1281, 640, 0.0, [0, 640, 641]),
        (250, 100, 0.25, [0, 75, 150]),  # step 75 lands exactly on the border
        (2000, 1000, 0.3, [0, 700, 1000]),  # step 700
        (1000, 512, 0.5, [0, 256, 488]),  # step 256
        (100, 64, 0.75, [0, 16, 32, 36]),  # step 16
        (8000, 640, 0.2, [*range(0, 7169, 512), 7360]),
    ],
)
def test_axis_offsets(length: int, tile: int, overlap: float, expected: list[int]) -> None:
    assert axis_offsets(length, tile, overlap) == expected


@pytest.mark.parametrize(
    ("image_wh", "tile", "overlap", "expected"),
    [
        ((640, 480), 640, 0.2, [[0, 0, 640, 480]]),  # both axes fit: one tile, as tall as the image
        ((100, 80), 640, 0.2, [[0, 0, 100, 80]]),
        (
            (1500, 700),
            640,
            0.2,  # x: 0, 512, 860; y: 0, 60 -- row by row
            [
                [0, 0, 640, 640],
                [512, 0, 1152, 640],
                [860, 0, 1500, 640],
                [0, 60, 640, 700],
                [512, 60, 1152, 700],
                [860, 60, 1500, 700],
            ],
        ),
        (
            (100, 2000),
            640,
            0.2,  # narrower than a tile: tiles as wide as the image
            [[0, 0, 100, 640], [0, 512, 100, 1152], [0, 1024, 100, 1664], [0, 1360, 100, 2000]],
        ),
        ((1280, 640), 640, 0.0, [[0, 0, 640, 640], [640, 0, 1280, 640]]),
    ],
)
def test_tile_grid(image_wh: tuple[int, int], tile: int, overlap: float, expected: list[list[int]]) -> None:
    grid = tile_grid(image_wh, tile, overlap)
    assert grid.dtype == np.int32
    assert grid.tolist() == expected


@pytest.mark.parametrize(
    ("image_wh", "tile", "overlap", "expected"),
    [
        ((2000, 1500), 640, 0.2, 12),  # 4 x 3
        ((1600, 1200), 640, 0.1, 6),  # 3 x 2
        ((800, 600), 640, 0.2, 2),  # 2 x 1
        ((640, 640), 640, 0.2, 1),
        ((100, 80), 640, 0.2, 1),
        ((2000, 1500), 2048, 0.2, 1),
        ((1281, 1281), 640, 0.0, 9),  # 3 x 3
        ((8000, 100), 640, 0.2, 16),
    ],
)
def test_tile_count(image_wh: tuple[int, int], tile: int, overlap: float, expected: int) -> None:
    assert tile_count(image_wh, tile, overlap) == expected
    assert len(tile_grid(image_wh, tile, overlap)) == expected


@pytest.mark.parametrize(
    ("image_wh", "tile", "overlap"),
    [
        ((2000, 1500), 640, 0.2),
        ((1500, 700), 640, 0.2),
        ((641, 1283), 640, 0.0),
        ((100, 2000), 640, 0.5),
        ((333, 257), 64, 0.75),
        ((1000, 999), 300, 0.33),
        ((50, 60), 640, 0.2),
    ],
)
def test_tiles_keep_their_size_stay_inside_and_cover_every_pixel(
    image_wh: tuple[int, int], tile: int, overlap: float
) -> None:
    width, height = image_wh
    grid = tile_grid(image_wh, tile, overlap)
    assert len(grid) == tile_count(image_wh, tile, overlap)
    assert np.all(grid[:, 2] - grid[:, 0] == min(tile, width))
    assert np.all(grid[:, 3] - grid[:, 1] == min(tile, height))
    assert np.all(grid[:, :2] >= 0) and np.all(grid[:, 2] <= width) and np.all(grid[:, 3] <= height)
    covered = np.zeros((height, width), bool)
    for x1, y1, x2, y2 in grid.tolist():
        covered[y1:y2, x1:x2] = True
    assert covered.all()
    assert len({tuple(t) for t in grid.tolist()}) == len(grid)  # no tile twice


# -- shifting ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "expected"),
    [
        ((0, 0), [[10, 20, 30, 40], [0, 0, 640, 640]]),
        ((512, 0), [[522, 20, 542, 40], [512, 0, 1152, 640]]),
        ((860, 1024), [[870, 1044, 890, 1064], [860, 1024, 1500, 1664]]),
    ],
)
def test_shift_detections_moves_boxes_by_the_tile_offset(offset: tuple[int, int], expected: list[list[float]]) -> None:
    found = detections([([10, 20, 30, 40], 0.9, 0), ([0, 0, 640, 640], 0.4, 7)])
    shifted = shift_detections(found, offset)
    np.testing.assert_array_equal(shifted.xyxy, np.array(expected, np.float32))
    np.testing.assert_array_equal(shifted.confidence, found.confidence)
    np.testing.assert_array_equal(shifted.class_id, found.class_id)


# -- merging ----------------------------------------------------------------------------------------

LEFT_HALF, RIGHT_HALF, WHOLE = [100, 100, 140, 160], [140, 100, 180, 160], [100, 100, 180, 160]

# Each row: input (box, confidence, class), strategy, metric, threshold, expected output rows, best first.
MERGE_CASES = {
    "cut at a tile edge + full-image box -> one union box (nmm, ios)": (
        [(LEFT_HALF, 0.7, 2), (RIGHT_HALF, 0.6, 2), (WHOLE, 0.8, 2)],
        NMM,
        IOS,
        0.5,
        [(WHOLE, 0.8, 2)],
    ),
    "halves of overlapping tiles, a half scoring best -> union box, best score (nmm, ios)": (
        [([500, 100, 640, 160], 0.9, 0), ([512, 100, 700, 160], 0.8, 0), ([505, 100, 690, 160], 0.6, 0)],
        NMM,
        IOS,
        0.5,
        [([500, 100, 700, 160], 0.9, 0)],
    ),
    "nmm grows the best box to the smallest box enclosing its group": (
        [([10, 10, 50, 50], 0.9, 1), ([5, 12, 48, 55], 0.5, 1)],
        NMM,
        IOU,
        0.5,
        [([5, 10, 50, 55], 0.9, 1)],
    ),
    "neighbours that touch and barely overlap stay two (nms, iou 0.5)": (
        [([0, 0, 40, 60], 0.9, 0), ([38, 0, 78, 60], 0.8, 0)],
        NMS,
        IOU,
        0.5,
        [([0, 0, 40, 60], 0.9, 0), ([38, 0, 78, 60], 0.8, 0)],
    ),
    "neighbours that touch stay two under nmm too": (
        [([0, 0, 40, 60], 0.9, 0), ([38, 0, 78, 60], 0.8, 0)],
        NMM,
        IOU,
        0.5,
        [([0, 0, 40, 60], 0.9, 0), ([38, 0, 78, 60], 0.8, 0)],
    ),
    "nms keeps the highest-scoring box unchanged": (
        [([12, 12, 52, 52], 0.7, 0), ([10, 10, 50, 50], 0.9, 0), ([11, 9, 51, 49], 0.8, 0)],
        NMS,
        IOU,
        0.5,
        [([10, 10, 50, 50], 0.9, 0)],
    ),
    "different classes never merge, even at threshold 0 (nmm)": (
        [(WHOLE, 0.9, 0), (WHOLE, 0.8, 1), (LEFT_HALF, 0.7, 2)],
        NMM,
        IOS,
        0.0,
        [(WHOLE, 0.9, 0), (WHOLE, 0.8, 1), (LEFT_HALF, 0.7, 2)],
    ),
    "different classes never merge (nms)": (
        [(WHOLE, 0.9, 3), (WHOLE, 0.8, 5)],
        NMS,
        IOU,
        0.0,
        [(WHOLE, 0.9, 3), (WHOLE, 0.8, 5)],
    ),
    "output sorted by confidence, separate boxes all kept": (
        [([0, 0, 10, 10], 0.3, 0), ([100, 0, 110, 10], 0.9, 0), ([200, 0, 210, 10], 0.6, 1)],
        NMS,
        IOU,
        0.5,
        [([100, 0, 110, 10], 0.9, 0), ([200, 0, 210, 10], 0.6, 1), ([0, 0, 10, 10], 0.3, 0)],
    ),
    "empty input": ([], NMM, IOS, 0.5, []),
}


@pytest.mark.parametrize(
    ("rows", "strategy", "metric", "threshold", "expected"), list(MERGE_CASES.values()), ids=list(MERGE_CASES)
)
def test_merge_detections(
    rows: list[tuple[list[float], float, int]],
    strategy: MergeStrategy,
    metric: MatchMetric,
    threshold: float,
    expected: list[tuple[list[float], float, int]],
) -> None:
    merged = merge_detections(detections(rows), strategy, metric, threshold)
    want = detections(expected)
    np.testing.assert_array_equal(merged.xyxy, want.xyxy)
    np.testing.assert_array_equal(merged.confidence, want.confidence)
    np.testing.assert_array_equal(merged.class_id, want.class_id)


# [0,0,20,10] vs [0,0,10,10]: IoU = 100/200 = 0.5, IoS = 100/100 = 1.
# [0,0,10,10] vs [5,0,25,10]: IoU = 50/250 = 0.2, IoS = 50/100 = 0.5.
WIDE_AND_INSIDE = [([0, 0, 20, 10], 0.9, 0), ([0, 0, 10, 10], 0.8, 0)]
HALF_SHIFTED = [([0, 0, 10, 10], 0.9, 0), ([5, 0, 25, 10], 0.8, 0)]


@pytest.mark.parametrize(
    ("rows", "metric", "threshold", "expected_count"),
    [
        (WIDE_AND_INSIDE, IOU, 0.5, 2),  # overlap exactly at the threshold: not merged
        (WIDE_AND_INSIDE, IOU, 0.49, 1),
        (WIDE_AND_INSIDE, IOS, 0.99, 1),
        (WIDE_AND_INSIDE, IOS, 1.0, 2),
        (HALF_SHIFTED, IOS, 0.5, 2),
        (HALF_SHIFTED, IOS, 0.49, 1),
        (HALF_SHIFTED, IOU, 0.2, 2),
        (HALF_SHIFTED, IOU, 0.19, 1),
        (HALF_SHIFTED, IOU, 0.49, 2),  # the metric matters: IoU 0.2 vs IoS 0.5
    ],
)
@pytest.mark.parametrize("strategy", [NMS, NMM])
def test_merge_happens_only_above_the_threshold(
    rows: list[tuple[list[float], float, int]],
    metric: MatchMetric,
    threshold: float,
    expected_count: int,
    strategy: MergeStrategy,
) -> None:
    merged = merge_detections(detections(rows), strategy, metric, threshold)
    assert len(merged) == expected_count
    assert merged.confidence[0] == np.float32(0.9)


# A piece of a cut object that misses the best piece but lies inside the grown box is absorbed.
CUT_LEFT, CUT_RIGHT, CUT_WHOLE = [100, 100, 140, 160], [140, 100, 180, 160], [100, 100, 180, 160]
# A car 700 px wide across tiles [0, 640] and [512, 1152]: pieces overlap by IoS 128/340 = 0.38.
BIG_LEFT, BIG_RIGHT, BIG_WHOLE = [300, 0, 640, 100], [512, 0, 1000, 100], [300, 0, 1000, 100]


@pytest.mark.parametrize(
    ("boxes", "scores", "expected_box"),
    [
        ([CUT_LEFT, CUT_RIGHT, CUT_WHOLE], [0.8, 0.7, 0.9], CUT_WHOLE),  # the full-image box scores best
        ([CUT_LEFT, CUT_RIGHT, CUT_WHOLE], [0.9, 0.8, 0.6], CUT_WHOLE),  # the right piece lies inside the grown box
        ([BIG_LEFT, BIG_RIGHT, BIG_WHOLE], [0.9, 0.8, 0.6], BIG_WHOLE),  # likewise, for a 700 px object
    ],
)
def test_nmm_ios_merges_every_piece_of_a_cut_object(boxes, scores, expected_box) -> None:
    found = Detections.from_arrays(boxes, scores, [2] * len(boxes))
    merged = merge_detections(found, MergeStrategy.NMM, MatchMetric.IOS, 0.5)
    np.testing.assert_array_equal(merged.xyxy, np.array([expected_box], np.float32))
    assert merged.confidence.tolist() == [pytest.approx(max(scores))]


# Two 4 px boxes 0.3 px apart near (8000, 8000): IoU = 14.8 / 17.2 = 0.8605.
NEAR_8000 = [[7996.0, 7996.0, 8000.0, 8000.0], [7996.3, 7996.0, 8000.3, 8000.0]]


@pytest.mark.parametrize(("threshold", "expected_count"), [(0.855, 1), (0.865, 2)])
@pytest.mark.parametrize("class_id", [0, 79])
def test_merge_decides_the_same_for_every_class_far_from_the_origin(
    class_id: int, threshold: float, expected_count: int
) -> None:
    found = Detections.from_arrays(NEAR_8000, [0.9, 0.8], [class_id, class_id])
    merged = merge_detections(found, MergeStrategy.NMS, MatchMetric.IOU, threshold)
    assert len(merged) == expected_count
