"""The detection knobs: what a request may ask for (``DetectOptions``) and what a server or model
profile sets as their defaults (``SlicingSettings``), with their ranges and the checks of a
request's options. No web framework and no model here: the HTTP schemas, the CLI, profiles,
planning and the tools all read the knobs from this module.

Validation errors become ``InvalidFieldError`` naming the field (``first_error_message``).
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Callable, Mapping
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
from .regions import (
    MAX_REGION_POINTS,
    MAX_REGIONS,
    NO_REGIONS,
    Region,
    RegionAnchor,
    RegionSet,
    RegionUnits,
    check_points,
)
from .slicing import SliceMode

# The largest max_det a request may ask for (DetectOptions).
MAX_DETECTIONS = 10_000
# Most passes (input scales) one request may fuse; each costs a model pass (two with flip).
MAX_PASS_SCALES = 4
# A request's confidence threshold when it gives none (DetectOptions.conf), and the key of a
# per-class ``conf`` object that sets it for the classes the object does not name.
DEFAULT_CONF = 0.25
CONF_FOR_THE_REST = "*"
# NMS IoU of a full-image pass (YOLOv5's detect default), and inside tiles (crowds: measured on VisDrone).
DEFAULT_IOU = 0.45
DEFAULT_SLICED_IOU = 0.6
DEFAULT_MAX_DET = 300


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




@dataclass(frozen=True)
class Range:
    """A closed range of numbers, the one place a knob's bounds are written: the request options
    are typed with it (``field``) and the server's defaults checked against it (``KNOBS``)."""

    low: float
    high: float | None = None

    def field(self) -> Any:
        """The range as pydantic field constraints (strictly typed): ``Annotated[float, UNIT.field()]``."""
        return Field(ge=self.low, le=self.high, strict=True)

    def words(self) -> str:
        return f">= {self.low:g}" if self.high is None else f"within {self.low:g}..{self.high:g}"

    def holds(self, value: object) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        return self.low <= value and (self.high is None or value <= self.high)


UNIT = Range(0.0, 1.0)
TILE_PX = Range(64, 4096)
TILE_SCALE = Range(0.25, 4.0)
OVERLAP = Range(0.0, 0.75)
PASS_SCALE = Range(0.25, 4.0)
MAX_TILE_INPUT_PX = Range(64, 8192)
IMGSZ_PX = Range(32, 4096)
POSITIVE = Range(1)
UnitInterval = Annotated[float, UNIT.field()]
Confidence = UnitInterval
TilePx = Annotated[int, TILE_PX.field()]
TileScale = Annotated[float, TILE_SCALE.field()]
OverlapRatio = Annotated[float, OVERLAP.field()]
PassScale = Annotated[float, PASS_SCALE.field()]
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
        Confidence | Annotated[dict[str, Confidence], Field(min_length=1, max_length=MAX_CLASS_THRESHOLDS)] | None,
        Field(
            description="Minimum confidence, 0..1: one number for every class, or an object of thresholds by "
            'class name or id, "*" for the classes it does not name (e.g. {"person": 0.3, "car": 0.6, "*": 0.25}; '
            'without "*", the rest keep the default). A box is kept when its best class\'s score clears that '
            f"class's threshold. Omitted: the model profile's conf, else {DEFAULT_CONF:g}."
        ),
    ] = None
    iou: Annotated[
        UnitInterval | None,
        Field(
            description=f"NMS IoU threshold, 0..1 (default {DEFAULT_IOU:g}; {DEFAULT_SLICED_IOU:g} when sliced)."
        ),
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
    max_det: Annotated[
        int, Field(ge=1, le=MAX_DETECTIONS, strict=True, description="Most detections returned.")
    ] = DEFAULT_MAX_DET
    classes: Annotated[
        list[ClassSelector] | None,
        Field(max_length=1000, description="Keep only these classes, by name or id. Omit for all."),
    ] = None
    imgsz: Annotated[
        Annotated[int, IMGSZ_PX.field()] | None,
        Field(description="Model input size in pixels (dynamic-shape models only); rounded up to the stride."),
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
        TilePx | None, Field(description="Tile side in image pixels (default: server setting).")
    ] = None
    tile_scale: Annotated[
        TileScale | None,
        Field(description="Model-input pixels per image pixel inside a tile; above 1 enlarges small objects."),
    ] = None
    overlap: Annotated[
        OverlapRatio | None, Field(description="Overlap between neighbouring tiles, as a ratio of the tile.")
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
        UnitInterval | None, Field(description="Overlap above which two tile detections merge.")
    ] = None
    scales: Annotated[
        list[PassScale] | None,
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
    iou_threshold: float = DEFAULT_SLICED_IOU
    multi_label: bool = True
    scales: tuple[float, ...] = (1.0,)
    flip: bool = False
    soft_nms: bool = False

    def __post_init__(self) -> None:
        # Names are parsed once, here, so the rest of Specks only sees enums.
        coerce_enum(self, "mode", SliceMode.parse)
        coerce_enum(self, "merge", MergeStrategy)
        coerce_enum(self, "merge_metric", MatchMetric)
        for knob in KNOBS:
            knob.check(getattr(self, knob.setting))


# A threshold for every class, or thresholds by class name or id ("*": the rest).
ConfValue = float | Mapping[str, float]


@dataclass(frozen=True)
class ModelDefaults:
    """What a request omits and a model's profile may set besides the slicing knobs: a fixed camera's
    confidence (one number, or per class) and regions of interest."""

    conf: ConfValue = DEFAULT_CONF
    regions: RegionSet = NO_REGIONS


MODEL_DEFAULTS = ModelDefaults()


@dataclass(frozen=True)
class Knob:
    """One detection default (a field of ``SlicingSettings``) and everything derived from it.

    setting:   its ``SlicingSettings`` field, and its key in a model profile's ``slicing``.
    option:    the request option (``DetectOptions``) that overrides it, or None: not per request
               (``iou`` and ``multi_label`` override both modes' defaults at once).
    env:       its environment variable, after ``SPECKS_``.
    kind:      its type: bool, int, float, tuple (of floats) or an enum.
    values:    the range its numbers take (a tuple's items); ``zero_means_auto``: 0 is allowed too.
    per_model: a model profile may set it (False: a server limit, the same for every model).
    """

    setting: str
    option: str | None
    env: str
    kind: type
    values: Range | None = None
    zero_means_auto: bool = False
    per_model: bool = True

    def check(self, value: object) -> None:
        """ConfigError naming the setting and what it takes, unless ``value`` is one it takes."""
        if not self.takes(value):
            raise ConfigError(f"slicing: {self.setting} must be {self.words()}, got {value!r}")

    def takes(self, value: object) -> bool:
        if issubclass(self.kind, enum.Enum) or self.kind is bool:
            return isinstance(value, self.kind)
        if self.kind is tuple:
            counts = Range(1, MAX_PASS_SCALES)
            return isinstance(value, tuple) and counts.holds(len(value)) and all(self._in_range(v) for v in value)
        return (self.zero_means_auto and value == 0 and not isinstance(value, bool)) or self._in_range(value)

    def words(self) -> str:
        """What the knob takes, as the end of "... must be ..."."""
        if issubclass(self.kind, enum.Enum):
            names = [str(member.value) for member in self.kind]
            return ", ".join(names[:-1]) + f" or {names[-1]}"
        if self.kind is bool:
            return "true or false"
        range_words = self.values.words() if self.values else "a number"
        if self.kind is tuple:
            return f"1..{MAX_PASS_SCALES} factors {range_words}"
        return f"0 or {range_words.removeprefix('within ')}" if self.zero_means_auto else range_words

    def _in_range(self, value: object) -> bool:
        if self.kind is int and not isinstance(value, int):
            return False
        return self.values is None or self.values.holds(value)


# Every SlicingSettings field, in its order: the environment reader, profile checks, ``GET /model``'s
# defaults and the settings' own checks all come from here.
KNOBS: tuple[Knob, ...] = (
    Knob("mode", "slice", "SLICE", SliceMode),
    Knob("tile_px", "tile", "TILE", int, TILE_PX, zero_means_auto=True),
    Knob("tile_scale", "tile_scale", "TILE_SCALE", float, TILE_SCALE),
    Knob("max_tile_input_px", None, "MAX_TILE_INPUT", int, MAX_TILE_INPUT_PX, per_model=False),
    Knob("overlap_ratio", "overlap", "OVERLAP", float, OVERLAP),
    Knob("full_image_pass", "full_image", "FULL_IMAGE", bool),
    Knob("merge", "merge", "MERGE", MergeStrategy),
    Knob("merge_metric", "merge_metric", "MERGE_METRIC", MatchMetric),
    Knob("merge_threshold", "merge_threshold", "MERGE_THRESHOLD", float, UNIT),
    Knob("max_tiles", None, "MAX_TILES", int, POSITIVE, per_model=False),
    Knob("max_input_pixels_per_request", None, "MAX_INPUT_PIXELS", int, POSITIVE, per_model=False),
    Knob("iou_threshold", None, "SLICE_IOU", float, UNIT),
    Knob("multi_label", None, "SLICE_MULTI_LABEL", bool),
    Knob("scales", "scales", "SCALES", tuple, PASS_SCALE),
    Knob("flip", "flip", "FLIP", bool),
    Knob("soft_nms", "soft_nms", "SOFT_NMS", bool),
)


def request_defaults_of(slicing: SlicingSettings) -> dict[str, Any]:
    """The request options that default from ``slicing``, as JSON values (tile 0: None, from the model)."""
    defaults: dict[str, Any] = {}
    for knob in KNOBS:
        if knob.option is None:
            continue
        value = getattr(slicing, knob.setting)
        if isinstance(value, enum.Enum):
            value = value.value
        elif isinstance(value, tuple):
            value = list(value)
        elif knob.zero_means_auto and value == 0:
            value = None
        defaults[knob.option] = value
    return defaults


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
