"""Production serving: gunicorn with one model per worker process."""

from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication

from ..config import Settings
from . import create_app

def gunicorn_options(settings: Settings) -> dict[str, Any]:
    return {
        "bind": f"{settings.host}:{settings.port}",
        "workers": settings.resolved_workers(),
        "worker_class": "gthread",
        # I/O threads per worker (slow clients, keep-alive); inference is bounded by ORT's threads.
        "threads": settings.io_threads,
        "timeout": settings.request_timeout_s,
        "graceful_timeout": settings.graceful_timeout_s,
        "keepalive": 5,
        "preload_app": False,  # each worker loads its own model after the fork
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "info",
        "limit_request_line": 8190,
        "limit_request_fields": 100,
    }


class SpecksServer(BaseApplication):  # type: ignore[misc]
    """Runs ``create_app(settings)`` in each gunicorn worker."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        super().__init__()

    def load_config(self) -> None:
        for key, value in gunicorn_options(self.settings).items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        return create_app(self.settings)


def serve(settings: Settings) -> None:
    SpecksServer(settings).run()
