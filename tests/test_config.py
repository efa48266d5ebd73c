"""Tests of settings: reading SPECKS_* variables, validation messages, thread sizing."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from specks import config
from specks.config import Limits, ModelSpec, RuntimeOptions, Settings, SharedRuns, parse_model_arg
from specks.core.overlap import MatchMetric, MergeStrategy
from specks.core.slicing import SliceMode
from specks.errors import ConfigError
from specks.logs import LogFormat


def test_from_env_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))

    settings = Settings.from_env({})

    assert settings == Settings(cache_dir=tmp_path / "specks")
    assert settings.host == "127.0.0.1"
    assert settings.port == 6060
    assert settings.workers == 0
    assert settings.model is None
    assert settings.request_timeout_s == 60
    assert settings.predictions_per_worker == 1  # one decode + one model run per worker: the memory budget
    assert (settings.max_requests, settings.max_requests_jitter) == (0, 0)  # workers are not recycled
    assert settings.runtime == RuntimeOptions(providers=("cpu",), intra_op_threads=0)
    assert settings.limits == Limits(max_image_pixels=40_000_000, max_body_bytes=20 * 1024 * 1024, max_json_depth=32)


def test_from_env_ignores_other_variables() -> None:
    assert Settings.from_env({"PORT": "1", "specks_port": "2", "SPECKS_PORTX": "3"}).port == 6060


@pytest.mark.parametrize(
    ("name", "value", "read", "expected"),
    [
        pytest.param("HOST", "0.0.0.0", lambda s: s.host, "0.0.0.0", id="host"),
        pytest.param("PORT", "8080", lambda s: s.port, 8080, id="port"),
        pytest.param("PORT", " 8081 ", lambda s: s.port, 8081, id="port-with-spaces"),
        pytest.param("PORT", "", lambda s: s.port, 6060, id="empty-keeps-default"),
        pytest.param("WORKERS", "4", lambda s: s.workers, 4, id="workers"),
        pytest.param("MODEL", "/models/det.onnx", lambda s: s.model, "/models/det.onnx", id="model"),
        pytest.param("MODEL", "", lambda s: s.model, None, id="empty-model-is-default"),
        pytest.param("CACHE_DIR", "/var/cache/x", lambda s: s.cache_dir, Path("/var/cache/x"), id="cache-dir"),
        pytest.param("REQUEST_TIMEOUT_S", "15", lambda s: s.request_timeout_s, 15, id="request-timeout"),
        pytest.param("PROVIDERS", "cuda, cpu", lambda s: s.runtime.providers, ("cuda", "cpu"), id="providers"),
        pytest.param("PROVIDERS", "openvino,,", lambda s: s.runtime.providers, ("openvino",), id="providers-blanks"),
        pytest.param("THREADS", "3", lambda s: s.runtime.intra_op_threads, 3, id="threads"),
        pytest.param("MAX_IMAGE_PIXELS", "1000000", lambda s: s.limits.max_image_pixels, 1_000_000, id="max-pixels"),
        pytest.param("MAX_BODY_BYTES", "2048", lambda s: s.limits.max_body_bytes, 2048, id="max-body"),
        pytest.param("MAX_JSON_DEPTH", "8", lambda s: s.limits.max_json_depth, 8, id="max-json-depth"),
        pytest.param("SLICE", "OFF", lambda s: s.slicing.mode, SliceMode.OFF, id="slice-off"),
        pytest.param("SLICE", "true", lambda s: s.slicing.mode, SliceMode.ON, id="slice-true"),
        pytest.param("SLICE", "auto", lambda s: s.slicing.mode, SliceMode.AUTO, id="slice-auto"),
        pytest.param("MERGE", "NMM", lambda s: s.slicing.merge, MergeStrategy.NMM, id="merge"),
        pytest.param("MERGE_METRIC", "ios", lambda s: s.slicing.merge_metric, MatchMetric.IOS, id="merge-metric"),
        pytest.param("LOG_FORMAT", "Text", lambda s: s.observability.log_format, LogFormat.TEXT, id="log-format"),
        pytest.param("TILE_SCALE", "1.5", lambda s: s.slicing.tile_scale, 1.5, id="tile-scale"),
        pytest.param("MAX_TILES", "50", lambda s: s.slicing.max_tiles, 50, id="max-tiles"),
        pytest.param(
            "MAX_INPUT_PIXELS",
            "50000000",
            lambda s: s.slicing.max_input_pixels_per_request,
            50_000_000,
            id="max-input-pixels",
        ),
        pytest.param("MAX_BATCH_IMAGES", "8", lambda s: s.limits.max_batch_images, 8, id="max-batch-images"),
        pytest.param("MAX_BATCH_BYTES", "1048576", lambda s: s.limits.max_batch_bytes, 1 << 20, id="max-batch-bytes"),
        pytest.param("MAX_WORKER_MEMORY_MB", "2048", lambda s: s.max_worker_memory_mb, 2048, id="max-worker-memory"),
        pytest.param("SHARED_RUNS", "ON", lambda s: s.shared_runs, SharedRuns.ON, id="shared-runs"),
        pytest.param(
            "MODELS",
            "a=/p/a.onnx, b.v2=/p/b.onnx",
            lambda s: s.models,
            (ModelSpec("a", "/p/a.onnx"), ModelSpec("b.v2", "/p/b.onnx")),
            id="models",
        ),
        pytest.param("PREDICTIONS_PER_WORKER", "2", lambda s: s.predictions_per_worker, 2, id="predictions"),
        pytest.param("MAX_REQUESTS", "1000", lambda s: s.max_requests, 1000, id="max-requests"),
        pytest.param("MAX_REQUESTS_JITTER", "50", lambda s: s.max_requests_jitter, 50, id="max-requests-jitter"),
    ],
)
def test_from_env_reads_each_variable(name: str, value: str, read: Callable[[Settings], Any], expected: Any) -> None:
    assert read(Settings.from_env({f"SPECKS_{name}": value})) == expected


@pytest.mark.parametrize(
    ("name", "value"),
    [
        pytest.param("PORT", "http", id="port-word"),
        pytest.param("PORT", "80.5", id="port-float"),
        pytest.param("WORKERS", "two", id="workers"),
        pytest.param("THREADS", "1e3", id="threads"),
        pytest.param("REQUEST_TIMEOUT_S", "60s", id="timeout-with-unit"),
        pytest.param("MAX_IMAGE_PIXELS", "40M", id="max-pixels"),
        pytest.param("MAX_BODY_BYTES", "20MiB", id="max-body"),
        pytest.param("MAX_JSON_DEPTH", "deep", id="max-json-depth"),
        pytest.param("SLICE", "sometimes", id="slice-mode"),
        pytest.param("MERGE", "wbf-ish", id="merge"),
        pytest.param("MERGE_METRIC", "dice", id="merge-metric"),
        pytest.param("LOG_FORMAT", "xml", id="log-format"),
        pytest.param("MODELS", "/p/a.onnx", id="models-without-a-name"),
        pytest.param("MAX_BATCH_IMAGES", "many", id="max-batch-images"),
        pytest.param("MAX_INPUT_PIXELS", "200MP", id="max-input-pixels"),
        pytest.param("SHARED_RUNS", "sometimes", id="shared-runs"),
    ],
)
def test_from_env_bad_int_names_variable_and_value(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({f"SPECKS_{name}": value})

    assert f"SPECKS_{name}" in caught.value.message
    assert repr(value) in caught.value.message


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        pytest.param({"SPECKS_PORT": "0"}, "port must be between 1 and 65535, got 0", id="port-zero"),
        pytest.param({"SPECKS_PORT": "65536"}, "got 65536", id="port-too-high"),
        pytest.param({"SPECKS_PORT": "-80"}, "got -80", id="port-negative"),
        pytest.param({"SPECKS_WORKERS": "-1"}, "workers must be >= 0, got -1", id="workers-negative"),
        pytest.param({"SPECKS_MAX_REQUESTS": "-1"}, "max_requests must be >= 0, got -1", id="max-requests"),
        pytest.param(
            {"SPECKS_MAX_REQUESTS_JITTER": "-5"}, "max_requests_jitter must be >= 0, got -5", id="max-requests-jitter"
        ),
        pytest.param({"SPECKS_PREDICTIONS_PER_WORKER": "0"}, "predictions_per_worker must be >= 1", id="predictions"),
        pytest.param({"SPECKS_THREADS": "-2"}, "intra_op_threads must be >= 0, got -2", id="threads-negative"),
        pytest.param({"SPECKS_PROVIDERS": "gpu"}, "unknown execution provider", id="provider"),
        pytest.param({"SPECKS_MAX_IMAGE_PIXELS": "0"}, "max_image_pixels must be >= 1, got 0", id="max-pixels"),
        pytest.param({"SPECKS_MAX_BODY_BYTES": "-1"}, "max_body_bytes must be >= 1, got -1", id="max-body"),
        pytest.param({"SPECKS_MAX_JSON_DEPTH": "0"}, "max_json_depth must be >= 1, got 0", id="max-json-depth"),
        # A value a request could never send, refused once at start-up instead of failing every request.
        pytest.param({"SPECKS_TILE_SCALE": "0"}, "tile_scale must be within 0.25..4, got 0.0", id="tile-scale-zero"),
        pytest.param({"SPECKS_TILE_SCALE": "9"}, "tile_scale must be within 0.25..4", id="tile-scale-large"),
        pytest.param({"SPECKS_MAX_TILE_INPUT": "10"}, "max_tile_input_px must be within", id="max-tile-input"),
        pytest.param({"SPECKS_OVERLAP": "0.9"}, "overlap_ratio must be within 0..0.75", id="overlap"),
        pytest.param({"SPECKS_TILE": "10"}, "tile_px must be 0 or 64..4096", id="tile"),
        pytest.param(
            {"SPECKS_MAX_INPUT_PIXELS": "0"}, "max_input_pixels_per_request must be >= 1, got 0", id="max-input-pixels"
        ),
        pytest.param({"SPECKS_MAX_BATCH_IMAGES": "0"}, "max_batch_images must be >= 1, got 0", id="batch-images"),
        pytest.param({"SPECKS_MAX_BATCH_BYTES": "0"}, "max_batch_bytes must be >= 1, got 0", id="batch-bytes"),
        pytest.param({"SPECKS_MAX_WORKER_MEMORY_MB": "-1"}, "max_worker_memory_mb must be >= 0", id="memory"),
        pytest.param({"SPECKS_MODELS": "a=/p/a.onnx,a=/p/b.onnx"}, "'a' is given twice", id="models-twice"),
        pytest.param({"SPECKS_MODELS": "a="}, "model 'a' has no path", id="models-no-path"),
    ],
)
def test_from_env_out_of_range(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(environ)


@pytest.mark.parametrize(
    ("port", "valid"),
    [
        pytest.param(0, False, id="0"),
        pytest.param(1, True, id="1"),
        pytest.param(6060, True, id="6060"),
        pytest.param(65535, True, id="65535"),
        pytest.param(65536, False, id="65536"),
    ],
)
def test_port_range(port: int, valid: bool) -> None:
    if valid:
        assert Settings(port=port).port == port
    else:
        with pytest.raises(ConfigError, match=f"got {port}"):
            Settings(port=port)


@pytest.mark.parametrize(
    ("cores", "workers", "threads", "expected_workers", "expected_threads"),
    [
        pytest.param(8, 0, 0, 8, 1, id="one-worker-per-core"),
        pytest.param(8, 2, 0, 2, 4, id="two-workers"),
        pytest.param(8, 3, 0, 3, 2, id="uneven-rounds-down"),
        pytest.param(16, 1, 0, 1, 16, id="single-worker-gets-all"),
        pytest.param(1, 0, 0, 1, 1, id="one-core"),
        pytest.param(8, 2, 3, 2, 3, id="explicit-threads-win"),
    ],
)
def test_resolved_workers_and_threads_fit_the_cores(
    monkeypatch: pytest.MonkeyPatch,
    cores: int,
    workers: int,
    threads: int,
    expected_workers: int,
    expected_threads: int,
) -> None:
    monkeypatch.setattr(config, "cpu_count", lambda: cores)
    settings = Settings(workers=workers, runtime=RuntimeOptions(intra_op_threads=threads))

    assert settings.resolved_workers() == expected_workers
    assert settings.resolved_threads() == expected_threads
    if threads == 0:
        assert settings.resolved_workers() * settings.resolved_threads() <= cores


def test_more_workers_than_cores_still_get_one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config, "cpu_count", lambda: 4)

    assert Settings(workers=8).resolved_threads() == 1


def test_cpu_count_is_positive() -> None:
    assert config.cpu_count() >= 1


def test_compat_and_cors_defaults() -> None:
    settings = Settings.from_env({})

    assert settings.compat.max_predictions == 20  # Frigate's fixed 20-row array
    assert settings.cors.allowed_origins == ()
    assert not settings.cors.enabled


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("https://app.example.com", ("https://app.example.com",), id="one"),
        pytest.param(
            " http://localhost:3000 , http://127.0.0.1:8080 ",
            ("http://localhost:3000", "http://127.0.0.1:8080"),
            id="several-with-spaces",
        ),
        pytest.param("http://[::1]:5173", ("http://[::1]:5173",), id="ipv6"),
        pytest.param("*", ("*",), id="any"),
    ],
)
def test_cors_origins_from_env(value: str, expected: tuple[str, ...]) -> None:
    cors = Settings.from_env({"SPECKS_CORS_ORIGINS": value}).cors

    assert cors.allowed_origins == expected
    assert cors.enabled
    assert cors.allows_any_origin == (expected == ("*",))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param("https://app.example.com/", "no trailing slash), got 'https://app.example.com/'", id="slash"),
        pytest.param("https://app.example.com/page", "got 'https://app.example.com/page'", id="path"),
        pytest.param("app.example.com", "got 'app.example.com'", id="no-scheme"),
        pytest.param("ftp://app.example.com", "got 'ftp://app.example.com'", id="scheme"),
        # flask-cors would read these as regular expressions: exact origins only.
        pytest.param("https://.*\\.example\\.com", "exact origins", id="regex"),
        pytest.param("*,https://app.example.com", "cannot be combined", id="star-and-more"),
    ],
)
def test_cors_origins_refused(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        Settings.from_env({"SPECKS_CORS_ORIGINS": value})


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        pytest.param("1", True, id="1"),
        pytest.param("100", True, id="100"),
        pytest.param("10000", True, id="10000"),
        pytest.param("0", False, id="0"),
        pytest.param("10001", False, id="10001"),
    ],
)
def test_compat_max_predictions_range(value: str, valid: bool) -> None:
    environ = {"SPECKS_COMPAT_MAX_PREDICTIONS": value}
    if valid:
        assert Settings.from_env(environ).compat.max_predictions == int(value)
    else:
        with pytest.raises(ConfigError, match=f"max_predictions must be 1..10000, got {value}"):
            Settings.from_env(environ)


def test_compat_max_predictions_not_a_number_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="SPECKS_COMPAT_MAX_PREDICTIONS is not a valid int: got 'twenty'"):
        Settings.from_env({"SPECKS_COMPAT_MAX_PREDICTIONS": "twenty"})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("det=/models/det.onnx", ModelSpec("det", "/models/det.onnx"), id="named"),
        pytest.param(" det = models/det.onnx ", ModelSpec("det", "models/det.onnx"), id="spaces"),
        pytest.param("/models/det.onnx", "/models/det.onnx", id="bare-path"),
        pytest.param("/data/run=3/det.onnx", "/data/run=3/det.onnx", id="path-with-equals"),
        pytest.param("my model=/p.onnx", "my model=/p.onnx", id="not-a-name-is-a-path"),
    ],
)
def test_parse_model_arg(value: str, expected: ModelSpec | str) -> None:
    assert parse_model_arg(value) == expected


def test_a_programmatic_model_name_is_checked() -> None:
    with pytest.raises(ConfigError, match="model name 'a b' is not valid"):
        Settings(models=(ModelSpec("a b", "/p.onnx"),))


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        pytest.param({"cpu.max": "200000 100000\n"}, 2, id="v2-two-cores"),
        pytest.param({"cpu.max": "150000 100000\n"}, 2, id="v2-rounded-up"),
        pytest.param({"cpu.max": "50000 100000\n"}, 1, id="v2-half-a-core"),
        pytest.param({"cpu.max": "max 100000\n"}, None, id="v2-unlimited"),
        pytest.param({"cpu/cpu.cfs_quota_us": "400000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 4, id="v1"),
        pytest.param({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None, id="v1-unlimited"),
        pytest.param({}, None, id="no-cgroup"),
        pytest.param({"cpu.max": "garbage"}, None, id="unreadable"),
    ],
)
def test_cgroup_cpu_quota(tmp_path: Path, files: dict[str, str], expected: int | None) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert config.cgroup_cpu_quota(tmp_path) == expected


def test_cpu_count_is_capped_by_the_container_quota(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config.os, "sched_getaffinity", lambda pid: set(range(32)))
    monkeypatch.setattr(config, "cgroup_cpu_quota", lambda: 2)
    assert config.cpu_count() == 2
    monkeypatch.setattr(config, "cgroup_cpu_quota", lambda: None)
    assert config.cpu_count() == 32
