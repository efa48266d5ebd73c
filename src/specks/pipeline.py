"""One request's path: image bytes -> decoded pixels -> model -> Detections in original pixels.

No web framework here: the HTTP app, the CLI, the benchmark and the evaluator all call
``Detector``. Per-request options are passed down, never stored on shared objects.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from .boxes import clip_xyxy
from .config import Limits
from .errors import InvalidFieldError
from .imaging import DecodedImage, decode_base64, decode_image
from .models import OnnxModel
from .models.names import COCO_ALIASES
from .postprocess import PostprocessParams, postprocess
from .preprocess import LetterboxPlan, letterbox, plan_letterbox
from .schemas import DetectOptions
from .types import Detections, ImageSize


class StageTimer:
    """Wall-clock milliseconds per named stage of one request."""

    def __init__(self) -> None:
        self.timings_ms: dict[str, float] = {}
        self._start = time.perf_counter()

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings_ms[name] = self.timings_ms.get(name, 0.0) + (time.perf_counter() - start) * 1000

    def finish(self) -> dict[str, float]:
        total = (time.perf_counter() - self._start) * 1000
        return {**{k: round(v, 3) for k, v in self.timings_ms.items()}, "total": round(total, 3)}


@dataclass(frozen=True)
class Prediction:
    """Detections in pixels of the original image as displayed (after EXIF orientation)."""

    detections: Detections
    image_size: ImageSize
    timing_ms: dict[str, float] = field(default_factory=dict)


class Detector:
    """A loaded model plus the limits it serves under; safe to share between threads."""

    def __init__(self, model: OnnxModel, limits: Limits | None = None) -> None:
        self.model = model
        self.limits = limits or Limits()
        self._class_lookup = _class_lookup(model.info.names)

    # -- option handling -------------------------------------------------------------------
    def input_hw(self, imgsz: int | None) -> tuple[int, int]:
        """Model input size for a request: the model's own, or ``imgsz`` on dynamic models."""
        info = self.model.info
        if imgsz is None:
            return info.input_hw
        if not info.dynamic_hw:
            if (imgsz, imgsz) == info.input_hw:
                return info.input_hw
            raise InvalidFieldError(
                f"'imgsz': this model has a fixed input size of {info.input_hw[1]}x{info.input_hw[0]}; "
                "imgsz only applies to models exported with dynamic height and width",
                field="imgsz",
            )
        side = math.ceil(imgsz / info.stride) * info.stride
        return side, side

    def postprocess_params(self, options: DetectOptions) -> PostprocessParams:
        class_ids = None
        if options.classes is not None:
            class_ids = frozenset(self._class_id(c) for c in options.classes)
        return PostprocessParams(options.conf, options.iou, options.max_det, class_ids)

    def _class_id(self, selector: int | str) -> int:
        if isinstance(selector, int):
            if 0 <= selector < self.model.info.num_classes:
                return selector
            raise InvalidFieldError(
                f"'classes': class id {selector} is out of range 0..{self.model.info.num_classes - 1}", field="classes"
            )
        key = selector.strip().lower()
        key = COCO_ALIASES.get(key, key)
        if key in self._class_lookup:
            return self._class_lookup[key]
        raise InvalidFieldError(
            f"'classes': unknown class name {selector!r}; this model knows e.g. "
            f"{', '.join(self.model.info.names[:8])} (see `specks models` for all)",
            field="classes",
        )

    # -- the pipeline ------------------------------------------------------------------------
    def predict_base64(self, image_b64: str, options: DetectOptions) -> Prediction:
        timer = StageTimer()
        with timer.stage("decode"):
            data = decode_base64(image_b64)
        return self._predict(data, options, timer)

    def predict_bytes(self, data: bytes, options: DetectOptions) -> Prediction:
        return self._predict(data, options, StageTimer())

    def _predict(self, data: bytes, options: DetectOptions, timer: StageTimer) -> Prediction:
        input_hw = self.input_hw(options.imgsz)
        params = self.postprocess_params(options)
        with timer.stage("decode"):
            image = self.decode_for_input(data, input_hw)
        detections = self.detect_decoded(image, input_hw, params, timer)
        return Prediction(detections, image.size, timer.finish())

    def decode_for_input(self, data: bytes, input_hw: tuple[int, int]) -> DecodedImage:
        """Decode no larger than needed: a JPEG much bigger than the input decodes at reduced scale."""
        from .imaging import read_image_size

        size, _ = read_image_size(data)
        plan = plan_letterbox((size.width, size.height), input_hw)
        min_size_wh = plan.content_wh if plan.scale < 1 else None
        return decode_image(data, max_image_pixels=self.limits.max_image_pixels, min_size_wh=min_size_wh)

    def detect_decoded(
        self, image: DecodedImage, input_hw: tuple[int, int], params: PostprocessParams, timer: StageTimer
    ) -> Detections:
        """Full-image detection on a decoded image -> Detections in original pixels, best first."""
        info = self.model.info
        with timer.stage("preprocess"):
            height, width = image.rgb.shape[:2]
            plan = plan_letterbox((width, height), input_hw, stride=info.stride, minimal_padding=info.dynamic_hw)
            tensor = letterbox(image.rgb, plan)
        with timer.stage("inference"):
            raw = self.model.run(tensor)
        with timer.stage("postprocess"):
            found = postprocess(raw[0], info.layout, params)
            return to_original_frame(found, plan, image)


def to_original_frame(found: Detections, plan: LetterboxPlan, image: DecodedImage) -> Detections:
    """Map Detections from model-input pixels to original-image pixels, clipped to the image."""
    scale_x, scale_y = image.scale_xy
    xyxy = plan.input_to_source(found.xyxy) * np.array([scale_x, scale_y, scale_x, scale_y], np.float32)
    xyxy = clip_xyxy(xyxy, image.size.width, image.size.height)
    return Detections(xyxy, found.confidence, found.class_id)


def _class_lookup(names: tuple[str, ...]) -> dict[str, int]:
    lookup: dict[str, int] = {}
    for index, name in enumerate(names):
        lookup.setdefault(name.lower(), index)
    return lookup
