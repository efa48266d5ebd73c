"""Regions of interest: the polygon maths, the checks on a request's polygons, the crop and the mask."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from specks.core.imaging import DecodedImage
from specks.core.preprocess import PAD_VALUE
from specks.core.regions import (
    MAX_REGION_POINTS,
    MIN_REGION_MARGIN_PX,
    Region,
    RegionAnchor,
    RegionSet,
    RegionUnits,
    anchor_points,
    check_points,
    clip_to_image,
    inside_polygon,
    painted,
    plan_regions,
    polygon_area,
    self_intersects,
    stride_aligned_px,
)
from specks.core.types import Detections, ImageSize
from specks.errors import InvalidFieldError
from specks.web.schemas import parse_predict_request

SQUARE = np.array([[10, 10], [90, 10], [90, 90], [10, 90]], np.float64)
# A U shape: its notch (x 40..60, y 10..60) is outside although the bounding box holds it.
U_SHAPE = np.array([[10, 10], [40, 10], [40, 60], [60, 60], [60, 10], [90, 10], [90, 90], [10, 90]], np.float64)
IMAGE = ImageSize(2000, 1500)


def points(*xy: tuple[float, float]) -> np.ndarray:
    return np.array(xy, np.float64)


# -- geometry ----------------------------------------------------------------------------------
def test_inside_a_concave_polygon_follows_its_outline_not_its_box() -> None:
    tests = points((20, 50), (50, 30), (50, 80), (95, 50), (75, 30))
    assert inside_polygon(tests, U_SHAPE).tolist() == [True, False, True, False, True]


def test_points_on_an_edge_or_a_corner_count_as_inside() -> None:
    on_edges = points((10, 50), (90, 50), (50, 90), (50, 10), (90, 90), (10, 10))
    assert inside_polygon(on_edges, SQUARE).all()
    assert not inside_polygon(points((9.9, 50), (50, 90.1)), SQUARE).any()


def test_anchor_points_are_the_bottom_centre_or_the_centre() -> None:
    boxes = np.array([[10, 20, 30, 60]], np.float32)
    assert anchor_points(boxes, RegionAnchor.BOTTOM_CENTER).tolist() == [[20, 60]]
    assert anchor_points(boxes, RegionAnchor.CENTER).tolist() == [[20, 40]]


def test_area_and_crossing() -> None:
    assert polygon_area(SQUARE) == 6400
    assert polygon_area(U_SHAPE) == 6400 - 20 * 50
    assert not self_intersects(SQUARE) and not self_intersects(U_SHAPE)
    assert self_intersects(points((0, 0), (10, 10), (10, 0), (0, 10)))  # a bow tie
    assert self_intersects(points((0, 0), (10, 0), (5, 5), (10, 10), (0, 10), (5, 5)))  # touching at a corner


def test_clipping_to_the_image_keeps_what_is_inside() -> None:
    half_out = points((-50, -50), (50, -50), (50, 50), (-50, 50))
    clipped = clip_to_image(half_out, ImageSize(100, 100))
    assert polygon_area(clipped) == 2500
    assert clipped.min() == 0 and clipped.max() == 50
    assert len(clip_to_image(points((200, 200), (300, 200), (300, 300)), ImageSize(100, 100))) == 0


def test_painting_covers_the_pixels_whose_centres_are_inside_and_leaves_the_original() -> None:
    rgb = np.zeros((100, 100, 3), np.uint8)
    mask = (painted(rgb, [SQUARE], 200) == 200).all(axis=2)
    assert not rgb.any()
    assert mask[10:90, 10:90].all()
    assert not mask[:9].any() and not mask[91:].any() and not mask[:, :9].any() and not mask[:, 91:].any()
    assert mask.sum() == pytest.approx(80 * 80, rel=0.03)


@pytest.mark.parametrize(("scale", "aligned"), [(1.0, 32), (2.0, 16), (1.5, 64), (0.5, 64)])
def test_aligned_crops_start_on_a_whole_number_of_input_strides(scale: float, aligned: int) -> None:
    assert stride_aligned_px(32, scale) == aligned
    assert (aligned * scale) % 32 == 0


# -- checking a request's polygons -------------------------------------------------------------
def region_error(regions: Any) -> InvalidFieldError:
    with pytest.raises(InvalidFieldError) as caught:
        parse_predict_request({"image": "x", "regions": regions})
    return caught.value


@pytest.mark.parametrize(
    ("regions", "words"),
    [
        ([{"points": [[0, 0], [10, 0]]}], "'regions[0].points' should be"),
        ([{"points": [[0, 0], [10, 0], [10, 0], [0, 0]]}], "'regions[0]' needs at least 3 distinct points, got 2"),
        ([{"points": [[0, 0], [10, 0], [20, 0]]}], "'regions[0]' has no area"),
        ([{"points": [[0, 0], [10, 10], [10, 0], [0, 10]]}], "'regions[0]' crosses itself"),
        ([{"points": SQUARE.tolist()}, {"points": "0,0 1,0 1,1"}], "'regions[1].points' should be a valid list"),
        ([{"points": SQUARE.tolist()}, {"points": [[0, 0], [1, 0], [1, 1.5]], "units": "fraction"}], "within 0..1"),
        ([{"points": [[0, 0], [1, 0], ["1", 1]]}], "'regions[0].points[2][0]' should be a valid number"),
        ([{"points": [[0, 0], [1, 0], [1, 1, 1]]}], "'regions[0].points[2]'"),
        ([{"points": [[0, 0], [1, 0], [1, 1]], "shape": "square"}], "unknown field 'regions[0].shape'"),
        ([{"points": [[0, 0], [1, 0], [1, 1]], "units": "percent"}], "'regions[0].units' should be 'px' or 'fraction'"),
        ([{"points": [[0, 0], [1, 0], [float("nan"), 1]]}], "'regions[0]' has a point that is not a finite number"),
        ([{"points": [[0, 0], [1e300, 0], [1, 1]]}], "'regions[0]' has a point beyond 1000000 pixels"),
        ([{"points": [[i, i * i] for i in range(MAX_REGION_POINTS + 2)]}], "'regions[0].points'"),
        ([{"points": SQUARE.tolist()}] * 33, "'regions' should be"),
        ({"points": SQUARE.tolist()}, "'regions' should be"),
    ],
)
def test_bad_regions_are_refused_naming_the_region_and_the_problem(regions: Any, words: str) -> None:
    error = region_error(regions)
    assert words in error.message
    assert error.field == "regions"


def test_a_closing_point_and_repeated_points_are_dropped() -> None:
    request = parse_predict_request({"image": "x", "regions": [{"points": [[0, 0], [5, 0], [5, 0], [5, 5], [0, 0]]}]})
    assert request.region_list() == (Region(((0, 0), (5, 0), (5, 5))),)


def test_fractions_are_never_guessed_from_the_values() -> None:
    """[[0, 0], [1, 0], [1, 1]] in pixels is a one-pixel triangle, not the whole image."""
    (region,) = parse_predict_request({"image": "x", "regions": [{"points": [[0, 0], [1, 0], [1, 1]]}]}).region_list()
    assert region.units is RegionUnits.PX
    assert region.points_px(IMAGE).max() == 1
    as_fraction = Region(region.points, RegionUnits.FRACTION)
    assert as_fraction.points_px(IMAGE).max(axis=0).tolist() == [2000, 1500]


def test_check_points_limits_the_work_of_one_polygon() -> None:
    with pytest.raises(InvalidFieldError, match="at most 256"):
        check_points([(i, i) for i in range(MAX_REGION_POINTS + 2)], RegionUnits.PX, "regions[0]")


# -- a request's regions against an image ----------------------------------------------------
def test_no_regions_plan_nothing() -> None:
    assert plan_regions(RegionSet(), IMAGE) is None


def test_a_region_wholly_outside_the_image_is_refused_by_its_index() -> None:
    far = Region(((2100, 0), (2200, 0), (2200, 100)))
    with pytest.raises(InvalidFieldError, match=r"'regions\[1\]' lies wholly outside the 2000x1500 image"):
        plan_regions(RegionSet((Region(((0, 0), (10, 0), (10, 10))), far)), IMAGE)


def test_the_crop_holds_the_include_regions_and_a_margin_above_them_for_standing_objects() -> None:
    quarter = Region(((0.25, 0.25), (0.75, 0.25), (0.75, 0.75), (0.25, 0.75)), RegionUnits.FRACTION)
    plan = plan_regions(RegionSet((quarter,)), IMAGE)
    assert plan is not None and plan.crops
    x1, y1, x2, y2 = plan.crop_xyxy
    margin = max(MIN_REGION_MARGIN_PX, 0.05 * 2000)
    assert (x1, y1, x2, y2) == (500 - margin / 2, 375 - margin, 1500 + margin / 2, 1125 + margin / 2)
    centred = plan_regions(RegionSet((quarter,), RegionAnchor.CENTER), IMAGE)
    assert centred is not None and centred.crop_xyxy[1] == 375 - margin / 2


def test_an_aligned_crop_starts_and_ends_on_the_grid_inside_the_image() -> None:
    near_the_edge = Region(((1900, 10), (1990, 10), (1990, 100)))
    plan = plan_regions(RegionSet((near_the_edge,)), IMAGE, align_px=32)
    assert plan is not None
    x1, y1, x2, y2 = plan.crop_xyxy
    assert x1 % 32 == 0 and y1 == 0 and x2 == 2000 and y2 % 32 == 0


def test_a_polygon_past_the_edge_is_clipped_so_the_crop_stays_inside() -> None:
    past = Region(((-500, -500), (3000, -500), (3000, 3000), (-500, 3000)))
    plan = plan_regions(RegionSet((past,)), IMAGE)
    assert plan is not None and plan.crop_xyxy == (0, 0, 2000, 1500) and not plan.crops


def test_only_exclude_regions_run_the_whole_image_minus_them() -> None:
    top = Region(((0, 0), (1, 0), (1, 0.25), (0, 0.25)), RegionUnits.FRACTION, exclude=True)
    plan = plan_regions(RegionSet((top,)), IMAGE)
    assert plan is not None and not plan.crops
    boxes = Detections.from_arrays([[10, 100, 50, 300], [10, 500, 50, 800], [10, 340, 50, 375]], [0.9] * 3, [0] * 3)
    # Anchors: (30, 300) in the band, (30, 800) below it, (30, 375) exactly on its lower edge: excluded.
    assert plan.keeps(boxes.xyxy).tolist() == [False, True, False]


def test_an_anchor_must_be_in_an_include_region_and_in_no_exclude_region() -> None:
    include = Region(tuple(map(tuple, SQUARE.tolist())))
    hole = Region(((40, 40), (60, 40), (60, 60), (40, 60)), exclude=True)
    plan = plan_regions(RegionSet((include, hole)), ImageSize(100, 100))
    assert plan is not None
    boxes = np.array([[20, 10, 30, 30], [45, 30, 55, 50], [80, 80, 99, 99], [0, 0, 5, 5]], np.float32)
    assert plan.keeps(boxes).tolist() == [True, False, False, False]
    assert RegionSet((include, hole), RegionAnchor.CENTER) != RegionSet((include, hole))


def test_the_crop_masks_excluded_pixels_and_maps_boxes_back() -> None:
    rgb = np.full((100, 200, 3), 7, np.uint8)
    rgb.flags.writeable = False
    image = DecodedImage(rgb, ImageSize(200, 100), "PNG")
    include = Region(((100, 20), (180, 20), (180, 80), (100, 80)))
    hole = Region(((120, 0), (140, 0), (140, 100), (120, 100)), exclude=True)
    plan = plan_regions(RegionSet((include, hole)), image.size)
    assert plan is not None
    crop = plan.crop(image)
    x1, y1, x2, y2 = plan.crop_xyxy
    assert crop.size == ImageSize(x2 - x1, y2 - y1) and crop.rgb.shape[:2] == (y2 - y1, x2 - x1)
    assert (crop.rgb[:, 120 - x1 : 140 - x1] == PAD_VALUE).all()
    assert (crop.rgb[:, 150 - x1] == 7).all() and (rgb == 7).all()  # the decoded image is untouched
    moved = plan.to_image_frame(Detections.from_arrays([[0, 0, 10, 10]], [0.5], [1]))
    assert moved.xyxy.tolist() == [[x1, y1, x1 + 10, y1 + 10]]


def test_the_crop_of_a_reduced_decode_is_in_its_array_pixels() -> None:
    """A JPEG decoded at 1/2 scale: the crop takes half the array pixels and keeps image-pixel sizes."""
    rgb = np.zeros((750, 1000, 3), np.uint8)
    image = DecodedImage(rgb, IMAGE, "JPEG")
    plan = plan_regions(RegionSet((Region(((0, 0), (0.5, 0), (0.5, 0.5)), RegionUnits.FRACTION),)), IMAGE)
    assert plan is not None
    crop = plan.crop(image)
    assert crop.size == plan.crop_size
    assert crop.scale_xy == pytest.approx((2.0, 2.0), rel=0.01)
