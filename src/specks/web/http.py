"""What every route needs from Flask: the app's DetectionService, JSON answers, a request's body
reader (with its upload deadline) and a probe for a client that has gone."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from flask import Flask, Request, Response, current_app

from ..core.deadline import Deadline
from ..service.service import DetectionService
from .connection import body_read_s, client_gone_probe, deadline_read

SERVICE_EXTENSION = "specks.service"


def json_response(payload: Any, status: int = 200) -> Response:
    """An answer with a Content-Length (orjson bytes), never chunked."""
    return Response(orjson.dumps(payload), status=status, mimetype="application/json")


def current_service() -> DetectionService:
    return current_service_of(current_app)


def current_service_of(app: Flask) -> DetectionService:
    """The DetectionService an app built by ``create_app`` serves with."""
    service: DetectionService = app.extensions[SERVICE_EXTENSION]
    return service


def body_reader(flask_request: Request) -> Callable[[int], bytes]:
    """The ``read`` of the request body for ``DetectionService.read_body``.

    A chunked body (no Content-Length) is read from the server's own terminated stream:
    Werkzeug's wrapper would stop silently at its limit, and the truncated body would then be
    answered "not valid JSON" instead of 413.
    """
    environ = flask_request.environ
    if flask_request.content_length is None and environ.get("wsgi.input_terminated"):
        read: Callable[[int], bytes] = environ["wsgi.input"].read
    else:
        read = flask_request.stream.read
    # A body that trickles in is cut off (408) once it is slower than the limits allow (web.connection).
    timeout_s = body_read_s(current_service().settings.limits, flask_request.content_length)
    return deadline_read(read, environ.get("gunicorn.socket"), timeout_s)


def client_gone(flask_request: Request) -> Callable[[], bool] | None:
    """A probe that tells the work to stop once the client has closed its connection (``specks.core.deadline``),
    when the server exposes the socket (gunicorn does)."""
    return client_gone_probe(flask_request.environ.get("gunicorn.socket"))


def request_deadline(flask_request: Request) -> Deadline:
    """A request's deadline from now (call it once the body is read), with ``client_gone``."""
    return current_service().deadline(client_gone=client_gone(flask_request))


def route_label(flask_request: Request) -> str:
    """The route a request matched, as metrics label it (``/v1/predict/<model_id>``, not each model's path)."""
    return flask_request.url_rule.rule if flask_request.url_rule is not None else flask_request.path
