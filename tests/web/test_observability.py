"""Metrics, request ids and structured logs: in-process apps, and one live multi-worker server."""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from gunicorn.config import Config
from prometheus_client import REGISTRY, values
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from conftest import MODELS, jpeg_bytes, live_server_for, specks_log
from factories import b64
from specks.config import Observability, Settings
from specks.core.pipeline import Detector
from specks.errors import ConfigError
from specks.logs import LogFormat, configure_logging, request_id_var
from specks.web import create_app
from specks.web.observability import request_id_from
from specks.web.server import GunicornLogger, child_exit, gunicorn_options, prepare_metrics_dir

SMALL_JPEG = jpeg_bytes(320, 240)
STAGES = ("decode", "preprocess", "inference", "postprocess")

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: FlaskClient) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    return parse_exposition(response.get_data(as_text=True))


def parse_exposition(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def total(samples: Samples, metric: str, /, **labels: str) -> float:
    """Sum of the samples of ``metric`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(value for (name, sample_labels), value in samples.items() if name == metric and wanted <= sample_labels)


def delta(before: Samples, after: Samples, metric: str, /, **labels: str) -> float:
    return total(after, metric, **labels) - total(before, metric, **labels)


def predict(client: FlaskClient, image: bytes = SMALL_JPEG, **options: Any) -> Any:
    return client.post("/predict", json={"image": b64(image), **options})


def explode(*args: Any, **kwargs: Any) -> None:
    raise RuntimeError("secret internal detail")


# -- metrics ---------------------------------------------------------------------------------------


def test_requests_are_counted_by_route_method_and_status(client: FlaskClient) -> None:
    before = scrape(client)
    assert predict(client).status_code == 200
    assert client.post("/predict", json={"image": "%%%"}).status_code == 400
    assert client.get("/no/such/path-8f3a").status_code == 404
    after = scrape(client)

    assert delta(before, after, "specks_requests_total", route="/predict", method="POST", status="200") == 1
    assert delta(before, after, "specks_requests_total", route="/predict", method="POST", status="400") == 1
    assert delta(before, after, "specks_requests_total", route="unmatched", method="GET", status="404") == 1
    assert delta(before, after, "specks_request_duration_seconds_count", route="/predict") == 2
    assert total(after, "specks_request_duration_seconds_sum", route="/predict") > 0
    routes = {dict(labels).get("route") for _, labels in after}
    assert not any(route and "8f3a" in route for route in routes), "a raw path became a label value"


def test_made_up_methods_share_one_label_value(client: FlaskClient) -> None:
    before = scrape(client)
    client.open("/predict", method="BREW")
    client.open("/predict", method="WHEN")
    after = scrape(client)
    assert delta(before, after, "specks_requests_total", route="unmatched", method="other", status="405") == 2
    assert all(dict(labels).get("method") not in ("BREW", "WHEN") for _, labels in after)


def test_stage_histograms_count_each_prediction(client: FlaskClient) -> None:
    before = scrape(client)
    assert predict(client).status_code == 200
    after = scrape(client)
    for stage in STAGES:
        assert delta(before, after, "specks_stage_duration_seconds_count", stage=stage) == 1, stage
    assert delta(before, after, "specks_stage_duration_seconds_sum", stage="inference") > 0
    assert delta(before, after, "specks_stage_duration_seconds_count", stage="merge") == 0  # not sliced
    assert delta(before, after, "specks_tiles_per_request_count") == 1
    assert delta(before, after, "specks_tiles_per_request_bucket", le="0.0") == 1  # 0 tiles: a full-image pass


def test_tiles_histogram_records_the_tiles_of_a_sliced_request(client: FlaskClient) -> None:
    before = scrape(client)
    response = predict(client, jpeg_bytes(1400, 1000), slice=True, tile=640, overlap=0.2)
    assert response.status_code == 200
    tiles = response.get_json()["tiles"]
    assert tiles > 1
    after = scrape(client)
    assert delta(before, after, "specks_tiles_per_request_count") == 1
    assert delta(before, after, "specks_tiles_per_request_sum") == tiles
    assert delta(before, after, "specks_stage_duration_seconds_count", stage="merge") == 1


def test_images_in_flight_is_one_during_a_prediction_and_zero_after(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[float | None] = []
    original = Detector.predict_bytes

    def spy(self: Detector, *args: Any, **kwargs: Any) -> Any:
        seen.append(REGISTRY.get_sample_value("specks_images_in_flight", {"route": "/predict"}))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Detector, "predict_bytes", spy)
    assert predict(client).status_code == 200
    monkeypatch.setattr(Detector, "predict_bytes", explode)
    assert predict(client).status_code == 500
    assert client.post("/predict", data=b"x", content_type="text/plain").status_code == 415

    assert seen == [1.0]
    assert total(scrape(client), "specks_images_in_flight") == 0


def test_model_info_names_the_loaded_model(client: FlaskClient) -> None:
    samples = scrape(client)
    labels = {"name": "yolov5n.onnx", "format": "onnx", "layout": "yolov5", "input_size": "640x640"}
    assert total(samples, "specks_model_info", **labels) == 1


def test_metrics_content_type_follows_the_accept_header(client: FlaskClient) -> None:
    plain = client.get("/metrics")
    assert plain.content_type.startswith("text/plain")
    openmetrics = client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert openmetrics.content_type.startswith("application/openmetrics-text")
    assert openmetrics.get_data(as_text=True).rstrip().endswith("# EOF")


def test_metrics_disabled_answers_404(yolov5n_detector: Detector, cache_dir: Path) -> None:
    settings = Settings(cache_dir=cache_dir, observability=Observability(metrics_enabled=False))
    client = create_app(settings, detector=yolov5n_detector).test_client()
    response = client.get("/metrics")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"
    assert response.headers["X-Request-ID"]
    assert predict(client).status_code == 200  # still serves, and counting is off without error


def test_several_apps_in_one_process_share_the_metrics(app: Flask, yolov5n_detector: Detector, cache_dir: Path) -> None:
    before = scrape(app.test_client())
    other = create_app(Settings(cache_dir=cache_dir), detector=yolov5n_detector).test_client()
    assert other.get("/health").status_code == 200
    assert delta(before, scrape(app.test_client()), "specks_requests_total", route="/health") == 1


# -- request ids -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("incoming", "kept"),
    [
        ("abc-123_X.y", True),
        ("a" * 128, True),
        ("3f2a9c1e4b5d4e6f8a7b9c0d1e2f3a4b", True),
        ("a" * 129, False),
        ("x" * 500, False),
        ("has space", False),
        ("line\nbreak", False),
        ("trailing-newline\n", False),
        ("../etc/passwd", False),
        ("<script>", False),
        ("", False),
        (None, False),
    ],
)
def test_request_id_from_keeps_only_sane_ids(incoming: str | None, kept: bool) -> None:
    result = request_id_from(incoming)
    if kept:
        assert result == incoming
    else:
        assert result != incoming
        assert len(result) == 32 and int(result, 16) >= 0


@pytest.mark.parametrize(
    ("incoming", "echoed"),
    [("client-id.42", True), ("a" * 128, True), ("x" * 500, False), ("two words", False), ("semi;colon", False)],
)
def test_request_id_header_is_echoed_only_when_sane(client: FlaskClient, incoming: str, echoed: bool) -> None:
    response = client.get("/health", headers={"X-Request-ID": incoming})
    returned = response.headers["X-Request-ID"]
    assert (returned == incoming) is echoed
    if not echoed:
        assert len(returned) == 32 and int(returned, 16) >= 0


def test_every_answer_carries_a_fresh_request_id(client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    answers = [
        predict(client),
        client.get("/no/such/path"),
        client.get("/predict"),  # 405
        client.post("/predict", data=b"x", content_type="text/plain"),
        client.post("/predict", json={"image": "%%%"}),
    ]
    monkeypatch.setattr(Detector, "predict_bytes", explode)
    answers.append(predict(client))
    assert [r.status_code for r in answers] == [200, 404, 405, 415, 400, 500]
    ids = [r.headers.get("X-Request-ID") for r in answers]
    assert all(ids) and len(set(ids)) == len(ids)
    assert set(answers[-1].get_json()) == {"error"}  # the envelope is unchanged


# -- logs ------------------------------------------------------------------------------------------


@pytest.fixture()
def json_log(caplog: pytest.LogCaptureFixture) -> Iterator[io.StringIO]:
    """What the ``specks`` loggers write as JSON lines while the test runs."""
    with specks_log(LogFormat.JSON, caplog) as stream:
        yield stream


def log_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_access_log_is_one_json_line_per_request_with_the_request_id(
    client: FlaskClient, json_log: io.StringIO
) -> None:
    response = client.post("/predict", json={"image": b64(SMALL_JPEG)}, headers={"X-Request-ID": "req-42"})
    assert response.status_code == 200
    access = [line for line in log_lines(json_log) if line["logger"] == "specks.access"]
    assert len(access) == 1
    line = access[0]
    assert line["request_id"] == "req-42"
    assert line["level"] == "info"
    assert (line["method"], line["route"], line["path"], line["status"]) == ("POST", "/predict", "/predict", 200)
    assert line["bytes"] == len(response.get_data())
    assert line["duration_ms"] > 0
    assert line["remote_addr"] == "127.0.0.1"
    assert line["ts"].endswith("Z") and isinstance(line["pid"], int)


def test_error_logs_carry_the_request_id_and_traceback(
    client: FlaskClient, json_log: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Detector, "predict_bytes", explode)
    response = client.post("/predict", json={"image": b64(SMALL_JPEG)}, headers={"X-Request-ID": "boom-1"})
    assert response.status_code == 500
    logging.getLogger("specks.test").info("after the request")
    lines = log_lines(json_log)
    error = next(line for line in lines if line["level"] == "error")
    assert error["request_id"] == "boom-1"
    assert "RuntimeError: secret internal detail" in error["exc"]
    assert lines[-1]["message"] == "after the request"
    assert "request_id" not in lines[-1]  # the id does not leak past its request
    assert request_id_var.get() is None


@pytest.fixture()
def root_logger() -> Iterator[logging.Logger]:
    """The root logger, with its handlers and level put back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield root
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


@pytest.mark.parametrize("log_format", list(LogFormat))
def test_configure_logging_installs_one_root_handler(root_logger: logging.Logger, log_format: LogFormat) -> None:
    stream = io.StringIO()
    configure_logging(log_format, "warning", stream=stream)
    configure_logging(log_format, "warning", stream=stream)  # twice: still one handler
    assert len(root_logger.handlers) == 1
    assert root_logger.level == logging.WARNING
    logger = logging.getLogger("specks.test")
    logger.info("dropped: below the level")
    token = request_id_var.set("rid-7")
    try:
        logger.warning("slow %s", "thing", extra={"latency_ms": 12.5})
    finally:
        request_id_var.reset(token)
    output = stream.getvalue().splitlines()
    assert len(output) == 1
    if log_format is LogFormat.JSON:
        line = json.loads(output[0])
        assert {k: line[k] for k in ("level", "logger", "message", "request_id", "latency_ms")} == {
            "level": "warning",
            "logger": "specks.test",
            "message": "slow thing",
            "request_id": "rid-7",
            "latency_ms": 12.5,
        }
    else:
        assert output[0].endswith("WARNING specks.test: slow thing [request_id=rid-7]")


def test_configure_logging_refuses_unknown_values(root_logger: logging.Logger) -> None:
    with pytest.raises(ConfigError, match="got 'xml'"):
        Observability(log_format="xml")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="got 'loud'"):
        configure_logging(LogFormat.JSON, "loud")


# -- gunicorn --------------------------------------------------------------------------------------


def test_gunicorn_options_wire_the_hooks_and_log_level() -> None:
    settings = Settings(observability=Observability(log_level="warning"))
    options = gunicorn_options(settings)
    assert options["child_exit"] is child_exit
    assert options["logger_class"] is GunicornLogger
    assert options["loglevel"] == "warning"
    config = Config()
    for key, value in options.items():
        config.set(key, value)  # gunicorn accepts every value


def test_gunicorn_error_log_goes_through_the_root_logger() -> None:
    logger = GunicornLogger(Config())
    assert logger.error_log.propagate
    assert not [h for h in logger.error_log.handlers if getattr(h, "_gunicorn", False)]


def test_prepare_metrics_dir_empties_the_operators_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(values, "ValueClass", values.ValueClass)  # put back after the test
    (tmp_path / "counter_999.db").write_bytes(b"stale")
    (tmp_path / "keep.txt").write_text("not ours")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    path, created = prepare_metrics_dir()
    assert (path, created) == (tmp_path, False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
    assert values.ValueClass is not values.MutexValue  # metrics made from now on go to files


def test_prepare_metrics_dir_makes_a_fresh_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(values, "ValueClass", values.ValueClass)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")  # so that monkeypatch removes what serve() sets
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    path, created = prepare_metrics_dir()
    try:
        assert created and path.is_dir() and not any(path.iterdir())
        assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(path)
    finally:
        path.rmdir()


def test_child_exit_forgets_only_the_dead_workers_live_gauges(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("gauge_livesum_41.db", "gauge_livemax_41.db", "counter_41.db", "gauge_livesum_42.db"):
        (tmp_path / name).write_bytes(b"")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    child_exit(None, SimpleNamespace(pid=41))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["counter_41.db", "gauge_livesum_42.db"]


# -- a live server with two workers ----------------------------------------------------------------


def predict_counts_per_worker(metrics_dir: Path) -> list[float]:
    """specks_requests_total{route="/predict"} as each worker's own file holds it."""
    counts = []
    for path in sorted(metrics_dir.glob("counter_*.db")):
        families = MultiProcessCollector.merge([str(path)])
        counts.append(
            sum(
                s.value
                for f in families
                for s in f.samples
                if s.name == "specks_requests_total" and s.labels.get("route") == "/predict"
            )
        )
    return counts


@pytest.mark.slow
def test_live_metrics_add_up_every_workers_requests(tmp_path: Path, cache_dir: Path) -> None:
    # TMPDIR: the server makes its metrics directory there, where this test can look into it.
    server = live_server_for(MODELS / "yolov5n.onnx", cache_dir, env={"TMPDIR": str(tmp_path)})
    try:
        server.wait_until_all_workers_ready()  # both workers have their model
        (metrics_dir,) = tmp_path.glob("specks-metrics-*")
        body = json.dumps({"image": b64(SMALL_JPEG)})
        headers = {"Content-Type": "application/json"}

        def post(_: int) -> int:
            return requests.post(server.url + "/predict", data=body, headers=headers, timeout=60).status_code

        sent = 0
        # Concurrent requests on fresh connections; repeat until both workers have served some,
        # so that the total below can only be right if /metrics adds the workers up.
        for _ in range(5):
            with ThreadPoolExecutor(max_workers=10) as pool:
                assert list(pool.map(post, range(10))) == [200] * 10
            sent += 10
            if sum(1 for count in predict_counts_per_worker(metrics_dir) if count > 0) >= 2:
                break
        per_worker = predict_counts_per_worker(metrics_dir)
        assert sum(1 for count in per_worker if count > 0) >= 2, per_worker

        response = requests.get(server.url + "/metrics", timeout=10)
        assert response.status_code == 200
        samples = parse_exposition(response.text)
        assert total(samples, "specks_requests_total", route="/predict", status="200") == sent
        assert total(samples, "specks_stage_duration_seconds_count", stage="inference") == sent
        assert total(samples, "specks_tiles_per_request_count") == sent
        assert total(samples, "specks_images_in_flight") == 0
        assert total(samples, "specks_model_info", name="yolov5n.onnx") == 1
    finally:
        server.stop()
    assert not metrics_dir.exists()  # the master removes the directory it made


def test_large_buffers_go_back_to_the_os_on_glibc() -> None:
    """mallopt(M_MMAP_THRESHOLD) is accepted by this C library (glibc on Linux)."""
    import platform

    from specks.web.server import return_large_buffers_to_the_os

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not glibc")
    assert return_large_buffers_to_the_os() is True
