"""The service core: from a request's bytes to an answer's status and body, for every front-end.

LitServe's shape: ``decode_request`` (size, media type, JSON, schema), ``predict`` (the model
holder, a prediction slot, per-route metrics), ``encode_response`` and ``encode_error``. The
Flask routes, the DeepStack- and Roboflow-compatible routes and the Ray deployment are thin
adapters over one ``DetectionService``; none of them re-implements a step. No web framework is
imported here.

Errors: ``encode_error`` is the one place that maps the exception tree (``specks.errors``) to
HTTP statuses and the JSON envelope ``{"error": {"code", "message", "field"}}``. Expected refusals
(4xx, and 503 while the model loads) are logged at info/warning level without a traceback;
anything else is logged once with its traceback and answered generically, with no internals.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import errors
from .body import check_content_length, check_json_media_type, check_read_size, parse_json_body
from .config import Settings
from .holder import ModelHolder
from .metrics import Metrics
from .pipeline import Detector, Prediction
from .schemas import DetectOptions, PredictRequest, encode_prediction, parse_predict_request

log = logging.getLogger(__name__)

# The lookup walks each exception's MRO, so a subclass inherits its parent's status.
HTTP_STATUS: dict[type[errors.SpecksError], int] = {
    errors.SpecksError: 500,
    errors.InvalidRequestError: 400,
    errors.UnsupportedMediaTypeError: 415,
    errors.PayloadTooLargeError: 413,
    errors.AuthenticationError: 401,
    errors.NotFoundError: 404,
    errors.ModelNotReadyError: 503,
    errors.ModelError: 500,
    errors.InferenceError: 500,
    errors.ConfigError: 500,
}
INTERNAL_ERROR_MESSAGE = "internal server error; the details are in the server log"


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
    if status == 503:
        log.warning("request refused: %s", exc.message)
    else:
        log.info("request refused (%d %s): %s", status, exc.code, exc.message)
    return ErrorAnswer(status, exc.code, exc.message, exc.field)


class DetectionService:
    """The framework-neutral request path over this process's model holder."""

    def __init__(self, settings: Settings, holder: ModelHolder, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.holder = holder
        self.metrics = metrics

    # -- decode ------------------------------------------------------------------------------
    def read_body(self, read: Callable[[int], bytes], content_length: int | None) -> bytes:
        """The body through ``read(n)`` (a stream's read), 413 past the limit, declared or chunked.

        A declared ``content_length`` over the limit is refused before anything is read; a body of
        unknown length (chunked) is read to at most one byte past the limit, then refused.
        """
        limits = self.settings.limits
        check_content_length(content_length, limits)
        raw = read(limits.max_body_bytes + 1)
        check_read_size(len(raw), limits)
        return raw

    def decode_request(self, raw: bytes, *, content_type: str | None) -> PredictRequest:
        """A ``POST /predict`` body -> PredictRequest: media type, JSON syntax and nesting, then the schema."""
        check_json_media_type(content_type)
        return parse_predict_request(parse_json_body(raw, self.settings.limits))

    # -- predict -----------------------------------------------------------------------------
    def model_names(self) -> list[str]:
        """The names a request may choose a model by (ModelNotReadyError while loading)."""
        return [self.holder.get().model.info.name]

    def detector(self, model: str | None = None) -> Detector:
        """The model a request asked for by name, or the default one (None).

        ModelNotReadyError (503) while it loads; NotFoundError (404), naming the known models,
        for a name this server does not serve.
        """
        detector = self.holder.get()
        if model is not None and model not in self.model_names():
            known = ", ".join(repr(name) for name in self.model_names())
            raise errors.NotFoundError(f"unknown model {model!r}; this server serves {known}", field="model")
        return detector

    def predict(self, request: PredictRequest, *, route: str, model: str | None = None) -> tuple[Prediction, Detector]:
        """Detect on a base64 image under a prediction slot; the Detector is returned for encoding."""
        return self._run(route, model, lambda detector: detector.predict_base64(request.image, request))

    def predict_bytes(
        self, data: bytes, options: DetectOptions, *, route: str, model: str | None = None
    ) -> tuple[Prediction, Detector]:
        """Detect on raw image bytes (multipart uploads) under a prediction slot."""
        return self._run(route, model, lambda detector: detector.predict_bytes(data, options))

    def _run(
        self, route: str, model: str | None, work: Callable[[Detector], Prediction]
    ) -> tuple[Prediction, Detector]:
        detector = self.detector(model)
        if self.metrics is None:
            with self.holder.prediction_slots:
                prediction = work(detector)
            return prediction, detector
        with self.metrics.in_flight(route), self.holder.prediction_slots:
            prediction = work(detector)
        self.metrics.observe_prediction(route, prediction.timing_ms, prediction.tile_count)
        return prediction, detector

    # -- encode ------------------------------------------------------------------------------
    @staticmethod
    def encode_response(prediction: Prediction, detector: Detector) -> dict[str, Any]:
        """Specks' own answer body (``schemas.PredictResponse``)."""
        return encode_prediction(prediction, detector.model.info)

    def handle_predict(
        self,
        read: Callable[[int], bytes],
        *,
        content_type: str | None,
        content_length: int | None,
        route: str = "/predict",
    ) -> dict[str, Any]:
        """read -> decode -> predict -> encode for ``POST /predict``; errors propagate to ``encode_error``.

        The body is read before a prediction slot is taken, so a slow upload holds no slot.
        """
        request = self.decode_request(self.read_body(read, content_length), content_type=content_type)
        return self.encode_response(*self.predict(request, route=route))

    def model_details(self) -> dict[str, Any]:
        """Body of ``GET /model``: the loaded model, its profile and its request defaults (no file paths)."""
        detector = self.detector()
        profile = detector.profile.describe() if detector.profile else None
        return {**detector.model.info.to_dict(), "profile": profile, "defaults": self.request_defaults(detector)}

    def request_defaults(self, detector: Detector | None = None) -> dict[str, Any]:
        """What a request that omits each option gets (``None``: resolved per image and mode).

        They are the model's own (its profile over the server's settings); with no model loaded
        yet, the server's.
        """
        slicing = detector.slicing if detector is not None else self.settings.slicing
        options = DetectOptions().model_dump(mode="json")
        options.update(
            slice=slicing.mode.value,
            tile=slicing.tile_px or None,
            tile_scale=slicing.tile_scale,
            overlap=slicing.overlap_ratio,
            full_image=slicing.full_image_pass,
            merge=slicing.merge.value,
            merge_metric=slicing.merge_metric.value,
            merge_threshold=slicing.merge_threshold,
            scales=list(slicing.scales),
            flip=slicing.flip,
            soft_nms=slicing.soft_nms,
        )
        return options
