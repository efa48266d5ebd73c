"""Letterbox an RGB image into a model input tensor, keeping what is needed to undo it.

Frames: *source* is the image array handed to ``letterbox`` (it may be a reduced-scale
decode of the original photo); *input* is the model's input tensor. A point maps as
``input = source * scale + pad``.

What a model expects of its input (channel order, value scale, padding value and where the
image sits) is its ``Preprocessing``: YOLOv5 / Ultralytics / Darknet models take RGB in 0..1,
centred on grey 114; YOLOX takes BGR in 0..255 at the top-left, padded 114 right and bottom.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image

from ..errors import ConfigError
from .boxes import FloatArray

PAD_VALUE = 114  # grey fill of the letterbox margins, as the YOLO family is trained with
# An enlargement closer to 1 than this is not made: the image keeps its pixels and is padded.
# Resampling by a fraction of a percent (e.g. 2000x1500 fitted to a stride-32 input of 2016x1504)
# only blurs; measured on VisDrone, native pixels scored AP50 0.420 against 0.409 resampled.
NATIVE_SCALE_TOLERANCE = 0.03


class ChannelOrder(str, enum.Enum):
    RGB = "rgb"
    BGR = "bgr"


class Placement(str, enum.Enum):
    """Where the resized image sits in the model input; the rest is padding."""

    CENTER = "center"
    TOP_LEFT = "top_left"


@dataclass(frozen=True)
class Preprocessing:
    """What a model expects of its input tensor.

    channel_order: order of the 3 input channels.
    value_scale:   input value per 0..255 pixel value (1/255: 0..1 inputs; 1.0: raw 0..255).
    pad_value:     fill of the letterbox margins, in 0..255 pixel values (scaled like the pixels).
    placement:     where the image sits inside the input.
    """

    channel_order: ChannelOrder = ChannelOrder.RGB
    value_scale: float = 1 / 255
    pad_value: int = PAD_VALUE
    placement: Placement = Placement.CENTER

    def __post_init__(self) -> None:
        if not self.value_scale > 0:
            raise ConfigError(f"preprocessing value_scale must be positive (got {self.value_scale})")
        if not 0 <= self.pad_value <= 255:
            raise ConfigError(f"preprocessing pad_value must be a pixel value in 0..255 (got {self.pad_value})")

    @property
    def pad_fill(self) -> np.float32:
        """The margins' value in the input tensor."""
        return np.float32(self.pad_value * self.value_scale)

    def to_dict(self) -> dict[str, object]:
        return {
            "channel_order": self.channel_order.value,
            "value_scale": self.value_scale,
            "pad_value": self.pad_value,
            "placement": self.placement.value,
        }


# What YOLOv5, Ultralytics and Specks' Darknet conversions are trained with.
RGB_UNIT_CENTERED = Preprocessing()
# YOLOX's own ``preproc``: BGR (OpenCV order), no scaling, image top-left, 114 right and bottom.
BGR_RAW_TOP_LEFT = Preprocessing(ChannelOrder.BGR, 1.0, PAD_VALUE, Placement.TOP_LEFT)


@dataclass(frozen=True)
class LetterboxPlan:
    """Where a source image of ``source_wh`` lands inside a model input of ``input_hw``.

    content_wh: size of the resized image inside the input (pixels).
    pad_xy:     left and top margins (pixels of the input); (0, 0) for top-left placement.
    scale:      input pixels per source pixel (same on both axes).
    """

    source_wh: tuple[int, int]
    input_hw: tuple[int, int]
    content_wh: tuple[int, int]
    pad_xy: tuple[int, int]
    scale: float

    def input_to_source(self, xyxy: FloatArray) -> FloatArray:
        """Map (N, 4) boxes from input pixels back to source pixels (not clipped)."""
        sx = self.content_wh[0] / self.source_wh[0]
        sy = self.content_wh[1] / self.source_wh[1]
        pad_x, pad_y = self.pad_xy
        offset = np.array([pad_x, pad_y, pad_x, pad_y], np.float32)
        factor = np.array([sx, sy, sx, sy], np.float32)
        return ((xyxy - offset) / factor).astype(np.float32)


def plan_letterbox(
    source_wh: tuple[int, int],
    input_hw: tuple[int, int],
    *,
    stride: int = 32,
    minimal_padding: bool = False,
    placement: Placement = Placement.CENTER,
) -> LetterboxPlan:
    """Fit ``source_wh`` inside ``input_hw`` keeping the aspect ratio, centred or at the top-left.

    With ``minimal_padding`` (models with dynamic height/width) the input shrinks to the
    smallest multiple of ``stride`` that holds the content, which saves compute on
    non-square photos. A source that fits with under ``NATIVE_SCALE_TOLERANCE`` to spare is
    padded, not enlarged.
    """
    src_w, src_h = source_wh
    max_h, max_w = input_hw
    scale = min(max_w / src_w, max_h / src_h)
    if 1 < scale < 1 + NATIVE_SCALE_TOLERANCE:
        scale = 1.0
    content_w = max(1, min(max_w, round(src_w * scale)))
    content_h = max(1, min(max_h, round(src_h * scale)))
    if minimal_padding:
        in_w = min(max_w, math.ceil(content_w / stride) * stride)
        in_h = min(max_h, math.ceil(content_h / stride) * stride)
    else:
        in_w, in_h = max_w, max_h
    pad = ((in_w - content_w) // 2, (in_h - content_h) // 2) if placement is Placement.CENTER else (0, 0)
    return LetterboxPlan(source_wh, (in_h, in_w), (content_w, content_h), pad, scale)


def resize_rgb(rgb: npt.NDArray[np.uint8], size_wh: tuple[int, int]) -> npt.NDArray[np.uint8]:
    """Resize an (h, w, 3) uint8 image to ``size_wh`` with antialiased bilinear filtering."""
    if (rgb.shape[1], rgb.shape[0]) == size_wh:
        return rgb
    return np.asarray(Image.fromarray(rgb).resize(size_wh, Image.Resampling.BILINEAR))


def reduce_rgb(rgb: npt.NDArray[np.uint8], factor: int) -> npt.NDArray[np.uint8]:
    """Shrink an (h, w, 3) uint8 image by an integer ``factor`` with a box filter (fast, no aliasing)."""
    if factor <= 1:
        return rgb
    return np.asarray(Image.fromarray(rgb).reduce(factor))


def letterbox_into(
    rgb: npt.NDArray[np.uint8],
    plan: LetterboxPlan,
    out: npt.NDArray[np.float32],
    preprocessing: Preprocessing = RGB_UNIT_CENTERED,
) -> None:
    """Write the letterboxed CHW image into ``out`` of shape (3, H, W) float32, in the model's
    channel order and value scale (``plan`` already holds its placement)."""
    content = resize_rgb(rgb, plan.content_wh)
    if preprocessing.channel_order is ChannelOrder.BGR:
        content = content[:, :, ::-1]
    (pad_x, pad_y), (cw, ch) = plan.pad_xy, plan.content_wh
    pad_fill = preprocessing.pad_fill
    out[:, :pad_y, :] = pad_fill
    out[:, pad_y + ch :, :] = pad_fill
    out[:, pad_y : pad_y + ch, :pad_x] = pad_fill
    out[:, pad_y : pad_y + ch, pad_x + cw :] = pad_fill
    value_scale = np.float32(preprocessing.value_scale)
    np.multiply(content.transpose(2, 0, 1), value_scale, out=out[:, pad_y : pad_y + ch, pad_x : pad_x + cw])


def letterbox(
    rgb: npt.NDArray[np.uint8], plan: LetterboxPlan, preprocessing: Preprocessing = RGB_UNIT_CENTERED
) -> npt.NDArray[np.float32]:
    """(h, w, 3) uint8 RGB -> (1, 3, H, W) float32 model input as ``preprocessing`` says."""
    in_h, in_w = plan.input_hw
    tensor = np.empty((1, 3, in_h, in_w), np.float32)
    letterbox_into(rgb, plan, tensor[0], preprocessing)
    return tensor
