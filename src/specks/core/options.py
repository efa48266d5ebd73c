"""What a request may ask for (``DetectOptions``, pydantic), typed with the ranges of ``core.knobs``,
and what a model profile sets besides the slicing knobs (``ModelDefaults``: conf, regions). No web
framework and no model here: the HTTP schemas, the CLI, profiles, planning and the tools all read
a request's options from this module.

Validation errors become ``InvalidFieldError`` naming the field (``first_error_message``).
"""

from __future__ import annotations

from collections.abc import Mapping
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

from ..errors import InvalidFieldError, clipped, shown
from .knobs import (
    DEFAULT_CONF,
    DEFAULT_IOU,
    DEFAULT_MAX_DET,
    DEFAULT_SLICED_IOU,
    IMGSZ_PX,
    MAX_DETECTIONS,
    MAX_PASS_SCALES,
    OVERLAP,
    PASS_SCALE,
    TILE_PX,
    TILE_SCALE,
    UNIT,
)
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


# A threshold for every class, or thresholds by class name or id ("*": the rest).
ConfValue = float | Mapping[str, float]


@dataclass(frozen=True)
class ModelDefaults:
    """What a request omits and a model's profile may set besides the slicing knobs: a fixed camera's
    confidence (one number, or per class) and regions of interest."""

    conf: ConfValue = DEFAULT_CONF
    regions: RegionSet = NO_REGIONS


MODEL_DEFAULTS = ModelDefaults()


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
