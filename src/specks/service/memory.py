"""How much memory one worker needs for its models, estimated before any model is loaded.

Every worker holds every served model, so a configuration's memory is (workers x this). The
estimate is made in the gunicorn master from file sizes alone (it never imports ONNX Runtime), from
figures measured with ``benchmarks/model_memory.py`` on the development machine (ONNX Runtime's CPU
provider, one thread per worker, 2000x1500 photos, the default slicing settings):

- ``WORKER_BASE_MB``: a process that imported what a worker imports, before any model (97 MiB).
- per model at rest, loaded and warmed: ``MODEL_FIXED_MB + MODEL_MB_PER_FILE_MB x`` its ONNX file in
  MiB, a line fitted through yolov5n (7.6 MiB file, +53 MiB) and YOLOv3-tiny (33.8 MiB, +119 MiB);
  yolo11n and yolo26n (10 MiB files) came out +69 / +70 against an estimate of +60.
- per model, ``MODEL_ACTIVATION_MB``: what ONNX Runtime's arena keeps after the largest default
  request (a sliced 2000x1500 photo). It depends on the architecture and input size, not on the
  file: measured +129 (yolov5n, 640 tiles), +202 (yolov5n_dynamic, one 2016x1504 pass), +298
  (yolo11n), +377 (yolo26n), +459 (YOLOv3-tiny, batches of 18 tiles). The estimate takes the
  largest for every model, so it overestimates small models.
- per model with adaptive threads (``specks.service.cores``), its wide session: the same at-rest part again
  plus ``WIDE_ACTIVATION_MB``, the arena of runs up to 1280x1280 (measured by
  ``benchmarks/ort_threads.py`` after two runs at the input size: +17 MiB YOLOX-Nano, +15 yolov5n,
  below the at-rest part alone).
- per prediction slot, the largest image allowed decoded at full size (``SPECKS_MAX_IMAGE_PIXELS``
  x 3 bytes), which sliced inference and pictures need.

Not covered: requests running concurrently on one model can grow its arena further, and inputs
larger than the measured ones (tiles up to ``SPECKS_MAX_TILE_INPUT``) need more.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..config import MiB, Settings
from ..errors import ConfigError

WORKER_BASE_MB = 97.0
MODEL_FIXED_MB = 34.0
MODEL_MB_PER_FILE_MB = 2.5
MODEL_ACTIVATION_MB = 460.0
WIDE_ACTIVATION_MB = 120.0
DECODED_BYTES_PER_PIXEL = 3


@dataclass(frozen=True)
class WorkerMemoryEstimate:
    """MiB one worker is expected to need: its base, each model (at rest + arena), its slots."""

    base_mb: float
    models_mb: Mapping[str, float]
    slots_mb: float

    @property
    def total_mb(self) -> float:
        return self.base_mb + sum(self.models_mb.values()) + self.slots_mb

    def describe(self) -> str:
        models = ", ".join(f"{name} {mb:.0f}" for name, mb in self.models_mb.items())
        return (
            f"{self.total_mb:.0f} MiB per worker: base {self.base_mb:.0f}, models ({models}), "
            f"prediction slots {self.slots_mb:.0f}"
        )


def estimate_model_mb(onnx_bytes: int, *, wide_session: bool = False) -> float:
    """MiB one loaded model costs a worker: at rest (from its file size) plus the arena allowance,
    and with ``wide_session`` (adaptive threads) a second session at rest with its smaller arena."""
    at_rest_mb = MODEL_FIXED_MB + MODEL_MB_PER_FILE_MB * onnx_bytes / MiB
    wide_mb = at_rest_mb + WIDE_ACTIVATION_MB if wide_session else 0.0
    return at_rest_mb + MODEL_ACTIVATION_MB + wide_mb


def estimate_worker_memory(settings: Settings, onnx_bytes: Mapping[str, int]) -> WorkerMemoryEstimate:
    """The estimate for a worker serving models by name -> size of the ONNX file it runs."""
    slot_mb = settings.limits.max_image_pixels * DECODED_BYTES_PER_PIXEL / MiB
    return WorkerMemoryEstimate(
        base_mb=WORKER_BASE_MB,
        models_mb={
            name: estimate_model_mb(size, wide_session=settings.wide_threads() is not None)
            for name, size in onnx_bytes.items()
        },
        slots_mb=settings.predictions_per_worker * slot_mb,
    )


def check_worker_memory(settings: Settings, estimate: WorkerMemoryEstimate) -> None:
    """ConfigError when the estimate is over SPECKS_MAX_WORKER_MEMORY_MB (0: no limit)."""
    limit_mb = settings.max_worker_memory_mb
    if limit_mb and estimate.total_mb > limit_mb:
        raise ConfigError(
            f"this configuration is estimated at {estimate.describe()}, more than SPECKS_MAX_WORKER_MEMORY_MB "
            f"({limit_mb}). Serve fewer models, lower SPECKS_PREDICTIONS_PER_WORKER or SPECKS_MAX_IMAGE_PIXELS, "
            "or raise the limit (docs/performance.md, 'Memory per model', says how the estimate is made)."
        )
