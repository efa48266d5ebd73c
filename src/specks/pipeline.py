"""One request's path: image bytes -> decoded pixels -> model -> Detections in original pixels.

No web framework here: the HTTP app, the CLI, the benchmark and the evaluator all call
``Detector``. Per-request options are passed down, never stored on shared objects.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from .boxes import clip_xyxy
from .config import Limits, Settings, SlicingSettings
from .errors import InvalidFieldError, TooManyTilesError
from .imaging import DecodedImage, decode_base64, decode_image, read_image_size
from .models import load_model
from .models.letterboxer import OrtLetterboxer
from .models.names import COCO_ALIASES
from .models.onnx_model import OnnxModel
from .postprocess import PostprocessParams, postprocess
from .preprocess import LetterboxPlan, letterbox, plan_letterbox
from .schemas import DetectOptions
from .slicing import MatchMetric, MergeStrategy, merge_detections, shift_detections, tile_count, tile_grid
from .types import Detections, ImageSize

# Most input pixels per session.run when tiles are batched (bounds the batch tensor's memory).
MAX_BATCH_INPUT_PIXELS = 8 * 640 * 640
# NMS IoU of plain full-image requests (YOLOv5's detect default).
FULL_IMAGE_IOU = 0.45
# "auto" slices when the image's longer side is at least this many model inputs long.
AUTO_SLICE_MIN_INPUTS = 2.0


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
    """How one request is sliced: square tiles of ``tile_px`` image pixels, then merged.

    tile_scale: model-input pixels per image pixel inside a tile (dynamic-size models; a
                fixed-size model's scale is its input side / ``tile_px``).
    """

    tile_px: int
    tile_scale: float
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

    def __init__(
        self,
        model: OnnxModel,
        limits: Limits | None = None,
        slicing: SlicingSettings | None = None,
        *,
        use_ort_letterbox: bool = True,
    ) -> None:
        self.model = model
        self.limits = limits or Limits()
        self.slicing = slicing or SlicingSettings()
        self._class_lookup = _class_lookup(model.info.names)
        self.letterbox: Callable[[np.ndarray, LetterboxPlan], np.ndarray] = (
            OrtLetterboxer(model.threads) if use_ort_letterbox else letterbox
        )

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

    def postprocess_params(self, options: DetectOptions, *, sliced: bool = False) -> PostprocessParams:
        """Per-request filtering; unset ``iou`` / ``multi_label`` take the mode's measured defaults."""
        class_ids = None
        if options.classes is not None:
            class_ids = frozenset(self._class_id(c) for c in options.classes)
        iou = options.iou if options.iou is not None else (self.slicing.iou_threshold if sliced else FULL_IMAGE_IOU)
        multi_label = options.multi_label if options.multi_label is not None else (sliced and self.slicing.multi_label)
        return PostprocessParams(options.conf, iou, options.max_det, class_ids, multi_label)

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
        mode = {True: "on", False: "off", "auto": defaults.mode}[options.slice]
        if mode == "off":
            return None
        if mode == "auto" and max(image.width, image.height) < AUTO_SLICE_MIN_INPUTS * max(input_hw):
            return None
        tile_scale = options.tile_scale or defaults.tile_scale
        # Measured on VisDrone: dynamic-size models do best with large tiles enlarged by tile_scale
        # (one tile for a 2000x1500 photo); fixed-size ones with native tiles of their input size.
        if self.model.info.dynamic_hw:
            default_tile = defaults.max_tile_input_px / tile_scale
        else:
            default_tile = max(input_hw) / (options.tile_scale or 1.0)
        return SlicePlan(
            tile_px=options.tile or defaults.tile_px or int(round(default_tile)),
            tile_scale=tile_scale,
            overlap_ratio=defaults.overlap_ratio if options.overlap is None else options.overlap,
            full_image_pass=defaults.full_image_pass if options.full_image is None else options.full_image,
            merge=MergeStrategy(options.merge or defaults.merge),
            merge_metric=MatchMetric(options.merge_metric or defaults.merge_metric),
            merge_threshold=defaults.merge_threshold if options.merge_threshold is None else options.merge_threshold,
        )

    def tile_input_hw(self, tile_wh: tuple[int, int], plan: SlicePlan, input_hw: tuple[int, int]) -> tuple[int, int]:
        """Model input size for one tile: the fixed input, or the tile enlarged by ``tile_scale``."""
        info = self.model.info
        if not info.dynamic_hw:
            return input_hw
        limit = self.slicing.max_tile_input_px
        return tuple(  # type: ignore[return-value]
            min(limit, math.ceil(side * plan.tile_scale / info.stride) * info.stride) for side in tile_wh[::-1]
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
        with timer.stage("decode"):
            # The pixel limit comes first: a too-large image must not be answered "too many tiles".
            size, _ = read_image_size(data, max_image_pixels=self.limits.max_image_pixels)
        plan = self.slice_plan(options, size, input_hw)
        params = self.postprocess_params(options, sliced=plan is not None)
        tiles = self.check_tile_budget(size, plan) if plan else 0
        with timer.stage("decode"):
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
            min_size_wh = power_of_two_cover((size.width, size.height), plan.content_wh) if plan.scale < 1 else None
        return decode_image(data, max_image_pixels=self.limits.max_image_pixels, min_size_wh=min_size_wh)

    def full_image_input(
        self, image: DecodedImage, input_hw: tuple[int, int]
    ) -> tuple[npt.NDArray[np.float32], LetterboxPlan]:
        """The (1, 3, H, W) model input of a full-image pass, and the plan that undoes it."""
        info = self.model.info
        height, width = image.rgb.shape[:2]
        plan = plan_letterbox((width, height), input_hw, stride=info.stride, minimal_padding=info.dynamic_hw)
        return self.letterbox(image.rgb, plan), plan

    def prepared_input(self, data: bytes) -> npt.NDArray[np.float32]:
        """The model input a full-image request builds from these image bytes (to time the bare model)."""
        input_hw = self.model.info.input_hw
        image = self.decode_for_input(data, read_image_size(data)[0], input_hw)
        return self.full_image_input(image, input_hw)[0]

    def detect_decoded(
        self, image: DecodedImage, input_hw: tuple[int, int], params: PostprocessParams, timer: StageTimer
    ) -> Detections:
        """Full-image detection on a decoded image -> Detections in original pixels, best first."""
        info = self.model.info
        with timer.stage("preprocess"):
            tensor, plan = self.full_image_input(image, input_hw)
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
        parts = self._detect_tiles(image, tiles, self.tile_input_hw(_tile_wh(tiles), plan, input_hw), params, timer)
        if plan.full_image_pass and len(tiles) > 1:  # one tile already covers the whole image
            parts.append(self.detect_decoded(image, input_hw, params, timer))
        if len(parts) == 1:
            return parts[0]
        with timer.stage("merge"):
            merged = merge_detections(Detections.concat(parts), plan.merge, plan.merge_metric, plan.merge_threshold)
            return merged[: params.max_detections]

    def _detect_tiles(
        self,
        image: DecodedImage,
        tiles_xyxy: np.ndarray,
        tile_input_hw: tuple[int, int],
        params: PostprocessParams,
        timer: StageTimer,
    ) -> list[Detections]:
        """Run every tile, batched when the model allows; Detections per tile in image pixels."""
        info = self.model.info
        tile_plan = plan_letterbox(
            _tile_wh(tiles_xyxy), tile_input_hw, stride=info.stride, minimal_padding=info.dynamic_hw
        )
        in_h, in_w = tile_plan.input_hw
        batch_size = max(1, min(len(tiles_xyxy), MAX_BATCH_INPUT_PIXELS // (in_h * in_w))) if info.dynamic_batch else 1
        found: list[Detections] = []
        for start in range(0, len(tiles_xyxy), batch_size):
            chunk = tiles_xyxy[start : start + batch_size].tolist()
            with timer.stage("preprocess"):
                batch = self._letterbox_batch(image.rgb, chunk, tile_plan)
            with timer.stage("inference"):
                raw = self.model.run(batch)
            del batch  # memory: neither this input nor this output may live on through the next run
            with timer.stage("postprocess"):
                for slot, (tx1, ty1, tx2, ty2) in enumerate(chunk):
                    tile_found = postprocess(raw[slot], info.layout, params)
                    # Letterbox margins can push boxes past the tile: clip in the tile's frame, then shift.
                    xyxy = clip_xyxy(tile_plan.input_to_source(tile_found.xyxy), tx2 - tx1, ty2 - ty1)
                    found.append(
                        shift_detections(Detections(xyxy, tile_found.confidence, tile_found.class_id), (tx1, ty1))
                    )
            del raw
        return found

    def _letterbox_batch(
        self, rgb: np.ndarray, tiles_xyxy: list[list[int]], plan: LetterboxPlan
    ) -> npt.NDArray[np.float32]:
        """(B, 3, H, W) model input for a chunk of tiles; a lone tile is used as letterboxed, uncopied."""
        crops = [rgb[y1:y2, x1:x2] for x1, y1, x2, y2 in tiles_xyxy]
        if len(crops) == 1:
            return self.letterbox(crops[0], plan)
        batch = np.empty((len(crops), 3, *plan.input_hw), np.float32)
        for slot, crop in enumerate(crops):
            batch[slot] = self.letterbox(crop, plan)[0]
        return batch


def load_detector(settings: Settings, *, threads: int | None = None) -> Detector:
    """Load ``settings.model`` under the settings' limits and slicing defaults.

    threads: ONNX Runtime intra-op threads; None gives one process every core (or SPECKS_THREADS).
    """
    threads = settings.threads_for(1) if threads is None else threads
    model = load_model(settings.model, runtime=settings.runtime, threads=threads, cache_dir=settings.cache_dir)
    return Detector(model, settings.limits, settings.slicing)


def power_of_two_cover(size_wh: tuple[int, int], content_wh: tuple[int, int]) -> tuple[int, int]:
    """The image size at the largest 1/2, 1/4 or 1/8 reduction still covering ``content_wh``.

    libjpeg-turbo decodes those scales with its fastest IDCTs (measured: 1/2 beat 3/8 by
    ~1 ms on a 2000x1500 photo, resize included), so the decoder is asked for that size.
    """
    width, height = size_wh
    factor = 1
    while factor < 8 and width // (factor * 2) >= content_wh[0] and height // (factor * 2) >= content_wh[1]:
        factor *= 2
    return math.ceil(width / factor), math.ceil(height / factor)


def _tile_wh(tiles_xyxy: np.ndarray) -> tuple[int, int]:
    """Width and height shared by every tile of a grid."""
    x1, y1, x2, y2 = (int(v) for v in tiles_xyxy[0])
    return x2 - x1, y2 - y1


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
