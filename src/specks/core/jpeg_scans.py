"""A JPEG's marker walk before any decoding: scan bombs, truncated data, scans too short for the image.

libjpeg decodes every scan of a progressive JPEG over every block of the image, and nothing in
the format bounds the number of scans: the same AC scan may be repeated, each repetition a
~40-byte run of end-of-band codes. A 4096x4096 grey JPEG with 10,000 such scans (423 KB)
takes 14 s to decode, one with 20,000 (813 KB) 41 s. Real encoders write a handful of scans
(measured below), so ``check_jpeg_structure`` counts the start-of-scan markers by walking the
marker segments, in time linear in the file and without decoding, and refuses more than a limit.

The same walk refuses, before any pixel is allocated, two kinds of incomplete file that the
decoders would otherwise expand to the full declared size:

* data that ends before the end-of-image marker: the decoders refuse those too, but only after
  allocating (and for simplejpeg, filling) the declared image;
* a Huffman-coded scan whose entropy-coded data is too short to code the blocks it covers:
  a sequential scan spends at least 2 bits per block (a DC code and an end-of-block code), a
  progressive DC scan at least 1. Fewer bits cannot be an intact file (the decoder runs out and
  paints the rest grey), e.g. 854 bytes declaring 6000x6000 decoded to 108 MB in 0.5 s, 345 MiB.
  Arithmetic-coded and AC scans have no such floor and are not checked.

The walk follows libjpeg: garbage before a marker and 0xFF fill bytes are skipped; inside
entropy-coded data 0xFF00 (a stuffed 0xFF) and RST0..7 are data, any other marker ends it.
Only the first image is walked (an MPO's later images are never decoded).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from ..errors import ImageDecodeError, ImageTooLargeError

__all__ = [
    "MAX_JPEG_SCANS",
    "JpegWalk",
    "WalkLimits",
    "check_jpeg_structure",
    "is_jpeg",
    "walk_jpeg",
]

# Scans real encoders write (measured on a 2048x1365 photo): libjpeg-turbo's cjpeg/jpegtran
# -progressive and Pillow's progressive=True 10 (YCbCr), 6 (grey), 18 (CMYK); mozjpeg 9, 5, 17;
# baseline files 1 (so are all 1,874 COCO, VisDrone and HIT-UAV photos). Each extra scan is a
# pass over every block: at the 40 MP pixel limit, 100 repeated AC scans add 0.6 s to a 0.28 s
# decode (200 add 1.4 s; 6400x6250 grey, simplejpeg). 100 is over 5x what an encoder writes.
MAX_JPEG_SCANS = 100
# Marker segments a real JPEG has besides its scans (a DHT may precede each): APPn metadata
# (EXIF, ICC in 64 KB chunks, XMP, MPF), DQT, SOF, DRI, COM; measured at most 38 (progressive
# CMYK) and 12 in the data sets. Each costs a Python step here and in Pillow's header parser
# (2 MiB of 4-byte comment segments took 0.85 s to open), so more are refused.
_MAX_OTHER_SEGMENTS = 1000
# Fill (0xFF) and junk bytes libjpeg skips before a marker: real files have a few. Pillow's
# header parser steps through them in Python (2 MiB of fill took 1.6 s to open), so more are refused.
_MAX_SKIPPED_BYTES = 65_536

_SOI = b"\xff\xd8"
_EOI = 0xD9
_SOS = 0xDA
# Markers without a length field: RST0..7, TEM and a (duplicate) SOI.
_STANDALONE = frozenset({*range(0xD0, 0xD8), 0x01, 0xD8})
# Start-of-frame markers: 0xC0..0xCF less DHT (C4), JPG (C8) and DAC (CC).
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Huffman-coded, DCT-based frames: baseline, extended sequential, progressive.
_SEQUENTIAL_HUFFMAN = frozenset({0xC0, 0xC1})
_PROGRESSIVE_HUFFMAN = 0xC2
# Between segments libjpeg skips anything up to an 0xFF followed by neither 0x00 nor 0xFF.
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xff]")
# Entropy-coded data ends at the first marker that is not a stuffed 0xFF or RST0..7.
_ENTROPY_END = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


@dataclass(frozen=True)
class _Component:
    ident: int
    h: int  # horizontal sampling factor
    v: int  # vertical sampling factor


@dataclass(frozen=True)
class _Frame:
    """What an SOF segment declares: the coding process, the size and the components."""

    marker: int
    width_px: int
    height_px: int
    components: tuple[_Component, ...]

    def blocks_in_scan(self, component_ids: tuple[int, ...]) -> int:
        """8x8 blocks a scan of these components codes, counted as libjpeg does.

        A one-component scan codes the component's own blocks; an interleaved one whole MCUs,
        with the padding blocks at the right and bottom edges.
        """
        h_max = max(c.h for c in self.components)
        v_max = max(c.v for c in self.components)
        in_scan = [c for c in self.components if c.ident in component_ids]
        if len(in_scan) == 1:  # non-interleaved: the component's own blocks
            only = in_scan[0]
            width_blocks = _ceil_div(_ceil_div(self.width_px * only.h, h_max), 8)
            height_blocks = _ceil_div(_ceil_div(self.height_px * only.v, v_max), 8)
            return width_blocks * height_blocks
        mcus = _ceil_div(self.width_px, 8 * h_max) * _ceil_div(self.height_px, 8 * v_max)
        return mcus * sum(c.h * c.v for c in in_scan)


@dataclass(frozen=True)
class _ScanShortfall:
    """A scan whose entropy-coded data is too short for the blocks it must code."""

    index: int  # 1-based
    data_bytes: int
    needed_bytes: int
    frame: _Frame


@dataclass(frozen=True)
class JpegWalk:
    """What walking a JPEG's markers found.

    scans:         start-of-scan markers before the end-of-image marker; the walk stops at
                   ``max_scans + 1``.
    segments:      marker segments walked (scans included); the walk stops past ``max_segments``.
    skipped_bytes: fill and junk bytes skipped between segments; the walk stops past
                   ``max_skipped_bytes``.
    ends_with_eoi: the walk reached the end-of-image marker (False: the data ends first, or
                   the walk stopped at a limit).
    shortfall:     the first Huffman scan too short to code its blocks, if any.
    """

    scans: int = 0
    segments: int = 0
    skipped_bytes: int = 0
    ends_with_eoi: bool = False
    shortfall: _ScanShortfall | None = None


@dataclass(frozen=True)
class WalkLimits:
    """Where ``walk_jpeg`` stops counting: one past each limit is enough to refuse."""

    max_scans: int = MAX_JPEG_SCANS
    max_other_segments: int = _MAX_OTHER_SEGMENTS
    max_skipped_bytes: int = _MAX_SKIPPED_BYTES

    @property
    def max_segments(self) -> int:
        """Segments in all: each scan may bring a DHT with its SOS."""
        return 2 * self.max_scans + self.max_other_segments


def is_jpeg(data: bytes) -> bool:
    """Whether ``data`` starts like a JPEG (or MPO) file, as Pillow's JPEG plugin decides."""
    return data[:3] == b"\xff\xd8\xff"


def check_jpeg_structure(data: bytes, *, max_jpeg_scans: int = MAX_JPEG_SCANS) -> None:
    """Refuse a JPEG that no intact file from a real encoder looks like, before decoding it.

    Raises ``ImageTooLargeError`` for more than ``max_jpeg_scans`` scans or an absurd number of
    marker segments, and ``ImageDecodeError`` for data that ends before the end-of-image marker,
    a scan too short for its blocks, or long runs of junk between segments. Data that is not a
    JPEG passes unchecked.
    """
    if not is_jpeg(data):
        return
    limits = WalkLimits(max_scans=max_jpeg_scans)
    walk = walk_jpeg(data, limits)
    if walk.scans > limits.max_scans:
        # The walk stopped one past the limit; the start-of-scan codes in the file (exact unless
        # its metadata holds such bytes) tell the sender how far over it is, at C speed.
        scans = max(walk.scans, data.count(b"\xff\xda"))
        raise ImageTooLargeError(
            f"image is a JPEG with {scans} scans (progressive passes), more than the limit of {limits.max_scans}; "
            "each pass costs a full decode of the image and encoders write at most about 20: "
            "re-encode it (as a baseline JPEG, or progressive with a standard scan script) before sending"
        )
    if walk.segments > limits.max_segments:
        raise ImageTooLargeError(
            f"image is a JPEG with more than {limits.max_segments} marker segments, the limit; "
            "real files have a few dozen: re-encode it before sending"
        )
    if walk.skipped_bytes > limits.max_skipped_bytes:
        raise ImageDecodeError(
            f"image is a JPEG with more than {limits.max_skipped_bytes} bytes of padding or junk between "
            "its marker segments; re-encode it, or send the unmodified file"
        )
    if not walk.ends_with_eoi:
        raise ImageDecodeError(
            "image data is truncated or corrupt: the JPEG ends before its end-of-image marker; "
            "send the complete, unmodified file"
        )
    if walk.shortfall is not None:
        raise ImageDecodeError(_shortfall_message(walk.shortfall))


def _shortfall_message(shortfall: _ScanShortfall) -> str:
    frame = shortfall.frame
    return (
        f"image data is truncated or corrupt: the JPEG declares {frame.width_px}x{frame.height_px} pixels, "
        f"but its scan {shortfall.index} holds {shortfall.data_bytes} bytes of image data where at least "
        f"{shortfall.needed_bytes} are needed; send the complete, unmodified file"
    )


def walk_jpeg(data: bytes, limits: WalkLimits) -> JpegWalk:
    """Walk the marker segments of JPEG ``data`` up to its first end-of-image marker.

    Stops one past any of ``limits``, so the Python steps are bounded whatever the file holds
    and the regular-expression searches, in C, are linear in it.
    """
    if not data.startswith(_SOI):
        raise ValueError("not a JPEG: data does not start with an SOI marker")
    walk, pos, frame = JpegWalk(), len(_SOI), None
    while walk.scans <= limits.max_scans and walk.segments <= limits.max_segments:
        allowance = limits.max_skipped_bytes - walk.skipped_bytes
        found = _NEXT_MARKER.search(data, pos, pos + allowance + 2)
        if found is None:
            junk_bytes = min(len(data) - pos, allowance + 1)
            return replace(walk, skipped_bytes=walk.skipped_bytes + junk_bytes)
        walk = replace(walk, skipped_bytes=walk.skipped_bytes + found.start() - pos)
        marker, pos = data[found.end() - 1], found.end()
        if marker == _EOI:
            return replace(walk, ends_with_eoi=True)
        walk = replace(walk, segments=walk.segments + 1)
        if marker in _STANDALONE:
            continue
        segment = _read_segment(data, pos)
        if segment is None:
            break
        body, pos = segment
        if marker in _SOF:
            frame = _parse_frame(marker, body)
        elif marker == _SOS:
            walk = replace(walk, scans=walk.scans + 1)
            entropy_end = _ENTROPY_END.search(data, pos)
            if entropy_end is None:
                break
            if walk.shortfall is None:
                walk = replace(walk, shortfall=_scan_shortfall(frame, body, entropy_end.start() - pos, walk.scans))
            pos = entropy_end.start()
    return walk


def _read_segment(data: bytes, pos: int) -> tuple[bytes, int] | None:
    """The body of the segment whose length field is at ``pos``, and where the next one starts.

    None when the data ends inside it. libjpeg skips a length below 2 as if it were 2 (or
    refuses the segment), so the walk always moves on.
    """
    if pos + 2 > len(data):
        return None
    end = pos + max(2, int.from_bytes(data[pos : pos + 2], "big"))
    if end > len(data):
        return None
    return data[pos + 2 : end], end


def _parse_frame(marker: int, body: bytes) -> _Frame | None:
    """An SOF segment's body -> the frame; None when malformed (the decoder then refuses it)."""
    if len(body) < 6:
        return None
    height_px = int.from_bytes(body[1:3], "big")
    width_px = int.from_bytes(body[3:5], "big")
    count = body[5]
    specs = body[6 : 6 + 3 * count]
    if count == 0 or len(specs) < 3 * count:
        return None
    components = tuple(
        _Component(ident=specs[i], h=specs[i + 1] >> 4, v=specs[i + 1] & 0x0F) for i in range(0, len(specs), 3)
    )
    if any(not (1 <= c.h <= 4 and 1 <= c.v <= 4) for c in components):
        return None
    return _Frame(marker, width_px, height_px, components)


def _scan_shortfall(frame: _Frame | None, header: bytes, data_bytes: int, index: int) -> _ScanShortfall | None:
    """The shortfall of one scan (SOS ``header``, ``data_bytes`` of entropy-coded data), if any."""
    bits_per_block = _min_bits_per_block(frame, header)
    if frame is None or bits_per_block == 0:
        return None
    count = header[0]
    component_ids = tuple(header[1 : 1 + 2 * count : 2])
    if not component_ids or not set(component_ids) <= {c.ident for c in frame.components}:
        return None
    needed_bytes = _ceil_div(frame.blocks_in_scan(component_ids) * bits_per_block, 8)
    if data_bytes >= needed_bytes:
        return None
    return _ScanShortfall(index, data_bytes, needed_bytes, frame)


def _min_bits_per_block(frame: _Frame | None, header: bytes) -> int:
    """The fewest bits a scan can spend on each block: 2 sequential, 1 progressive DC, else 0.

    A Huffman code is at least 1 bit: a sequential block codes a DC difference and an
    end-of-block (or a last coefficient); a progressive DC scan one DC code or refinement bit.
    AC scans may cover 32,767 blocks with one end-of-band run, arithmetic coding has no floor.
    """
    if frame is None or not header or len(header) < 1 + 2 * header[0] + 3:
        return 0
    if frame.marker in _SEQUENTIAL_HUFFMAN:
        return 2
    spectral_start = header[1 + 2 * header[0]]
    if frame.marker == _PROGRESSIVE_HUFFMAN and spectral_start == 0:
        return 1
    return 0


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)
