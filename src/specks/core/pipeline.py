"""One request's path: image bytes -> decoded pixels -> model -> Detections in original pixels.

No web framework here: the HTTP app, the CLI, the benchmark and the evaluator all call
``Detector``. Per-request options are passed down, never stored on shared objects.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from ..errors import ConfigError, InvalidFieldError
from .boxes import clip_xyxy
from .deadline import Deadline
from .imaging import DecodedImage, DecodeLimits, ImageLimits, decode_image, read_image_size
from .knobs import SlicingSettings
from .options import MODEL_DEFAULTS, ConfValue, DetectOptions, ModelDefaults
from .overlap import merge_detections
from .planning import MergePlan, ModelGeometry, PassPlan, RequestPlan, SlicePlan, plan_request, resolve_conf
from .postprocess import OutputLayout, PostprocessParams, postprocess
from .preprocess import LetterboxPlan, Preprocessing, plan_letterbox
from .preprocess import letterbox as numpy_letterbox
from .regions import RegionPlan
from .slicing import shift_detections
from .types import Detections, ImageSize

# Most input pixels per session.run when tiles are batched (bounds the batch tensor's memory).
MAX_BATCH_INPUT_PIXELS = 8 * 640 * 640
# (h, w, 3) uint8 RGB + where it lands -> (1, 3, H, W) float32 model input.
Letterbox = Callable[[npt.NDArray[np.uint8], LetterboxPlan], npt.NDArray[np.float32]]


class ModelDescription(ModelGeometry, Protocol):
    """What the pipeline and the answers need to know of a model (``models.inspection.ModelInfo`` has it)."""

    @property
    def name(self) -> str: ...
    @property
    def source_format(self) -> str: ...
    @property
    def layout(self) -> OutputLayout: ...
    @property
    def preprocessing(self) -> Preprocessing: ...
    @property
    def dynamic_batch(self) -> bool: ...


class Model(Protocol):
    """A model the pipeline can run (``models.onnx_model.OnnxModel`` is one; tests bring their own)."""

    @property
    def info(self) -> ModelDescription: ...
    def run(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]: ...


ModelT = TypeVar("ModelT", bound=Model)


class ProfileDefaults(Protocol):
    """A model profile as the pipeline uses it (``models.profiles.ModelProfile``)."""

    @property
    def model_defaults(self) -> ModelDefaults: ...
    def apply(self, base: SlicingSettings) -> SlicingSettings: ...
    def describe(self) -> dict[str, Any]: ...


class StageTimer:
    """Wall-clock milliseconds per named stage of one request.

    deadline: the request's (``specks.core.deadline``), checked as each stage starts, so that a request
              past its time stops at the next tile, pass or merge; None: no limit (tools, tests).
    """

    def __init__(self, deadline: Deadline | None = None) -> None:
        self.timings_ms: dict[str, float] = {}
        self.deadline = deadline
        self._start = time.perf_counter()

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        if self.deadline is not None:
            self.deadline.check(name)
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings_ms[name] = self.timings_ms.get(name, 0.0) + (time.perf_counter() - start) * 1000

    def add(self, name: str, elapsed_ms: float) -> None:
        """Count ``elapsed_ms`` towards a stage (an image's share of a run shared with others)."""
        self.timings_ms[name] = self.timings_ms.get(name, 0.0) + elapsed_ms

    def finish(self, *, wall_clock: bool = True) -> dict[str, float]:
        """Stages and ``total``: wall-clock since the timer started, or (``wall_clock`` False) the sum
        of the stages, for an image that waited while other images of its batch were worked on."""
        total = (time.perf_counter() - self._start) * 1000 if wall_clock else sum(self.timings_ms.values())
        return {**{k: round(v, 3) for k, v in self.timings_ms.items()}, "total": round(total, 3)}


@dataclass(frozen=True)
class Prediction:
    """Detections in pixels of the original image as displayed (after EXIF orientation).

    timing_ms:  milliseconds per stage (decode, preprocess, inference, postprocess, merge) and total.
    tile_count: tiles the image was sliced into (0: one full-image pass).
    image:      the decoded image at full resolution, as displayed, only when the caller asked to
                keep it (``keep_image``, to draw on it); None otherwise, so nothing is held.
    regions:    the regions of interest the detections were kept by (to draw them), or None.
    model:      the model that answered (its names label the class ids; every answer names it).
    visualization_jpeg_b64: the annotated picture (``specks.core.visualize``) when one was asked for.
    """

    detections: Detections
    image_size: ImageSize
    timing_ms: dict[str, float] = field(default_factory=dict)
    tile_count: int = 0
    image: DecodedImage | None = field(default=None, repr=False, compare=False)
    regions: RegionPlan | None = field(default=None, repr=False, compare=False)
    model: ModelDescription | None = field(default=None, repr=False, compare=False)
    visualization_jpeg_b64: str | None = field(default=None, repr=False, compare=False)

    def with_stage(self, stage: str, elapsed_ms: float) -> Prediction:
        """This Prediction with ``elapsed_ms`` more in ``stage`` and in the total (which stays last):
        work done for it outside the Detector (base64 text, a picture)."""
        stages = {name: value for name, value in self.timing_ms.items() if name != "total"}
        stages[stage] = round(stages.get(stage, 0.0) + elapsed_ms, 3)
        total = round(self.timing_ms.get("total", 0.0) + elapsed_ms, 3)
        return dataclasses.replace(self, timing_ms={**stages, "total": total})


class Detector(Generic[ModelT]):
    """A loaded model plus the limits it serves under; safe to share between threads.

    limits:    the image limits it decodes under (``config.Limits`` is one); None: the defaults.
    slicing:   the server's small-object defaults (SPECKS_* or built-in); a ``profile`` sets its
               fields over them, so ``self.slicing`` is what requests of this model default to.
    letterbox: how a decoded image becomes the model input; None: the NumPy reference
               (``preprocess.letterbox``). The server passes ``models.letterboxer.OrtLetterboxer``,
               which runs the same steps in ONNX Runtime (``models.letterboxer.ort_detector``).
    """

    def __init__(
        self,
        model: ModelT,
        limits: ImageLimits | None = None,
        slicing: SlicingSettings | None = None,
        *,
        profile: ProfileDefaults | None = None,
        letterbox: Letterbox | None = None,
    ) -> None:
        self.model = model
        self.limits: ImageLimits = limits or DecodeLimits()
        self.profile = profile
        self.slicing = profile.apply(slicing or SlicingSettings()) if profile else slicing or SlicingSettings()
        self.model_defaults = profile.model_defaults if profile else MODEL_DEFAULTS
        check_default_conf(model.info.names, self.model_defaults.conf)
        self.letterbox = letterbox or functools.partial(numpy_letterbox, preprocessing=model.info.preprocessing)

    def plan(self, options: DetectOptions, image: ImageSize) -> RequestPlan:
        """What a request with these options runs on an image of this size (see ``planning``)."""
        return plan_request(self.model.info, self.slicing, options, image, model_defaults=self.model_defaults)

    # -- the pipeline ------------------------------------------------------------------------
    def predict_bytes(
        self, data: bytes, options: DetectOptions, *, keep_image: bool = False, deadline: Deadline | None = None
    ) -> Prediction:
        """Detect on image file bytes; ``keep_image`` decodes at full size and returns the pixels too.

        deadline: checked as each stage starts (``StageTimer``); None: no limit.
        """
        return self._predict(data, options, StageTimer(deadline), keep_image)

    def _predict(self, data: bytes, options: DetectOptions, timer: StageTimer, keep_image: bool) -> Prediction:
        with timer.stage("decode"):
            # The pixel limit comes first: a too-large image must not be answered "too many tiles".
            size, _ = read_image_size(
                data, max_image_pixels=self.limits.max_image_pixels, max_jpeg_scans=self.limits.max_jpeg_scans
            )
        plan = self.plan(options, size)
        with timer.stage("decode"):
            # A picture to draw on needs every pixel: no reduced-scale decode then.
            image = self.decode_for_input(data, size, None if keep_image else plan.decode_input_hw)
        if plan.regions is None:
            detections = self.detect_planned(image, plan, timer)
        else:
            detections = self.detect_in_regions(image, plan, plan.regions, timer)
        kept = image if keep_image else None
        return Prediction(
            detections,
            image.size,
            timer.finish(),
            plan.tile_count,
            image=kept,
            regions=plan.regions,
            model=self.model.info,
        )

    def detect_in_regions(
        self, image: DecodedImage, plan: RequestPlan, regions: RegionPlan, timer: StageTimer
    ) -> Detections:
        """A plan made for the regions' crop: the crop (exclude regions masked) through the model, then
        the detections back in image pixels, only those the regions keep."""
        with timer.stage("preprocess"):
            work = regions.crop(image)
        found = self.detect_planned(work, plan, timer)
        with timer.stage("postprocess"):
            return regions.filter(regions.to_image_frame(found))

    def detect_planned(self, image: DecodedImage, plan: RequestPlan, timer: StageTimer) -> Detections:
        """Every pass of a plan on a decoded image, fused when there are several -> original pixels."""
        parts = [self.detect_pass(image, one_pass, plan.postprocess, timer) for one_pass in plan.passes]
        if len(parts) == 1:
            return parts[0]
        with timer.stage("merge"):
            return merged(parts, plan.merge, plan.postprocess, sources=len(parts))

    def detect_pass(
        self, image: DecodedImage, one_pass: PassPlan, params: PostprocessParams, timer: StageTimer
    ) -> Detections:
        """One pass: the image (mirrored for a flip pass) whole or in tiles -> original pixels."""
        source = mirrored(image) if one_pass.flip else image
        if one_pass.slicing is None:
            found = self.detect_decoded(source, one_pass.input_hw, params, timer)
        else:
            found = self.detect_sliced(source, one_pass.slicing, one_pass.input_hw, params, timer)
        return mirror_boxes(found, image.size.width) if one_pass.flip else found

    def decode_for_input(self, data: bytes, size: ImageSize, input_hw: tuple[int, int] | None) -> DecodedImage:
        """Decode no larger than needed: a JPEG much bigger than ``input_hw`` decodes at reduced scale.

        ``input_hw`` None decodes at full resolution (sliced inference needs every pixel).
        """
        min_size_wh = None
        if input_hw is not None:
            plan = plan_letterbox((size.width, size.height), input_hw)
            min_size_wh = power_of_two_cover((size.width, size.height), plan.content_wh) if plan.scale < 1 else None
        return decode_image(
            data,
            max_image_pixels=self.limits.max_image_pixels,
            min_size_wh=min_size_wh,
            max_jpeg_scans=self.limits.max_jpeg_scans,
        )

    def full_image_input(
        self, image: DecodedImage, input_hw: tuple[int, int]
    ) -> tuple[npt.NDArray[np.float32], LetterboxPlan]:
        """The (1, 3, H, W) model input of a full-image pass, and the plan that undoes it."""
        height, width = image.rgb.shape[:2]
        plan = self.plan_input((width, height), input_hw)
        return self.letterbox(image.rgb, plan), plan

    def plan_input(self, source_wh: tuple[int, int], input_hw: tuple[int, int]) -> LetterboxPlan:
        """Where a source image lands in this model's input: shrunk to the stride on dynamic-size
        models, placed where the model's preprocessing says."""
        info = self.model.info
        return plan_letterbox(
            source_wh,
            input_hw,
            stride=info.stride,
            minimal_padding=info.dynamic_hw,
            placement=info.preprocessing.placement,
        )

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
            found = postprocess(raw[0], info.layout, params, plan.input_hw)
            return to_original_frame(found, plan, image.size, image.scale_xy)

    def detect_sliced(
        self,
        image: DecodedImage,
        plan: SlicePlan,
        input_hw: tuple[int, int],
        params: PostprocessParams,
        timer: StageTimer,
    ) -> Detections:
        """Tiles (and optionally the whole image) through the model, merged -> original pixels."""
        parts = self._detect_tiles(image, plan, params, timer)
        if plan.runs_full_image:
            parts.append(self.detect_decoded(image, input_hw, params, timer))
        if len(parts) == 1:
            return parts[0]
        with timer.stage("merge"):
            return merged(parts, plan.merge, params)

    def _detect_tiles(
        self, image: DecodedImage, plan: SlicePlan, params: PostprocessParams, timer: StageTimer
    ) -> list[Detections]:
        """Run every tile, batched when the model allows; Detections per tile in image pixels."""
        info = self.model.info
        tiles_xyxy = plan.tiles_xyxy
        tile_plan = self.plan_input(plan.tile_wh, plan.tile_input_hw)
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
                    tile_found = postprocess(raw[slot], info.layout, params, tile_plan.input_hw)
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


def merged(parts: list[Detections], merge: MergePlan, params: PostprocessParams, *, sources: int = 1) -> Detections:
    """Detections of several tiles or passes merged as ``merge`` says, best first, at most ``max_detections``."""
    return merge_detections(
        Detections.concat(parts),
        merge.strategy,
        merge.metric,
        merge.threshold,
        sources=sources,
        class_agnostic=params.class_agnostic,
        max_keep=params.max_detections,
    )


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


def mirrored(image: DecodedImage) -> DecodedImage:
    """The image flipped left to right (a copy: the decoders' arrays are read-only and C-contiguous)."""
    return DecodedImage(np.ascontiguousarray(image.rgb[:, ::-1]), image.size, image.format)


def mirror_boxes(found: Detections, width: float) -> Detections:
    """Detections of a mirrored image back in the original frame (x -> width - x)."""
    xyxy = found.xyxy.copy()
    xyxy[:, 0], xyxy[:, 2] = width - found.xyxy[:, 2], width - found.xyxy[:, 0]
    return Detections(xyxy, found.confidence, found.class_id)


def to_original_frame(
    found: Detections, plan: LetterboxPlan, size: ImageSize, scale_xy: tuple[float, float]
) -> Detections:
    """Map Detections from model-input pixels to original-image pixels, clipped to the image.

    size: the original image as displayed; scale_xy: its pixels per decoded-array pixel
    (``DecodedImage.scale_xy``; above 1 after a reduced-scale JPEG decode).
    """
    scale_x, scale_y = scale_xy
    xyxy = plan.input_to_source(found.xyxy) * np.array([scale_x, scale_y, scale_x, scale_y], np.float32)
    xyxy = clip_xyxy(xyxy, size.width, size.height)
    return Detections(xyxy, found.confidence, found.class_id)


def check_default_conf(names: tuple[str, ...], conf: ConfValue) -> None:
    """A model profile's per-class ``conf`` names classes of this model (ConfigError when the model
    loads, not a 400 on every request that omits ``conf``)."""
    try:
        resolve_conf(names, conf)
    except InvalidFieldError as exc:
        raise ConfigError(f"model profile: {exc.message}") from exc
