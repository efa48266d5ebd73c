"""Small factories for test images and request bodies."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import numpy as np
from PIL import Image


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
