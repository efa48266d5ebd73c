"""deploy/k8s: every manifest against the Kubernetes schemas (kubernetes-validate, offline),
and the promises between them, the Dockerfile and the server's settings."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from conftest import REPO_ROOT
from dockerfile import read_stages
from specks.config import Settings

K8S = REPO_ROOT / "deploy" / "k8s"
MANIFESTS = sorted(K8S.rglob("*.yaml"))
# The oldest Kubernetes still commonly run, and the newest the validator knows.
KUBERNETES_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def resource(kind: str) -> dict[str, Any]:
    found = [doc for path in MANIFESTS for doc in documents(path) if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


@pytest.fixture(scope="module")
def pod() -> dict[str, Any]:
    spec: dict[str, Any] = resource("Deployment")["spec"]["template"]["spec"]
    return spec


@pytest.fixture(scope="module")
def container(pod: dict[str, Any]) -> dict[str, Any]:
    assert len(pod["containers"]) == 1
    found: dict[str, Any] = pod["containers"][0]
    return found


@pytest.fixture(scope="module")
def env(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container["env"]}


def test_the_manifests_are_the_ones_documented() -> None:
    names = {str(path.relative_to(K8S)) for path in MANIFESTS}
    assert names == {"deployment.yaml", "service.yaml", "hpa.yaml", "pdb.yaml", "optional/api-keys-secret.yaml"}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: str(p.relative_to(K8S)))
def test_every_manifest_is_valid_kubernetes(path: Path, version: str) -> None:
    """Strict: a misspelt field (``readinesProbe``) is an error, not silently ignored."""
    docs = documents(path)
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)  # raises ValidationError


def test_the_validator_catches_a_misspelt_field() -> None:
    broken = resource("Deployment")
    broken = {**broken, "spec": {**broken["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)


def test_probes_liveness_on_health_readiness_on_ready(container: dict[str, Any]) -> None:
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    startup = container["startupProbe"]
    assert startup["httpGet"]["path"] == "/health"  # answered once a worker has its model
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 60  # time to load a model
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] == "http"


def test_termination_outlasts_the_request_timeout(pod: dict[str, Any], container: dict[str, Any], env: dict) -> None:
    request_timeout_s = int(env["SPECKS_REQUEST_TIMEOUT_S"])
    graceful_s = int(env["SPECKS_GRACEFUL_TIMEOUT_S"])
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    assert graceful_s > request_timeout_s  # gunicorn lets a request of the full timeout finish
    assert pod["terminationGracePeriodSeconds"] > int(pre_stop[1]) + graceful_s  # and Kubernetes lets gunicorn


def test_resources_are_requested_and_memory_is_limited(container: dict[str, Any], env: dict[str, str]) -> None:
    resources = container["resources"]
    assert set(resources["requests"]) == {"cpu", "memory"}  # the HPA's utilisation needs a CPU request
    assert "memory" in resources["limits"]
    assert "cpu" not in resources["limits"]
    workers, threads = int(env["SPECKS_WORKERS"]), int(env["SPECKS_THREADS"])
    assert workers * threads == int(resources["requests"]["cpu"])  # workers x threads fill the cores


def test_the_pod_runs_as_the_images_user_read_only(pod: dict[str, Any], container: dict[str, Any]) -> None:
    runtime = read_stages(REPO_ROOT / "Dockerfile")[-1]
    uid, gid = runtime.all("USER")[0].split(":")
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == (int(uid), int(gid))
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    tmp = next(m for m in container["volumeMounts"] if m["mountPath"] == "/tmp")  # metrics and heartbeat files
    assert "emptyDir" in next(v for v in pod["volumes"] if v["name"] == tmp["name"])


def test_the_container_port_is_the_images(container: dict[str, Any]) -> None:
    runtime = read_stages(REPO_ROOT / "Dockerfile")[-1]
    port = container["ports"][0]
    assert (port["name"], str(port["containerPort"])) == ("http", runtime.env()["SPECKS_PORT"])
    assert runtime.all("EXPOSE") == [str(port["containerPort"])]


def config_variable_names() -> set[str]:
    source = (REPO_ROOT / "src" / "specks" / "config.py").read_text()
    return {f"SPECKS_{name}" for name in re.findall(r'get\("([A-Z_]+)"', source)} | {
        "SPECKS_API_KEYS",
        "SPECKS_API_KEYS_FILE",
    }


def test_every_variable_is_a_setting_and_the_settings_are_valid(env: dict[str, str]) -> None:
    """A misspelt SPECKS_ name would be silently ignored; a bad value fails at start-up, not here."""
    names = config_variable_names()
    assert "SPECKS_WORKERS" in names and "SPECKS_MAX_REQUESTS" in names
    assert set(env) <= names
    settings = Settings.from_env({k: v for k, v in env.items() if k != "SPECKS_API_KEYS_FILE"})
    assert settings.workers == int(env["SPECKS_WORKERS"])
    assert settings.request_timeout_s == int(env["SPECKS_REQUEST_TIMEOUT_S"])


def test_the_service_and_the_autoscaler_point_at_the_deployment() -> None:
    kinds = ("Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget")
    deployment, service, hpa, pdb = (resource(kind) for kind in kinds)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert hpa["spec"]["minReplicas"] >= 2 and hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]
    assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]  # a drain can proceed


def test_the_optional_secret_feeds_the_api_keys_file(pod: dict[str, Any], container: dict[str, Any], env: dict) -> None:
    secret = resource("Secret")
    volume = next(v for v in pod["volumes"] if "secret" in v)
    assert volume["secret"] == {"secretName": secret["metadata"]["name"], "optional": True}
    mount = next(m for m in container["volumeMounts"] if m["name"] == volume["name"])
    key_file = Path(env["SPECKS_API_KEYS_FILE"])
    assert str(key_file.parent) == mount["mountPath"]
    assert key_file.name in secret["stringData"]
    # Not applied by `kubectl apply -f deploy/k8s/` (a placeholder key must never go live by accident).
    secret_files = [p for p in MANIFESTS if any(d["kind"] == "Secret" for d in documents(p))]
    assert [p.parent.name for p in secret_files] == ["optional"]


def test_the_deployment_page_applies_what_is_here() -> None:
    page = (REPO_ROOT / "docs" / "deployment.md").read_text()
    applied = re.findall(r"kubectl apply -f (\S+)", page)
    assert "deploy/k8s/" in applied
    assert all((REPO_ROOT / path).exists() for path in applied), applied
