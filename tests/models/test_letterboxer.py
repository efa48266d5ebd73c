"""The ONNX Runtime letterboxer agrees with the Pillow + numpy reference in specks.core.preprocess."""

from __future__ import annotations

import numpy as np
import pytest

from factories import PREPROCESSINGS, SMALL_RGB, hand_made_tensor
from specks.core.preprocess import (
    BGR_RAW_TOP_LEFT,
    PAD_VALUE,
    Placement,
    Preprocessing,
    letterbox,
    plan_letterbox,
    reduce_rgb,
)
from specks.models.letterboxer import OrtLetterboxer


@pytest.fixture(scope="module")
def letterboxer() -> OrtLetterboxer:
    return OrtLetterboxer(threads=1)


def smooth_image(width: int, height: int) -> np.ndarray:
    """Gradients: resampling differences stay small, so the comparison is meaningful."""
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    return np.stack([x + 0 * y, y + 0 * x, (x + y) / 2], axis=2).astype(np.uint8)


@pytest.mark.parametrize(
    ("source_wh", "input_hw", "minimal_padding"),
    [
        ((750, 563), (640, 640), False),  # mild shrink of a reduced-scale JPEG decode
        ((2000, 1500), (1888, 2528), True),  # the upscaled small-object tile
        ((6000, 4000), (640, 640), False),  # big shrink: reduced in uint8 first
        ((300, 200), (640, 640), False),  # small image enlarged
        ((641, 17), (640, 640), False),  # extreme aspect, odd padding
    ],
)
def test_matches_the_reference(letterboxer, source_wh, input_hw, minimal_padding) -> None:  # type: ignore[no-untyped-def]
    rgb = smooth_image(*source_wh)
    plan = plan_letterbox(source_wh, input_hw, minimal_padding=minimal_padding)
    tensor = letterboxer(rgb, plan)
    reference = letterbox(rgb, plan)
    assert tensor.shape == reference.shape == (1, 3, *plan.input_hw)
    assert tensor.dtype == np.float32
    assert float(np.abs(tensor - reference).mean()) < 0.01
    pad_x, pad_y = plan.pad_xy
    if pad_y:
        assert np.allclose(tensor[0, :, 0, :], PAD_VALUE / 255)
    if pad_x:
        assert np.allclose(tensor[0, :, :, 0], PAD_VALUE / 255)


@pytest.mark.parametrize("preprocessing", PREPROCESSINGS)
def test_matches_a_hand_made_tensor(preprocessing: Preprocessing) -> None:
    plan = plan_letterbox((6, 2), (4, 6), placement=preprocessing.placement)

    tensor = OrtLetterboxer(threads=1, preprocessing=preprocessing)(SMALL_RGB, plan)

    np.testing.assert_allclose(tensor, hand_made_tensor(preprocessing), rtol=1e-6)


@pytest.mark.parametrize(
    ("source_wh", "input_hw", "minimal_padding"),
    [
        ((750, 563), (416, 416), False),  # shrink, bottom margin
        ((2000, 1500), (1504, 2016), True),  # native pixels, whole drone photo
        ((300, 200), (640, 640), False),  # enlarged, right and bottom margins
    ],
)
def test_yolox_preprocessing_matches_the_reference(source_wh, input_hw, minimal_padding) -> None:  # type: ignore[no-untyped-def]
    rgb = smooth_image(*source_wh)
    plan = plan_letterbox(source_wh, input_hw, minimal_padding=minimal_padding, placement=Placement.TOP_LEFT)

    tensor = OrtLetterboxer(threads=1, preprocessing=BGR_RAW_TOP_LEFT)(rgb, plan)
    reference = letterbox(rgb, plan, BGR_RAW_TOP_LEFT)

    assert tensor.shape == reference.shape == (1, 3, *plan.input_hw)
    assert float(np.abs(tensor - reference).mean()) < 0.01 * 255  # channels swapped would differ by tens
    content_w, content_h = plan.content_wh
    assert np.all(tensor[0, :, content_h:, :] == PAD_VALUE)
    assert np.all(tensor[0, :, :, content_w:] == PAD_VALUE)


def test_reduce_rgb_is_a_box_filter() -> None:
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[:2, :2] = 200
    reduced = reduce_rgb(rgb, 2)
    assert reduced.shape == (2, 2, 3)
    assert reduced[0, 0, 0] == 200 and reduced[1, 1, 0] == 0
    assert reduce_rgb(rgb, 1) is rgb


class _NoRun:
    def run(self, *args: object) -> None:
        raise AssertionError("a native-size letterbox must not run the ONNX Runtime graph")


def test_native_size_content_is_written_by_numpy_not_the_graph() -> None:
    """A tile that needs no resize skips ONNX Runtime, whose float intermediates would stay in its arena."""
    letterboxer = OrtLetterboxer(threads=1)
    letterboxer._sessions = {False: _NoRun(), True: _NoRun()}  # type: ignore[dict-item]
    rgb = smooth_image(2000, 1500)
    plan = plan_letterbox((2000, 1500), (1504, 2016), minimal_padding=True)  # a native tile, padded to the stride
    assert plan.content_wh == (2000, 1500)
    assert np.array_equal(letterboxer(rgb, plan), letterbox(rgb, plan))
