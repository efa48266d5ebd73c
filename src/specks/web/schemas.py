"""The HTTP API's request and response bodies (pydantic), shared by the web API and the OpenAPI document.

The detection options every body carries are ``options.DetectOptions``; a body's validation errors
become ``InvalidFieldError`` naming the field (``options.first_error_message``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

import numpy as np
from pydantic import (
    BaseModel,
    Field,
    StrictBool,
    StrictStr,
    ValidationError,
)

from ..core.options import DetectOptions, first_error_message
from ..core.pipeline import ModelDescription, Prediction
from ..errors import InvalidFieldError, InvalidRequestError

ModelT = TypeVar("ModelT", bound=BaseModel)


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


def parse_predict_request(body: Any) -> PredictRequest:
    """Validate a decoded JSON body into a PredictRequest (raises InvalidRequestError subclasses)."""
    if not isinstance(body, dict):
        raise InvalidRequestError(
            f'the JSON body must be an object like {{"image": "<base64>"}}, got {type(body).__name__}'
        )
    try:
        return PredictRequest.model_validate(body)
    except ValidationError as exc:
        raise first_error_message(exc, PredictRequest) from exc


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
            raise first_error_message(exc, BatchPredictRequest) from exc
    return parse_predict_request(body)


def validate_fields(model: type[ModelT], body: dict[str, Any]) -> ModelT:
    """Validate a JSON object into a front-end's request model (the first failing field -> InvalidFieldError)."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise first_error_message(exc, model) from exc


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
    profile: dict[str, Any] | None = Field(
        description="The model profile in force (its file name, slicing settings, overrides and what tune "
        "measured), or null: the same as GET /model's 'profile'."
    )
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


def encode_prediction(prediction: Prediction) -> dict[str, Any]:
    """A Prediction -> the JSON-ready dict of a PredictResponse (built directly, for speed)."""
    found, model_info = prediction.detections, answering_model(prediction)
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
    visualization = prediction.visualization_jpeg_b64
    if visualization is not None:
        answer["visualization"] = visualization
    return answer


def answering_model(prediction: Prediction) -> ModelDescription:
    """The model a Prediction came from (every Prediction the Detector makes names it)."""
    if prediction.model is None:
        raise ValueError("this Prediction does not name its model: make it with a Detector")
    return prediction.model


def model_summary(model_info: ModelDescription) -> dict[str, Any]:
    return {
        "name": model_info.name,
        "format": model_info.source_format,
        "input_size": {"width": model_info.input_hw[1], "height": model_info.input_hw[0]},
        "layout": model_info.layout.value,
    }
