"""Base64 text of an image from a request -> the raw file bytes, strictly, with diagnostics.

``decode_base64`` accepts what clients commonly send (the standard or the URL-safe alphabet, a
``data:image/<type>;base64,`` prefix, MIME line breaks, missing padding) and refuses anything
else with ``InvalidBase64Error`` (field ``"image"``) saying what is wrong and at which position.
The bytes then go to ``specks.core.imaging.decode_image``.

Named ``base64_text`` so that it is never mistaken for the standard library's ``base64``.
"""

from __future__ import annotations

import binascii
import re

import pybase64

from ..errors import InvalidBase64Error, InvalidFieldError

__all__ = ["decode_base64"]

_MAX_DATA_URI_HEADER_CHARS = 256
_BASE64_BYTES = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_=\r\n"
_LONE_CR = re.compile(rb"\r(?!\n)")
_PADDING_THEN_DATA = re.compile(rb"=[=\r\n]*[^=\r\n]")


def decode_base64(text: str) -> bytes:
    """Decode the base64 text of an image strictly -> the raw file bytes.

    Accepts the standard (``+/``) or the URL-safe (``-_``) alphabet (not both), an optional
    ``data:image/<type>;base64,`` prefix, MIME line breaks (``\\n`` or ``\\r\\n``) anywhere,
    and missing padding where it is repairable. Anything else raises ``InvalidBase64Error``
    (field ``"image"``) saying what is wrong and where. The common case (standard alphabet,
    padded, one line) costs a single SIMD decode.
    """
    if not isinstance(text, str):
        raise InvalidFieldError(f"image must be a base64 string, got {type(text).__name__}", field="image")
    if not text:
        raise _base64_error("image is an empty string; send the image file encoded as base64")
    try:
        return pybase64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return _decode_base64_unusual(text)


def _base64_error(message: str) -> InvalidBase64Error:
    return InvalidBase64Error(message, field="image")


def _decode_base64_unusual(text: str) -> bytes:
    """The slow path: data URI prefix, line breaks, URL-safe alphabet, missing padding."""
    start = _data_uri_payload_start(text)
    compact = text[start:]
    if "\n" in compact:
        compact = compact.replace("\r\n", "").replace("\n", "")
    if not compact:
        raise _base64_error("image contains no base64 data (only a data URI prefix or line breaks)")
    is_url_safe = "-" in compact or "_" in compact
    if is_url_safe and ("+" in compact or "/" in compact):
        raise _base64_error(_diagnose_base64(text, start))
    padded = _repair_padding(compact)
    if padded is None:
        raise _base64_error(_diagnose_base64(text, start))
    try:
        return pybase64.b64decode(padded, altchars=b"-_" if is_url_safe else None, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _base64_error(_diagnose_base64(text, start)) from exc


def _data_uri_payload_start(text: str) -> int:
    """Index where the base64 payload starts: after a ``data:image/...;base64,`` prefix, else 0."""
    if text[:5].lower() != "data:":
        return 0
    header, comma, _ = text[:_MAX_DATA_URI_HEADER_CHARS].partition(",")
    if not comma:
        raise _base64_error(
            f"image starts with 'data:' but has no ',' within {_MAX_DATA_URI_HEADER_CHARS} characters; "
            "expected 'data:image/<type>;base64,<base64 data>'"
        )
    media_type, *params = header[5:].split(";")
    media_type = media_type.strip().lower()
    if not params or params[-1].strip().lower() != "base64":
        raise _base64_error(
            f"image is a data URI that is not base64-encoded ({header[:60]!r}); "
            "expected 'data:image/<type>;base64,<base64 data>'"
        )
    if not media_type.startswith("image/") or media_type == "image/":
        raise _base64_error(
            f"image is a data URI of media type {media_type or '(none)'!r}, not an image; "
            "expected 'data:image/<type>;base64,<base64 data>'"
        )
    return len(header) + 1


def _repair_padding(compact: str) -> str | None:
    """Return ``compact`` with its padding completed, or None when the length cannot be base64."""
    pad = len(compact) - len(compact.rstrip("="))
    remainder = len(compact) % 4
    if pad == 0:
        if remainder == 1:
            return None
        return compact + "=" * ((4 - remainder) % 4)
    if pad > 2 or remainder != 0:
        return None
    return compact


def _diagnose_base64(text: str, start: int) -> str:
    """Say what is wrong with base64 ``text`` whose payload starts at ``start`` (positions in ``text``)."""
    body = text[start:]
    raw, non_ascii_at = _ascii_prefix(body)
    bad_at = _first_invalid_byte(raw)
    if bad_at is None and non_ascii_at is not None:
        bad_at = non_ascii_at
    if bad_at is not None:
        return _invalid_char_message(body, bad_at, start)
    std_at = _first_of(raw, b"+/")
    url_at = _first_of(raw, b"-_")
    if std_at is not None and url_at is not None:
        return (
            f"image mixes the standard base64 alphabet ({body[std_at]!r} at position {std_at + start}) "
            f"with the URL-safe one ({body[url_at]!r} at position {url_at + start}); use one alphabet"
        )
    middle = _PADDING_THEN_DATA.search(raw)
    if middle is not None:
        return (
            f"image has padding '=' at position {middle.start() + start} followed by more data; "
            "'=' may only appear at the end (were several base64 strings concatenated?)"
        )
    compact = raw.replace(b"\r", b"").replace(b"\n", b"")
    return _length_message(len(compact.rstrip(b"=")), len(compact) - len(compact.rstrip(b"=")))


def _ascii_prefix(body: str) -> tuple[bytes, int | None]:
    """The ASCII bytes of ``body`` up to its first non-ASCII character, and that character's index."""
    try:
        return body.encode("ascii"), None
    except UnicodeEncodeError as exc:
        return body[: exc.start].encode("ascii"), exc.start


def _first_invalid_byte(raw: bytes) -> int | None:
    """Index of the first byte that is neither base64 nor part of a line break, else None."""
    invalid = set(raw.translate(None, _BASE64_BYTES))
    positions = [raw.find(bytes([value])) for value in invalid]
    lone_cr = _LONE_CR.search(raw) if b"\r" in raw else None
    if lone_cr is not None:
        positions.append(lone_cr.start())
    return min(positions, default=None)


def _first_of(raw: bytes, chars: bytes) -> int | None:
    positions = [index for index in (raw.find(bytes([value])) for value in chars) if index >= 0]
    return min(positions, default=None)


def _invalid_char_message(body: str, index: int, start: int) -> str:
    char = body[index]
    hint = ""
    if char.isspace():
        hint = " (only line breaks, \\n or \\r\\n, may appear inside base64)"
    return f"image contains {char!r} at position {index + start}, which is not a base64 character{hint}"


def _length_message(data_chars: int, pad_chars: int) -> str:
    if pad_chars > 2:
        return f"image ends with {pad_chars} '=' characters; base64 padding is at most 2"
    if data_chars % 4 == 1:
        return (
            f"image has a base64 length of {data_chars}, one more than a multiple of 4, which no "
            "base64 encoding produces: the data is truncated or has a stray character"
        )
    if pad_chars and (data_chars + pad_chars) % 4:
        needed = (4 - data_chars % 4) % 4
        return (
            f"image has a base64 length of {data_chars} with {pad_chars} '=' of padding, but that length "
            f"needs {needed or 'no'} '='; fix the padding or send the string unpadded"
        )
    return "image is not valid base64"
