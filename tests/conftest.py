"""Shared fixtures: real models and photos from ../shared, loaded detectors, apps and live servers."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from specks.config import Limits, RuntimeOptions, Settings
from specks.core.pipeline import Detector
from specks.logs import LogFormat, build_handler
from specks.models import load_model
from specks.models.letterboxer import ort_detector
from specks.tools.server_process import ServerProcess as LiveServer
from specks.tools.server_process import free_port  # noqa: F401 (tests import it from here)
from specks.web import create_app

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SPECKS_SHARED_DIR", REPO_ROOT.parent / "shared"))
MODELS = SHARED / "models"
COCO_TINY = SHARED / "data" / "coco_val2017_tiny50"
VISDRONE = SHARED / "data" / "visdrone_dev10"
HIT_UAV_TRAIN = SHARED / "data" / "hit_uav_train"
HIT_UAV_VAL = SHARED / "data" / "hit_uav_val"


def require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"test data not found: {path}")
    return path


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("specks-cache")


def _detector(spec: str | None, cache_dir: Path) -> Detector:
    model = load_model(spec, runtime=RuntimeOptions(), threads=2, cache_dir=cache_dir)
    return ort_detector(model, Limits())


@pytest.fixture(scope="session")
def yolov5n_detector(cache_dir: Path) -> Detector:
    return _detector(str(require(MODELS / "yolov5n.onnx")), cache_dir)


@pytest.fixture(scope="session")
def yolov5n_dynamic_detector(cache_dir: Path) -> Detector:
    return _detector(str(require(MODELS / "yolov5n_dynamic.onnx")), cache_dir)


@pytest.fixture(scope="session")
def default_detector(cache_dir: Path) -> Detector:
    return _detector(None, cache_dir)


def app_for(detector: Detector, cache_dir: Path, **settings: object):  # type: ignore[no-untyped-def]
    """A Flask app in testing mode serving ``detector``, with these ``Settings`` fields."""
    application = create_app(Settings(cache_dir=cache_dir, **settings), detector=detector)  # type: ignore[arg-type]
    application.testing = True
    return application


@pytest.fixture(scope="session")
def app(yolov5n_detector: Detector, cache_dir: Path):  # type: ignore[no-untyped-def]
    settings = Settings(cache_dir=cache_dir, limits=Limits(max_image_pixels=40_000_000, max_body_bytes=8 * 1024 * 1024))
    application = create_app(settings, detector=yolov5n_detector)
    application.testing = True
    return application


@pytest.fixture()
def client(app):  # type: ignore[no-untyped-def]
    return app.test_client()


def jpeg_bytes(width: int, height: int, *, color: tuple[int, int, int] = (90, 140, 200), quality: int = 90) -> bytes:
    """A JPEG with some structure (a gradient and noise) so it compresses like a photo."""
    rng = np.random.default_rng(0)
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None, None]
    pixels = x * 0.5 + y * 0.3 + np.array(color, np.float32) * 0.2 + rng.normal(0, 8, (height, width, 3))
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def live_server_for(model: Path, cache_dir: Path, *, workers: int = 2, env: dict[str, str] | None = None) -> LiveServer:
    """``specks serve`` in a subprocess on a free loopback port (stop it at teardown)."""
    return LiveServer(Settings(model=str(require(model)), cache_dir=cache_dir), workers=workers, env=env)


def serving(server: LiveServer) -> Iterator[LiveServer]:
    """Yield ``server`` once it answers ``GET /ready``; stop it afterwards (for fixtures)."""
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def live_server(cache_dir: Path) -> Iterator[LiveServer]:
    """A real gunicorn server with yolov5n (2 workers, as in production)."""
    server = live_server_for(MODELS / "yolov5n.onnx", cache_dir)
    try:
        server.wait_until_all_workers_ready()  # every worker has its model, not just the first
        yield server
    finally:
        server.stop()


def coco_annotations(root: Path) -> dict:  # type: ignore[type-arg]
    return json.loads((require(root) / "annotations.coco.json").read_text())


@contextlib.contextmanager
def specks_log(log_format: LogFormat, caplog: pytest.LogCaptureFixture) -> Iterator[io.StringIO]:
    """Everything the ``specks`` loggers write in ``log_format`` while the block runs."""
    stream = io.StringIO()
    handler = build_handler(log_format, stream)
    logger = logging.getLogger("specks")
    caplog.set_level(logging.INFO, logger="specks")
    logger.addHandler(handler)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
