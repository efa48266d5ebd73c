"""The wire formats of the compatible APIs, as pydantic models: what clients send and what they read.

The Roboflow request models are what ``specks.web.roboflow`` validates bodies with; the answer
models describe what ``specks.web.deepstack``, ``specks.web.roboflow`` and
``specks.web.ultralytics_hub`` encode. ``specks.web.openapi`` documents their routes from these. No
Flask here.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr

from ..core.knobs import DEFAULT_CONF, IMGSZ_PX, MAX_DETECTIONS, UNIT
from ..core.options import UnitInterval

# -- DeepStack / CodeProject.AI ------------------------------------------------------------------


# DeepStack's threshold when a client sends none (Frigate never does).
DEEPSTACK_MIN_CONFIDENCE = 0.40


class DeepStackForm(BaseModel):
    """The multipart form of ``POST /v1/vision/detection`` (and ``custom/<model>``)."""

    image: Annotated[bytes, Field(description="The picture file (JPEG, PNG, GIF, BMP, TIFF, WebP or AVIF).")]
    min_confidence: Annotated[
        UnitInterval, Field(description=f"Minimum confidence, 0..1 (default {DEEPSTACK_MIN_CONFIDENCE:.2f}).")
    ] = DEEPSTACK_MIN_CONFIDENCE
    # Any value: a server without API keys ignores the field, whatever it holds.
    api_key: Annotated[Any, Field(description="An API key, when the server has any (ignored otherwise).")] = None


class DeepStackPrediction(BaseModel):
    label: str
    confidence: Annotated[float, Field(ge=0.0, le=1.0)]
    x_min: Annotated[int, Field(description="Left edge, integer pixels of the submitted image.")]
    y_min: int
    x_max: int
    y_max: int


class DeepStackResponse(BaseModel):
    """A detection answer; CodeProject.AI's module fields come with it."""

    success: Literal[True]
    predictions: Annotated[
        list[DeepStackPrediction], Field(description="Best first, at most SPECKS_COMPAT_MAX_PREDICTIONS (20).")
    ]
    count: int
    inferenceMs: int
    processMs: int
    moduleId: str
    moduleName: str
    command: str
    executionProvider: str
    canUseGPU: bool
    analysisRoundTripMs: int


class DeepStackError(BaseModel):
    success: Literal[False]
    error: Annotated[str, Field(description="What went wrong and what to send instead.")]


# -- Roboflow (inference-sdk) --------------------------------------------------------------------


class InferenceImage(BaseModel):
    """One image of a request: ``{"type": "base64", "value": "<base64>"}``."""

    model_config = ConfigDict(extra="ignore")

    type: StrictStr
    value: Any = None


class ObjectDetectionRequest(BaseModel):
    """Body of ``POST /infer/object_detection`` (the fields Specks reads; the rest is ignored)."""

    model_config = ConfigDict(extra="ignore")

    model_id: StrictStr | None = None
    api_key: StrictStr | None = None
    image: (
        InferenceImage
        | Annotated[
            list[InferenceImage],
            Field(
                min_length=1,
                description="A batch, as POST /predict's: at most SPECKS_MAX_BATCH_IMAGES images and "
                "SPECKS_MAX_BATCH_BYTES image bytes (413 past either).",
            ),
        ]
    )
    confidence: Annotated[float, Field(ge=0.0, le=1.0)] | Literal["best", "default"] | None = None
    iou_threshold: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    max_detections: Annotated[int, Field(ge=1, le=MAX_DETECTIONS)] | None = None
    class_filter: list[StrictStr] | None = None
    class_agnostic_nms: StrictBool | None = None
    visualize_predictions: StrictBool | None = None


class AddModelRequest(BaseModel):
    """Body of ``POST /model/add``."""

    model_config = ConfigDict(extra="ignore")

    model_id: StrictStr


class RoboflowPrediction(BaseModel):
    x: Annotated[float, Field(description="Box centre, pixels of the image as displayed.")]
    y: float
    width: float
    height: float
    confidence: Annotated[float, Field(ge=0.0, le=1.0)]
    class_: Annotated[str, Field(alias="class")]
    class_id: int
    detection_id: str


class RoboflowImageSize(BaseModel):
    width: int
    height: int


class RoboflowResponse(BaseModel):
    """One image's answer (``ObjectDetectionInferenceResponse``); a batch is a list of them."""

    inference_id: str
    time: Annotated[float, Field(description="Seconds the server spent on the image.")]
    image: RoboflowImageSize
    predictions: list[RoboflowPrediction]
    model: dict[str, Any]
    visualization: Annotated[
        str | None, Field(description="With visualize_predictions: the annotated picture, base64 JPEG.")
    ] = None


class RoboflowError(BaseModel):
    message: str


# -- Ultralytics HUB inference API ---------------------------------------------------------------


class HubForm(BaseModel):
    """The multipart form of ``POST /v1/predict/{model_id}`` (current field names, then the older ones)."""

    file: Annotated[bytes, Field(description="The picture file (older clients name the part 'image').")]
    imgsz: Annotated[
        int | None,
        Field(
            ge=IMGSZ_PX.low,
            le=IMGSZ_PX.high,
            description="Input size for models with dynamic height/width (older clients: 'size'); "
            "ignored by fixed-size models. Default: the model's.",
        ),
    ] = None
    conf: Annotated[UnitInterval, Field(description="Minimum confidence (older clients: 'confidence').")] = DEFAULT_CONF
    iou: Annotated[
        float | None, Field(ge=UNIT.low, le=UNIT.high, description="NMS IoU threshold. Default: Specks' measured one.")
    ] = None


class HubBox(BaseModel):
    x1: Annotated[float, Field(description="Left edge, pixels of the image as displayed.")]
    y1: float
    x2: float
    y2: float


class HubResult(BaseModel):
    class_: Annotated[int, Field(alias="class", description="Class index of the model.")]
    name: str
    confidence: Annotated[float, Field(ge=0.0, le=1.0)]
    box: HubBox


class HubSpeed(BaseModel):
    preprocess: Annotated[float, Field(description="Milliseconds: decoding and letterboxing.")]
    inference: float
    postprocess: Annotated[float, Field(description="Milliseconds: decoding boxes, NMS and merging tiles.")]


class HubImage(BaseModel):
    results: Annotated[list[HubResult], Field(description="Best first.")]
    shape: Annotated[list[int], Field(min_length=2, max_length=2, description="[height, width] in pixels.")]
    speed: HubSpeed


class HubResponse(BaseModel):
    images: Annotated[list[HubImage], Field(min_length=1, max_length=1)]
    metadata: dict[str, Any]


class HubError(BaseModel):
    success: Literal[False]
    message: Annotated[str, Field(description="What went wrong and what to send instead.")]
