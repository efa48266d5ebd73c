"""Specks' own HTTP routes: thin adapters from Flask requests to ``service.DetectionService``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from flask import Blueprint, Flask, Request, Response, current_app, request

from .. import __version__
from ..core.deadline import Deadline
from ..service.service import DetectionService
from .connection import body_read_s, client_gone_probe, deadline_read
from .errors import error_response
from .page import page_response, prefers_page

api = Blueprint("api", __name__)

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


@api.get("/")
def index() -> Response:
    if prefers_page(request.accept_mimetypes):  # a browser: the page (web.page)
        return page_response()
    return json_response(
        {
            "name": "specks",
            "version": __version__,
            "endpoints": {
                "POST /predict": 'detect objects; body {"image": "<base64>"} or {"images": [...]} for a batch',
                "GET /health": "liveness",
                "GET /ready": "readiness (model loaded and warm)",
                "GET /model": "the loaded model and the server's request defaults",
                "POST /v1/vision/detection": "DeepStack / CodeProject.AI-compatible detection (multipart 'image')",
                "POST /infer/object_detection": "Roboflow inference-server-compatible detection",
                "POST /v1/predict/<model_id>": "Ultralytics HUB inference-API-compatible detection (multipart 'file')",
                "GET /models": "every served model: name, input size, classes",
            },
        }
    )


@api.get("/health")
def health() -> Response:
    return json_response({"status": "ok"})


@api.get("/ready")
def ready() -> Response:
    service = current_service()
    if service.holder.ready:
        return json_response(service.ready_details())
    return error_response(503, "model_not_ready", service.holder.not_ready_reason)


@api.get("/model")
def model() -> Response:
    return json_response(current_service().model_details(request.args.get("name")))


@api.get("/models")
def models() -> Response:
    return json_response(current_service().model_list())


@api.post("/predict")
def predict() -> Response:
    answer = current_service().handle_predict(
        body_reader(request),
        content_type=request.content_type,
        content_length=request.content_length,
        client_gone=client_gone(request),
    )
    return json_response(answer)
