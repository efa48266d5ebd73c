"""Tile geometry for sliced inference (pure): where the tiles lie, how many, and the way back to image pixels.

A large photo is cut into overlapping tiles that each go through the model at its input
resolution, so small objects keep their pixels. ``shift_detections`` moves a tile's detections
back to image pixels; merging them (with the optional full-image pass) class by class is
``overlap.merge_detections``, called by the Detector (``core.pipeline``). ``SliceMode`` is the
request's choice; ``core.planning`` decides from it whether an image is sliced.
"""

from __future__ import annotations

import enum
import math

import numpy as np
import numpy.typing as npt

from .types import Detections


class SliceMode(str, enum.Enum):
    """Whether a request is sliced: always, never, or when the image is much larger than the model input."""

    AUTO = "auto"
    ON = "on"
    OFF = "off"

    @classmethod
    def parse(cls, value: object) -> SliceMode:
        """``True``/``False`` (the API's booleans) or a mode name, any case -> SliceMode."""
        if isinstance(value, bool):
            return cls.ON if value else cls.OFF
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            try:
                return cls(value.strip().lower())
            except ValueError:
                pass
        raise ValueError(f"slice mode must be true, false, 'auto', 'on' or 'off', got {value!r}")


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
