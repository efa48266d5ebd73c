"""Settings in one place: frozen dataclasses read from ``SPECKS_*`` environment variables.

CLI flags override the environment by building a new value with ``dataclasses.replace``.
"""

from __future__ import annotations

import enum
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from .core.imaging import MAX_IMAGE_PIXELS
from .core.jpeg_scans import MAX_JPEG_SCANS
from .core.knobs import KNOBS, MAX_DETECTIONS, Knob, SlicingSettings, coerce_enum
from .core.slicing import SliceMode
from .errors import ConfigError
from .logs import LogFormat

ENV_PREFIX = "SPECKS_"
# prometheus_client's multi-process mode: the directory where each process writes its metrics
# (set by `specks serve`; /metrics then adds up every worker).
MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
MiB = 1024 * 1024
PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "dml": "DmlExecutionProvider",
}


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "specks"


CGROUP_ROOT = Path("/sys/fs/cgroup")


def cpu_count() -> int:
    """Cores this process may use: its CPU affinity, capped by a container's CPU quota (cgroup)."""
    try:
        cores = max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        cores = max(1, os.cpu_count() or 1)
    quota = cgroup_cpu_quota()
    return min(cores, quota) if quota else cores


def cgroup_cpu_quota(root: Path = CGROUP_ROOT) -> int | None:
    """Whole cores a cgroup CPU limit allows (rounded up), or None without one.

    cgroup v2: ``cpu.max`` holds "<quota> <period>" or "max <period>"; v1: ``cpu/cpu.cfs_quota_us``
    (-1 for none) and ``cpu/cpu.cfs_period_us``. A Kubernetes ``limits.cpu: 2`` on a 32-core
    node reads as 2, where the affinity says 32.
    """
    try:
        quota_text, period_text = (root / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        try:
            quota_text = (root / "cpu" / "cpu.cfs_quota_us").read_text().strip()
            period_text = (root / "cpu" / "cpu.cfs_period_us").read_text().strip()
        except OSError:
            return None
    try:
        quota, period = int(quota_text), int(period_text)
    except ValueError:  # "max": no limit
        return None
    if quota <= 0 or period <= 0:
        return None
    return max(1, -(-quota // period))


@dataclass(frozen=True)
class RuntimeOptions:
    """How ONNX Runtime runs a model.

    providers:         execution providers by short name (cpu, cuda, openvino, ...), in order of preference.
    intra_op_threads:  threads one inference may use; 0 means "cores / workers".
    adaptive_threads:  with intra_op_threads 0 and several workers, a run may use every core while
                       no other inference is in progress in any worker (``specks.service.cores``).
    """

    providers: tuple[str, ...] = ("cpu",)
    intra_op_threads: int = 0
    adaptive_threads: bool = True

    def __post_init__(self) -> None:
        unknown = [p for p in self.providers if p.lower() not in PROVIDER_ALIASES and not p.endswith("Provider")]
        if unknown:
            raise ConfigError(f"unknown execution provider(s) {unknown}; known: {sorted(PROVIDER_ALIASES)}")
        if self.intra_op_threads < 0:
            raise ConfigError(f"intra_op_threads must be >= 0, got {self.intra_op_threads}")

    def provider_names(self) -> list[str]:
        """Full ONNX Runtime provider names, e.g. ['CUDAExecutionProvider', 'CPUExecutionProvider']."""
        return [PROVIDER_ALIASES.get(p.lower(), p) for p in self.providers]


@dataclass(frozen=True)
class Limits:
    """Bounds on what one request may cost.

    max_batch_images: most images in one batch request (``"images": [...]``).
    max_batch_bytes:  most image bytes (after base64) in one batch request, all images together.
    max_jpeg_scans:   most scans (progressive passes) a JPEG may have; each is a full pass over
                      the image (``specks.core.jpeg_scans`` has the measurements).
    read_timeout_s:   seconds a client may take to send a request's line and headers; a body gets
                      this plus its length at ``min_upload_bytes_per_s`` (``web.connection``).
    min_upload_bytes_per_s: the slowest upload waited for (32 KiB/s: a phone's 256 kbit/s uplink).
    """

    max_image_pixels: int = MAX_IMAGE_PIXELS
    max_body_bytes: int = 20 * MiB
    max_json_depth: int = 32
    max_batch_images: int = 32
    max_batch_bytes: int = 16 * MiB
    max_jpeg_scans: int = MAX_JPEG_SCANS
    read_timeout_s: float = 10.0
    min_upload_bytes_per_s: int = 32 * 1024

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value < 1:
                raise ConfigError(f"{f.name} must be >= 1, got {value}")


@dataclass(frozen=True)
class Security:
    """Optional API keys.

    api_keys:   accepted keys; empty means authentication is off.
    open_paths: paths answered without a key (liveness, readiness, metrics, API docs, the web page's
                assets; the page itself, a browser's ``GET /``, is open too: see web.auth).
    """

    api_keys: tuple[str, ...] = field(default=(), repr=False)
    open_paths: tuple[str, ...] = ("/health", "/ready", "/metrics", "/openapi.json", "/docs", "/page")

    @property
    def enabled(self) -> bool:
        return bool(self.api_keys)

    def is_open(self, path: str) -> bool:
        """True when ``path`` is an open path or lies below one (``/docs`` covers ``/docs/...``)."""
        for open_path in self.open_paths:
            base = open_path.rstrip("/")
            if path == open_path or (base and (path == base or path.startswith(base + "/"))):
                return True
        return False

    def describe(self) -> dict[str, object]:
        """For display: never the keys themselves."""
        return {
            "api_keys": f"{len(self.api_keys)} configured" if self.api_keys else "off",
            "open_paths": self.open_paths,
        }


@dataclass(frozen=True)
class CompatAPIs:
    """The DeepStack / CodeProject.AI- and Roboflow-compatible routes.

    max_predictions: most predictions one DeepStack / CodeProject.AI answer lists, best first.
                     Frigate's deepstack detector copies them into a fixed 20-row array and fails
                     on a 21st, so the default is 20; raise it for clients that count crowds.
    """

    max_predictions: int = 20

    def __post_init__(self) -> None:
        if not 1 <= self.max_predictions <= MAX_DETECTIONS:
            raise ConfigError(f"compat max_predictions must be 1..{MAX_DETECTIONS}, got {self.max_predictions}")


# An origin as a browser sends it: scheme://host[:port], no path, no trailing slash.
_ORIGIN = re.compile(r"https?://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?")


@dataclass(frozen=True)
class Cors:
    """Cross-origin requests from browsers (CORS); off while no origin is allowed.

    allowed_origins: origins whose pages may call the API, exactly as browsers send them
                     (``https://app.example.com``, ``http://localhost:3000``), or ``("*",)`` for any.
    """

    allowed_origins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        origins = self.allowed_origins
        if "*" in origins and len(origins) > 1:
            raise ConfigError(
                f"CORS origins: '*' allows every origin and cannot be combined with others, got {origins}"
            )
        for origin in origins:
            if origin != "*" and not _ORIGIN.fullmatch(origin):
                raise ConfigError(
                    "CORS origins must be '*' or exact origins like https://app.example.com or "
                    f"http://localhost:3000 (scheme, host and port; no path, no trailing slash), got {origin!r}"
                )

    @property
    def enabled(self) -> bool:
        return bool(self.allowed_origins)

    @property
    def allows_any_origin(self) -> bool:
        return self.allowed_origins == ("*",)


@dataclass(frozen=True)
class Observability:
    """Logging and metrics.

    log_format:      JSON (one object per line, with the request id) or plain text.
    metrics_enabled: serve Prometheus metrics at /metrics.
    """

    log_format: LogFormat = LogFormat.JSON
    log_level: str = "info"
    metrics_enabled: bool = True

    def __post_init__(self) -> None:
        coerce_enum(self, "log_format", LogFormat)
        if not isinstance(self.log_format, LogFormat):
            raise ConfigError(f"log_format must be json or text, got {self.log_format!r}")
        if self.log_level not in ("debug", "info", "warning", "error"):
            raise ConfigError(f"log_level must be debug, info, warning or error, got {self.log_level!r}")


class SharedRuns(str, enum.Enum):
    """Whether same-size images of a batch share one ``session.run`` (the model's batch axis).

    auto: only when the model runs on another provider than the CPU (measured on 2 CPU cores, a
    shared run was no faster: docs/performance.md, "Batches: one run or one per image"); on; off.
    """

    AUTO = "auto"
    ON = "on"
    OFF = "off"


# A served model's name: safe in a URL path segment (DeepStack's /v1/vision/custom/<name>) and in JSON.
MODEL_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass(frozen=True)
class ModelSpec:
    """A model served under a name.

    name: what requests choose it by (``"model": "NAME"``); for ``--model NAME=PATH`` and
          ``SPECKS_MODELS`` 1..64 letters, digits, ``.``, ``_``, ``-`` (``MODEL_NAME_PATTERN``).
    path: an ``.onnx`` file or a Darknet ``.cfg`` (with its ``.weights`` beside it); None: the
          embedded default.
    """

    name: str
    path: str | None


def check_model_name(name: str) -> None:
    if not MODEL_NAME_PATTERN.fullmatch(name):
        raise ConfigError(
            f"model name {name!r} is not valid: use 1..64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )


def parse_model_arg(text: str) -> ModelSpec | str:
    """One ``--model`` value: ``NAME=PATH`` -> ModelSpec, anything else -> a bare path (today's meaning).

    It is ``NAME=PATH`` when the part before the first ``=`` is a valid name (no ``/``), so
    ``/data/run=3/model.onnx`` stays a bare path.
    """
    name, sep, path = text.partition("=")
    if sep and MODEL_NAME_PATTERN.fullmatch(name.strip()):
        return ModelSpec(name.strip(), path.strip())
    return text.strip()


def parse_model_specs(text: str) -> tuple[ModelSpec, ...]:
    """``SPECKS_MODELS``: comma-separated ``NAME=PATH`` entries, e.g. ``a=/p/a.onnx,b=/p/b.onnx``."""
    specs = []
    for part in _parse_list(text):
        spec = parse_model_arg(part)
        if not isinstance(spec, ModelSpec):
            raise ValueError(part)
        specs.append(spec)
    return tuple(specs)


parse_model_specs.__name__ = "list of NAME=PATH models (e.g. a=/p/a.onnx,b=/p/b.onnx)"


def read_api_keys(env: Mapping[str, str]) -> tuple[str, ...]:
    """Keys from SPECKS_API_KEYS (comma-separated) and SPECKS_API_KEYS_FILE (one per line, # comments)."""
    keys = list(_parse_list(env.get(ENV_PREFIX + "API_KEYS", "")))
    path = env.get(ENV_PREFIX + "API_KEYS_FILE")
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{ENV_PREFIX}API_KEYS_FILE cannot be read: {path} ({exc.strerror})") from exc
        keys += [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return tuple(dict.fromkeys(keys))


@dataclass(frozen=True)
class Settings:
    """Everything a Specks server or CLI run is configured with.

    model:      path of an .onnx or Darknet .cfg file, or a named model (yolov3-tiny), served under its
                file name and answering requests that name no model; None: the first of ``models``,
                else the embedded default (YOLOX-Nano).
    models:     further models, each under its own name; the embedded default is always served too.
    profile:    a model profile (JSON, see ``specks.models.profiles``); None uses ``<model file>.specks.json``
                beside the model when there is one.
    workers:    server processes, each with its own model; 0 means one per core.
    io_threads: threads per worker for network I/O: a request holds one while its headers and body
                arrive (a slow upload for up to its read deadline, ``Limits``) and while it is
                answered; idle and kept-alive connections hold none. 256: 128 clients trickling a
                body at once took all of 32 and left normal requests waiting 30 s; an idle thread
                costs about 10 KB of memory.
    predictions_per_worker: requests one worker decodes and runs at once; the rest wait (queue,
                not fail), which bounds memory: each slot holds one full-resolution decode plus
                one model run's activations (docs/performance.md, "Memory per model"). One is the default: a worker's
                inference threads already fill its share of the cores.
    max_requests: a worker is replaced (gracefully) after about this many requests; 0 never.
    max_requests_jitter: each worker's limit gets a random 0..jitter added, so the workers
                do not all restart at once.
    max_worker_memory_mb: refuse to start when the estimated memory of one worker (its models,
                from their file sizes, and its prediction slots) is above this; 0: no limit.
    shared_runs: whether same-size images of a batch share one session.run (``SharedRuns``).
    """

    host: str = "127.0.0.1"
    port: int = 6060
    workers: int = 0
    model: str | None = None
    models: tuple[ModelSpec, ...] = ()
    profile: str | None = None
    cache_dir: Path = field(default_factory=default_cache_dir)
    request_timeout_s: int = 60
    graceful_timeout_s: int = 30
    io_threads: int = 256
    predictions_per_worker: int = 1
    max_worker_memory_mb: int = 0
    max_requests: int = 0
    max_requests_jitter: int = 0
    shared_runs: SharedRuns = SharedRuns.AUTO
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)
    limits: Limits = field(default_factory=Limits)
    slicing: SlicingSettings = field(default_factory=SlicingSettings)
    security: Security = field(default_factory=Security)
    observability: Observability = field(default_factory=Observability)
    compat: CompatAPIs = field(default_factory=CompatAPIs)
    cors: Cors = field(default_factory=Cors)
    image_urls: tuple[str, ...] = ()  # URL prefixes images may be fetched from (specks.service.fetch); empty: off

    def __post_init__(self) -> None:
        coerce_enum(self, "shared_runs", SharedRuns)
        if not isinstance(self.shared_runs, SharedRuns):
            raise ConfigError(f"shared_runs must be auto, on or off, got {self.shared_runs!r}")
        for name in ("request_timeout_s", "graceful_timeout_s", "io_threads", "predictions_per_worker"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.port < 65536:
            raise ConfigError(f"port must be between 1 and 65535, got {self.port}")
        for name in ("workers", "max_requests", "max_requests_jitter"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.max_worker_memory_mb < 0:
            raise ConfigError(f"max_worker_memory_mb must be >= 0 (0: no limit), got {self.max_worker_memory_mb}")
        for spec in self.models:
            check_model_name(spec.name)
            if not (spec.path or "").strip():
                raise ConfigError(f"model {spec.name!r} has no path: write NAME=PATH")
        names = [spec.name for spec in self.models]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ConfigError(f"model names must be unique; {', '.join(map(repr, duplicates))} is given twice")

    def resolved_workers(self) -> int:
        return self.workers or cpu_count()

    def resolved_threads(self) -> int:
        """ONNX Runtime intra-op threads per server worker so that workers x threads fits the cores."""
        return self.threads_for(self.resolved_workers())

    def wide_threads(self) -> int | None:
        """Threads of each model's wide session (adaptive threads): every core, or None for none.

        None when SPECKS_THREADS fixes the threads, adaptive threads are off, or a worker's
        narrow session already has every core (one worker).
        """
        if not self.runtime.adaptive_threads or self.runtime.intra_op_threads:
            return None
        wide = cpu_count()
        return wide if wide > self.resolved_threads() else None

    def threads_description(self) -> str:
        """Inference threads per worker in words, e.g. '1 inference thread (2 while no other request is in
        progress)'."""
        narrow, wide = self.resolved_threads(), self.wide_threads()
        threads = f"{narrow} inference thread{'s' if narrow > 1 else ''}"
        return threads if wide is None else f"{threads} ({wide} while no other request is in progress)"

    def threads_for(self, processes: int) -> int:
        """Intra-op threads for each of ``processes`` model-holding processes: the setting, or cores / processes."""
        return self.runtime.intra_op_threads or max(1, cpu_count() // processes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read ``SPECKS_*`` variables (unset ones keep their defaults)."""
        env = os.environ if environ is None else environ
        get = _EnvReader(env)
        runtime = RuntimeOptions(
            providers=get("PROVIDERS", _parse_list, RuntimeOptions.providers),
            intra_op_threads=get("THREADS", int, 0),
            adaptive_threads=get("ADAPTIVE_THREADS", _parse_bool, RuntimeOptions.adaptive_threads),
        )
        limits = Limits(
            max_image_pixels=get("MAX_IMAGE_PIXELS", int, Limits.max_image_pixels),
            max_body_bytes=get("MAX_BODY_BYTES", int, Limits.max_body_bytes),
            max_json_depth=get("MAX_JSON_DEPTH", int, Limits.max_json_depth),
            max_batch_images=get("MAX_BATCH_IMAGES", int, Limits.max_batch_images),
            max_batch_bytes=get("MAX_BATCH_BYTES", int, Limits.max_batch_bytes),
            max_jpeg_scans=get("MAX_JPEG_SCANS", int, Limits.max_jpeg_scans),
            read_timeout_s=get("READ_TIMEOUT_S", float, Limits.read_timeout_s),
            min_upload_bytes_per_s=get("MIN_UPLOAD_BYTES_PER_S", int, Limits.min_upload_bytes_per_s),
        )
        defaults = SlicingSettings()
        slicing = SlicingSettings(
            **{knob.setting: get(knob.env, _knob_parser(knob), getattr(defaults, knob.setting)) for knob in KNOBS}
        )
        return cls(
            host=get("HOST", str, cls.host),
            port=get("PORT", int, cls.port),
            workers=get("WORKERS", int, cls.workers),
            model=get("MODEL", str, None) or None,
            models=get("MODELS", parse_model_specs, ()),
            profile=get("PROFILE", str, None) or None,
            cache_dir=get("CACHE_DIR", Path, default_cache_dir()),
            request_timeout_s=get("REQUEST_TIMEOUT_S", int, cls.request_timeout_s),
            graceful_timeout_s=get("GRACEFUL_TIMEOUT_S", int, cls.graceful_timeout_s),
            io_threads=get("IO_THREADS", int, cls.io_threads),
            predictions_per_worker=get("PREDICTIONS_PER_WORKER", int, cls.predictions_per_worker),
            max_worker_memory_mb=get("MAX_WORKER_MEMORY_MB", int, cls.max_worker_memory_mb),
            max_requests=get("MAX_REQUESTS", int, cls.max_requests),
            max_requests_jitter=get("MAX_REQUESTS_JITTER", int, cls.max_requests_jitter),
            shared_runs=get("SHARED_RUNS", _enum_parser(SharedRuns, "shared-run mode"), cls.shared_runs),
            security=Security(
                api_keys=read_api_keys(env),
                open_paths=get("OPEN_PATHS", _parse_list, Security.open_paths),
            ),
            observability=Observability(
                log_format=get("LOG_FORMAT", _enum_parser(LogFormat, "log format"), Observability.log_format),
                log_level=get("LOG_LEVEL", str, Observability.log_level).lower(),
                metrics_enabled=get("METRICS", _parse_bool, Observability.metrics_enabled),
            ),
            runtime=runtime,
            limits=limits,
            slicing=slicing,
            compat=CompatAPIs(max_predictions=get("COMPAT_MAX_PREDICTIONS", int, CompatAPIs.max_predictions)),
            cors=Cors(allowed_origins=get("CORS_ORIGINS", _parse_list, Cors.allowed_origins)),
            image_urls=get("IMAGE_URLS", _parse_list, cls.image_urls),
        )


T = TypeVar("T")


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(text)


_parse_bool.__name__ = "boolean"


def _parse_slice_mode(text: str) -> SliceMode:
    try:
        return SliceMode.parse(_parse_bool(text))
    except ValueError:
        return SliceMode.parse(text)


_parse_slice_mode.__name__ = "slice mode (auto, on, off)"

E = TypeVar("E", bound=enum.Enum)


def _enum_parser(kind: type[E], description: str) -> Callable[[str], E]:
    """A parser of an enum's values, any case, named for the error message (e.g. 'merge strategy (nms, nmm)')."""

    def parse(text: str) -> E:
        return kind(text.strip().lower())

    parse.__name__ = f"{description} ({', '.join(str(m.value) for m in kind)})"
    return parse


def _knob_parser(knob: Knob) -> Callable[[str], Any]:
    """How a detection default's environment variable is read, from its kind (``core.knobs.KNOBS``)."""
    if knob.kind is SliceMode:
        return _parse_slice_mode
    if issubclass(knob.kind, enum.Enum):
        return _enum_parser(knob.kind, f"{knob.setting.replace('_', ' ')} value")
    return {bool: _parse_bool, tuple: _parse_floats}.get(knob.kind, knob.kind)


def _parse_floats(text: str) -> tuple[float, ...]:
    return tuple(float(part) for part in _parse_list(text))


_parse_floats.__name__ = "list of numbers (e.g. 1.0,1.5)"


def _parse_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


class _EnvReader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def __call__(self, name: str, parse: Callable[[str], T], default: T) -> T:
        raw = self.env.get(ENV_PREFIX + name)
        if raw is None or raw == "":
            return default
        try:
            return parse(raw)
        except ValueError as exc:
            raise ConfigError(f"{ENV_PREFIX}{name} is not a valid {parse.__name__}: got {raw!r}") from exc
