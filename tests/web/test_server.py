"""The gunicorn process model: what the master imports, and how workers shut down."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from conftest import MODELS, jpeg_bytes, live_server_for, require
from factories import b64

# What `specks serve` runs in the gunicorn master before forking (cli.cmd_serve up to serve()).
MASTER_STEPS = """
import sys
from pathlib import Path
from specks.cli import build_parser, settings_from_args
from specks.memory import check_worker_memory, estimate_worker_memory
from specks.models import prepare_model
from specks.served import served_models
from specks.web.server import SpecksServer, prepare_metrics_dir

args = build_parser().parse_args(["serve", "--model", sys.argv[1], "--model", "second=" + sys.argv[1]])
settings = settings_from_args(args)
prepared = {spec.name: prepare_model(spec.path, Path(sys.argv[2])) for spec in served_models(settings)}
sizes = {name: model.onnx_path.stat().st_size for name, model in prepared.items()}
check_worker_memory(settings, estimate_worker_memory(settings, sizes))
prepare_metrics_dir()
SpecksServer(settings)
print("onnxruntime" in sys.modules)
"""


@pytest.mark.parametrize("model", ["yolov5n.onnx", "default"])
def test_the_gunicorn_master_never_imports_onnxruntime(model: str, tmp_path: Path) -> None:
    """ONNX Runtime starts a thread on import; a worker forked after that aborts at exit."""
    spec = str(require(MODELS / model)) if model.endswith(".onnx") else model
    result = subprocess.run(
        [sys.executable, "-c", MASTER_STEPS, spec, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False", f"{model}: the master imported onnxruntime"


def test_workers_exit_cleanly_on_sigterm(cache_dir: Path) -> None:
    server = live_server_for(MODELS / "yolov5n.onnx", cache_dir, workers=2)
    try:
        server.wait_ready(successes=20)
        for _ in range(4):  # reaches both workers in practice; either one aborted before the fix
            payload = json.dumps({"image": b64(jpeg_bytes(320, 240))})
            response = requests.post(
                server.url + "/predict", data=payload, headers={"Content-type": "application/json"}, timeout=30
            )
            assert response.status_code == 200
        server.process.terminate()
        assert server.process.wait(timeout=30) == 0
        output = server.output_tail(50_000)
    finally:
        server.stop()
    assert "Worker exiting" in output
    assert "terminate called" not in output
    assert "SIGABRT" not in output
