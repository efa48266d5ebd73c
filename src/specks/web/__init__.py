"""The HTTP API: a Flask application factory, ``create_app`` (in ``app``).

Gunicorn starts it as ``specks.web:create_app()``. Importing this package loads nothing else:
``specks.web.server`` runs in the gunicorn master, which must not import onnxruntime before it
forks (ONNX Runtime starts a thread on import; a forked worker inherits its handle but not the
thread, and aborts at exit trying to join it). ``create_app`` is resolved on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
