"""Annotated pictures: outlines where the boxes are, halos, labels off tiny boxes, JPEG round trip."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from specks.imaging import decode_image
from specks.pipeline import Prediction
from specks.types import Detections, ImageSize
from specks.visualize import (
    BLACK,
    PALETTE,
    WHITE,
    DrawStyle,
    class_color,
    contrast_color,
    draw_detections,
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
