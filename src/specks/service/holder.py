"""The per-process models: a registry of Detectors by name, loaded once per worker in the background.

A worker serves every configured model (``--model``, ``SPECKS_MODEL``, ``SPECKS_MODELS``) plus the
embedded default, always, under ``DEFAULT_MODEL_NAME``. The first one listed answers requests that
name no model. Liveness answers at once; readiness waits until every model is loaded and warm.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..config import ModelSpec, Settings
from ..core.deadline import Deadline
from ..core.pipeline import Detector
from ..errors import ModelNotReadyError, SpecksError
from . import last_good
from .cores import process_core_share
from .loading import load_detector
from .served import served_models
from .slots import FairSlots

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelFile:
    """What ``GET /models`` says of a loaded model's file, so that an operator can tell a swap took.

    sha256: hex digest of the file as loaded (empty when it cannot be read); loaded_at: UTC time of
    the load, ISO 8601 (None for a model handed in already loaded).
    """

    sha256: str
    loaded_at: str | None

    @classmethod
    def of(cls, path: str, *, loaded_now: bool = True) -> ModelFile:
        try:
            digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        except OSError:
            digest = ""
        return cls(digest, datetime.now(timezone.utc).isoformat(timespec="seconds") if loaded_now else None)


class ModelHolder:
    """This process's Detectors by name, once every one is loaded and warmed up.

    ``detector`` / ``detectors`` inject models already loaded (tests, benchmarks); the first is the
    default. Otherwise ``start_loading`` loads ``served_models(settings)``.
    """

    def __init__(
        self,
        settings: Settings,
        detector: Detector | None = None,
        *,
        detectors: Mapping[str, Detector] | None = None,
    ) -> None:
        self.settings = settings
        injected = dict(detectors or {})
        if detector is not None:
            injected = {detector.model.info.name: detector, **injected}
        self._specs = tuple(ModelSpec(name, None) for name in injected) if injected else served_models(settings)
        self._detectors: dict[str, Detector] | None = injected or None
        self._failed_model: str | None = None  # the name of the model that failed to load
        self._error: str | None = None  # why, in the loader's words (may hold paths: not for clients)
        self._thread: threading.Thread | None = None
        self._files: dict[str, ModelFile] = {}
        # Bounds memory: many I/O threads may hold requests, few decode and infer at once.
        self.prediction_slots = FairSlots(settings.predictions_per_worker)
        self.core_share = process_core_share()  # who else is busy, for adaptive threads (specks.service.cores)

    @contextlib.contextmanager
    def prediction_slot(self, deadline: Deadline | None = None) -> Iterator[None]:
        """Hold one of this worker's prediction slots, counted as a request in progress.

        Waiters are served in arrival order. With a ``deadline``, a waiter whose client has gone
        leaves the queue, and the time waited is added to the deadline (it is not the request's work).
        """
        started = time.monotonic()
        self.prediction_slots.acquire(deadline)
        if deadline is not None:
            deadline.extend(time.monotonic() - started)
        try:
            with self.core_share.busy():
                yield
        finally:
            self.prediction_slots.release()

    @property
    def names(self) -> list[str]:
        """Every served model's name, the default first (known before they are loaded)."""
        return [spec.name for spec in self._specs]

    @property
    def default_name(self) -> str:
        return self._specs[0].name

    @property
    def ready(self) -> bool:
        return self._detectors is not None

    def start_loading(self, *, background: bool = True) -> None:
        if self._detectors is not None or self._thread is not None:
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
        """Why there are no models yet, for clients (meaningful only while not ``ready``).

        It names the model but not what went wrong: a loader's message can hold a file path or
        library internals. The server log and ``load_failure`` have the whole reason.
        """
        if self._failed_model is None:
            return "the models are still loading"
        return f"a model failed to load: {self._failed_model!r}; the server log says why"

    @property
    def load_failure(self) -> str | None:
        """The whole reason a model failed to load, for operators (None: none failed)."""
        return None if self._failed_model is None else f"a model failed to load: {self._failed_model}: {self._error}"

    def get(self, name: str | None = None) -> Detector:
        """The Detector served as ``name`` (None: the default); ModelNotReadyError until all are loaded.

        ``name`` must be one of ``names`` (``DetectionService.detector`` checks it first).
        """
        if self._detectors is None:
            raise ModelNotReadyError(f"{self.not_ready_reason}; GET /ready says when the server can take requests")
        return self._detectors[self.default_name if name is None else name]

    def detectors(self) -> dict[str, Detector]:
        """Every loaded Detector by name, the default first (ModelNotReadyError while loading)."""
        self.get()
        assert self._detectors is not None
        return dict(self._detectors)

    def _load(self) -> None:
        settings = self.settings
        threads, wide_threads = settings.resolved_threads(), settings.wide_threads()
        loaded: dict[str, Detector] = {}
        for spec in self._specs:
            started = time.perf_counter()
            try:
                # Loading runs the model once on a blank input (the layout probe): each arrives warm.
                detector = self._load_or_keep(spec, threads)
                if wide_threads is not None:  # adaptive threads (specks.service.cores)
                    detector.model.widen(wide_threads, self.core_share)
                loaded[spec.name] = detector
            except SpecksError as exc:
                self._failed_model, self._error = spec.name, exc.message
                log.error("model %s failed to load: %s", spec.name, exc.message)
                return
            except Exception as exc:  # never let a loader thread die silently (logged once, with the traceback)
                self._failed_model, self._error = spec.name, f"unexpected {type(exc).__name__}, see the server log"
                log.exception("model %s failed to load", spec.name)
                return
            self._files[spec.name] = ModelFile.of(detector.model.info.path)
            log.info(
                "model %s ready in %.1f s (sha256 %s)", spec.name, time.perf_counter() - started,
                self._files[spec.name].sha256[:16],
            )  # fmt: skip
        self._detectors = loaded

    def _load_or_keep(self, spec: ModelSpec, threads: int) -> Detector:
        """Load a served model; when its file fails to load, the last file that loaded under its name
        (``specks.service.last_good``: a reload after a broken swap keeps the old model serving)."""
        try:
            detector = load_detector(self.settings, threads=threads, spec=spec)
        except SpecksError as exc:
            kept = last_good.kept_copy(spec.name)
            if kept is None:
                raise
            log.error(
                "model %s failed to load from %s: %s; serving the last file that loaded under that name instead",
                spec.name, spec.path, exc.message,
            )  # fmt: skip
            return load_detector(self.settings, threads=threads, spec=ModelSpec(spec.name, str(kept)))
        last_good.keep(spec.name, spec.path)
        return detector

    def model_file(self, name: str) -> ModelFile:
        """The file a served model was loaded from: its sha256 and when (NotFoundError-free: a known name)."""
        if name not in self._files:  # an injected detector (tests, benchmarks): described when first asked
            self._files[name] = ModelFile.of(self.detectors()[name].model.info.path, loaded_now=False)
        return self._files[name]
