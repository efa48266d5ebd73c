"""Small factories for test images and request bodies, and an IoU matrix to score detections by."""

from __future__ import annotations

import base64
import contextlib
import io
import socket
import struct
import threading
import zlib

import numpy as np
import pytest
from PIL import Image

from specks.core.boxes import areas
from specks.core.preprocess import BGR_RAW_TOP_LEFT, RGB_UNIT_CENTERED, ChannelOrder, Placement, Preprocessing


def encode(image: Image.Image, fmt: str, **save_args: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save_args)
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def solid(mode: str, size_wh: tuple[int, int] = (64, 48), color: object = 128) -> Image.Image:
    return Image.new(mode, size_wh, color)  # type: ignore[arg-type]


def exif_rotated_jpeg(size_wh: tuple[int, int], orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(Image.new("RGB", size_wh, (200, 30, 30)), "JPEG", exif=exif.tobytes())


def sixteen_bit_png(size_wh: tuple[int, int] = (64, 48), value: int = 40000) -> bytes:
    array = np.full((size_wh[1], size_wh[0]), value, np.uint16)
    return encode(Image.fromarray(array), "PNG")


def cmyk_jpeg(size_wh: tuple[int, int] = (64, 48)) -> bytes:
    return encode(Image.new("CMYK", size_wh, (0, 255, 255, 0)), "JPEG")


def animated_gif() -> bytes:
    frames = [Image.new("P", (32, 32), i * 40) for i in range(3)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def huge_bilevel_png(width: int = 40_000, height: int = 40_000) -> bytes:
    """A valid 1-bit PNG of width x height, all black, built without holding the pixels."""
    row = b"\x00" + b"\x00" * ((width + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    chunks = [compressor.compress(row * 1000) for _ in range(height // 1000)]
    chunks.append(compressor.compress(row * (height % 1000)))
    chunks.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", b"".join(chunks))
        + _png_chunk(b"IEND", b"")
    )


def write_shapes_dataset(folder, *, images: int, seed: int, size_wh: tuple[int, int] = (128, 128)) -> None:
    """A COCO-format folder of noise images with bright squares (class "square") and dark discs ("disc").

    Each image holds 1-3 shapes of 12-28 px; every fourth image holds none (a negative).
    """
    import json
    from pathlib import Path

    rng = np.random.default_rng(seed)
    root = Path(folder)
    (root / "images").mkdir(parents=True, exist_ok=True)
    records, annotations = [], []
    width, height = size_wh
    yy, xx = np.mgrid[0:height, 0:width]
    for index in range(images):
        pixels = rng.integers(60, 140, (height, width, 3)).astype(np.uint8)
        count = 0 if index % 4 == 3 else int(rng.integers(1, 4))
        for _ in range(count):
            side = int(rng.integers(12, 29))
            x, y = int(rng.integers(0, width - side)), int(rng.integers(0, height - side))
            category = int(rng.integers(1, 3))
            if category == 1:
                pixels[y : y + side, x : x + side] = 250
            else:
                disc = (xx - x - side / 2) ** 2 + (yy - y - side / 2) ** 2 <= (side / 2) ** 2
                pixels[disc] = 10
            annotations.append({
                "id": len(annotations) + 1, "image_id": index + 1, "category_id": category,
                "bbox": [x, y, side, side], "area": side * side, "iscrowd": 0,
            })  # fmt: skip
        name = f"shapes_{index:03d}.png"
        Image.fromarray(pixels).save(root / "images" / name)
        records.append({"id": index + 1, "file_name": name, "width": width, "height": height})
    categories = [{"id": 1, "name": "square"}, {"id": 2, "name": "disc"}]
    body = {"images": records, "annotations": annotations, "categories": categories}
    (root / "annotations.coco.json").write_text(json.dumps(body), encoding="utf-8")


# -- a progressive-JPEG scan bomb ------------------------------------------------------------------
# Scans of Pillow's (libjpeg-turbo's) progressive script for a grey image: the scan bomb's base.
GREY_PROGRESSIVE_SCANS = 6


def segment(marker: int, body: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(body) + 2) + body


def _eob_run_data(blocks: int) -> bytes:
    """Entropy-coded data of an AC scan that skips ``blocks`` blocks with end-of-band runs.

    Uses the table from ``scan_bomb``: EOBn (run 2**n + n extra bits) has the 4-bit code n.
    """
    bits = ""
    while blocks:
        run = min(blocks, 32767)
        n = run.bit_length() - 1
        bits += format(n, "04b") + (format(run - (1 << n), f"0{n}b") if n else "")
        blocks -= run
    bits += "1" * (-len(bits) % 8)  # pad with 1-bits, as encoders do
    data = bytes(int(bits[i : i + 8], 2) for i in range(0, len(bits), 8))
    return data.replace(b"\xff", b"\xff\x00")


def scan_bomb(total_scans: int, size_wh: tuple[int, int] = (64, 64)) -> bytes:
    """A valid progressive grey JPEG with ``total_scans`` scans: Pillow's 6, then repeats of one AC scan.

    Each repeat (Ss=1, Se=63, Ah=Al=0) codes every block as an end-of-band run: libjpeg accepts
    it without a warning and makes a full pass over the image for it.
    """
    base = encode(Image.new("L", size_wh, 128), "JPEG", progressive=True)
    repeats = total_scans - GREY_PROGRESSIVE_SCANS
    assert repeats >= 0 and base.endswith(b"\xff\xd9")
    width, height = size_wh
    blocks = -(-width // 8) * -(-height // 8)
    eob_symbols = bytes(n << 4 for n in range(15))  # EOB0..EOB14, all with 4-bit codes
    table = segment(0xC4, bytes([0x11, 0, 0, 0, len(eob_symbols)] + [0] * 12) + eob_symbols)  # AC table 1
    scan = segment(0xDA, bytes([1, 1, 0x01, 1, 63, 0x00])) + _eob_run_data(blocks)  # component 1, AC table 1
    return base[:-2] + table + scan * repeats + b"\xff\xd9"


# A 6x2 image into a 4x6 input: scale 1 (no resampling), so every element can be written by hand.
SMALL_RGB = np.array(
    [
        [[10, 20, 30], [40, 50, 60], [70, 80, 90], [100, 110, 120], [130, 140, 150], [160, 170, 180]],
        [[1, 2, 3], [4, 5, 6], [7, 8, 9], [11, 12, 13], [14, 15, 16], [17, 18, 19]],
    ],
    np.uint8,
)


def hand_made_tensor(preprocessing: Preprocessing) -> np.ndarray:
    """The (1, 3, 4, 6) input SMALL_RGB should give, written out element by element."""
    pad_rows = {Placement.TOP_LEFT: (2, 3), Placement.CENTER: (0, 3)}[preprocessing.placement]
    image_rows = {Placement.TOP_LEFT: (0, 1), Placement.CENTER: (1, 2)}[preprocessing.placement]
    channels = [0, 1, 2] if preprocessing.channel_order is ChannelOrder.RGB else [2, 1, 0]
    expected = np.zeros((1, 3, 4, 6), np.float32)
    for slot, channel in enumerate(channels):
        for row in range(4):
            for column in range(6):
                if row in image_rows:
                    value = float(SMALL_RGB[image_rows.index(row), column, channel])
                else:
                    assert row in pad_rows
                    value = float(preprocessing.pad_value)
                expected[0, slot, row, column] = value * preprocessing.value_scale
    return expected


def iou_matrix(a_xyxy: np.ndarray, b_xyxy: np.ndarray) -> np.ndarray:
    """Intersection over union of every box in (N, 4) with every box in (M, 4) -> (N, M) float32.

    Boxes are x1, y1, x2, y2 float32 in one frame. The service never needs all pairs (``overlap.overlaps``
    takes one box against many); tests match found boxes to expected ones with it.
    """
    top_left = np.maximum(a_xyxy[:, None, :2], b_xyxy[None, :, :2])
    bottom_right = np.minimum(a_xyxy[:, None, 2:], b_xyxy[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    union = areas(a_xyxy)[:, None] + areas(b_xyxy)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0).astype(np.float32)


def boxes(*rows: list[float]) -> np.ndarray:
    """(N, 4) float32 boxes from plain lists; no rows gives an empty (0, 4) array."""
    return np.asarray(rows, np.float32).reshape(-1, 4)


def scores(*values: float) -> np.ndarray:
    return np.asarray(values, np.float32)


def classes(*values: int) -> np.ndarray:
    return np.asarray(values, np.int32)


# Three model preprocessings the letterbox tests run: YOLOX's, YOLOv5's, and one of neither.
PREPROCESSINGS = [
    pytest.param(BGR_RAW_TOP_LEFT, id="yolox-bgr-0..255-top-left"),
    pytest.param(RGB_UNIT_CENTERED, id="yolov5-rgb-0..1-centred"),
    pytest.param(Preprocessing(ChannelOrder.BGR, 1 / 255, 0, Placement.CENTER), id="bgr-unit-black-pad"),
]


def slow_body(
    port: int, stop: threading.Event, *, declared_bytes: int = 1_000_000, interval_s: float = 0.5, sends: int = 60
) -> None:
    """A slow client on loopback: declare a body of ``declared_bytes`` to ``POST /predict`` and send
    it one byte every ``interval_s``, at most ``sends`` times, until ``stop`` is set."""
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {declared_bytes}\r\n\r\n".encode()
        )
        for _ in range(sends):  # bounded in count as well as by ``stop``
            if stop.wait(interval_s):
                return
            sock.sendall(b" ")
