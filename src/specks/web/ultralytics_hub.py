"""The Ultralytics HUB inference API: its form in, ``DetectionService``'s door, its JSON out.

Scripts written for HUB's hosted or dedicated endpoints (see CLIENTS.md) post
``multipart/form-data`` to ``/v1/predict/<model id>`` with the header ``x-api-key``, the picture as
the file part ``file`` (older clients: ``image``) and the text fields ``imgsz``, ``conf`` and
``iou`` (older clients: ``size`` and ``confidence``). They read::

    {"images": [{"results": [{"class", "name", "confidence", "box": {"x1", "y1", "x2", "y2"}}],
                 "shape": [height, width], "speed": {"preprocess", "inference", "postprocess"}}],
     "metadata": {...}}

with boxes in pixels of the picture as displayed, best first.

- Model ids: a served model's own name selects it; any other id (a HUB model id) is answered by
  the server's default model, and ``metadata.model`` says which one answered.
- ``imgsz`` applies to models with dynamic height and width, as ``POST /predict``'s ``imgsz``;
  a fixed-size model ignores it, where HUB would resize. ``iou`` absent: Specks' measured
  default, not HUB's 0.45. Server defaults (small-object mode included) apply as everywhere.
- The key is the ``x-api-key`` header, which every Specks route already reads.
- Errors: ``{"success": false, "message": ...}`` with the status ``web.errors.encode_error`` gives.
"""

from __future__ import annotations

import math
import time
from typing import Any

from flask import Blueprint, Response, request
from werkzeug.datastructures import MultiDict

from .. import __version__
from ..core.knobs import DEFAULT_CONF, IMGSZ_PX, UNIT, Range
from ..core.names import label_of
from ..core.options import DetectOptions
from ..core.pipeline import Prediction
from ..errors import InvalidFieldError, shown
from .errors import ErrorAnswer, answer_errors_in_own_body
from .forms import read_form, uploaded_file
from .http import current_service, json_response, request_deadline, route_label
from .schemas import answering_model, model_summary

ultralytics_hub = Blueprint("ultralytics_hub", __name__)

FILE_PARTS = ("file", "image")  # current clients, then older ones
# (field, older name, range): the ranges Specks' own options take (HUB: imgsz 32-1280, conf from 0.01).
IMGSZ_FIELD = ("imgsz", "size", IMGSZ_PX)
CONF_FIELD = ("conf", "confidence", UNIT)
IOU_FIELD = ("iou", None, UNIT)


# -- routes ------------------------------------------------------------------------------------


@ultralytics_hub.post("/v1/predict/<model_id>")
def predict(model_id: str) -> Response:
    started = time.perf_counter()
    service = current_service()
    form = read_form(service, file_part=FILE_PARTS[0])
    image = uploaded_file(form, FILE_PARTS)
    if image is None:
        raise InvalidFieldError(
            "no image: send the picture as the multipart/form-data file part 'file' "
            "(e.g. requests.post(url, files={'file': jpeg_bytes}, headers={'x-api-key': key}))",
            field=FILE_PARTS[0],
        )
    model = service.model_for_client_id(model_id)
    detector = service.detector(model)
    options = detect_options(form, dynamic_input=detector.model.info.dynamic_hw)
    prediction = service.predict(
        image, options, route=route_label(request), model=model, deadline=request_deadline(request)
    )
    return json_response(encode_predictions(prediction, model_id=model_id, started=started))


# -- decode ------------------------------------------------------------------------------------


def detect_options(form: MultiDict[str, Any], *, dynamic_input: bool) -> DetectOptions:
    """HUB's form fields -> ``DetectOptions`` (``imgsz`` only where the model can take it)."""
    conf = number_field(form, CONF_FIELD, float)
    fields: dict[str, Any] = {"conf": DEFAULT_CONF if conf is None else conf}
    iou = number_field(form, IOU_FIELD, float)
    if iou is not None:
        fields["iou"] = iou
    imgsz = number_field(form, IMGSZ_FIELD, int)
    if imgsz is not None and dynamic_input:
        fields["imgsz"] = int(imgsz)
    return DetectOptions(**fields)


def number_field(form: MultiDict[str, Any], spec: tuple[str, str | None, Range], kind: type) -> float | None:
    """A numeric text field by its current or older name, checked against its range; None when absent."""
    name, older, allowed = spec
    sent = [n for n in (name, older) if n is not None and form.get(n) not in (None, "")]
    if not sent:
        return None
    sent_as = sent[0]
    value = form.get(sent_as)
    number = _parsed(value, kind)
    if not allowed.holds(number):  # NaN fails too
        kind_name = "a whole number" if kind is int else "a number"
        raise InvalidFieldError(
            f"'{sent_as}' must be {kind_name} from {allowed.low:g} to {allowed.high:g} (got {shown(value, 40)})",
            field=sent_as,
        )
    return number


def _parsed(value: object, kind: type) -> float:
    if not isinstance(value, str):
        return math.nan
    try:
        return float(kind(value.strip()))
    except ValueError:
        return math.nan


# -- encode ------------------------------------------------------------------------------------


def encode_predictions(prediction: Prediction, *, model_id: str, started: float) -> dict[str, Any]:
    """One image's answer in the shape of HUB's detection response."""
    found, model_info = prediction.detections.sorted_by_confidence(), answering_model(prediction)
    names = model_info.names
    boxes = found.xyxy.astype("float64").round(2).tolist()
    scores = found.confidence.astype("float64").round(4).tolist()
    results = [
        {
            "class": c,
            "name": label_of(names, c),
            "confidence": score,
            "box": {"x1": x1, "y1": y1, "x2": x2, "y2": y2},
        }
        for (x1, y1, x2, y2), score, c in zip(boxes, scores, found.class_id.tolist(), strict=True)
    ]
    size = prediction.image_size
    return {
        "images": [{"results": results, "shape": [size.height, size.width], "speed": speed_ms(prediction.timing_ms)}],
        "metadata": {
            "model_id": model_id,
            "model": model_summary(model_info),
            "server": f"specks {__version__}",
            "round_trip_ms": round((time.perf_counter() - started) * 1000, 1),
        },
    }


def speed_ms(timing_ms: dict[str, float]) -> dict[str, float]:
    """Specks' stages in HUB's three: decoding counts as preprocessing, merging as postprocessing."""
    return {
        "preprocess": round(timing_ms.get("decode", 0.0) + timing_ms.get("preprocess", 0.0), 1),
        "inference": round(timing_ms.get("inference", 0.0), 1),
        "postprocess": round(timing_ms.get("postprocess", 0.0) + timing_ms.get("merge", 0.0), 1),
    }


def error_body(answer: ErrorAnswer) -> Response:
    return json_response({"success": False, "message": answer.message}, status=answer.status)


answer_errors_in_own_body(ultralytics_hub, error_body)
