"""Annotated pictures: outlines where the boxes are, halos, labels off tiny boxes, JPEG round trip,
and the request's regions under the boxes."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from specks.core.imaging import DecodedImage, decode_image
from specks.core.pipeline import Prediction
from specks.core.regions import Region, RegionAnchor, RegionPlan, RegionSet, plan_regions
from specks.core.types import Detections, ImageSize
from specks.core.visualize import (
    BLACK,
    PALETTE,
    REGION_EXCLUDE_COLOR,
    REGION_INCLUDE_COLOR,
    WHITE,
    DrawStyle,
    class_color,
    contrast_color,
    draw_detections,
    draw_prediction,
    encode_jpeg_b64,
    place_labels,
    visualize_prediction,
)

GREY = 128
NAMES = ("person", "car", "boat")


def grey(width: int = 320, height: int = 240) -> np.ndarray:
    return np.full((height, width, 3), GREY, np.uint8)


def ring_pixels(picture: np.ndarray, x1: int, y1: int, x2: int, y2: int, offset: int) -> np.ndarray:
    """The pixels ``offset`` outside the box x1..x2-1, y1..y2-1 along its four sides (corners left out)."""
    left, right, top, bottom = x1 - offset, x2 - 1 + offset, y1 - offset, y2 - 1 + offset
    return np.concatenate(
        [
            picture[y1:y2, left],
            picture[y1:y2, right],
            picture[top, x1:x2],
            picture[bottom, x1:x2],
        ]
    )


def test_the_picture_has_the_image_size_and_leaves_the_input_unchanged() -> None:
    rgb = grey(333, 222)
    found = Detections.from_arrays([[10, 20, 100, 120]], [0.9], [1])
    picture = draw_detections(rgb, found, NAMES)
    assert picture.size == (333, 222)
    assert (rgb == GREY).all()


def test_the_outline_lies_just_outside_the_box_with_a_halo_and_the_box_inside_is_untouched() -> None:
    style = DrawStyle(line_px=2, halo_px=1, font_px=11, pad_px=1)
    found = Detections.from_arrays([[100, 80, 160, 140]], [0.9], [1])
    picture = np.asarray(draw_detections(grey(), found, NAMES, style=style))
    color = np.array(class_color(1))
    for offset in (1, 2):  # the two pixels of the outline, outside the box
        assert (ring_pixels(picture, 100, 80, 160, 140, offset) == color).all()
    halo = np.array(contrast_color(class_color(1)))
    assert (ring_pixels(picture, 100, 80, 160, 140, 3) == halo).all()
    assert (picture[81:139, 101:159] == GREY).all()  # the object itself stays visible


def test_a_tiny_box_keeps_its_pixels_and_its_label_does_not_cover_it() -> None:
    rgb = grey(200, 200)
    rgb[100:104, 100:104] = (10, 200, 10)  # a 4-pixel object
    found = Detections.from_arrays([[100, 100, 104, 104]], [0.8], [0])
    picture = np.asarray(draw_detections(rgb, found, NAMES))
    assert (picture[100:104, 100:104] == (10, 200, 10)).all()


def test_labels_go_where_they_cover_no_box() -> None:
    # A box with another box right above it: the label goes below rather than over the neighbour.
    rings = np.array([[50, 50, 70, 70], [50, 30, 70, 49]], np.int32)
    placed = place_labels(rings, [(30, 12), (30, 12)], (200, 200))
    x1, y1, x2, y2 = placed[0]
    assert y1 >= 70  # below its box
    assert (x2 - x1, y2 - y1) == (30, 12)


def test_labels_stay_inside_the_picture() -> None:
    rings = np.array([[0, 0, 10, 10], [190, 190, 200, 200]], np.int32)
    for x1, y1, x2, y2 in place_labels(rings, [(40, 12), (40, 12)], (200, 200)):
        assert x1 >= 0 and y1 >= 0 and x2 <= 200 and y2 <= 200


def test_class_colours_are_fixed_and_cycle() -> None:
    assert class_color(0) == PALETTE[0]
    assert class_color(len(PALETTE) + 3) == PALETTE[3]
    assert len(set(PALETTE)) == len(PALETTE)
    assert contrast_color((255, 255, 0)) == BLACK and contrast_color((0, 24, 236)) == WHITE


def test_the_jpeg_decodes_to_the_same_size_and_keeps_the_outline_colour() -> None:
    found = Detections.from_arrays([[100, 80, 160, 140]], [0.9], [5])
    style = DrawStyle(line_px=2, halo_px=1, font_px=11, pad_px=1)
    encoded = encode_jpeg_b64(draw_detections(grey(), found, NAMES, style=style))
    picture = np.asarray(Image.open(io.BytesIO(base64.b64decode(encoded))).convert("RGB")).astype(int)
    assert picture.shape == (240, 320, 3)
    drift = np.abs(ring_pixels(picture, 100, 80, 160, 140, 1) - np.array(class_color(5))).mean()
    assert drift < 40


@pytest.mark.parametrize("scale", [1, 2])
def test_visualize_prediction_draws_in_displayed_pixels(scale: int) -> None:
    """Boxes are in displayed pixels; pixels decoded at a reduced scale get the boxes scaled down."""
    buffer = io.BytesIO()
    Image.fromarray(grey(320 // scale, 240 // scale)).save(buffer, "PNG")
    image = decode_image(buffer.getvalue(), max_image_pixels=10**6)
    image = type(image)(image.rgb, ImageSize(320, 240), image.format)
    found = Detections.from_arrays([[100, 80, 160, 140]], [0.9], [1])
    prediction = Prediction(found, ImageSize(320, 240), image=image)
    picture = np.asarray(Image.open(io.BytesIO(base64.b64decode(visualize_prediction(prediction, NAMES)))))
    assert picture.shape[:2] == (240 // scale, 320 // scale)
    x1, y1, x2, y2 = (v // scale for v in (100, 80, 160, 140))
    drift = np.abs(picture[y1 + 2 : y2 - 2, x1 - 1].astype(int) - np.array(class_color(1))).mean()
    assert drift < 40


def test_visualize_prediction_needs_the_kept_image() -> None:
    with pytest.raises(ValueError, match="keep_image"):
        visualize_prediction(Prediction(Detections.empty(), ImageSize(10, 10)), NAMES)


# -- regions -----------------------------------------------------------------------------------------

TRIANGLE = ((10.0, 10.0), (90.0, 10.0), (90.0, 90.0))  # image pixels: top edge y=10, right edge x=90
SQUARE = ((150.0, 40.0), (250.0, 40.0), (250.0, 140.0), (150.0, 140.0))
SIZE = ImageSize(320, 240)  # grey()'s


def region_plan(*regions: Region) -> RegionPlan:
    plan = plan_regions(RegionSet(regions, RegionAnchor.BOTTOM_CENTER), SIZE)
    assert plan is not None
    return plan


def prediction_of(rgb: np.ndarray, found: Detections, regions: RegionPlan | None, size: ImageSize) -> Prediction:
    """A Prediction of an image of ``size`` whose kept pixels are ``rgb`` (smaller: a reduced-scale decode)."""
    return Prediction(found, size, image=DecodedImage(rgb, size, "PNG"), regions=regions)


def runs(pixels: np.ndarray) -> list[tuple[tuple[int, ...], int]]:
    """(colour, count) of each run of equal pixels along a line of (N, 3) pixels."""
    found: list[tuple[tuple[int, ...], int]] = []
    for pixel in map(tuple, pixels.tolist()):
        if found and found[-1][0] == pixel:
            found[-1] = (pixel, found[-1][1] + 1)
        else:
            found.append((pixel, 1))
    return found


def test_regions_in_displayed_pixels_put_the_include_outline_on_the_polygon_edges() -> None:
    plan = region_plan(Region(TRIANGLE))
    picture = np.asarray(draw_prediction(prediction_of(grey(), Detections.empty(), plan, SIZE), NAMES))
    line_px = DrawStyle.for_size(320, 240).region_line_px
    halo = contrast_color(REGION_INCLUDE_COLOR)
    # Across the top edge (y=10) and the right edge (x=90): grey, halo, the outline, halo, grey.
    for across in (picture[4:16, 50], picture[50, 84:96]):
        assert runs(across)[1:4] == [(halo, 1), (REGION_INCLUDE_COLOR, line_px), (halo, 1)]
        assert runs(across)[0][0] == runs(across)[-1][0] == (GREY,) * 3  # the inside is left to be seen
        assert 3 <= runs(across)[0][1] <= 5  # the 4-px band straddles the edge, 6 px into the window
    assert (picture[150:, :] == GREY).all()  # everything away from the outline is untouched


@pytest.mark.parametrize("scale", [1, 2])
def test_an_exclude_region_is_dimmed_and_hatched_inside_and_outlined_in_its_own_colour(scale: int) -> None:
    """Pixels decoded at a reduced scale get the region scaled down with them, like the boxes."""
    plan = region_plan(Region(TRIANGLE), Region(SQUARE, exclude=True))
    rgb = grey(320 // scale, 240 // scale)
    plain = np.asarray(draw_prediction(prediction_of(rgb, Detections.empty(), None, SIZE), NAMES)).astype(int)
    picture = np.asarray(draw_prediction(prediction_of(rgb, Detections.empty(), plan, SIZE), NAMES)).astype(int)
    x1, y1, x2, y2 = (v // scale for v in (150, 40, 250, 140))
    inside = picture[y1 + 4 : y2 - 4, x1 + 4 : x2 - 4]
    assert (inside != plain[y1 + 4 : y2 - 4, x1 + 4 : x2 - 4]).any(axis=2).all()  # every pixel changed
    assert np.median(inside) < GREY / 2  # dimmed ...
    assert (inside > GREY).all(axis=2).any()  # ... and crossed by lighter stripes
    halo = contrast_color(REGION_EXCLUDE_COLOR)
    line_px = DrawStyle.for_size(*rgb.shape[1::-1]).region_line_px
    across = runs(picture[(y1 + y2) // 2, x1 - 6 : x1 + 3])  # its left edge, from outside
    assert across[:4] == [((GREY,) * 3, across[0][1]), (halo, 1), (REGION_EXCLUDE_COLOR, line_px), (halo, 1)]
    assert across[4][0][0] < GREY / 2  # then the dimmed inside
    assert (picture[y2 + 4 :, x1:x2] == GREY).all()  # nothing outside it is dimmed


def test_boxes_are_drawn_over_the_regions() -> None:
    style = DrawStyle.for_size(320, 240)
    plan = region_plan(Region(TRIANGLE))
    found = Detections.from_arrays([[40, 5, 60, 30]], [0.9], [1])  # its left side crosses the top edge
    picture = np.asarray(draw_prediction(prediction_of(grey(), found, plan, SIZE), NAMES))
    assert (picture[5:30, 40 - style.line_px] == class_color(1)).all()  # the ring's side, unbroken at y=10
    assert (REGION_INCLUDE_COLOR, style.region_line_px) in runs(picture[4:16, 70])  # the region line beside it


def test_without_regions_the_picture_is_the_detections_alone() -> None:
    rgb = np.random.default_rng(7).integers(0, 256, (240, 320, 3), np.uint8)
    found = Detections.from_arrays([[100, 80, 160, 140], [20, 20, 40, 60]], [0.9, 0.5], [1, 0])
    drawn = np.asarray(draw_prediction(prediction_of(rgb, found, None, SIZE), NAMES))
    assert (drawn == np.asarray(draw_detections(rgb, found, NAMES))).all()
    with_regions = np.asarray(draw_prediction(prediction_of(rgb, found, region_plan(Region(TRIANGLE)), SIZE), NAMES))
    assert (with_regions != drawn).any()  # the comparison can see a region


def test_drawing_regions_leaves_the_kept_image_unchanged() -> None:
    rgb = grey()
    rgb.flags.writeable = False  # as decode_image hands it over
    plan = region_plan(Region(TRIANGLE), Region(SQUARE, exclude=True))
    draw_prediction(prediction_of(rgb, Detections.empty(), plan, SIZE), NAMES)
    assert (rgb == GREY).all()
