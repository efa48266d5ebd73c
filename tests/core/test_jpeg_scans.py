"""Tests for specks.core.jpeg_scans: the marker walk that refuses scan bombs and truncated JPEGs before decoding."""

from __future__ import annotations

import io
import struct
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image

from factories import scan_bomb, segment
from specks.core.jpeg_scans import MAX_JPEG_SCANS, WalkLimits, check_jpeg_structure, walk_jpeg
from specks.errors import ImageDecodeError, ImageTooLargeError

UNLIMITED = WalkLimits(max_scans=10**6, max_other_segments=10**6, max_skipped_bytes=10**9)


# -- factories --------------------------------------------------------------------------------


def encode_jpeg(image: Image.Image, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **params)
    return buffer.getvalue()


def photo(mode: str = "RGB", size_wh: tuple[int, int] = (64, 48)) -> Image.Image:
    """Random pixels: every block has data, like a photo's."""
    width, height = size_wh
    rgb = np.random.default_rng(0).integers(0, 256, (height, width, 3), np.uint8)
    return Image.fromarray(rgb).convert(mode)


def sof_offset(data: bytes) -> int:
    """Offset of the first start-of-frame marker in a JPEG written by Pillow."""
    return min(i for i in (data.find(b"\xff\xc0"), data.find(b"\xff\xc2")) if i >= 0)


def with_declared_size(data: bytes, width: int, height: int) -> bytes:
    """``data`` with its SOF header patched to declare ``width`` x ``height``."""
    at = sof_offset(data) + 5
    return data[:at] + struct.pack(">HH", height, width) + data[at + 4 :]


def insert_before_first_scan(data: bytes, extra: bytes) -> bytes:
    at = data.find(b"\xff\xda")
    return data[:at] + extra + data[at:]


def check(data: bytes, max_jpeg_scans: int = MAX_JPEG_SCANS) -> None:
    check_jpeg_structure(data, max_jpeg_scans=max_jpeg_scans)


# -- what real encoders write ---------------------------------------------------------------------


def _exif_with_thumbnail() -> bytes:
    """EXIF holding a progressive JPEG thumbnail: its markers lie inside an APP1 segment."""
    exif = Image.Exif()
    exif[0x0112] = 1
    return exif.tobytes() + encode_jpeg(photo("RGB", (16, 16)), progressive=True)


REAL_JPEGS: list[tuple[str, Callable[[], bytes], int]] = [
    ("baseline", lambda: encode_jpeg(photo()), 1),
    ("baseline-optimized", lambda: encode_jpeg(photo(), optimize=True), 1),
    ("baseline-grey", lambda: encode_jpeg(photo("L")), 1),
    ("baseline-cmyk", lambda: encode_jpeg(photo("CMYK")), 1),
    ("progressive", lambda: encode_jpeg(photo(), progressive=True), 10),
    ("progressive-444-q95", lambda: encode_jpeg(photo(), progressive=True, quality=95, subsampling=0), 10),
    ("progressive-grey", lambda: encode_jpeg(photo("L"), progressive=True), 6),
    ("progressive-cmyk", lambda: encode_jpeg(photo("CMYK"), progressive=True), 18),
    ("restart-markers", lambda: encode_jpeg(photo(), restart_marker_blocks=1), 1),
    ("restart-markers-progressive", lambda: encode_jpeg(photo(), progressive=True, restart_marker_rows=1), 10),
    ("uniform-optimized", lambda: encode_jpeg(Image.new("RGB", (64, 48), (90, 140, 200)), optimize=True), 1),
    ("uniform-progressive", lambda: encode_jpeg(Image.new("L", (64, 48), 90), progressive=True), 6),
    ("icc-and-comment", lambda: encode_jpeg(photo(), icc_profile=b"\xff\xda" * 300, comment=b"\xff\xda" * 300), 1),
    ("exif-thumbnail", lambda: encode_jpeg(photo(), progressive=True, exif=_exif_with_thumbnail()), 10),
]


@pytest.mark.parametrize(("make", "scans"), [pytest.param(*row[1:], id=row[0]) for row in REAL_JPEGS])
def test_real_encoder_jpegs_are_walked_to_the_end_and_accepted(make: Callable[[], bytes], scans: int) -> None:
    data = make()
    walk = walk_jpeg(data, UNLIMITED)
    assert (walk.scans, walk.ends_with_eoi, walk.shortfall, walk.skipped_bytes) == (scans, True, None, 0)
    check(data)


def test_markers_inside_entropy_coded_data_are_not_segments() -> None:
    # Every stuffed 0xFF00 and RST marker of a restart-every-block noise image is data, not a scan.
    data = encode_jpeg(photo("RGB", (128, 96)), quality=100, restart_marker_blocks=1)
    first_scan = data.find(b"\xff\xda")
    restarts = sum(data.count(bytes([0xFF, marker]), first_scan) for marker in range(0xD0, 0xD8))
    assert data.count(b"\xff\x00", first_scan) > 10 and restarts == 8 * 6 - 1  # between 48 MCUs
    without_restarts = encode_jpeg(photo("RGB", (128, 96)), quality=100)
    walk = walk_jpeg(data, UNLIMITED)
    assert (walk.scans, walk.ends_with_eoi) == (1, True)
    assert walk.segments == walk_jpeg(without_restarts, UNLIMITED).segments + 1  # + the DRI segment


def test_only_the_first_image_of_an_mpo_is_walked() -> None:
    # An MPO's later images follow the first one's end-of-image marker and are never decoded.
    data = encode_jpeg(photo()) + scan_bomb(MAX_JPEG_SCANS + 1)
    assert walk_jpeg(data, UNLIMITED).scans == 1
    check(data)


def test_data_that_is_not_a_jpeg_passes_unchecked() -> None:
    check(b"\x89PNG\r\n\x1a\n" + b"\xff\xda" * 1000)
    with pytest.raises(ValueError, match="not a JPEG"):
        walk_jpeg(b"GIF89a", UNLIMITED)


# -- scan bombs -----------------------------------------------------------------------------------


def test_scan_bomb_factory_makes_the_scans_it_says() -> None:
    bomb = scan_bomb(1000)
    walk = walk_jpeg(bomb, UNLIMITED)
    assert (walk.scans, walk.ends_with_eoi, walk.shortfall) == (1000, True, None)
    assert len(bomb) < 16_000  # 11 bytes a scan on 64x64: each scan is one end-of-band run


@pytest.mark.parametrize(("max_jpeg_scans", "accepted"), [(40, True), (39, False)])
def test_scan_limit_boundary(max_jpeg_scans: int, accepted: bool) -> None:
    bomb = scan_bomb(40)
    if accepted:
        check(bomb, max_jpeg_scans)
    else:
        with pytest.raises(ImageTooLargeError, match="with 40 scans .*, more than the limit of 39;"):
            check(bomb, max_jpeg_scans)


def test_default_scan_limit_boundary() -> None:
    check(scan_bomb(MAX_JPEG_SCANS))
    with pytest.raises(ImageTooLargeError, match=f"more than the limit of {MAX_JPEG_SCANS}"):
        check(scan_bomb(MAX_JPEG_SCANS + 1))


def test_scan_bomb_is_refused_after_walking_one_scan_past_the_limit() -> None:
    # The walk stops at limit + 1 scans, so its cost does not grow with the bomb.
    bomb = scan_bomb(20_000)
    walk = walk_jpeg(bomb, WalkLimits())
    assert walk.scans == MAX_JPEG_SCANS + 1
    with pytest.raises(ImageTooLargeError) as caught:
        check(bomb)
    message = caught.value.message
    assert f"with 20000 scans (progressive passes), more than the limit of {MAX_JPEG_SCANS};" in message
    assert "re-encode it" in message


def test_start_of_scan_bytes_in_metadata_do_not_count() -> None:
    data = encode_jpeg(photo(), comment=b"\xff\xda\x00\x08" * 500)
    assert walk_jpeg(data, UNLIMITED).scans == 1
    check(data, max_jpeg_scans=1)


# -- segments and junk ----------------------------------------------------------------------------


def test_segment_limit_boundary() -> None:
    limits = WalkLimits(max_scans=1)
    base = encode_jpeg(photo())
    spare = limits.max_segments - walk_jpeg(base, UNLIMITED).segments
    comments = segment(0xFE, b"")
    check(insert_before_first_scan(base, comments * spare), max_jpeg_scans=1)
    with pytest.raises(ImageTooLargeError, match=f"more than {limits.max_segments} marker segments"):
        check(insert_before_first_scan(base, comments * (spare + 1)), max_jpeg_scans=1)


@pytest.mark.parametrize("junk", [b"\xff", b"\x00", b"\xff\x00"], ids=["fill", "zeros", "stuffed"])
def test_junk_between_segments_limit_boundary(junk: bytes) -> None:
    allowed = WalkLimits().max_skipped_bytes
    base = encode_jpeg(photo())
    at_limit = insert_before_first_scan(base, (junk * allowed)[:allowed])
    assert walk_jpeg(at_limit, UNLIMITED).skipped_bytes == allowed
    check(at_limit)
    with pytest.raises(ImageDecodeError, match=f"more than {allowed} bytes of padding or junk"):
        check(insert_before_first_scan(base, (junk * (allowed + 1))[: allowed + 1]))


def test_a_few_junk_bytes_before_a_marker_are_accepted_like_libjpeg_does() -> None:
    data = encode_jpeg(photo())
    check(data[:-2] + b"\x00" * 10 + data[-2:])
    check(insert_before_first_scan(data, b"\xff\xff\x00\x00garbage"))


# -- truncated data and scans too short for the declared image ----------------------------------


@pytest.mark.parametrize("progressive", [False, True])
@pytest.mark.parametrize("cut", [1, 2, 100])
def test_jpeg_without_its_end_of_image_marker_is_refused(progressive: bool, cut: int) -> None:
    data = encode_jpeg(photo(), progressive=progressive)
    with pytest.raises(ImageDecodeError, match="truncated or corrupt: the JPEG ends before its end-of-image"):
        check(data[:-cut])


@pytest.mark.parametrize("length", [3, 20, 200])
def test_jpeg_cut_inside_its_header_is_refused(length: int) -> None:
    with pytest.raises(ImageDecodeError, match="ends before its end-of-image"):
        check(encode_jpeg(photo())[:length])


@pytest.mark.parametrize("progressive", [False, True])
@pytest.mark.parametrize("mode", ["RGB", "L", "CMYK"])
def test_scan_too_short_for_the_declared_size_is_refused(mode: str, progressive: bool) -> None:
    # 16x16 pixels of data under a header declaring 6000x6000, ended properly with an EOI:
    # the decoders would paint 36 megapixels of grey (0.5 s, 345 MiB for 854 bytes).
    data = with_declared_size(encode_jpeg(photo(mode, (16, 16)), progressive=progressive), 6000, 6000)
    with pytest.raises(ImageDecodeError) as caught:
        check(data)
    assert "declares 6000x6000 pixels, but its scan 1 holds" in caught.value.message


def _entropy_bytes(data: bytes) -> tuple[int, int]:
    """Start and end of a baseline JPEG's entropy-coded data."""
    sos = data.find(b"\xff\xda")
    start = sos + 2 + struct.unpack(">H", data[sos + 2 : sos + 4])[0]
    return start, len(data) - 2


def test_one_colour_jpeg_is_exactly_at_the_floor_and_one_byte_less_is_refused() -> None:
    # An optimized one-colour baseline JPEG spends the minimum, 2 bits per block (1-bit codes for
    # a zero DC difference and an end-of-block): 64x48 grey is 48 blocks, 12 bytes.
    data = encode_jpeg(Image.new("L", (64, 48), 128), optimize=True)  # 128: every DC difference is 0
    start, end = _entropy_bytes(data)
    assert end - start == 48 * 2 // 8
    check(data)
    with pytest.raises(ImageDecodeError, match="holds 11 bytes of image data where at least 12 are needed"):
        check(data[: end - 1] + data[end:])


def test_declared_size_of_a_real_photo_is_covered_by_its_data() -> None:
    # Noise costs far more than the floor: a 2x larger declared size still passes (the check
    # refuses data that cannot cover the image, not unusual images).
    data = encode_jpeg(photo("RGB", (64, 48)))
    check(with_declared_size(data, 128, 96))
