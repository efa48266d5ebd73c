"""The Flask application factory.

Each process builds its own app and loads its own model in the background (``/health`` answers
at once, ``/ready`` once the model is warm). Under gunicorn (``specks.web.server``) a worker
only takes connections once that loading has ended.
"""

from __future__ import annotations

from collections.abc import Mapping

from flask import Flask

from ..config import Settings
from ..core.pipeline import Detector
from ..service.holder import ModelHolder
from ..service.metrics import process_metrics
from ..service.service import DetectionService
from .auth import register_auth
from .cors import register_cors
from .deepstack import deepstack
from .docs import register_docs
from .errors import register_error_handlers
from .http import SERVICE_EXTENSION
from .observability import register_observability
from .page import register_page
from .roboflow import roboflow
from .routes import api
from .ultralytics_hub import ultralytics_hub


def create_app(
    settings: Settings | None = None,
    *,
    detector: Detector | None = None,
    detectors: Mapping[str, Detector] | None = None,
    load_in_background: bool = True,
) -> Flask:
    """Build the app. ``detector`` / ``detectors`` (by name) inject models already loaded (tests, benchmarks)."""
    settings = settings or Settings.from_env()
    app = Flask("specks")
    # No redirect from a path with doubled slashes (/model//registry): Werkzeug would build its
    # absolute Location from the client's Host header. Such a path is a 404; a doubled leading
    # slash (inference-sdk with a trailing '/' in its URL) still matches its route.
    app.url_map.merge_slashes = False
    app.config["MAX_CONTENT_LENGTH"] = settings.limits.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    holder = ModelHolder(settings, detector, detectors=detectors)
    metrics = process_metrics() if settings.observability.metrics_enabled else None
    app.extensions[SERVICE_EXTENSION] = DetectionService(settings, holder, metrics)
    app.register_blueprint(api)
    app.register_blueprint(deepstack)
    app.register_blueprint(roboflow)
    app.register_blueprint(ultralytics_hub)
    register_error_handlers(app)
    # Order matters: request ids and metrics first, so refused (401) requests are logged and counted.
    register_observability(app, settings)
    # CORS before auth: its headers go on every answer, a refused key's 401 included.
    register_cors(app, settings)
    register_auth(app, settings)
    register_docs(app, settings)
    register_page(app)
    holder.start_loading(background=load_in_background)
    return app
