"""Logging setup shared by the CLI and the server: JSON lines or plain text, with the request id.

No web framework here: the web layer sets ``request_id_var`` for the duration of a request
and every log record made meanwhile (by Specks, Flask, or a library) carries that id.

JSON lines look like::

    {"ts": "2024-05-01T12:00:00.123Z", "level": "info", "logger": "specks.access",
     "message": "POST /predict 200 41.2ms", "pid": 812, "request_id": "3f2a...", "status": 200, ...}

Fields passed with ``extra={...}`` are added to the object as they are.
"""

from __future__ import annotations

import contextvars
import enum
import logging
import sys
import time
from typing import IO, Any

import orjson

# The id of the request this thread (or task) is serving; None outside requests.
request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("specks_request_id", default=None)

# Attributes every LogRecord has; anything else on a record came from ``extra``.
_RECORD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "request_id",
}


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
            "message": record.getMessage(),
            "pid": record.process,  # tells gunicorn workers apart
        }
        request_id = getattr(record, "request_id", None)
        if request_id is not None:
            entry["request_id"] = request_id
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(entry, default=str).decode()


class TextFormatter(logging.Formatter):
    """``2024-05-01 12:00:00,123 INFO specks.access: message [request_id=...]``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        request_id = getattr(record, "request_id", None)
        if request_id is None:
            return text
        first, newline, rest = text.partition("\n")  # keep a traceback below the id
        return f"{first} [request_id={request_id}]{newline}{rest}"


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
