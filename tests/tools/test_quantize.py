"""`specks quantize`: the INT8 copy loads, serves and detects like its source, its card, and the refusals."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from conftest import COCO_TINY, app_for, require
from factories import iou_matrix
from specks.cli import main
from specks.config import Limits, RuntimeOptions, Settings
from specks.core.options import parse_detect_options
from specks.core.pipeline import Detector
from specks.core.postprocess import OutputLayout
from specks.errors import ConfigError
from specks.models import load_model
from specks.models.default import embedded_default_path
from specks.models.letterboxer import ort_detector
from specks.models.quantize import CalibrationFeed, QuantRecipe, StridedReader, float_graph, float_node_names
from specks.tools.quantization import QuantizeRequest, card_paths, quantize_model

# Two images to calibrate on and two held out: enough to exercise every step in a few seconds.
IMAGE_COUNT = 4


def coco_subset(source: Path, folder: Path, count: int) -> Path:
    """A COCO-format folder of the first ``count`` images of ``source`` (linked, not copied)."""
    annotations = json.loads((source / "annotations.coco.json").read_text())
    images = annotations["images"][:count]
    ids = {image["id"] for image in images}
    (folder / "images").mkdir(parents=True)
    for image in images:
        (folder / "images" / image["file_name"]).symlink_to(source / "images" / image["file_name"])
    kept = [a for a in annotations["annotations"] if a["image_id"] in ids]
    (folder / "annotations.coco.json").write_text(json.dumps({**annotations, "images": images, "annotations": kept}))
    return folder


@pytest.fixture(scope="module")
def small_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return coco_subset(require(COCO_TINY), tmp_path_factory.mktemp("calibration") / "coco4", IMAGE_COUNT)


@pytest.fixture(scope="module")
def quantized(small_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The embedded default quantized on two images (forced: two held-out images say little of AP)."""
    output = tmp_path_factory.mktemp("int8") / "nano.int8.onnx"
    request = QuantizeRequest(model=None, calibration=small_folder, output=output, force=True)
    return output, quantize_model(request, Settings.from_env(), threads=2)


def load(spec: str | None, cache_dir: Path) -> Detector:
    return ort_detector(load_model(spec, runtime=RuntimeOptions(), threads=2, cache_dir=cache_dir), Limits())


@pytest.mark.slow  # the shared quantization takes ~10 s
def test_int8_model_loads_as_its_source(quantized: tuple[Path, dict[str, Any]], cache_dir: Path) -> None:
    source, int8 = load(None, cache_dir).model.info, load(str(quantized[0]), cache_dir).model.info
    assert (int8.layout, int8.input_hw, int8.stride, int8.names) == (
        OutputLayout.YOLOX, source.input_hw, source.stride, source.names
    )  # fmt: skip
    assert int8.dynamic_hw and int8.preprocessing == source.preprocessing


@pytest.mark.slow  # the shared quantization takes ~10 s
def test_int8_model_keeps_the_io_contract(quantized: tuple[Path, dict[str, Any]]) -> None:
    source, int8 = onnx.load(str(embedded_default_path())), onnx.load(str(quantized[0]))
    assert [i.name for i in int8.graph.input] == [i.name for i in source.graph.input]
    assert [o.name for o in int8.graph.output] == [o.name for o in source.graph.output]
    dims = int8.graph.input[0].type.tensor_type.shape.dim
    assert dims[2].dim_param and dims[3].dim_param  # symbolic height and width
    assert any(node.op_type == "DequantizeLinear" for node in int8.graph.node)


@pytest.mark.slow  # the shared quantization takes ~10 s
def test_int8_model_detects_like_its_source(quantized: tuple[Path, dict[str, Any]], cache_dir: Path) -> None:
    photo = sorted((COCO_TINY / "images").iterdir())[10].read_bytes()  # not one it was calibrated on
    options = parse_detect_options({"conf": 0.4})
    expected = load(None, cache_dir).predict_bytes(photo, options).detections
    found = load(str(quantized[0]), cache_dir).predict_bytes(photo, options).detections
    assert len(expected) >= 2
    top = min(len(expected), 5)
    ious = iou_matrix(expected.xyxy[:top], found.xyxy).max(axis=1)
    assert np.all(ious > 0.8), ious


@pytest.mark.slow  # the shared quantization takes ~10 s
def test_int8_model_serves_through_the_api(quantized: tuple[Path, dict[str, Any]], cache_dir: Path) -> None:
    photo = sorted((COCO_TINY / "images").iterdir())[10].read_bytes()
    client = app_for(load(str(quantized[0]), cache_dir), cache_dir).test_client()
    answer = client.post("/predict", json={"image": base64.b64encode(photo).decode()})
    assert answer.status_code == 200
    body = answer.get_json()
    assert body["model"]["name"] == "nano.int8.onnx" and body["detections"]


@pytest.mark.slow  # the shared quantization takes ~10 s
def test_card_has_the_scores_and_recipe(quantized: tuple[Path, dict[str, Any]]) -> None:
    output, card = quantized
    json_path, markdown_path = card_paths(output)
    assert json.loads(json_path.read_text()) == card
    for side in ("float", "int8"):
        assert set(card["scores"][side]) == {"AP", "AP50", "AP_small", "seconds_per_image"}
    assert card["images"] == {"calibration": 2, "held_out": 2}
    assert card["recipe"]["format"] == "qdq" and card["recipe"]["per_channel"]
    assert card["ap50_drop"] == round(card["scores"]["float"]["AP50"] - card["scores"]["int8"]["AP50"], 4)
    assert "| AP50 |" in markdown_path.read_text()


def test_float_nodes_are_the_output_tail_and_the_stem() -> None:
    model = float_graph(embedded_default_path())
    nodes = list(model.graph.node)
    kept = set(float_node_names(model, QuantRecipe(float_stem_convs=1)))
    first_conv, second_conv = [index for index, node in enumerate(nodes) if node.op_type == "Conv"][:2]
    assert {node.name for node in nodes[: first_conv + 1]} <= kept  # the first convolution and what feeds it
    assert nodes[second_conv].name not in kept
    assert {node.name for node in nodes[-3:]} <= kept  # the output's Reshape/Concat/Transpose tail
    assert [node.name for node in nodes if node.op_type == "Conv" and node.name in kept] == [nodes[first_conv].name]
    with_head = set(float_node_names(model, QuantRecipe(float_stem_convs=0, float_head=True)))
    assert sum(node.op_type == "Conv" for node in nodes if node.name in with_head) == 9  # 3 levels x cls, reg, obj


def test_float_graph_is_opset_13_with_symbolic_size() -> None:
    model = float_graph(embedded_default_path())
    assert max(entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")) >= 13
    assert model.graph.input[0].type.tensor_type.shape.dim[2].dim_param


def test_cli_refuses_a_missing_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["quantize", "default", "--calibration", str(tmp_path / "nowhere")])
    err = capsys.readouterr().err
    assert code == 2 and "no such folder" in err and len(err.strip().splitlines()) == 1


def test_cli_refuses_a_non_model(small_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bogus = tmp_path / "bogus.onnx"
    bogus.write_bytes(b"not a model")
    code = main(["quantize", str(bogus), "--calibration", str(small_folder), "--output", str(tmp_path / "o.onnx")])
    assert code == 2 and "cannot load the ONNX model" in capsys.readouterr().err
    assert not (tmp_path / "o.onnx").exists()


def test_calibration_reader_makes_one_source_at_a_time() -> None:
    made: list[int] = []

    def source(index: int) -> Callable[[], list[CalibrationFeed]]:
        def feeds() -> list[CalibrationFeed]:
            made.append(index)
            return [{"images": np.full((1, 3, 32, 32), index, np.float32)} for _ in range(2)]  # e.g. two tiles

        return feeds

    reader = StridedReader([source(0), source(1), source(2)])
    assert len(reader) == 3 and made == []
    reader.set_range(start_index=1, end_index=2)
    assert [int(reader.get_next()["images"][0, 0, 0, 0]) for _ in range(2)] == [1, 1]  # type: ignore[index]
    assert reader.get_next() is None and made == [1]


@pytest.mark.parametrize("held_out", [0.0, 0.95])
def test_request_refuses_a_bad_held_out_share(small_folder: Path, held_out: float) -> None:
    with pytest.raises(ConfigError, match="--held-out"):
        QuantizeRequest(model=None, calibration=small_folder, held_out_ratio=held_out)


@pytest.mark.slow
def test_cli_refuses_an_accuracy_drop_past_the_threshold(
    small_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "refused.onnx"
    code = main(["quantize", "default", "--calibration", str(small_folder), "--output", str(output),
                 "--max-ap50-drop", "-1", "--threads", "2"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "nothing was written" in err and "--force" in err
    assert list(tmp_path.iterdir()) == []  # neither the model, nor a staged copy, nor a card
