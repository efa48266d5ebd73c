"""What a Ray Serve deployment of Specks is made of, without importing Ray.

- ``Scaling`` and ``RayDeployment``: a fixed number of replicas or autoscaling bounds, CPUs and
  concurrency per replica; ``deployment_options()`` gives the keyword arguments of Serve's
  ``Deployment.options`` (and, under the same names, one ``deployments`` entry of a Serve config file).
- ``replica_environ``: the ``SPECKS_*`` variables every replica configures itself from (models,
  limits, keys and defaults, exactly as ``specks serve`` reads them), with CLI flags folded in.
- ``serve_config``: a Serve config file (``serve deploy``, KubeRay ``RayService.serveConfigV2``).

Kept apart from ``specks.web.ray_serve`` (which imports Ray) so that ``specks ray-config`` and the
checks of ``specks serve --engine ray`` run, and are tested, where the ray extra is not installed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..config import ENV_PREFIX, Settings
from ..errors import ConfigError

APP_NAME = "specks"
DEPLOYMENT_NAME = "specks"
# The importable Serve application and its builder (``serve run specks.web.ray_serve:app``).
APP_IMPORT_PATH = "specks.web.ray_serve:app"
BUILDER_IMPORT_PATH = "specks.web.ray_serve:build_app"
ROUTE_PREFIX = "/"
# Requests one replica holds at once: its prediction slots (SPECKS_PREDICTIONS_PER_WORKER, 1 by
# default) decode and infer, the others wait behind them, their bodies already read; more would
# queue inside a busy replica while another one may be idle.
DEFAULT_MAX_ONGOING_REQUESTS = 4
# Ray asks each replica this often whether it is healthy (check_health: a small inference).
HEALTH_CHECK_PERIOD_S = 10.0
HEALTH_CHECK_TIMEOUT_S = 30.0
# Variables never written into a generated config file (secrets; give them through the pod env).
SECRET_VARIABLES = (ENV_PREFIX + "API_KEYS",)
KEYS_FILE_VARIABLE = ENV_PREFIX + "API_KEYS_FILE"


@dataclass(frozen=True)
class Scaling:
    """How many replicas: ``replicas`` of them, or autoscaling when ``max_replicas`` is set.

    replicas:                fixed replica count (not autoscaling).
    min_replicas:            autoscaling floor (default 1); only with ``max_replicas``.
    max_replicas:            autoscaling ceiling; setting it turns autoscaling on.
    target_ongoing_requests: requests in flight per replica the autoscaler aims for.
    """

    replicas: int = 1
    min_replicas: int | None = None
    max_replicas: int | None = None
    target_ongoing_requests: float = 2.0

    def __post_init__(self) -> None:
        if self.replicas < 1:
            raise ConfigError(f"replicas must be >= 1, got {self.replicas}")
        if self.min_replicas is not None and self.max_replicas is None:
            raise ConfigError(f"min_replicas ({self.min_replicas}) needs max_replicas: autoscaling needs a ceiling")
        if self.max_replicas is not None and not 0 <= self.floor <= self.max_replicas:
            raise ConfigError(
                f"autoscaling needs 0 <= min_replicas <= max_replicas, got {self.floor} and {self.max_replicas}"
            )
        if self.max_replicas is not None and self.max_replicas < 1:
            raise ConfigError(f"max_replicas must be >= 1, got {self.max_replicas}")
        if not self.target_ongoing_requests > 0:
            raise ConfigError(f"target_ongoing_requests must be > 0, got {self.target_ongoing_requests}")

    @property
    def autoscaling(self) -> bool:
        return self.max_replicas is not None

    @property
    def floor(self) -> int:
        """Replicas that must fit at start: the fixed count, or the autoscaling minimum."""
        if not self.autoscaling:
            return self.replicas
        return 1 if self.min_replicas is None else self.min_replicas

    def options(self) -> dict[str, Any]:
        """``num_replicas`` or ``autoscaling_config``, as Serve spells them."""
        if not self.autoscaling:
            return {"num_replicas": self.replicas}
        return {
            "autoscaling_config": {
                "min_replicas": self.floor,
                "max_replicas": self.max_replicas,
                "target_ongoing_requests": self.target_ongoing_requests,
            }
        }


@dataclass(frozen=True)
class RayDeployment:
    """The Specks deployment's Serve options.

    replica_cpus:          CPUs Ray reserves per replica (its ``num_cpus``); default inference threads too.
    max_ongoing_requests:  requests one replica holds at once; the rest wait in Serve's router.
    graceful_shutdown_timeout_s: how long a stopping replica may finish its requests.
    """

    scaling: Scaling = field(default_factory=Scaling)
    replica_cpus: float = 1.0
    max_ongoing_requests: int = DEFAULT_MAX_ONGOING_REQUESTS
    graceful_shutdown_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if not self.replica_cpus > 0:
            raise ConfigError(f"replica_cpus must be > 0, got {self.replica_cpus}")
        if self.max_ongoing_requests < 1:
            raise ConfigError(f"max_ongoing_requests must be >= 1, got {self.max_ongoing_requests}")

    def deployment_options(self) -> dict[str, Any]:
        """Keyword arguments of ``Deployment.options``; also a Serve config file's deployment entry."""
        return {
            "name": DEPLOYMENT_NAME,
            **self.scaling.options(),
            "max_ongoing_requests": self.max_ongoing_requests,
            "ray_actor_options": {"num_cpus": self.replica_cpus},
            "health_check_period_s": HEALTH_CHECK_PERIOD_S,
            "health_check_timeout_s": HEALTH_CHECK_TIMEOUT_S,
            "graceful_shutdown_timeout_s": self.graceful_shutdown_timeout_s,
            # Specks writes one access-log line per request itself (specks.access), as under gunicorn.
            "logging_config": {"enable_access_log": False},
        }


def default_threads(replica_cpus: float) -> int:
    """ONNX Runtime threads for a replica that reserves ``replica_cpus`` CPUs (at least 1)."""
    return max(1, math.floor(replica_cpus))


def replica_environ(
    environ: Mapping[str, str],
    *,
    replica_cpus: float,
    model: str | None = None,
    threads: int | None = None,
    providers: str | None = None,
) -> dict[str, str]:
    """The ``SPECKS_*`` variables of ``environ`` with the given flags folded in; validated.

    Replicas build their Settings from these (over their own environment), so every replica
    serves the models, limits, keys and defaults ``specks serve`` would read from the same
    variables and flags. Without ``threads`` or SPECKS_THREADS, a replica runs ``replica_cpus``
    inference threads (in a replica ``cpu_count()`` sees the whole node, not its share).
    """
    chosen = {name: value for name, value in environ.items() if name.startswith(ENV_PREFIX)}
    flags = {"MODEL": model, "THREADS": threads, "PROVIDERS": providers}
    chosen.update({ENV_PREFIX + name: str(value) for name, value in flags.items() if value is not None})
    chosen.setdefault(ENV_PREFIX + "THREADS", str(default_threads(replica_cpus)))
    # A bad value fails here, once, not in every replica. A keys file is read where replicas run
    # (a config file's path names a file on the cluster's nodes, not necessarily here).
    Settings.from_env({name: value for name, value in chosen.items() if name != KEYS_FILE_VARIABLE})
    return chosen


# -- builder arguments (``serve run specks.web.ray_serve:build_app key=value ...``) --------------

_SCALING_ARGS = {"replicas": int, "min_replicas": int, "max_replicas": int, "target_ongoing_requests": float}
_DEPLOYMENT_ARGS = {"replica_cpus": float, "max_ongoing_requests": int}
_SETTING_ARGS = ("model", "threads", "providers")
BUILDER_ARGS = (*_SCALING_ARGS, *_DEPLOYMENT_ARGS, *_SETTING_ARGS, "env")


def parse_builder_args(args: Mapping[str, Any], environ: Mapping[str, str]) -> tuple[RayDeployment, dict[str, str]]:
    """Builder arguments -> (deployment options, the replicas' SPECKS_* variables).

    args: any of BUILDER_ARGS. Values may be strings (``serve run ... replicas=2`` passes strings).
          ``env`` maps further SPECKS_* names to values, e.g. ``{"SPECKS_MAX_TILES": "100"}``.
    """
    unknown = sorted(set(args) - set(BUILDER_ARGS))
    if unknown:
        raise ConfigError(f"unknown Specks builder argument(s) {unknown}; known: {list(BUILDER_ARGS)}")
    extra = args.get("env") or {}
    if not isinstance(extra, Mapping) or not all(str(name).startswith(ENV_PREFIX) for name in extra):
        raise ConfigError(f"builder argument 'env' must map {ENV_PREFIX}* names to values, got {extra!r}")
    merged = {**environ, **{str(name): str(value) for name, value in extra.items()}}
    scaling = Scaling(
        **{name: _convert(name, args[name], kind) for name, kind in _SCALING_ARGS.items() if name in args}
    )
    deployment = RayDeployment(
        scaling=scaling,
        graceful_shutdown_timeout_s=Settings.from_env(merged).graceful_timeout_s,
        **{name: _convert(name, args[name], kind) for name, kind in _DEPLOYMENT_ARGS.items() if name in args},
    )
    environment = replica_environ(
        merged,
        replica_cpus=deployment.replica_cpus,
        model=args.get("model"),
        threads=_convert("threads", args["threads"], int) if "threads" in args else None,
        providers=args.get("providers"),
    )
    return deployment, environment


def _convert(name: str, value: Any, kind: type) -> Any:
    try:
        return kind(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"builder argument {name!r} must be {kind.__name__}, got {value!r}") from exc


# -- the Serve config file -------------------------------------------------------------------


@dataclass(frozen=True)
class HttpOptions:
    """Where Serve's proxies listen (on every node), and their end-to-end request timeout."""

    host: str = "0.0.0.0"
    port: int = 8000
    request_timeout_s: float = 60.0

    def to_dict(self) -> dict[str, Any]:
        return {"host": self.host, "port": self.port, "request_timeout_s": self.request_timeout_s}


def serve_config(deployment: RayDeployment, environ: Mapping[str, str], http: HttpOptions) -> dict[str, Any]:
    """A Serve config (``ServeDeploySchema``) running the importable Specks app.

    Settings travel as the application's ``runtime_env.env_vars``; secrets (SPECKS_API_KEYS) are
    left out: give them to the Ray pods' environment, or point SPECKS_API_KEYS_FILE at a mounted file.
    """
    env_vars = {name: value for name, value in sorted(environ.items()) if name not in SECRET_VARIABLES}
    return {
        "proxy_location": "EveryNode",
        "http_options": http.to_dict(),
        "applications": [
            {
                "name": APP_NAME,
                "route_prefix": ROUTE_PREFIX,
                "import_path": APP_IMPORT_PATH,
                "runtime_env": {"env_vars": env_vars},
                "deployments": [deployment.deployment_options()],
            }
        ],
    }
