"""Log lines stay one line and a few KB, whatever a request held (``specks.logs``)."""

from __future__ import annotations

import io
import json
import logging
import sys

import pytest

from specks.logs import MAX_LOG_MESSAGE_BYTES, LogFormat, build_handler, escaped, loggable

# What a bounded log line may take: the message, the fields of the format, the request id.
MAX_LINE_BYTES = MAX_LOG_MESSAGE_BYTES + 512


def emit(log_format: LogFormat, message: str, *args: object, **fields: object) -> str:
    """What one record at info level writes in ``log_format``."""
    stream = io.StringIO()
    logger = logging.getLogger("specks.test_logs")
    handler = build_handler(log_format, stream)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        logger.info(message, *args, extra=fields or None)
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def test_escaped_writes_control_characters_as_escapes() -> None:
    assert escaped("a\nb\rc\x1b[31md\x00e\u2028f") == "a\\x0ab\\x0dc\\x1b[31md\\x00e\\u2028f"
    assert escaped("plain text, ünïcode") == "plain text, ünïcode"


def test_loggable_cuts_then_escapes() -> None:
    text = loggable("\n" * 1_000_000)

    assert "\n" not in text
    assert "(1000000 characters)" in text
    assert len(text.encode()) <= MAX_LOG_MESSAGE_BYTES


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("a" * 100_000, id="ascii"),
        pytest.param("\u00e9" * 100_000, id="two-byte"),
        pytest.param("\U0001f600" * 100_000, id="four-byte"),
        pytest.param("\x01" * 10_000, id="escaped"),
    ],
)
def test_loggable_fits_its_bytes(text: str) -> None:
    line = loggable(text)

    assert len(line.encode()) <= MAX_LOG_MESSAGE_BYTES
    assert "characters)" in line


@pytest.mark.parametrize("log_format", list(LogFormat))
def test_a_forged_line_in_a_path_stays_in_its_record(log_format: LogFormat) -> None:
    forged = "/predict\n2024-05-01 12:00:00,123 INFO specks.access: GET /admin 200 1.0ms"

    written = emit(log_format, "%s %s %d", "GET", forged, 404)

    assert written.count("\n") == 1  # the record's own end of line
    assert "\\x0a2024-05-01" in written


@pytest.mark.parametrize("log_format", list(LogFormat))
def test_a_huge_message_is_cut(log_format: LogFormat) -> None:
    written = emit(log_format, "request refused: unknown field %s", "f" * 1_000_000)

    assert len(written.encode()) < MAX_LINE_BYTES
    assert "characters)" in written


def test_json_extra_text_fields_are_cut_and_escaped() -> None:
    written = emit(LogFormat.JSON, "GET", path="/x\n" + "p" * 100_000, status=404)

    entry = json.loads(written)
    assert entry["status"] == 404
    assert len(entry["path"]) < 1000
    assert "\n" not in entry["path"]


def test_text_tracebacks_are_indented_under_their_record() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("specks.test_logs.traceback")
    handler = build_handler(LogFormat.TEXT, stream)
    logger.addHandler(handler)
    logger.propagate = False
    try:
        try:
            raise ValueError("bad\n2024-05-01 12:00:00,123 INFO specks.access: forged")
        except ValueError:
            logger.error("failed", exc_info=sys.exc_info())
    finally:
        logger.removeHandler(handler)

    first, *rest = stream.getvalue().rstrip("\n").split("\n")
    assert first.endswith("failed")
    assert rest and all(line.startswith("    ") for line in rest)
    assert any("Traceback" in line for line in rest)
