"""Tests of ONNX model loading and introspection: the real models in ../shared/models, tiny
hand-built graphs for metadata corner cases, and the errors of every loading step."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import MODELS  # noqa: E402
from specks.config import RuntimeOptions
from specks.core.names import COCO80_NAMES
from specks.core.postprocess import OutputLayout, PostprocessParams, anchor_points, postprocess, yolox_grid
from specks.core.preprocess import BGR_RAW_TOP_LEFT, RGB_UNIT_CENTERED, Placement, letterbox, plan_letterbox
from specks.errors import ConfigError, InferenceError, ModelLoadError, UnsupportedModelError
from specks.models import load_model, prepare_model, resolve_model_files
from specks.models.inspection import detect_layout
from specks.models.onnx_model import (
    ARENA_KEEP_INPUT_PIXELS,
    WIDE_MAX_INPUT_PIXELS,
    OnnxModel,
    _run_options,
    session_options,
    size_agnostic_session,
)
from specks.models.overrides import ModelOverrides
from specks.service.cores import CoreShare

YOLOV5N = "yolov5n.onnx"
YOLOV5N_DYNAMIC = "yolov5n_dynamic.onnx"
YOLO11N = "yolo11n_random_weights_dynamic.onnx"
YOLO26N = "yolo26n_random_weights_e2e_dynamic.onnx"
YOLOX_NANO = "yolox_nano.onnx"
RUNTIME = RuntimeOptions()

ModelLoader = Callable[[str], OnnxModel]


@pytest.fixture(scope="module")
def real_model(tmp_path_factory: pytest.TempPathFactory) -> ModelLoader:
    """Load a model from ../shared/models once per module (skip when the file is missing)."""
    cache_dir = tmp_path_factory.mktemp("onnx-cache")
    loaded: dict[str, OnnxModel] = {}

    def get(file_name: str) -> OnnxModel:
        path = MODELS / file_name
        if not path.is_file():
            pytest.skip(f"test model not found: {path}")
        if file_name not in loaded:
            loaded[file_name] = load_model(str(path), runtime=RUNTIME, threads=1, cache_dir=cache_dir)
        return loaded[file_name]

    return get


def tiny_onnx(
    output_shape: Sequence[int], metadata: dict[str, str], input_shape: Sequence[int | str] = (1, 3, 64, 64)
) -> bytes:
    """A serialized model whose one output is zeros of ``output_shape``, with ``metadata`` props."""
    inputs = [helper.make_tensor_value_info("images", TensorProto.FLOAT, list(input_shape))]
    outputs = [helper.make_tensor_value_info("output0", TensorProto.FLOAT, None)]
    nodes = [  # output0 = zeros + 0 * mean(images), so the graph really reads its input
        helper.make_node("ReduceMean", ["images"], ["mean"], keepdims=0),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
        helper.make_node("Add", ["zeros", "nothing"], ["output0"]),
    ]
    initializers = [
        numpy_helper.from_array(np.zeros(output_shape, np.float32), "zeros"),
        numpy_helper.from_array(np.float32(0), "zero"),
    ]
    model = helper.make_model(
        helper.make_graph(nodes, "tiny", inputs, outputs, initializer=initializers),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    model.ir_version = 8
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    return model.SerializeToString()


@pytest.mark.parametrize(
    ("file_name", "layout", "input_hw", "dynamic_hw", "dynamic_batch", "output_shape"),
    [
        pytest.param(YOLOV5N, OutputLayout.YOLOV5, (640, 640), False, False, (1, 25200, 85), id="yolov5n"),
        pytest.param(YOLOV5N_DYNAMIC, OutputLayout.YOLOV5, (640, 640), True, True, (1, 25200, 85), id="yolov5n-dyn"),
        pytest.param(YOLO11N, OutputLayout.ULTRALYTICS, (640, 640), True, True, (1, 84, 8400), id="yolo11n"),
        pytest.param(YOLO26N, OutputLayout.END_TO_END, (640, 640), True, True, (1, 300, 6), id="yolo26n-e2e"),
    ],
)
def test_real_model_info(
    real_model: ModelLoader,
    file_name: str,
    layout: OutputLayout,
    input_hw: tuple[int, int],
    dynamic_hw: bool,
    dynamic_batch: bool,
    output_shape: tuple[int, ...],
) -> None:
    model = real_model(file_name)
    info = model.info

    assert info.layout is layout
    assert info.input_hw == input_hw
    assert info.dynamic_hw is dynamic_hw
    assert info.dynamic_batch is dynamic_batch
    assert info.stride == 32
    assert info.input_name == "images"
    assert info.source_format == "onnx"
    assert info.name == file_name
    # yolov5n carries real COCO names; the random-weight models carry placeholders '0'..'79'.
    assert info.names == COCO80_NAMES
    assert info.num_classes == 80
    assert "CPUExecutionProvider" in info.providers
    assert model.run(np.zeros((1, 3, *input_hw), np.float32)).shape == output_shape


def test_model_info_to_dict(real_model: ModelLoader) -> None:
    described = real_model(YOLO11N).info.to_dict()

    assert described["layout"] == "ultralytics"
    assert described["input_size"] == {"height": 640, "width": 640}
    assert described["dynamic_input_size"] is True
    assert described["num_classes"] == 80
    assert described["names"][:2] == ["person", "bicycle"]
    assert described["format"] == "onnx"


@pytest.mark.parametrize(
    ("file_name", "input_hw", "expected_shape"),
    [
        pytest.param(YOLO11N, (640, 640), (1, 84, 8400), id="yolo11n-640"),
        pytest.param(YOLO11N, (320, 480), (1, 84, 3150), id="yolo11n-320x480"),
        pytest.param(YOLO26N, (640, 640), (1, 300, 6), id="yolo26n-640"),
        pytest.param(YOLO26N, (320, 480), (1, 300, 6), id="yolo26n-320x480"),
    ],
)
def test_random_weight_outputs_decode(
    real_model: ModelLoader, file_name: str, input_hw: tuple[int, int], expected_shape: tuple[int, ...]
) -> None:
    model = real_model(file_name)
    rgb = np.random.default_rng(1).integers(0, 256, (480, 720, 3), dtype=np.uint8)
    tensor = letterbox(rgb, plan_letterbox((720, 480), input_hw))

    raw = model.run(tensor)
    params = PostprocessParams(conf_threshold=0.0, max_detections=50)
    found = postprocess(raw[0], model.info.layout, params, input_hw)

    assert raw.shape == expected_shape
    assert detect_layout(raw.shape, input_hw, model.info.layout is OutputLayout.END_TO_END) is model.info.layout
    assert len(found) <= params.max_detections
    assert np.all(np.isfinite(found.xyxy))
    assert np.all((found.confidence > 0.0) & (found.confidence <= 1.0))
    assert np.all((found.class_id >= 0) & (found.class_id < model.info.num_classes))
    assert np.all(np.diff(found.confidence) <= 0)


def test_dynamic_model_runs_a_batch_at_another_size(real_model: ModelLoader) -> None:
    model = real_model(YOLOV5N_DYNAMIC)

    raw = model.run(np.zeros((2, 3, 320, 480), np.float32))

    assert raw.shape == (2, 3 * anchor_points((320, 480), (8, 16, 32)), 85)
    assert detect_layout(raw[:1].shape, (320, 480), False) is OutputLayout.YOLOV5


@pytest.mark.parametrize(
    ("shape", "gives_memory_back"),
    [
        ((1, 3, 640, 640), False),
        ((1, 3, 1504, 2016), False),  # a 2000x1500 photo as one native tile
        ((1, 3, 2048, 2048), False),  # exactly the limit
        ((1, 3, 2048, 2080), True),
        ((1, 3, 2560, 2560), True),  # the largest dynamic-size tile
        ((11, 3, 640, 640), True),  # a batch counts as a whole
    ],
)
def test_only_runs_larger_than_the_limit_give_their_arena_memory_back(
    shape: tuple[int, int, int, int], gives_memory_back: bool
) -> None:
    assert (shape[0] * shape[2] * shape[3] > ARENA_KEEP_INPUT_PIXELS) is gives_memory_back
    options = _run_options(np.empty(shape, np.float32))
    if not gives_memory_back:
        assert options is None
    else:
        assert options is not None
        assert options.get_run_config_entry("memory.enable_memory_arena_shrinkage") == "cpu:0"


def test_sessions_plan_no_memory_pattern() -> None:
    """A pattern block per input shape came on top of the arena (930 vs 485 MiB at 2560x2560)."""
    assert session_options(1).enable_mem_pattern is False


def test_dynamic_model_gives_a_large_run_the_same_answer_with_its_memory_returned(real_model: ModelLoader) -> None:
    model = real_model(YOLOV5N_DYNAMIC)
    tensor = np.random.default_rng(1).random((1, 3, 2080, 2048), dtype=np.float32)
    assert _run_options(tensor) is not None
    first = model.run(tensor)
    second = model.run(tensor)  # after the arena shrank: same result, nothing left dangling
    assert first.shape == (1, 3 * anchor_points((2080, 2048), (8, 16, 32)), 85)
    assert np.array_equal(first, second)


def test_static_model_rejects_another_size_with_inference_error(real_model: ModelLoader) -> None:
    with pytest.raises(InferenceError, match="inference failed"):
        real_model(YOLOV5N).run(np.zeros((1, 3, 320, 320), np.float32))


# Two boxes in input pixels, with their class; the second one far from the first.
PLANTED = [((100.0, 120.0, 180.0, 260.0), 0.9, 0), ((400.0, 300.0, 440.0, 330.0), 0.7, 56)]


def planted_output(layout: OutputLayout, num_classes: int, num_rows: int) -> np.ndarray:
    """A raw output shaped like the real model's (batch axis removed) holding the PLANTED boxes."""
    if layout is OutputLayout.END_TO_END:
        raw = np.zeros((num_rows, 6), np.float32)
        for row, (xyxy, score, class_id) in enumerate(PLANTED):
            raw[row] = [*xyxy, score, class_id]
        return raw
    width = num_classes + (5 if layout is OutputLayout.YOLOV5 else 4)
    rows = np.zeros((num_rows, width), np.float32)
    for row, ((x1, y1, x2, y2), score, class_id) in zip((1000, 5000), PLANTED, strict=True):
        rows[row, :4] = [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]
        first_class = 4
        if layout is OutputLayout.YOLOV5:
            rows[row, 4] = 1.0  # objectness
            first_class = 5
        rows[row, first_class + class_id] = score
    return rows if layout is OutputLayout.YOLOV5 else rows.T.copy()


@pytest.mark.parametrize(
    ("file_name", "num_rows"),
    [
        pytest.param(YOLOV5N, 25200, id="yolov5n"),
        pytest.param(YOLO11N, 8400, id="yolo11n"),
        pytest.param(YOLO26N, 300, id="yolo26n"),
    ],
)
def test_planted_boxes_decode_with_the_models_layout(real_model: ModelLoader, file_name: str, num_rows: int) -> None:
    info = real_model(file_name).info
    raw = planted_output(info.layout, info.num_classes, num_rows)

    found = postprocess(raw, info.layout, PostprocessParams(), info.input_hw)

    np.testing.assert_allclose(found.xyxy, [xyxy for xyxy, _, _ in PLANTED], atol=1e-4)
    np.testing.assert_allclose(found.confidence, [score for _, score, _ in PLANTED], atol=1e-6)
    assert [info.names[c] for c in found.class_id] == ["person", "chair"]


@pytest.mark.parametrize(
    ("output_shape", "metadata", "layout", "names"),
    [
        pytest.param(
            (1, 30, 6),
            {"end2end": "True", "names": "{0: 'cat', 1: 'dog'}"},
            OutputLayout.END_TO_END,
            ("cat", "dog"),
            id="e2e-classes-from-metadata",
        ),
        pytest.param((1, 30, 6), {"end2end": "True"}, OutputLayout.END_TO_END, COCO80_NAMES, id="e2e-default-80"),
        pytest.param(
            (1, 30, 6),
            {"end2end": "True", "names": "{[1]: 'a'}"},
            OutputLayout.END_TO_END,
            COCO80_NAMES,
            id="e2e-garbage-names",
        ),
        pytest.param((1, 6, 84), {}, OutputLayout.ULTRALYTICS, ("class_0", "class_1"), id="ultralytics-2-classes"),
        pytest.param((1, 252, 7), {}, OutputLayout.YOLOV5, ("class_0", "class_1"), id="yolov5-2-classes"),
        pytest.param((1, 84, 7), {}, OutputLayout.YOLOX, ("class_0", "class_1"), id="yolox-2-classes"),
    ],
)
def test_tiny_model_layout_and_names(
    output_shape: tuple[int, ...], metadata: dict[str, str], layout: OutputLayout, names: tuple[str, ...]
) -> None:
    info = OnnxModel.load(
        tiny_onnx(output_shape, metadata), runtime=RUNTIME, threads=1, path=Path("/nowhere/tiny.onnx")
    ).info

    assert info.layout is layout
    assert info.names == names
    assert info.input_hw == (64, 64)
    assert info.dynamic_batch is False


@pytest.mark.parametrize(
    ("imgsz", "expected_hw"),
    [
        pytest.param("[320, 480]", (320, 480), id="list"),
        pytest.param("256", (256, 256), id="int"),
        pytest.param("{[1]: 2}", (640, 640), id="garbage"),
        pytest.param("[1, 2, 3]", (640, 640), id="three-values"),
        pytest.param(None, (640, 640), id="absent"),
    ],
)
def test_dynamic_model_input_size_from_imgsz_metadata(imgsz: str | None, expected_hw: tuple[int, int]) -> None:
    metadata = {"end2end": "True"} | ({} if imgsz is None else {"imgsz": imgsz})
    model = tiny_onnx((1, 30, 6), metadata, input_shape=("batch", 3, "height", "width"))

    info = OnnxModel.load(model, runtime=RUNTIME, threads=1, path=Path("/nowhere/tiny.onnx")).info

    assert info.input_hw == expected_hw
    assert info.dynamic_hw is True
    assert info.dynamic_batch is True


@pytest.mark.parametrize(
    ("input_shape", "output_shape", "message"),
    [
        pytest.param((1, 1, 64, 64), (1, 30, 6), "3 input channels", id="grey-input"),
        pytest.param((1, 3, 64), (1, 30, 6), "one image input", id="rank-3-input"),
        pytest.param((1, 3, 64, 64), (30, 6), "rank 3", id="rank-2-output"),
        pytest.param((1, 3, 64, 64), (1, 5, 4), "unrecognised", id="too-narrow-output"),
    ],
)
def test_unsupported_models_are_rejected(
    input_shape: tuple[int, ...], output_shape: tuple[int, ...], message: str
) -> None:
    with pytest.raises(UnsupportedModelError, match=message):
        OnnxModel.load(tiny_onnx(output_shape, {}, input_shape), runtime=RUNTIME, threads=1)


def test_load_of_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="not found"):
        OnnxModel.load(tmp_path / "absent.onnx", runtime=RUNTIME, threads=1)


def test_load_of_a_file_that_is_not_onnx(tmp_path: Path) -> None:
    path = tmp_path / "noise.onnx"
    path.write_bytes(np.random.default_rng(0).bytes(4096))

    with pytest.raises(ModelLoadError, match="cannot load the ONNX model") as caught:
        OnnxModel.load(path, runtime=RUNTIME, threads=1)
    assert caught.value.__cause__ is not None


def test_load_of_bytes_that_are_not_onnx() -> None:
    with pytest.raises(ModelLoadError, match="cannot load the ONNX model"):
        OnnxModel.load(b"not a model", runtime=RUNTIME, threads=1)


def test_prepare_model_of_a_missing_onnx_file(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="not found"):
        prepare_model(str(tmp_path / "absent.onnx"), tmp_path)


@pytest.mark.parametrize(
    ("present", "spec", "expected"),
    [
        pytest.param([], "det.onnx", ("onnx", "det.onnx", None), id="onnx-not-checked-yet"),
        pytest.param([], "DET.ONNX", ("onnx", "DET.ONNX", None), id="onnx-upper-case"),
        pytest.param(["det.cfg", "det.weights"], "det.cfg", ("darknet", "det.cfg", "det.weights"), id="cfg"),
        pytest.param(["det.cfg", "det.weights"], "det.weights", ("darknet", "det.cfg", "det.weights"), id="weights"),
    ],
)
def test_resolve_model_files(
    tmp_path: Path, present: list[str], spec: str, expected: tuple[str, str, str | None]
) -> None:
    for name in present:
        (tmp_path / name).write_bytes(b"")
    kind, path, weights = expected

    assert resolve_model_files(str(tmp_path / spec)) == (
        kind,
        tmp_path / path,
        None if weights is None else tmp_path / weights,
    )


@pytest.mark.parametrize(
    ("present", "spec", "message"),
    [
        pytest.param([], "det.pt", "unsupported model file", id="pytorch"),
        pytest.param([], "det", "unsupported model file", id="no-suffix"),
        pytest.param(["det.cfg"], "det.cfg", "det.weights is missing", id="cfg-without-weights"),
        pytest.param(["det.weights"], "det.weights", "det.cfg is missing", id="weights-without-cfg"),
        pytest.param([], "det.cfg", "det.cfg is missing", id="neither"),
    ],
)
def test_resolve_model_files_errors(tmp_path: Path, present: list[str], spec: str, message: str) -> None:
    for name in present:
        (tmp_path / name).write_bytes(b"")

    with pytest.raises(ModelLoadError, match=message):
        resolve_model_files(str(tmp_path / spec))


@pytest.mark.parametrize(
    ("providers", "expected"),
    [
        pytest.param(("cpu",), ["CPUExecutionProvider"], id="cpu"),
        pytest.param(("CUDA", "cpu"), ["CUDAExecutionProvider", "CPUExecutionProvider"], id="alias-any-case"),
        pytest.param(("MyOwnExecutionProvider",), ["MyOwnExecutionProvider"], id="full-name"),
    ],
)
def test_runtime_options_provider_names(providers: tuple[str, ...], expected: list[str]) -> None:
    assert RuntimeOptions(providers=providers).provider_names() == expected


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param({"providers": ("gpu",)}, "unknown execution provider", id="unknown-provider"),
        pytest.param({"providers": ("cpu", "tpu")}, "tpu", id="one-unknown"),
        pytest.param({"intra_op_threads": -1}, "got -1", id="negative-threads"),
    ],
)
def test_runtime_options_errors(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RuntimeOptions(**options)  # type: ignore[arg-type]


# -- YOLOX ------------------------------------------------------------------------------------------


def test_yolox_nano_is_recognised_and_made_size_agnostic(real_model: ModelLoader) -> None:
    """Declared 1x3x416x416, but its graph runs at any multiple of 32: symbolic height and width."""
    model = real_model(YOLOX_NANO)
    info = model.info

    assert info.layout is OutputLayout.YOLOX
    assert info.preprocessing == BGR_RAW_TOP_LEFT
    assert (info.input_hw, info.dynamic_hw, info.dynamic_batch, info.stride) == ((416, 416), True, False, 32)
    assert info.names == COCO80_NAMES
    assert info.to_dict()["preprocessing"] == {
        "channel_order": "bgr",
        "value_scale": 1.0,
        "pad_value": 114,
        "placement": "top_left",
    }
    for input_hw in [(416, 416), (480, 448), (1504, 2016)]:
        assert model.run(np.zeros((1, 3, *input_hw), np.float32)).shape == (1, anchor_points(input_hw, (8, 16, 32)), 85)


def test_a_really_fixed_graph_is_not_made_size_agnostic(real_model: ModelLoader) -> None:
    """yolov5n.onnx's Reshapes and Resizes have fixed sizes: the rewrite's run at a second size fails."""
    model = real_model(YOLOV5N)

    assert model.info.dynamic_hw is False
    assert size_agnostic_session(MODELS / YOLOV5N, model.info, RUNTIME, 1) is None


def test_a_graph_with_a_constant_output_is_not_made_size_agnostic() -> None:
    """It runs at any size, but its row count does not follow the grid: refused."""
    model = tiny_onnx((1, 252, 7), {})

    info = OnnxModel.load(model, runtime=RUNTIME, threads=1).info

    assert info.layout is OutputLayout.YOLOV5 and info.dynamic_hw is False
    assert size_agnostic_session(model, info, RUNTIME, 1) is None


def yolox_decoded_in_graph() -> bytes:
    """yolox_nano.onnx with YOLOX's decoding appended to its graph (its export with decode_in_inference):
    rows become cx, cy, w, h in input pixels, with the 416x416 grid baked in as constants."""
    model = onnx.load(str(MODELS / YOLOX_NANO))
    grid_xy, stride_px = yolox_grid((416, 416))
    graph = model.graph
    raw_name = graph.output[0].name
    constants = {
        "starts_xy": [0], "ends_xy": [2], "starts_wh": [2], "ends_wh": [4], "starts_rest": [4], "ends_rest": [10_000],
        "last_axis": [2],
    }
    graph.initializer.extend(numpy_helper.from_array(np.array(v, np.int64), k) for k, v in constants.items())
    graph.initializer.extend(
        [numpy_helper.from_array(grid_xy[None], "grid_xy"), numpy_helper.from_array(stride_px[None], "stride_px")]
    )
    graph.node.extend(
        [
            helper.make_node("Slice", [raw_name, "starts_xy", "ends_xy", "last_axis"], ["offset_xy"]),
            helper.make_node("Slice", [raw_name, "starts_wh", "ends_wh", "last_axis"], ["log_wh"]),
            helper.make_node("Slice", [raw_name, "starts_rest", "ends_rest", "last_axis"], ["scores"]),
            helper.make_node("Add", ["offset_xy", "grid_xy"], ["cell_xy"]),
            helper.make_node("Mul", ["cell_xy", "stride_px"], ["centre_xy"]),
            helper.make_node("Exp", ["log_wh"], ["cells_wh"]),
            helper.make_node("Mul", ["cells_wh", "stride_px"], ["size_wh"]),
            helper.make_node("Concat", ["centre_xy", "size_wh", "scores"], ["decoded"], axis=2),
        ]
    )
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info("decoded", TensorProto.FLOAT, [1, 3549, 85]))
    return model.SerializeToString()


def test_yolox_decoded_in_the_graph_is_told_apart_by_its_values(real_model: ModelLoader) -> None:
    """Same rows count and width as the raw export; the decoded one is recognised, keeps YOLOX's
    preprocessing, stays fixed (its grid is constant) and finds exactly what the raw export finds."""
    if not (MODELS / YOLOX_NANO).is_file():
        pytest.skip("yolox_nano.onnx not found")
    decoded = OnnxModel.load(yolox_decoded_in_graph(), runtime=RUNTIME, threads=1)
    raw = real_model(YOLOX_NANO)
    rgb = np.random.default_rng(3).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    plan = plan_letterbox((400, 300), (416, 416), placement=Placement.TOP_LEFT)
    tensor = letterbox(rgb, plan, BGR_RAW_TOP_LEFT)
    params = PostprocessParams(conf_threshold=0.001)

    assert decoded.info.layout is OutputLayout.YOLOX_DECODED
    assert decoded.info.preprocessing == BGR_RAW_TOP_LEFT
    assert decoded.info.dynamic_hw is False
    from_decoded = postprocess(decoded.run(tensor)[0], decoded.info.layout, params, (416, 416))
    from_raw = postprocess(raw.run(tensor)[0], raw.info.layout, params, (416, 416))
    assert len(from_raw) > 0
    np.testing.assert_allclose(from_decoded.xyxy, from_raw.xyxy, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(from_decoded.confidence, from_raw.confidence, rtol=1e-5)


def test_overrides_take_precedence_over_detection(real_model: ModelLoader) -> None:
    if not (MODELS / YOLOX_NANO).is_file():
        pytest.skip("yolox_nano.onnx not found")
    overrides = ModelOverrides(
        layout=OutputLayout.YOLOX_DECODED, preprocessing=RGB_UNIT_CENTERED, input_hw=(640, 640)
    )

    info = OnnxModel.load(MODELS / YOLOX_NANO, runtime=RUNTIME, threads=1, overrides=overrides).info

    assert info.layout is OutputLayout.YOLOX_DECODED
    assert info.preprocessing == RGB_UNIT_CENTERED
    assert info.input_hw == (640, 640) and info.dynamic_hw is True


@pytest.mark.parametrize(
    ("file_name", "input_hw", "message"),
    [
        pytest.param(YOLOV5N, (320, 320), "fixed input of 640x640", id="fixed-model"),
        pytest.param(YOLOV5N_DYNAMIC, (320, 330), "multiple of the stride 32", id="off-stride"),
    ],
)
def test_an_impossible_input_size_override_is_refused(file_name: str, input_hw: tuple[int, int], message: str) -> None:
    if not (MODELS / file_name).is_file():
        pytest.skip(f"{file_name} not found")
    with pytest.raises(ConfigError, match=message):
        OnnxModel.load(MODELS / file_name, runtime=RUNTIME, threads=1, overrides=ModelOverrides(input_hw=input_hw))


class RecordingSession:
    """Stands in for an InferenceSession: records that it ran, answers like the real one."""

    def __init__(self, session: object, label: str, calls: list[str]) -> None:
        self._session, self._label, self._calls = session, label, calls

    def run(self, *args: object) -> object:
        self._calls.append(self._label)
        return self._session.run(*args)  # type: ignore[attr-defined]


def test_sessions_spin_during_a_run_and_stop_when_it_returns() -> None:
    options = session_options(2)
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    assert options.get_session_config_entry("session.force_spinning_stop") == "1"


def test_a_widened_model_runs_on_every_core_only_while_no_other_request_is_in_progress(tmp_path: Path) -> None:
    path = MODELS / YOLOV5N_DYNAMIC
    if not path.is_file():
        pytest.skip(f"test model not found: {path}")
    model = load_model(str(path), runtime=RUNTIME, threads=1, cache_dir=tmp_path)
    share = CoreShare()
    model.widen(2, share)
    assert model.wide_session is not None
    assert model.wide_session.get_session_options().intra_op_num_threads == 2
    calls: list[str] = []
    narrow, wide = model.session, model.wide_session
    model.session = RecordingSession(narrow, "narrow", calls)  # type: ignore[assignment]
    model.wide_session = RecordingSession(wide, "wide", calls)  # type: ignore[assignment]
    tensor = np.zeros((1, 3, 480, 640), np.float32)

    with share.busy():  # this request
        alone = model.run(tensor)
        with share.busy():  # another request (decoding, say) is in progress too
            shared = model.run(tensor)
        large = model.run(np.zeros((1, 3, 1504, 2016), np.float32))  # over WIDE_MAX_INPUT_PIXELS

    assert calls == ["wide", "narrow", "narrow"]
    np.testing.assert_allclose(alone, shared, rtol=1e-4, atol=1e-3)  # same answer either way
    assert large.shape[0] == 1 and WIDE_MAX_INPUT_PIXELS < 1504 * 2016


def test_widen_to_no_more_threads_adds_no_session(real_model: ModelLoader) -> None:
    model = real_model(YOLOV5N_DYNAMIC)
    model.widen(model.threads, CoreShare())
    assert model.wide_session is None and model.core_share is None
