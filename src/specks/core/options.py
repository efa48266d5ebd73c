"""The detection knobs: what a request may ask for (``DetectOptions``) and what a server or model
profile sets as their defaults (``SlicingSettings``), with their ranges and the checks of a
request's options. No web framework and no model here: the HTTP schemas, the CLI, profiles,
planning and the tools all read the knobs from this module.

Validation errors become ``InvalidFieldError`` naming the field (``first_error_message``).
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    WithJsonSchema,
    field_validator,
)

from ..errors import ConfigError, InvalidFieldError, clipped, shown
from .overlap import MatchMetric, MergeStrategy
from .regions import MAX_REGION_POINTS, MAX_REGIONS, Region, RegionAnchor, RegionUnits, check_points
from .slicing import SliceMode

# The largest max_det a request may ask for (DetectOptions).
MAX_DETECTIONS = 10_000
# Most passes (input scales) one request may fuse; each costs a model pass (two with flip).
MAX_PASS_SCALES = 4
# A request's confidence threshold when it gives none (DetectOptions.conf), and the key of a
# per-class ``conf`` object that sets it for the classes the object does not name.
DEFAULT_CONF = 0.25
CONF_FOR_THE_REST = "*"


ClassSelector = StrictInt | StrictStr


def _slice_mode(value: Any) -> Any:
    """The API's ``true`` / ``false`` / ``"auto"`` (and ``"on"`` / ``"off"``) -> SliceMode; anything else fails."""
    if isinstance(value, bool | str):
        try:
            return SliceMode.parse(value)
        except ValueError:
            pass
    return value  # pydantic reports it against the enum


SliceModeField = Annotated[
    SliceMode,
    BeforeValidator(_slice_mode),
    WithJsonSchema({"anyOf": [{"type": "boolean"}, {"type": "string", "enum": [m.value for m in SliceMode]}]}),
]


Confidence = Annotated[float, Field(ge=0.0, le=1.0, strict=True)]
MAX_CLASS_THRESHOLDS = 1000  # entries of a per-class ``conf`` object: more than any model's classes
Coordinate = Annotated[float, Field(strict=True)]


class RegionModel(BaseModel):
    """One region of interest: a polygon detections must (or, with ``exclude``, must not) be anchored in."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    points: Annotated[
        list[Annotated[list[Coordinate], Field(min_length=2, max_length=2)]],
        Field(
            min_length=3,
            max_length=MAX_REGION_POINTS + 1,
            description=(
                "The polygon's corners [x, y] in order around its outline (at least 3; it closes itself). "
                "Parts past the image edge are clipped."
            ),
        ),
    ]
    units: Annotated[
        RegionUnits,
        Field(
            description=(
                '"px": pixels of the image as displayed (after EXIF orientation), from its top-left corner; '
                '"fraction": fractions 0..1 of its width and height (the same region for any image size).'
            )
        ),
    ] = RegionUnits.PX
    exclude: Annotated[
        StrictBool,
        Field(description="Drop what is anchored inside (and mask its pixels) instead of keeping only that."),
    ] = False

    def to_region(self) -> Region:
        return Region(tuple((x, y) for x, y in self.points), self.units, self.exclude)


class DetectOptions(BaseModel):
    """Per-request detection options (everything but the image)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    conf: Annotated[
        Confidence | Annotated[dict[str, Confidence], Field(min_length=1, max_length=MAX_CLASS_THRESHOLDS)],
        Field(
            description="Minimum confidence, 0..1: one number for every class, or an object of thresholds by "
            'class name or id, "*" for the classes it does not name (e.g. {"person": 0.3, "car": 0.6, "*": 0.25}; '
            'without "*", the rest keep the default). A box is kept when its best class\'s score clears that '
            "class's threshold."
        ),
    ] = DEFAULT_CONF
    iou: Annotated[
        float | None,
        Field(ge=0.0, le=1.0, strict=True, description="NMS IoU threshold, 0..1 (default 0.45; 0.6 when sliced)."),
    ] = None
    multi_label: Annotated[
        StrictBool | None,
        Field(
            description=(
                "Let one box carry every class above 'conf' (e.g. car and truck) instead of only its best "
                "(default false; true when sliced)."
            ),
        ),
    ] = None
    agnostic_nms: Annotated[
        StrictBool,
        Field(
            description=(
                "Let overlapping boxes of different classes suppress each other (one box per object "
                "whatever its class; as Ultralytics' agnostic_nms). Default false: class by class."
            ),
        ),
    ] = False
    max_det: Annotated[int, Field(ge=1, le=MAX_DETECTIONS, strict=True, description="Most detections returned.")] = 300
    classes: Annotated[
        list[ClassSelector] | None,
        Field(max_length=1000, description="Keep only these classes, by name or id. Omit for all."),
    ] = None
    imgsz: Annotated[
        int | None,
        Field(
            ge=32,
            le=4096,
            strict=True,
            description="Model input size in pixels (dynamic-shape models only); rounded up to the stride.",
        ),
    ] = None

    slice: Annotated[
        SliceModeField | None,
        Field(
            description=(
                'Sliced (tiled) inference for small objects: true, false, or "auto" (slice when the image is '
                "clearly larger than the model input). Omitted: the server's default (SPECKS_SLICE, auto)."
            ),
        ),
    ] = None
    tile: Annotated[
        int | None,
        Field(ge=64, le=4096, strict=True, description="Tile side in image pixels (default: server setting)."),
    ] = None
    tile_scale: Annotated[
        float | None,
        Field(
            ge=0.25,
            le=4.0,
            strict=True,
            description="Model-input pixels per image pixel inside a tile; above 1 enlarges small objects.",
        ),
    ] = None
    overlap: Annotated[
        float | None,
        Field(ge=0.0, le=0.75, strict=True, description="Overlap between neighbouring tiles, as a ratio of the tile."),
    ] = None
    full_image: Annotated[
        bool | None,
        Field(strict=True, description="Also run the whole image once and merge it with the tiles."),
    ] = None
    merge: Annotated[
        MergeStrategy | None,
        Field(
            description=(
                "How tile and pass results merge: nms (keep the best box), nmm (greedy merge into one "
                "enclosing box) or wbf (weighted box fusion: the score-weighted mean box)."
            )
        ),
    ] = None
    merge_metric: Annotated[
        MatchMetric | None,
        Field(description="Overlap measure for merging: iou, or ios (intersection over the smaller box)."),
    ] = None
    merge_threshold: Annotated[
        float | None,
        Field(ge=0.0, le=1.0, strict=True, description="Overlap above which two tile detections merge."),
    ] = None
    scales: Annotated[
        list[Annotated[float, Field(ge=0.25, le=4.0, strict=True)]] | None,
        Field(
            min_length=1,
            max_length=MAX_PASS_SCALES,
            description=(
                "Input scale factors of passes fused into one answer (1 is the request's own plan; "
                "e.g. [1, 1.5] adds an enlarged pass). Each costs a model pass."
            ),
        ),
    ] = None
    flip: Annotated[
        StrictBool | None,
        Field(description="Also run every pass on the mirrored image and fuse it (test-time augmentation)."),
    ] = None
    soft_nms: Annotated[
        StrictBool | None,
        Field(description="Decay the scores of overlapping boxes instead of dropping them (crowds)."),
    ] = None
    regions: Annotated[
        list[RegionModel] | None,
        Field(
            max_length=MAX_REGIONS,
            description=(
                "Regions of interest: a detection is answered when its anchor point lies inside an include "
                "region and inside no exclude region (only exclude regions: the whole image minus them). The "
                "image is cropped to the include regions (with a margin) before it runs, so a small region "
                "is also faster. Omitted: the model profile's regions, if any; [] means the whole image."
            ),
        ),
    ] = None
    region_anchor: Annotated[
        RegionAnchor | None,
        Field(
            description=(
                'The point of a box tested against the regions: "bottom_center" (default: where an object '
                'stands, as zones are drawn on the ground) or "center".'
            )
        ),
    ] = None

    @field_validator("regions")
    @classmethod
    def _check_region_shapes(cls, regions: list[RegionModel] | None) -> list[RegionModel] | None:
        """Each polygon's geometry (InvalidFieldError naming ``regions[i]``, which pydantic lets through)."""
        if regions is None:
            return None
        return [
            region.model_copy(update={"points": [list(p) for p in check_points(region.points, region.units, where)]})
            for where, region in zip((f"regions[{i}]" for i in range(len(regions))), regions, strict=True)
        ]

    def region_list(self) -> tuple[Region, ...] | None:
        """The request's regions as the core's ``Region`` values (None: not given)."""
        return None if self.regions is None else tuple(r.to_region() for r in self.regions)


@dataclass(frozen=True)
class SlicingSettings:
    """Server-wide defaults for sliced (tiled) inference; requests may override each one.

    mode:             slice when the image is clearly larger than the model input (auto), always, never.
    tile_px:          tile side in image pixels; 0 picks it from the model: its input size for
                      fixed-size models, max_tile_input_px / tile_scale for dynamic-size ones.
    tile_scale:       model-input pixels per image pixel inside a tile on dynamic-size models
                      (> 1 enlarges small objects).
    max_tile_input_px: largest model input side a tile may use on dynamic-size models.
    overlap_ratio:    overlap of neighbouring tiles as a fraction of the tile side.
    full_image_pass:  also run the whole image once (finds objects too big for a tile).
    merge:            keep the best box (NMS) or grow it over its group (NMM).
    merge_metric:     IoU, or intersection over the smaller box (IoS).
    merge_threshold:  overlap above which two detections of one class are the same object.
    max_tiles:        most tiles one request may cost, every pass (scales, flips) together; more is
                      refused with 413.
    max_input_pixels_per_request: most model-input pixels one request may run, every tile, pass,
                      flip and full-image pass together (each run's input height x width); more is
                      refused with 413. It bounds the model time of a request where ``max_tiles``
                      alone allows 200 tiles of 2560x2560.
    iou_threshold:    NMS IoU inside each tile in small-object mode (crowds need a higher one).
    multi_label:      in small-object mode a box may carry several classes above the threshold.
    scales:           input scale factors of the passes fused per request (1.0: the plan as is;
                      e.g. (1.0, 1.5) adds an enlarged pass). Applies to every request.
    flip:             also run each pass on the mirrored image (test-time augmentation).
    soft_nms:         decay overlapping boxes' scores instead of dropping them (crowds).

    The ranges match the per-request options (``DetectOptions``), so a server default
    is never a value a request could not send.
    """

    mode: SliceMode = SliceMode.AUTO
    tile_px: int = 0
    tile_scale: float = 1.0
    max_tile_input_px: int = 2560
    overlap_ratio: float = 0.2
    full_image_pass: bool = True
    merge: MergeStrategy = MergeStrategy.NMS
    merge_metric: MatchMetric = MatchMetric.IOU
    merge_threshold: float = 0.5
    max_tiles: int = 200
    # Every documented request and tuned profile fits, on any image up to the 40 MP image limit: the
    # heaviest, the tuned `scales` [1, 1.25] of docs/small-objects.md on a 40 MP photo, runs 237 MP (`specks tune`'s
    # heaviest trial, tile_scale 2 + scales [1, 1.5] + flip on a 2000x1500 photo, 133 MP; a default
    # sliced 40 MP image at most 105 MP). About 21 s of model time on 2 quiet cores: YOLOX-Nano and
    # yolov5n_dynamic run ~12 MP/s there (4.2-4.8 MP/s measured while the machine was shared).
    max_input_pixels_per_request: int = 256_000_000
    iou_threshold: float = 0.6
    multi_label: bool = True
    scales: tuple[float, ...] = (1.0,)
    flip: bool = False
    soft_nms: bool = False

    def __post_init__(self) -> None:
        # Names are parsed once, here, so the rest of Specks only sees enums.
        coerce_enum(self, "mode", SliceMode.parse)
        coerce_enum(self, "merge", MergeStrategy)
        coerce_enum(self, "merge_metric", MatchMetric)
        checks = [
            (isinstance(self.mode, SliceMode), "mode must be auto, on or off", self.mode),
            (self.tile_px == 0 or 64 <= self.tile_px <= 4096, "tile_px must be 0 or 64..4096", self.tile_px),
            (0.25 <= self.tile_scale <= 4.0, "tile_scale must be within 0.25..4", self.tile_scale),
            (64 <= self.max_tile_input_px <= 8192, "max_tile_input_px must be within 64..8192", self.max_tile_input_px),
            (0 <= self.overlap_ratio <= 0.75, "overlap_ratio must be within 0..0.75", self.overlap_ratio),
            (isinstance(self.merge, MergeStrategy), "merge must be nms, nmm or wbf", self.merge),
            (isinstance(self.merge_metric, MatchMetric), "merge_metric must be iou or ios", self.merge_metric),
            (0 <= self.merge_threshold <= 1, "merge_threshold must be within 0..1", self.merge_threshold),
            (self.max_tiles >= 1, "max_tiles must be >= 1", self.max_tiles),
            (
                self.max_input_pixels_per_request >= 1,
                "max_input_pixels_per_request must be >= 1",
                self.max_input_pixels_per_request,
            ),
            (0 <= self.iou_threshold <= 1, "iou_threshold must be within 0..1", self.iou_threshold),
            (
                1 <= len(self.scales) <= MAX_PASS_SCALES and all(0.25 <= s <= 4 for s in self.scales),
                f"scales must be 1..{MAX_PASS_SCALES} factors within 0.25..4",
                self.scales,
            ),
        ]
        for ok, message, value in checks:
            if not ok:
                raise ConfigError(f"slicing: {message}, got {value!r}")


def coerce_enum(settings: object, name: str, parse: Callable[[str], enum.Enum]) -> None:
    """Replace a setting given by name (``"nmm"``) with its enum member; an unknown name stays for the check."""
    value = getattr(settings, name)
    if isinstance(value, str) and not isinstance(value, enum.Enum):
        with contextlib.suppress(ValueError):
            object.__setattr__(settings, name, parse(value.strip().lower()))


def first_error_message(exc: ValidationError, model: type[BaseModel]) -> InvalidFieldError:
    """The first failing field of ``model`` as one readable message (union alternatives joined with 'or')."""
    errors = exc.errors(include_url=False)
    name = str(errors[0]["loc"][0]) if errors[0]["loc"] else None
    field = None if name is None else clipped(name)  # an unknown field's name is client input
    where = _where(errors[0]["loc"]) if name in PATH_NAMED_FIELDS else field
    kind = errors[0]["type"]
    if kind == "missing":
        message = f"'{where}' is required"
    elif kind == "extra_forbidden" and len(errors[0]["loc"]) > 1 and name in PATH_NAMED_FIELDS:
        allowed = ", ".join(PATH_NAMED_FIELDS[name].model_fields)
        message = f"unknown field '{where}'; allowed fields of each item: {allowed}"
    elif kind == "extra_forbidden":
        allowed = ", ".join(sorted(model.model_fields))
        message = f"unknown field {shown(name)}; allowed fields: {allowed}"
    else:
        same_field = [e for e in errors if e["loc"] and str(e["loc"][0]) == name]
        reasons = " or ".join(dict.fromkeys(e["msg"].removeprefix("Input should be ") for e in same_field))
        got = errors[0].get("input")
        got_text = shown(got) if not isinstance(got, str) or len(got) < 60 else f"a string of {len(got)} characters"
        message = f"'{where}' should be {reasons} (got {got_text})"
    return InvalidFieldError(message, field=field)


# Fields whose errors name the item at fault ('regions[2].points[0]'), not only the field.
PATH_NAMED_FIELDS: dict[str, type[BaseModel]] = {"regions": RegionModel}


def _where(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as a path: ('regions', 2, 'points') -> 'regions[2].points'."""
    path = str(loc[0])
    for part in loc[1:]:
        path += f"[{part}]" if isinstance(part, int) else f".{clipped(str(part), 64)}"
    return path


def parse_detect_options(options: dict[str, Any]) -> DetectOptions:
    """Validate options given without an image (CLI flags)."""
    try:
        return DetectOptions.model_validate(options)
    except ValidationError as exc:
        raise first_error_message(exc, DetectOptions) from exc
