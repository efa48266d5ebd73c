"""The ONNX graph as a torch module: parity with ONNX Runtime on a real image, classes, export, refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from PIL import Image

torch = pytest.importorskip("torch")

from conftest import MODELS, VISDRONE, require  # noqa: E402
from specks.core.names import COCO80_NAMES  # noqa: E402
from specks.errors import UnsupportedModelError  # noqa: E402
from specks.models.default import embedded_default_path  # noqa: E402
from specks.models.dynamic_size import with_symbolic_hw  # noqa: E402
from specks.tools.training.graph import (  # noqa: E402
    YoloxModule,
    class_sources,
    export_onnx,
    find_yolox_head,
    flat_predictions,
    load_yolox_graph,
    set_classes,
    yolox_output,
)


@pytest.fixture(scope="module")
def base() -> tuple[onnx.ModelProto, object]:
    return load_yolox_graph(embedded_default_path())


@pytest.fixture(scope="module")
def photo_bgr() -> np.ndarray:
    """A real drone photo at 640x480, as the graph takes it: (1, 3, 480, 640) float32 BGR 0..255."""
    path = sorted((require(VISDRONE) / "images").iterdir())[0]
    rgb = np.asarray(Image.open(path).convert("RGB").resize((640, 480)), np.float32)
    return np.ascontiguousarray(rgb[:, :, ::-1].transpose(2, 0, 1)[None])


def run_onnx(model: onnx.ModelProto, images: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: images})[0]


def test_forward_matches_onnx_runtime_on_a_real_photo_before_any_training(base, photo_bgr) -> None:
    model, head = base
    reference = run_onnx(with_symbolic_hw(model), photo_bgr)
    module = YoloxModule(model, head)
    with torch.no_grad():
        ours = yolox_output(module(torch.from_numpy(photo_bgr) / 255)).numpy()
    assert ours.shape == reference.shape == (1, 80 * 60 + 40 * 30 + 20 * 15, 85)
    assert np.abs(ours[..., :4] - reference[..., :4]).max() < 1e-3  # raw box offsets
    assert np.abs(ours[..., 4:] - reference[..., 4:]).max() < 1e-4  # probabilities
    # the same confident detections: the strongest cells agree
    assert (ours[0, :, 4] > 0.3).sum() == (reference[0, :, 4] > 0.3).sum() > 0


def test_the_module_takes_unit_pixels_and_holds_the_first_convolution_times_255(base) -> None:
    model, head = base
    module = YoloxModule(model, head)
    stored = onnx.numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == head.first_conv_weight))
    assert np.allclose(module.param(head.first_conv_weight).detach().numpy(), stored * 255, rtol=1e-6)


def test_the_head_is_found_by_structure(base) -> None:
    _, head = base
    assert head.class_count == 80
    assert len(head.levels) == 3


def test_levels_come_out_per_stride_and_flatten_like_the_graph(base) -> None:
    model, head = base
    module = YoloxModule(model, head)
    with torch.no_grad():
        levels = module(torch.zeros(2, 3, 64, 96))
    assert [tuple(reg.shape) for reg, _, _ in levels] == [(2, 4, 8, 12), (2, 4, 4, 6), (2, 4, 2, 3)]
    reg, obj, cls = flat_predictions(levels)
    assert reg.shape == (2, 126, 4) and obj.shape == (2, 126) and cls.shape == (2, 126, 80)
    joined = yolox_output(levels)
    assert torch.allclose(joined[..., :4], reg) and torch.allclose(joined[..., 4], obj.sigmoid())


def test_export_with_the_same_classes_reproduces_the_base_model(base, photo_bgr) -> None:
    model, head = base
    exported = export_onnx(model, YoloxModule(model, head), COCO80_NAMES, {"specks_train": "{}"})
    assert np.abs(run_onnx(exported, photo_bgr) - run_onnx(with_symbolic_hw(model), photo_bgr)).max() < 1e-4
    metadata = {p.key: p.value for p in exported.metadata_props}
    assert metadata["specks_train"] == "{}" and '"0": "person"' in metadata["names"]
    dims = exported.graph.input[0].type.tensor_type.shape.dim
    assert (dims[2].dim_param, dims[3].dim_param) == ("height", "width")


def test_new_classes_copy_known_rows_and_start_new_ones_near_zero(base, photo_bgr) -> None:
    model, head = base
    module = YoloxModule(model, head)
    names = ["car", "person", "drone"]
    sources = class_sources(COCO80_NAMES, names)
    assert sources == [2, 0, None]
    set_classes(module, sources, torch.Generator().manual_seed(0))
    exported = export_onnx(model, module, names, {})
    ours, reference = run_onnx(exported, photo_bgr), run_onnx(with_symbolic_hw(model), photo_bgr)
    assert ours.shape[-1] == 5 + 3
    assert np.abs(ours[..., :5] - reference[..., :5]).max() < 1e-4  # boxes and objectness untouched
    assert np.abs(ours[..., 5] - reference[..., 7]).max() < 1e-4  # car from car
    assert np.abs(ours[..., 6] - reference[..., 5]).max() < 1e-4  # person from person
    assert ours[..., 7].max() < 0.05  # the new class starts near its 0.01 prior
    # a model made by specks train is trainable again: its head is found with the new class count
    assert find_yolox_head(exported.graph).class_count == 3


def test_spelling_variants_of_a_known_class_still_start_from_it() -> None:
    assert class_sources(COCO80_NAMES, ["motorbike", "Person", "thing"]) == [3, 0, None]


def test_other_layouts_are_refused_with_the_layouts_it_trains(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedModelError, match="YOLOX-layout"):
        load_yolox_graph(require(MODELS / "yolov5n.onnx"))
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(UnsupportedModelError, match="cannot read"):
        load_yolox_graph(broken)
