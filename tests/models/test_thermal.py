"""The vendored named model yolox-nano-thermal: its file, hash, license, card, classes, and what it finds."""

from __future__ import annotations

import base64
import dataclasses
import json
from pathlib import Path

import onnx
import pytest

from conftest import HIT_UAV_VAL, require
from specks.config import Settings
from specks.core.options import parse_detect_options
from specks.core.pipeline import Detector
from specks.core.postprocess import OutputLayout
from specks.core.preprocess import BGR_RAW_TOP_LEFT
from specks.errors import ModelLoadError
from specks.models import default, prepare_model
from specks.models.default import THERMAL_MODEL_NAME, THERMAL_MODEL_SHA256, thermal_model_path
from specks.service.loading import load_detector
from specks.tools.evaluation import CocoDataset, evaluate
from specks.web import create_app

THERMAL_CLASSES = ("person", "car", "bicycle", "other_vehicle")


@pytest.fixture(scope="module")
def thermal() -> Detector:
    settings = dataclasses.replace(Settings.from_env(), model=THERMAL_MODEL_NAME)
    return load_detector(settings, threads=2)


def test_the_name_finds_the_vendored_file_with_its_hash_checked(tmp_path: Path) -> None:
    prepared = prepare_model(" YOLOX-Nano-Thermal ", tmp_path)
    assert prepared.onnx_path == thermal_model_path() == default.THERMAL_MODEL_FILE
    assert prepared.name == THERMAL_MODEL_NAME and prepared.source_format == "onnx"


def test_a_replaced_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tampered = tmp_path / "yolox_nano_thermal.onnx"
    data = bytearray(thermal_model_path().read_bytes())
    data[-1] ^= 0xFF
    tampered.write_bytes(bytes(data))
    monkeypatch.setattr(default, "THERMAL_MODEL_FILE", tampered)
    with pytest.raises(ModelLoadError, match=f"not the expected {THERMAL_MODEL_SHA256[:8]}"):
        prepare_model(THERMAL_MODEL_NAME, tmp_path)


def test_its_license_attribution_and_card_ship_beside_it() -> None:
    folder = thermal_model_path().parent
    assert "Attribution 4.0 International" in (folder / "LICENSE-HIT-UAV-CC-BY-4.0.txt").read_text()
    notice = (folder / "README.md").read_text()
    assert "Suo" in notice and "Scientific Data" in notice and THERMAL_MODEL_SHA256 in notice
    card = (folder / "yolox_nano_thermal.MODEL_CARD.md").read_text()
    assert "HIT-UAV" in card and "AP50" in card


def test_it_says_where_it_came_from_in_its_metadata() -> None:
    metadata = {p.key: p.value for p in onnx.load(str(thermal_model_path())).metadata_props}
    provenance = json.loads(metadata["specks_train"])
    assert provenance["base_model"].startswith("yolox-nano") and provenance["train_images"] == 1522


def test_it_serves_its_own_classes_with_yolox_conventions(thermal: Detector) -> None:
    info = thermal.model.info
    assert info.names == THERMAL_CLASSES
    assert info.layout is OutputLayout.YOLOX and info.preprocessing == BGR_RAW_TOP_LEFT
    assert info.dynamic_hw is True and info.input_hw == (640, 640)


def test_it_finds_people_and_vehicles_on_unseen_thermal_frames(thermal: Detector) -> None:
    """Thirty frames of the HIT-UAV val split (never trained on), scored as specks eval scores them."""
    dataset = CocoDataset.load(require(HIT_UAV_VAL)).first(30)
    summary = evaluate(thermal, dataset, parse_detect_options({"conf": 0.01, "max_det": 500}), max_dets=500,
                       progress=False)  # fmt: skip
    assert summary["AP50"] > 0.6  # the COCO model: about 0.04 on these frames


def test_a_request_naming_it_is_answered_by_it(thermal: Detector, tmp_path: Path) -> None:
    settings = dataclasses.replace(Settings(cache_dir=tmp_path), model=THERMAL_MODEL_NAME)
    app = create_app(settings, detectors={THERMAL_MODEL_NAME: thermal}, load_in_background=False)
    frame = sorted((require(HIT_UAV_VAL) / "images").iterdir())[0].read_bytes()
    answer = app.test_client().post(
        "/predict", json={"image": base64.b64encode(frame).decode(), "model": THERMAL_MODEL_NAME}
    )
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert body["model"]["name"] == THERMAL_MODEL_NAME
    assert body["detections"] and {d["label"] for d in body["detections"]} <= set(THERMAL_CLASSES)
