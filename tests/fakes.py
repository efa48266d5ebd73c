"""Test doubles shared by the tests: a model that answers without weights, and a Detector around it.

``FakeInfo`` is what planning, the encoders and the service read of a model (its geometry, names
and runtime); ``FakeModel`` holds one. ``FakeDetector`` answers every image with one car, or raises
the error it was given, and records what it was asked (images, options, deadlines) and, given
metrics, the images-in-flight gauge while it ran. Its Predictions name their model, as a real
Detector's do, so every encoder can answer them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from specks.core.deadline import Deadline
from specks.core.imaging import DecodedImage
from specks.core.knobs import SlicingSettings
from specks.core.options import MODEL_DEFAULTS, DetectOptions
from specks.core.pipeline import Prediction
from specks.core.postprocess import OutputLayout
from specks.core.types import Detections, ImageSize
from specks.service.metrics import Metrics

FAKE_IMAGE_SIZE = ImageSize(64, 48)
FAKE_TIMING_MS = {"decode": 1.0, "inference": 2.0, "total": 3.5}


@dataclass(frozen=True)
class FakeInfo:
    """What planning (``planning.ModelGeometry``), encoders and the service read of a model."""

    names: tuple[str, ...] = ("person", "car")
    name: str = "fake.onnx"
    source_format: str = "onnx"
    input_hw: tuple[int, int] = (640, 640)
    layout: OutputLayout = OutputLayout.YOLOV5
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    dynamic_hw: bool = False
    stride: int = 32

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "names": list(self.names)}


@dataclass
class FakeModel:
    info: FakeInfo = field(default_factory=FakeInfo)


class FakeDetector:
    """Answers every image with one car (class 1, 0.9) at (1, 2, 30, 40), in 3 tiles.

    error: raised by every prediction instead (after recording it), like a broken session.
    """

    def __init__(
        self,
        metrics: Metrics | None = None,
        slicing: SlicingSettings | None = None,
        *,
        error: Exception | None = None,
    ) -> None:
        self.model = FakeModel()
        self.error = error
        self.slicing = slicing or SlicingSettings()
        self.model_defaults = MODEL_DEFAULTS
        self.profile = None
        self.metrics = metrics
        self.calls: list[tuple[Any, DetectOptions]] = []
        self.in_flight_seen: list[float] = []
        self.deadlines: list[Deadline | None] = []

    def predict_bytes(
        self, data: bytes, options: DetectOptions, *, keep_image: bool = False, deadline: Deadline | None = None
    ) -> Prediction:
        self.deadlines.append(deadline)
        self.calls.append((data, options))
        if self.metrics is not None:
            self.in_flight_seen.append(self.metrics.images_in_flight.labels(route="/r")._value.get())
        if self.error is not None:
            raise self.error
        found = Detections.from_arrays([[1, 2, 30, 40]], [0.9], [1])
        pixels = DecodedImage(np.full((48, 64, 3), 128, np.uint8), FAKE_IMAGE_SIZE, "PNG") if keep_image else None
        return Prediction(found, FAKE_IMAGE_SIZE, dict(FAKE_TIMING_MS), 3, image=pixels, model=self.model.info)
