"""The HTTP API: the seed client against a live server, the response shape, health and readiness."""

from __future__ import annotations

import base64
import json
import socket
import time

import pytest
import requests

from conftest import COCO_TINY, MODELS, LiveServer, coco_annotations, jpeg_bytes, require
from factories import b64, exif_rotated_jpeg
from specks.config import Settings
from specks.web import create_app

PERSON_PHOTO = "000000085329.jpg"


def seed_client_post(url: str, image_bytes: bytes) -> requests.Response:
    """Exactly what the product description promises existing clients do."""
    payload = {"image": base64.b64encode(image_bytes).decode("utf-8")}
    return requests.post(url, data=json.dumps(payload), headers={"Content-type": "application/json"}, timeout=60)


@pytest.mark.slow
def test_seed_client_against_live_gunicorn_server(live_server: LiveServer) -> None:
    photo = require(COCO_TINY / "images" / PERSON_PHOTO).read_bytes()
    response = seed_client_post(live_server.url + "/predict", photo)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    labels = [d["label"] for d in body["detections"]]
    assert "person" in labels
    confidences = [d["confidence"] for d in body["detections"]]
    assert confidences == sorted(confidences, reverse=True)


@pytest.mark.slow
def test_live_server_keeps_serving_after_bad_requests(live_server: LiveServer) -> None:
    url = live_server.url + "/predict"
    bad = [
        requests.post(url, data="{not json", headers={"Content-type": "application/json"}, timeout=10),
        requests.post(url, data=json.dumps({"image": "%%%"}), headers={"Content-type": "application/json"}, timeout=10),
        requests.post(url, data=b"\x00" * 100, headers={"Content-type": "application/octet-stream"}, timeout=10),
    ]
    assert [r.status_code for r in bad] == [400, 400, 415]
    assert all(r.json()["error"]["code"] for r in bad)
    assert seed_client_post(url, jpeg_bytes(320, 240)).status_code == 200
    assert requests.get(live_server.url + "/health", timeout=5).json() == {"status": "ok"}


def test_response_shape_and_pixel_frame(client) -> None:  # type: ignore[no-untyped-def]
    photo_path = require(COCO_TINY / "images" / PERSON_PHOTO)
    image_record = next(i for i in coco_annotations(COCO_TINY)["images"] if i["file_name"] == PERSON_PHOTO)
    response = client.post("/predict", json={"image": b64(photo_path.read_bytes())})
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"detections", "image", "model", "timing_ms", "tiles"}
    assert body["image"] == {"width": image_record["width"], "height": image_record["height"]}
    assert body["model"]["name"] == "yolov5n.onnx"
    assert {"decode", "preprocess", "inference", "postprocess", "total"} <= set(body["timing_ms"])
    for detection in body["detections"]:
        assert set(detection) == {"box", "class_id", "label", "confidence"}
        box = detection["box"]
        assert 0 <= box["x1"] < box["x2"] <= image_record["width"]
        assert 0 <= box["y1"] < box["y2"] <= image_record["height"]
        assert 0.25 <= detection["confidence"] <= 1


def test_options_filter_detections(client) -> None:  # type: ignore[no-untyped-def]
    photo = b64(require(COCO_TINY / "images" / PERSON_PHOTO).read_bytes())
    everything = client.post("/predict", json={"image": photo, "conf": 0.05}).get_json()["detections"]
    people = client.post("/predict", json={"image": photo, "conf": 0.05, "classes": ["person"]}).get_json()
    by_id = client.post("/predict", json={"image": photo, "conf": 0.05, "classes": [0]}).get_json()
    capped = client.post("/predict", json={"image": photo, "conf": 0.05, "max_det": 2}).get_json()
    strict = client.post("/predict", json={"image": photo, "conf": 0.9}).get_json()
    assert len(everything) > len(people["detections"]) > 0
    assert {d["label"] for d in people["detections"]} == {"person"}
    assert people["detections"] == by_id["detections"]
    assert len(capped["detections"]) == 2
    assert all(d["confidence"] >= 0.9 for d in strict["detections"])
    assert len(strict["detections"]) < len(everything)


def test_exif_rotated_image_reports_displayed_size(client) -> None:  # type: ignore[no-untyped-def]
    response = client.post("/predict", json={"image": b64(exif_rotated_jpeg((400, 300), orientation=6))})
    assert response.status_code == 200
    assert response.get_json()["image"] == {"width": 300, "height": 400}


def test_health_ready_and_model_routes(client) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/health").get_json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.get_json()["status"] == "ready"
    model = client.get("/model").get_json()
    assert model["layout"] == "yolov5" and model["num_classes"] == 80


def test_ready_is_503_until_the_model_loads(tmp_path) -> None:  # type: ignore[no-untyped-def]
    app = create_app(Settings(model=str(tmp_path / "missing.onnx"), cache_dir=tmp_path), load_in_background=False)
    client = app.test_client()
    assert client.get("/health").status_code == 200
    ready = client.get("/ready")
    assert ready.status_code == 503
    assert ready.get_json()["error"]["code"] == "model_not_ready"
    assert "missing.onnx" in ready.get_json()["error"]["message"]
    predict = client.post("/predict", json={"image": b64(jpeg_bytes(64, 48))})
    assert predict.status_code == 503


@pytest.mark.slow
def test_live_server_refuses_huge_body_from_content_length(live_server: LiveServer) -> None:
    """A 100 MiB Content-Length is answered 413 at once, without the body ever being sent."""
    request = (
        "POST /predict HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        f"Content-Length: {100 * 1024 * 1024}\r\n\r\n"
    ).encode()
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", live_server.port), timeout=10) as sock:
        sock.sendall(request)
        answer = ""
        while '"payload_too_large"' not in answer:
            chunk = sock.recv(65536).decode(errors="replace")
            if not chunk:
                break
            answer += chunk
    assert answer.startswith("HTTP/1.1 413")
    assert '"payload_too_large"' in answer
    assert time.monotonic() - started < 5


def test_server_slicing_settings_reach_the_detector(yolov5n_detector, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """SPECKS_SLICE / SPECKS_MAX_TILES and friends configure the app's Detector."""
    from dataclasses import replace

    from specks.core.knobs import SlicingSettings

    settings = replace(
        Settings.from_env({}),
        cache_dir=tmp_path,
        model=str(MODELS / "yolov5n.onnx"),
        slicing=SlicingSettings(mode="on", max_tiles=2),
    )
    app = create_app(settings, load_in_background=False)
    client = app.test_client()
    response = client.post("/predict", json={"image": b64(jpeg_bytes(1600, 1200))})
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "too_many_tiles"


def test_per_class_conf_keeps_each_class_above_its_own_threshold(client) -> None:  # type: ignore[no-untyped-def]
    photo = b64(require(COCO_TINY / "images" / "000000463730.jpg").read_bytes())  # 14 people, 8 others
    everything = client.post("/predict", json={"image": photo, "conf": 0.05}).get_json()["detections"]
    people = sorted(d["confidence"] for d in everything if d["label"] == "person")
    assert len(people) >= 2 and any(d["label"] != "person" for d in everything)
    cut = (people[0] + people[-1]) / 2  # between the weakest and the strongest person
    people_strict = client.post("/predict", json={"image": photo, "conf": {"person": cut, "*": 0.05}}).get_json()
    assert people_strict["detections"] == [
        d for d in everything if d["label"] != "person" or d["confidence"] > cut
    ]  # the same boxes, the weaker people left out
    by_id = client.post("/predict", json={"image": photo, "conf": {"0": cut, "*": 0.05}}).get_json()
    assert by_id["detections"] == people_strict["detections"]
    no_rest = client.post("/predict", json={"image": photo, "conf": {"person": 0.05}}).get_json()["detections"]
    assert all(d["confidence"] > 0.25 for d in no_rest if d["label"] != "person")  # the rest keep the default


def test_per_class_conf_naming_an_unknown_class_is_a_400_listing_the_model_s(client) -> None:  # type: ignore[no-untyped-def]
    photo = b64(jpeg_bytes(64, 48))
    answer = client.post("/predict", json={"image": photo, "conf": {"unicorn": 0.5}})
    assert answer.status_code == 400
    error = answer.get_json()["error"]
    assert error["field"] == "conf" and "person" in error["message"]
    assert "unknown class name 'unicorn'" in error["message"]
    out_of_range = client.post("/predict", json={"image": photo, "conf": {"person": 1.5}})
    assert out_of_range.status_code == 400 and out_of_range.get_json()["error"]["field"] == "conf"
