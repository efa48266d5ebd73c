"""The one exception tree of Specks.

Every failure a caller can cause or meet is a ``SpecksError``. Library errors
(binascii, Pillow, onnxruntime, onnx) are translated where they happen and
re-raised ``from`` the original, so the web layer and the CLI each catch one type.
This module imports nothing beyond the standard library: HTTP status codes live in
``specks.web.errors`` (``HTTP_STATUS``, ``encode_error``), the single place that maps this tree
to HTTP for every front-end.

    SpecksError                         code             (HTTP, see web.errors.HTTP_STATUS)
    ├── InvalidRequestError             invalid_request          400
    │   ├── InvalidFieldError           invalid_field            400
    │   ├── InvalidJSONError            invalid_json             400
    │   ├── InvalidBase64Error          invalid_base64           400
    │   ├── ImageDecodeError            invalid_image            400
    │   ├── InvalidImageUrlError        invalid_image_url        400  (a bad image URL, or its fetch failed)
    │   └── DatasetError                invalid_dataset          400  (specks train: unreadable or empty data)
    ├── UnsupportedMediaTypeError       unsupported_media_type   415
    ├── PayloadTooLargeError            payload_too_large        413
    │   ├── ImageTooLargeError          image_too_large          413
    │   ├── TooManyTilesError           too_many_tiles           413
    │   ├── TooManyInputPixelsError     too_many_input_pixels    413
    │   └── BatchTooLargeError          batch_too_large          413
    ├── AuthenticationError             unauthorized             401
    ├── ForbiddenError                  forbidden                403
    │   └── ImageUrlForbiddenError      image_url_forbidden      403  (a URL the server does not fetch)
    ├── NotFoundError                   not_found                404
    ├── ModelError                      model_error              500
    │   ├── ModelLoadError              model_load_error         500
    │   └── UnsupportedModelError       unsupported_model        500
    ├── ModelNotReadyError              model_not_ready          503
    ├── DeadlineExceededError           deadline_exceeded        503  (past SPECKS_REQUEST_TIMEOUT_S)
    ├── ClientGoneError                 client_closed_request    499  (nobody reads it; logged)
    ├── RequestTimeoutError             request_timeout          408  (the body arrived too slowly)
    ├── ConfigError                     config_error             500
    ├── TrainingError                   training_error           500  (specks train: no model to write)
    ├── AccuracyDropError               accuracy_drop            500  (specks quantize: INT8 lost too much AP50)
    └── InferenceError                  inference_error          500
"""

from __future__ import annotations

import itertools


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


class InvalidImageUrlError(InvalidRequestError):
    """An image URL that is malformed, or whose fetch failed (status, content type, time)."""

    code = "invalid_image_url"


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


class TooManyInputPixelsError(PayloadTooLargeError):
    """One request's model inputs (every tile, pass, flip, full-image pass) add up to more pixels than allowed."""

    code = "too_many_input_pixels"


class BatchTooLargeError(PayloadTooLargeError):
    """A batch holds more images, or more image bytes, than allowed."""

    code = "batch_too_large"


class AuthenticationError(SpecksError):
    """The API key is missing or wrong."""

    code = "unauthorized"


class ForbiddenError(SpecksError):
    """The request asks for something this server does not do for anyone (a rule, not a key)."""

    code = "forbidden"


class ImageUrlForbiddenError(ForbiddenError):
    """An image URL this server does not fetch: URLs off, not under an allowed prefix, or a private address."""

    code = "image_url_forbidden"


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


class DeadlineExceededError(SpecksError):
    """The request's work ran past its deadline (SPECKS_REQUEST_TIMEOUT_S) and was stopped."""

    code = "deadline_exceeded"


class ClientGoneError(SpecksError):
    """The client closed its connection while its request was being worked on; the work stopped."""

    code = "client_closed_request"


class RequestTimeoutError(SpecksError):
    """The request body did not arrive in time (a stalled or too slow upload)."""

    code = "request_timeout"


class ConfigError(SpecksError):
    """A setting (environment variable or CLI flag) has an invalid value."""

    code = "config_error"


class InferenceError(SpecksError):
    """The inference runtime failed on a valid input."""

    code = "inference_error"


class TrainingError(SpecksError):
    """A training run that ended without a model to write (stopped before its first validation)."""

    code = "training_error"


class AccuracyDropError(SpecksError):
    """A quantized copy lost more AP50 on held-out images than allowed, so it was not written."""

    code = "accuracy_drop"


# -- quoting client input in messages -------------------------------------------------------------

# Characters of client input a message or a ``field`` may quote; longer input is cut in the middle.
MAX_SHOWN_CHARS = 200


def clipped(text: str, max_chars: int = MAX_SHOWN_CHARS) -> str:
    """``text`` whole when short, else its start and end around ``...(N characters)...``.

    Every message, ``field`` and log line that may quote client input passes through here, so
    no answer or log line grows with what a client sent (a 15 MB field name stays ~200 characters).
    """
    marker = f"...({len(text)} characters)..."
    if len(text) <= max(max_chars, len(marker)):
        return text
    kept = max(max_chars - len(marker), 0)
    tail = kept // 3
    return text[: kept - tail] + marker + text[len(text) - tail :]


def shown(value: object, max_chars: int = MAX_SHOWN_CHARS) -> str:
    """A client value as a message quotes it (its ``repr``), in about ``max_chars`` characters.

    A string is cut before it is quoted (the marker counts its own characters); a list or dict
    shows its first items and how many it holds.
    """
    if isinstance(value, str):
        return repr(clipped(value, max_chars))
    item_chars = max(max_chars // 4, 16)
    if isinstance(value, list):
        items = [shown(item, item_chars) for item in value[:max_chars]]
        return "[" + _first_items(items, len(value), max_chars) + "]"
    if isinstance(value, dict):
        pairs = itertools.islice(value.items(), max_chars)
        items = [f"{shown(key, item_chars)}: {shown(item, item_chars)}" for key, item in pairs]
        return "{" + _first_items(items, len(value), max_chars) + "}"
    return clipped(repr(value), max_chars)


def _first_items(texts: list[str], count: int, max_chars: int) -> str:
    """The first of ``texts`` that fit in ``max_chars``, then how many items there were when not all fit."""
    kept: list[str] = []
    used = 0
    for text in texts:
        if used + len(text) > max_chars:
            break
        kept.append(text)
        used += len(text) + 2
    if len(kept) < count:
        kept.append(f"...({count} items)")
    return ", ".join(kept)
