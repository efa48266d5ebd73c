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
from .config import Limits, SlicingSettings
from .errors import InvalidFieldError, TooManyTilesError
from .imaging import DecodedImage, decode_base64, decode_image, read_image_size
from .models import OnnxModel
from .models.names import COCO_ALIASES
from .postprocess import PostprocessParams, postprocess
from .preprocess import LetterboxPlan, letterbox, letterbox_into, plan_letterbox, resize_rgb
from .schemas import DetectOptions
from .slicing import MatchMetric, MergeStrategy, merge_detections, shift_detections, tile_count, tile_grid
from .types import Detections, ImageSize

# Tiles per session.run for models with a dynamic batch axis (bounds the batch tensor's memory).
MAX_TILES_PER_BATCH = 8
# "auto" slices when the image is this many tiles long on its longer side, or more.
AUTO_SLICE_MIN_TILES = 1.5


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
class SlicePlan:
    """How one request is sliced: square tiles of ``tile_px`` image pixels, then merged."""

    tile_px: int
    overlap_ratio: float
    full_image_pass: bool
    merge: MergeStrategy
    merge_metric: MatchMetric
    merge_threshold: float


@dataclass(frozen=True)
class Prediction:
    """Detections in pixels of the original image as displayed (after EXIF orientation)."""

    detections: Detections
    image_size: ImageSize
    timing_ms: dict[str, float] = field(default_factory=dict)


class Detector:
    """A loaded model plus the limits it serves under; safe to share between threads."""

    def __init__(self, model: OnnxModel, limits: Limits | None = None, slicing: SlicingSettings | None = None) -> None:
        self.model = model
        self.limits = limits or Limits()
        self.slicing = slicing or SlicingSettings()
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

    def slice_plan(self, options: DetectOptions, image: ImageSize, input_hw: tuple[int, int]) -> SlicePlan | None:
        """Resolve the request's slicing options against the server defaults; None: no slicing."""
        defaults = self.slicing
        tile_px = options.tile or defaults.tile_px or max(input_hw)
        mode = {True: "on", False: "off"}.get(options.slice, options.slice) if options.slice != "auto" else None
        mode = mode or defaults.mode
        if mode == "off":
            return None
        if mode == "auto" and max(image.width, image.height) < AUTO_SLICE_MIN_TILES * tile_px:
            return None
        return SlicePlan(
            tile_px=tile_px,
            overlap_ratio=defaults.overlap_ratio if options.overlap is None else options.overlap,
            full_image_pass=defaults.full_image_pass if options.full_image is None else options.full_image,
            merge=MergeStrategy(options.merge or defaults.merge),
            merge_metric=MatchMetric(options.merge_metric or defaults.merge_metric),
            merge_threshold=defaults.merge_threshold if options.merge_threshold is None else options.merge_threshold,
        )

    def check_tile_budget(self, image: ImageSize, plan: SlicePlan) -> int:
        tiles = tile_count((image.width, image.height), plan.tile_px, plan.overlap_ratio)
        if tiles > self.slicing.max_tiles:
            raise TooManyTilesError(
                f"slicing this {image.width}x{image.height} image into {plan.tile_px}px tiles with "
                f"{plan.overlap_ratio:.2f} overlap needs {tiles} tiles; the limit is {self.slicing.max_tiles} "
                "(SPECKS_MAX_TILES). Use a larger 'tile', a smaller 'overlap', or a smaller image."
            )
        return tiles

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
            size, _ = read_image_size(data)
            plan = self.slice_plan(options, size, input_hw)
            tiles = self.check_tile_budget(size, plan) if plan else 0
            image = self.decode_for_input(data, size, None if plan else input_hw)
        if plan is None:
            detections = self.detect_decoded(image, input_hw, params, timer)
        else:
            detections = self.detect_sliced(image, plan, input_hw, params, timer)
        timing_ms = timer.finish()
        timing_ms["tiles"] = tiles
        return Prediction(detections, image.size, timing_ms)

    def decode_for_input(self, data: bytes, size: ImageSize, input_hw: tuple[int, int] | None) -> DecodedImage:
        """Decode no larger than needed: a JPEG much bigger than ``input_hw`` decodes at reduced scale.

        ``input_hw`` None decodes at full resolution (sliced inference needs every pixel).
        """
        min_size_wh = None
        if input_hw is not None:
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


    def detect_sliced(
        self,
        image: DecodedImage,
        plan: SlicePlan,
        input_hw: tuple[int, int],
        params: PostprocessParams,
        timer: StageTimer,
    ) -> Detections:
        """Tiles (and optionally the whole image) through the model, merged -> original pixels."""
        tiles = tile_grid((image.size.width, image.size.height), plan.tile_px, plan.overlap_ratio)
        parts = self._detect_tiles(image, tiles, input_hw, params, timer)
        if plan.full_image_pass:
            with timer.stage("preprocess"):
                small = downscaled(image, input_hw)
            parts.append(self.detect_decoded(small, input_hw, params, timer))
        with timer.stage("merge"):
            merged = merge_detections(Detections.concat(parts), plan.merge, plan.merge_metric, plan.merge_threshold)
            return merged[: params.max_detections]

    def _detect_tiles(
        self,
        image: DecodedImage,
        tiles_xyxy: np.ndarray,
        input_hw: tuple[int, int],
        params: PostprocessParams,
        timer: StageTimer,
    ) -> list[Detections]:
        """Run every tile, batched when the model allows; Detections per tile in image pixels."""
        info = self.model.info
        x1, y1, x2, y2 = (int(v) for v in tiles_xyxy[0])
        tile_plan = plan_letterbox((x2 - x1, y2 - y1), input_hw, stride=info.stride, minimal_padding=info.dynamic_hw)
        batch_size = MAX_TILES_PER_BATCH if info.dynamic_batch else 1
        found: list[Detections] = []
        for start in range(0, len(tiles_xyxy), batch_size):
            chunk = tiles_xyxy[start : start + batch_size]
            with timer.stage("preprocess"):
                batch = np.empty((len(chunk), 3, *tile_plan.input_hw), np.float32)
                for slot, (tx1, ty1, tx2, ty2) in enumerate(chunk.tolist()):
                    letterbox_into(image.rgb[ty1:ty2, tx1:tx2], tile_plan, batch[slot])
            with timer.stage("inference"):
                raw = self.model.run(batch)
            with timer.stage("postprocess"):
                for slot, (tx1, ty1, _, _) in enumerate(chunk.tolist()):
                    tile_found = postprocess(raw[slot], info.layout, params)
                    tile_found = Detections(tile_plan.input_to_source(tile_found.xyxy), tile_found.confidence,
                                            tile_found.class_id)
                    found.append(shift_detections(tile_found, (tx1, ty1)))
        return found


def downscaled(image: DecodedImage, input_hw: tuple[int, int]) -> DecodedImage:
    """A copy of a decoded image no larger than its letterboxed content at ``input_hw``."""
    height, width = image.rgb.shape[:2]
    plan = plan_letterbox((width, height), input_hw)
    if plan.scale >= 1:
        return image
    return DecodedImage(resize_rgb(image.rgb, plan.content_wh), image.size, image.format)


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
