"""The per-process model: loaded once per worker, in the background, so liveness answers at once."""

from __future__ import annotations

import logging
import threading
import time

from ..config import Settings
from ..errors import ModelNotReadyError, SpecksError
from ..pipeline import Detector, load_detector

log = logging.getLogger(__name__)

# Where create_app keeps the ModelHolder: ``app.extensions[MODEL_EXTENSION]``.
MODEL_EXTENSION = "specks.model"


class ModelHolder:
    """Holds this process's Detector once it is loaded and warmed up."""

    def __init__(self, settings: Settings, detector: Detector | None = None) -> None:
        self.settings = settings
        self._detector = detector
        self._error: str | None = None
        self._thread: threading.Thread | None = None
        # Bounds memory: many I/O threads may hold requests, few decode and infer at once.
        self.prediction_slots = threading.BoundedSemaphore(settings.predictions_per_worker)

    @property
    def ready(self) -> bool:
        return self._detector is not None

    def start_loading(self, *, background: bool = True) -> None:
        if self._detector is not None or self._thread is not None:
            return
        if background:
            self._thread = threading.Thread(target=self._load, name="specks-model-loader", daemon=True)
            self._thread.start()
        else:
            self._load()

    def wait_loaded(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the loading to end; True when none is in progress (any more)."""
        if self._thread is None:
            return True
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    @property
    def not_ready_reason(self) -> str:
        """Why there is no model yet (meaningful only while not ``ready``)."""
        return f"the model failed to load: {self._error}" if self._error else "the model is still loading"

    def get(self) -> Detector:
        if self._detector is None:
            raise ModelNotReadyError(f"{self.not_ready_reason}; GET /ready says when the server can take requests")
        return self._detector

    def _load(self) -> None:
        settings = self.settings
        started = time.perf_counter()
        try:
            detector = load_detector(settings, threads=settings.resolved_threads())
        except SpecksError as exc:
            self._error = exc.message
            log.error("model load failed: %s", exc.message)
            return
        except Exception:  # never let a loader thread die silently (logged once, with the traceback)
            self._error = "unexpected error, see the server log"
            log.exception("model load failed")
            return
        self._detector = detector
        log.info("model %s ready in %.1f s", detector.model.info.name, time.perf_counter() - started)
