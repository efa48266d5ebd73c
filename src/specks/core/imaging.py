"""Untrusted image file bytes -> RGB uint8 array: format allow-list, pixel limits, EXIF, reduced scale.

``decode_image`` turns bytes into a ``DecodedImage`` and ``read_image_size`` reads only the
header, each translating library errors into ``ImageDecodeError`` / ``ImageTooLargeError``. (Base64
text from a request becomes these bytes in ``specks.core.base64_text``.)

Both ``decode_image`` and ``read_image_size`` walk a JPEG's markers before Pillow sees it
(``specks.core.jpeg_scans``): scan bombs, truncated data and absurd headers are refused there,
before any pixel is allocated.

Frames: *stored* is the pixel grid as written in the file; *displayed* is the image after
its EXIF orientation is applied (what a browser shows, and what ``DecodedImage.size`` and
detections refer to). A JPEG may be decoded at a reduced DCT scale; ``DecodedImage.scale_xy``
maps the array back to displayed original pixels.

Nothing here changes process-wide Pillow settings (``MAX_IMAGE_PIXELS``,
``LOAD_TRUNCATED_IMAGES``).
"""

from __future__ import annotations

import io
import re
import struct
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt
import simplejpeg
from PIL import Image, ImageFile, UnidentifiedImageError, features

from ..errors import ImageDecodeError, ImageTooLargeError
from .jpeg_scans import MAX_JPEG_SCANS, check_jpeg_structure
from .preprocess import PAD_VALUE
from .types import ImageSize

# Formats returned in DecodedImage.format. MPO (multi-picture JPEG) is opened by Pillow's
# JPEG plugin, so only _OPEN_FORMATS go to Image.open(formats=...).
# AVIF where this Pillow has its plugin (the PyPI wheels do from Pillow 11.3 on).
_AVIF_FORMATS: tuple[str, ...] = ("AVIF",) if features.check("avif") else ()
SUPPORTED_FORMATS: tuple[str, ...] = ("JPEG", "MPO", "PNG", "GIF", "BMP", "TIFF", "WEBP", *_AVIF_FORMATS)
_OPEN_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP", *_AVIF_FORMATS)
# ISO-BMFF brands of HEIF images with HEVC pictures (an iPhone camera's default), which
# Pillow cannot decode: named in the error so that the sender knows to convert.
_HEIC_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"})
_JPEG_FORMATS = frozenset({"JPEG", "MPO"})
_SIMPLEJPEG_MODES = frozenset({"RGB", "L"})  # CMYK/YCCK JPEGs go through Pillow

# Transparent pixels are composited onto the letterbox grey, so padding and transparency look
# the same to the model.
ALPHA_FILL_RGB: tuple[int, int, int] = (PAD_VALUE, PAD_VALUE, PAD_VALUE)
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
# Modes Pillow converts to RGB correctly (its LAB -> RGB, for one, is not a colour conversion).
_RGB_CONVERTIBLE_MODES = frozenset({"1", "L", "P", "RGB", "RGBX", "CMYK", "YCbCr"})
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})

# What Pillow's plugins raise on malformed data (besides OSError for truncation).
_DECODER_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    struct.error,
    IndexError,
    KeyError,
    TypeError,
    ZeroDivisionError,
    OverflowError,
)
_ORIENTATION_TAG = 0x0112
# The pixel count in Pillow's decompression-bomb message: "Image size (N pixels) exceeds ...".
_BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")


# The largest image decoded, in pixels (SPECKS_MAX_IMAGE_PIXELS): a 40 MP photo decodes to 120 MB of RGB.
MAX_IMAGE_PIXELS = 40_000_000


class ImageLimits(Protocol):
    """The limits decoding works under (``config.Limits`` has them, with the server's other limits)."""

    @property
    def max_image_pixels(self) -> int: ...
    @property
    def max_jpeg_scans(self) -> int: ...


@dataclass(frozen=True)
class DecodeLimits:
    """The default ``ImageLimits``, for tools and tests that run without server settings."""

    max_image_pixels: int = MAX_IMAGE_PIXELS
    max_jpeg_scans: int = MAX_JPEG_SCANS


@dataclass(frozen=True)
class DecodedImage:
    """An RGB image decoded from untrusted bytes.

    rgb:    (h, w, 3) uint8 RGB, C-contiguous and read-only, in the displayed orientation;
            possibly smaller than the original (reduced-scale JPEG decode).
    size:   the original image size as displayed (after EXIF orientation).
    format: Pillow's format name, one of ``SUPPORTED_FORMATS``.
    """

    rgb: npt.NDArray[np.uint8]
    size: ImageSize
    format: str

    def __post_init__(self) -> None:
        if self.rgb.ndim != 3 or self.rgb.shape[2] != 3 or self.rgb.dtype != np.uint8:
            raise ValueError(f"rgb must be (h, w, 3) uint8, got {self.rgb.shape} {self.rgb.dtype}")
        if not self.rgb.flags.c_contiguous:
            raise ValueError("rgb must be C-contiguous")

    @property
    def scale_xy(self) -> tuple[float, float]:
        """Original (displayed) pixels per array pixel along x and y: multiply array coords by it."""
        height, width = self.rgb.shape[:2]
        return self.size.width / width, self.size.height / height


def read_image_size(
    data: bytes, *, max_image_pixels: int | None = None, max_jpeg_scans: int = MAX_JPEG_SCANS
) -> tuple[ImageSize, str]:
    """Read the displayed size (after EXIF orientation) and format from the header, no decoding.

    Raises ``ImageDecodeError`` for unsupported or corrupt headers and ``ImageTooLargeError``
    for sizes beyond Pillow's decompression-bomb limit or ``max_image_pixels``, like
    ``decode_image``; a JPEG is refused here too when ``decode_image`` would refuse its
    structure (more than ``max_jpeg_scans`` scans, truncated), so a batch learns it early.
    """
    with _translated_errors(), _open_image(data, max_jpeg_scans) as image:
        size = _displayed_size(image.size, _orientation_to_apply(image))
        image_format = _format_name(image)
    if max_image_pixels is not None:
        _check_pixel_limit(size, max_image_pixels)
    return size, image_format


def decode_image(
    data: bytes,
    *,
    max_image_pixels: int,
    min_size_wh: tuple[int, int] | None = None,
    max_jpeg_scans: int = MAX_JPEG_SCANS,
) -> DecodedImage:
    """Decode image file bytes into an RGB array, checking the pixel limit from the header first.

    max_image_pixels: width * height above this raises ``ImageTooLargeError`` before decoding.
    min_size_wh:      (w, h) in the displayed orientation. When given, a JPEG may be decoded at
                      a reduced DCT scale whose result is at least this size (or full size for
                      smaller images). None decodes at full resolution.
    max_jpeg_scans:   a JPEG with more scans (progressive passes, each a full pass over the
                      image) raises ``ImageTooLargeError`` before decoding.

    EXIF orientation is applied, transparency is composited onto ``ALPHA_FILL_RGB``, 16-bit
    images are rescaled to 8 bits and animated images give their first frame.
    """
    if min_size_wh is not None and min(min_size_wh) < 1:
        raise ValueError(f"min_size_wh must be positive (w, h), got {min_size_wh}")
    with _translated_errors(), _open_image(data, max_jpeg_scans) as image:
        orientation = _orientation_to_apply(image)
        size = _displayed_size(image.size, orientation)
        _check_pixel_limit(size, max_image_pixels)
        stored_rgb = _decode_stored_rgb(image, data, _stored_min_wh(min_size_wh, orientation))
        image_format = _format_name(image)
    rgb = np.ascontiguousarray(_ORIENT[orientation](stored_rgb))
    rgb.flags.writeable = False
    return DecodedImage(rgb=rgb, size=size, format=image_format)


@contextmanager
def _translated_errors() -> Iterator[None]:
    """Turn Pillow's and simplejpeg's exceptions into ``ImageDecodeError`` / ``ImageTooLargeError``."""
    # catch_warnings swaps the process's warning filters while it runs; concurrent calls all
    # install this same filter, so interleaving threads cannot leave a different one behind.
    with warnings.catch_warnings():
        # Pillow warns (not raises) between MAX_IMAGE_PIXELS and twice that; refuse those too.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            yield
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageTooLargeError(_bomb_message(exc)) from exc
        except _DECODER_ERRORS as exc:
            # The library's words (libjpeg's, libtiff's error codes, "broken data stream") mean
            # nothing to a client; they stay in the chained exception for the server log.
            raise ImageDecodeError("image data is truncated or corrupt; send the complete, unmodified file") from exc


def _bomb_message(exc: Warning | Exception) -> str:
    """A plain message for Pillow's decompression-bomb refusal, with the pixel count it names."""
    named = _BOMB_PIXELS.search(str(exc))
    if named is None:
        size = f"more than {(Image.MAX_IMAGE_PIXELS or 0) / 1e6:.0f} megapixels"
    else:
        pixels = int(named[1])
        size = f"{pixels} pixels ({pixels / 1e6:.0f} megapixels)"
    return f"image is {size}, too many to decode safely; downscale it before sending"


@contextmanager
def _open_image(data: bytes, max_jpeg_scans: int) -> Iterator[ImageFile.ImageFile]:
    """Open ``data`` with Pillow (header only) restricted to the supported formats.

    A JPEG's markers are walked first (``check_jpeg_structure``): Pillow's own header parser
    steps through junk and segments in Python, and the decoders cost what the scans ask.
    """
    if not data:
        raise ImageDecodeError(f"image data is empty; send the bytes of an image file ({_format_list()})")
    check_jpeg_structure(data, max_jpeg_scans=max_jpeg_scans)
    try:
        image = Image.open(io.BytesIO(data), formats=_OPEN_FORMATS)
    except UnidentifiedImageError as exc:
        raise ImageDecodeError(_unsupported_message(data)) from exc
    with image:
        yield image


def _unsupported_message(data: bytes) -> str:
    head = bytes(data[:16])
    if _is_heic(head):
        return (
            f"image is HEIC (HEIF with HEVC pictures), which is not supported; convert it to JPEG "
            f"before sending (on an iPhone: Settings > Camera > Formats > Most Compatible); "
            f"supported formats: {_format_list()}"
        )
    return (
        f"image is not a supported image (supported formats: {_format_list()}), "
        f"or its header is corrupt; the data starts with {head!r}"
    )


def _format_list() -> str:
    return ", ".join(SUPPORTED_FORMATS)


def _is_heic(head: bytes) -> bool:
    """Whether a file starts with an ISO-BMFF ``ftyp`` box whose major brand is a HEVC HEIF one."""
    return head[4:8] == b"ftyp" and head[8:12] in _HEIC_BRANDS


def _format_name(image: Image.Image) -> str:
    return image.format or "UNKNOWN"


def _orientation_to_apply(image: Image.Image) -> int:
    """EXIF orientation 1..8 still to apply to the decoded pixels, read from the header.

    1 when absent, invalid or unreadable, and for TIFF: Pillow itself reports a TIFF's
    displayed size and transposes its pixels on load.
    """
    if image.format == "TIFF":
        return 1
    # PngImageFile.getexif() decodes all pixels to look for an eXIf chunk after the image
    # data; only chunks before it are read here, so this stays a header-only read.
    if image.format == "PNG" and "exif" not in image.info:
        return 1
    try:
        value = image.getexif().get(_ORIENTATION_TAG, 1)
    except _DECODER_ERRORS:  # broken metadata must not reject intact pixels
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _displayed_size(stored_wh: tuple[int, int], orientation: int) -> ImageSize:
    """Size after EXIF orientation: orientations 5..8 swap width and height."""
    width, height = stored_wh
    return ImageSize(height, width) if orientation >= 5 else ImageSize(width, height)


def _stored_min_wh(min_size_wh: tuple[int, int] | None, orientation: int) -> tuple[int, int] | None:
    """A displayed (w, h) minimum in the stored orientation: orientations 5..8 swap it."""
    if min_size_wh is None or orientation < 5:
        return min_size_wh
    return min_size_wh[1], min_size_wh[0]


def _check_pixel_limit(size: ImageSize, max_image_pixels: int) -> None:
    if size.pixels > max_image_pixels:
        raise ImageTooLargeError(
            f"image is {size.width}x{size.height} pixels ({size.pixels / 1e6:.1f} megapixels), "
            f"more than the limit of {max_image_pixels} pixels ({max_image_pixels / 1e6:.1f} megapixels); "
            "downscale it before sending"
        )


# -- pixels in the stored orientation -----------------------------------------------------------


def _decode_stored_rgb(
    image: ImageFile.ImageFile, data: bytes, stored_min_wh: tuple[int, int] | None
) -> npt.NDArray[np.uint8]:
    """(h, w, 3) uint8 RGB in the stored orientation, possibly at reduced scale (JPEG only)."""
    if image.format in _JPEG_FORMATS:
        if image.mode in _SIMPLEJPEG_MODES:
            decoded = _decode_with_simplejpeg(data, stored_min_wh)
            if decoded is not None:
                return decoded
        if stored_min_wh is not None:
            image.draft(None, stored_min_wh)  # DCT scaling 1/2, 1/4, 1/8, result >= stored_min_wh
    image.load()
    return _to_rgb_array(image)


def _decode_with_simplejpeg(data: bytes, stored_min_wh: tuple[int, int] | None) -> npt.NDArray[np.uint8] | None:
    """Decode a JPEG with libjpeg-turbo (scales n/8); None when it reports any problem.

    ``strict=True`` makes every libjpeg warning an error. Pillow then decides: it still
    rejects truncated files (LOAD_TRUNCATED_IMAGES stays off) but, like browsers, accepts
    recoverable glitches such as extraneous bytes before a marker.
    """
    min_w, min_h = stored_min_wh or (0, 0)
    try:
        rgb: npt.NDArray[np.uint8] = simplejpeg.decode_jpeg(
            data,
            colorspace="RGB",
            min_width=min_w,
            min_height=min_h,
            fastdct=True,
            fastupsample=True,
            strict=True,
        )
    except ValueError:
        return None
    return rgb


def _to_rgb_array(image: Image.Image) -> npt.NDArray[np.uint8]:
    """A loaded Pillow image of any supported mode -> (h, w, 3) uint8 RGB (read-only view allowed)."""
    if image.mode in _SIXTEEN_BIT_MODES:
        return _gray_to_rgb(_sixteen_bit_to_uint8(np.asarray(image)))
    if image.mode == "F":
        return _gray_to_rgb(_float_to_uint8(np.asarray(image)))
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        return np.asarray(_composite_on_fill(image))
    if image.mode not in _RGB_CONVERTIBLE_MODES:
        raise ImageDecodeError(
            f"image has pixel mode {image.mode!r}, which is not supported; "
            "send an RGB, greyscale, palette or CMYK image"
        )
    return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))


def _composite_on_fill(image: Image.Image) -> Image.Image:
    """Blend an image with alpha (or a transparent colour) onto ``ALPHA_FILL_RGB`` -> RGB image."""
    rgba = image if image.mode == "RGBA" else image.convert("RGBA")
    canvas = Image.new("RGB", rgba.size, ALPHA_FILL_RGB)
    canvas.paste(rgba, (0, 0), rgba)
    return canvas


def _sixteen_bit_to_uint8(values: npt.NDArray[np.integer]) -> npt.NDArray[np.uint8]:
    """(h, w) 16-bit grey (0..65535; int32 "I" images are clipped to that) -> (h, w) uint8, rounded."""
    wide = np.clip(values, 0, 65535).astype(np.uint32)
    return ((wide * 255 + 32767) // 65535).astype(np.uint8)


def _float_to_uint8(values: npt.NDArray[np.floating]) -> npt.NDArray[np.uint8]:
    """(h, w) float grey on Pillow's 0..255 scale -> (h, w) uint8 (clipped, rounded, NaN -> 0)."""
    finite = np.nan_to_num(values.astype(np.float32), nan=0.0, posinf=255.0, neginf=0.0)
    return np.rint(np.clip(finite, 0.0, 255.0)).astype(np.uint8)


def _gray_to_rgb(gray: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """(h, w) uint8 -> (h, w, 3) uint8 with the value in all three channels."""
    return np.repeat(gray[:, :, np.newaxis], 3, axis=2)


# EXIF orientation -> view of a stored (h, w, 3) array in the displayed orientation.
_ORIENT: dict[int, Callable[[npt.NDArray[np.uint8]], npt.NDArray[np.uint8]]] = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],  # mirrored horizontally
    3: lambda a: a[::-1, ::-1],  # rotated 180
    4: lambda a: a[::-1],  # mirrored vertically
    5: lambda a: a.transpose(1, 0, 2),  # transposed (mirror across the main diagonal)
    6: lambda a: a.transpose(1, 0, 2)[:, ::-1],  # rotated 90 clockwise
    7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1],  # transversed (mirror across the anti-diagonal)
    8: lambda a: a.transpose(1, 0, 2)[::-1],  # rotated 90 counter-clockwise
}
