"""The Flask application factory.

Each process builds its own app and loads its own model in the background (``/health`` answers
at once, ``/ready`` once the model is warm). Under gunicorn (``specks.web.server``) a worker
only takes connections once that loading has ended.
"""

from __future__ import annotations

from flask import Flask

from ..config import Settings
from ..pipeline import Detector
from .auth import register_auth
from .docs import register_docs
from .errors import register_error_handlers
from .observability import register_observability
from .routes import api
from .state import MODEL_EXTENSION, ModelHolder


def create_app(
    settings: Settings | None = None, *, detector: Detector | None = None, load_in_background: bool = True
) -> Flask:
    """Build the app. ``detector`` injects an already loaded model (tests, benchmarks)."""
    settings = settings or Settings.from_env()
    app = Flask("specks")
    app.config["MAX_CONTENT_LENGTH"] = settings.limits.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    holder = ModelHolder(settings, detector)
    app.extensions[MODEL_EXTENSION] = holder
    app.register_blueprint(api)
    register_error_handlers(app)
    # Order matters: request ids and metrics first, so refused (401) requests are logged and counted.
    register_observability(app, settings)
    register_auth(app, settings)
    register_docs(app, settings)
    holder.start_loading(background=load_in_background)
    return app
