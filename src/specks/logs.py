"""Logging setup shared by the CLI and the server: JSON lines or plain text, with the request id.

No web framework here: the web layer sets ``request_id_var`` for the duration of a request
and every log record made meanwhile (by Specks, Flask, or a library) carries that id.

JSON lines look like::

    {"ts": "2024-05-01T12:00:00.123Z", "level": "info", "logger": "specks.access",
     "message": "POST /predict 200 41.2ms", "pid": 812, "request_id": "3f2a...", "status": 200, ...}

Fields passed with ``extra={...}`` are added to the object as they are, text cut like messages.

Every record is one line, whatever it quotes: a message's control characters (CR, LF, ESC...)
are written as ``\\xNN`` escapes, so a request path holding ``%0a`` cannot forge a line, and it is
cut (``errors.clipped``) to ``MAX_LOG_MESSAGE_BYTES`` of UTF-8. Text values of extra fields are cut
to ``MAX_LOG_FIELD_BYTES``, tracebacks to ``MAX_LOG_TRACEBACK_CHARS``; in the text format a
traceback's lines are indented under their record.
"""

from __future__ import annotations

import contextvars
import enum
import logging
import sys
import time
from typing import IO, Any

import orjson

from .errors import clipped

# The id of the request this thread (or task) is serving; None outside requests.
request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("specks_request_id", default=None)

# Attributes every LogRecord has; anything else on a record came from ``extra``.
_RECORD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "request_id",
}


# A log line stays a few KB whatever a request held (messages may quote paths and client values):
# UTF-8 bytes of a message and of each text field, escapes included, and characters of a traceback.
MAX_LOG_MESSAGE_BYTES = 1500
MAX_LOG_FIELD_BYTES = 300
MAX_LOG_TRACEBACK_CHARS = 16_000
# Longer text is cut before it is escaped (bounding the work), to a quarter of its budget.
_MAX_ESCAPED_CHARS = 64 * 1024


def _escape_table(*kept: str) -> dict[int, str]:
    """C0 and C1 control characters, DEL and the Unicode line and paragraph separators, as escapes."""
    codes = [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029]
    return {code: f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}" for code in codes if chr(code) not in kept}


_ESCAPES = _escape_table()
_ESCAPES_BUT_NEWLINE = _escape_table("\n")
# Text format: the lines of a traceback below their record start with this, never like a record.
TRACEBACK_INDENT = "    "


def escaped(text: str, table: dict[int, str] = _ESCAPES) -> str:
    """``text`` with each control character written as an escape (``\\n`` -> ``\\x0a``)."""
    return text.translate(table)


def loggable(text: str, max_bytes: int = MAX_LOG_MESSAGE_BYTES) -> str:
    """``text`` as a log line may carry it: control characters escaped, cut to ``max_bytes`` of UTF-8."""
    if len(text) > _MAX_ESCAPED_CHARS:  # escapes take at most 4 characters: the cut text fits escaped
        text = clipped(text, max_bytes // 4)
    text = escaped(text)
    max_chars = max_bytes
    line = clipped(text, max_chars)
    while len(line.encode("utf-8", "replace")) > max_bytes and max_chars > 64:  # wide characters: fewer
        max_chars = max_chars * 3 // 4
        line = clipped(text, max_chars)
    return line


class LogFormat(str, enum.Enum):
    JSON = "json"
    TEXT = "text"


class RequestIdFilter(logging.Filter):
    """Stamps ``record.request_id`` (None outside a request) from ``request_id_var``."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, pid, request_id, extra fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _utc_iso(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": loggable(record.getMessage()),
            "pid": record.process,  # tells gunicorn workers apart
        }
        request_id = getattr(record, "request_id", None)
        if request_id is not None:
            entry["request_id"] = request_id
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRS and not key.startswith("_"):
                entry[key] = loggable(value, MAX_LOG_FIELD_BYTES) if isinstance(value, str) else value
        if record.exc_info:
            entry["exc"] = clipped(self.formatException(record.exc_info), MAX_LOG_TRACEBACK_CHARS)
        elif record.exc_text:
            entry["exc"] = clipped(record.exc_text, MAX_LOG_TRACEBACK_CHARS)
        if record.stack_info:
            entry["stack"] = clipped(self.formatStack(record.stack_info), MAX_LOG_TRACEBACK_CHARS)
        return orjson.dumps(entry, default=str).decode()


class TextFormatter(logging.Formatter):
    """``2024-05-01 12:00:00,123 INFO specks.access: message [request_id=...]``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        record.message = loggable(record.message)
        return super().formatMessage(record)

    def format(self, record: logging.LogRecord) -> str:
        first, newline, rest = super().format(record).partition("\n")  # a traceback (or stack) follows
        request_id = getattr(record, "request_id", None)
        if request_id is not None:
            first = f"{first} [request_id={request_id}]"
        return first + newline + indented(rest)


def indented(traceback: str) -> str:
    """A traceback as the text format writes it under its record: cut, escaped but for newlines, indented."""
    if not traceback:
        return traceback
    lines = escaped(clipped(traceback, MAX_LOG_TRACEBACK_CHARS), _ESCAPES_BUT_NEWLINE).split("\n")
    return "\n".join(TRACEBACK_INDENT + line for line in lines)


def build_handler(log_format: LogFormat, stream: IO[str] | None = None) -> logging.Handler:
    """A stream handler (stderr by default) that formats records and stamps the request id."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    formatter = JsonFormatter() if log_format is LogFormat.JSON else TextFormatter()
    handler.setFormatter(formatter)
    handler.addFilter(RequestIdFilter())
    return handler


def configure_logging(log_format: LogFormat, log_level: str | int, stream: IO[str] | None = None) -> None:
    """Send every log record to one handler on the root logger, replacing the ones it had.

    Meant for the start of a process (the CLI, a server process); ``log_level`` is a name
    such as "info" or a ``logging`` level number.
    """
    level = logging.getLevelName(log_level.upper()) if isinstance(log_level, str) else log_level
    if not isinstance(level, int):
        raise ValueError(f"log level must be debug, info, warning or error, got {log_level!r}")
    handler = build_handler(log_format, stream)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


def _utc_iso(created: float) -> str:
    seconds = int(created)
    millis = int((created - seconds) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"
