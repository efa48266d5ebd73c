"""Tests for specks.core.imaging: strict base64, image decoding, limits, EXIF and reduced-scale JPEG."""

from __future__ import annotations

import io
import resource
import struct
import time
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile, features
from test_jpeg_scans import scan_bomb, with_declared_size

from conftest import COCO_TINY, HIT_UAV_VAL, SHARED, VISDRONE, require
from specks.core import imaging
from specks.core.imaging import ALPHA_FILL_RGB, DecodedImage, decode_image, read_image_size
from specks.core.jpeg_scans import MAX_JPEG_SCANS
from specks.core.types import ImageSize
from specks.errors import ImageDecodeError, ImageTooLargeError, SpecksError

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)
HAS_AVIF = features.check("avif")
needs_avif = pytest.mark.skipif(not HAS_AVIF, reason="this Pillow has no AVIF plugin")
FILL = ALPHA_FILL_RGB
NO_LIMIT = 10**9


# -- factories --------------------------------------------------------------------------------


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    """Save ``image`` in memory as ``fmt`` and return the file bytes."""
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def solid(mode: str, color: object, size_wh: tuple[int, int] = (16, 12)) -> Image.Image:
    return Image.new(mode, size_wh, color)  # type: ignore[arg-type]


def exif_with_orientation(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def corner_marked(size_wh: tuple[int, int]) -> Image.Image:
    """Blue RGB image with a red block in the stored top-left and a green one in the top-right."""
    width, height = size_wh
    array = np.zeros((height, width, 3), np.uint8)
    array[:] = BLUE
    array[: height // 4, : width // 4] = RED
    array[: height // 4, width - width // 4 :] = GREEN
    return Image.fromarray(array)


def noise(size_wh: tuple[int, int], seed: int = 0) -> Image.Image:
    """Random RGB pixels: large, hard-to-compress files, good for truncation tests."""
    width, height = size_wh
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), np.uint8))


def png_header_only(width: int, height: int, *, bit_depth: int = 8, color_type: int = 2) -> bytes:
    """A PNG whose IHDR claims ``width`` x ``height`` but whose IDAT holds only a few bytes.

    Built by hand so a huge size costs nothing; decoding it would fail as truncated, so an
    ImageTooLargeError proves the size was checked from the header first.
    """

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    )


def gradient(size_wh: tuple[int, int]) -> Image.Image:
    """RGB with R rising along x and G along y (0..255), B = 128: position is readable from colour."""
    width, height = size_wh
    array = np.empty((height, width, 3), np.uint8)
    array[..., 0] = np.linspace(0, 255, width, dtype=np.float32)[np.newaxis, :]
    array[..., 1] = np.linspace(0, 255, height, dtype=np.float32)[:, np.newaxis]
    array[..., 2] = 128
    return Image.fromarray(array)


def assert_rgb_array(rgb: np.ndarray, height: int, width: int) -> None:
    assert rgb.shape == (height, width, 3)
    assert rgb.dtype == np.uint8
    assert rgb.flags.c_contiguous


def assert_solid(rgb: np.ndarray, expected: tuple[int, int, int], tolerance: int) -> None:
    difference = np.abs(rgb.astype(np.int16) - np.array(expected, np.int16))
    assert difference.max() <= tolerance, f"expected {expected}, got e.g. {tuple(rgb[0, 0])}"


@pytest.fixture(scope="module")
def photo_2000x1500() -> bytes:
    return encode(gradient((2000, 1500)), "JPEG", quality=90)


# -- decode_image: modes and formats ------------------------------------------------------------


def _palette(color: tuple[int, int, int]) -> Image.Image:
    return solid("RGB", color).convert("P", palette=Image.Palette.ADAPTIVE)


def _palette_with_transparent_index() -> bytes:
    image = solid("P", 1)
    image.putpalette([255, 0, 0, 0, 255, 0])
    return encode(image, "PNG", transparency=1)


def _half_alpha(channel: int) -> int:
    return round((channel * 128 + FILL[0] * 127) / 255)


MODE_CASES = [
    # (id, file bytes, expected RGB, tolerance, expected format)
    ("1-png-white", lambda: encode(solid("1", 1), "PNG"), (255, 255, 255), 0, "PNG"),
    ("1-bmp-black", lambda: encode(solid("1", 0), "BMP"), (0, 0, 0), 0, "BMP"),
    ("L-png", lambda: encode(solid("L", 200), "PNG"), (200, 200, 200), 0, "PNG"),
    ("LA-opaque", lambda: encode(solid("LA", (200, 255)), "PNG"), (200, 200, 200), 0, "PNG"),
    ("LA-transparent", lambda: encode(solid("LA", (200, 0)), "PNG"), FILL, 0, "PNG"),
    ("P-png", lambda: encode(_palette((10, 200, 30)), "PNG"), (10, 200, 30), 0, "PNG"),
    ("P-png-transparent-index", _palette_with_transparent_index, FILL, 0, "PNG"),
    ("P-gif", lambda: encode(_palette((10, 200, 30)), "GIF"), (10, 200, 30), 0, "GIF"),
    ("P-gif-transparent", lambda: encode(solid("RGBA", (10, 200, 30, 0)), "GIF"), FILL, 0, "GIF"),
    ("RGB-png", lambda: encode(solid("RGB", (10, 200, 30)), "PNG"), (10, 200, 30), 0, "PNG"),
    (
        "RGB-png-colour-key",
        lambda: encode(solid("RGB", (10, 200, 30)), "PNG", transparency=(10, 200, 30)),
        FILL,
        0,
        "PNG",
    ),
    ("RGB-bmp", lambda: encode(solid("RGB", (10, 200, 30)), "BMP"), (10, 200, 30), 0, "BMP"),
    ("RGB-jpeg", lambda: encode(solid("RGB", (10, 200, 30)), "JPEG", quality=95), (10, 200, 30), 6, "JPEG"),
    ("L-jpeg", lambda: encode(solid("L", 200), "JPEG", quality=95), (200, 200, 200), 2, "JPEG"),
    (
        "RGB-webp",
        lambda: encode(solid("RGB", (10, 200, 30)), "WEBP", lossless=True),
        (10, 200, 30),
        0,
        "WEBP",
    ),
    ("RGB-avif", lambda: encode(solid("RGB", (10, 200, 30)), "AVIF", quality=100), (10, 200, 30), 4, "AVIF"),
    ("RGBA-avif-transparent", lambda: encode(solid("RGBA", (10, 200, 30, 0)), "AVIF", quality=100), FILL, 4, "AVIF"),
    ("RGBA-png-opaque", lambda: encode(solid("RGBA", (10, 200, 30, 255)), "PNG"), (10, 200, 30), 0, "PNG"),
    ("RGBA-png-transparent", lambda: encode(solid("RGBA", (10, 200, 30, 0)), "PNG"), FILL, 0, "PNG"),
    (
        "RGBA-png-half",
        lambda: encode(solid("RGBA", (10, 200, 30, 128)), "PNG"),
        (_half_alpha(10), _half_alpha(200), _half_alpha(30)),
        1,
        "PNG",
    ),
    (
        "RGBA-webp-transparent",
        lambda: encode(solid("RGBA", (10, 200, 30, 0)), "WEBP", lossless=True),
        FILL,
        0,
        "WEBP",
    ),
    ("RGBA-tiff-transparent", lambda: encode(solid("RGBA", (10, 200, 30, 0)), "TIFF"), FILL, 0, "TIFF"),
    ("I;16-png-max", lambda: encode(solid("I;16", 65535), "PNG"), (255, 255, 255), 0, "PNG"),
    ("I;16-png-half", lambda: encode(solid("I;16", 32768), "PNG"), (128, 128, 128), 0, "PNG"),
    ("I;16-png-100", lambda: encode(solid("I;16", 257 * 100), "PNG"), (100, 100, 100), 0, "PNG"),
    ("I;16-png-zero", lambda: encode(solid("I;16", 0), "PNG"), (0, 0, 0), 0, "PNG"),
    ("I;16-tiff", lambda: encode(solid("I;16", 32768), "TIFF"), (128, 128, 128), 0, "TIFF"),
    ("I;16B-tiff", lambda: encode(solid("I;16B", 257 * 40), "TIFF"), (40, 40, 40), 0, "TIFF"),
    ("I-tiff", lambda: encode(solid("I", 257 * 100), "TIFF"), (100, 100, 100), 0, "TIFF"),
    ("I-tiff-clipped", lambda: encode(solid("I", 70000), "TIFF"), (255, 255, 255), 0, "TIFF"),
    ("F-tiff", lambda: encode(solid("F", 100.4), "TIFF"), (100, 100, 100), 0, "TIFF"),
    ("F-tiff-negative", lambda: encode(solid("F", -5.0), "TIFF"), (0, 0, 0), 0, "TIFF"),
    ("CMYK-jpeg", lambda: encode(solid("RGB", RED).convert("CMYK"), "JPEG", quality=95), RED, 12, "JPEG"),
    ("CMYK-tiff", lambda: encode(solid("CMYK", (0, 255, 255, 0)), "TIFF"), RED, 0, "TIFF"),
    (
        "YCbCr-tiff",
        lambda: encode(solid("RGB", (10, 200, 30)).convert("YCbCr"), "TIFF"),
        (10, 200, 30),
        3,
        "TIFF",
    ),
]


@pytest.mark.parametrize(
    ("make", "expected_rgb", "tolerance", "expected_format"),
    [pytest.param(*row[1:], id=row[0], marks=needs_avif if row[4] == "AVIF" else ()) for row in MODE_CASES],
)
def test_decode_image_converts_every_mode_to_rgb(
    make: Callable[[], bytes], expected_rgb: tuple[int, int, int], tolerance: int, expected_format: str
) -> None:
    decoded = decode_image(make(), max_image_pixels=NO_LIMIT)
    assert_rgb_array(decoded.rgb, 12, 16)
    assert_solid(decoded.rgb, expected_rgb, tolerance)
    assert decoded.size == ImageSize(16, 12)
    assert decoded.format == expected_format
    assert decoded.scale_xy == (1.0, 1.0)


def test_alpha_fill_matches_letterbox_padding() -> None:
    from specks.core.preprocess import PAD_VALUE

    assert ALPHA_FILL_RGB == (PAD_VALUE, PAD_VALUE, PAD_VALUE)


@pytest.mark.parametrize("path", ["jpeg", "png"])
def test_decoded_array_is_read_only_whatever_the_decoder(path: str) -> None:
    data = encode(solid("RGB", RED), "JPEG" if path == "jpeg" else "PNG")
    rgb = decode_image(data, max_image_pixels=NO_LIMIT).rgb
    with pytest.raises(ValueError, match="read-only"):
        rgb[0, 0] = 0


@pytest.mark.parametrize(
    ("fmt", "params"),
    [
        ("GIF", {}),
        ("PNG", {}),  # APNG
        ("WEBP", {"lossless": True}),
        ("MPO", {}),
        pytest.param("AVIF", {"quality": 100}, marks=needs_avif),
    ],
)
def test_multi_frame_images_give_their_first_frame(fmt: str, params: dict[str, object]) -> None:
    data = encode(solid("RGB", RED), fmt, save_all=True, append_images=[solid("RGB", GREEN)], **params)
    decoded = decode_image(data, max_image_pixels=NO_LIMIT)
    assert decoded.format == fmt
    assert_solid(decoded.rgb, RED, 8)


def test_recoverable_jpeg_glitch_is_accepted_like_browsers_do() -> None:
    clean = encode(solid("RGB", (10, 200, 30), (64, 48)), "JPEG", quality=95)
    glitched = clean[:-2] + b"\x00" * 10 + clean[-2:]  # extraneous bytes before the EOI marker
    decoded = decode_image(glitched, max_image_pixels=NO_LIMIT)
    assert_solid(decoded.rgb, (10, 200, 30), 6)


# -- decode_image: rejections --------------------------------------------------------------------


def _truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


# The first box of an iPhone photo: ftyp, major brand "heic", compatible brands mif1 and heic.
HEIC_HEAD = struct.pack(">I", 24) + b"ftypheic" + bytes(4) + b"mif1heic"
HEIX_HEAD = struct.pack(">I", 24) + b"ftypheix" + bytes(4) + b"mif1heix"

REJECT_CASES = [
    ("empty", lambda: b"", "empty"),
    ("svg", lambda: b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', "not a supported"),
    ("xml", lambda: b'<?xml version="1.0"?><svg/>', "not a supported"),
    ("pdf", lambda: b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", "not a supported"),
    ("text", lambda: b"hello, world", "not a supported"),
    ("random", lambda: np.random.default_rng(0).bytes(4096), "not a supported"),
    ("ppm-not-allowed", lambda: encode(solid("RGB", RED), "PPM"), "not a supported"),
    ("ico-not-allowed", lambda: encode(solid("RGB", RED), "ICO"), "not a supported"),
    ("tga-not-allowed", lambda: encode(solid("RGB", RED), "TGA"), "not a supported"),
    ("truncated-jpeg", lambda: _truncated(encode(noise((128, 96)), "JPEG")), "truncated or corrupt"),
    (
        "truncated-progressive-jpeg",
        lambda: _truncated(encode(noise((128, 96)), "JPEG", progressive=True)),
        "truncated or corrupt",
    ),
    (
        "truncated-cmyk-jpeg",
        lambda: _truncated(encode(noise((128, 96)).convert("CMYK"), "JPEG")),
        "truncated or corrupt",
    ),
    ("truncated-png", lambda: _truncated(encode(noise((128, 96)), "PNG")), "truncated or corrupt"),
    ("truncated-webp", lambda: _truncated(encode(noise((128, 96)), "WEBP")), "truncated or corrupt"),
    ("heic", lambda: HEIC_HEAD + bytes(64), "HEIC (HEIF with HEVC pictures), which is not supported"),
    ("heic-mif1-heix", lambda: HEIX_HEAD + bytes(64), "convert it to JPEG"),
    ("lab-tiff", lambda: encode(solid("LAB", (50, 0, 0)), "TIFF"), "pixel mode 'LAB'"),
]


@pytest.mark.parametrize(("make", "message_part"), [pytest.param(*row[1:], id=row[0]) for row in REJECT_CASES])
def test_decode_image_rejects_unsupported_and_broken_data(make: Callable[[], bytes], message_part: str) -> None:
    with pytest.raises(ImageDecodeError) as caught:
        decode_image(make(), max_image_pixels=NO_LIMIT)
    assert message_part in caught.value.message
    if message_part == "not a supported" or "HEIC" in message_part:
        assert "JPEG, MPO, PNG, GIF, BMP, TIFF, WEBP" + (", AVIF" if HAS_AVIF else "") in caught.value.message


def test_corrupt_data_error_chains_the_library_error() -> None:
    with pytest.raises(ImageDecodeError) as caught:
        decode_image(_truncated(encode(noise((128, 96)), "PNG")), max_image_pixels=NO_LIMIT)
    assert isinstance(caught.value.__cause__, OSError)


def _tiff_with_broken_strip() -> bytes:
    """A deflate TIFF whose compressed strip is garbage: libtiff reports it with an error code."""
    data = bytearray(encode(noise((64, 48)), "TIFF", compression="tiff_adobe_deflate"))
    data[8:200] = bytes(192)
    return bytes(data)


PLAIN_DECODE_MESSAGE = "image data is truncated or corrupt; send the complete, unmodified file"


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: _truncated(encode(noise((128, 96)), "PNG")), id="truncated-png"),
        pytest.param(lambda: _truncated(encode(noise((128, 96)), "WEBP")), id="truncated-webp"),
        pytest.param(lambda: _truncated(encode(noise((128, 96)), "GIF")), id="truncated-gif"),
        pytest.param(_tiff_with_broken_strip, id="broken-tiff"),
    ],
)
def test_corrupt_data_message_names_no_library_internals(make: Callable[[], bytes]) -> None:
    # "image file is truncated (N bytes not processed)", "broken data stream", libtiff's
    # "-2": the library's words stay on the chained exception, the client gets plain ones.
    with pytest.raises(ImageDecodeError) as caught:
        decode_image(make(), max_image_pixels=NO_LIMIT)
    assert caught.value.message == PLAIN_DECODE_MESSAGE
    assert caught.value.__cause__ is not None


# -- pixel limits ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("max_image_pixels", "accepted"), [(100, True), (99, False)])
def test_pixel_limit_boundary(max_image_pixels: int, accepted: bool) -> None:
    data = encode(solid("RGB", RED, (10, 10)), "PNG")
    if accepted:
        assert decode_image(data, max_image_pixels=max_image_pixels).rgb.shape == (10, 10, 3)
    else:
        with pytest.raises(ImageTooLargeError, match=r"10x10 pixels \(0\.0 megapixels\).*limit of 99 pixels"):
            decode_image(data, max_image_pixels=max_image_pixels)


@pytest.mark.parametrize(
    ("max_image_pixels", "expected_error"),
    [(6_000_000, ImageDecodeError), (5_999_999, ImageTooLargeError)],
)
def test_pixel_limit_is_checked_from_the_header_before_decoding(
    max_image_pixels: int, expected_error: type[SpecksError]
) -> None:
    # The pixel data is far too short: decoding fails, so only a header check can say "too large".
    data = png_header_only(3000, 2000)
    with pytest.raises(expected_error):
        decode_image(data, max_image_pixels=max_image_pixels)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: encode(noise((100, 80)), "PNG"), id="png"),
        pytest.param(lambda: encode(noise((100, 80)), "PNG", exif=exif_with_orientation(6)), id="png-exif"),
        pytest.param(lambda: encode(noise((100, 80)), "JPEG"), id="jpeg"),
        pytest.param(lambda: encode(noise((100, 80)), "WEBP"), id="webp"),
        pytest.param(lambda: encode(noise((100, 80)), "TIFF"), id="tiff"),
    ],
)
def test_too_large_images_are_never_decoded(make: Callable[[], bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    data = make()
    decoder_calls: list[str] = []
    original_load = ImageFile.ImageFile.load

    def spy_load(self: ImageFile.ImageFile) -> object:
        decoder_calls.append("pillow")
        return original_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy_load)
    monkeypatch.setattr(imaging.simplejpeg, "decode_jpeg", lambda *a, **k: decoder_calls.append("simplejpeg"))
    with pytest.raises(ImageTooLargeError, match="limit of 7999 pixels"):
        decode_image(data, max_image_pixels=7999)
    assert read_image_size(data)[0].pixels == 8000
    assert decoder_calls == []


@pytest.mark.parametrize("max_image_pixels", [40_000_000, 2 * 10**9])
def test_decompression_bomb_is_refused_fast_without_memory(max_image_pixels: int) -> None:
    bomb = png_header_only(40_000, 40_000, bit_depth=1, color_type=0)  # 1.6 gigapixels, 1-bit
    rss_before_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    with pytest.raises(ImageTooLargeError, match="40000x40000|1600000000") as caught:
        decode_image(bomb, max_image_pixels=max_image_pixels)
    assert "DOS attack" not in caught.value.message  # Pillow's wording is not passed on
    with pytest.raises(ImageTooLargeError):
        read_image_size(bomb)
    assert time.perf_counter() - started < 1.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before_kib < 100_000


def test_pillow_bomb_warning_is_refused_without_touching_global_settings() -> None:
    assert Image.MAX_IMAGE_PIXELS is not None
    width = 10_000
    height = Image.MAX_IMAGE_PIXELS // width + 1  # just above Pillow's warning threshold
    filters_before = list(warnings.filters)
    max_pixels_before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(
        ImageTooLargeError, match=rf"image is {width * height} pixels \(\d+ megapixels\), too many to decode safely"
    ):
        decode_image(png_header_only(width, height), max_image_pixels=NO_LIMIT)
    assert warnings.filters == filters_before
    assert max_pixels_before == Image.MAX_IMAGE_PIXELS
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


# -- JPEG structure: scan bombs, truncation, data too short for the declared size -------------------


@pytest.fixture
def decoders_must_not_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make Pillow's open and both decoders fail the test if called: a refusal must come first."""

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("the image was opened or decoded before being refused")

    monkeypatch.setattr(imaging.Image, "open", forbidden)
    monkeypatch.setattr(ImageFile.ImageFile, "load", forbidden)
    monkeypatch.setattr(imaging.simplejpeg, "decode_jpeg", forbidden)


@pytest.mark.usefixtures("decoders_must_not_run")
@pytest.mark.parametrize(
    ("make", "error", "message_part"),
    [
        pytest.param(
            lambda: scan_bomb(1000),
            ImageTooLargeError,
            f"with 1000 scans .*more than the limit of {MAX_JPEG_SCANS}",
            id="scan-bomb",
        ),
        pytest.param(
            lambda: encode(noise((64, 48)), "JPEG")[:-2], ImageDecodeError, "ends before its end-of-image", id="no-eoi"
        ),
        pytest.param(
            lambda: with_declared_size(encode(noise((16, 16)), "JPEG"), 6000, 6000),
            ImageDecodeError,
            "declares 6000x6000 pixels, but its scan 1 holds",
            id="declared-6000x6000-data-16x16",
        ),
        pytest.param(
            lambda: with_declared_size(encode(noise((16, 16)), "JPEG", progressive=True), 6000, 6000),
            ImageDecodeError,
            "declares 6000x6000 pixels",
            id="progressive-declared-6000x6000",
        ),
    ],
)
def test_hostile_jpeg_is_refused_before_opening_or_decoding(
    make: Callable[[], bytes], error: type[SpecksError], message_part: str
) -> None:
    data = make()
    with pytest.raises(error, match=message_part):
        decode_image(data, max_image_pixels=NO_LIMIT)
    with pytest.raises(error, match=message_part):
        read_image_size(data)


@pytest.mark.parametrize(("max_jpeg_scans", "accepted"), [(30, True), (29, False)])
def test_scan_limit_boundary_applies_to_decode_and_size_read(max_jpeg_scans: int, accepted: bool) -> None:
    bomb = scan_bomb(30)
    if accepted:
        decoded = decode_image(bomb, max_image_pixels=NO_LIMIT, max_jpeg_scans=max_jpeg_scans)
        assert_solid(decoded.rgb, (128, 128, 128), 2)
        assert read_image_size(bomb, max_jpeg_scans=max_jpeg_scans) == (ImageSize(64, 64), "JPEG")
    else:
        with pytest.raises(ImageTooLargeError, match="with 30 scans .*more than the limit of 29"):
            decode_image(bomb, max_image_pixels=NO_LIMIT, max_jpeg_scans=max_jpeg_scans)
        with pytest.raises(ImageTooLargeError, match="with 30 scans .*more than the limit of 29"):
            read_image_size(bomb, max_jpeg_scans=max_jpeg_scans)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: encode(noise((64, 48)), "JPEG", progressive=True), id="progressive"),
        pytest.param(lambda: encode(noise((64, 48)).convert("L"), "JPEG", progressive=True), id="progressive-grey"),
        pytest.param(lambda: encode(noise((64, 48)).convert("CMYK"), "JPEG", progressive=True), id="progressive-cmyk"),
        pytest.param(lambda: encode(solid("RGB", (90, 140, 200), (64, 48)), "JPEG", optimize=True), id="one-colour"),
        pytest.param(lambda: encode(noise((64, 48)), "JPEG", restart_marker_blocks=1), id="restart-markers"),
    ],
)
def test_real_encoder_jpegs_still_decode(make: Callable[[], bytes]) -> None:
    assert decode_image(make(), max_image_pixels=NO_LIMIT).rgb.shape == (48, 64, 3)


@pytest.mark.parametrize(
    "folder",
    [SHARED / "data" / "samples", COCO_TINY / "images", VISDRONE, HIT_UAV_VAL],
    ids=["samples", "coco", "visdrone", "hit-uav"],
)
def test_real_photos_pass_the_jpeg_checks(folder: Path) -> None:
    # All 1,874 photos of the shared data sets pass (measured once); 3 of each here.
    for path in sorted(require(folder).rglob("*.jp*g"))[:3]:
        data = path.read_bytes()
        size, _ = read_image_size(data)
        assert decode_image(data, max_image_pixels=NO_LIMIT, min_size_wh=(64, 64)).size == size


# -- EXIF orientation -----------------------------------------------------------------------------

# Where the stored top-left (red) and top-right (green) blocks appear once displayed.
ORIENTATION_CORNERS = {
    1: ("top-left", "top-right"),
    2: ("top-right", "top-left"),  # mirrored horizontally
    3: ("bottom-right", "bottom-left"),  # rotated 180
    4: ("bottom-left", "bottom-right"),  # mirrored vertically
    5: ("top-left", "bottom-left"),  # transposed
    6: ("top-right", "bottom-right"),  # rotated 90 clockwise
    7: ("bottom-right", "top-right"),  # transversed
    8: ("bottom-left", "top-left"),  # rotated 90 counter-clockwise
}


def corner_colors(rgb: np.ndarray) -> dict[str, tuple[int, ...]]:
    """Colour sampled an eighth of the way in from each corner."""
    height, width = rgb.shape[:2]
    dy, dx = height // 8, width // 8
    return {
        "top-left": tuple(rgb[dy, dx]),
        "top-right": tuple(rgb[dy, width - 1 - dx]),
        "bottom-left": tuple(rgb[height - 1 - dy, dx]),
        "bottom-right": tuple(rgb[height - 1 - dy, width - 1 - dx]),
    }


def assert_corners(rgb: np.ndarray, orientation: int, tolerance: int) -> None:
    red_at, green_at = ORIENTATION_CORNERS[orientation]
    for corner, color in corner_colors(rgb).items():
        expected = RED if corner == red_at else GREEN if corner == green_at else BLUE
        assert np.abs(np.array(color, int) - expected).max() <= tolerance, (corner, color, expected)


ORIENTED_ENCODERS: dict[str, Callable[[Image.Image, bytes], bytes]] = {
    "jpeg": lambda image, exif: encode(image, "JPEG", quality=95, exif=exif),
    "cmyk-jpeg": lambda image, exif: encode(image.convert("CMYK"), "JPEG", quality=95, exif=exif),
    "png": lambda image, exif: encode(image, "PNG", exif=exif),
    "webp": lambda image, exif: encode(image, "WEBP", lossless=True, exif=exif),
    "tiff": lambda image, exif: encode(image, "TIFF", exif=exif),
    # AVIF keeps the orientation as its own irot/imir boxes; Pillow reports them as EXIF's.
    **({"avif": lambda image, exif: encode(image, "AVIF", quality=100, exif=exif)} if HAS_AVIF else {}),
}


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("encoder", ORIENTED_ENCODERS)
def test_exif_orientation_is_applied(encoder: str, orientation: int) -> None:
    data = ORIENTED_ENCODERS[encoder](corner_marked((64, 48)), exif_with_orientation(orientation))
    decoded = decode_image(data, max_image_pixels=NO_LIMIT)
    displayed = ImageSize(48, 64) if orientation >= 5 else ImageSize(64, 48)
    assert decoded.size == displayed
    assert read_image_size(data)[0] == displayed
    assert_rgb_array(decoded.rgb, displayed.height, displayed.width)
    assert_corners(decoded.rgb, orientation, tolerance=40)


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("encoder", ["jpeg", "cmyk-jpeg"])
def test_exif_orientation_with_reduced_scale_decode(encoder: str, orientation: int) -> None:
    data = ORIENTED_ENCODERS[encoder](corner_marked((512, 384)), exif_with_orientation(orientation))
    rotated = orientation >= 5
    min_size_wh = (96, 128) if rotated else (128, 96)  # a quarter of the displayed size
    decoded = decode_image(data, max_image_pixels=NO_LIMIT, min_size_wh=min_size_wh)
    assert decoded.size == (ImageSize(384, 512) if rotated else ImageSize(512, 384))
    assert_rgb_array(decoded.rgb, min_size_wh[1], min_size_wh[0])
    assert decoded.scale_xy == (4.0, 4.0)
    assert_corners(decoded.rgb, orientation, tolerance=40)


@pytest.mark.parametrize("bad_orientation", [0, 9, 65535])
def test_invalid_orientation_values_are_ignored(bad_orientation: int) -> None:
    data = encode(corner_marked((64, 48)), "JPEG", quality=95, exif=exif_with_orientation(bad_orientation))
    decoded = decode_image(data, max_image_pixels=NO_LIMIT)
    assert decoded.size == ImageSize(64, 48)
    assert_corners(decoded.rgb, 1, tolerance=40)


# -- reduced-scale decoding -----------------------------------------------------------------------


def test_reduced_scale_jpeg_decode(photo_2000x1500: bytes) -> None:
    decoded = decode_image(photo_2000x1500, max_image_pixels=NO_LIMIT, min_size_wh=(640, 480))
    height, width = decoded.rgb.shape[:2]
    assert (width, height) == (750, 563)  # libjpeg-turbo's 3/8 scale, the smallest >= 640x480
    assert decoded.size == ImageSize(2000, 1500)
    assert decoded.scale_xy == (2000 / 750, 1500 / 563)
    # scale_xy maps array pixels back to the original: the gradient colour encodes position.
    for row, col in [(100, 100), (300, 600), (550, 20)]:
        original_x, original_y = col * decoded.scale_xy[0], row * decoded.scale_xy[1]
        assert abs(int(decoded.rgb[row, col, 0]) - original_x / 1999 * 255) <= 6
        assert abs(int(decoded.rgb[row, col, 1]) - original_y / 1499 * 255) <= 6


def test_reduced_scale_jpeg_decode_with_rotation(photo_2000x1500: bytes) -> None:
    exif = exif_with_orientation(6)
    data = encode(gradient((2000, 1500)), "JPEG", quality=90, exif=exif)
    decoded = decode_image(data, max_image_pixels=NO_LIMIT, min_size_wh=(480, 640))
    assert decoded.size == ImageSize(1500, 2000)
    assert decoded.rgb.shape == (750, 563, 3)
    assert decoded.scale_xy == (1500 / 563, 2000 / 750)


@pytest.mark.parametrize(
    ("min_size_wh", "expected_hw"),
    [
        (None, (1500, 2000)),
        ((3000, 3000), (1500, 2000)),
        ((1000, 100), (750, 1000)),
        ((250, 100), (188, 250)),
    ],
)
def test_reduced_scale_is_never_below_the_minimum(
    photo_2000x1500: bytes, min_size_wh: tuple[int, int] | None, expected_hw: tuple[int, int]
) -> None:
    decoded = decode_image(photo_2000x1500, max_image_pixels=NO_LIMIT, min_size_wh=min_size_wh)
    assert decoded.rgb.shape[:2] == expected_hw
    assert decoded.size == ImageSize(2000, 1500)


def test_reduced_scale_cmyk_jpeg_falls_back_to_pillow_draft() -> None:
    data = encode(gradient((800, 600)).convert("CMYK"), "JPEG", quality=90)
    decoded = decode_image(data, max_image_pixels=NO_LIMIT, min_size_wh=(256, 192))
    assert decoded.rgb.shape == (300, 400, 3)  # Pillow scales by 1/2, 1/4, 1/8 only
    assert decoded.size == ImageSize(800, 600)


def test_min_size_does_not_shrink_non_jpeg_images() -> None:
    decoded = decode_image(encode(gradient((200, 150)), "PNG"), max_image_pixels=NO_LIMIT, min_size_wh=(50, 40))
    assert decoded.rgb.shape == (150, 200, 3)


@pytest.mark.parametrize("min_size_wh", [(0, 480), (640, -1)])
def test_min_size_must_be_positive(min_size_wh: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match="min_size_wh"):
        decode_image(b"unused", max_image_pixels=NO_LIMIT, min_size_wh=min_size_wh)


# -- read_image_size ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        pytest.param(lambda: encode(noise((64, 48)), "JPEG"), (ImageSize(64, 48), "JPEG"), id="jpeg"),
        pytest.param(
            lambda: encode(noise((64, 48)), "JPEG", exif=exif_with_orientation(6)),
            (ImageSize(48, 64), "JPEG"),
            id="jpeg-rotated",
        ),
        pytest.param(lambda: encode(noise((30, 20)), "PNG"), (ImageSize(30, 20), "PNG"), id="png"),
        pytest.param(lambda: encode(noise((30, 20)), "GIF"), (ImageSize(30, 20), "GIF"), id="gif"),
        pytest.param(lambda: png_header_only(3000, 2000), (ImageSize(3000, 2000), "PNG"), id="no-decode"),
    ],
)
def test_read_image_size(make: Callable[[], bytes], expected: tuple[ImageSize, str]) -> None:
    assert read_image_size(make()) == expected


@pytest.mark.parametrize(
    "data",
    [b"", b"<svg/>", b"GIF89a", _truncated(encode(noise((64, 48)), "JPEG"))],
    ids=["empty", "svg", "gif-header", "truncated-jpeg"],
)
def test_read_image_size_rejects_like_decode_image(data: bytes) -> None:
    with pytest.raises(ImageDecodeError):
        read_image_size(data)


# -- DecodedImage ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rgb",
    [
        np.zeros((4, 5), np.uint8),
        np.zeros((4, 5, 4), np.uint8),
        np.zeros((4, 5, 3), np.float32),
        np.zeros((5, 4, 3), np.uint8).transpose(1, 0, 2),
    ],
)
def test_decoded_image_validates_its_array(rgb: np.ndarray) -> None:
    with pytest.raises(ValueError, match="rgb must be"):
        DecodedImage(rgb=rgb, size=ImageSize(5, 4), format="PNG")


def test_scale_xy_maps_array_pixels_to_original_pixels() -> None:
    decoded = DecodedImage(rgb=np.zeros((50, 100, 3), np.uint8), size=ImageSize(400, 300), format="JPEG")
    assert decoded.scale_xy == (4.0, 6.0)


# -- decode_image on arbitrary bytes --------------------------------------------------------------

SEED_IMAGES = [
    encode(noise((24, 16)), "JPEG"),
    encode(noise((24, 16)), "JPEG", progressive=True, exif=exif_with_orientation(6)),
    encode(noise((24, 16)).convert("CMYK"), "JPEG"),
    encode(noise((24, 16)), "PNG"),
    encode(solid("I;16", 30000), "PNG"),
    encode(solid("RGBA", (1, 2, 3, 4)), "PNG"),
    encode(_palette((10, 200, 30)), "GIF"),
    encode(noise((24, 16)), "BMP"),
    encode(noise((24, 16)), "TIFF"),
    encode(noise((24, 16)), "WEBP"),
]


@st.composite
def mutated_images(draw: st.DrawFn) -> bytes:
    """A valid small image with a few bytes overwritten and possibly truncated."""
    data = bytearray(draw(st.sampled_from(SEED_IMAGES)))
    for _ in range(draw(st.integers(0, 4))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data[: draw(st.integers(1, len(data)))])


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.one_of(st.binary(max_size=512), mutated_images()))
def test_decode_image_raises_only_specks_errors(data: bytes) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns about some corrupt metadata
        try:
            decoded = decode_image(data, max_image_pixels=1_000_000, min_size_wh=(8, 8))
        except SpecksError:
            return
    height, width = decoded.rgb.shape[:2]
    assert decoded.rgb.dtype == np.uint8 and decoded.rgb.flags.c_contiguous
    assert height >= 1 and width >= 1
