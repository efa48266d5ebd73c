"""Regions of interest: detect only inside some polygons, and never inside others.

A request (or a model profile, for a fixed camera) names polygons, in pixels of the image as
displayed or as fractions of its width and height. A detection is answered when its anchor point
(the middle of its bottom edge by default, as zones are drawn on the ground; or its centre) lies
inside an include region and inside no exclude region; only exclude regions mean the whole image
minus them. Points on a region's edge count as inside.

The work follows the regions (``RegionPlan``): the image is cropped to the include regions'
bounding box, widened by a margin so that an object whose anchor is inside is not cut off at the
crop, before any slicing or full-image pass; the exclude regions' pixels are painted over with the
letterbox grey. A region a quarter of the frame therefore costs about a quarter of the time.

Everything here is plain NumPy and Pillow on numbers already parsed: ``options.RegionModel``
checks a request's JSON, ``check_points`` the geometry, and both raise ``InvalidFieldError``
naming the region.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TypeAlias

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw

from ..errors import InvalidFieldError
from .imaging import DecodedImage
from .preprocess import PAD_VALUE
from .types import Detections, ImageSize

Points: TypeAlias = npt.NDArray[np.float64]  # (N, 2) x, y rows

MAX_REGIONS = 32  # regions per request: more than any camera's zones and masks
MAX_REGION_POINTS = 256  # points per polygon (a hand-drawn outline has tens)
MAX_REGION_PX = 1_000_000  # |x| and |y| in pixels: beyond any image Specks decodes, far from float overflow
# The crop around the include regions reaches this share of the image's longer side past them
# (at least MIN_REGION_MARGIN_PX): above them for bottom-centre anchors, half of it on the other
# sides, so a person standing on the region's top edge keeps their head.
REGION_MARGIN_FRACTION = 0.05
MIN_REGION_MARGIN_PX = 64
# Points on an edge count as inside (a box clipped to the image bottom has its anchor on it).
EDGE_TOLERANCE_PX = 1e-3


class RegionUnits(enum.StrEnum):
    """How a region's points are written: image pixels, or fractions of the image's width and height."""

    PX = "px"
    FRACTION = "fraction"


class RegionAnchor(enum.StrEnum):
    """The point of a box that must lie in a region: the middle of its bottom edge, or its centre."""

    BOTTOM_CENTER = "bottom_center"
    CENTER = "center"


DEFAULT_REGION_ANCHOR = RegionAnchor.BOTTOM_CENTER


@dataclass(frozen=True)
class Region:
    """One polygon, as the request wrote it (already checked by ``check_points``).

    points:  (x, y) pairs, at least 3, in ``units``; the polygon closes itself.
    exclude: True: detections anchored inside are dropped (and its pixels masked).
    """

    points: tuple[tuple[float, float], ...]
    units: RegionUnits = RegionUnits.PX
    exclude: bool = False

    def points_px(self, size: ImageSize) -> npt.NDArray[np.float64]:
        """(N, 2) points in pixels of an image of ``size``."""
        points = np.asarray(self.points, np.float64)
        if self.units is RegionUnits.FRACTION:
            points = points * (size.width, size.height)
        return points

    def to_json(self) -> dict[str, object]:
        return {"points": [list(p) for p in self.points], "units": self.units.value, "exclude": self.exclude}


@dataclass(frozen=True)
class RegionSet:
    """The regions a request runs with and the anchor they test: a request's, or its model's defaults."""

    regions: tuple[Region, ...] = ()
    anchor: RegionAnchor = DEFAULT_REGION_ANCHOR


NO_REGIONS = RegionSet()


@dataclass(frozen=True)
class RegionPlan:
    """A request's regions resolved against one image.

    crop_xyxy:  the part of the image that runs, x1, y1, x2, y2 in image pixels (the whole image
                when there are only exclude regions).
    include_px, exclude_px: each polygon as (N, 2) float64 image pixels (not clipped: the anchor
                test gives the same answer inside the image).
    """

    image_size: ImageSize
    crop_xyxy: tuple[int, int, int, int]
    include_px: tuple[npt.NDArray[np.float64], ...] = field(repr=False)
    exclude_px: tuple[npt.NDArray[np.float64], ...] = field(repr=False)
    anchor: RegionAnchor = DEFAULT_REGION_ANCHOR

    @property
    def crop_size(self) -> ImageSize:
        x1, y1, x2, y2 = self.crop_xyxy
        return ImageSize(x2 - x1, y2 - y1)

    @property
    def crops(self) -> bool:
        """Whether less than the whole image runs."""
        return self.crop_size != self.image_size

    def keeps(self, xyxy: npt.NDArray[np.float32]) -> npt.NDArray[np.bool_]:
        """Which boxes (image pixels) have their anchor in an include region and in no exclude region."""
        anchors = anchor_points(xyxy, self.anchor)
        keep = np.ones(len(anchors), bool)
        if self.include_px:
            keep = np.logical_or.reduce([inside_polygon(anchors, p) for p in self.include_px])
        for polygon in self.exclude_px:
            keep &= ~inside_polygon(anchors, polygon)
        return keep

    def filter(self, found: Detections) -> Detections:
        """``found`` (image pixels) without the detections the regions leave out."""
        return found[self.keeps(found.xyxy)] if len(found) else found

    def crop(self, image: DecodedImage) -> DecodedImage:
        """The part of ``image`` that runs, its exclude regions painted grey (a copy when anything changed).

        ``image`` may be a reduced-scale decode (``DecodedImage.scale_xy``): the crop and the masks
        are mapped to its array pixels, and the result's ``size`` is the crop in image pixels.
        """
        scale_x, scale_y = image.scale_xy
        x1, y1, x2, y2 = self.crop_xyxy
        rows = slice(math.floor(y1 / scale_y), math.ceil(y2 / scale_y))
        columns = slice(math.floor(x1 / scale_x), math.ceil(x2 / scale_x))
        rgb = image.rgb[rows, columns] if self.crops else image.rgb
        if self.exclude_px:
            origin, scale = np.array([columns.start, rows.start]), np.array([scale_x, scale_y])
            rgb = painted(rgb, [p / scale - origin for p in self.exclude_px], PAD_VALUE)
        elif self.crops:
            rgb = np.ascontiguousarray(rgb)
        return DecodedImage(rgb, self.crop_size, image.format)

    def to_image_frame(self, found: Detections) -> Detections:
        """Detections of the crop moved into image pixels."""
        if not self.crops or not len(found):
            return found
        x1, y1 = self.crop_xyxy[:2]
        return Detections(found.xyxy + np.array([x1, y1, x1, y1], np.float32), found.confidence, found.class_id)


# -- checking a request's polygons ---------------------------------------------------------------
def check_points(points: Sequence[Sequence[float]], units: RegionUnits, where: str) -> tuple[tuple[float, float], ...]:
    """A polygon's points, checked: finite, fractions in 0..1, at least 3 distinct corners, an area,
    no edge crossing another. A closing point equal to the first is dropped, as are repeated
    points. Problems raise InvalidFieldError on ``where`` (e.g. ``regions[2]``)."""
    if len(points) > MAX_REGION_POINTS + 1:
        _refuse(where, f"has {len(points)} points; at most {MAX_REGION_POINTS} are allowed")
    array = np.asarray(points, np.float64).reshape(-1, 2)
    if not np.isfinite(array).all():
        _refuse(where, "has a point that is not a finite number")
    if (np.abs(array) > MAX_REGION_PX).any():
        _refuse(where, f"has a point beyond {MAX_REGION_PX} pixels from the image's corner")
    if units is RegionUnits.FRACTION and ((array < 0) | (array > 1)).any():
        _refuse(where, 'is in "fraction" units, so every x and y must be within 0..1 (use "units": "px" for pixels)')
    distinct = without_repeats(array)
    if len(distinct) < 3:
        _refuse(where, f"needs at least 3 distinct points, got {len(distinct)}")
    if self_intersects(distinct):
        _refuse(where, "crosses itself; list its corners in order around the outline")
    if polygon_area(distinct) <= 0:
        _refuse(where, "has no area (its points lie on one line)")
    return tuple((float(x), float(y)) for x, y in distinct)


def without_repeats(points: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """``points`` without a point equal to the one before it, nor a last point equal to the first."""
    if len(points) < 2:
        return points
    changed = np.concatenate([[True], np.any(points[1:] != points[:-1], axis=1)])
    kept = points[changed]
    return kept[:-1] if len(kept) > 1 and (kept[-1] == kept[0]).all() else kept


def _refuse(where: str, problem: str) -> None:
    """InvalidFieldError on the request field (``regions``) whose message names the item (``regions[2]``)."""
    raise InvalidFieldError(f"'{where}' {problem}", field=where.split("[")[0])


def plan_regions(chosen: RegionSet, image: ImageSize, *, align_px: int = 1) -> RegionPlan | None:
    """``chosen`` resolved against an image of ``image`` size; None when there are no regions.

    align_px: the crop's corners are moved out to multiples of it (inside the image), so that the
              crop sees the model's stride grid where the whole image would (``stride_aligned_px``).
    A region wholly outside the image is InvalidFieldError naming it: it would silently answer nothing.
    """
    if not chosen.regions:
        return None
    include: list[Points] = []
    exclude: list[Points] = []
    for index, region in enumerate(chosen.regions):
        points = region.points_px(image)
        if polygon_area(clip_to_image(points, image)) <= 0:
            _refuse(f"regions[{index}]", f"lies wholly outside the {image.width}x{image.height} image")
        (exclude if region.exclude else include).append(points)
    crop = crop_box(include, image, chosen.anchor, align_px=align_px)
    return RegionPlan(image, crop, tuple(include), tuple(exclude), chosen.anchor)


def stride_aligned_px(stride: int, input_scale: float) -> int:
    """The smallest whole number of image pixels that is a whole number of strides of model input at
    ``input_scale`` input pixels per image pixel (32 at 1, 64 at 1.5, 16 at 2).

    A crop that starts on such a multiple, run at that scale, meets the same convolution grid as
    the whole image: measured on a VisDrone photo, its detections were the whole image's within
    0.5 px, against up to 10 px off from a crop 2 px off the grid.
    """
    scale = Fraction(input_scale).limit_denominator(64)
    return stride * scale.denominator // math.gcd(scale.numerator, stride * scale.denominator)


def crop_box(
    include_px: list[Points], image: ImageSize, anchor: RegionAnchor, *, align_px: int = 1
) -> tuple[int, int, int, int]:
    """Integer x1, y1, x2, y2 of the part of the image that runs: the include regions' bounding box
    (inside the image) widened by the anchor's margin and out to multiples of ``align_px``, or the
    whole image when there are none."""
    if not include_px:
        return 0, 0, image.width, image.height
    clipped = np.concatenate([clip_to_image(p, image) for p in include_px])
    x1, y1 = clipped.min(axis=0)
    x2, y2 = clipped.max(axis=0)
    margin = max(MIN_REGION_MARGIN_PX, REGION_MARGIN_FRACTION * max(image.width, image.height))
    above = margin if anchor is RegionAnchor.BOTTOM_CENTER else margin / 2
    return (
        max(0, math.floor((x1 - margin / 2) / align_px) * align_px),
        max(0, math.floor((y1 - above) / align_px) * align_px),
        min(image.width, math.ceil((x2 + margin / 2) / align_px) * align_px),
        min(image.height, math.ceil((y2 + margin / 2) / align_px) * align_px),
    )


# -- geometry ----------------------------------------------------------------------------------
def anchor_points(xyxy: npt.NDArray[np.float32], anchor: RegionAnchor) -> npt.NDArray[np.float64]:
    """(N, 2) anchor point of each box: the middle of its bottom edge, or its centre."""
    boxes = np.asarray(xyxy, np.float64).reshape(-1, 4)
    x = (boxes[:, 0] + boxes[:, 2]) / 2
    y = boxes[:, 3] if anchor is RegionAnchor.BOTTOM_CENTER else (boxes[:, 1] + boxes[:, 3]) / 2
    return np.stack([x, y], axis=1)


def inside_polygon(points: npt.NDArray[np.float64], polygon: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
    """Which of (N, 2) ``points`` lie inside ``polygon`` (M, 2) or on its edge (even-odd rule)."""
    px, py = points[:, :1], points[:, 1:]
    ax, ay = polygon[:, 0], polygon[:, 1]
    bx, by = np.roll(ax, -1), np.roll(ay, -1)
    spans = (ay > py) != (by > py)
    with np.errstate(divide="ignore", invalid="ignore"):
        crossing_x = ax + (py - ay) * (bx - ax) / (by - ay)
    inside = np.logical_xor.reduce(spans & (px < crossing_x), axis=1)
    return inside | (segment_distance(points, polygon) <= EDGE_TOLERANCE_PX)


def segment_distance(points: npt.NDArray[np.float64], polygon: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """(N,) distance from each point to the nearest edge of ``polygon``."""
    a = polygon[None, :, :]
    edge = np.roll(polygon, -1, axis=0)[None, :, :] - a
    offset = points[:, None, :] - a
    length2 = np.maximum((edge**2).sum(axis=2), 1e-12)
    t = np.clip((offset * edge).sum(axis=2) / length2, 0.0, 1.0)
    nearest = offset - t[:, :, None] * edge
    return np.sqrt((nearest**2).sum(axis=2)).min(axis=1, initial=np.inf)


def polygon_area(polygon: npt.NDArray[np.float64]) -> float:
    """Unsigned area (shoelace); 0 for fewer than 3 points."""
    if len(polygon) < 3:
        return 0.0
    x, y = polygon[:, 0], polygon[:, 1]
    return abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))) / 2


def self_intersects(polygon: npt.NDArray[np.float64]) -> bool:
    """Whether two edges that are not neighbours cross or touch."""
    count = len(polygon)
    starts, ends = polygon, np.roll(polygon, -1, axis=0)
    i, j = np.triu_indices(count, k=2)
    not_neighbours = ~((i == 0) & (j == count - 1))
    i, j = i[not_neighbours], j[not_neighbours]
    p1, p2, q1, q2 = starts[i], ends[i], starts[j], ends[j]
    d1, d2 = _cross(q1, q2, p1), _cross(q1, q2, p2)
    d3, d4 = _cross(p1, p2, q1), _cross(p1, p2, q2)
    proper = (d1 * d2 < 0) & (d3 * d4 < 0)
    touching = (
        ((d1 == 0) & _within(q1, q2, p1))
        | ((d2 == 0) & _within(q1, q2, p2))
        | ((d3 == 0) & _within(p1, p2, q1))
        | ((d4 == 0) & _within(p1, p2, q2))
    )
    return bool((proper | touching).any())


def _cross(a: Points, b: Points, c: Points) -> npt.NDArray[np.float64]:
    """z of (b - a) x (c - a) per row: its sign says on which side of a->b the point c lies."""
    return (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])


def _within(a: Points, b: Points, c: Points) -> npt.NDArray[np.bool_]:
    """Whether c (on the line a-b) lies within the segment's bounding box."""
    return (
        (np.minimum(a[:, 0], b[:, 0]) <= c[:, 0])
        & (c[:, 0] <= np.maximum(a[:, 0], b[:, 0]))
        & (np.minimum(a[:, 1], b[:, 1]) <= c[:, 1])
        & (c[:, 1] <= np.maximum(a[:, 1], b[:, 1]))
    )


def clip_to_image(polygon: npt.NDArray[np.float64], image: ImageSize) -> npt.NDArray[np.float64]:
    """The polygon clipped to the image rectangle (Sutherland-Hodgman); (0, 2) when nothing is left."""
    result = polygon
    for axis, limit, keep_below in ((0, 0.0, False), (0, image.width, True), (1, 0.0, False), (1, image.height, True)):
        if not len(result):
            break
        result = _clip_half_plane(result, axis, float(limit), keep_below)
    return result


def _clip_half_plane(
    polygon: npt.NDArray[np.float64], axis: int, limit: float, keep_below: bool
) -> npt.NDArray[np.float64]:
    inside = polygon[:, axis] <= limit if keep_below else polygon[:, axis] >= limit
    kept: list[npt.NDArray[np.float64]] = []
    for index in range(len(polygon)):
        current, following = polygon[index], polygon[(index + 1) % len(polygon)]
        current_in, following_in = inside[index], inside[(index + 1) % len(polygon)]
        if current_in:
            kept.append(current)
        if current_in != following_in:
            t = (limit - current[axis]) / (following[axis] - current[axis])
            kept.append(current + t * (following - current))
    return np.array(kept, np.float64).reshape(-1, 2)


def painted(rgb: npt.NDArray[np.uint8], polygons: list[Points], value: int) -> npt.NDArray[np.uint8]:
    """A copy of (h, w, 3) ``rgb`` with the pixels whose centres the polygons (array pixels) cover set
    to ``value`` (Pillow's rasteriser: 7 ms for a third of a 2000x1500 image, against 52 ms for a
    NumPy mask assignment)."""
    picture = Image.fromarray(rgb)
    draw = ImageDraw.Draw(picture)
    for polygon in polygons:
        draw.polygon(_pillow_points(polygon), fill=(value, value, value))
    return np.asarray(picture)


def polygon_mask(width: int, height: int, polygons: list[Points]) -> npt.NDArray[np.bool_]:
    """(height, width) True on the pixels whose centres the polygons cover (Pillow's rasteriser)."""
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for polygon in polygons:
        draw.polygon(_pillow_points(polygon), fill=255)
    return np.asarray(canvas) > 0


def _pillow_points(polygon: Points) -> list[tuple[float, float]]:
    """Our pixel (i, j) spans i..i+1; Pillow's is centred on i: shift by half a pixel."""
    return [(float(x) - 0.5, float(y) - 0.5) for x, y in polygon]
