"""Sliced inference for small objects: tile geometry (pure) and merging tile detections.

A large photo is cut into overlapping tiles that each go through the model at its input
resolution, so small objects keep their pixels; the tile detections (plus, optionally, one
full-image pass) are shifted back to image pixels and merged class by class.
"""

from __future__ import annotations

import enum
import math

import numpy as np
import numpy.typing as npt

from .boxes import FloatArray, areas, intersections
from .types import Detections


class MergeStrategy(str, enum.Enum):
    NMS = "nms"  # keep the best box of each overlapping group
    NMM = "nmm"  # greedy non-maximum merging: the best box grows to cover its group


class MatchMetric(str, enum.Enum):
    IOU = "iou"  # intersection over union
    IOS = "ios"  # intersection over the smaller box: a half box cut at a tile edge still matches


def axis_offsets(length_px: int, tile_px: int, overlap_ratio: float) -> list[int]:
    """Start offsets of tiles along one axis.

    Tiles step by ``tile_px * (1 - overlap_ratio)``; the last tile is shifted inward to end
    exactly at the border so every tile keeps its full size. One tile at 0 when the axis
    is not longer than a tile.
    """
    if length_px <= tile_px:
        return [0]
    step = max(1, int(round(tile_px * (1 - overlap_ratio))))
    count = math.ceil((length_px - tile_px) / step) + 1
    offsets = [min(i * step, length_px - tile_px) for i in range(count)]
    return sorted(set(offsets))


def tile_grid(image_wh: tuple[int, int], tile_px: int, overlap_ratio: float) -> npt.NDArray[np.int32]:
    """(N, 4) int32 tiles x1, y1, x2, y2 in image pixels, row by row.

    Tiles are ``tile_px`` square, or as long as the image along an axis shorter than a tile.
    """
    width, height = image_wh
    tile_w, tile_h = min(tile_px, width), min(tile_px, height)
    xs = axis_offsets(width, tile_px, overlap_ratio)
    ys = axis_offsets(height, tile_px, overlap_ratio)
    return np.array([[x, y, x + tile_w, y + tile_h] for y in ys for x in xs], np.int32).reshape(-1, 4)


def tile_count(image_wh: tuple[int, int], tile_px: int, overlap_ratio: float) -> int:
    """How many tiles ``tile_grid`` makes, without making them."""
    width, height = image_wh
    return len(axis_offsets(width, tile_px, overlap_ratio)) * len(axis_offsets(height, tile_px, overlap_ratio))


def shift_detections(found: Detections, offset_xy: tuple[int, int]) -> Detections:
    """Move Detections from a tile's frame to the image frame (tile origin at ``offset_xy``)."""
    dx, dy = offset_xy
    return Detections(found.xyxy + np.array([dx, dy, dx, dy], np.float32), found.confidence, found.class_id)


def _overlaps(
    box_xyxy: FloatArray, others_xyxy: FloatArray, box_area: float, other_areas: FloatArray, metric: MatchMetric
) -> FloatArray:
    inter = intersections(box_xyxy, others_xyxy)
    if metric is MatchMetric.IOS:
        return (inter / np.maximum(np.minimum(box_area, other_areas), 1e-9)).astype(np.float32)
    return (inter / np.maximum(box_area + other_areas - inter, 1e-9)).astype(np.float32)


def merge_detections(found: Detections, strategy: MergeStrategy, metric: MatchMetric, threshold: float) -> Detections:
    """Merge duplicates of one object (same class, overlap above ``threshold``), best first.

    NMS keeps the highest-scoring box of each group. NMM (greedy non-maximum merging)
    replaces it with the smallest box enclosing the group, keeping the highest score, so
    two halves of an object cut by a tile edge become one whole box. Classes are merged
    one at a time (as ``boxes.batched_nms`` does), so boxes of other classes never interact.
    """
    if len(found) == 0:
        return found
    merged = [
        _merge_one_class(found[found.class_id == label], strategy, metric, threshold)
        for label in np.unique(found.class_id)
    ]
    return Detections.concat(merged).sorted_by_confidence()


def _merge_one_class(found: Detections, strategy: MergeStrategy, metric: MatchMetric, threshold: float) -> Detections:
    found = found.sorted_by_confidence()
    box_areas = areas(found.xyxy)
    remaining = np.arange(len(found))
    kept_xyxy, kept_index = [], []
    while remaining.size:
        best, rest = remaining[0], remaining[1:]
        overlap = _overlaps(found.xyxy[best], found.xyxy[rest], float(box_areas[best]), box_areas[rest], metric)
        group = rest[overlap > threshold]
        rest = rest[overlap <= threshold]
        box = found.xyxy[best]
        if strategy is MergeStrategy.NMM and group.size:
            box, rest = _grow(found.xyxy, box_areas, best, group, rest, metric, threshold)
        kept_xyxy.append(box)
        kept_index.append(best)
        remaining = rest
    index = np.asarray(kept_index, np.intp)
    return Detections(np.asarray(kept_xyxy, np.float32).reshape(-1, 4), found.confidence[index], found.class_id[index])


def _enclosing(xyxy: FloatArray) -> FloatArray:
    return np.concatenate([xyxy[:, :2].min(axis=0), xyxy[:, 2:].max(axis=0)])


def _grow(
    xyxy: FloatArray,
    box_areas: FloatArray,
    best: int,
    group: npt.NDArray[np.intp],
    rest: npt.NDArray[np.intp],
    metric: MatchMetric,
    threshold: float,
) -> tuple[FloatArray, npt.NDArray[np.intp]]:
    """Merge ``group`` into ``best``, then re-check the rest once against the grown box.

    A piece of an object cut by a tile edge may miss the best-scoring piece yet lie inside
    the grown box; one re-check absorbs it without chaining through a dense crowd.
    """
    members = np.concatenate([[best], group])
    grown = _enclosing(xyxy[members])
    if rest.size:
        grown_area = float(areas(grown[None, :])[0])
        overlap = _overlaps(grown, xyxy[rest], grown_area, box_areas[rest], metric)
        members = np.concatenate([members, rest[overlap > threshold]])
        rest = rest[overlap <= threshold]
    return _enclosing(xyxy[members]), rest
