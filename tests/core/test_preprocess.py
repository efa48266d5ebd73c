"""Tests of letterbox planning, the letterboxed tensor, and the mapping back to the source."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from factories import PREPROCESSINGS, SMALL_RGB, hand_made_tensor
from specks.core.preprocess import (
    BGR_RAW_TOP_LEFT,
    PAD_VALUE,
    RGB_UNIT_CENTERED,
    LetterboxPlan,
    Placement,
    Preprocessing,
    letterbox,
    letterbox_into,
    plan_letterbox,
)
from specks.errors import ConfigError

PAD_FILL = np.float32(PAD_VALUE / 255.0)


def solid_rgb(width: int, height: int, rgb: tuple[int, int, int]) -> np.ndarray:
    """An (height, width, 3) uint8 image of one colour."""
    return np.broadcast_to(np.asarray(rgb, np.uint8), (height, width, 3)).copy()


def noise_rgb(width: int, height: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    ("source_wh", "input_hw", "content_wh", "pad_xy", "scale"),
    [
        pytest.param((1280, 720), (640, 640), (640, 360), (0, 140), 0.5, id="landscape"),
        pytest.param((720, 1280), (640, 640), (360, 640), (140, 0), 0.5, id="portrait"),
        pytest.param((1000, 1000), (640, 640), (640, 640), (0, 0), 0.64, id="square"),
        pytest.param((320, 240), (640, 640), (640, 480), (0, 80), 2.0, id="smaller-than-input"),
        pytest.param((1000, 330), (640, 640), (640, 211), (0, 214), 0.64, id="odd-margin-rounds-down"),
        pytest.param((1000, 999), (640, 640), (640, 639), (0, 0), 0.64, id="one-pixel-short"),
        pytest.param((1920, 1080), (384, 640), (640, 360), (0, 12), 1 / 3, id="non-square-input"),
        pytest.param((3, 1000), (640, 640), (2, 640), (319, 0), 0.64, id="sliver"),
    ],
)
def test_plan_letterbox_fixed_input(
    source_wh: tuple[int, int],
    input_hw: tuple[int, int],
    content_wh: tuple[int, int],
    pad_xy: tuple[int, int],
    scale: float,
) -> None:
    plan = plan_letterbox(source_wh, input_hw)

    assert plan.source_wh == source_wh
    assert plan.input_hw == input_hw
    assert plan.content_wh == content_wh
    assert plan.pad_xy == pad_xy
    assert plan.scale == pytest.approx(scale)


@pytest.mark.parametrize(
    ("source_wh", "stride", "input_hw", "content_wh", "pad_xy"),
    [
        pytest.param((1280, 720), 32, (384, 640), (640, 360), (0, 12), id="landscape"),
        pytest.param((720, 1280), 32, (640, 384), (360, 640), (12, 0), id="portrait"),
        pytest.param((1000, 1000), 32, (640, 640), (640, 640), (0, 0), id="square"),
        pytest.param((100, 50), 32, (320, 640), (640, 320), (0, 0), id="smaller-than-input"),
        pytest.param((1000, 330), 32, (224, 640), (640, 211), (0, 6), id="rounds-up-to-stride"),
        pytest.param((1000, 330), 64, (256, 640), (640, 211), (0, 22), id="stride-64"),
        pytest.param((3, 1000), 32, (640, 32), (2, 640), (15, 0), id="sliver-gets-one-stride"),
    ],
)
def test_plan_letterbox_minimal_padding(
    source_wh: tuple[int, int],
    stride: int,
    input_hw: tuple[int, int],
    content_wh: tuple[int, int],
    pad_xy: tuple[int, int],
) -> None:
    plan = plan_letterbox(source_wh, (640, 640), stride=stride, minimal_padding=True)

    assert plan.input_hw == input_hw
    assert plan.content_wh == content_wh
    assert plan.pad_xy == pad_xy
    assert plan.input_hw[0] % stride == 0
    assert plan.input_hw[1] % stride == 0


@pytest.mark.parametrize(
    ("source_wh", "input_hw", "scale", "content_wh"),
    [
        pytest.param((2000, 1500), (1504, 2016), 1.0, (2000, 1500), id="stride-rounding-is-padded"),
        pytest.param((630, 630), (640, 640), 1.0, (630, 630), id="1.6%-short-is-padded"),
        pytest.param((600, 600), (640, 640), 640 / 600, (640, 640), id="6.7%-short-is-enlarged"),
        pytest.param((650, 650), (640, 640), 640 / 650, (640, 640), id="too-big-always-shrinks"),
    ],
)
def test_plan_letterbox_keeps_native_pixels_when_nearly_fitting(
    source_wh: tuple[int, int], input_hw: tuple[int, int], scale: float, content_wh: tuple[int, int]
) -> None:
    plan = plan_letterbox(source_wh, input_hw)

    assert plan.scale == pytest.approx(scale)
    assert plan.content_wh == content_wh
    (pad_x, pad_y), (content_w, content_h) = plan.pad_xy, plan.content_wh
    content_box = np.array([[pad_x, pad_y, pad_x + content_w, pad_y + content_h]], np.float32)
    np.testing.assert_allclose(plan.input_to_source(content_box)[0], [0, 0, *source_wh], atol=1e-3)


@pytest.mark.parametrize(
    ("source_wh", "input_hw", "minimal_padding", "expected_shape"),
    [
        pytest.param((1280, 720), (640, 640), False, (1, 3, 640, 640), id="fixed"),
        pytest.param((1280, 720), (640, 640), True, (1, 3, 384, 640), id="minimal-padding"),
        pytest.param((50, 80), (320, 320), False, (1, 3, 320, 320), id="upscaled"),
        pytest.param((640, 640), (640, 640), False, (1, 3, 640, 640), id="exact-fit"),
    ],
)
def test_letterbox_fills_the_margins_and_places_the_content(
    source_wh: tuple[int, int],
    input_hw: tuple[int, int],
    minimal_padding: bool,
    expected_shape: tuple[int, ...],
) -> None:
    colour = (255, 0, 51)
    plan = plan_letterbox(source_wh, input_hw, minimal_padding=minimal_padding)

    tensor = letterbox(solid_rgb(*source_wh, colour), plan)

    assert tensor.shape == expected_shape
    assert tensor.dtype == np.float32
    (pad_x, pad_y), (content_w, content_h) = plan.pad_xy, plan.content_wh
    content = np.zeros(expected_shape[2:], bool)
    content[pad_y : pad_y + content_h, pad_x : pad_x + content_w] = True
    for channel, value in enumerate(colour):
        np.testing.assert_allclose(tensor[0, channel][content], value / 255.0, atol=1e-6)
        assert np.all(tensor[0, channel][~content] == PAD_FILL)


def test_letterbox_copies_pixels_to_the_pad_offset_in_chw_order() -> None:
    rgb = noise_rgb(640, 360)  # already the content size: no resampling
    plan = plan_letterbox((640, 360), (640, 640))

    tensor = letterbox(rgb, plan)

    assert plan.pad_xy == (0, 140)
    np.testing.assert_allclose(tensor[0, :, 140:500, :], rgb.transpose(2, 0, 1) / 255.0, atol=1e-6)
    assert tensor.min() >= 0.0
    assert tensor.max() <= 1.0


def test_letterbox_into_writes_every_element_of_a_reused_buffer() -> None:
    plan = plan_letterbox((300, 500), (640, 640))
    out = np.full((3, 640, 640), np.nan, np.float32)

    letterbox_into(noise_rgb(300, 500), plan, out)

    assert not np.isnan(out).any()
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_letterbox_leaves_the_image_alone() -> None:
    rgb = noise_rgb(100, 60)
    before = rgb.copy()

    letterbox(rgb, plan_letterbox((100, 60), (64, 64)))

    np.testing.assert_array_equal(rgb, before)


SOURCES = [
    pytest.param((1920, 1080), False, id="landscape"),
    pytest.param((1080, 1920), True, id="portrait-minimal"),
    pytest.param((640, 480), False, id="native"),
    pytest.param((4000, 3000), True, id="large"),
    pytest.param((333, 500), False, id="odd-size"),
    pytest.param((1000, 330), True, id="odd-margin"),
    pytest.param((100, 50), False, id="upscaled"),
]


@pytest.mark.parametrize(("source_wh", "minimal_padding"), SOURCES)
def test_input_to_source_inverts_the_forward_mapping(source_wh: tuple[int, int], minimal_padding: bool) -> None:
    plan = plan_letterbox(source_wh, (640, 640), minimal_padding=minimal_padding)
    w, h = source_wh
    source_xyxy = np.array([[0, 0, w, h], [w / 3, h / 7, w / 2, h * 0.9], [1, 2, 3, 4]], np.float32)
    pad = np.array([*plan.pad_xy, *plan.pad_xy], np.float32)

    input_xyxy = source_xyxy * np.float32(plan.scale) + pad
    back = plan.input_to_source(input_xyxy)

    assert back.dtype == np.float32
    np.testing.assert_allclose(back, source_xyxy, atol=0.5)


@pytest.mark.parametrize(("source_wh", "minimal_padding"), SOURCES)
def test_input_to_source_maps_the_content_rectangle_onto_the_whole_source(
    source_wh: tuple[int, int], minimal_padding: bool
) -> None:
    plan = plan_letterbox(source_wh, (640, 640), minimal_padding=minimal_padding)
    (pad_x, pad_y), (content_w, content_h) = plan.pad_xy, plan.content_wh
    content_xyxy = np.array([[pad_x, pad_y, pad_x + content_w, pad_y + content_h]], np.float32)

    np.testing.assert_allclose(plan.input_to_source(content_xyxy), [[0, 0, *source_wh]], atol=1e-3)


def test_input_to_source_of_a_hand_made_plan() -> None:
    plan = LetterboxPlan(source_wh=(200, 100), input_hw=(64, 64), content_wh=(64, 32), pad_xy=(0, 16), scale=0.32)

    back = plan.input_to_source(np.array([[0, 16, 32, 32], [16, 0, 48, 64]], np.float32))

    np.testing.assert_allclose(back, [[0, 0, 100, 50], [50, -50, 150, 150]], atol=1e-4)


@pytest.mark.parametrize("preprocessing", PREPROCESSINGS)
def test_letterbox_matches_a_hand_made_tensor(preprocessing: Preprocessing) -> None:
    plan = plan_letterbox((6, 2), (4, 6), placement=preprocessing.placement)

    tensor = letterbox(SMALL_RGB, plan, preprocessing)

    assert plan.content_wh == (6, 2) and plan.scale == 1.0
    np.testing.assert_allclose(tensor, hand_made_tensor(preprocessing), rtol=1e-6)


def test_yolox_preprocessing_is_bgr_raw_values_padded_114_right_and_bottom() -> None:
    plan = plan_letterbox((63, 30), (64, 64), placement=Placement.TOP_LEFT)  # native pixels, 1 column to spare

    tensor = letterbox(solid_rgb(63, 30, (200, 100, 50)), plan, BGR_RAW_TOP_LEFT)

    assert np.all(tensor[0, :, :30, :63] == np.array([50.0, 100.0, 200.0], np.float32)[:, None, None])  # B, G, R
    assert np.all(tensor[0, :, :30, 63:] == 114.0)  # right margin
    assert np.all(tensor[0, :, 30:, :] == 114.0)  # bottom margin


def test_default_preprocessing_is_unchanged() -> None:
    """RGB, 0..1, centred on grey 114: what every model before YOLOX was fed, bit for bit."""
    assert Preprocessing() == RGB_UNIT_CENTERED
    assert RGB_UNIT_CENTERED.pad_fill == np.float32(PAD_VALUE / 255.0)
    rgb = noise_rgb(333, 500)
    plan = plan_letterbox((333, 500), (640, 640))
    content = np.asarray(Image.fromarray(rgb).resize(plan.content_wh, Image.Resampling.BILINEAR), np.float32)
    tensor = letterbox(rgb, plan)
    pad_x = plan.pad_xy[0]
    np.testing.assert_array_equal(
        tensor[0, :, :, pad_x : pad_x + plan.content_wh[0]], content.transpose(2, 0, 1) * np.float32(1.0 / 255.0)
    )


@pytest.mark.parametrize(("source_wh", "minimal_padding"), SOURCES)
def test_top_left_placement_is_undone(source_wh: tuple[int, int], minimal_padding: bool) -> None:
    plan = plan_letterbox(source_wh, (640, 640), minimal_padding=minimal_padding, placement=Placement.TOP_LEFT)
    centred = plan_letterbox(source_wh, (640, 640), minimal_padding=minimal_padding)
    content_w, content_h = plan.content_wh
    w, h = source_wh

    assert plan.pad_xy == (0, 0)
    assert (plan.input_hw, plan.content_wh, plan.scale) == (centred.input_hw, centred.content_wh, centred.scale)
    np.testing.assert_allclose(
        plan.input_to_source(np.array([[0, 0, content_w, content_h]], np.float32)), [[0, 0, w, h]], atol=1e-3
    )
    source_xyxy = np.array([[w / 3, h / 7, w / 2, h * 0.9]], np.float32)
    np.testing.assert_allclose(plan.input_to_source(source_xyxy * np.float32(plan.scale)), source_xyxy, atol=0.5)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        pytest.param({"value_scale": 0.0}, "got 0.0", id="zero-scale"),
        pytest.param({"pad_value": 300}, "got 300", id="pad-above-255"),
    ],
)
def test_preprocessing_is_validated(fields: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Preprocessing(**fields)  # type: ignore[arg-type]
