"""The Roboflow inference server's object-detection API: its JSON in, ``DetectionService``'s door, its JSON out.

What Roboflow's ``inference-sdk`` (``InferenceHTTPClient`` against a self-hosted URL) sends, in
order, for each ``infer()`` (see CLIENTS.md): ``GET /model/registry?api_key=...``, ``POST /model/add``
when the registry did not list its model id, then ``POST /infer/object_detection`` with
``{"model_id", "api_key", "image": {"type": "base64", "value": ...} | [...], options...}``. A
trailing slash in the client's URL makes these ``//model/registry`` and so on; Werkzeug reads a
doubled leading slash as one, so they are the same routes.

- Model ids: users keep their Roboflow ids. A served model's own name selects it; any other id is
  answered by the server's model when it serves one (the registry and ``/model/add`` echo the
  client's id, which the client insists on), and each answer's ``model`` says which one answered.
  With several models an unknown id is a 404.
- Options map onto ``DetectOptions``: ``confidence`` -> ``conf`` (absent, ``"default"`` and
  ``"best"``: Roboflow's default 0.4; Specks has no per-model tuned threshold), ``iou_threshold``
  -> ``iou`` (absent: Specks' measured defaults), ``max_detections`` -> ``max_det``,
  ``class_filter`` -> ``classes``. Roboflow's preprocessing, active-learning and billing fields are
  ignored, as its server ignores fields it does not know. ``class_agnostic_nms`` -> ``agnostic_nms``.
  ``"type": "url"`` is fetched only under SPECKS_IMAGE_URLS (``specks.service.fetch``; 403 otherwise); every
  other ``type`` but ``base64`` is refused.
- Answers: ``{"inference_id", "time" (seconds), "image": {"width", "height"}, "predictions":
  [{"x", "y" (box centre), "width", "height", "confidence", "class", "class_id", "detection_id"}],
  "model"}`` in pixels of the image as displayed; a list of them, in order, for a list of images.
- A list of images is a batch like ``POST /predict``'s: at most SPECKS_MAX_BATCH_IMAGES images and
  SPECKS_MAX_BATCH_BYTES image bytes (413 past either), and one error answers it when any image fails.
  Errors: ``{"message": ...}`` with the status ``web.errors.encode_error`` gives.
"""

from __future__ import annotations

import socket
import uuid
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, request

from .. import __version__
from ..core.base64_text import decode_base64
from ..core.deadline import Deadline
from ..core.names import label_of
from ..core.options import DetectOptions, parse_detect_options
from ..core.pipeline import Prediction
from ..errors import InvalidFieldError, InvalidRequestError, SpecksError, shown
from ..service.batching import check_batch_count, read_each
from ..service.service import DetectionService
from .auth import KeySource, accepts_key_in, check_key_in_body
from .compat_schemas import AddModelRequest, InferenceImage, ObjectDetectionRequest
from .errors import ErrorAnswer, answer_errors_in_own_body
from .http import body_reader, current_service, json_response, request_deadline, route_label
from .schemas import answering_model, model_summary, validate_fields

roboflow = Blueprint("roboflow", __name__)

TASK_TYPE = "object-detection"
# Roboflow's server default, also what "default" and "best" mean here.
DEFAULT_CONFIDENCE = 0.4
SERVER_NAME = "Specks (Roboflow-compatible API)"


# -- routes ------------------------------------------------------------------------------------


@roboflow.get("/model/registry")
@accepts_key_in(KeySource.QUERY)
def model_registry() -> Response:
    service = current_service()
    return json_response({"models": [registry_entry(name) for name in service.model_names()]})


@roboflow.post("/model/add")
@accepts_key_in(KeySource.QUERY, KeySource.BODY)
def model_add() -> Response:
    service = current_service()
    body = read_json_object(service)
    added = validate_fields(AddModelRequest, body)
    others = [name for name in service.model_names() if name != added.model_id]
    return json_response({"models": [registry_entry(added.model_id)] + [registry_entry(name) for name in others]})


@roboflow.post("/infer/object_detection")
@accepts_key_in(KeySource.QUERY, KeySource.BODY)
def infer_object_detection() -> Response:
    service = current_service()
    fields = read_json_object(service)
    if isinstance(fields.get("image"), list):  # counted before each image is validated
        check_batch_count(len(fields["image"]), service.settings.limits)
    body = validate_fields(ObjectDetectionRequest, fields)
    model = service.model_for_client_id(body.model_id)
    options = parse_detect_options(detect_options(body))
    chosen = Chosen(route_label(request), model, bool(body.visualize_predictions), request_deadline(request))
    if isinstance(body.image, list):
        return json_response(infer_batch(service, body.image, options, chosen))
    image = image_bytes(service, body.image)
    prediction = service.predict(
        image, options, route=chosen.route, model=model, visualize=chosen.visualize, deadline=chosen.deadline
    )
    return json_response(encode_answer(prediction))


@roboflow.get("/info")
@accepts_key_in(KeySource.QUERY)
def info() -> Response:
    return json_response({"name": SERVER_NAME, "version": __version__, "uuid": server_uuid()})


# -- decode ------------------------------------------------------------------------------------


def read_json_object(service: DetectionService) -> dict[str, Any]:
    """The JSON body through the service's limits, its api_key checked before it is parsed; a non-object is a 400."""
    raw = service.read_body(body_reader(request), request.content_length)
    check_key_in_body(raw, request.content_type)
    body = service.decode_json(raw, content_type=request.content_type)
    if not isinstance(body, dict):
        raise InvalidRequestError(f"the JSON body must be an object, got {type(body).__name__}")
    return body


def detect_options(body: ObjectDetectionRequest) -> dict[str, Any]:
    """Roboflow's option names -> ``DetectOptions`` fields (only those the request set)."""
    confidence = body.confidence
    threshold = DEFAULT_CONFIDENCE if confidence is None or isinstance(confidence, str) else confidence
    options: dict[str, Any] = {"conf": threshold}
    if body.iou_threshold is not None:
        options["iou"] = body.iou_threshold
    if body.max_detections is not None:
        options["max_det"] = body.max_detections
    if body.class_agnostic_nms:
        options["agnostic_nms"] = True
    if body.class_filter:  # Roboflow reads an empty filter as none
        options["classes"] = list(body.class_filter)
    return options


def checked_value(image: InferenceImage) -> str:
    """The image's base64 text or URL, when Specks reads its type (base64, or url where the server
    allows it); else a 400."""
    if image.type not in ("base64", "url"):
        raise InvalidFieldError(
            f"'image': type {shown(image.type)} is not supported; Specks never unpickles images for a client: "
            'send {"type": "base64", "value": "<base64 of the image file>"} (or "url" where the server allows it)',
            field="image",
        )
    if not isinstance(image.value, str):
        raise InvalidFieldError(
            f"'image': the value must be the image file as base64 text, or a URL (got {type(image.value).__name__})",
            field="image",
        )
    return image.value


def image_bytes(service: DetectionService, image: InferenceImage) -> bytes:
    """The image file: its base64 value decoded, or (``"type": "url"``) fetched under SPECKS_IMAGE_URLS."""
    return read_image(service, image.type, checked_value(image))


def read_image(service: DetectionService, kind: str, value: str) -> bytes:
    """A checked image value's bytes: base64 decoded, or a URL fetched."""
    return service.fetch_image(value) if kind == "url" else decode_base64(value)


# -- predict -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chosen:
    """What one inference request chose besides its images and options."""

    route: str
    model: str
    visualize: bool
    deadline: Deadline


def infer_batch(
    service: DetectionService, images: list[InferenceImage], options: DetectOptions, chosen: Chosen
) -> list[dict[str, Any]]:
    """A list of images, run as ``POST /predict`` runs a batch: the same image and byte limits
    (SPECKS_MAX_BATCH_IMAGES, SPECKS_MAX_BATCH_BYTES) and shared runs. Roboflow's server answers
    a batch with one error when any image fails: so does this, with the first image's that failed."""
    sources = [(image.type, checked_value(image)) for image in images]  # every image's type, before any work
    files = read_each(sources, lambda source: read_image(service, *source))
    results = service.predict_batch(
        files, options, route=chosen.route, model=chosen.model, visualize=chosen.visualize, deadline=chosen.deadline
    )
    failed = [result for result in results if isinstance(result, SpecksError)]
    if failed:
        raise failed[0]
    return [encode_answer(result) for result in results if isinstance(result, Prediction)]


def encode_answer(prediction: Prediction) -> dict[str, Any]:
    """One image's answer, with its annotated picture when one was drawn (inference-sdk base64-decodes it)."""
    answer = encode_inference(prediction)
    if prediction.visualization_jpeg_b64 is not None:
        answer["visualization"] = prediction.visualization_jpeg_b64
    return answer


# -- encode ------------------------------------------------------------------------------------


def registry_entry(model_id: str) -> dict[str, Any]:
    """One model as the registry lists it.

    No input size: the client would then shrink every image to it before sending (when its
    downsizing is on), and small-object mode needs the full-resolution pixels.
    """
    return {"model_id": model_id, "task_type": TASK_TYPE}


def encode_inference(prediction: Prediction) -> dict[str, Any]:
    """One image's answer in the shape of Roboflow's ObjectDetectionInferenceResponse."""
    found, model_info = prediction.detections, answering_model(prediction)
    names = model_info.names
    xyxy = found.xyxy.astype("float64")
    centres_wh = [
        (round((x1 + x2) / 2, 2), round((y1 + y2) / 2, 2), round(x2 - x1, 2), round(y2 - y1, 2))
        for x1, y1, x2, y2 in xyxy.tolist()
    ]
    scores = found.confidence.astype("float64").round(4).tolist()
    predictions = [
        {
            "x": x,
            "y": y,
            "width": width,
            "height": height,
            "confidence": score,
            "class": label_of(names, c),
            "class_id": c,
            "detection_id": str(uuid.uuid4()),
        }
        for (x, y, width, height), score, c in zip(centres_wh, scores, found.class_id.tolist(), strict=True)
    ]
    return {
        "inference_id": str(uuid.uuid4()),
        "time": round(prediction.timing_ms.get("total", 0.0) / 1000, 6),
        "image": {"width": prediction.image_size.width, "height": prediction.image_size.height},
        "predictions": predictions,
        "model": model_summary(model_info),
    }


def server_uuid() -> str:
    """The same id from every worker of this server and across restarts (host name and port)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"specks://{socket.gethostname()}:{current_service().settings.port}"))


def error_body(answer: ErrorAnswer) -> Response:
    return json_response({"message": answer.message}, status=answer.status)


answer_errors_in_own_body(roboflow, error_body)
