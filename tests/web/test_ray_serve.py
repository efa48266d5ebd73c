"""Specks on Ray Serve: a real local Ray instance, the whole app through Serve's proxy, replica faults.

One Ray instance for the module (2 CPUs, a small object store, everything on loopback), shut down
through the API (never `ray stop`). The app runs two replicas of yolov5n; the tests that change it
(a killed replica, a broken model) come last.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask

from conftest import COCO_TINY, MODELS, free_port, jpeg_bytes, require
from factories import b64
from fakes import FakeDetector
from specks.config import Settings
from specks.core.pipeline import Detector
from specks.errors import InferenceError, ModelNotReadyError
from specks.service.holder import ModelHolder
from specks.web import create_app

ray = pytest.importorskip("ray", reason="needs the ray extra (make dev installs it)")
serve = pytest.importorskip("ray.serve")

from specks.web.ray_config import APP_NAME, DEPLOYMENT_NAME, RayDeployment, Scaling, replica_environ  # noqa: E402 (after the importorskip)
from specks.web.ray_serve import (  # noqa: E402
    REPLICA_HEADER,
    SpecksDeployment,
    behind_the_proxy,
    bind,
    check_fits,
    check_model,
    ray_metrics_urls,
)

PERSON_PHOTO = "000000085329.jpg"
REPLICAS = 2
SEED_HEADERS = {"Content-type": "application/json"}
MAX_BODY_BYTES = 1024 * 1024  # the replicas' body limit: small, so the 413 case stays cheap


# -- the pieces, without Ray running ------------------------------------------------------


def _holder(detector: Any = None) -> ModelHolder:
    return ModelHolder(Settings(), detector)


def test_check_model_runs_one_probe_prediction_on_a_healthy_model(yolov5n_detector: Detector) -> None:
    check_model(_holder(yolov5n_detector))  # the real path: decode, letterbox, session.run, postprocess
    fake = FakeDetector()
    check_model(_holder(fake))
    assert len(fake.calls) == 1


def test_check_model_fails_while_the_model_is_missing_and_says_why(tmp_path: Path) -> None:
    with pytest.raises(ModelNotReadyError, match="still loading"):
        check_model(_holder())
    failed = ModelHolder(Settings(model=str(tmp_path / "missing.onnx")))
    failed.start_loading(background=False)
    with pytest.raises(ModelNotReadyError, match="failed to load: .*model file not found"):
        check_model(failed)  # Serve's status is for operators: the whole reason


def test_check_model_fails_when_the_model_is_broken() -> None:
    with pytest.raises(InferenceError, match="session died"):
        check_model(_holder(FakeDetector(error=InferenceError("inference failed: session died"))))


def test_check_model_never_queues_behind_requests_that_hold_every_slot() -> None:
    detector = FakeDetector(error=InferenceError("would fail if probed"))
    holder = _holder(detector)
    slots = holder.settings.predictions_per_worker
    for _ in range(slots):
        holder.prediction_slots.acquire()
    check_model(holder)  # busy serving: healthy, and no probe
    assert detector.calls == []
    for _ in range(slots):
        holder.prediction_slots.release()


def test_answers_behind_the_proxy_name_their_replica_and_leave_the_request_id_to_it() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Length", "2"), ("X-Request-ID", "abc")])
        return [b"ok"]

    seen: list[list[tuple[str, str]]] = []
    body = behind_the_proxy(app, "r1")({}, lambda status, headers, exc_info=None: seen.append(headers))
    assert list(body) == [b"ok"]
    assert seen == [[("Content-Length", "2"), (REPLICA_HEADER, "r1")]]


def test_a_local_deployment_must_fit_the_cpus() -> None:
    check_fits(RayDeployment(Scaling(replicas=2)), cpus=2)
    check_fits(RayDeployment(Scaling(min_replicas=1, max_replicas=8), replica_cpus=2), cpus=2)
    with pytest.raises(Exception, match="need 3 CPUs, this machine's Ray has 2"):
        check_fits(RayDeployment(Scaling(replicas=3)), cpus=2)


# -- a real Ray instance -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def serve_url() -> Iterator[str]:
    """A local Ray with Serve's proxy on a free loopback port; shut down through the API."""
    port = free_port()
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=200 * 2**20,
        _node_ip_address="127.0.0.1",
        log_to_driver=False,
    )
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        yield f"http://127.0.0.1:{port}"
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()


def _environ(model: Path, cache_dir: Path) -> dict[str, str]:
    variables = {"SPECKS_CACHE_DIR": str(cache_dir), "SPECKS_MAX_BODY_BYTES": str(MAX_BODY_BYTES)}
    return replica_environ(variables, replica_cpus=1, model=str(model))


@pytest.fixture(scope="module")
def specks_url(serve_url: str, cache_dir: Path) -> str:
    """Specks with two yolov5n replicas of 1 CPU each behind the proxy."""
    environ = _environ(require(MODELS / "yolov5n.onnx"), cache_dir)
    serve.run(bind(RayDeployment(Scaling(replicas=REPLICAS)), environ), name=APP_NAME, route_prefix="/")
    return serve_url


def _request(url: str, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> Any:
    """One request on a fresh connection -> (response with its raw header list, body bytes)."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response, response.read()
    finally:
        connection.close()


def _assert_sized_not_chunked(response: http.client.HTTPResponse, body: bytes) -> None:
    assert response.getheader("Transfer-Encoding") is None
    assert response.getheader("Content-Length") == str(len(body))


@pytest.mark.ray
@pytest.mark.slow
def test_seed_client_predicts_through_the_proxy(specks_url: str) -> None:
    photo = require(COCO_TINY / "images" / PERSON_PHOTO).read_bytes()
    payload = json.dumps({"image": b64(photo)}).encode()
    response, body = _request(specks_url, "POST", "/predict", payload, SEED_HEADERS)
    assert response.status == 200, body[:300]
    assert response.getheader("Content-Type") == "application/json"
    _assert_sized_not_chunked(response, body)
    answer = json.loads(body)
    assert "person" in [d["label"] for d in answer["detections"]]
    assert answer["model"]["name"] == "yolov5n.onnx"
    assert response.getheader(REPLICA_HEADER)


# What gunicorn and Ray must answer alike: (method, path, body, headers).
PARITY_REQUESTS = [
    ("GET", "/", None, {}),
    ("GET", "/health", None, {}),
    ("GET", "/ready", None, {}),
    ("GET", "/model", None, {}),
    ("GET", "/openapi.json", None, {}),
    ("GET", "/no-such-route", None, {}),
    ("GET", "/predict", None, {}),
    ("POST", "/predict", b"{not json", SEED_HEADERS),
    ("POST", "/predict", b'{"image": "%%%"}', SEED_HEADERS),
    ("POST", "/predict", b'{"image": "aGk=", "confidence": 0.5}', SEED_HEADERS),
    ("POST", "/predict", b"\x00" * 64, {"Content-type": "application/octet-stream"}),
    ("POST", "/predict", b'{"image": "' + b"A" * MAX_BODY_BYTES + b'"}', SEED_HEADERS),
]


@pytest.fixture(scope="module")
def direct_app(cache_dir: Path) -> Flask:
    """The app the replicas run, built here from the same settings, with the same models loaded."""
    return create_app(Settings.from_env(_environ(MODELS / "yolov5n.onnx", cache_dir)), load_in_background=False)


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.parametrize(("method", "path", "body", "headers"), PARITY_REQUESTS)
def test_every_route_answers_as_the_app_itself_does(
    specks_url: str,
    direct_app: Flask,
    method: str,
    path: str,
    body: bytes | None,
    headers: dict[str, str],
) -> None:
    """Status, content type and body through Ray equal the same app's in-process answer."""
    direct = direct_app.test_client().open(path, method=method, data=body, headers=headers)
    response, ray_body = _request(specks_url, method, path, body, headers)
    assert response.status == direct.status_code
    assert response.getheader("Content-Type") == direct.headers["Content-Type"]
    assert ray_body == direct.get_data()
    _assert_sized_not_chunked(response, ray_body)


@pytest.mark.ray
@pytest.mark.slow
def test_docs_page_and_metrics_answer_through_the_proxy(specks_url: str) -> None:
    docs, docs_body = _request(specks_url, "GET", "/docs")
    assert docs.status == 200 and b"swagger" in docs_body.lower()
    _assert_sized_not_chunked(docs, docs_body)
    metrics, metrics_body = _request(specks_url, "GET", "/metrics")
    assert metrics.status == 200
    text = metrics_body.decode()
    assert 'specks_model_info{format="onnx",input_size="640x640",layout="yolov5",name="yolov5n.onnx"} 1.0' in text
    assert "specks_requests_total{" in text


@pytest.mark.ray
@pytest.mark.slow
def test_the_request_id_is_sent_once_and_is_the_clients(specks_url: str) -> None:
    response, _ = _request(specks_url, "GET", "/health", headers={"X-Request-ID": "client-id-42"})
    ids = [value for name, value in response.getheaders() if name.lower() == "x-request-id"]
    assert ids == ["client-id-42"]


@pytest.mark.ray
@pytest.mark.slow
def test_two_replicas_share_the_load(specks_url: str) -> None:
    payload = json.dumps({"image": b64(jpeg_bytes(320, 240))}).encode()

    def predict(_: int) -> tuple[int, str | None]:
        response, _body = _request(specks_url, "POST", "/predict", payload, SEED_HEADERS)
        return response.status, response.getheader(REPLICA_HEADER)

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(predict, range(16)))
    assert {status for status, _ in answers} == {200}
    assert len({replica for _, replica in answers}) == REPLICAS
    assert set(replica_pids()) == {replica for _, replica in answers}


@pytest.mark.ray
@pytest.mark.slow
def test_ray_exports_serves_own_metrics_for_the_specks_deployment(specks_url: str) -> None:
    for _ in range(3):
        assert requests.get(specks_url + "/health", timeout=10).status_code == 200
    (url,) = ray_metrics_urls()
    wanted = (
        "ray_serve_num_http_requests_total{",  # the proxy
        "ray_serve_deployment_request_counter_total{",  # the replicas
        "ray_serve_deployment_replica_healthy{",  # the controller
    )
    deadline = time.monotonic() + 30  # Ray reports metrics every few seconds
    while True:
        lines = requests.get(url, timeout=10).text.splitlines()
        found = {
            name: [line for line in lines if line.startswith(name) and 'application="specks"' in line]
            for name in wanted
        }
        if all(found.values()) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert all(found.values()), f"not exported within 30 s: {[name for name, hit in found.items() if not hit]}"


# -- faults (these change the deployment: they run last) ------------------------------------


def replica_pids() -> dict[str, int]:
    """Replica id -> process id of the Specks deployment's live replicas (Serve's named actors)."""
    prefix = f"SERVE_REPLICA::{APP_NAME}#{DEPLOYMENT_NAME}#"
    pids = {}
    for actor in ray.util.list_named_actors(all_namespaces=True):
        if actor["name"].startswith(prefix):
            handle = ray.get_actor(actor["name"], namespace=actor["namespace"])
            try:
                pids[actor["name"].removeprefix(prefix)] = ray.get(
                    handle.__ray_call__.remote(lambda replica: os.getpid()), timeout=10
                )
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                continue  # dead or dying
    return pids


@dataclass(frozen=True)
class Sent:
    started_s: float
    finished_s: float
    status: int  # 0: no answer (connection error)
    replica: str | None


def _keep_sending(url: str, payload: bytes, stop: threading.Event, sent: list[Sent]) -> None:
    """One client: requests back to back on one keep-alive connection, reconnecting after an error."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    while not stop.is_set():
        started = time.monotonic()
        try:
            connection.request("POST", "/predict", body=payload, headers=SEED_HEADERS)
            response = connection.getresponse()
            response.read()
            status, replica = response.status, response.getheader(REPLICA_HEADER)
        except (OSError, http.client.HTTPException):
            status, replica = 0, None
        sent.append(Sent(started, time.monotonic(), status, replica))
        if status != 200:
            connection.close()
            connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.close()


# How long after a replica dies Ray Serve's proxy may still route a request to it.
ROUTING_GRACE_S = 2.0


def _wait_for(condition: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"{what} did not happen within {timeout_s:.0f} s")


@pytest.mark.ray
@pytest.mark.slow
def test_a_killed_replica_is_replaced_and_only_its_requests_in_flight_fail(specks_url: str) -> None:
    before = replica_pids()
    assert len(before) == REPLICAS
    victim, victim_pid = sorted(before.items())[0]
    payload = json.dumps({"image": b64(jpeg_bytes(320, 240))}).encode()
    stop, sent = threading.Event(), []  # type: ignore[var-annotated]
    clients = [threading.Thread(target=_keep_sending, args=(specks_url, payload, stop, sent)) for _ in range(4)]
    for client in clients:
        client.start()
    try:
        _wait_for(lambda: any(s.replica == victim for s in sent), 20, "the victim serving a request")
        killed_s = time.monotonic()
        os.kill(victim_pid, signal.SIGKILL)
        after = _wait_for(
            lambda: (pids := replica_pids()) and len(pids) == REPLICAS and victim not in pids and pids,
            60,
            "a new replica",
        )
        (newcomer,) = set(after) - set(before)
        _wait_for(lambda: any(s.replica == newcomer for s in sent), 20, "the new replica serving")
    finally:
        stop.set()
        for client in clients:
            client.join(timeout=40)
    failed = [s for s in sent if s.status != 200]
    assert len(sent) > 20
    # Only requests around the kill fail: in flight on the victim, or routed to it in the moment
    # before Ray's proxy learns it is gone (seen: one sent 0.1 s after the kill); at most what one
    # replica holds at once.
    assert all(s.started_s <= killed_s + ROUTING_GRACE_S and s.finished_s >= killed_s for s in failed), failed
    assert len(failed) <= RayDeployment().max_ongoing_requests
    (survivor,) = set(before) - {victim}
    assert any(s.replica == survivor and s.started_s > killed_s for s in sent)


@pytest.mark.ray
@pytest.mark.slow
def test_check_health_fails_a_replica_whose_model_is_broken(serve_url: str, cache_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"this is no ONNX model")
    options = {
        **RayDeployment().deployment_options(),
        "name": "broken",
        "ray_actor_options": {"num_cpus": 0},  # the two yolov5n replicas hold both CPUs
        "max_constructor_retry_count": 1,
    }
    application = SpecksDeployment.options(**options).bind(_environ(broken, cache_dir))  # type: ignore[attr-defined]
    try:
        with pytest.raises(RuntimeError, match="Deploying application broken failed"):
            serve.run(application, name="broken", route_prefix="/broken")
        message = serve.status().applications["broken"].deployments["broken"].message
    finally:
        serve.delete("broken")
    # The constructor ran; Serve's first check_health refused the replica, with Specks' reason.
    assert "check_health" in message
    assert "ModelNotReadyError: a model failed to load: " in message
    assert "Protobuf parsing failed" in message
