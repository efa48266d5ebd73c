"""Specks' own ``POST /predict``: a JSON body (an image, a batch or an image URL) -> the door -> a JSON answer.

The body is read before a prediction slot is taken, so a slow upload holds no slot, and the
request's deadline starts once it has arrived. Base64 is decoded here, outside any slot; its time
counts in the answer's ``decode`` stage.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..core.base64_text import decode_base64
from ..core.pipeline import Prediction
from ..errors import SpecksError
from ..service.batching import check_batch_count, read_each
from ..service.service import BatchResult, DetectionService
from .errors import encode_error
from .schemas import BatchPredictRequest, UrlPredictRequest, encode_prediction, parse_predict_body


def handle_predict(
    service: DetectionService,
    read: Callable[[int], bytes],
    *,
    content_type: str | None,
    content_length: int | None,
    route: str = "/predict",
    client_gone: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """read -> decode -> the door -> encode; errors propagate to ``web.errors.encode_error``.

    ``client_gone``: see ``specks.core.deadline``.
    """
    raw = service.read_body(read, content_length)
    deadline = service.deadline(client_gone=client_gone)
    request = parse_predict_body(service.decode_json(raw, content_type=content_type))
    del raw
    model, visualize = request.model, request.visualize
    if isinstance(request, BatchPredictRequest):
        check_batch_count(len(request.images), service.settings.limits)  # before any image is decoded
        images, base64_ms = decoded_images(request.images)
        results = service.predict_batch(
            images, request, route=route, model=model, visualize=visualize, deadline=deadline
        )
        return encode_batch(results, base64_ms)
    if isinstance(request, UrlPredictRequest):
        image = service.fetch_image(request.image_url)  # before a slot is taken: the network is slow
        text_ms = 0.0
    else:
        started = time.perf_counter()
        image = decode_base64(request.image)
        text_ms = (time.perf_counter() - started) * 1000
    prediction = service.predict(image, request, route=route, model=model, visualize=visualize, deadline=deadline)
    return encode_prediction(prediction.with_stage("decode", text_ms) if text_ms else prediction)


def decoded_images(texts: list[str]) -> tuple[list[bytes | SpecksError], list[float]]:
    """Each base64 text's bytes, or the error that is its answer alone; and the milliseconds each took."""
    elapsed_ms: list[float] = []

    def timed_decode(text: str) -> bytes:
        started = time.perf_counter()
        try:
            return decode_base64(text)
        finally:
            elapsed_ms.append((time.perf_counter() - started) * 1000)

    return read_each(texts, timed_decode), elapsed_ms


def encode_batch(results: list[BatchResult], base64_ms: list[float]) -> dict[str, Any]:
    """``schemas.BatchPredictResponse``: each image's answer (its base64 time in ``decode``), or its
    error envelope and the status it would have had alone."""
    encoded = []
    for result, elapsed_ms in zip(results, base64_ms, strict=True):
        if isinstance(result, Prediction):
            encoded.append(encode_prediction(result.with_stage("decode", elapsed_ms)))
        else:
            answer = encode_error(result)
            encoded.append({**answer.envelope(), "status": answer.status})
    return {"results": encoded}
