"""Prometheus metrics of detection, for every front-end (no web framework here).

    specks_requests_total{route,method,status}           counter (recorded by the HTTP layer)
    specks_request_duration_seconds{route}               histogram of whole requests (HTTP layer)
    specks_stage_duration_seconds{route,stage}           histogram of decode/preprocess/inference/postprocess/merge
    specks_tiles_per_request{route}                      histogram (0: the image was not sliced)
    specks_images_in_flight{route}                       gauge of images being predicted (waiting for a slot included)
    specks_model_info{name,format,layout,input_size}     gauge, 1 once a model is loaded

``route`` is the detection route that asked (``/predict``, ``/v1/vision/detection``, ...).
Under gunicorn every worker writes its metrics to files in ``PROMETHEUS_MULTIPROC_DIR``
(set up by ``specks.web.server``) and ``render_metrics`` adds up all workers; without that
variable (tests, Ray replicas) the process's default registry is served.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector

from ..config import MULTIPROC_DIR_ENV

# Stages of ``Prediction.timing_ms`` that become specks_stage_duration_seconds{stage}.
STAGES = ("decode", "preprocess", "inference", "postprocess", "merge")

REQUEST_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
STAGE_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
TILE_BUCKETS = (0, 1, 2, 4, 8, 16, 32, 64, 128, 256)


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
                "Time spent in each stage of a prediction, by detection route.",
                ["route", "stage"],
                buckets=STAGE_BUCKETS_S,
                registry=registry,
            ),
            tiles=Histogram(
                "specks_tiles_per_request",
                "Tiles one prediction was sliced into (0: not sliced).",
                ["route"],
                buckets=TILE_BUCKETS,
                registry=registry,
            ),
            images_in_flight=Gauge(
                "specks_images_in_flight",
                "Images being predicted now (waiting for a prediction slot included), by detection route.",
                ["route"],
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

    @contextmanager
    def in_flight(self, route: str, images: int = 1) -> Iterator[None]:
        gauge = self.images_in_flight.labels(route=route)
        gauge.inc(images)
        try:
            yield
        finally:
            gauge.dec(images)

    def observe_prediction(self, route: str, timing_ms: dict[str, float], tile_count: int) -> None:
        for stage in STAGES:
            if stage in timing_ms:
                self.stage_seconds.labels(route=route, stage=stage).observe(timing_ms[stage] / 1000)
        self.tiles.labels(route=route).observe(tile_count)

    def note_model(self, info: Any) -> None:
        """Set specks_model_info for a loaded model (a ``ModelInfo``)."""
        height, width = info.input_hw
        self.model_info.labels(
            name=info.name, format=info.source_format, layout=info.layout.value, input_size=f"{width}x{height}"
        ).set(1)


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
