"""Reading a request body safely, on plain values: declared size, media type, JSON syntax and nesting.

Every front-end (the Flask routes, the compatible APIs, a Ray deployment) passes what it got
(the Content-Length header as an int or None, the Content-Type string, the bytes) and gets the
same checks and messages.
"""

from __future__ import annotations

import codecs
from typing import Any

import orjson

from ..config import Limits
from ..errors import InvalidJSONError, PayloadTooLargeError, UnsupportedMediaTypeError, clipped

# A valid request holds a handful of containers; a body with many is an attack or a mistake.
MAX_JSON_CONTAINERS = 1_000
# Nor does it hold many values: at most a few dozen fields and SPECKS_MAX_BATCH_IMAGES images or
# 1000 'classes'. Counted as commas before parsing, so that a million-key object or a 20 MB array of
# numbers is refused in milliseconds, not parsed and validated for seconds.
MAX_JSON_VALUES = 10_000
# RFC 8259 lets a parser ignore a UTF-8 byte order mark; some Windows tools write one.
_UTF8_BOM = codecs.BOM_UTF8
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def check_content_length(content_length: int | None, limits: Limits) -> None:
    """Refuse an oversized body from its declared length, before reading it (None: not declared)."""
    if content_length is not None and content_length > limits.max_body_bytes:
        raise PayloadTooLargeError(
            f"the request body is {content_length} bytes; the limit is {limits.max_body_bytes} bytes "
            "(SPECKS_MAX_BODY_BYTES). Send a smaller image, e.g. re-encoded as JPEG."
        )


def check_read_size(size_bytes: int, limits: Limits) -> None:
    """Refuse a body found to be oversized while reading it (chunked uploads declare no length).

    Front-ends read at most ``limits.max_body_bytes + 1`` bytes and pass how many they got.
    """
    if size_bytes > limits.max_body_bytes:
        raise PayloadTooLargeError(
            f"the request body is more than {limits.max_body_bytes} bytes, the limit "
            "(SPECKS_MAX_BODY_BYTES). Send a smaller image, e.g. re-encoded as JPEG."
        )


def is_json_media_type(content_type: str | None) -> bool:
    """``application/json`` or any ``application/*+json``, parameters (charset) ignored."""
    mimetype = (content_type or "").split(";", 1)[0].strip().lower()
    return mimetype == "application/json" or (mimetype.startswith("application/") and mimetype.endswith("+json"))


def check_json_media_type(content_type: str | None) -> None:
    if not is_json_media_type(content_type):
        raise UnsupportedMediaTypeError(
            "the body must be JSON sent with 'Content-Type: application/json' "
            f"(got Content-Type: {clipped(content_type or 'none')})"
        )


def json_depth_exceeds(value: Any, max_depth: int) -> bool:
    """True when containers nest deeper than ``max_depth`` (iterative: no recursion limit to hit)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > max_depth:
            return True
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values() if isinstance(v, (dict, list)))
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item if isinstance(v, (dict, list)))
    return False


def parse_json_body(raw: bytes, limits: Limits) -> Any:
    """Bytes -> JSON value, refusing empty, malformed, container-heavy and too deeply nested bodies.

    A leading UTF-8 byte order mark is skipped; UTF-16 is refused with a message that says so.
    """
    if raw.startswith(_UTF16_BOMS):
        raise InvalidJSONError("the request body is UTF-16 text; send the JSON encoded as UTF-8")
    body = raw.removeprefix(_UTF8_BOM)
    if not body.strip():
        raise InvalidJSONError('the request body is empty; send {"image": "<base64>"}')
    if body.count(b"[") + body.count(b"{") > MAX_JSON_CONTAINERS:
        raise InvalidJSONError(f"the JSON body holds more than {MAX_JSON_CONTAINERS} arrays/objects")
    if body.count(b",") >= MAX_JSON_VALUES:
        raise InvalidJSONError(
            f"the JSON body holds more than {MAX_JSON_VALUES} values (object fields and array items together); "
            "a request needs far fewer: the image(s) and the options you set"
        )
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidJSONError(f"the request body is not valid JSON: {exc}") from exc
    if json_depth_exceeds(value, limits.max_json_depth):
        raise InvalidJSONError(f"the JSON body nests deeper than {limits.max_json_depth} levels")
    return value
