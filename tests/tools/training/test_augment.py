"""Training samples: crops, whole frames, flips, colour, mosaic; boxes stay on their objects."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from factories import exif_rotated_jpeg
from specks.core.preprocess import PAD_VALUE
from specks.errors import DatasetError
from specks.tools.training.augment import (
    Sample,
    _split_targets,
    flip_horizontal,
    jitter_colour,
    load_image_bgr,
    mosaic,
    sample_crop,
    sample_whole_frame,
)
from specks.tools.training.datasets import LabelledImage

BRIGHT = 250
EMPTY = np.zeros((0, 4), np.float32)


def labelled(width: int, height: int, boxes: list[list[float]], ignore: Sequence[list[float]] = ()) -> LabelledImage:
    return LabelledImage(
        Path("/unused.png"),
        width,
        height,
        np.array(boxes, np.float32).reshape(-1, 4),
        np.arange(len(boxes), dtype=np.int64),
        np.array(ignore, np.float32).reshape(-1, 4),
    )


def image_with_bright_box(width: int, height: int, box_xyxy: tuple[int, int, int, int]) -> np.ndarray:
    """(height, width, 3) uint8 black with BRIGHT pixels exactly covering the integer box."""
    image = np.zeros((height, width, 3), np.uint8)
    x1, y1, x2, y2 = box_xyxy
    image[y1:y2, x1:x2] = BRIGHT
    return image


def bright_extent(image_bgr: np.ndarray) -> np.ndarray | None:
    """x1 y1 x2 y2 (pixel edges) of the pixels at least half as bright as BRIGHT, or None."""
    ys, xs = np.nonzero(image_bgr[..., 0] >= BRIGHT / 2)
    if len(xs) == 0:
        return None
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


# -- loading ----------------------------------------------------------------------------------


def test_load_image_bgr_reverses_the_channels(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    Image.new("RGB", (16, 8), (10, 20, 30)).save(path)
    image_bgr = load_image_bgr(LabelledImage(path, 16, 8))

    assert image_bgr.shape == (8, 16, 3) and image_bgr.dtype == np.uint8 and image_bgr.flags.c_contiguous
    assert image_bgr[0, 0].tolist() == [30, 20, 10]


def test_load_image_bgr_applies_exif_orientation(tmp_path: Path) -> None:
    path = tmp_path / "rotated.jpg"
    path.write_bytes(exif_rotated_jpeg((40, 20), orientation=6))  # stored 40x20, displayed 20x40
    assert load_image_bgr(LabelledImage(path, 20, 40)).shape == (40, 20, 3)


def test_load_image_bgr_resizes_to_the_labelled_size(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    Image.new("RGB", (16, 8), (10, 20, 30)).save(path)
    assert load_image_bgr(LabelledImage(path, 32, 16)).shape == (16, 32, 3)


def test_load_image_bgr_of_a_missing_file_is_a_dataset_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="cannot read training image"):
        load_image_bgr(LabelledImage(tmp_path / "gone.png", 8, 8))


# -- crops ------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(12))
def test_crop_keeps_boxes_on_their_objects(seed: int) -> None:
    box = (100, 60, 140, 90)
    image = image_with_bright_box(300, 200, box)
    sample = sample_crop(image, labelled(300, 200, [list(box)]), (64, 96), np.random.default_rng(seed), object_bias=1.0)

    assert sample.image_bgr.shape == (64, 96, 3)
    extent = bright_extent(sample.image_bgr)
    assert extent is not None  # the crop is centred near the only box
    regions = np.concatenate([sample.boxes_xyxy, sample.ignore_xyxy])
    assert len(regions) == 1
    # The bright pixels are where the box says, within a pixel of resampling blur.
    np.testing.assert_allclose(extent, regions[0], atol=1.5)


def test_crop_pads_past_the_image_with_the_pad_value() -> None:
    image = np.full((20, 30, 3), 7, np.uint8)
    labels = labelled(30, 20, [[5, 5, 15, 15]])
    sample = sample_crop(image, labels, (80, 80), np.random.default_rng(0), scale_range=(1.0, 1.0), object_bias=0.0)

    values = set(np.unique(sample.image_bgr).tolist())
    assert {7, PAD_VALUE} <= values
    assert (sample.image_bgr == 7).all(axis=2).sum() == pytest.approx(20 * 30, abs=60)


def test_crop_turns_tiny_boxes_into_ignore_regions_and_maps_ignore_regions() -> None:
    image = np.zeros((400, 400, 3), np.uint8)
    labels = labelled(400, 400, [[100, 100, 104, 104]], ignore=[[0, 0, 400, 400]])
    # Scale 0.25: the crop shows the whole image at a quarter size, the 4 px box shrinks to 1 px.
    sample = sample_crop(image, labels, (100, 100), np.random.default_rng(0), scale_range=(0.25, 0.25))

    assert sample.boxes_xyxy.shape == (0, 4) and sample.class_index.shape == (0,)
    np.testing.assert_allclose(sample.ignore_xyxy, [[0, 0, 100, 100], [25, 25, 26, 26]], atol=1e-4)


@pytest.mark.parametrize(
    ("box", "target", "ignore"),
    [
        ([80, 10, 120, 30], [80, 10, 100, 30], None),  # half inside: still a target
        ([90, 10, 130, 30], None, [90, 10, 100, 30]),  # a quarter inside: ignored
        ([10, 10, 11.5, 30], None, [10, 10, 11.5, 30]),  # 1.5 px wide: ignored
        ([200, 200, 210, 210], None, None),  # nothing inside: gone
        ([10, 10, 40, 40], [10, 10, 40, 40], None),  # wholly inside: unchanged
    ],
)
def test_the_40_percent_and_2_px_rule(box: list[float], target: list[float] | None, ignore: list[float] | None) -> None:
    boxes, class_index, ignore_xyxy = _split_targets(
        np.array([box], np.float32), np.array([3], np.int64), np.zeros((0, 4), np.float32), (0, 0, 100, 100)
    )
    np.testing.assert_allclose(boxes, [target] if target else np.zeros((0, 4)))
    assert class_index.tolist() == ([3] if target else [])
    np.testing.assert_allclose(ignore_xyxy, [ignore] if ignore else np.zeros((0, 4)))


def test_ignore_regions_are_cut_at_the_window() -> None:
    ignore = np.array([[90, 90, 120, 120], [150, 150, 160, 160]], np.float32)
    _, _, ignore_xyxy = _split_targets(np.zeros((0, 4), np.float32), np.zeros(0, np.int64), ignore, (0, 0, 100, 100))
    np.testing.assert_array_equal(ignore_xyxy, [[90, 90, 100, 100]])


# -- whole frame ------------------------------------------------------------------------------


@pytest.mark.parametrize(("jitter", "expected_wh"), [(1.0, (64, 32)), (1.2, (64, 32)), (0.5, (32, 16))])
def test_whole_frame_is_letterboxed_at_the_top_left(jitter: float, expected_wh: tuple[int, int]) -> None:
    image = np.full((100, 200, 3), 50, np.uint8)
    labels = labelled(200, 100, [[100, 50, 200, 100]])
    sample = sample_whole_frame(image, labels, (64, 64), np.random.default_rng(0), scale_range=(jitter, jitter))

    width, height = expected_wh
    assert sample.image_bgr.shape == (64, 64, 3)
    assert (sample.image_bgr[:height, :width] == 50).all()
    assert (sample.image_bgr[height:] == PAD_VALUE).all() and (sample.image_bgr[:, width:] == PAD_VALUE).all()
    np.testing.assert_allclose(sample.boxes_xyxy, [[width / 2, height / 2, width, height]])


# -- flip and colour --------------------------------------------------------------------------


def small_sample() -> Sample:
    image = np.zeros((4, 6, 3), np.uint8)
    image[0, 1] = [1, 2, 3]
    return Sample(
        image, np.array([[1, 0, 3, 2]], np.float32), np.array([2], np.int64), np.array([[0, 0, 1, 4]], np.float32)
    )


def test_flip_mirrors_pixels_and_boxes() -> None:
    sample = small_sample()
    flipped = flip_horizontal(sample)

    assert flipped.image_bgr[0, 4].tolist() == [1, 2, 3] and flipped.image_bgr.flags.c_contiguous
    np.testing.assert_array_equal(flipped.boxes_xyxy, [[3, 0, 5, 2]])
    np.testing.assert_array_equal(flipped.ignore_xyxy, [[5, 0, 6, 4]])
    assert flipped.class_index.tolist() == [2]
    twice = flip_horizontal(flipped)
    np.testing.assert_array_equal(twice.image_bgr, sample.image_bgr)
    np.testing.assert_array_equal(twice.boxes_xyxy, sample.boxes_xyxy)


def test_colour_jitter_changes_pixels_not_boxes() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    sample = Sample(image, np.array([[1, 1, 5, 5]], np.float32), np.array([0], np.int64), np.zeros((0, 4), np.float32))
    jittered = jitter_colour(sample, np.random.default_rng(1), strength=0.5)

    assert jittered.image_bgr.shape == image.shape and jittered.image_bgr.dtype == np.uint8
    assert not np.array_equal(jittered.image_bgr, image)
    np.testing.assert_array_equal(jittered.boxes_xyxy, sample.boxes_xyxy)
    unchanged = jitter_colour(sample, np.random.default_rng(1), strength=0.0)
    np.testing.assert_array_equal(unchanged.image_bgr, image)


@pytest.mark.parametrize("seed", range(5))
def test_colour_jitter_keeps_grey_images_grey(seed: int) -> None:
    grey = np.random.default_rng(seed).integers(0, 256, (16, 16, 1), dtype=np.uint8).repeat(3, axis=2)
    sample = Sample(grey, np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros((0, 4), np.float32))
    out = jitter_colour(sample, np.random.default_rng(seed), strength=0.5).image_bgr
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])
    assert not np.array_equal(out, grey)


# -- mosaic -----------------------------------------------------------------------------------


def solid_sample(value: int, class_index: int) -> Sample:
    return Sample(
        np.full((32, 32, 3), value, np.uint8),
        np.array([[8, 8, 24, 24]], np.float32),
        np.array([class_index], np.int64),
        np.zeros((0, 4), np.float32),
    )


@pytest.mark.parametrize("seed", range(6))
def test_mosaic_puts_four_samples_around_a_centre(seed: int) -> None:
    values = (40, 80, 160, 200)
    out = mosaic([solid_sample(v, i) for i, v in enumerate(values)], (64, 64), np.random.default_rng(seed))

    assert out.image_bgr.shape == (64, 64, 3)
    assert len(out.boxes_xyxy) + len(out.ignore_xyxy) == 4  # each box is cut, never lost
    assert (out.boxes_xyxy >= 0).all() and (out.boxes_xyxy <= 64).all()
    for box, class_index in zip(out.boxes_xyxy, out.class_index, strict=True):
        x, y = int((box[0] + box[2]) / 2), int((box[1] + box[3]) / 2)
        assert out.image_bgr[y, x, 0] == values[class_index]  # each box lies on its own sample
    by_class = {int(c): box for box, c in zip(out.boxes_xyxy, out.class_index, strict=True)}
    if 0 in by_class and 1 in by_class:
        assert by_class[0][2] <= by_class[1][0]  # top-left sample left of top-right sample
    if 0 in by_class and 2 in by_class:
        assert by_class[0][3] <= by_class[2][1]  # top-left sample above bottom-left sample


@pytest.mark.parametrize("seed", range(4))
def test_mosaic_quadrants_meet_at_the_centre_and_boxes_follow(seed: int) -> None:
    # Canvas-sized samples fill their quadrants, so the centre can be read off the pixels.
    values = (40, 80, 160, 200)
    samples = [
        Sample(np.full((64, 64, 3), v, np.uint8), np.array([[20, 20, 44, 44]], np.float32), np.array([i]), EMPTY)
        for i, v in enumerate(values)
    ]
    out = mosaic(samples, (64, 64), np.random.default_rng(seed))

    cx, cy = int((out.image_bgr[0, :, 0] == 40).sum()), int((out.image_bgr[:, 0, 0] == 40).sum())
    assert 16 <= cx <= 48 and 16 <= cy <= 48
    quadrants = [out.image_bgr[:cy, :cx], out.image_bgr[:cy, cx:], out.image_bgr[cy:, :cx], out.image_bgr[cy:, cx:]]
    assert [set(np.unique(q).tolist()) for q in quadrants] == [{v} for v in values]
    # Each sample meets the centre with its inner corner: its box lands there, cut at the quadrant.
    windows = [(0, 0, cx, cy), (cx, 0, 64, cy), (0, cy, cx, 64), (cx, cy, 64, 64)]
    offsets = [(cx - 64, cy - 64), (cx, cy - 64), (cx - 64, cy), (cx, cy)]
    regions = sorted(np.concatenate([out.boxes_xyxy, out.ignore_xyxy]).tolist())
    expected = []
    for (x1, y1, x2, y2), (dx, dy) in zip(windows, offsets, strict=True):
        mapped = np.array([20 + dx, 20 + dy, 44 + dx, 44 + dy], np.float32)
        cut = np.clip(mapped, [x1, y1, x1, y1], [x2, y2, x2, y2])
        if cut[2] > cut[0] and cut[3] > cut[1]:  # nothing left: dropped
            expected.append(cut.tolist())
    assert regions == sorted(expected)


def test_mosaic_takes_exactly_four_samples() -> None:
    with pytest.raises(ValueError, match="4 samples"):
        mosaic([solid_sample(1, 0)] * 3, (64, 64), np.random.default_rng(0))


# -- determinism and checks -------------------------------------------------------------------


def all_arrays(sample: Sample) -> list[np.ndarray]:
    return [sample.image_bgr, sample.boxes_xyxy, sample.class_index, sample.ignore_xyxy]


def test_same_seed_same_samples() -> None:
    image = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    labels = labelled(80, 60, [[10, 10, 30, 30], [50, 20, 70, 50]])

    def make(seed: int) -> list[Sample]:
        rng = np.random.default_rng(seed)
        crop = jitter_colour(sample_crop(image, labels, (32, 32), rng), rng)
        frame = sample_whole_frame(image, labels, (32, 32), rng)
        return [crop, frame, mosaic([crop, frame, crop, frame], (64, 64), rng)]

    for first, again in zip(make(5), make(5), strict=True):
        for a, b in zip(all_arrays(first), all_arrays(again), strict=True):
            np.testing.assert_array_equal(a, b)
    assert not np.array_equal(make(5)[0].image_bgr, make(6)[0].image_bgr)


def test_functions_refuse_an_image_of_the_wrong_size() -> None:
    with pytest.raises(ValueError, match="image_bgr must be"):
        sample_crop(np.zeros((10, 10, 3), np.uint8), labelled(20, 10, []), (8, 8), np.random.default_rng(0))


def test_sample_checks_its_arrays() -> None:
    with pytest.raises(ValueError, match="boxes_xyxy"):
        Sample(np.zeros((4, 4, 3), np.uint8), np.zeros((1, 4), np.float64), np.zeros(1, np.int64), np.zeros((0, 4)))  # type: ignore[arg-type]
