"""The one place where Specks errors become HTTP answers: a status table and a JSON envelope.

Every error answer is ``{"error": {"code": ..., "message": ..., "field": ...}}``; never
HTML, never a traceback. Unexpected exceptions are logged with their traceback and
answered with a generic 500.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from flask import Flask, Response
from werkzeug.exceptions import HTTPException

from .. import errors

log = logging.getLogger(__name__)

# Most specific class first is not needed: the lookup walks each exception's MRO.
HTTP_STATUS: dict[type[errors.SpecksError], int] = {
    errors.SpecksError: 500,
    errors.InvalidRequestError: 400,
    errors.UnsupportedMediaTypeError: 415,
    errors.PayloadTooLargeError: 413,
    errors.AuthenticationError: 401,
    errors.ModelNotReadyError: 503,
    errors.ModelError: 500,
    errors.InferenceError: 500,
    errors.ConfigError: 500,
}

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


def status_for(exc: errors.SpecksError) -> int:
    for cls in type(exc).__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]
    return 500


def error_response(status: int, code: str, message: str, field: str | None = None) -> Response:
    error: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    return Response(orjson.dumps({"error": error}), status=status, mimetype="application/json")


def _specks_error(exc: errors.SpecksError) -> Response:
    status = status_for(exc)
    if status >= 500:
        log.error("request failed: %s", exc.message, exc_info=exc)
    return error_response(status, exc.code, exc.message, exc.field)


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
    log.exception("unexpected error while serving a request")
    return error_response(500, "internal_error", "internal server error; the details are in the server log")


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(errors.SpecksError, _specks_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)
