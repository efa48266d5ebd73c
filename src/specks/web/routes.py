"""Specks' own HTTP routes: the index, health, readiness, the models and ``POST /predict`` (``web.predict``)."""

from __future__ import annotations

from flask import Blueprint, Response, request

from .. import __version__
from .errors import error_response
from .http import body_reader, client_gone, current_service, json_response
from .page import page_response, prefers_page
from .predict import handle_predict

api = Blueprint("api", __name__)

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
    answer = handle_predict(
        current_service(),
        body_reader(request),
        content_type=request.content_type,
        content_length=request.content_length,
        client_gone=client_gone(request),
    )
    return json_response(answer)
