"""Request ids, access logs and Prometheus metrics for the HTTP API.

Every response carries an ``X-Request-ID`` header: the client's own id when it is sane
(1..128 characters of ``A-Za-z0-9._-``), a fresh uuid4 hex otherwise. The id is in every
log record made while the request is served (``specks.logs.request_id_var``), and each
request ends with one access-log line on the ``specks.access`` logger.

Metrics (``GET /metrics``, Prometheus text or OpenMetrics by the ``Accept`` header):

    specks_requests_total{route,method,status}    counter; route is the URL rule, "unmatched" on 404/405
    specks_request_duration_seconds{route}        histogram of whole requests
    specks_stage_duration_seconds{stage}          histogram of decode/preprocess/inference/postprocess/merge
    specks_tiles_per_request                      histogram (0: the image was not sliced)
    specks_images_in_flight                       gauge of /predict requests being served
    specks_model_info{name,format,layout,input_size}  gauge, 1 once the model is loaded

Under gunicorn every worker writes its metrics to files in ``PROMETHEUS_MULTIPROC_DIR``
(set up by ``specks.web.server``) and ``/metrics`` adds up all workers; without that
variable (tests, ``flask run``) the process's default registry is served.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
import uuid
from dataclasses import dataclass

from flask import Flask, Response, current_app, g, request
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector

from ..config import MULTIPROC_DIR_ENV, Settings
from ..logs import request_id_var
from .state import ModelHolder

REQUEST_ID_HEADER = "X-Request-ID"
UNMATCHED_ROUTE = "unmatched"
PREDICT_ROUTE = "/predict"
# Stages of ``Prediction.timing_ms`` that become specks_stage_duration_seconds{stage}.
STAGES = ("decode", "preprocess", "inference", "postprocess", "merge")
# Any other method is counted as "other": a label value per made-up method would be unbounded.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

REQUEST_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
STAGE_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
TILE_BUCKETS = (0, 1, 2, 4, 8, 16, 32, 64, 128, 256)

_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
_EXTENSION = "specks.observability"

access_log = logging.getLogger("specks.access")


@dataclass(frozen=True)
class Metrics:
    """The Prometheus metrics of one process (see the module docstring)."""

    requests: Counter
    request_seconds: Histogram
    stage_seconds: Histogram
    tiles: Histogram
    images_in_flight: Gauge
    model_info: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry) -> Metrics:
        return cls(
            requests=Counter(
                "specks_requests", "HTTP requests answered.", ["route", "method", "status"], registry=registry
            ),
            request_seconds=Histogram(
                "specks_request_duration_seconds",
                "Time to answer a request, by route.",
                ["route"],
                buckets=REQUEST_BUCKETS_S,
                registry=registry,
            ),
            stage_seconds=Histogram(
                "specks_stage_duration_seconds",
                "Time spent in each stage of a prediction.",
                ["stage"],
                buckets=STAGE_BUCKETS_S,
                registry=registry,
            ),
            tiles=Histogram(
                "specks_tiles_per_request",
                "Tiles one prediction was sliced into (0: not sliced).",
                buckets=TILE_BUCKETS,
                registry=registry,
            ),
            images_in_flight=Gauge(
                "specks_images_in_flight",
                "Predict requests being served now.",
                multiprocess_mode="livesum",
                registry=registry,
            ),
            model_info=Gauge(
                "specks_model_info",
                "The loaded model (value 1).",
                ["name", "format", "layout", "input_size"],
                multiprocess_mode="livemax",
                registry=registry,
            ),
        )


_process_metrics: Metrics | None = None
_process_metrics_lock = threading.Lock()


def process_metrics() -> Metrics:
    """This process's metrics, created on first use; every app in the process shares them.

    Created lazily, not at import, so that a gunicorn worker creates them after the fork,
    with ``PROMETHEUS_MULTIPROC_DIR`` already set; created once, because a second
    registration of the same names in the default registry raises.
    """
    global _process_metrics
    with _process_metrics_lock:
        if _process_metrics is None:
            _process_metrics = Metrics.create(REGISTRY)
        return _process_metrics


def render_metrics(accept_header: str | None) -> tuple[bytes, str]:
    """The exposition body and its content type: all workers' files, or this process's registry."""
    multiproc_dir = os.environ.get(MULTIPROC_DIR_ENV)
    registry = REGISTRY
    if multiproc_dir:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=multiproc_dir)
    encoder, content_type = choose_encoder(accept_header or "")
    return encoder(registry), content_type


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
    metrics = process_metrics() if settings.observability.metrics_enabled else None
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
    metrics = _state().metrics
    if metrics is not None and _route_label() == PREDICT_ROUTE:
        metrics.images_in_flight.inc()
        g.specks_in_flight = True


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
    timing_ms: dict[str, float] | None = g.get("prediction_timing_ms")  # set by the predict route
    if timing_ms:
        for stage in STAGES:
            if stage in timing_ms:
                metrics.stage_seconds.labels(stage=stage).observe(timing_ms[stage] / 1000)
        if "tiles" in timing_ms:
            metrics.tiles.observe(timing_ms["tiles"])
    _note_model(state)


def _note_model(state: _AppState) -> None:
    """Set specks_model_info once this app's model is loaded."""
    if state.model_noted or state.metrics is None:
        return
    holder: ModelHolder = current_app.extensions["specks.model"]
    if not holder.ready:
        return
    info = holder.get().model.info
    height, width = info.input_hw
    state.metrics.model_info.labels(
        name=info.name, format=info.source_format, layout=info.layout.value, input_size=f"{width}x{height}"
    ).set(1)
    state.model_noted = True


def _end_request(exc: BaseException | None) -> None:
    if g.pop("specks_in_flight", False):
        metrics = _state().metrics
        if metrics is not None:
            metrics.images_in_flight.dec()
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
