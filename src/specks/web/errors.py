"""Flask's side of error answers: every exception becomes ``service.encode_error``'s JSON envelope.

Never HTML, never a traceback. Errors raised by Werkzeug itself (routing, body size) get the
same envelope with a code of their own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import orjson
from flask import Blueprint, Flask, Response
from werkzeug.exceptions import HTTPException

from .. import errors
from ..service import ErrorAnswer, encode_error

log = logging.getLogger(__name__)

# Codes for errors raised by Flask/Werkzeug themselves (routing, body size).
_HTTP_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "payload_too_large",
    415: "unsupported_media_type",
    431: "headers_too_large",
}


def answer_response(answer: ErrorAnswer) -> Response:
    return Response(orjson.dumps(answer.envelope()), status=answer.status, mimetype="application/json")


def error_response(status: int, code: str, message: str, field: str | None = None) -> Response:
    return answer_response(ErrorAnswer(status, code, message, field))


def _specks_error(exc: errors.SpecksError) -> Response:
    return answer_response(encode_error(exc))


def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    message = exc.description or exc.name
    if status == 413:
        message = "the request body is larger than the server accepts (see SPECKS_MAX_BODY_BYTES)"
    response = error_response(status, _HTTP_CODES.get(status, "http_error"), message)
    if status == 405 and exc.valid_methods:  # type: ignore[attr-defined]
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
    clients' own error format), with the status ``service.encode_error`` gives."""

    @blueprint.errorhandler(Exception)
    def _error(exc: Exception) -> Response:
        return error_body(encode_error(exc))

    @blueprint.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        return error_body(ErrorAnswer(exc.code or 500, "http_error", exc.description or exc.name))
