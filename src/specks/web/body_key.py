"""The ``api_key`` a compatible client puts in its request body, found without parsing the body.

On a server with API keys, a DeepStack client sends its key as the form field ``api_key`` and
Roboflow's inference-sdk as the JSON member ``api_key``. ``web.auth`` checks that key before the
body is parsed, so a client without a valid key costs a byte search of the body, never a JSON or
multipart parse of up to SPECKS_MAX_BODY_BYTES.

Each search is linear in the body and looks at a bounded number of places:

- JSON: the first member named ``api_key`` (at any depth) whose value is a string; any other
  value counts as no key. Escaped quotes cannot fake a member name: inside a JSON string a quote
  is always preceded by a backslash.
- multipart/form-data: the first of the first ``MAX_FORM_PARTS`` parts named ``api_key`` that is
  not a file.
- application/x-www-form-urlencoded: the first ``api_key=`` of the first ``MAX_FORM_PARTS`` pairs.

A key found this way is the one checked, wherever it sits: whoever sends a valid key knows one.
A key longer than ``MAX_KEY_BYTES`` is refused as not valid without being decoded.
"""

from __future__ import annotations

import re
import urllib.parse

import orjson
from werkzeug.http import parse_options_header

from ..errors import AuthenticationError
from ..service.body import is_json_media_type

# The longest key a body may carry, as written in it (keys are short; a long one is refused unread).
MAX_KEY_BYTES = 4096
# Parts (or pairs) of a form looked at; web.forms refuses forms with more.
MAX_FORM_PARTS = 32
# A part's headers end within this many bytes of its boundary, or the part is not looked at.
MAX_PART_HEADER_BYTES = 4096

_JSON_COLON = rb"[ \t\r\n]*:[ \t\r\n]*"
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_CRLF = b"\r\n"


def body_key(raw: bytes, content_type: str | None, field: str, *, invalid_message: str) -> str | None:
    """The text of the body field ``field`` (None: absent, or not text), searched by media type.

    Raises AuthenticationError(invalid_message) for a value longer than MAX_KEY_BYTES.
    """
    mimetype, options = parse_options_header(content_type or "")
    if is_json_media_type(content_type):
        return json_string_member(raw, field, invalid_message=invalid_message)
    if mimetype == "multipart/form-data":
        return multipart_text_field(raw, options.get("boundary", ""), field, invalid_message=invalid_message)
    if mimetype == "application/x-www-form-urlencoded":
        return urlencoded_field(raw, field, invalid_message=invalid_message)
    return None


def json_string_member(raw: bytes, name: str, *, invalid_message: str) -> str | None:
    """The string value of the first JSON member called ``name``; None when there is none or it is not a string.

    One regular-expression search: a string reading ``name`` that is a value, not a member name
    (no colon after it), is passed over in C, however many a body holds.
    """
    member = re.compile(re.escape(orjson.dumps(name)) + _JSON_COLON)
    found = member.search(raw)
    return None if found is None else _json_string_at(raw, found.end(), invalid_message)


def _json_string_at(raw: bytes, at: int, invalid_message: str) -> str | None:
    if raw[at : at + 1] != b'"':
        return None  # null, a number, an object: no key
    token = _JSON_STRING.match(raw, at, at + MAX_KEY_BYTES + 2)
    if token is None:  # longer than any key (or unterminated)
        raise AuthenticationError(invalid_message)
    try:
        value = orjson.loads(token.group())
    except orjson.JSONDecodeError:
        return None  # an invalid escape: the body is not JSON, and no key was sent
    return value if isinstance(value, str) else None


def multipart_text_field(raw: bytes, boundary: str, name: str, *, invalid_message: str) -> str | None:
    """The first text part called ``name`` of a multipart body, decoded as UTF-8 as Werkzeug does."""
    if not boundary:
        return None
    delimiter = b"--" + boundary.encode("latin-1", "replace")
    at = raw.find(delimiter)
    for _ in range(MAX_FORM_PARTS):
        if at == -1 or raw[at + len(delimiter) : at + len(delimiter) + 2] == b"--":
            return None  # no part left, or the closing delimiter
        headers_end = raw.find(_CRLF * 2, at, at + len(delimiter) + MAX_PART_HEADER_BYTES)
        if headers_end == -1:
            return None
        end = raw.find(_CRLF + delimiter, headers_end)
        if _is_text_part(raw[at + len(delimiter) : headers_end], name):
            value = raw[headers_end + 4 : end if end != -1 else len(raw)]
            if len(value) > MAX_KEY_BYTES:
                raise AuthenticationError(invalid_message)
            return value.decode("utf-8", "replace")
        at = end + len(_CRLF) if end != -1 else -1
    return None


def _is_text_part(headers: bytes, name: str) -> bool:
    """Whether a part's header block names it ``name`` in Content-Disposition, without a filename."""
    for line in headers.split(_CRLF):
        header, _, value = line.partition(b":")
        if header.strip().lower() == b"content-disposition":
            _, options = parse_options_header(value.decode("latin-1"))
            return options.get("name") == name and "filename" not in options
    return False


def urlencoded_field(raw: bytes, name: str, *, invalid_message: str) -> str | None:
    """The first ``name=value`` pair of an url-encoded body, percent-decoded as UTF-8."""
    for pair in raw.split(b"&", MAX_FORM_PARTS)[:MAX_FORM_PARTS]:
        key, equals, value = pair.partition(b"=")
        if equals and len(key) <= MAX_KEY_BYTES and _unquoted(key, invalid_message) == name:
            return _unquoted(value, invalid_message)
    return None


def _unquoted(text: bytes, invalid_message: str) -> str:
    if len(text) > MAX_KEY_BYTES:
        raise AuthenticationError(invalid_message)
    return urllib.parse.unquote_to_bytes(text.replace(b"+", b" ")).decode("utf-8", "replace")
