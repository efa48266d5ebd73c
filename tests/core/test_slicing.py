"""Tile geometry by hand-computed offsets (merging is tested in test_overlap)."""

from __future__ import annotations

import numpy as np
import pytest

from specks.core.slicing import axis_offsets, shift_detections, tile_count, tile_grid
from specks.core.types import Detections


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
