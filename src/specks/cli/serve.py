"""``specks serve``, ``specks ray-config`` and ``specks config``: running the API, and its settings.

``serve`` checks the models and memory in this process, then hands over to gunicorn (``web.server``)
or to Ray Serve (``web.ray_serve``); ``ray-config`` writes the Ray Serve config file the same flags
describe; ``config`` prints the settings the environment gives. Ray is imported only with
``--engine ray``, ONNX Runtime only in the workers.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import os
import sys
from typing import TYPE_CHECKING

import orjson

from ..config import Settings
from ..errors import SpecksError
from .args import Subparsers, add_model_args, settings_from_args

if TYPE_CHECKING:
    from ..web.ray_config import RayDeployment


class Engine(enum.Enum):
    """What ``specks serve`` runs the app on."""

    GUNICORN = "gunicorn"
    RAY = "ray"


def add_serve_parser(sub: Subparsers) -> None:
    """``specks serve``: the HTTP API on gunicorn or Ray Serve."""
    serve = sub.add_parser(
        "serve",
        help="run the HTTP API (gunicorn, one model per worker; or Ray Serve replicas with --engine ray)",
    )
    serve.add_argument("--host", help="interface to bind (default 127.0.0.1; 0.0.0.0 for all)")
    serve.add_argument("--port", type=int, help="port (default 6060)")
    serve.add_argument(
        "--engine",
        choices=[engine.value for engine in Engine],
        default=Engine.GUNICORN.value,
        help="gunicorn (default) or ray: Ray Serve replicas (needs the ray extra: pip install 'specks[ray]')",
    )
    serve.add_argument("--workers", type=int, help="gunicorn worker processes (default: one per core)")
    serve.add_argument(
        "--address", help="--engine ray: join this running Ray cluster (auto, or HEAD_IP:6379) instead of a local Ray"
    )
    serve.add_argument(
        "--max-requests", type=int, help="replace each worker gracefully after about N requests (default 0: never)"
    )
    serve.add_argument(
        "--max-requests-jitter", type=int, help="add a random 0..N to each worker's --max-requests (default 0)"
    )
    add_model_args(serve, several=True)
    _add_ray_args(serve)


def _add_ray_args(parser: argparse.ArgumentParser) -> None:
    """Replicas, autoscaling and per-replica resources of the Ray Serve deployment."""
    ray = parser.add_argument_group("Ray Serve (--engine ray, ray-config)")
    add = ray.add_argument
    add("--replicas", type=int, help="replicas, each with its own model (default 1; not with --max-replicas)")
    add("--min-replicas", type=int, help="autoscaling: fewest replicas (default 1; needs --max-replicas)")
    add("--max-replicas", type=int, help="autoscaling: most replicas (turns autoscaling on)")
    add("--target-ongoing-requests", type=float, help="autoscaling: requests in flight per replica to aim for (2)")
    add("--replica-cpus", type=float, default=1.0, help="CPUs Ray reserves per replica; default inference threads")
    add("--max-ongoing-requests", type=int, help="requests one replica holds at once; more wait in Serve (4)")


def cmd_serve(args: argparse.Namespace) -> int:
    """Check the models, the memory and the profile here, then run gunicorn (or Ray Serve) until stopped."""

    from ..models import prepare_model
    from ..models.profiles import find_profile
    from ..service.memory import check_worker_memory, estimate_worker_memory
    from ..service.served import served_models

    if Engine(args.engine) is Engine.RAY:
        return serve_on_ray(args)
    from ..web.server import serve

    settings = settings_from_args(args)
    # Fail fast, and convert Darknet models once, before forking.
    prepared = {spec.name: prepare_model(spec.path, settings.cache_dir) for spec in served_models(settings)}
    estimate = estimate_worker_memory(settings, {name: p.onnx_path.stat().st_size for name, p in prepared.items()})
    check_worker_memory(settings, estimate)
    profile = find_profile(settings.model, settings.profile)  # a bad profile fails here, not in each worker
    shown = f", profile {profile.source.name}" if profile and profile.source else ""
    print(
        f"specks: serving {', '.join(prepared)} on http://{settings.host}:{settings.port} with "
        f"{settings.resolved_workers()} worker(s), {settings.threads_description()} each; "
        f"estimated {estimate.describe()}{shown}",
        file=sys.stderr,
    )
    serve(settings)
    return 0


def serve_on_ray(args: argparse.Namespace) -> int:
    """``specks serve --engine ray``: a local Ray (or the cluster at --address) until SIGINT/SIGTERM."""
    from ..models import prepare_model
    from ..web.ray_config import HttpOptions

    if args.workers is not None:
        raise SpecksError("--workers is for gunicorn; with --engine ray give --replicas or --min/--max-replicas")
    environ = ray_environ_from_args(args)
    settings = settings_from_args(args)
    deployment = ray_deployment_from_args(args, settings)
    if args.address is None:  # on a cluster the model path is the nodes' business, not this machine's
        prepare_model(settings.model, settings.cache_dir)  # fail fast; converts a Darknet model once
    try:
        from ..web.ray_serve import bind, serve_until_stopped
    except ImportError as exc:
        raise SpecksError(f"--engine ray needs the ray extra: pip install 'specks[ray]' (or make ray): {exc}") from exc
    http = HttpOptions(host=settings.host, port=settings.port, request_timeout_s=settings.request_timeout_s)
    scaling = deployment.scaling
    replicas = f"{scaling.floor}..{scaling.max_replicas} (autoscaling)" if scaling.autoscaling else str(scaling.floor)
    print(
        f"specks: serving on http://{http.host}:{http.port} through Ray Serve with {replicas} replica(s), "
        f"{deployment.replica_cpus:g} CPU and {environ['SPECKS_THREADS']} inference thread(s) each",
        file=sys.stderr,
    )
    serve_until_stopped(bind(deployment, environ), deployment, http, args.address)
    return 0


def ray_deployment_from_args(args: argparse.Namespace, settings: Settings) -> RayDeployment:
    """The --replicas/--*-replicas/--replica-cpus flags as a RayDeployment (needs no Ray)."""
    from ..web.ray_config import DEFAULT_MAX_ONGOING_REQUESTS, RayDeployment, Scaling

    if args.replicas is not None and args.max_replicas is not None:
        raise SpecksError("give --replicas or --min-replicas/--max-replicas (autoscaling), not both")
    scaling = Scaling(
        replicas=args.replicas or 1,
        min_replicas=args.min_replicas,
        max_replicas=args.max_replicas,
        target_ongoing_requests=args.target_ongoing_requests or Scaling.target_ongoing_requests,
    )
    return RayDeployment(
        scaling=scaling,
        replica_cpus=args.replica_cpus,
        max_ongoing_requests=args.max_ongoing_requests or DEFAULT_MAX_ONGOING_REQUESTS,
        graceful_shutdown_timeout_s=settings.graceful_timeout_s,
    )


def ray_environ_from_args(args: argparse.Namespace) -> dict[str, str]:
    """The replicas' SPECKS_* variables: this environment's, with --model/--threads/--providers folded in."""
    from ..web.ray_config import replica_environ

    model = args.model
    if isinstance(model, list):  # `serve --model` repeats (NAME=PATH); replicas take several via SPECKS_MODELS
        if len(model) > 1 or "=" in model[0]:
            raise SpecksError("--engine ray takes one plain --model PATH; several: SPECKS_MODELS=a=/p.onnx,...")
        model = model[0]
    return replica_environ(
        os.environ, replica_cpus=args.replica_cpus, model=model, threads=args.threads, providers=args.providers
    )


def add_ray_config_parser(sub: Subparsers) -> None:
    """``specks ray-config``: a Ray Serve config file."""
    ray_config = sub.add_parser(
        "ray-config",
        help="print a Ray Serve config (YAML) for serve deploy or a KubeRay RayService",
        description="Prints a Serve config file that runs specks.web.ray_serve:app with these replicas and "
        "resources; the SPECKS_* variables of this environment (and the model flags) become the "
        "application's runtime_env env_vars. SPECKS_API_KEYS is never written: give keys to the Ray "
        "pods' environment or mount a file for SPECKS_API_KEYS_FILE.",
    )
    ray_config.add_argument("--host", default="0.0.0.0", help="where Serve's proxies listen (default 0.0.0.0)")
    ray_config.add_argument("--port", type=int, help="the proxies' port (default SPECKS_PORT, 6060)")
    add_model_args(ray_config)
    _add_ray_args(ray_config)


def cmd_ray_config(args: argparse.Namespace) -> int:
    """Print the Ray Serve config (YAML) that the flags and this environment describe."""

    from ..web.ray_config import HttpOptions, serve_config

    try:
        import yaml
    except ImportError as exc:
        raise SpecksError(f"ray-config needs PyYAML, part of the ray extra: pip install 'specks[ray]': {exc}") from exc
    environ = ray_environ_from_args(args)
    settings = Settings.from_env(environ)
    http = HttpOptions(host=args.host, port=args.port or settings.port, request_timeout_s=settings.request_timeout_s)
    config = serve_config(ray_deployment_from_args(args, settings), environ, http)
    print("# Ray Serve config for Specks: serve deploy FILE, or a KubeRay RayService's serveConfigV2.")
    print("# Generated by: specks ray-config " + " ".join(sys.argv[2:]).strip())
    if "SPECKS_API_KEYS" in os.environ:
        print("# SPECKS_API_KEYS is set here but not written: put it in the Ray pods' environment (a Secret).")
    print(yaml.safe_dump(config, sort_keys=False), end="")
    return 0


def add_config_parser(sub: Subparsers) -> None:
    """``specks config``: the effective settings."""
    sub.add_parser("config", help="show the effective configuration")


def cmd_config(args: argparse.Namespace) -> int:
    """Print the settings in force, as JSON (the API keys described, never shown)."""
    settings = Settings.from_env()
    shown = dataclasses.asdict(settings)
    shown["security"] = settings.security.describe()  # never print the keys
    shown["resolved"] = {"workers": settings.resolved_workers(), "threads_per_worker": settings.resolved_threads()}
    print(orjson.dumps(shown, option=orjson.OPT_INDENT_2, default=str).decode())
    return 0
