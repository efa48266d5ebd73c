"""Training samples as pure functions of (image, boxes, random generator): numpy + Pillow, no PyTorch.

Every function returns a new ``Sample`` and draws its randomness from the ``np.random.Generator``
it is given, so a seeded generator gives the same samples again.

Boxes that a crop or a mosaic tile cuts are handled by one rule (``_split_targets``): a box
keeping under 40 % of its area, or under 2 px wide or high, is no longer a target but an ignore
region, since a half-seen object must not be taught as background.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
from PIL import Image

from specks.core.imaging import decode_image
from specks.core.preprocess import PAD_VALUE
from specks.errors import DatasetError

from .datasets import LabelledImage

__all__ = [
    "MAX_TRAINING_PIXELS",
    "Sample",
    "flip_horizontal",
    "jitter_colour",
    "load_image_bgr",
    "mosaic",
    "sample_crop",
    "sample_whole_frame",
]

MAX_TRAINING_PIXELS = 100_000_000  # trusted local files: only a guard against absurd sizes
MIN_VISIBLE_FRACTION = 0.4
MIN_TARGET_PX = 2.0
_CROP_JITTER = 0.35  # an object-centred crop's centre moves by up to this fraction of the crop
_PAD_BGR = (PAD_VALUE, PAD_VALUE, PAD_VALUE)

FloatBoxes = npt.NDArray[np.float32]
# (boxes_xyxy (N, 4) float32, class_index (N,) int64, ignore_xyxy (M, 4) float32), as in Sample.
Targets = tuple[FloatBoxes, npt.NDArray[np.int64], FloatBoxes]


@dataclass(frozen=True)
class Sample:
    """One training input and its targets.

    image_bgr:   (H, W, 3) uint8 BGR (YOLOX takes BGR), C-contiguous.
    boxes_xyxy:  (N, 4) float32, x1 y1 x2 y2 in sample pixels.
    class_index: (N,) int64, index into the training set's class names.
    ignore_xyxy: (M, 4) float32, regions with no loss, in sample pixels.
    """

    image_bgr: npt.NDArray[np.uint8]
    boxes_xyxy: FloatBoxes
    class_index: npt.NDArray[np.int64]
    ignore_xyxy: FloatBoxes

    def __post_init__(self) -> None:
        image = self.image_bgr
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or not image.flags.c_contiguous:
            raise ValueError(f"image_bgr must be (H, W, 3) uint8 C-contiguous, got {image.shape} {image.dtype}")
        if self.boxes_xyxy.shape != (len(self.class_index), 4) or self.boxes_xyxy.dtype != np.float32:
            raise ValueError(f"boxes_xyxy must be (N, 4) float32, got {self.boxes_xyxy.shape} {self.boxes_xyxy.dtype}")
        if self.ignore_xyxy.ndim != 2 or self.ignore_xyxy.shape[1] != 4 or self.ignore_xyxy.dtype != np.float32:
            raise ValueError(f"ignore_xyxy must be (M, 4) float32, got {self.ignore_xyxy.shape}")

    @property
    def size_hw(self) -> tuple[int, int]:
        return self.image_bgr.shape[0], self.image_bgr.shape[1]


# -- loading ----------------------------------------------------------------------------------


def load_image_bgr(image: LabelledImage) -> npt.NDArray[np.uint8]:
    """Decode ``image.path`` -> (height, width, 3) uint8 BGR in the displayed orientation (EXIF applied).

    Resized to the labelled ``(image.height, image.width)`` should the file disagree with it.
    """
    try:
        data = image.path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"cannot read training image {image.path}: {exc}") from exc
    rgb = decode_image(data, max_image_pixels=MAX_TRAINING_PIXELS).rgb
    if rgb.shape[:2] != (image.height, image.width):
        rgb = np.asarray(Image.fromarray(rgb).resize((image.width, image.height), Image.Resampling.BILINEAR))
    return np.ascontiguousarray(rgb[:, :, ::-1])


# -- geometry ---------------------------------------------------------------------------------


def sample_crop(
    image_bgr: npt.NDArray[np.uint8],
    labels: LabelledImage,
    out_hw: tuple[int, int],
    rng: np.random.Generator,
    *,
    scale_range: tuple[float, float] = (0.6, 1.5),
    object_bias: float = 0.5,
) -> Sample:
    """A native-resolution crop of ``out_hw`` (h, w) sample pixels, at a log-uniform scale from ``scale_range``.

    The crop covers ``out_hw / scale`` image pixels. With probability ``object_bias`` it is
    centred near a random box (jittered), else placed uniformly; where it runs past the image
    the sample is padded with ``PAD_VALUE``. image_bgr: (labels.height, labels.width, 3) uint8.
    """
    _check_image(image_bgr, labels)
    scale = float(np.exp(rng.uniform(np.log(scale_range[0]), np.log(scale_range[1]))))
    crop_wh = np.array([out_hw[1], out_hw[0]], np.float64) / scale
    origin_xy = _crop_origin(labels, crop_wh, rng, object_bias)
    # Pillow's affine transform maps each sample pixel (u, v) to image (u / scale + x0, v / scale + y0).
    matrix = (1 / scale, 0.0, origin_xy[0], 0.0, 1 / scale, origin_xy[1])
    pixels = Image.fromarray(image_bgr).transform(
        (out_hw[1], out_hw[0]), Image.Transform.AFFINE, matrix, Image.Resampling.BILINEAR, fillcolor=_PAD_BGR
    )
    offset_xy = (-origin_xy[0] * scale, -origin_xy[1] * scale)
    targets = _place_targets(_targets_of(labels), (scale, scale), offset_xy, (0, 0, out_hw[1], out_hw[0]))
    return Sample(np.array(pixels), *targets)


def _crop_origin(
    labels: LabelledImage, crop_wh: npt.NDArray[np.float64], rng: np.random.Generator, object_bias: float
) -> npt.NDArray[np.float64]:
    """Top-left (x, y) of the crop in image pixels, kept inside the image where the crop fits."""
    image_wh = np.array([labels.width, labels.height], np.float64)
    low, high = np.minimum(0.0, image_wh - crop_wh), np.maximum(0.0, image_wh - crop_wh)
    if len(labels.boxes_xyxy) and rng.random() < object_bias:
        box = labels.boxes_xyxy[rng.integers(len(labels.boxes_xyxy))].astype(np.float64)
        centre = (box[:2] + box[2:]) / 2 + rng.uniform(-_CROP_JITTER, _CROP_JITTER, 2) * crop_wh
        return np.clip(centre - crop_wh / 2, low, high)
    return rng.uniform(low, high)


def sample_whole_frame(
    image_bgr: npt.NDArray[np.uint8],
    labels: LabelledImage,
    out_hw: tuple[int, int],
    rng: np.random.Generator,
    *,
    scale_range: tuple[float, float] = (0.8, 1.2),
) -> Sample:
    """The whole frame resized to fit ``out_hw`` (times a jitter from ``scale_range``, still fitting).

    Placed at the top-left and padded right and bottom with ``PAD_VALUE``, like YOLOX's letterbox.
    image_bgr: (labels.height, labels.width, 3) uint8.
    """
    _check_image(image_bgr, labels)
    fit = min(out_hw[0] / labels.height, out_hw[1] / labels.width)
    ratio = min(fit, fit * rng.uniform(*scale_range))
    new_wh = (max(1, round(labels.width * ratio)), max(1, round(labels.height * ratio)))
    resized = Image.fromarray(image_bgr).resize(new_wh, Image.Resampling.BILINEAR)
    canvas = np.full((out_hw[0], out_hw[1], 3), PAD_VALUE, np.uint8)
    canvas[: new_wh[1], : new_wh[0]] = np.asarray(resized)
    scale_xy = (new_wh[0] / labels.width, new_wh[1] / labels.height)
    return Sample(canvas, *_place_targets(_targets_of(labels), scale_xy, (0.0, 0.0), (0, 0, *new_wh)))


def flip_horizontal(sample: Sample) -> Sample:
    """Mirror the sample left-right, boxes and ignore regions with it."""
    width = sample.image_bgr.shape[1]
    return Sample(
        np.ascontiguousarray(sample.image_bgr[:, ::-1]),
        _flip_boxes(sample.boxes_xyxy, width),
        sample.class_index.copy(),
        _flip_boxes(sample.ignore_xyxy, width),
    )


def _flip_boxes(boxes_xyxy: FloatBoxes, width: int) -> FloatBoxes:
    """(N, 4) xyxy -> the same boxes mirrored in an image ``width`` pixels wide."""
    return np.stack([width - boxes_xyxy[:, 2], boxes_xyxy[:, 1], width - boxes_xyxy[:, 0], boxes_xyxy[:, 3]], axis=1)


def mosaic(samples: Sequence[Sample], out_hw: tuple[int, int], rng: np.random.Generator) -> Sample:
    """Four samples in a 2x2 grid of ``out_hw`` around a random centre (a quarter to three quarters across).

    Each sample meets the centre with one corner (top-left sample with its bottom-right corner,
    and so on) and is cut at its quadrant's edges; samples of about ``out_hw / 2`` suit it. Uncovered
    pixels are ``PAD_VALUE``; cut boxes follow the 40 % / 2 px rule.
    """
    if len(samples) != 4:
        raise ValueError(f"mosaic takes 4 samples, got {len(samples)}")
    height, width = out_hw
    cx, cy = int(rng.integers(width // 4, 3 * width // 4 + 1)), int(rng.integers(height // 4, 3 * height // 4 + 1))
    windows = [(0, 0, cx, cy), (cx, 0, width, cy), (0, cy, cx, height), (cx, cy, width, height)]
    canvas = np.full((height, width, 3), PAD_VALUE, np.uint8)
    parts = []
    for quadrant, (sample, window) in enumerate(zip(samples, windows, strict=True)):
        h, w = sample.size_hw
        offset_xy = (cx - w if quadrant in (0, 2) else cx, cy - h if quadrant in (0, 1) else cy)
        _paste(canvas, sample.image_bgr, offset_xy, window)
        parts.append(_place_targets(_targets_of(sample), (1.0, 1.0), offset_xy, window))
    boxes, class_index, ignore = (np.concatenate(arrays) for arrays in zip(*parts, strict=True))
    return Sample(canvas, boxes, class_index, ignore)


def _paste(
    canvas: npt.NDArray[np.uint8],
    image: npt.NDArray[np.uint8],
    offset_xy: tuple[int, int],
    window_xyxy: tuple[int, int, int, int],
) -> None:
    """Copy ``image`` placed at ``offset_xy`` into ``canvas``, only where it falls inside the window."""
    x1, y1 = max(window_xyxy[0], offset_xy[0]), max(window_xyxy[1], offset_xy[1])
    x2 = min(window_xyxy[2], offset_xy[0] + image.shape[1])
    y2 = min(window_xyxy[3], offset_xy[1] + image.shape[0])
    if x2 > x1 and y2 > y1:
        canvas[y1:y2, x1:x2] = image[y1 - offset_xy[1] : y2 - offset_xy[1], x1 - offset_xy[0] : x2 - offset_xy[0]]


# -- colour -----------------------------------------------------------------------------------


def jitter_colour(sample: Sample, rng: np.random.Generator, *, strength: float = 0.3) -> Sample:
    """Random brightness and contrast (factors 1 +- ``strength``), and half that in saturation.

    Saturation is left alone on grey images (all channels equal, e.g. thermal), which stay grey.
    """
    brightness, contrast, saturation = 1 + rng.uniform(-strength, strength, 3) * np.array([1.0, 1.0, 0.5])
    # Brightness, then contrast about the mean, is one affine map of the value: a 256-entry table
    # (a few times faster than float maths on a 640x640 frame).
    mean = brightness * float(sample.image_bgr.mean())
    table = np.arange(256, dtype=np.float32) * brightness * contrast + mean * (1 - contrast)
    image = np.rint(np.clip(table, 0, 255)).astype(np.uint8)[sample.image_bgr]
    if not _is_grey(sample.image_bgr):
        pixels = image.astype(np.float32)
        grey = pixels.mean(axis=2, keepdims=True)
        image = np.rint(np.clip(grey + (pixels - grey) * saturation, 0, 255)).astype(np.uint8)
    return replace(sample, image_bgr=image)


def _is_grey(image_bgr: npt.NDArray[np.uint8]) -> bool:
    blue, green, red = image_bgr[..., 0], image_bgr[..., 1], image_bgr[..., 2]
    return bool(np.array_equal(blue, green) and np.array_equal(green, red))


# -- boxes ------------------------------------------------------------------------------------


def _targets_of(labels: LabelledImage | Sample) -> Targets:
    return labels.boxes_xyxy, labels.class_index, labels.ignore_xyxy


def _place_targets(
    targets: Targets,
    scale_xy: tuple[float, float],
    offset_xy: tuple[float, float],
    window_xyxy: tuple[float, float, float, float],
) -> Targets:
    """Map boxes and ignore regions (``xy * scale + offset``), then cut them at the window (the 40 % / 2 px rule)."""
    boxes_xyxy, class_index, ignore_xyxy = targets
    mapped_boxes = _map_boxes(boxes_xyxy, scale_xy, offset_xy)
    mapped_ignore = _map_boxes(ignore_xyxy, scale_xy, offset_xy)
    return _split_targets(mapped_boxes, class_index, mapped_ignore, window_xyxy)


def _map_boxes(boxes_xyxy: FloatBoxes, scale_xy: tuple[float, float], offset_xy: tuple[float, float]) -> FloatBoxes:
    scale = np.array([*scale_xy, *scale_xy], np.float64)
    offset = np.array([*offset_xy, *offset_xy], np.float64)
    return (boxes_xyxy.astype(np.float64) * scale + offset).astype(np.float32)


def _split_targets(
    boxes_xyxy: FloatBoxes,
    class_index: npt.NDArray[np.int64],
    ignore_xyxy: FloatBoxes,
    window_xyxy: tuple[float, float, float, float],
) -> tuple[FloatBoxes, npt.NDArray[np.int64], FloatBoxes]:
    """Cut boxes at the window -> (targets (K, 4), their classes (K,), ignore regions (M', 4)), float32 xyxy.

    A box keeping at least ``MIN_VISIBLE_FRACTION`` of its area and ``MIN_TARGET_PX`` of width and
    height stays a target; any other box with something left becomes an ignore region. Ignore
    regions are cut too, and dropped when nothing is left.
    """
    clipped = _clip(boxes_xyxy, window_xyxy)
    visible = _area(clipped) / np.maximum(_area(boxes_xyxy), 1e-9)
    wide_enough = np.minimum(clipped[:, 2] - clipped[:, 0], clipped[:, 3] - clipped[:, 1]) >= MIN_TARGET_PX
    is_target = (visible >= MIN_VISIBLE_FRACTION) & wide_enough
    demoted = clipped[~is_target & (_area(clipped) > 0)]
    ignore = _clip(ignore_xyxy, window_xyxy)
    ignore = np.concatenate([ignore[_area(ignore) > 0], demoted]).astype(np.float32)
    return clipped[is_target], class_index[is_target], ignore


def _clip(boxes_xyxy: FloatBoxes, window_xyxy: tuple[float, float, float, float]) -> FloatBoxes:
    x1, y1, x2, y2 = window_xyxy
    return np.clip(boxes_xyxy, [x1, y1, x1, y1], [x2, y2, x2, y2]).astype(np.float32)


def _area(boxes_xyxy: FloatBoxes) -> npt.NDArray[np.float32]:
    """(N,) area of (N, 4) xyxy boxes; 0 for boxes with no extent."""
    return np.maximum(boxes_xyxy[:, 2] - boxes_xyxy[:, 0], 0) * np.maximum(boxes_xyxy[:, 3] - boxes_xyxy[:, 1], 0)


def _check_image(image_bgr: npt.NDArray[np.uint8], labels: LabelledImage) -> None:
    if image_bgr.shape != (labels.height, labels.width, 3) or image_bgr.dtype != np.uint8:
        raise ValueError(
            f"image_bgr must be ({labels.height}, {labels.width}, 3) uint8 for {labels.path.name}, "
            f"got {image_bgr.shape} {image_bgr.dtype}"
        )
