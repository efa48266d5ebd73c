"""Swapping a model file and `kill -HUP` under load: no request fails, and a broken file keeps the old model.

Loopback only; the requests loop is bounded in time; the server is stopped by its process id.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from conftest import MODELS, LiveServer, jpeg_bytes, require
from factories import b64
from specks.config import Settings

BODY = json.dumps({"image": b64(jpeg_bytes(320, 240))})


@pytest.fixture()
def swappable(tmp_path: Path, cache_dir: Path) -> Iterator[tuple[LiveServer, Path]]:
    served = tmp_path / "cam.onnx"
    shutil.copyfile(require(MODELS / "yolov5n.onnx"), served)
    server = LiveServer(Settings(model=str(served), cache_dir=cache_dir), workers=1)
    try:
        server.wait_until_all_workers_ready()
        yield server, served
    finally:
        server.stop()


def reload_and_wait(server: LiveServer) -> None:
    """SIGHUP to the master; return once a new worker (a pid not seen ready before) is ready."""
    seen = server.ready_worker_pids()
    os.kill(server.pid, signal.SIGHUP)
    give_up = time.monotonic() + 120
    while not server.ready_worker_pids() - seen:
        assert time.monotonic() < give_up, "no new worker became ready"
        time.sleep(0.1)
    server.wait_until_all_workers_ready()


def served_sha256(server: LiveServer) -> str:
    models = requests.get(server.url + "/models", timeout=10).json()["models"]
    return next(m["sha256"] for m in models if m["name"] == "cam.onnx")


@pytest.mark.slow
def test_swaps_under_load_fail_no_request_and_a_broken_file_keeps_the_old_model(
    swappable: tuple[LiveServer, Path],
) -> None:
    server, served = swappable
    good_sha = hashlib.sha256(served.read_bytes()).hexdigest()
    assert served_sha256(server) == good_sha
    statuses: list[int] = []
    stop = threading.Event()

    def load() -> None:
        session = requests.Session()
        give_up = time.monotonic() + 240
        while not stop.is_set() and time.monotonic() < give_up:
            answer = session.post(server.url + "/predict", data=BODY, headers={"Content-type": "application/json"})
            statuses.append(answer.status_code)

    clients = [threading.Thread(target=load) for _ in range(4)]
    for client in clients:
        client.start()
    try:
        served.write_bytes(b"a copy that went wrong")
        reload_and_wait(server)
        assert served_sha256(server) == good_sha  # still the old model: the swap did not take
        assert "serving the last file that loaded" in server.output()

        shutil.copyfile(require(MODELS / "yolov5n_dynamic.onnx"), served)
        reload_and_wait(server)
        assert served_sha256(server) == hashlib.sha256(served.read_bytes()).hexdigest()
    finally:
        stop.set()
        for client in clients:
            client.join(30)
    assert len(statuses) >= 8 and set(statuses) == {200}, {s: statuses.count(s) for s in set(statuses)}
