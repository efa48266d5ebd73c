"""What the timing harnesses (``specks bench``, ``specks load``, benchmarks/) measure against and with.

- ``BareModel``, the yardstick: ``session.run`` of a plain session on the input tensors a request
  prepares, never the server's own session; ``bare_rate_per_s`` times it back to back.
- ``synthetic_photo_jpeg`` / ``image_or_synthetic``: the photo a request sends.
- ``predict_body``: the seed client's request body.
- ``percentile``: how latencies and ratios are summed up.
"""

from __future__ import annotations

import base64
import io
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import orjson

from ..config import Settings
from ..core.options import DetectOptions
from ..core.pipeline import Detector, ModelDescription
from ..errors import SpecksError

if TYPE_CHECKING:
    from ..models.onnx_model import OnnxModel


# -- the photo and the request ---------------------------------------------------------------------


def synthetic_photo_jpeg(width: int = 2000, height: int = 1500, quality: int = 90) -> bytes:
    """A photo-like JPEG (smooth shapes plus sensor noise), deterministic."""
    from PIL import Image

    rng = np.random.default_rng(42)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([xx / width * 200, yy / height * 180, (xx + yy) / (width + height) * 220], axis=2)
    for _ in range(60):  # scattered blobs, some small, as in a drone photo
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(4, 80)
        mask = (xx - cx) ** 2 + (yy - cy) ** 2 < r * r
        base[mask] = rng.uniform(0, 255, 3)
    pixels = np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def image_or_synthetic(path: Path | None, *, size_wh: tuple[int, int] = (2000, 1500)) -> bytes:
    """The image file's bytes (an unreadable path is a SpecksError), or a synthetic photo of ``size_wh``."""
    if path is None:
        return synthetic_photo_jpeg(*size_wh)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SpecksError(f"cannot read {path}: {exc.strerror}") from exc


def predict_body(image_bytes: bytes, **options: object) -> bytes:
    """The seed client's ``POST /predict`` body: ``{"image": "<base64>"}``, plus any request ``options``."""
    return orjson.dumps({"image": base64.b64encode(image_bytes).decode("ascii"), **options})


def full_image_body(image_bytes: bytes) -> bytes:
    """The seed body asking for one full-image pass at the model's input size, as ``BareModel`` runs.

    ("auto" would slice a large photo into tiles, a different workload from one bare call.)
    """
    return predict_body(image_bytes, slice=False)


# -- summing up ------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), interpolating linearly between ranks, like numpy's default."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"q must be within 0..100, got {q}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


# -- the yardstick ---------------------------------------------------------------------------------


class RecordingModel:
    """A model that keeps every input it is run on, then runs the model it wraps.

    inputs: each (B, 3, H, W) float32 tensor, in the order they ran.
    """

    def __init__(self, model: OnnxModel) -> None:
        self.model = model
        self.inputs: list[npt.NDArray[np.float32]] = []

    @property
    def info(self) -> ModelDescription:
        return self.model.info

    def run(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        self.inputs.append(batch)
        return self.model.run(batch)


class BareModel:
    """The yardstick: ``session.run`` of a plain session (ONNX Runtime's defaults, ``threads``
    intra-op threads; ``OnnxModel.plain_session``), never the server's own, on the input tensors a
    request prepares from the image. Calling it runs them all in turn.

    options: None times the one input a full-image request prepares (``full_image_body``); given,
             every tensor a request with these options runs (small-object mode: tiles, passes).
    tensors: those inputs, (B, 3, H, W) float32 each, prepared once, outside any timing.
    """

    def __init__(
        self, settings: Settings, image_bytes: bytes, threads: int, *, options: DetectOptions | None = None
    ) -> None:
        from ..service.loading import load_detector

        detector = load_detector(settings, threads=threads)
        self.info = detector.model.info
        if options is None:
            self.tensors: tuple[npt.NDArray[np.float32], ...] = (detector.prepared_input(image_bytes),)
        else:
            recorder = RecordingModel(detector.model)
            # The same Detector around the recorder (load_detector's limits, slicing and profile).
            Detector(
                recorder, detector.limits, settings.slicing, profile=detector.profile, letterbox=detector.letterbox
            ).predict_bytes(image_bytes, options)
            self.tensors = tuple(recorder.inputs)
        self.session = detector.model.plain_session(threads)
        self.threads = threads

    def __call__(self) -> None:
        for tensor in self.tensors:
            self.session.run(None, {self.info.input_name: tensor})


def bare_rate_per_s(run: Callable[[], object], seconds: float, *, min_calls: int = 3, warmup: int = 0) -> float:
    """Sequential calls of ``run`` per second, over at least ``seconds`` and ``min_calls`` calls,
    after ``warmup`` untimed ones."""
    for _ in range(warmup):
        run()
    calls, start = 0, time.perf_counter()
    while calls < min_calls or time.perf_counter() - start < seconds:
        run()
        calls += 1
    return calls / (time.perf_counter() - start)
