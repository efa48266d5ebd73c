"""Reading a JSON request body safely: media type, size, syntax, nesting."""

from __future__ import annotations

from typing import Any

import orjson
from flask import Request

from ..config import Limits
from ..errors import InvalidJSONError, PayloadTooLargeError, UnsupportedMediaTypeError

# A valid request holds a handful of containers; a body with many is an attack or a mistake.
MAX_JSON_CONTAINERS = 1_000


def check_content_length(request: Request, limits: Limits) -> None:
    """Refuse an oversized body from its Content-Length header, before reading it."""
    length = request.content_length
    if length is not None and length > limits.max_body_bytes:
        raise PayloadTooLargeError(
            f"the request body is {length} bytes; the limit is {limits.max_body_bytes} bytes "
            "(SPECKS_MAX_BODY_BYTES). Send a smaller image, e.g. re-encoded as JPEG."
        )


def check_json_media_type(request: Request) -> None:
    mimetype = request.mimetype
    if mimetype != "application/json" and not (mimetype.startswith("application/") and mimetype.endswith("+json")):
        shown = request.content_type or "none"
        raise UnsupportedMediaTypeError(
            f"the body must be JSON sent with 'Content-Type: application/json' (got Content-Type: {shown})"
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
    """Bytes -> JSON value, refusing empty, malformed, container-heavy and too deeply nested bodies."""
    if not raw.strip():
        raise InvalidJSONError('the request body is empty; send {"image": "<base64>"}')
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_CONTAINERS:
        raise InvalidJSONError(f"the JSON body holds more than {MAX_JSON_CONTAINERS} arrays/objects")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidJSONError(f"the request body is not valid JSON: {exc}") from exc
    if json_depth_exceeds(value, limits.max_json_depth):
        raise InvalidJSONError(f"the JSON body nests deeper than {limits.max_json_depth} levels")
    return value
