"""Request and response schemas (pydantic), shared by the web API, the CLI and the OpenAPI document.

Validation errors become ``InvalidFieldError`` naming the field, here and nowhere else.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

import numpy as np
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

from .config import DEFAULT_CONF, MAX_DETECTIONS, MAX_PASS_SCALES
from .errors import InvalidFieldError, InvalidRequestError, clipped, shown
from .overlap import MatchMetric, MergeStrategy
from .regions import MAX_REGION_POINTS, MAX_REGIONS, Region, RegionAnchor, RegionUnits, check_points
from .slicing import SliceMode

ClassSelector = StrictInt | StrictStr
ModelT = TypeVar("ModelT", bound=BaseModel)


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


class RequestOptions(DetectOptions):
    """What a ``POST /predict`` body may say besides its image(s): the model and the picture."""

    model: Annotated[
        StrictStr | None,
        Field(
            max_length=256,
            description="The served model to run, by name (see GET /models). Omitted: the server's default model.",
        ),
    ] = None
    visualize: Annotated[
        StrictBool,
        Field(
            description=(
                "Also answer 'visualization': a base64 JPEG of the image as displayed, with boxes, labels "
                "and confidences drawn."
            )
        ),
    ] = False


class PredictRequest(RequestOptions):
    """Body of ``POST /predict`` for one image."""

    image: Annotated[
        StrictStr,
        Field(
            description="The image file (JPEG, PNG, WebP, AVIF, GIF, BMP, TIFF) as base64, optionally as a data: URI."
        ),
    ]


class UrlPredictRequest(RequestOptions):
    """Body of ``POST /predict`` for one image the server fetches (only from the prefixes SPECKS_IMAGE_URLS allows)."""

    image_url: Annotated[
        StrictStr,
        Field(
            min_length=1,
            max_length=2048,
            description=(
                "An http(s) URL of the image, fetched by the server instead of sending it in 'image'. Off unless "
                "the operator lists allowed URL prefixes in SPECKS_IMAGE_URLS (403 otherwise)."
            ),
        ),
    ]


class BatchPredictRequest(RequestOptions):
    """Body of ``POST /predict`` for a batch: several images, one set of options."""

    images: Annotated[
        list[StrictStr],
        Field(
            min_length=1,
            description=(
                "Image files as base64, like 'image'; answered in order in 'results'. At most "
                "SPECKS_MAX_BATCH_IMAGES images and SPECKS_MAX_BATCH_BYTES image bytes in all."
            ),
        ),
    ]


def _first_error_message(exc: ValidationError, model: type[BaseModel]) -> InvalidFieldError:
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


def parse_predict_request(body: Any) -> PredictRequest:
    """Validate a decoded JSON body into a PredictRequest (raises InvalidRequestError subclasses)."""
    if not isinstance(body, dict):
        raise InvalidRequestError(
            f'the JSON body must be an object like {{"image": "<base64>"}}, got {type(body).__name__}'
        )
    try:
        return PredictRequest.model_validate(body)
    except ValidationError as exc:
        raise _first_error_message(exc, PredictRequest) from exc


def parse_predict_body(body: Any) -> PredictRequest | BatchPredictRequest | UrlPredictRequest:
    """A ``POST /predict`` body: one image (``image``), a batch (``images``) or a URL (``image_url``), one of them."""
    if isinstance(body, dict) and "image_url" in body:
        if "image" in body or "images" in body:
            raise InvalidFieldError(
                "send one of 'image' (base64), 'images' (a batch) or 'image_url', not several", field="image_url"
            )
        return validate_fields(UrlPredictRequest, body)
    if isinstance(body, dict) and "images" in body:
        if "image" in body:
            raise InvalidFieldError(
                "send either 'image' (one image) or 'images' (a list, for a batch), not both", field="images"
            )
        try:
            return BatchPredictRequest.model_validate(body)
        except ValidationError as exc:
            raise _first_error_message(exc, BatchPredictRequest) from exc
    return parse_predict_request(body)


def parse_detect_options(options: dict[str, Any]) -> DetectOptions:
    """Validate options given without an image (CLI flags)."""
    try:
        return DetectOptions.model_validate(options)
    except ValidationError as exc:
        raise _first_error_message(exc, DetectOptions) from exc


def validate_fields(model: type[ModelT], body: dict[str, Any]) -> ModelT:
    """Validate a JSON object into a front-end's request model (the first failing field -> InvalidFieldError)."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise _first_error_message(exc, model) from exc


# -- responses ----------------------------------------------------------------------------------


class Box(BaseModel):
    """Corners in pixels of the original image as displayed (after EXIF orientation)."""

    x1: float
    y1: float
    x2: float
    y2: float


class Detection(BaseModel):
    box: Box
    class_id: int
    label: str
    confidence: Annotated[float, Field(ge=0.0, le=1.0)]


class ImageInfo(BaseModel):
    width: int
    height: int


class ModelSummary(BaseModel):
    """The model that answered."""

    name: str
    format: str
    input_size: ImageInfo
    layout: str


class PredictResponse(BaseModel):
    detections: list[Detection] = Field(description="Sorted by confidence, highest first.")
    image: ImageInfo = Field(description="Size of the image as displayed (after EXIF orientation).")
    model: ModelSummary
    timing_ms: dict[str, float] = Field(
        description=(
            "Milliseconds per stage (decode, preprocess, inference, postprocess, merge, visualize) and in total. "
            "In a batch, an image that shared a model run counts an equal share of it, and its total is "
            "the sum of its stages."
        )
    )
    tiles: int = Field(description="Tiles the image was sliced into (0: one full-image pass).")
    visualization: str | None = Field(
        default=None,
        description="Only with 'visualize': the image as displayed with the detections drawn, as a base64 JPEG.",
    )


class ModelDetails(BaseModel):
    """Body of ``GET /model``: what the loaded model is and expects."""

    name: str
    format: str = Field(description="The file format the model was loaded from: onnx or darknet.")
    input_size: ImageInfo = Field(description="Nominal model input size in pixels.")
    dynamic_input_size: bool = Field(description="The model accepts other input sizes (see 'imgsz').")
    dynamic_batch: bool
    stride: int
    layout: str = Field(description="Output layout the detections are decoded from.")
    num_classes: int
    names: list[str] = Field(description="Class names by class id.")
    providers: list[str] = Field(description="ONNX Runtime execution providers in use.")
    profile: dict[str, Any] | None = Field(
        default=None,
        description="The model profile in force (its file name, slicing settings, overrides and what tune "
        "measured), or null.",
    )
    defaults: dict[str, Any] = Field(
        description="The default for each request option: what a request that omits it gets "
        "(the model profile's setting over the server's)."
    )


class ServedModel(BaseModel):
    """One entry of ``GET /models``."""

    name: str = Field(description="What a request names it by ('model').")
    default: bool = Field(description="Requests that name no model get this one.")
    format: str
    input_size: ImageInfo
    dynamic_input_size: bool
    dynamic_batch: bool
    stride: int
    layout: str
    num_classes: int
    names: list[str] = Field(description="Class names by class id.")
    profile: str | None = Field(description="The tuning profile applied to this model (none yet).")
    sha256: str = Field(description="SHA-256 of the model file as this worker loaded it: tells whether a swap took.")
    loaded_at: str | None = Field(description="When this worker loaded it (UTC, ISO 8601).")


class ModelList(BaseModel):
    """Body of ``GET /models``: every model this server serves."""

    default: str = Field(description="The model requests get when they name none.")
    models: list[ServedModel]


class HealthResponse(BaseModel):
    """Body of ``GET /health``: the process is up."""

    status: Literal["ok"]


class ReadyResponse(BaseModel):
    """Body of ``GET /ready`` once the model is loaded and warm."""

    status: Literal["ready"]
    model: str = Field(description="Name of the default model.")
    models: list[str] = Field(description="Every served model, the default first.")


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. invalid_field, invalid_base64, image_too_large.")
    message: str = Field(description="What is wrong and, where possible, how to fix it.")
    field: str | None = Field(default=None, description="The request field at fault, when there is one.")


class ErrorResponse(BaseModel):
    """Every error answer: one JSON envelope, never HTML, never a traceback."""

    error: ErrorDetail


class BatchItemError(BaseModel):
    """The place of an image of a batch that failed: its own error envelope and the status it would have had."""

    error: ErrorDetail
    status: int = Field(description="The HTTP status a request with this image alone would have been answered.")


class BatchPredictResponse(BaseModel):
    """Answer to a batch: one entry per image, in order; an image that failed holds its error."""

    results: list[PredictResponse | BatchItemError]


def encode_prediction(prediction: Any, model_info: Any) -> dict[str, Any]:
    """Prediction + ModelInfo -> the JSON-ready dict of a PredictResponse (built directly, for speed)."""
    found = prediction.detections
    names = model_info.names
    # Round in float64: float32 values rounded then widened print as 1.2300000190734863.
    boxes = found.xyxy.astype(np.float64).round(2).tolist()
    scores = found.confidence.astype(np.float64).round(4).tolist()
    detections = [
        {
            "box": {"x1": b[0], "y1": b[1], "x2": b[2], "y2": b[3]},
            "class_id": c,
            "label": names[c] if 0 <= c < len(names) else str(c),
            "confidence": s,
        }
        for b, s, c in zip(boxes, scores, found.class_id.tolist(), strict=True)
    ]
    answer = {
        "detections": detections,
        "image": {"width": prediction.image_size.width, "height": prediction.image_size.height},
        "model": model_summary(model_info),
        "timing_ms": prediction.timing_ms,
        "tiles": prediction.tile_count,
    }
    visualization = getattr(prediction, "visualization_jpeg_b64", None)
    if visualization is not None:
        answer["visualization"] = visualization
    return answer


def model_summary(model_info: Any) -> dict[str, Any]:
    return {
        "name": model_info.name,
        "format": model_info.source_format,
        "input_size": {"width": model_info.input_hw[1], "height": model_info.input_hw[0]},
        "layout": model_info.layout.value,
    }
