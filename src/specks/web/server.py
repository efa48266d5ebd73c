"""Production serving: gunicorn with one model per worker process.

Metrics: each worker writes its Prometheus metrics to files in ``PROMETHEUS_MULTIPROC_DIR``
and ``/metrics`` adds them up. ``serve`` sets that directory up before any worker starts
(an empty temporary one, or the operator's own, emptied), and the master forgets a dead
worker's live gauges (``child_exit``). Logs: one handler on the root logger in the
configured format, inherited by the workers; gunicorn's own messages go through it too.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from gunicorn import glogging
from gunicorn.app.base import BaseApplication
from prometheus_client import multiprocess, values

from ..config import MULTIPROC_DIR_ENV, Settings
from ..logs import configure_logging

log = logging.getLogger(__name__)


class GunicornLogger(glogging.Logger):  # type: ignore[misc]
    """gunicorn's error log without its own handler: records go to the root logger's format."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for handler in list(self.error_log.handlers):
            if getattr(handler, "_gunicorn", False):
                self.error_log.removeHandler(handler)
        self.error_log.propagate = True


def child_exit(server: Any, worker: Any) -> None:
    """gunicorn hook, in the master: drop the dead worker's live gauges (images in flight, model)."""
    if os.environ.get(MULTIPROC_DIR_ENV):
        multiprocess.mark_process_dead(worker.pid)


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
        "accesslog": None,  # the app writes one access-log line per request (specks.access)
        "errorlog": "-",
        "loglevel": settings.observability.log_level,
        "logger_class": GunicornLogger,
        "child_exit": child_exit,
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
        # Imported here, in the worker after the fork: the master must not load onnxruntime.
        from .app import create_app

        return create_app(self.settings)


def prepare_metrics_dir() -> tuple[Path, bool]:
    """Point ``PROMETHEUS_MULTIPROC_DIR`` at an empty directory; True when it was created here.

    Must run before the workers fork: prometheus_client reads the variable when a process
    first imports it, and the workers inherit this process's modules.
    """
    existing = os.environ.get(MULTIPROC_DIR_ENV)
    if existing:
        path, created = Path(existing), False
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):  # a previous run's counts would be added to ours
            stale.unlink()
    else:
        path, created = Path(tempfile.mkdtemp(prefix="specks-metrics-")), True
    os.environ[MULTIPROC_DIR_ENV] = str(path)
    # prometheus_client chose its value store when this process imported it (before the
    # variable was set); choose again so that metrics made in the workers go to files.
    values.ValueClass = values.get_value_class()
    return path, created


# glibc's M_MMAP_THRESHOLD option, and the size from which buffers are always mmapped.
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 4 * 1024 * 1024


def return_large_buffers_to_the_os() -> bool:
    """Pin glibc's mmap threshold so every buffer of 4 MiB or more is mmapped and unmapped on free.

    By default glibc raises the threshold after big frees, so later decoded photos and tensors
    land in heap arenas that keep their peak: worker memory then steps up with each new peak of
    concurrent large requests. Called in the master, the setting is inherited by forked workers.
    Returns False where the C library is not glibc (nothing changes there).
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    except (OSError, AttributeError):
        return False


def serve(settings: Settings) -> None:
    return_large_buffers_to_the_os()
    level: str | int = settings.observability.log_level
    if logging.getLogger().level == logging.DEBUG:  # `specks -v serve` wins over SPECKS_LOG_LEVEL
        level = logging.DEBUG
    configure_logging(settings.observability.log_format, level)
    metrics_dir, created = prepare_metrics_dir() if settings.observability.metrics_enabled else (None, False)
    master_pid = os.getpid()
    try:
        SpecksServer(settings).run()
    finally:
        # Workers leave run() by SystemExit too, through this block: only the master cleans up.
        if created and metrics_dir is not None and os.getpid() == master_pid:
            shutil.rmtree(metrics_dir, ignore_errors=True)
