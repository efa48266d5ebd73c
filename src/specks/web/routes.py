"""HTTP routes: thin adapters from requests to the pipeline and back."""

from __future__ import annotations

from typing import Any

import orjson
from flask import Blueprint, Response, current_app, g, request

from .. import __version__
from ..schemas import encode_prediction, parse_predict_request
from .body import check_content_length, check_json_media_type, parse_json_body
from .errors import error_response
from .page import page_response, prefers_page
from .state import ModelHolder

api = Blueprint("api", __name__)


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status=status, mimetype="application/json")


def _holder() -> ModelHolder:
    holder: ModelHolder = current_app.extensions["specks.model"]
    return holder


@api.get("/")
def index() -> Response:
    if prefers_page(request.accept_mimetypes):  # a browser: the page (web.page)
        return page_response()
    return json_response(
        {
            "name": "specks",
            "version": __version__,
            "endpoints": {
                "POST /predict": 'detect objects; body {"image": "<base64>"}',
                "GET /health": "liveness",
                "GET /ready": "readiness (model loaded and warm)",
                "GET /model": "the loaded model",
            },
        }
    )


@api.get("/health")
def health() -> Response:
    return json_response({"status": "ok"})


@api.get("/ready")
def ready() -> Response:
    holder = _holder()
    if holder.ready:
        return json_response({"status": "ready", "model": holder.get().model.info.name})
    return error_response(503, "model_not_ready", holder.not_ready_reason)


@api.get("/model")
def model() -> Response:
    return json_response(_holder().get().model.info.to_dict())


@api.post("/predict")
def predict() -> Response:
    holder = _holder()
    limits = holder.settings.limits
    check_content_length(request, limits)
    check_json_media_type(request)
    body = parse_json_body(request.get_data(cache=False), limits)
    predict_request = parse_predict_request(body)
    detector = holder.get()
    with holder.prediction_slots:  # the body is read outside: a slow upload holds no slot
        prediction = detector.predict_base64(predict_request.image, predict_request)
    g.prediction_timing_ms = prediction.timing_ms  # per-stage metrics (web.observability)
    return json_response(encode_prediction(prediction, detector.model.info))
