"""The DeepStack / CodeProject.AI detection API: its form in, ``DetectionService``'s door, its JSON out.

Home Assistant, Frigate, Blue Iris and the deepstack / CodeProject.AI client libraries send a
``multipart/form-data`` POST with the picture as the file part ``image`` (requests names it
``image`` and gives it no content type: the format is read from the bytes) and the text fields
``min_confidence`` and ``api_key``. They read::

    {"success": true, "predictions": [{"label", "confidence", "x_min", "y_min", "x_max", "y_max"}], ...}

with integer pixel corners of the submitted image, best first, plus CodeProject.AI's ``count``,
``inferenceMs``, ``processMs``, ``moduleId``, ``command``, ``executionProvider``, ``canUseGPU`` and
``analysisRoundTripMs``. Errors are ``{"success": false, "error": "..."}`` with the status
``web.errors.encode_error`` gives (400 bad image or field, 401 key, 404 unknown model, 413, 503, 500).

Everything but the wire format comes from the service: the body limit, decoding, the prediction
slot, metrics, server defaults (small-object mode included) and error statuses. The one setting of
its own is ``SPECKS_COMPAT_MAX_PREDICTIONS``: Frigate's detector overflows past 20 predictions.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from flask import Blueprint, Response, request
from werkzeug.datastructures import MultiDict

from .. import __version__
from ..core.knobs import UNIT
from ..core.names import label_of
from ..core.options import DetectOptions
from ..core.pipeline import Detector, Prediction
from ..errors import InvalidFieldError, shown
from ..service.service import DetectionService
from .auth import KeySource, accepts_key_in, check_body_key, check_key_in_body
from .compat_schemas import DEEPSTACK_MIN_CONFIDENCE
from .errors import ErrorAnswer, answer_errors_in_own_body
from .forms import form_from_body, uploaded_file
from .http import body_reader, current_service, json_response, request_deadline, route_label
from .schemas import answering_model

deepstack = Blueprint("deepstack", __name__)

IMAGE_PART = "image"
CONFIDENCE_FIELD = "min_confidence"
MODULE_ID = "specks"
MODULE_NAME = "Specks object detection"
# Statuses DeepStack clients do not know, answered as the one they do: 415 is a malformed request.
DEEPSTACK_STATUS = {415: 400}


@dataclass(frozen=True)
class DetectionForm:
    """What a DeepStack request carries once read: the image file's bytes and its threshold (0..1)."""

    image: bytes
    min_confidence: float


# -- routes ------------------------------------------------------------------------------------


@deepstack.post("/v1/vision/detection")
@accepts_key_in(KeySource.BODY)
def detection() -> Response:
    return detect(model=None, command="detect")


@deepstack.post("/v1/vision/custom/<model>")
@accepts_key_in(KeySource.BODY)
def custom_detection(model: str) -> Response:
    return detect(model=model, command="custom")


@deepstack.route("/v1/vision/custom/list", methods=["GET", "POST"])
@accepts_key_in(KeySource.BODY)
def custom_list() -> Response:
    started = time.perf_counter()
    service = current_service()
    if request.method == "POST":
        read_checked_form(service)
    else:
        check_body_key(None)
    fields = module_fields(service.detector(), "list", started=started)
    return json_response({"success": True, "models": service.model_names(), **fields})


@deepstack.get("/v1/status/ping")
@deepstack.get("/v1/server/status/ping")
def ping() -> Response:
    return json_response({"success": True, "message": __version__, "version": __version__})


def detect(*, model: str | None, command: str) -> Response:
    """Read the form, check its key, predict with the served model ``model`` (None: the default)."""
    started = time.perf_counter()
    service = current_service()
    form = read_detection_form(service)
    detector = service.detector(model)  # 404 for an unknown model, after the key: the message names the served ones
    options = DetectOptions(conf=form.min_confidence, max_det=service.settings.compat.max_predictions)
    prediction = service.predict(
        form.image, options, route=route_label(request), model=model, deadline=request_deadline(request)
    )
    answer = encode_detection(prediction)
    answer.update(module_fields(detector, command, started=started, prediction=prediction))
    return json_response(answer)


# -- decode ------------------------------------------------------------------------------------


def read_checked_form(service: DetectionService) -> MultiDict[str, Any]:
    """The form, its api_key checked before it is parsed (a wrong key costs a byte search, not a parse)."""
    raw = service.read_body(body_reader(request), request.content_length)
    check_key_in_body(raw, request.content_type)
    return form_from_body(raw, request.content_type, file_part=IMAGE_PART)


def read_detection_form(service: DetectionService) -> DetectionForm:
    """Body -> DetectionForm, checking the form's api_key before anything about the image is said."""
    form = read_checked_form(service)
    image = uploaded_file(form, (IMAGE_PART,))
    if image is None:
        raise InvalidFieldError(
            "no image: send the picture as the multipart/form-data file part 'image' "
            "(e.g. requests.post(url, files={'image': jpeg_bytes}))",
            field=IMAGE_PART,
        )
    confidence = form.get(CONFIDENCE_FIELD)
    return DetectionForm(image=image, min_confidence=parse_min_confidence(confidence))


def parse_min_confidence(value: object) -> float:
    """The ``min_confidence`` field -> a threshold in 0..1; absent or empty: DeepStack's 0.40."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return DEEPSTACK_MIN_CONFIDENCE
    try:
        threshold = float(value) if isinstance(value, str) else math.nan
    except ValueError:
        threshold = math.nan
    if not UNIT.holds(threshold):  # NaN fails too
        raise InvalidFieldError(
            f"'{CONFIDENCE_FIELD}' must be a number from 0 to 1, e.g. 0.45 (got {shown(value, 40)})",
            field=CONFIDENCE_FIELD,
        )
    return threshold


# -- encode ------------------------------------------------------------------------------------


def encode_detection(prediction: Prediction) -> dict[str, Any]:
    """``success``, ``predictions`` (integer pixel corners, best first) and their ``count``."""
    found = prediction.detections.sorted_by_confidence()
    names = answering_model(prediction).names
    corners = np.rint(found.xyxy.astype(np.float64)).astype(np.int64).tolist()
    scores = found.confidence.astype(np.float64).round(4).tolist()
    predictions = [
        {
            "label": label_of(names, c),
            "confidence": score,
            "x_min": box[0],
            "y_min": box[1],
            "x_max": box[2],
            "y_max": box[3],
        }
        for box, score, c in zip(corners, scores, found.class_id.tolist(), strict=True)
    ]
    return {"success": True, "predictions": predictions, "count": len(predictions)}


def module_fields(
    detector: Detector, command: str, *, started: float, prediction: Prediction | None = None
) -> dict[str, Any]:
    """CodeProject.AI's fields about the module (model) that answered, in integer milliseconds."""
    providers = detector.model.info.providers
    provider = providers[0].removesuffix("ExecutionProvider") if providers else "CPU"
    timing_ms = prediction.timing_ms if prediction is not None else {}
    return {
        "inferenceMs": round(timing_ms.get("inference", 0.0)),
        "processMs": round(timing_ms.get("total", 0.0)),
        "moduleId": MODULE_ID,
        "moduleName": MODULE_NAME,
        "command": command,
        "executionProvider": provider,
        "canUseGPU": provider != "CPU",
        "analysisRoundTripMs": round((time.perf_counter() - started) * 1000),
    }


def error_body(answer: ErrorAnswer) -> Response:
    status = DEEPSTACK_STATUS.get(answer.status, answer.status)
    return json_response({"success": False, "error": answer.message}, status=status)


answer_errors_in_own_body(deepstack, error_body)
