"""Symbolic height and width for static-input graphs whose operators do not care about the size.

Exporters often declare a fixed input (YOLOX-Nano says 1x3x416x416) for graphs that run at any
multiple of their stride: every Reshape uses -1 and every Resize a scale. Such a graph gets
symbolic height and width in memory, and is kept so only if a run at a second size succeeds and
its output has the rows a grid head has at that size. A graph with sizes baked in (a Reshape to a
fixed shape, a constant anchor grid) fails that check and stays fixed.
"""

from __future__ import annotations

import onnx

from ..core.postprocess import GRID_HEADS, OutputLayout, anchor_points


def with_symbolic_hw(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` whose image input has symbolic height and width, and whose outputs and
    intermediate values no longer promise fixed sizes (ONNX Runtime infers them again)."""
    symbolic = onnx.ModelProto()
    symbolic.CopyFrom(model)
    graph = symbolic.graph
    initializers = {tensor.name for tensor in graph.initializer}
    image = next(value for value in graph.input if value.name not in initializers)
    dims = image.type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = "height", "width"  # setting dim_param clears dim_value
    for output in graph.output:
        for axis, dim in enumerate(output.type.tensor_type.shape.dim):
            if axis > 0:
                dim.dim_param = f"{output.name}_{axis}"
    del graph.value_info[:]
    return symbolic


def second_probe_hw(input_hw: tuple[int, int], stride: int) -> tuple[int, int]:
    """A second input size to verify a rewrite with: larger, and not square, so that height and
    width mixed up anywhere in the graph cannot pass."""
    return input_hw[0] + 2 * stride, input_hw[1] + stride


def grid_rows_at(rows: int, declared_hw: tuple[int, int], input_hw: tuple[int, int]) -> int | None:
    """Rows that a grid-head output with ``rows`` at ``declared_hw`` has at ``input_hw``;
    None when ``rows`` is not the row count of a known grid head."""
    for anchors, strides in GRID_HEADS:
        if anchors * anchor_points(declared_hw, strides) == rows:
            return anchors * anchor_points(input_hw, strides)
    return None


def expected_output_shape(
    layout: OutputLayout, declared_shape: tuple[int, ...], declared_hw: tuple[int, int], input_hw: tuple[int, int]
) -> tuple[int, ...] | None:
    """The (batch-1) output shape a size-agnostic graph gives at ``input_hw``, from its shape at
    ``declared_hw``; None when that cannot be predicted (end-to-end outputs have a fixed count)."""
    if len(declared_shape) != 3 or layout is OutputLayout.END_TO_END:
        return None
    batch, rows, cols = declared_shape
    if layout is OutputLayout.ULTRALYTICS:
        columns = grid_rows_at(cols, declared_hw, input_hw)
        return None if columns is None else (batch, rows, columns)
    new_rows = grid_rows_at(rows, declared_hw, input_hw)
    return None if new_rows is None else (batch, new_rows, cols)
