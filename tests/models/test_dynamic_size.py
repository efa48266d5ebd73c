"""The static-to-symbolic input rewrite: what it changes in a graph, and how its check predicts rows."""

from __future__ import annotations

import onnx
import pytest
from onnx import TensorProto, helper

from conftest import MODELS, require
from specks.core.postprocess import OutputLayout
from specks.models.dynamic_size import expected_output_shape, grid_rows_at, second_probe_hw, with_symbolic_hw


def dims(value: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def test_the_rewrite_makes_height_and_width_symbolic_and_leaves_the_original_alone() -> None:
    original = onnx.load(str(require(MODELS / "yolox_nano.onnx")))

    symbolic = with_symbolic_hw(original)

    assert dims(symbolic.graph.input[0]) == [1, 3, "height", "width"]  # batch stays 1
    assert dims(symbolic.graph.output[0]) == [1, "output_1", "output_2"]
    assert len(symbolic.graph.value_info) == 0
    assert dims(original.graph.input[0]) == [1, 3, 416, 416]
    assert len(original.graph.value_info) > 0
    assert list(symbolic.graph.node) == list(original.graph.node)


def test_the_rewrite_skips_initializers_listed_as_inputs() -> None:
    """Old exporters (IR < 4) list every weight among the graph inputs too."""
    weight = helper.make_tensor("w", TensorProto.FLOAT, [1], [2.0])
    graph = helper.make_graph(
        [helper.make_node("Mul", ["images", "w"], ["out"])],
        "old",
        [
            helper.make_tensor_value_info("w", TensorProto.FLOAT, [1]),
            helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64]),
        ],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 64, 64])],
        initializer=[weight],
    )

    symbolic = with_symbolic_hw(helper.make_model(graph))

    assert dims(symbolic.graph.input[0]) == [1]
    assert dims(symbolic.graph.input[1]) == [1, 3, "height", "width"]


def test_the_second_probe_size_is_larger_and_not_square() -> None:
    assert second_probe_hw((416, 416), 32) == (480, 448)
    assert second_probe_hw((384, 640), 64) == (512, 704)


@pytest.mark.parametrize(
    ("rows", "declared_hw", "input_hw", "expected"),
    [
        pytest.param(3549, (416, 416), (480, 448), 4410, id="yolox"),
        pytest.param(25200, (640, 640), (320, 480), 9450, id="yolov5-3-anchors"),
        pytest.param(2535, (416, 416), (480, 448), 3 * (30 * 28 + 15 * 14), id="yolov3-tiny-strides-16-32"),
        pytest.param(300, (640, 640), (704, 672), None, id="not-a-grid-count"),
    ],
)
def test_grid_rows_at(rows: int, declared_hw: tuple[int, int], input_hw: tuple[int, int], expected: int | None) -> None:
    assert grid_rows_at(rows, declared_hw, input_hw) == expected


@pytest.mark.parametrize(
    ("layout", "declared_shape", "expected"),
    [
        pytest.param(OutputLayout.YOLOX, (1, 3549, 85), (1, 4410, 85), id="yolox"),
        pytest.param(OutputLayout.YOLOV5, (1, 10647, 85), (1, 13230, 85), id="yolov5"),
        pytest.param(OutputLayout.ULTRALYTICS, (1, 84, 3549), (1, 84, 4410), id="ultralytics"),
        pytest.param(OutputLayout.END_TO_END, (1, 300, 6), None, id="end-to-end-cannot-be-checked"),
        pytest.param(OutputLayout.YOLOV5, (1, 1000, 85), None, id="unknown-row-count"),
    ],
)
def test_expected_output_shape(
    layout: OutputLayout, declared_shape: tuple[int, ...], expected: tuple[int, ...] | None
) -> None:
    assert expected_output_shape(layout, declared_shape, (416, 416), (480, 448)) == expected
