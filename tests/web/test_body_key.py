"""Finding the api_key of a body by a byte search, as the key check does before any parse."""

from __future__ import annotations

import time

import orjson
import pytest
import requests

from specks.errors import AuthenticationError
from specks.web.body_key import MAX_KEY_BYTES, body_key

INVALID = "the API key is not valid"


def find(raw: bytes, content_type: str | None) -> str | None:
    return body_key(raw, content_type, "api_key", invalid_message=INVALID)


def multipart(fields: dict[str, str], files: dict[str, bytes], *, files_first: bool = False) -> tuple[bytes, str]:
    """A body and Content-Type as requests builds them (fields first, as every DeepStack client sends)."""
    prepared = requests.Request("POST", "http://x/", data=fields, files=files).prepare()
    body, content_type = prepared.body, prepared.headers["Content-Type"]
    assert isinstance(body, bytes)
    if files_first:
        boundary = content_type.split("boundary=")[1].encode()
        parts = body.split(b"--" + boundary)
        body = b"--" + boundary + (b"--" + boundary).join(parts[1:-1][::-1] + [parts[-1]])
    return body, content_type


JSON = "application/json"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(b'{"api_key": "k1", "image": {}}', "k1", id="first"),
        pytest.param(b'{"image": {"type": "base64"}, "api_key" :\n "k1"}', "k1", id="last-with-spaces"),
        pytest.param(b'{"note": "api_key", "api_key": "k1"}', "k1", id="a-value-reading-api_key-is-skipped"),
        pytest.param(b'{"note": "\\"api_key\\": \\"k9\\"", "api_key": "k1"}', "k1", id="escaped-quotes-fake-nothing"),
        pytest.param(b'{"api_key": "k\\u0031"}', "k1", id="escapes-decoded"),
        pytest.param(b'{"api_key": null}', None, id="null"),
        pytest.param(b'{"api_key": 12}', None, id="number"),
        pytest.param(b'{"image": "x"}', None, id="absent"),
        pytest.param(b"", None, id="empty"),
        pytest.param(b'{"api_key": "k\\x"}', None, id="invalid-escape"),
    ],
)
def test_json_member(body: bytes, expected: str | None) -> None:
    assert find(body, JSON) == expected


def test_a_json_key_longer_than_any_is_refused_unread() -> None:
    body = orjson.dumps({"api_key": "k" * (MAX_KEY_BYTES + 1)})

    with pytest.raises(AuthenticationError, match=INVALID):
        find(body, JSON)


def test_an_unterminated_json_key_is_refused() -> None:
    with pytest.raises(AuthenticationError):
        find(b'{"api_key": "k1', JSON)


@pytest.mark.parametrize("files_first", [False, True], ids=["fields-first", "file-first"])
def test_multipart_field(files_first: bool) -> None:
    fields = {"api_key": "k1", "min_confidence": "0.5"}
    body, content_type = multipart(fields, {"image": b"\xff\xd8" + bytes(1000)}, files_first=files_first)

    assert find(body, content_type) == "k1"


def test_a_file_part_named_api_key_is_no_key() -> None:
    body, content_type = multipart({}, {"api_key": b"k1", "image": b"jpeg"})

    assert find(body, content_type) is None


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        pytest.param(b"api_key=k1", "multipart/form-data", id="no-boundary"),
        pytest.param(b"garbage", "multipart/form-data; boundary=B", id="no-parts"),
        pytest.param(b"--B\r\nContent-Disposition: form-data; name=api_key", "multipart/form-data; boundary=B",
                     id="cut-in-headers"),
        pytest.param(b'{"api_key": "k1"}', "text/plain", id="other-media-type"),
        pytest.param(b'{"api_key": "k1"}', None, id="no-content-type"),
    ],
)  # fmt: skip
def test_no_key_where_there_is_none_to_find(body: bytes, content_type: str | None) -> None:
    assert find(body, content_type) is None


def test_a_multipart_key_longer_than_any_is_refused() -> None:
    body, content_type = multipart({"api_key": "k" * (MAX_KEY_BYTES + 1)}, {"image": b"jpeg"})

    with pytest.raises(AuthenticationError):
        find(body, content_type)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"api_key=k1&min_confidence=0.4", "k1"),
        (b"min_confidence=0.4&api_key=k%31+", "k1 "),
        (b"api_keyx=k1", None),
        (b"x=api_key=k1", None),
    ],
)
def test_urlencoded_field(body: bytes, expected: str | None) -> None:
    assert find(body, "application/x-www-form-urlencoded") == expected


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"x": "' + b"a" * 20_000_000 + b'"}', id="20-MB-string"),
        pytest.param(b'{"x": [' + b'"api_key",' * 1_500_000 + b"0]}", id="1.5M-decoys"),
        pytest.param(b'{"api_key"' + b" " * 20_000_000 + b": 1}", id="20-MB-of-spaces"),
    ],
)
def test_a_20_mb_json_body_is_searched_in_milliseconds(body: bytes) -> None:
    started = time.perf_counter()
    assert find(body, JSON) is None
    assert time.perf_counter() - started < 1.0


def test_a_20_mb_multipart_body_is_searched_in_milliseconds() -> None:
    body, content_type = multipart({}, {"image": b'name="api_key"\r\n' * 1_300_000})

    started = time.perf_counter()
    assert find(body, content_type) is None
    assert time.perf_counter() - started < 1.0
