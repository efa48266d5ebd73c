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

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import errors
from ..config import Settings
from ..core.deadline import Deadline
from ..core.imaging import decode_base64
from ..core.options import DetectOptions
from ..core.pipeline import Detector, Prediction
from ..core.regions import NO_REGIONS
from ..core.visualize import visualize_prediction
from ..web.schemas import (
    BatchPredictRequest,
    PredictRequest,
    UrlPredictRequest,
    encode_prediction,
    parse_predict_body,
    parse_predict_request,
)
from .batching import check_batch_bytes, check_batch_count, plan_batch, run_unit, shared_run_pixels
from .body import check_content_length, check_json_media_type, check_read_size, parse_json_body
from .fetch import UrlPolicy, fetch_image
from .holder import ModelHolder
from .metrics import Metrics

# One image of a batch: its Prediction, or the error it alone met.
BatchResult = Prediction | errors.SpecksError

log = logging.getLogger(__name__)

# The lookup walks each exception's MRO, so a subclass inherits its parent's status.
HTTP_STATUS: dict[type[errors.SpecksError], int] = {
    errors.SpecksError: 500,
    errors.InvalidRequestError: 400,
    errors.UnsupportedMediaTypeError: 415,
    errors.PayloadTooLargeError: 413,
    errors.AuthenticationError: 401,
    errors.ForbiddenError: 403,
    errors.NotFoundError: 404,
    errors.ModelNotReadyError: 503,
    errors.DeadlineExceededError: 503,
    errors.ClientGoneError: 499,  # nginx's "client closed request": the answer is never read
    errors.RequestTimeoutError: 408,
    errors.ModelError: 500,
    errors.InferenceError: 500,
    errors.ConfigError: 500,
}
INTERNAL_ERROR_MESSAGE = "internal server error; the details are in the server log"
# Longest message a client is answered (and its refusal logged) with: an error answer stays under 8 KB.
MAX_MESSAGE_CHARS = 1000


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
    # Messages and fields may quote client input: capped here whatever raised them.
    message = errors.clipped(exc.message, MAX_MESSAGE_CHARS)
    field = None if exc.field is None else errors.clipped(exc.field)
    if status == 503:
        log.warning("request refused: %s", message)
    else:
        log.info("request refused (%d %s): %s", status, exc.code, message)
    return ErrorAnswer(status, exc.code, message, field)


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

    def decode_json(self, raw: bytes, *, content_type: str | None) -> Any:
        """A JSON body -> its value: media type, JSON syntax, container count and nesting checked."""
        check_json_media_type(content_type)
        return parse_json_body(raw, self.settings.limits)

    def decode_request(self, raw: bytes, *, content_type: str | None) -> PredictRequest:
        """A one-image ``POST /predict`` body -> PredictRequest: media type, JSON syntax and nesting, the schema."""
        return parse_predict_request(self.decode_json(raw, content_type=content_type))

    def decode_predict_body(
        self, raw: bytes, *, content_type: str | None
    ) -> PredictRequest | BatchPredictRequest | UrlPredictRequest:
        """A ``POST /predict`` body: one image (``image``), a batch (``images``) or ``image_url``, one of them."""
        return parse_predict_body(self.decode_json(raw, content_type=content_type))

    # -- predict -----------------------------------------------------------------------------
    def model_names(self) -> list[str]:
        """The names a request may choose a model by, the default first (known while loading too)."""
        return self.holder.names

    def model_for_client_id(self, model_id: str | None) -> str:
        """The served model that answers a compatible API's model id: the model of that name, else
        the server's default. Users keep the ids their client already sends (Roboflow's ``coco/3``,
        an Ultralytics HUB model id); each answer says which model answered."""
        names = self.model_names()
        return model_id if model_id in names else names[0]

    def detector(self, model: str | None = None) -> Detector:
        """The model a request asked for by name, or the default one (None).

        NotFoundError (404), naming the known models, for a name this server does not serve;
        ModelNotReadyError (503) while the models load.
        """
        if model is not None and model not in self.model_names():
            known = ", ".join(repr(name) for name in self.model_names())
            raise errors.NotFoundError(f"unknown model {model!r}; this server serves {known}", field="model")
        return self.holder.get(model)

    def predict(
        self, request: PredictRequest, *, route: str, model: str | None = None, deadline: Deadline | None = None
    ) -> tuple[Prediction, Detector]:
        """Detect on a base64 image under a prediction slot; the Detector is returned for encoding.

        model: a front-end's own choice of model (e.g. from its URL); None takes ``request.model``.
        ``request.visualize`` adds the annotated picture (``Prediction.visualization_jpeg_b64``).
        deadline: when the work must stop (503); None: SPECKS_REQUEST_TIMEOUT_S from now.
        """
        chosen = request.model if model is None else model
        deadline = deadline or self.deadline()

        def work(detector: Detector) -> Prediction:
            return detector.predict_base64(request.image, request, keep_image=request.visualize, deadline=deadline)

        return self._run(route, chosen, work, visualize=request.visualize, deadline=deadline)

    def predict_bytes(
        self,
        data: bytes,
        options: DetectOptions,
        *,
        route: str,
        model: str | None = None,
        visualize: bool = False,
        deadline: Deadline | None = None,
    ) -> tuple[Prediction, Detector]:
        """Detect on raw image bytes (multipart uploads) under a prediction slot; ``visualize`` draws them."""
        deadline = deadline or self.deadline()

        def work(detector: Detector) -> Prediction:
            return detector.predict_bytes(data, options, keep_image=visualize, deadline=deadline)

        return self._run(route, model, work, visualize=visualize, deadline=deadline)

    def fetch_image(self, url: str) -> bytes:
        """The image at ``url``, under SPECKS_IMAGE_URLS and the body limit (``specks.service.fetch``; 403 when off)."""
        policy = UrlPolicy(self.settings.image_urls, max_bytes=self.settings.limits.max_body_bytes)
        return fetch_image(url, policy)

    def deadline(self, *, client_gone: Callable[[], bool] | None = None) -> Deadline:
        """A request's deadline: SPECKS_REQUEST_TIMEOUT_S from now (``client_gone``: see ``specks.core.deadline``)."""
        return Deadline.after(self.settings.request_timeout_s, client_gone=client_gone)

    def _run(
        self,
        route: str,
        model: str | None,
        work: Callable[[Detector], Prediction],
        *,
        visualize: bool,
        deadline: Deadline,
    ) -> tuple[Prediction, Detector]:
        detector = self.detector(model)
        if self.metrics is None:
            with self.holder.prediction_slot(deadline):
                prediction = self._drawn(work(detector), detector, visualize)
            return prediction, detector
        with self.metrics.in_flight(route), self.holder.prediction_slot(deadline):
            prediction = self._drawn(work(detector), detector, visualize)
        self.metrics.observe_prediction(route, prediction.timing_ms, prediction.tile_count)
        return prediction, detector

    @staticmethod
    def _drawn(prediction: Prediction, detector: Detector, visualize: bool) -> Prediction:
        """With ``visualize``, the Prediction with its picture drawn and its pixels let go (inside the slot)."""
        if not visualize:
            return prediction
        started = time.perf_counter()
        picture = visualize_prediction(prediction, detector.model.info.names)
        timing_ms = _with_stage(prediction.timing_ms, "visualize", (time.perf_counter() - started) * 1000)
        return dataclasses.replace(prediction, image=None, visualization_jpeg_b64=picture, timing_ms=timing_ms)

    def predict_batch(
        self,
        request: BatchPredictRequest,
        *,
        route: str,
        model: str | None = None,
        deadline: Deadline | None = None,
    ) -> tuple[list[BatchResult], Detector]:
        """Detect on every image of a batch, in order; an image that fails holds its own error.

        The whole batch is refused (413) past SPECKS_MAX_BATCH_IMAGES images or SPECKS_MAX_BATCH_BYTES
        image bytes, and (404/503) for its model. Otherwise each image is answered alone: base64,
        decoding and per-image limits fail only their image. Images run in units (``batching``), each
        under one prediction slot: full-image passes of same-size images share one session.run where
        SPECKS_SHARED_RUNS allows (by default only off the CPU). Each unit takes its slot again,
        behind the requests that arrived meanwhile; past the ``deadline`` the whole batch stops (503).
        """
        deadline = deadline or self.deadline()
        limits = self.settings.limits
        check_batch_count(len(request.images), limits)
        detector = self.detector(request.model if model is None else model)
        results: dict[int, BatchResult] = {}
        images: dict[int, bytes] = {}
        base64_ms: dict[int, float] = {}
        for index, text in enumerate(request.images):
            started = time.perf_counter()
            try:
                images[index] = decode_base64(text)
            except errors.SpecksError as exc:
                results[index] = exc
            base64_ms[index] = (time.perf_counter() - started) * 1000
        check_batch_bytes(sum(len(data) for data in images.values()), limits)
        pixels = shared_run_pixels(self.settings.shared_runs, detector.model.info.providers)
        plan = plan_batch(detector, images, request, keep_image=request.visualize, max_batch_input_pixels=pixels)
        results.update(plan.refused)
        for unit in plan.units:
            answers = self._run_unit(route, detector, images, unit, request, deadline)
            for index in unit:
                images.pop(index)  # let each image's bytes go once it is answered
            results.update(
                {
                    i: _with_base64(answer, base64_ms[i]) if isinstance(answer, Prediction) else answer
                    for i, answer in answers.items()
                }
            )
        return [results[index] for index in range(len(request.images))], detector

    def _run_unit(
        self,
        route: str,
        detector: Detector,
        images: dict[int, bytes],
        unit: tuple[int, ...],
        request: BatchPredictRequest,
        deadline: Deadline,
    ) -> dict[int, BatchResult]:
        def work() -> dict[int, BatchResult]:
            answers = run_unit(detector, images, unit, request, keep_image=request.visualize, deadline=deadline)
            return {
                i: self._drawn(answer, detector, request.visualize) if isinstance(answer, Prediction) else answer
                for i, answer in answers.items()
            }

        if self.metrics is None:
            with self.holder.prediction_slot(deadline):
                return work()
        with self.metrics.in_flight(route, images=len(unit)), self.holder.prediction_slot(deadline):
            answers = work()
        for answer in answers.values():
            if isinstance(answer, Prediction):
                self.metrics.observe_prediction(route, answer.timing_ms, answer.tile_count)
        return answers

    # -- encode ------------------------------------------------------------------------------
    @staticmethod
    def encode_response(prediction: Prediction, detector: Detector) -> dict[str, Any]:
        """Specks' own answer body (``schemas.PredictResponse``)."""
        return encode_prediction(prediction, detector.model.info)

    @staticmethod
    def encode_batch_response(results: list[BatchResult], detector: Detector) -> dict[str, Any]:
        """``schemas.BatchPredictResponse``: each image's answer, or its error envelope and status."""
        encoded = []
        for result in results:
            if isinstance(result, Prediction):
                encoded.append(encode_prediction(result, detector.model.info))
            else:
                answer = encode_error(result)
                encoded.append({**answer.envelope(), "status": answer.status})
        return {"results": encoded}

    def handle_predict(
        self,
        read: Callable[[int], bytes],
        *,
        content_type: str | None,
        content_length: int | None,
        route: str = "/predict",
        client_gone: Callable[[], bool] | None = None,
    ) -> dict[str, Any]:
        """read -> decode -> predict -> encode for ``POST /predict``; errors propagate to ``encode_error``.

        The body is read before a prediction slot is taken, so a slow upload holds no slot; the
        request's deadline starts once it has arrived. ``client_gone``: see ``specks.core.deadline``.
        """
        raw = self.read_body(read, content_length)
        deadline = self.deadline(client_gone=client_gone)
        request = self.decode_predict_body(raw, content_type=content_type)
        del raw
        if isinstance(request, UrlPredictRequest):
            data = self.fetch_image(request.image_url)  # before a slot is taken: the network is slow
            answer = self.predict_bytes(
                data, request, route=route, model=request.model, visualize=request.visualize, deadline=deadline
            )
            return self.encode_response(*answer)
        if isinstance(request, BatchPredictRequest):
            return self.encode_batch_response(*self.predict_batch(request, route=route, deadline=deadline))
        return self.encode_response(*self.predict(request, route=route, deadline=deadline))

    def model_details(self, model: str | None = None) -> dict[str, Any]:
        """Body of ``GET /model``: a served model (None: the default) and the server's request defaults.

        No file paths. NotFoundError (404) for a name this server does not serve.
        """
        detector = self.detector(model)
        profile = detector.profile.describe() if detector.profile else None
        return {**detector.model.info.to_dict(), "profile": profile, "defaults": self.request_defaults(detector)}

    def model_list(self) -> dict[str, Any]:
        """Body of ``GET /models`` (``schemas.ModelList``): every served model, the default first."""
        default = self.holder.default_name
        models = []
        for name, detector in self.holder.detectors().items():
            info = detector.model.info.to_dict()
            info.pop("providers", None)
            profile = detector.profile.describe() if detector.profile else None
            loaded = self.holder.model_file(name)
            models.append(
                {
                    **info,
                    "name": name,
                    "default": name == default,
                    "profile": profile,
                    "sha256": loaded.sha256,
                    "loaded_at": loaded.loaded_at,
                }
            )
        return {"default": default, "models": models}

    def ready_details(self) -> dict[str, Any]:
        """Body of ``GET /ready`` once every model is loaded (ModelNotReadyError before)."""
        self.holder.get()
        return {"status": "ready", "model": self.holder.default_name, "models": self.holder.names}

    def request_defaults(self, detector: Detector | None = None) -> dict[str, Any]:
        """What a request that omits each option gets (``None``: resolved per image and mode).

        They are the model's own (its profile over the server's settings); with no model loaded
        yet, the server's.
        """
        slicing = detector.slicing if detector is not None else self.settings.slicing
        regions = detector.regions if detector is not None else NO_REGIONS
        options = DetectOptions().model_dump(mode="json")
        options.update(
            model=detector.model.info.name if detector is not None else self.holder.default_name,
            visualize=False,
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
            regions=[r.to_json() for r in regions.regions],
            region_anchor=regions.anchor.value,
        )
        return options


def _with_stage(timing_ms: dict[str, float], stage: str, elapsed_ms: float) -> dict[str, float]:
    """``timing_ms`` with ``elapsed_ms`` more in ``stage`` and in the total (which stays last)."""
    stages = {name: value for name, value in timing_ms.items() if name != "total"}
    stages[stage] = round(stages.get(stage, 0.0) + elapsed_ms, 3)
    return {**stages, "total": round(timing_ms.get("total", 0.0) + elapsed_ms, 3)}


def _with_base64(prediction: Prediction, base64_ms: float) -> Prediction:
    """A batch image's Prediction with the time its base64 took (decoded before its unit ran) in ``decode``."""
    return dataclasses.replace(prediction, timing_ms=_with_stage(prediction.timing_ms, "decode", base64_ms))
