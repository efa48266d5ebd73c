"""Request planning: what one request will run, decided before any pixel is touched.

``plan_request`` is a pure function of the model's geometry, the server's slicing defaults, the
request's options and the image size read from its header. It resolves the model input size,
the tile plan (or none), the postprocess thresholds and the class filter, and refuses a request
that would cost too much: more tiles, or more model-input pixels, than the server allows, counted
over every pass, tile, flip and full-image pass. ``pipeline.Detector`` then only executes the
plan, so every decision here is testable without a model file.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from ..errors import InvalidFieldError, TooManyInputPixelsError, TooManyTilesError, shown
from .knobs import CONF_FOR_THE_REST, DEFAULT_CONF, DEFAULT_IOU, SlicingSettings
from .names import COCO_ALIASES
from .options import MODEL_DEFAULTS, ConfValue, DetectOptions, ModelDefaults
from .overlap import MatchMetric, MergeStrategy
from .postprocess import PostprocessParams
from .regions import RegionPlan, RegionSet, plan_regions, stride_aligned_px
from .slicing import SliceMode, tile_count, tile_grid
from .types import ImageSize

# "auto" slices when the image's longer side is at least this many model inputs long.
AUTO_SLICE_MIN_INPUTS = 2.0


class ModelGeometry(Protocol):
    """What planning needs to know of a model (``models.inspection.ModelInfo`` has it)."""

    @property
    def input_hw(self) -> tuple[int, int]: ...
    @property
    def dynamic_hw(self) -> bool: ...
    @property
    def stride(self) -> int: ...
    @property
    def names(self) -> tuple[str, ...]: ...


@dataclass(frozen=True)
class MergePlan:
    """How results of tiles and passes merge: strategy, overlap measure and threshold."""

    strategy: MergeStrategy
    metric: MatchMetric
    threshold: float


@dataclass(frozen=True)
class SlicePlan:
    """How one request is sliced: square tiles of ``tile_px`` image pixels, then merged.

    tiles_xyxy:     (N, 4) int32 tiles x1, y1, x2, y2 in image pixels, row by row.
    tile_input_hw:  model input height and width each tile is letterboxed to.
    tile_scale:     model-input pixels per image pixel inside a tile (dynamic-size models; a
                    fixed-size model's scale is its input side / ``tile_px``).
    """

    tile_px: int
    tile_scale: float
    overlap_ratio: float
    full_image_pass: bool
    merge: MergePlan
    tiles_xyxy: npt.NDArray[np.int32] = field(compare=False, repr=False)
    tile_input_hw: tuple[int, int]

    @property
    def tile_count(self) -> int:
        return len(self.tiles_xyxy)

    @property
    def tile_wh(self) -> tuple[int, int]:
        """Width and height shared by every tile of the grid."""
        x1, y1, x2, y2 = (int(v) for v in self.tiles_xyxy[0])
        return x2 - x1, y2 - y1

    @property
    def runs_full_image(self) -> bool:
        """A full-image pass is added only when several tiles do not already cover the whole image."""
        return self.full_image_pass and self.tile_count > 1


@dataclass(frozen=True)
class PassPlan:
    """One pass of a request through the model: at an input scale, mirrored or not, whole or in tiles.

    input_hw: model input of a full-image pass (also the full-image pass of a sliced one).
    slicing:  the tile plan, or None for one full-image pass.
    """

    scale: float
    flip: bool
    input_hw: tuple[int, int]
    slicing: SlicePlan | None

    @property
    def tile_count(self) -> int:
        return self.slicing.tile_count if self.slicing else 0

    @property
    def run_count(self) -> int:
        """Model runs of this pass: its tiles and its full-image pass, or one full-image run."""
        if self.slicing is None:
            return 1
        return self.slicing.tile_count + int(self.slicing.runs_full_image)

    @property
    def input_pixels(self) -> int:
        """Model-input pixels of every run of this pass: each run's planned input height x width.

        A dynamic-size model may trim a full-image input's padding to the stride, so this is an
        upper bound there; tiles are planned at their letterboxed size already.
        """
        full_image_pixels = self.input_hw[0] * self.input_hw[1]
        if self.slicing is None:
            return full_image_pixels
        tile_h, tile_w = self.slicing.tile_input_hw
        runs_full_image = full_image_pixels if self.slicing.runs_full_image else 0
        return self.slicing.tile_count * tile_h * tile_w + runs_full_image


@dataclass(frozen=True)
class RequestPlan:
    """Everything one request will run: its passes (one, unless scales or flip add some), filtering, merging."""

    passes: tuple[PassPlan, ...]
    postprocess: PostprocessParams
    merge: MergePlan
    regions: RegionPlan | None = None

    @property
    def input_hw(self) -> tuple[int, int]:
        return self.passes[0].input_hw

    @property
    def slicing(self) -> SlicePlan | None:
        """The first pass's tile plan (every pass is sliced when it is)."""
        return self.passes[0].slicing

    @property
    def tile_count(self) -> int:
        """Tiles of every pass together (0: no pass was sliced)."""
        return sum(p.tile_count for p in self.passes)

    @property
    def input_pixels(self) -> int:
        """Model-input pixels of every run of every pass (what ``max_input_pixels_per_request`` bounds)."""
        return sum(p.input_pixels for p in self.passes)

    @property
    def decode_input_hw(self) -> tuple[int, int] | None:
        """The largest full-image input the image must cover when decoded; None: decode every pixel."""
        if any(p.slicing is not None for p in self.passes) or (self.regions is not None and self.regions.crops):
            return None
        return max((p.input_hw for p in self.passes), key=lambda hw: hw[0] * hw[1])


def plan_request(
    model: ModelGeometry,
    defaults: SlicingSettings,
    options: DetectOptions,
    image: ImageSize,
    *,
    model_defaults: ModelDefaults = MODEL_DEFAULTS,
) -> RequestPlan:
    """Resolve a request's options against the model and the server defaults (raises on bad values).

    ``model_defaults``: what the model's profile sets for a request that omits it (conf, regions).
    With regions (the request's, else its model profile's), the passes run on
    the part of the image they need (``RegionPlan.crop_xyxy``), but whether to slice is still
    decided on the whole image: a sliced request keeps its tile scale, so its answer is the whole
    image's inside the regions, faster; a full-image pass gives the model input to the crop, so the
    objects in it get more input pixels in the same time. The request's cost is checked over all
    its passes: its tiles before any tile grid is made (``check_tile_budget``), then its
    model-input pixels (``check_input_pixel_budget``).
    """
    base_hw = resolve_input_hw(model, options.imgsz)
    sliced = wants_slicing(defaults, options, image, base_hw)
    chosen = chosen_regions(options, model_defaults.regions)
    regions = (
        plan_regions(chosen, image, align_px=region_alignment_px(model, defaults, options, sliced))
        if chosen.regions
        else None
    )
    if regions is not None:
        image = regions.crop_size
    # A repeated scale would only repeat a pass.
    scales = tuple(dict.fromkeys(options.scales if options.scales is not None else defaults.scales))
    flip = defaults.flip if options.flip is None else options.flip
    layouts = [tile_layout(model, defaults, options, base_hw, s) for s in scales if runs_sliced(model, s, sliced)]
    check_tile_budget(layouts, image, scales, flip=flip, max_tiles=defaults.max_tiles)
    passes = []
    for scale in scales:
        plan = plan_pass(model, defaults, options, image, base_hw, scale=scale, sliced=sliced)
        passes.append(plan)
        if flip:
            passes.append(PassPlan(plan.scale, True, plan.input_hw, plan.slicing))
    check_input_pixel_budget(model, passes, defaults, image)
    params = postprocess_params(model.names, defaults, options, sliced=sliced, default_conf=model_defaults.conf)
    return RequestPlan(tuple(passes), params, merge_plan(defaults, options), regions)


def region_alignment_px(model: ModelGeometry, defaults: SlicingSettings, options: DetectOptions, sliced: bool) -> int:
    """Image pixels a region's crop is aligned to: a whole number of strides at the tile scale when
    sliced (so the crop meets the whole image's convolution grid), else 1."""
    if not sliced:
        return 1
    tile_scale = (options.tile_scale or defaults.tile_scale) if model.dynamic_hw else 1.0
    return stride_aligned_px(model.stride, tile_scale)


def chosen_regions(options: DetectOptions, defaults: RegionSet) -> RegionSet:
    """The request's regions and anchor, each falling back to ``defaults`` when the request omits it."""
    regions = options.region_list()
    return RegionSet(
        defaults.regions if regions is None else regions,
        options.region_anchor or defaults.anchor,
    )


def merge_plan(defaults: SlicingSettings, options: DetectOptions) -> MergePlan:
    return MergePlan(
        strategy=options.merge or defaults.merge,
        metric=options.merge_metric or defaults.merge_metric,
        threshold=defaults.merge_threshold if options.merge_threshold is None else options.merge_threshold,
    )


def wants_slicing(
    defaults: SlicingSettings, options: DetectOptions, image: ImageSize, input_hw: tuple[int, int]
) -> bool:
    """The request's slice mode resolved: on, off, or auto (the image at least twice the model input)."""
    mode = defaults.mode if options.slice is None else options.slice
    if mode is SliceMode.AUTO:
        return max(image.width, image.height) >= AUTO_SLICE_MIN_INPUTS * max(input_hw)
    return mode is SliceMode.ON


def plan_pass(
    model: ModelGeometry,
    defaults: SlicingSettings,
    options: DetectOptions,
    image: ImageSize,
    base_hw: tuple[int, int],
    *,
    scale: float,
    sliced: bool,
) -> PassPlan:
    """One unmirrored pass at ``scale`` x the request's own input (or tile) scale.

    A full-image pass on a dynamic-size model enlarges its input; a fixed-size model can only
    see more pixels through smaller tiles, so its enlarged passes are sliced.
    """
    if not runs_sliced(model, scale, sliced):
        input_hw = base_hw if scale == 1.0 else scaled_input_hw(model, base_hw, scale, defaults.max_tile_input_px)
        return PassPlan(scale, False, input_hw, None)
    return PassPlan(scale, False, base_hw, plan_slicing(model, defaults, options, image, base_hw, scale=scale))


def runs_sliced(model: ModelGeometry, scale: float, sliced: bool) -> bool:
    """Whether a pass at ``scale`` runs in tiles: the request is sliced, or a fixed-size model must see more pixels."""
    return sliced or (scale != 1.0 and not model.dynamic_hw)


def scaled_input_hw(
    model: ModelGeometry, input_hw: tuple[int, int], scale: float, max_input_px: int
) -> tuple[int, int]:
    """``input_hw`` times ``scale``, rounded up to the stride, capped at ``max_input_px``."""
    height, width = (min(max_input_px, math.ceil(side * scale / model.stride) * model.stride) for side in input_hw)
    return height, width


def resolve_input_hw(model: ModelGeometry, imgsz: int | None) -> tuple[int, int]:
    """Model input size for a request: the model's own, or ``imgsz`` (rounded up to the stride) on dynamic models."""
    if imgsz is None:
        return model.input_hw
    if not model.dynamic_hw:
        if (imgsz, imgsz) == model.input_hw:
            return model.input_hw
        raise InvalidFieldError(
            f"'imgsz': this model has a fixed input size of {model.input_hw[1]}x{model.input_hw[0]}; "
            "imgsz only applies to models exported with dynamic height and width",
            field="imgsz",
        )
    side = math.ceil(imgsz / model.stride) * model.stride
    return side, side


def postprocess_params(
    names: tuple[str, ...],
    defaults: SlicingSettings,
    options: DetectOptions,
    *,
    sliced: bool,
    default_conf: ConfValue = DEFAULT_CONF,
) -> PostprocessParams:
    """Per-request filtering; unset ``iou`` / ``multi_label`` take the mode's measured defaults."""
    iou = options.iou if options.iou is not None else (defaults.iou_threshold if sliced else DEFAULT_IOU)
    multi_label = options.multi_label if options.multi_label is not None else (sliced and defaults.multi_label)
    class_ids = resolve_class_ids(names, options.classes) if options.classes is not None else None
    soft_nms = defaults.soft_nms if options.soft_nms is None else options.soft_nms
    conf_floor, class_conf = resolve_conf(names, default_conf if options.conf is None else options.conf)
    return PostprocessParams(
        conf_floor,
        iou,
        options.max_det,
        class_ids,
        multi_label,
        soft_nms,
        class_agnostic=options.agnostic_nms,
        class_conf=class_conf,
    )


def resolve_conf(names: tuple[str, ...], conf: ConfValue) -> tuple[float, tuple[float, ...] | None]:
    """A request's ``conf`` -> (the lowest threshold, per-class thresholds by class id or None).

    ``conf`` is one number for every class, or thresholds by class name or id with ``"*"`` for the
    rest (absent: the default ``conf``). An unknown class is InvalidFieldError naming the model's.
    """
    if not isinstance(conf, Mapping):
        return conf, None
    rest = conf.get(CONF_FOR_THE_REST, DEFAULT_CONF)
    per_class = [rest] * len(names)
    for key, value in conf.items():
        if key == CONF_FOR_THE_REST:
            continue
        selector: int | str = int(key) if key.strip().isdigit() else key
        (class_id,) = resolve_class_ids(names, [selector], field="conf")
        per_class[class_id] = value
    return min(per_class, default=rest), tuple(per_class)


def resolve_class_ids(
    names: tuple[str, ...], selectors: Sequence[int | str], *, field: str = "classes"
) -> frozenset[int]:
    """Class ids for names (any case, Darknet spellings too) or ids; an unknown one is InvalidFieldError
    on ``field`` (the request field that named it)."""
    lookup = _class_lookup(names)
    ids = set()
    for selector in selectors:
        if isinstance(selector, int):
            if not 0 <= selector < len(names):
                raise InvalidFieldError(
                    f"'{field}': class id {selector} is out of range 0..{len(names) - 1}", field=field
                )
            ids.add(selector)
            continue
        key = selector.strip().lower()
        key = COCO_ALIASES.get(key, key)
        if key not in lookup:
            raise InvalidFieldError(
                f"'{field}': unknown class name {shown(selector)}; this model knows e.g. "
                f"{', '.join(names[:8])} (see `specks models` for all)",
                field=field,
            )
        ids.add(lookup[key])
    return frozenset(ids)


@functools.lru_cache(maxsize=32)
def _class_lookup(names: tuple[str, ...]) -> dict[str, int]:
    lookup: dict[str, int] = {}
    for index, name in enumerate(names):
        lookup.setdefault(name.lower(), index)
    return lookup


@dataclass(frozen=True)
class TileLayout:
    """A pass's tiles before their grid is made: side in image pixels, model-input scale, overlap."""

    tile_px: int
    tile_scale: float
    overlap_ratio: float


def tile_layout(
    model: ModelGeometry, defaults: SlicingSettings, options: DetectOptions, input_hw: tuple[int, int], scale: float
) -> TileLayout:
    """The tiles of a pass at ``scale`` x the request's tile scale."""
    tile_scale = (options.tile_scale or defaults.tile_scale) * scale
    # Measured on VisDrone: dynamic-size models do best with large native tiles (one tile for a
    # 2000x1500 photo); fixed-size ones with native tiles of their input size.
    if model.dynamic_hw:
        default_tile = defaults.max_tile_input_px / tile_scale
    else:
        default_tile = max(input_hw) / ((options.tile_scale or 1.0) * scale)
    tile_px = options.tile or defaults.tile_px or int(round(default_tile))
    overlap_ratio = defaults.overlap_ratio if options.overlap is None else options.overlap
    return TileLayout(tile_px, tile_scale, overlap_ratio)


def plan_slicing(
    model: ModelGeometry,
    defaults: SlicingSettings,
    options: DetectOptions,
    image: ImageSize,
    input_hw: tuple[int, int],
    *,
    scale: float = 1.0,
) -> SlicePlan:
    """The request's tile plan at ``scale`` x its tile scale (its tile budget already checked)."""
    layout = tile_layout(model, defaults, options, input_hw, scale)
    tiles_xyxy = tile_grid((image.width, image.height), layout.tile_px, layout.overlap_ratio)
    first = tiles_xyxy[0]
    tile_wh = (int(first[2] - first[0]), int(first[3] - first[1]))
    return SlicePlan(
        tile_px=layout.tile_px,
        tile_scale=layout.tile_scale,
        overlap_ratio=layout.overlap_ratio,
        full_image_pass=defaults.full_image_pass if options.full_image is None else options.full_image,
        merge=merge_plan(defaults, options),
        tiles_xyxy=tiles_xyxy,
        tile_input_hw=tile_input_hw(model, tile_wh, layout.tile_scale, input_hw, defaults.max_tile_input_px),
    )


def tile_input_hw(
    model: ModelGeometry,
    tile_wh: tuple[int, int],
    tile_scale: float,
    input_hw: tuple[int, int],
    max_tile_input_px: int,
) -> tuple[int, int]:
    """Model input size for one tile: the fixed input, or the tile enlarged by ``tile_scale`` (stride multiple)."""
    if not model.dynamic_hw:
        return input_hw
    return scaled_input_hw(model, (tile_wh[1], tile_wh[0]), tile_scale, max_tile_input_px)


def check_tile_budget(
    layouts: Sequence[TileLayout], image: ImageSize, scales: Sequence[float], *, flip: bool, max_tiles: int
) -> int:
    """Tiles of every sliced pass together (``layouts``; a flip runs each pass's tiles again), counted
    before any grid is made, or TooManyTilesError (413) past ``max_tiles``."""
    tiles_per_flip = sum(tile_count((image.width, image.height), t.tile_px, t.overlap_ratio) for t in layouts)
    tiles = tiles_per_flip * (2 if flip else 1)
    if tiles > max_tiles:
        sides = ", ".join(dict.fromkeys(str(t.tile_px) for t in layouts))
        levers = what_to_lower(several_scales=len(scales) > 1, flip=flip, sliced=True, full_image_runs=False)
        raise TooManyTilesError(
            f"slicing {describe_passes(image, scales, flip)} into {sides}px tiles with "
            f"{layouts[0].overlap_ratio:.2f} overlap needs {tiles} tiles; the limit is {max_tiles} tiles "
            f"per request, every pass together (SPECKS_MAX_TILES). Use {levers}."
        )
    return tiles


def check_input_pixel_budget(
    model: ModelGeometry, passes: Sequence[PassPlan], defaults: SlicingSettings, image: ImageSize
) -> int:
    """Model-input pixels of every run of every pass together, or TooManyInputPixelsError (413) past
    ``max_input_pixels_per_request``."""
    input_pixels = sum(p.input_pixels for p in passes)
    if input_pixels > defaults.max_input_pixels_per_request:
        runs = sum(p.run_count for p in passes)
        scales = tuple(dict.fromkeys(p.scale for p in passes))
        flip = any(p.flip for p in passes)
        levers = what_to_lower(
            several_scales=len(scales) > 1,
            flip=flip,
            sliced=any(p.slicing is not None for p in passes),
            full_image_runs=any(p.slicing is None or p.slicing.runs_full_image for p in passes),
            dynamic_hw=model.dynamic_hw,
        )
        raise TooManyInputPixelsError(
            f"{describe_passes(image, scales, flip)} needs {runs} model run{'s' if runs > 1 else ''} of "
            f"{input_pixels / 1e6:.1f} megapixels of model input in all; the limit is "
            f"{defaults.max_input_pixels_per_request / 1e6:.1f} megapixels per request, every tile and pass together "
            f"(SPECKS_MAX_INPUT_PIXELS). "
            + (f"Use {levers}." if levers else "No option of this request lowers it: the server's limit is too low.")
        )
    return input_pixels


def describe_passes(image: ImageSize, scales: Sequence[float], flip: bool) -> str:
    """A request's passes in words: 'this 3200x3200 image in 8 passes (scales 1, 2, 3, 4, each also mirrored)'."""
    words = f"this {image.width}x{image.height} image"
    passes = len(scales) * (2 if flip else 1)
    if passes == 1:
        return words
    named = f"scale{'s' if len(scales) > 1 else ''} {', '.join(f'{scale:g}' for scale in scales)}"
    mirrored = ", each also mirrored" if flip else ""
    return f"{words} in {passes} passes ({named}{mirrored})"


def what_to_lower(
    *, several_scales: bool, flip: bool, sliced: bool, full_image_runs: bool, dynamic_hw: bool = False
) -> str:
    """The request options that would lower its cost, as the end of a sentence ("fewer 'scales', ... or ..."), or
    "" when none would (one full-image run of a fixed-size model)."""
    levers = []
    if several_scales:
        levers.append("fewer 'scales'")
    if flip:
        levers.append("'flip': false")
    if sliced:
        levers += ["a larger 'tile'", "a smaller 'tile_scale'", "a smaller 'overlap'"]
        if full_image_runs:
            levers.append("'full_image': false")
    if full_image_runs and dynamic_hw:
        levers.append("a smaller 'imgsz'")
    if sliced:
        levers.append("a smaller image")
    if len(levers) < 2:
        return "".join(levers)
    return ", ".join(levers[:-1]) + f" or {levers[-1]}"
