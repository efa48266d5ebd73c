"""Production serving: gunicorn with one model per worker process.

Workers (``SpecksWorker``, gunicorn's threaded worker): a worker that starts (first boot, after
a crash, after ``max_requests`` recycling) loads and warms its model *before* it takes its first
connection, telling the master it is alive meanwhile, so a slow load is not mistaken for a hung
worker. Until then new connections wait in the kernel's listen queue and go to whichever worker
accepts first: a ready sibling, or this one once ready. No client ever meets a half-started
worker, so no "model still loading" 503 comes from one. A worker told to stop (SIGTERM to the
master, recycling) stops listening, takes in the connections already queued for it, and answers
every request it accepted before it exits (gunicorn's graceful timeout permitting).

Metrics: each worker writes its Prometheus metrics to files in ``PROMETHEUS_MULTIPROC_DIR``
and ``/metrics`` adds them up. ``serve`` sets that directory up before any worker starts
(an empty temporary one, or the operator's own, emptied), and the master forgets a dead
worker's live gauges (``child_exit``). Logs: one handler on the root logger in the
configured format, inherited by the workers; gunicorn's own messages go through it too.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import logging
import os
import selectors
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gunicorn import glogging, util
from gunicorn.app.base import BaseApplication
from gunicorn.workers.gthread import TConn, ThreadWorker
from prometheus_client import multiprocess, values

from ..config import MULTIPROC_DIR_ENV, Settings
from ..logs import configure_logging
from ..service.cores import prepare_core_share_dir
from ..service.last_good import prepare_last_good_dir
from .connection import WATCHDOG, shut_read

if TYPE_CHECKING:
    from ..service.holder import ModelHolder

log = logging.getLogger(__name__)

# How often a worker that is loading its model tells the master it is alive (gunicorn's
# timeout, SPECKS_REQUEST_TIMEOUT_S, kills a worker silent for longer).
LOADING_HEARTBEAT_S = 1.0
# Logged by each worker once it takes connections (tests and `specks load` wait for every one).
WORKER_READY_MESSAGE = "worker ready, accepting connections"


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


def wait_for_model(holder: ModelHolder, heartbeat: Callable[[], None], keep_waiting: Callable[[], bool]) -> float:
    """Block until ``holder`` has finished loading, calling ``heartbeat`` about every second.

    Stops early when ``keep_waiting`` turns False (the worker was told to exit). Returns the
    seconds waited.
    """
    started = time.monotonic()
    while keep_waiting() and not holder.wait_loaded(LOADING_HEARTBEAT_S):
        heartbeat()
    return time.monotonic() - started


def model_holder(app: Any) -> ModelHolder:
    """The ModelHolder of an app made by ``create_app`` (imported here: in the worker, after the fork)."""
    from .http import current_service_of

    return current_service_of(app).holder


def use_json_error_pages() -> None:
    """In a worker: requests gunicorn refuses itself (400, 414, 431, 501) get Specks' JSON envelope, not HTML.

    gunicorn writes those answers with ``gunicorn.util.write_error``, called only from its workers'
    ``handle_error`` (which still logs them); replaced here, in this worker process only.
    """
    from .errors import gunicorn_error_page  # in the worker only: the master never answers a request

    def write_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
        util.write_nonblock(sock, gunicorn_error_page(status_int, reason))

    util.write_error = write_error


class SpecksWorker(ThreadWorker):  # type: ignore[misc]
    """gunicorn's threaded worker, ready before it accepts, fair to slow and waiting clients, and
    losing nothing when it stops.

    - A new connection waits for its first byte on the poller, not on an I/O thread: gunicorn
      gives each a thread for up to 5 s first, and 500 silent connections stopped a server.
    - The request line and headers must arrive within SPECKS_READ_TIMEOUT_S (``web.connection``):
      a client that trickles them is cut off, its thread freed. The body has its own deadline.
    - While its prediction slots are all busy and a sibling worker is idle, a worker stops
      accepting new connections, so they go to the idle one instead of queueing behind a long
      request (measured: 12 s behind a 16 s request while the other worker was idle).
    """

    _yielding_to_siblings = False

    def init_process(self) -> None:
        use_json_error_pages()
        super().init_process()

    def load_wsgi(self) -> None:
        super().load_wsgi()  # create_app: the model starts loading in the background
        holder = model_holder(self.wsgi)
        holder.core_share.register()  # visible to siblings as idle from the start
        holder.prediction_slots.on_saturation = self._on_saturation
        waited_s = wait_for_model(holder, self.notify, lambda: bool(self.alive))
        if holder.ready:
            log.info("%s (pid %d, model loaded in %.1f s)", WORKER_READY_MESSAGE, os.getpid(), waited_s)
        elif self.alive:
            # Serve anyway: /ready and /predict then say why (503), which a restart would not fix.
            log.error("worker (pid %d) accepting connections without a model: %s", os.getpid(), holder.load_failure)

    def set_accept_enabled(self, enabled: bool) -> None:
        super().set_accept_enabled(enabled and not self._yielding_to_siblings)
        if not enabled and not self.alive:
            self._take_queued_connections_and_close_listeners()

    def _on_saturation(self, saturated: bool) -> None:
        """Called from a request thread: decide again on the main loop (gunicorn's poller is not thread-safe)."""
        self.method_queue.defer(self._update_accepting)

    def _update_accepting(self) -> None:
        # The slots' state now, not when the news was sent: a batch that gave its slot back and took
        # it again between two images must not open a window for new connections meanwhile.
        slots, share = model_holder(self.wsgi).prediction_slots, model_holder(self.wsgi).core_share
        self._yielding_to_siblings = slots.saturated and share.sibling_idle()
        self.set_accept_enabled(self.alive and self.nr_conns < self.worker_connections)

    def accept(self, listener: Any) -> None:
        """Accept a connection and wait for its first byte on the poller (gunicorn's pending
        connections, closed after the keep-alive time if nothing comes), holding no thread."""
        try:
            client_sock, client_addr = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        conn = TConn(self.cfg, client_sock, client_addr, listener.getsockname())  # non-blocking
        conn.timeout = time.monotonic() + self.cfg.keepalive
        self.pending_conns.append(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, functools.partial(self.on_pending_socket_readable, conn))

    def handle(self, conn: Any) -> Any:
        """Serve a connection's request, its line and headers bounded by SPECKS_READ_TIMEOUT_S."""
        limits = model_holder(self.wsgi).settings.limits
        conn.specks_header_watch = WATCHDOG.schedule(limits.read_timeout_s, shut_read(conn.sock))
        try:
            return super().handle(conn)
        finally:
            WATCHDOG.cancel(conn.specks_header_watch)

    def handle_request(self, req: Any, conn: Any) -> Any:
        WATCHDOG.cancel(conn.specks_header_watch)  # the headers are in: the body has its own deadline
        return super().handle_request(req, conn)

    def _take_queued_connections_and_close_listeners(self) -> None:
        """On the way out: accept what is already queued, then close this worker's listening sockets.

        gunicorn's own worker stops accepting but keeps its listening sockets open until it
        exits, so connections that arrive while it finishes its requests queue in the kernel
        and are reset at exit. Closed now, once the master and every sibling have closed theirs
        (a full stop) new connections are refused at once instead; while the master still holds
        them (recycling, one worker killed) they go to the other workers.
        """
        for listener in self.sockets:
            while self._accept_one(listener):
                pass
            listener.close()

    def _accept_one(self, listener: Any) -> bool:
        try:
            client_sock, client_addr = listener.accept()
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EBADF, errno.EINVAL, errno.ECONNABORTED):
                return exc.errno == errno.ECONNABORTED  # aborted by the client: look for the next
            raise
        self.nr_conns += 1
        client_sock.setblocking(True)
        self.enqueue_req(TConn(self.cfg, client_sock, client_addr, listener.getsockname()))
        return True


def heartbeat_dir() -> str | None:
    """Where workers keep the files they touch to say they are alive: /dev/shm when writable.

    gunicorn's default is the temporary directory, which in a container may be a disk-backed
    overlay where touching a file can stall; None keeps that default.
    """
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None


def gunicorn_options(settings: Settings) -> dict[str, Any]:
    return {
        "bind": f"{settings.host}:{settings.port}",
        "workers": settings.resolved_workers(),
        "worker_class": "specks.web.server.SpecksWorker",
        # I/O threads per worker (slow clients, keep-alive); inference is bounded by ORT's threads.
        "threads": settings.io_threads,
        "timeout": settings.request_timeout_s,
        "graceful_timeout": settings.graceful_timeout_s,
        "keepalive": 5,
        "worker_tmp_dir": heartbeat_dir(),
        "max_requests": settings.max_requests,
        "max_requests_jitter": settings.max_requests_jitter,
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
        # gunicorn >= 25 opens a control socket at one path per user ($HOME/.gunicorn): two servers
        # of one user would fight over it, and a read-only container home cannot hold it.
        if "control_socket_disable" in self.cfg.settings:
            self.cfg.set("control_socket_disable", True)

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
    # Sibling workers also use the lock files to leave new connections to an idle one (SpecksWorker).
    sharing = settings.wide_threads() is not None or settings.resolved_workers() > 1
    core_share_dir = prepare_core_share_dir() if sharing else None
    last_good_dir = prepare_last_good_dir()
    master_pid = os.getpid()
    try:
        SpecksServer(settings).run()
    finally:
        # Workers leave run() by SystemExit too, through this block: only the master cleans up.
        if os.getpid() == master_pid:
            if created and metrics_dir is not None:
                shutil.rmtree(metrics_dir, ignore_errors=True)
            if core_share_dir is not None:
                shutil.rmtree(core_share_dir, ignore_errors=True)
            shutil.rmtree(last_good_dir, ignore_errors=True)
