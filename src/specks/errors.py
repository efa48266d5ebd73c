"""The one exception tree of Specks.

Every failure a caller can cause or meet is a ``SpecksError``. Library errors
(binascii, Pillow, onnxruntime, onnx) are translated where they happen and
re-raised ``from`` the original, so the web layer and the CLI each catch one type.
This module imports nothing beyond the standard library: HTTP status codes live in
``specks.service`` (``HTTP_STATUS``, ``encode_error``), the single place that maps this tree
to HTTP for every front-end.

    SpecksError                         code             (HTTP, see service.HTTP_STATUS)
    ├── InvalidRequestError             invalid_request          400
    │   ├── InvalidFieldError           invalid_field            400
    │   ├── InvalidJSONError            invalid_json             400
    │   ├── InvalidBase64Error          invalid_base64           400
    │   ├── ImageDecodeError            invalid_image            400
    │   └── DatasetError                invalid_dataset          400  (specks train: unreadable or empty data)
    ├── UnsupportedMediaTypeError       unsupported_media_type   415
    ├── PayloadTooLargeError            payload_too_large        413
    │   ├── ImageTooLargeError          image_too_large          413
    │   ├── TooManyTilesError           too_many_tiles           413
    │   └── BatchTooLargeError          batch_too_large          413
    ├── AuthenticationError             unauthorized             401
    ├── NotFoundError                   not_found                404
    ├── ModelError                      model_error              500
    │   ├── ModelLoadError              model_load_error         500
    │   └── UnsupportedModelError       unsupported_model        500
    ├── ModelNotReadyError              model_not_ready          503
    ├── ConfigError                     config_error             500
    ├── TrainingError                   training_error           500  (specks train: no model to write)
    └── InferenceError                  inference_error          500
"""

from __future__ import annotations


class SpecksError(Exception):
    """Base of every error Specks raises on purpose.

    ``code`` is a stable machine-readable identifier; ``field`` names the request
    field at fault when there is one. The message says what is wrong and, where it
    can, how to fix it.
    """

    code = "internal_error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidRequestError(SpecksError):
    """The request is malformed: the client must change it."""

    code = "invalid_request"


class InvalidFieldError(InvalidRequestError):
    """A field is missing, of the wrong type or out of range."""

    code = "invalid_field"


class InvalidJSONError(InvalidRequestError):
    """The body is not valid JSON, or is nested too deeply."""

    code = "invalid_json"


class InvalidBase64Error(InvalidRequestError):
    """The image string is not valid base64."""

    code = "invalid_base64"


class ImageDecodeError(InvalidRequestError):
    """The bytes are not an image Specks can decode."""

    code = "invalid_image"


class DatasetError(InvalidRequestError):
    """A training or validation dataset that cannot be used as it is (no images, no boxes, unknown layout)."""

    code = "invalid_dataset"


class UnsupportedMediaTypeError(SpecksError):
    """The body is not JSON (wrong Content-Type)."""

    code = "unsupported_media_type"


class PayloadTooLargeError(SpecksError):
    """The request is larger than a configured limit."""

    code = "payload_too_large"


class ImageTooLargeError(PayloadTooLargeError):
    """The image has more pixels than allowed, or is a decompression bomb."""

    code = "image_too_large"


class TooManyTilesError(PayloadTooLargeError):
    """Sliced inference would need more tiles than allowed."""

    code = "too_many_tiles"


class BatchTooLargeError(PayloadTooLargeError):
    """A batch holds more images, or more image bytes, than allowed."""

    code = "batch_too_large"


class AuthenticationError(SpecksError):
    """The API key is missing or wrong."""

    code = "unauthorized"


class NotFoundError(SpecksError):
    """The request names something this server does not have (e.g. a model)."""

    code = "not_found"


class ModelError(SpecksError):
    """A model file cannot be used."""

    code = "model_error"


class ModelLoadError(ModelError):
    """A model file is missing, unreadable or not a valid model."""

    code = "model_load_error"


class UnsupportedModelError(ModelError):
    """A model loads but its inputs or outputs are of no layout Specks knows."""

    code = "unsupported_model"


class ModelNotReadyError(SpecksError):
    """The model is not loaded or warmed up yet."""

    code = "model_not_ready"


class ConfigError(SpecksError):
    """A setting (environment variable or CLI flag) has an invalid value."""

    code = "config_error"


class InferenceError(SpecksError):
    """The inference runtime failed on a valid input."""

    code = "inference_error"


class TrainingError(SpecksError):
    """A training run that ended without a model to write (stopped before its first validation)."""

    code = "training_error"
