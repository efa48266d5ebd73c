"""Request ids, access logs and Prometheus metrics for the HTTP API.

Every response carries an ``X-Request-ID`` header: the client's own id when it is sane
(1..128 characters of ``A-Za-z0-9._-``), a fresh uuid4 hex otherwise. The id is in every
log record made while the request is served (``specks.logs.request_id_var``), and each
request ends with one access-log line on the ``specks.access`` logger.

Metrics: ``GET /metrics`` serves ``specks.service.metrics`` (Prometheus text or OpenMetrics by the
``Accept`` header). This module counts requests by route, method and status and times them;
the detection stages, tiles and images in flight are recorded by ``service.DetectionService``
for every detection route.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from dataclasses import dataclass

from flask import Flask, Response, current_app, g, request

from ..config import Settings
from ..logs import request_id_var
from ..service.metrics import Metrics, process_metrics, render_metrics
from .http import current_service

REQUEST_ID_HEADER = "X-Request-ID"
UNMATCHED_ROUTE = "unmatched"
# Any other method is counted as "other": a label value per made-up method would be unbounded.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
_EXTENSION = "specks.observability"

access_log = logging.getLogger("specks.access")


def request_id_from(header: str | None) -> str:
    """The client's request id when it is sane, else a new one (uuid4 hex)."""
    if header is not None and _SANE_REQUEST_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


@dataclass
class _AppState:
    metrics: Metrics | None  # None: metrics disabled for this app
    model_noted: bool = False


def register_observability(app: Flask, settings: Settings) -> None:
    """Request ids and access logs always; metrics and ``GET /metrics`` when enabled."""
    metrics: Metrics | None = process_metrics() if settings.observability.metrics_enabled else None
    app.extensions[_EXTENSION] = _AppState(metrics)
    app.before_request(_start_request)
    app.after_request(_finish_request)
    app.teardown_request(_end_request)
    if metrics is not None:
        app.add_url_rule("/metrics", "metrics", _metrics_view, methods=["GET"])


def _state() -> _AppState:
    state: _AppState = current_app.extensions[_EXTENSION]
    return state


def _route_label() -> str:
    """The URL rule ("/predict"), never the raw path: label values must stay few."""
    rule = request.url_rule
    return rule.rule if rule is not None else UNMATCHED_ROUTE


def _start_request() -> None:
    g.specks_started = time.perf_counter()
    g.request_id = request_id_from(request.headers.get(REQUEST_ID_HEADER))
    g.specks_request_id_token = request_id_var.set(g.request_id)


def _finish_request(response: Response) -> Response:
    request_id = g.get("request_id") or request_id_from(None)
    response.headers[REQUEST_ID_HEADER] = request_id
    started = g.get("specks_started")
    duration_s = time.perf_counter() - started if started is not None else 0.0
    route = _route_label()
    state = _state()
    if state.metrics is not None:
        _record(state, route, response.status_code, duration_s)
    access_log.info(
        "%s %s %d %.1fms",
        request.method,
        request.path,
        response.status_code,
        duration_s * 1000,
        extra={
            "method": request.method,
            "route": route,
            "path": request.path,
            "status": response.status_code,
            "duration_ms": round(duration_s * 1000, 3),
            "bytes": response.content_length,
            "remote_addr": request.remote_addr,
            "request_id": request_id,
        },
    )
    return response


def _record(state: _AppState, route: str, status: int, duration_s: float) -> None:
    metrics = state.metrics
    assert metrics is not None
    method = request.method if request.method in KNOWN_METHODS else "other"
    metrics.requests.labels(route=route, method=method, status=str(status)).inc()
    metrics.request_seconds.labels(route=route).observe(duration_s)
    _note_model(state)


def _note_model(state: _AppState) -> None:
    """Set specks_model_info once this app's models are loaded, one series per model."""
    if state.model_noted or state.metrics is None:
        return
    holder = current_service().holder
    if not holder.ready:
        return
    for detector in holder.detectors().values():
        state.metrics.note_model(detector.model.info)
    state.model_noted = True


def _end_request(exc: BaseException | None) -> None:
    token = g.pop("specks_request_id_token", None)
    if token is not None:
        try:
            request_id_var.reset(token)
        except ValueError:  # torn down in another context (a test client keeping contexts)
            request_id_var.set(None)


def _metrics_view() -> Response:
    _note_model(_state())
    body, content_type = render_metrics(request.headers.get("Accept"))
    return Response(body, status=200, content_type=content_type)
