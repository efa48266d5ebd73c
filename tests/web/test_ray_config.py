"""What a Ray Serve deployment is made of: scaling, per-replica options, replica settings, config files.

No Ray instance here; the config files are checked against Ray Serve's own schema when Ray is installed.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from conftest import REPO_ROOT, require
from specks.config import Settings
from specks.errors import ConfigError
from specks.web.ray_config import (
    APP_IMPORT_PATH,
    DEPLOYMENT_NAME,
    HttpOptions,
    RayDeployment,
    Scaling,
    default_threads,
    parse_builder_args,
    replica_environ,
    serve_config,
)

RAYSERVICE_MANIFEST = REPO_ROOT / "deploy" / "kuberay" / "rayservice.yaml"


@pytest.mark.parametrize(
    ("scaling", "options"),
    [
        (Scaling(), {"num_replicas": 1}),
        (Scaling(replicas=3), {"num_replicas": 3}),
        (
            Scaling(max_replicas=4),
            {"autoscaling_config": {"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 2.0}},
        ),
        (
            Scaling(min_replicas=0, max_replicas=2, target_ongoing_requests=3),
            {"autoscaling_config": {"min_replicas": 0, "max_replicas": 2, "target_ongoing_requests": 3}},
        ),
    ],
)
def test_scaling_is_a_fixed_count_or_autoscaling_bounds(scaling: Scaling, options: dict[str, Any]) -> None:
    assert scaling.options() == options
    assert scaling.autoscaling == ("autoscaling_config" in options)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"replicas": 0}, "replicas must be >= 1, got 0"),
        ({"min_replicas": 2}, "needs max_replicas"),
        ({"min_replicas": 3, "max_replicas": 2}, "got 3 and 2"),
        ({"min_replicas": 0, "max_replicas": 0}, "max_replicas must be >= 1"),
        ({"max_replicas": 2, "target_ongoing_requests": 0}, "target_ongoing_requests must be > 0"),
    ],
)
def test_bad_scaling_is_refused_with_the_value(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Scaling(**fields)


def test_deployment_options_name_cpus_concurrency_health_and_shutdown() -> None:
    options = RayDeployment(Scaling(replicas=2), replica_cpus=1.5, max_ongoing_requests=6).deployment_options()
    assert options["name"] == DEPLOYMENT_NAME
    assert options["num_replicas"] == 2
    assert options["ray_actor_options"] == {"num_cpus": 1.5}
    assert options["max_ongoing_requests"] == 6
    assert options["health_check_period_s"] > 0 and options["health_check_timeout_s"] > 0
    assert options["graceful_shutdown_timeout_s"] == 30.0
    assert options["logging_config"] == {"enable_access_log": False}  # Specks logs each request itself


@pytest.mark.parametrize("fields", [{"replica_cpus": 0}, {"max_ongoing_requests": 0}])
def test_bad_deployment_options_are_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        RayDeployment(**fields)


@pytest.mark.parametrize(("cpus", "threads"), [(0.5, 1), (1, 1), (1.9, 1), (2, 2), (4, 4)])
def test_default_threads_follow_the_replicas_cpus(cpus: float, threads: int) -> None:
    assert default_threads(cpus) == threads


def test_replica_environ_keeps_specks_variables_and_folds_flags_in() -> None:
    environ = {"SPECKS_MAX_TILES": "50", "SPECKS_MODEL": "/old.onnx", "HOME": "/root", "PATH": "/bin"}
    chosen = replica_environ(environ, replica_cpus=2, model="/new.onnx", providers="cpu")
    assert chosen == {
        "SPECKS_MAX_TILES": "50",
        "SPECKS_MODEL": "/new.onnx",  # the flag wins over the environment, as in `specks serve`
        "SPECKS_PROVIDERS": "cpu",
        "SPECKS_THREADS": "2",  # from the replica's CPUs
    }
    settings = Settings.from_env(chosen)
    assert settings.slicing.max_tiles == 50 and settings.runtime.intra_op_threads == 2


def test_replica_environ_threads_flag_and_variable_beat_the_cpu_default() -> None:
    assert replica_environ({}, replica_cpus=2, threads=3)["SPECKS_THREADS"] == "3"
    assert replica_environ({"SPECKS_THREADS": "1"}, replica_cpus=4)["SPECKS_THREADS"] == "1"


def test_replica_environ_refuses_a_bad_setting_before_any_replica_starts() -> None:
    with pytest.raises(ConfigError, match="SPECKS_MAX_TILES is not a valid int: got 'many'"):
        replica_environ({"SPECKS_MAX_TILES": "many"}, replica_cpus=1)


def test_builder_args_arrive_as_strings_from_serve_run() -> None:
    args = {"replicas": "2", "replica_cpus": "0.5", "model": "/m.onnx", "env": {"SPECKS_SLICE": "off"}}
    deployment, environ = parse_builder_args(args, {"SPECKS_MAX_TILES": "9", "SPECKS_GRACEFUL_TIMEOUT_S": "12"})
    assert deployment.scaling.options() == {"num_replicas": 2}
    assert deployment.replica_cpus == 0.5
    assert deployment.graceful_shutdown_timeout_s == 12  # from the settings
    assert environ["SPECKS_MODEL"] == "/m.onnx"
    assert environ["SPECKS_SLICE"] == "off" and environ["SPECKS_MAX_TILES"] == "9"
    assert environ["SPECKS_THREADS"] == "1"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"replica": 2}, r"unknown Specks builder argument\(s\) \['replica'\]"),
        ({"replicas": "two"}, "builder argument 'replicas' must be int, got 'two'"),
        ({"env": {"MAX_TILES": "3"}}, "must map SPECKS_"),
        ({"max_replicas": "1", "min_replicas": "2"}, "got 2 and 1"),
    ],
)
def test_bad_builder_args_are_refused(args: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_builder_args(args, {})


def _config(**environ: str) -> dict[str, Any]:
    deployment = RayDeployment(Scaling(min_replicas=1, max_replicas=4), replica_cpus=2)
    return serve_config(deployment, replica_environ(environ, replica_cpus=2), HttpOptions(port=6060))


def test_serve_config_runs_the_importable_app_with_settings_as_env_vars() -> None:
    config = _config(SPECKS_MODEL="/models/yolov5n.onnx", SPECKS_MAX_TILES="40")
    (application,) = config["applications"]
    assert application["import_path"] == APP_IMPORT_PATH
    assert application["route_prefix"] == "/"
    assert application["runtime_env"]["env_vars"] == {
        "SPECKS_MAX_TILES": "40",
        "SPECKS_MODEL": "/models/yolov5n.onnx",
        "SPECKS_THREADS": "2",
    }
    (deployment,) = application["deployments"]
    assert deployment["autoscaling_config"]["max_replicas"] == 4
    assert deployment["ray_actor_options"] == {"num_cpus": 2}
    assert config["http_options"] == {"host": "0.0.0.0", "port": 6060, "request_timeout_s": 60.0}


def test_serve_config_never_writes_api_keys() -> None:
    config = _config(SPECKS_API_KEYS="secret-one,secret-two", SPECKS_API_KEYS_FILE="/keys/specks")
    env_vars = config["applications"][0]["runtime_env"]["env_vars"]
    assert "SPECKS_API_KEYS" not in env_vars
    assert env_vars["SPECKS_API_KEYS_FILE"] == "/keys/specks"  # a path is no secret
    assert "secret" not in yaml.safe_dump(config)


def _serve_schema() -> Any:
    schema = pytest.importorskip("ray.serve.schema", reason="needs the ray extra")
    return schema.ServeDeploySchema


def test_serve_config_passes_ray_serves_own_schema() -> None:
    parsed = _serve_schema().model_validate(yaml.safe_load(yaml.safe_dump(_config(SPECKS_SLICE="off"))))
    (application,) = parsed.applications
    assert application.import_path == APP_IMPORT_PATH
    (deployment,) = application.deployments
    assert deployment.name == DEPLOYMENT_NAME
    assert deployment.autoscaling_config["min_replicas"] == 1
    assert deployment.logging_config.enable_access_log is False


def _rayservice() -> dict[str, Any]:
    manifest: dict[str, Any] = yaml.safe_load(require(RAYSERVICE_MANIFEST).read_text())
    return manifest


def test_the_kuberay_manifest_serves_the_importable_app_under_rays_schema() -> None:
    manifest = _rayservice()
    assert manifest["apiVersion"] == "ray.io/v1" and manifest["kind"] == "RayService"
    serve_config_v2 = yaml.safe_load(manifest["spec"]["serveConfigV2"])
    parsed = _serve_schema().model_validate(serve_config_v2)
    (application,) = parsed.applications
    assert application.import_path == APP_IMPORT_PATH
    assert application.deployments[0].name == DEPLOYMENT_NAME
    env_vars = application.runtime_env["env_vars"]
    Settings.from_env(env_vars)  # every SPECKS_* value in it is valid


def test_the_kuberay_manifest_keeps_api_keys_in_a_secret_and_probes_specks() -> None:
    cluster = _rayservice()["spec"]["rayClusterConfig"]
    pods = [cluster["headGroupSpec"]["template"], *(group["template"] for group in cluster["workerGroupSpecs"])]
    for pod in pods:
        (container,) = pod["spec"]["containers"]
        keys = next(e for e in container["env"] if e["name"] == "SPECKS_API_KEYS")
        assert "secretKeyRef" in keys["valueFrom"]
    assert "SPECKS_API_KEYS" not in _rayservice()["spec"]["serveConfigV2"]
