"""The OpenAPI 3.1 document of the HTTP API, generated from the pydantic schemas in ``specks.web.schemas``.

The document is assembled from openapi-pydantic's models of the specification; every request and
response body is the JSON schema pydantic derives from the model the API itself validates with or
answers, so the document cannot drift from the code. No Flask here: ``specks.web.docs`` serves it.

Security appears only when API keys are configured: both schemes (``X-API-Key`` header and
``Authorization: Bearer``) are declared document-wide and every open path overrides that with none.
"""

from __future__ import annotations

from typing import Any, Final

from openapi_pydantic import (
    Components,
    Info,
    MediaType,
    OpenAPI,
    Operation,
    Parameter,
    PathItem,
    Reference,
    RequestBody,
    Response,
    Schema,
    SecurityScheme,
    Tag,
)
from openapi_pydantic.util import PydanticSchema, construct_open_api_with_schema_class
from pydantic import BaseModel

from .. import __version__
from ..config import Security, Settings
from .compat_schemas import (
    DeepStackError,
    DeepStackForm,
    DeepStackResponse,
    HubError,
    HubForm,
    HubResponse,
    ObjectDetectionRequest,
    RoboflowError,
    RoboflowResponse,
)
from .schemas import (
    BatchPredictRequest,
    BatchPredictResponse,
    ErrorResponse,
    HealthResponse,
    ModelDetails,
    ModelList,
    PredictRequest,
    PredictResponse,
    ReadyResponse,
    UrlPredictRequest,
)

OPENAPI_VERSION: Final = "3.1.1"
JSON = "application/json"

# A 32x32 grey PNG: a valid image, so "Try it out" and the explicit-example tests get a 200.
EXAMPLE_IMAGE_BASE64 = (
    "iVBORw0KGgoAAAANSUhEUgAAACAAAAAgCAIAAAD8GO2jAAAAKUlEQVR42u3NMQEAAAgDIDXy+h+W0A8K0Enq09QzgUAg"
    "EAgEAoFAcGUBwTMBluq9d7oAAAAASUVORK5CYII="
)

DESCRIPTION = """\
Small-object detection: send an image as base64 inside a JSON `POST /predict`, get back bounding boxes
in original-image pixels, class labels and confidences. Every error is one JSON envelope,
`{"error": {"code": ..., "message": ..., "field": ...}}`.

A client in a few lines:

```python
import base64, json, requests

with open("street.jpg", "rb") as f:
    payload = {"image": base64.b64encode(f.read()).decode("utf-8")}
response = requests.post("http://127.0.0.1:6060/predict", data=json.dumps(payload),
                         headers={"Content-type": "application/json"})
print(response.json()["detections"])
```
"""

# Reusable error answers, by name in #/components/responses.
ERROR_RESPONSES: dict[str, tuple[int, str]] = {
    "InvalidRequest": (
        400,
        "The request is malformed: the body is not a JSON object (`invalid_json`, `invalid_request`), a field "
        "is missing, of the wrong type, out of range or unknown (`invalid_field`, with `field`), or the image "
        "is not valid base64 (`invalid_base64`) or not a decodable image (`invalid_image`).",
    ),
    "Unauthorized": (401, "No valid API key: send it as `X-API-Key: <key>` or `Authorization: Bearer <key>`."),
    "Forbidden": (
        403,
        "An `image_url` this server does not fetch (`image_url_forbidden`): images by URL are off, the URL is "
        "under no prefix of SPECKS_IMAGE_URLS, or its host is a private, loopback or link-local address.",
    ),
    "NotFound": (404, "No model of that name is served (`not_found`, with `field`); the message lists those that are."),
    "PayloadTooLarge": (
        413,
        "Too big: the body is over the byte limit (`payload_too_large`), the image over the pixel limit "
        "(`image_too_large`), slicing would need more tiles than allowed (`too_many_tiles`), the request's "
        "passes and tiles together more model-input pixels than allowed (`too_many_input_pixels`), or a batch holds "
        "more images or image bytes than allowed (`batch_too_large`).",
    ),
    "UnsupportedMediaType": (415, "The body is not sent as `Content-Type: application/json`."),
    "ModelNotReady": (503, "The model is still loading, or failed to load (`model_not_ready`); see `GET /ready`."),
    "InternalError": (500, "An unexpected error; the message is generic and the details are in the server log."),
}

STRING = Schema.model_validate({"type": "string"})

SECURITY_SCHEMES: dict[str, SecurityScheme | Reference] = {
    "ApiKey": SecurityScheme.model_validate(
        {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "One of the server's API keys."}
    ),
    "Bearer": SecurityScheme(type="http", scheme="bearer", description="One of the server's API keys."),
}


def _pydantic(model: type[BaseModel]) -> PydanticSchema[BaseModel]:
    return PydanticSchema[BaseModel].model_validate({"schema_class": model})


def _json_body(model: type[BaseModel], example: Any = None) -> dict[str, MediaType]:
    return {JSON: MediaType(schema=_pydantic(model), example=example)}


def _one_of(*models: type[BaseModel], example: Any = None) -> dict[str, MediaType]:
    """A body that is exactly one of ``models`` (one image, or a batch)."""
    schema = Schema.model_validate({"oneOf": [_pydantic(model) for model in models]})
    return {JSON: MediaType(schema=schema, example=example)}


def _ok(description: str, model: type[BaseModel]) -> Response:
    return Response(description=description, content=_json_body(model))


def _errors(*names: str) -> dict[str, Response | Reference]:
    return {
        str(ERROR_RESPONSES[name][0]): Reference.model_validate({"$ref": f"#/components/responses/{name}"})
        for name in names
    }


def _operations(include_metrics: bool) -> dict[str, tuple[str, Operation]]:
    """Path -> (HTTP method, operation), without security (added per settings)."""
    operations = {
        "/predict": (
            "post",
            Operation(
                operationId="predict",
                tags=["detection"],
                summary="Detect objects in an image",
                description=(
                    "Only `image` is required, or `images` for a batch (never both); every other field overrides "
                    "a server default for this request. Unknown fields are refused, so a typo is not silently "
                    'ignored. A batch is answered `{"results": [...]}` in order, an image that failed holding '
                    "its own error envelope and status."
                ),
                requestBody=RequestBody(
                    required=True,
                    content=_one_of(
                        PredictRequest,
                        BatchPredictRequest,
                        UrlPredictRequest,
                        example={"image": EXAMPLE_IMAGE_BASE64, "conf": 0.25},
                    ),
                ),
                responses={
                    "200": Response(
                        description=(
                            "Detections, sorted by confidence (highest first), with the image size; for a batch, "
                            "one such answer (or error) per image."
                        ),
                        content=_one_of(PredictResponse, BatchPredictResponse),
                    ),
                    **_errors(
                        "InvalidRequest",
                        "Forbidden",
                        "NotFound",
                        "PayloadTooLarge",
                        "UnsupportedMediaType",
                        "ModelNotReady",
                        "InternalError",
                    ),
                },
            ),
        ),
        "/health": (
            "get",
            Operation(
                operationId="health",
                tags=["operations"],
                summary="Liveness: the process answers",
                responses={"200": _ok("The process is up (the model may still be loading).", HealthResponse)},
            ),
        ),
        "/ready": (
            "get",
            Operation(
                operationId="ready",
                tags=["operations"],
                summary="Readiness: the model is loaded and warm",
                responses={
                    "200": _ok("The server takes requests.", ReadyResponse),
                    **_errors("ModelNotReady"),
                },
            ),
        ),
        "/model": (
            "get",
            Operation(
                operationId="model",
                tags=["detection"],
                summary="A served model: input size, layout, class names, providers",
                description="The default model, or the one named by `?name=`.",
                parameters=[
                    Parameter.model_validate(
                        {
                            "name": "name",
                            "in": "query",
                            "required": False,
                            "description": "A served model's name (see `GET /models`); omitted: the default model.",
                            "schema": {"type": "string"},
                        }
                    )
                ],
                responses={
                    "200": _ok("The model.", ModelDetails),
                    **_errors("NotFound", "ModelNotReady", "InternalError"),
                },
            ),
        ),
        "/models": (
            "get",
            Operation(
                operationId="models",
                tags=["detection"],
                summary="Every served model: name, input size, classes, profile",
                responses={
                    "200": _ok("The served models, the default first.", ModelList),
                    **_errors("ModelNotReady", "InternalError"),
                },
            ),
        ),
    }
    operations.update(_compat_operations())
    if include_metrics:
        operations["/metrics"] = (
            "get",
            Operation(
                operationId="metrics",
                tags=["operations"],
                summary="Prometheus metrics",
                responses={
                    "200": Response(
                        description="Prometheus text format, or OpenMetrics when the Accept header asks for it.",
                        content={
                            "text/plain": MediaType(schema=STRING),
                            "application/openmetrics-text": MediaType(schema=STRING),
                        },
                    )
                },
            ),
        )
    return operations


# Statuses the compatible routes answer with their own error bodies (DeepStack: 415 becomes 400).
COMPAT_ERROR_STATUSES = {
    "400": "A bad image or field.",
    "404": "No served model of that name.",
    "413": "The body, image or batch is over a limit.",
    "503": "The model is still loading, or failed to load.",
    "500": "An unexpected error (details in the server log).",
}


COMPAT_UNAUTHORIZED = "A missing or wrong API key."
DEEPSTACK_TAG = "DeepStack / CodeProject.AI"
ROBOFLOW_TAG = "Roboflow"
HUB_TAG = "Ultralytics HUB"
# Each compatible API's error body, by the tag of its operations.
COMPAT_ERROR_MODELS: dict[str, type[BaseModel]] = {
    DEEPSTACK_TAG: DeepStackError,
    ROBOFLOW_TAG: RoboflowError,
    HUB_TAG: HubError,
}


def _compat_errors(model: type[BaseModel], extra: dict[str, str] | None = None) -> dict[str, Response | Reference]:
    statuses = {**COMPAT_ERROR_STATUSES, **(extra or {})}
    return {status: Response(description=text, content=_json_body(model)) for status, text in sorted(statuses.items())}


def _compat_error_model(operation: Operation) -> type[BaseModel] | None:
    """The error body of a compatible route (by its tag), None for Specks' own routes."""
    return next((COMPAT_ERROR_MODELS[tag] for tag in operation.tags or [] if tag in COMPAT_ERROR_MODELS), None)


def _deepstack_operation(
    operation_id: str, summary: str, parameters: list[Parameter | Reference] | None = None
) -> Operation:
    return Operation(
        operationId=operation_id,
        tags=[DEEPSTACK_TAG],
        summary=summary,
        description=(
            "What Home Assistant, Frigate, Blue Iris and the DeepStack / CodeProject.AI clients send: a "
            "multipart form with the picture as the file part `image`. Boxes are integer pixel corners."
        ),
        parameters=parameters,
        requestBody=_form_body(DeepStackForm),
        responses={"200": _ok("Detections, best first.", DeepStackResponse), **_compat_errors(DeepStackError)},
    )


def _form_body(model: type[BaseModel]) -> RequestBody:
    """A required multipart/form-data body (an upload API's picture and fields)."""
    return RequestBody(required=True, content={"multipart/form-data": MediaType(schema=_pydantic(model))})


def _path_parameter(name: str, description: str) -> Parameter:
    return Parameter.model_validate(
        {"name": name, "in": "path", "required": True, "description": description, "schema": {"type": "string"}}
    )


def _compat_operations() -> dict[str, tuple[str, Operation]]:
    """The main routes of the compatible APIs (docs/compatible-apis.md has the rest)."""
    model_parameter = _path_parameter("model", "A served model's name (see `GET /models`).")
    model_id_parameter = _path_parameter(
        "model_id", "A served model's name, or any other id (answered by the default model)."
    )
    return {
        "/v1/vision/detection": ("post", _deepstack_operation("deepstackDetection", "DeepStack detection")),
        "/v1/vision/custom/{model}": (
            "post",
            _deepstack_operation("deepstackCustom", "DeepStack custom-model detection", [model_parameter]),
        ),
        "/infer/object_detection": (
            "post",
            Operation(
                operationId="roboflowObjectDetection",
                tags=[ROBOFLOW_TAG],
                summary="Roboflow object detection (inference-sdk)",
                description=(
                    "What `inference_sdk.InferenceHTTPClient.infer` sends. A model id this server does not serve "
                    "by name is answered by its default model. A list of images is answered with a list."
                ),
                requestBody=RequestBody(required=True, content=_json_body(ObjectDetectionRequest)),
                responses={
                    "200": Response(
                        description="One answer per image (a list for a list of images).",
                        content={
                            JSON: MediaType(
                                schema=Schema.model_validate(
                                    {
                                        "oneOf": [
                                            _pydantic(RoboflowResponse),
                                            {"type": "array", "items": _pydantic(RoboflowResponse)},
                                        ]
                                    }
                                )
                            )
                        },
                    ),
                    **_compat_errors(RoboflowError, {"415": "The body is not JSON (Content-Type: application/json)."}),
                },
            ),
        ),
        "/v1/predict/{model_id}": (
            "post",
            Operation(
                operationId="ultralyticsHubPredict",
                tags=[HUB_TAG],
                summary="Ultralytics HUB inference",
                description=(
                    "What scripts written for Ultralytics HUB's inference API send: a multipart form with the "
                    "picture as the file part `file` (or `image`) and `imgsz`, `conf`, `iou` (or `size`, "
                    "`confidence`). Boxes are pixel corners of the picture as displayed."
                ),
                parameters=[model_id_parameter],
                requestBody=_form_body(HubForm),
                responses={
                    "200": _ok("Detections, best first.", HubResponse),
                    **_compat_errors(HubError, {"415": "The body is not a form (multipart/form-data)."}),
                },
            ),
        ),
    }


def _secure(path: str, operation: Operation, security: Security) -> Operation:
    """Open paths need no key; the others may answer 401."""
    if security.is_open(path):
        return operation.model_copy(update={"security": []})
    compat_error = _compat_error_model(operation)
    unauthorized = (
        _errors("Unauthorized")
        if compat_error is None
        else {"401": Response(description=COMPAT_UNAUTHORIZED, content=_json_body(compat_error))}
    )
    responses = {**(operation.responses or {}), **unauthorized}
    return operation.model_copy(update={"responses": dict(sorted(responses.items()))})


def build_openapi(settings: Settings) -> dict[str, Any]:
    """The OpenAPI document for a server run with ``settings``, as a JSON-ready dict."""
    operations = _operations(include_metrics=settings.observability.metrics_enabled)
    security = settings.security
    if security.enabled:
        operations = {path: (method, _secure(path, op, security)) for path, (method, op) in operations.items()}
    document = OpenAPI(
        openapi=OPENAPI_VERSION,
        info=Info(title="Specks", version=__version__, description=DESCRIPTION),
        tags=[
            Tag(name="detection", description="Object detection and the model behind it."),
            Tag(name="operations", description="Liveness, readiness and metrics for orchestrators."),
            Tag(name=DEEPSTACK_TAG, description="The API Home Assistant, Frigate and Blue Iris call."),
            Tag(name=ROBOFLOW_TAG, description="The API Roboflow's inference-sdk calls."),
            Tag(name=HUB_TAG, description="The inference API of Ultralytics HUB, as its scripts call it."),
        ],
        paths={path: PathItem.model_validate({method: op}) for path, (method, op) in operations.items()},
        components=Components(
            responses={
                name: Response(description=description, content=_json_body(ErrorResponse))
                for name, (_status, description) in ERROR_RESPONSES.items()
                if name != "Unauthorized" or security.enabled
            },
            securitySchemes=SECURITY_SCHEMES if security.enabled else None,
        ),
        security=[{"ApiKey": []}, {"Bearer": []}] if security.enabled else None,
    )
    document = construct_open_api_with_schema_class(document)
    dumped: dict[str, Any] = document.model_dump(mode="json", by_alias=True, exclude_none=True)
    _drop_query_only_fields_of_path_parameters(dumped)
    return dumped


def _drop_query_only_fields_of_path_parameters(document: dict[str, Any]) -> None:
    """openapi-pydantic writes every Parameter field's default; 3.1 allows these two on queries only."""
    for item in document["paths"].values():
        for operation in item.values():
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "path":
                    parameter.pop("allowEmptyValue", None)
                    parameter.pop("allowReserved", None)
