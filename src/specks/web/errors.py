"""Errors as HTTP answers: the one place that maps the exception tree (``specks.errors``) to statuses.

``encode_error`` turns any exception into a status and the JSON envelope ``{"error": {"code",
"message", "field"}}`` (each compatible API wraps the same status and message in its clients' own
format). Expected refusals (4xx, and 503 while the model loads) are logged at info/warning level
without a traceback; anything else is logged once with its traceback and answered generically, with
no internals. Never HTML, never a traceback. Errors raised by Werkzeug itself (routing, body size) get the
same envelope with a code and a message of their own (never Werkzeug's wording). Requests that
gunicorn refuses before Flask sees them (a malformed request line, 414, 431, 501) get the same
envelope too: ``gunicorn_error_page`` builds those answers, written by ``web.server``'s worker.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from flask import Blueprint, Flask, Response
from werkzeug.exceptions import HTTPException

from .. import errors

log = logging.getLogger(__name__)

# The lookup walks each exception's MRO, so a subclass inherits its parent's status.
HTTP_STATUS: dict[type[errors.SpecksError], int] = {
    errors.SpecksError: 500,
    errors.InvalidRequestError: 400,
    errors.UnsupportedMediaTypeError: 415,
    errors.PayloadTooLargeError: 413,
    errors.AuthenticationError: 401,
    errors.ForbiddenError: 403,
    errors.NotFoundError: 404,
    errors.ModelNotReadyError: 503,
    errors.DeadlineExceededError: 503,
    errors.ClientGoneError: 499,  # nginx's "client closed request": the answer is never read
    errors.RequestTimeoutError: 408,
    errors.ModelError: 500,
    errors.InferenceError: 500,
    errors.ConfigError: 500,
}
INTERNAL_ERROR_MESSAGE = "internal server error; the details are in the server log"
# Longest message a client is answered (and its refusal logged) with: an error answer stays under 8 KB.
MAX_MESSAGE_CHARS = 1000


def status_for(exc: errors.SpecksError) -> int:
    for cls in type(exc).__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]
    return 500


@dataclass(frozen=True)
class ErrorAnswer:
    """What a front-end sends for a failed request: a status and a client-safe code and message."""

    status: int
    code: str
    message: str
    field: str | None = None

    def envelope(self) -> dict[str, Any]:
        """Specks' own error body: ``{"error": {"code", "message", "field"?}}``."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            error["field"] = self.field
        return {"error": error}


def encode_error(exc: BaseException) -> ErrorAnswer:
    """Any exception -> the answer a client may see, logged at the level it deserves."""
    if not isinstance(exc, errors.SpecksError):
        log.error("unexpected error while serving a request", exc_info=exc)
        return ErrorAnswer(500, "internal_error", INTERNAL_ERROR_MESSAGE)
    status = status_for(exc)
    if status >= 500 and status != 503:
        # Runtime and model messages may hold file paths and library internals: log them, never send them.
        log.error("request failed: %s", exc.message, exc_info=exc)
        return ErrorAnswer(status, exc.code, INTERNAL_ERROR_MESSAGE)
    # Messages and fields may quote client input: capped here whatever raised them.
    message = errors.clipped(exc.message, MAX_MESSAGE_CHARS)
    field = None if exc.field is None else errors.clipped(exc.field)
    if status == 503:
        log.warning("request refused: %s", message)
    else:
        log.info("request refused (%d %s): %s", status, exc.code, message)
    return ErrorAnswer(status, exc.code, message, field)

# (code, message) for errors raised by Flask/Werkzeug themselves (routing, body size).
_HTTP_ERRORS = {
    400: ("invalid_request", "the request cannot be read: a header, the query string or the body is malformed"),
    401: ("unauthorized", "this request needs credentials"),
    404: ("not_found", "there is nothing at this path; GET / lists the endpoints"),
    405: ("method_not_allowed", "this path does not take this method; the Allow header lists the ones it takes"),
    408: ("request_timeout", "the request did not arrive in time; send it again"),
    413: (
        "payload_too_large",
        "the request body is larger than the limit (SPECKS_MAX_BODY_BYTES); send a smaller image, e.g. re-encoded "
        "as JPEG",
    ),
    414: ("uri_too_long", "the URL is longer than the server accepts; shorten it"),
    415: ("unsupported_media_type", "the body's Content-Type is not one this path takes"),
    431: ("headers_too_large", "the request's headers are larger than the server accepts; send fewer or shorter ones"),
    500: ("internal_error", INTERNAL_ERROR_MESSAGE),
}

# (code, message) for requests gunicorn refuses before any route sees them (see gunicorn_error_page).
_GUNICORN_ERRORS = {
    400: (
        "invalid_request",
        "the request is not valid HTTP/1.1: its request line, a header or its chunked body is malformed",
    ),
    403: ("forbidden", "the request's forwarding or TLS details are not accepted by this server"),
    414: (
        "uri_too_long",
        "the request line (method, URL and HTTP version) is longer than the server accepts (8190 bytes); "
        "shorten the URL: options go in the JSON body",
    ),
    417: ("expectation_failed", "the Expect header asks for what this server does not do; send 100-continue or none"),
    431: (
        "headers_too_large",
        "the request has too many headers (more than 100) or one longer than the server accepts (8190 bytes); "
        "send fewer or shorter headers",
    ),
    500: ("internal_error", INTERNAL_ERROR_MESSAGE),
    501: (
        "not_implemented",
        "the body's Transfer-Encoding is not supported; send it with a Content-Length, or 'Transfer-Encoding: chunked'",
    ),
}


def answer_response(answer: ErrorAnswer) -> Response:
    return Response(orjson.dumps(answer.envelope()), status=answer.status, mimetype="application/json")


def error_response(status: int, code: str, message: str, field: str | None = None) -> Response:
    return answer_response(ErrorAnswer(status, code, message, field))


def http_error_answer(exc: HTTPException) -> ErrorAnswer:
    """A Werkzeug HTTPException -> Specks' code and a plain message of Specks' own."""
    status = exc.code or 500
    code, message = _HTTP_ERRORS.get(status, ("http_error", f"the request was refused ({status} {exc.name})"))
    return ErrorAnswer(status, code, message)


def gunicorn_error_page(status: int, reason: str) -> bytes:
    """The whole HTTP answer (status line, headers, JSON envelope) to a request gunicorn refused itself.

    ``reason`` is gunicorn's reason phrase for ``status``; its own message (which quotes the
    request) is never sent. The connection closes after it, as gunicorn's own page does.
    """
    code, message = _GUNICORN_ERRORS.get(status, ("http_error", f"the request was refused ({status})"))
    body = orjson.dumps(ErrorAnswer(status, code, message).envelope())
    phrase = reason.encode("ascii", "replace").replace(b"\r", b"").replace(b"\n", b"")
    head = b"HTTP/1.1 %d %s\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
    return head % (status, phrase, len(body)) + body


def _specks_error(exc: errors.SpecksError) -> Response:
    return answer_response(encode_error(exc))


def _http_error(exc: HTTPException) -> Response:
    response = answer_response(http_error_answer(exc))
    if response.status_code == 405 and exc.valid_methods:  # type: ignore[attr-defined]
        response.headers["Allow"] = ", ".join(exc.valid_methods)  # type: ignore[attr-defined]
    return response


def _unexpected_error(exc: Exception) -> Response:
    return answer_response(encode_error(exc))


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(errors.SpecksError, _specks_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)


def answer_errors_in_own_body(blueprint: Blueprint, error_body: Callable[[ErrorAnswer], Response]) -> None:
    """A compatible API's routes answer every error, Werkzeug's too, with ``error_body`` (its
    clients' own error format), with the status ``encode_error`` gives."""

    @blueprint.errorhandler(Exception)
    def _error(exc: Exception) -> Response:
        return error_body(encode_error(exc))

    @blueprint.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        return error_body(http_error_answer(exc))
