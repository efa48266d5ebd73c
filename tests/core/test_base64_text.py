"""Tests for specks.core.base64_text: strict base64 with precise messages, fast on large inputs."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable

import numpy as np
import pybase64
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from specks.core import base64_text
from specks.core.base64_text import decode_base64
from specks.errors import InvalidBase64Error, InvalidFieldError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("QUJD", b"ABC", id="standard"),
        pytest.param("QUI=", b"AB", id="one-pad"),
        pytest.param("QQ==", b"A", id="two-pad"),
        pytest.param("+/8=", b"\xfb\xff", id="standard-plus-slash"),
        pytest.param("QUI", b"AB", id="missing-one-pad"),
        pytest.param("QQ", b"A", id="missing-two-pad"),
        pytest.param("-_8=", b"\xfb\xff", id="url-safe"),
        pytest.param("-_8", b"\xfb\xff", id="url-safe-unpadded"),
        pytest.param("data:image/png;base64,QUJD", b"ABC", id="data-uri"),
        pytest.param("DATA:Image/JPEG;BASE64,QUI", b"AB", id="data-uri-case-unpadded"),
        pytest.param("data:image/webp;name=x.webp;base64,QUJD", b"ABC", id="data-uri-param"),
        pytest.param("QU\nJD", b"ABC", id="lf"),
        pytest.param("QUJD\r\nQUJD\r\n", b"ABCABC", id="crlf-trailing"),
        pytest.param("data:image/png;base64,-_8\n", b"\xfb\xff", id="data-uri-url-safe-lf"),
    ],
)
def test_decode_base64_accepts(text: str, expected: bytes) -> None:
    assert decode_base64(text) == expected


@pytest.mark.parametrize(
    ("text", "message_parts"),
    [
        pytest.param("", ["empty"], id="empty"),
        pytest.param("QU J", ["' '", "position 2", "line breaks"], id="space"),
        pytest.param("QUJD\tQUJD", ["'\\t'", "position 4"], id="tab"),
        pytest.param("QUJD!", ["'!'", "position 4"], id="bang"),
        pytest.param("QUJ\rD", ["'\\r'", "position 3"], id="lone-cr"),
        pytest.param("QUJDé", ["'é'", "position 4"], id="non-ascii"),
        pytest.param("QUJD\x00", ["'\\x00'", "position 4"], id="nul"),
        pytest.param("QU+J_D==", ["mixes", "'+' at position 2", "'_' at position 4"], id="mixed-alphabets"),
        pytest.param("Q", ["length of 1", "multiple of 4"], id="length-1"),
        pytest.param("QUJDQ", ["length of 5", "multiple of 4"], id="length-5"),
        pytest.param("QUI=QUI=", ["'=' at position 3", "only appear at the end"], id="padding-middle"),
        pytest.param("QU=\nJD", ["'=' at position 2"], id="padding-before-line-break"),
        pytest.param("QUJD====", ["4 '='", "at most 2"], id="too-much-padding"),
        pytest.param("QQ=", ["needs 2 '='"], id="short-padding"),
        pytest.param("QUJD=", ["needs no '='"], id="needless-padding"),
        pytest.param("data:image/png,QUJD", ["not base64"], id="data-uri-not-base64"),
        pytest.param("data:text/plain;base64,QUJD", ["'text/plain'", "not an image"], id="data-uri-text"),
        pytest.param("data:image/;base64,QUJD", ["not an image"], id="data-uri-no-subtype"),
        pytest.param("data:image/png;base64", ["no ','"], id="data-uri-no-comma"),
        pytest.param("data:image/png;base64,", ["no base64 data"], id="data-uri-no-payload"),
        pytest.param("data:image/png;base64,QU J", ["' '", "position 24"], id="position-counts-prefix"),
        pytest.param("\r\n\n", ["no base64 data"], id="only-line-breaks"),
    ],
)
def test_decode_base64_rejects_with_precise_message(text: str, message_parts: list[str]) -> None:
    with pytest.raises(InvalidBase64Error) as caught:
        decode_base64(text)
    assert caught.value.field == "image"
    for part in message_parts:
        assert part in caught.value.message


@pytest.mark.parametrize("value", [None, 42, b"QUJD"])
def test_decode_base64_rejects_non_strings(value: object) -> None:
    with pytest.raises(InvalidFieldError, match="must be a base64 string"):
        decode_base64(value)  # type: ignore[arg-type]


def test_decode_base64_common_case_costs_one_decode_call(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []
    original = pybase64.b64decode

    def counting(*args: object, **kwargs: object) -> bytes:
        calls.append(args)
        return original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(base64_text.pybase64, "b64decode", counting)
    assert decode_base64(base64.b64encode(b"\x00\x01\x02" * 1000).decode()) == b"\x00\x01\x02" * 1000
    assert len(calls) == 1


def test_decode_base64_large_inputs_decode_and_diagnose_quickly() -> None:
    payload = np.random.default_rng(1).bytes(3_000_000)
    text = base64.b64encode(payload).decode()
    assert decode_base64("data:image/jpeg;base64," + text) == payload
    started = time.perf_counter()
    with pytest.raises(InvalidBase64Error, match=f"'!' at position {len(text)}"):
        decode_base64(text + "!")
    assert time.perf_counter() - started < 0.5


ENCODERS: list[Callable[[bytes], str]] = [
    lambda data: base64.b64encode(data).decode(),
    lambda data: base64.urlsafe_b64encode(data).decode(),
    lambda data: base64.b64encode(data).decode().rstrip("="),
    lambda data: base64.urlsafe_b64encode(data).decode().rstrip("="),
    lambda data: base64.encodebytes(data).decode(),  # MIME: a line break every 76 characters
    lambda data: base64.encodebytes(data).decode().replace("\n", "\r\n"),
    lambda data: "data:image/png;base64," + base64.b64encode(data).decode(),
]


@settings(max_examples=150, deadline=None)
@given(data=st.binary(min_size=1, max_size=300), encoder=st.sampled_from(ENCODERS))
def test_decode_base64_round_trips(data: bytes, encoder: Callable[[bytes], str]) -> None:
    assert decode_base64(encoder(data)) == data


BASE64ISH = st.text(alphabet="QUJDab+/-_=\r\n !é", max_size=40)


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(st.text(max_size=60), BASE64ISH, BASE64ISH.map(lambda s: "data:image/png;base64," + s)))
def test_decode_base64_returns_bytes_or_raises_invalid_base64(text: str) -> None:
    try:
        result = decode_base64(text)
    except InvalidBase64Error as exc:
        assert exc.message and exc.field == "image"
    else:
        assert isinstance(result, bytes) and result


