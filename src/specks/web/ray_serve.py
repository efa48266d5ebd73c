"""Specks on Ray Serve: each replica runs the whole Flask app (``create_app``) behind Serve's proxy.

Another front-end over the same app as gunicorn: every route answers through Ray as it does
through ``specks serve``. Needs the ray extra (``pip install 'specks[ray]'``).

- ``SpecksDeployment``: a Serve deployment whose replicas each build the app once, in the
  replica (the model loads there, never at import), and serve it through ``@serve.ingress``
  with a2wsgi's ``WSGIMiddleware``. Flask answers with a ``Content-Length``, which passes through
  the proxy: answers are never chunked. Each answer names its replica in ``X-Specks-Replica``.
- Health: a replica takes traffic only once its model has loaded (the constructor loads it, and
  Serve's first ``check_health`` must pass). ``check_health`` then runs every 10 s: it raises when
  the model failed to load or a small inference fails, and Ray replaces the replica after three
  failures. ``/ready`` through the proxy answers for whichever replica served it.
- Metrics: Specks' ``/metrics`` is the answering replica's own registry (one process each; see
  ``X-Specks-Replica``). Ray exports its ``ray_serve_*`` metrics (requests, errors, latency, queue
  lengths, replica health, per deployment and replica) on each node's metrics export port.
- ``app`` (importable: ``serve run specks.web.ray_serve:app``, ``serve deploy``) reads SPECKS_*
  variables; ``build_app(args)`` takes builder arguments (see ``ray_config.parse_builder_args``).
- ``serve_until_stopped``: what ``specks serve --engine ray`` runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from a2wsgi import WSGIMiddleware
from ray import serve
from ray.serve import Application

from ..config import MULTIPROC_DIR_ENV, Settings
from ..errors import ConfigError, ModelNotReadyError
from ..logs import configure_logging
from .http import current_service_of
from .observability import REQUEST_ID_HEADER
from .ray_config import APP_NAME, DEPLOYMENT_NAME, ROUTE_PREFIX, HttpOptions, RayDeployment, parse_builder_args

if TYPE_CHECKING:
    from ..service.holder import ModelHolder

log = logging.getLogger(__name__)

REPLICA_HEADER = "X-Specks-Replica"
# The stop signals of `specks serve --engine ray`.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
LOCAL_RAY = "local"

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


@serve.deployment(name=DEPLOYMENT_NAME)
@serve.ingress()
class SpecksDeployment:
    """One replica: the Specks Flask app with its own model, served over ASGI.

    environ: SPECKS_* variables (``ray_config.replica_environ``), read over the replica's own
             environment, so a replica runs with the settings its driver or config file chose.
    """

    def __init__(self, environ: Mapping[str, str]) -> None:
        from .app import create_app  # here, in the replica: onnxruntime loads only where a model runs

        settings = Settings.from_env({**os.environ, **environ})
        configure_logging(settings.observability.log_format, settings.observability.log_level)
        use_own_metrics_registry()
        self._flask = create_app(settings, load_in_background=False)  # loads the model, once
        self._holder: ModelHolder = current_service_of(self._flask).holder
        self._io_threads = settings.io_threads
        self.replica_id = serve.get_replica_context().replica_id.unique_id

    def __serve_build_asgi_app__(self) -> WSGIMiddleware:
        wsgi = behind_the_proxy(self._flask, self.replica_id)
        # a2wsgi types the environ as a TypedDict; Flask and our wrapper take a plain dict.
        return WSGIMiddleware(wsgi, workers=self._io_threads)  # type: ignore[arg-type]

    async def check_health(self) -> None:
        """Raise when this replica's model cannot answer (Ray restarts it after three failures)."""
        await asyncio.to_thread(check_model, self._holder)


# The size of the image the health check runs through the whole prediction path.
PROBE_WH = (64, 48)


@functools.cache
def probe_jpeg() -> bytes:
    """A flat grey ``PROBE_WH`` JPEG, made once per replica.

    Not the benchmarks' synthetic photo (``tools.yardstick``): the probe only has to take the whole
    path (decode, letterbox, session.run, postprocess) as cheaply as it can, every health check.
    """
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", PROBE_WH, (128, 128, 128)).save(buffer, "JPEG")
    return buffer.getvalue()


def check_model(holder: ModelHolder) -> None:
    """Raise unless the holder's model is loaded and one small full-image prediction succeeds.

    The probe takes a prediction slot like any request, but never waits for one: when every slot
    is busy the model is evidently serving, and a probe queued behind those requests could time
    out and get a working replica killed.
    """
    from ..core.options import DetectOptions
    from ..core.slicing import SliceMode

    if holder.load_failure is not None:  # the operator's view (Serve's status) gets the whole reason
        raise ModelNotReadyError(holder.load_failure)
    detectors = holder.detectors()  # ModelNotReadyError while loading
    if not holder.prediction_slots.try_acquire():
        return
    try:
        for detector in detectors.values():  # every served model must answer
            detector.predict_bytes(probe_jpeg(), DetectOptions(slice=SliceMode.OFF))
    finally:
        holder.prediction_slots.release()


def behind_the_proxy(app: WSGIApp, replica_id: str) -> WSGIApp:
    """``app`` with its answers' headers adjusted for Serve's proxy.

    Adds ``X-Specks-Replica: <replica id>``. Drops the app's ``X-Request-ID``: the proxy adds
    its own to every answer (the client's id, or one it made and passed to the app as the
    request's), so keeping the app's would send the header twice.
    """
    request_id_header = REQUEST_ID_HEADER.lower()

    def wrapped(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            kept = [(name, value) for name, value in headers if name.lower() != request_id_header]
            return start_response(status, [*kept, (REPLICA_HEADER, replica_id)], exc_info)

        return app(environ, start)

    return wrapped


def use_own_metrics_registry() -> None:
    """Serve this process's metrics only, even where PROMETHEUS_MULTIPROC_DIR was inherited.

    That variable is for gunicorn's workers, which ``specks.web.server`` sets up and cleans;
    replicas sharing a directory nobody empties would add up stale and other apps' counts.
    """
    if os.environ.pop(MULTIPROC_DIR_ENV, None) is not None:
        from prometheus_client import values

        values.ValueClass = values.get_value_class()


def build_app(args: Mapping[str, Any] | None = None) -> Application:
    """The Specks Serve application from builder arguments over SPECKS_* (``ray_config.BUILDER_ARGS``)."""
    deployment, environ = parse_builder_args(args or {}, os.environ)
    return bind(deployment, environ)


def bind(deployment: RayDeployment, environ: Mapping[str, str]) -> Application:
    """The Specks application with these deployment options; replicas read ``environ`` (SPECKS_*)."""
    options = deployment.deployment_options()
    return SpecksDeployment.options(**options).bind(dict(environ))  # type: ignore[attr-defined]


# For `serve run specks.web.ray_serve:app` and config files: settings from SPECKS_* variables.
app = build_app()


# -- specks serve --engine ray --------------------------------------------------------------------


def serve_until_stopped(
    application: Application, deployment: RayDeployment, http: HttpOptions, address: str | None
) -> None:
    """Start (or join, with ``address``) Ray, run Specks on Serve, and wait for SIGINT or SIGTERM.

    Then, through the API: locally, Serve and Ray shut down; on a cluster, only the Specks
    application is deleted (other applications keep running) and this driver disconnects.
    A local Ray runs without its dashboard; its own ports (GCS, raylet, workers, metrics) listen on
    every interface, behind Ray's token authentication.
    """
    import ray

    # "local" always starts a new instance (None would join one that `ray start` left running).
    init_options: dict[str, Any] = {"address": address or LOCAL_RAY}
    if address is None:
        init_options["include_dashboard"] = False
    ray.init(**init_options)
    # After ray.init: it installs a SIGTERM handler of its own that aborts the process.
    with stop_signals() as stop:
        try:
            if address is None:
                check_fits(deployment, ray.cluster_resources().get("CPU", 0.0))
            serve.start(http_options=http.to_dict())
            serve.run(application, name=APP_NAME, route_prefix=ROUTE_PREFIX)
            for url in ray_metrics_urls():
                log.info("Ray's own metrics (ray_serve_*): %s", url)
            log.info(
                "Specks is serving on http://%s:%d through Ray Serve; SIGINT or SIGTERM stops it", http.host, http.port
            )
            while not stop.wait(1.0):
                pass
        finally:
            try:
                if address is None:
                    serve.shutdown()
                else:
                    serve.delete(APP_NAME)
            finally:
                ray.shutdown()


def ray_metrics_urls() -> list[str]:
    """Where each live Ray node exports its metrics, Serve's included (Prometheus text)."""
    import ray

    return [
        f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"
        for node in ray.nodes()
        if node.get("Alive") and node.get("MetricsExportPort")
    ]


def check_fits(deployment: RayDeployment, cpus: float) -> None:
    """Refuse a deployment whose starting replicas need more CPUs than the local Ray has.

    Serve would leave the extra replicas pending and ``serve.run`` would wait for them forever.
    """
    needed = deployment.scaling.floor * deployment.replica_cpus
    if needed > cpus:
        raise ConfigError(
            f"{deployment.scaling.floor} replica(s) x {deployment.replica_cpus:g} CPU need {needed:g} CPUs, "
            f"this machine's Ray has {cpus:g}: lower --replicas/--min-replicas or --replica-cpus"
        )


@contextlib.contextmanager
def stop_signals() -> Iterator[threading.Event]:
    """An event set by SIGINT or SIGTERM while the block runs (the previous handlers come back after)."""
    stop = threading.Event()

    def handler(signum: int, frame: Any) -> None:
        log.info("%s received, shutting down", signal.Signals(signum).name)
        stop.set()

    previous = {signum: signal.signal(signum, handler) for signum in STOP_SIGNALS}
    try:
        yield stop
    finally:
        for signum, old in previous.items():
            if old is not None:  # None: a handler installed outside Python (Ray's), which cannot be put back
                signal.signal(signum, old)
