"""The door every front-end calls: image bytes and options in, a ``Prediction`` out.

``DetectionService.predict`` detects on one image and ``predict_batch`` on several, each under a
prediction slot of this process's model holder, with per-route metrics and the request's
deadline; the picture is drawn when asked. The JSON API (``web.predict``), the compatible APIs
(DeepStack, Roboflow, Ultralytics HUB), Ray Serve (which wraps the whole Flask app) and the tests
all come in here: each front-end decodes its own wire format (base64 included), calls the door,
and encodes the ``Prediction``, which carries the model that answered. No web framework is
imported here; errors are raised as ``specks.errors`` and mapped to HTTP in ``web.errors``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .. import errors
from ..config import Settings
from ..core.deadline import Deadline
from ..core.knobs import request_defaults_of
from ..core.options import MODEL_DEFAULTS, DetectOptions
from ..core.pipeline import Detector, Prediction
from ..core.visualize import visualize_prediction
from .batching import check_batch_bytes, check_batch_count, plan_batch, run_unit, shared_run_pixels
from .body import check_content_length, check_json_media_type, check_read_size, parse_json_body
from .fetch import UrlPolicy, fetch_image
from .holder import ModelHolder
from .metrics import Metrics

# One image of a batch: its Prediction, or the error it alone met.
BatchResult = Prediction | errors.SpecksError

log = logging.getLogger(__name__)


class DetectionService:
    """The framework-neutral request path over this process's model holder."""

    def __init__(self, settings: Settings, holder: ModelHolder, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.holder = holder
        self.metrics = metrics

    # -- a request's body, on plain values --------------------------------------------------
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

    def fetch_image(self, url: str) -> bytes:
        """The image at ``url``, under SPECKS_IMAGE_URLS and the body limit (``specks.service.fetch``; 403 when off)."""
        policy = UrlPolicy(self.settings.image_urls, max_bytes=self.settings.limits.max_body_bytes)
        return fetch_image(url, policy)

    def deadline(self, *, client_gone: Callable[[], bool] | None = None) -> Deadline:
        """A request's deadline: SPECKS_REQUEST_TIMEOUT_S from now (``client_gone``: see ``specks.core.deadline``)."""
        return Deadline.after(self.settings.request_timeout_s, client_gone=client_gone)

    # -- models ------------------------------------------------------------------------------
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

    # -- the door ----------------------------------------------------------------------------
    def predict(
        self,
        image: bytes,
        options: DetectOptions,
        *,
        route: str,
        model: str | None = None,
        visualize: bool = False,
        deadline: Deadline | None = None,
    ) -> Prediction:
        """Detect on one image file's bytes under a prediction slot.

        model:     a served model's name (None: the default). visualize: also draw the picture
                   (``Prediction.visualization_jpeg_b64``). deadline: when the work must stop
                   (503); None: SPECKS_REQUEST_TIMEOUT_S from now.
        """
        deadline = deadline or self.deadline()
        detector = self.detector(model)
        with self._slot(route, deadline):
            prediction = detector.predict_bytes(image, options, keep_image=visualize, deadline=deadline)
            prediction = self._drawn(prediction, visualize)
        self._observe(route, [prediction])
        return prediction

    def predict_batch(
        self,
        images: Sequence[bytes | errors.SpecksError],
        options: DetectOptions,
        *,
        route: str,
        model: str | None = None,
        visualize: bool = False,
        deadline: Deadline | None = None,
    ) -> list[BatchResult]:
        """Detect on every image of a batch, in order; an image that fails holds its own error.

        ``images`` may hold an image's own error already (its wire format could not be read): it
        keeps its place. The whole batch is refused (413) past SPECKS_MAX_BATCH_IMAGES images or
        SPECKS_MAX_BATCH_BYTES image bytes, and (404/503) for its model. Otherwise each image is
        answered alone: decoding and per-image limits fail only their image. Images run in units
        (``batching``), each under one prediction slot: full-image passes of same-size images share
        one session.run where SPECKS_SHARED_RUNS allows (by default only off the CPU). Each unit
        takes its slot again, behind the requests that arrived meanwhile; past the ``deadline`` the
        whole batch stops (503).
        """
        deadline = deadline or self.deadline()
        limits = self.settings.limits
        check_batch_count(len(images), limits)
        detector = self.detector(model)
        results: dict[int, BatchResult] = {i: item for i, item in enumerate(images) if isinstance(item, Exception)}
        pending = {i: item for i, item in enumerate(images) if isinstance(item, bytes)}
        check_batch_bytes(sum(len(data) for data in pending.values()), limits)
        pixels = shared_run_pixels(self.settings.shared_runs, detector.model.info.providers)
        plan = plan_batch(detector, pending, options, keep_image=visualize, max_batch_input_pixels=pixels)
        results.update(plan.refused)
        for unit in plan.units:
            with self._slot(route, deadline, images=len(unit)):
                answers = run_unit(detector, pending, unit, options, keep_image=visualize, deadline=deadline)
                answers = {i: self._drawn(a, visualize) if isinstance(a, Prediction) else a for i, a in answers.items()}
            self._observe(route, [a for a in answers.values() if isinstance(a, Prediction)])
            for index in unit:
                pending.pop(index)  # let each image's bytes go once it is answered
            results.update(answers)
        return [results[index] for index in range(len(images))]

    @contextlib.contextmanager
    def _slot(self, route: str, deadline: Deadline, *, images: int = 1) -> Iterator[None]:
        """A prediction slot (waiting for one does not count against ``deadline``), counted in flight."""
        with contextlib.ExitStack() as stack:
            if self.metrics is not None:
                stack.enter_context(self.metrics.in_flight(route, images=images))
            stack.enter_context(self.holder.prediction_slot(deadline))
            yield

    def _observe(self, route: str, predictions: list[Prediction]) -> None:
        if self.metrics is not None:
            for prediction in predictions:
                self.metrics.observe_prediction(route, prediction.timing_ms, prediction.tile_count)

    @staticmethod
    def _drawn(prediction: Prediction, visualize: bool) -> Prediction:
        """With ``visualize``, the Prediction with its picture drawn and its pixels let go (inside the slot)."""
        if not visualize:
            return prediction
        started = time.perf_counter()
        picture = visualize_prediction(prediction, prediction.model.names if prediction.model else ())
        drawn = prediction.with_stage("visualize", (time.perf_counter() - started) * 1000)
        return dataclasses.replace(drawn, image=None, visualization_jpeg_b64=picture)

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
        model_defaults = detector.model_defaults if detector is not None else MODEL_DEFAULTS
        return {
            **DetectOptions().model_dump(mode="json"),
            **request_defaults_of(slicing),
            "model": detector.model.info.name if detector is not None else self.holder.default_name,
            "visualize": False,
            "conf": model_defaults.conf,
            "regions": [r.to_json() for r in model_defaults.regions.regions],
            "region_anchor": model_defaults.regions.anchor.value,
        }
