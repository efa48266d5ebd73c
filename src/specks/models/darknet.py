"""Darknet (``.cfg`` + ``.weights``) to ONNX conversion, with numpy and ``onnx`` only.

Supports the YOLOv3(-tiny) family: ``[convolutional]`` (leaky or linear, batch norm
folded into the convolution), ``[maxpool]``, ``[route]``, ``[upsample]``,
``[shortcut]`` and ``[yolo]``. Any other section raises ``UnsupportedModelError``.

The graph takes ``images``: float32 ``[batch, channels, H, W]``, RGB in 0..1, H and W
the cfg's ``height``/``width`` (static), batch dynamic. It returns one output,
``output0``: float32 ``[batch, N, 5 + classes]`` in the original YOLOv5 layout, every
``[yolo]`` head decoded inside the graph and concatenated along N in cfg order. Each
row is ``cx, cy, w, h`` in pixels of the network input, objectness (sigmoid) and class
probabilities (sigmoid); rows of a head run over (anchor, grid y, grid x).

The converter converts what the cfg says: it fixes nothing (e.g. a wrong ``mask``).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from specks.errors import ModelLoadError, UnsupportedModelError

OPSET_VERSION = 17
IR_VERSION = 8  # the lowest IR version that carries opset 17; widely readable
INPUT_NAME = "images"
OUTPUT_NAME = "output0"
LEAKY_SLOPE = 0.1
BN_EPSILON = 0.000001  # darknet divides by (sqrt(var) + eps), not sqrt(var + eps)
_SECTION_ALIASES = {"conv": "convolutional", "max": "maxpool", "network": "net"}
T = TypeVar("T")

_SUPPORTED_KINDS = ("convolutional", "maxpool", "route", "upsample", "shortcut", "yolo")


# --------------------------------------------------------------------------- cfg


@dataclass(frozen=True)
class CfgSection:
    """One ``[kind]`` block of a Darknet cfg with its ``key=value`` options, as text."""

    kind: str
    options: dict[str, str]

    def get_str(self, key: str, default: str | None = None) -> str:
        """Return option ``key``; raise ``ModelLoadError`` if absent without a default."""
        value = self.options.get(key, default)
        if value is None:
            raise ModelLoadError(f"[{self.kind}] needs the option '{key}=', which the cfg lacks")
        return value

    def _converted(self, key: str, text: str, convert: Callable[[str], T], what: str) -> T:
        """``convert(text)``, or a ModelLoadError saying option ``key`` is not ``what``."""
        try:
            return convert(text)
        except ValueError as exc:
            raise ModelLoadError(f"[{self.kind}] option {key}={text!r} is not {what}") from exc

    def get_int(self, key: str, default: int | None = None) -> int:
        """Return option ``key`` as an int (Darknet's ``atoi`` semantics are not mimicked)."""
        return self._converted(key, self.get_str(key, None if default is None else str(default)), int, "an integer")

    def get_float(self, key: str, default: float | None = None) -> float:
        """Return option ``key`` as a float."""
        return self._converted(key, self.get_str(key, None if default is None else str(default)), float, "a number")

    def get_ints(self, key: str) -> list[int]:
        """Return the comma-separated option ``key`` as ints (empty items skipped)."""
        return self._converted(key, self.get_str(key), _list_of(int), "a list of integers")

    def get_floats(self, key: str) -> list[float]:
        """Return the comma-separated option ``key`` as floats (empty items skipped)."""
        return self._converted(key, self.get_str(key), _list_of(float), "a list of numbers")


def _list_of(convert: Callable[[str], T]) -> Callable[[str], list[T]]:
    """A parser of comma-separated items, each by ``convert`` (empty items skipped)."""
    return lambda text: [convert(item) for item in text.split(",") if item.strip()]


def parse_cfg(cfg_text: str) -> list[CfgSection]:
    """Parse Darknet cfg text into its sections, the first being ``[net]``.

    Like Darknet, all whitespace inside a line is dropped, lines starting with ``#``
    or ``;`` are comments, and for a repeated key the first value wins. Section kinds
    are lower-cased and the aliases ``conv``, ``max`` and ``network`` are normalised.
    Raises ``ModelLoadError`` on a malformed line or a missing ``[net]`` section.
    """
    sections: list[tuple[str, dict[str, str]]] = []
    for line_number, raw_line in enumerate(cfg_text.splitlines(), start=1):
        line = "".join(raw_line.split())
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            if not line.endswith("]") or len(line) < 3:
                raise ModelLoadError(f"cfg line {line_number}: bad section header {raw_line.strip()!r}")
            kind = line[1:-1].lower()
            sections.append((_SECTION_ALIASES.get(kind, kind), {}))
            continue
        key, sep, value = line.partition("=")
        if not sep or not key:
            raise ModelLoadError(f"cfg line {line_number}: expected 'key=value', got {raw_line.strip()!r}")
        if not sections:
            raise ModelLoadError(f"cfg line {line_number}: option {key!r} comes before any [section]")
        sections[-1][1].setdefault(key, value)
    if not sections or sections[0][0] != "net":
        raise ModelLoadError("a Darknet cfg must start with a [net] section; this one does not")
    return [CfgSection(kind, options) for kind, options in sections]


# ----------------------------------------------------------------------- weights


class _WeightReader:
    """Hands out the float32 values of a ``.weights`` file in order.

    A request past the end is answered with zeros so conversion can run on and
    ``check_consumed`` can report how many values the whole cfg needs.
    """

    def __init__(self, weights: bytes) -> None:
        self.header_bytes = _weights_header_size(weights)
        body = weights[self.header_bytes :]
        self.body_bytes = len(body)
        usable = len(body) - len(body) % 4
        self._values = np.frombuffer(body[:usable], dtype="<f4")
        self._needed = 0

    def take(self, count: int) -> np.ndarray:
        """Return the next ``count`` values, float32 ``(count,)``."""
        start, self._needed = self._needed, self._needed + count
        chunk = self._values[start : self._needed]
        if chunk.size < count:
            chunk = np.concatenate([chunk, np.zeros(count - chunk.size, dtype=np.float32)])
        return chunk.astype(np.float32)

    def check_consumed(self) -> None:
        """Raise ``ModelLoadError`` unless the file held exactly the values taken."""
        expected_bytes = 4 * self._needed
        if self.body_bytes != expected_bytes:
            problem = "too short" if self.body_bytes < expected_bytes else "too long"
            raise ModelLoadError(
                f"weights file is {problem} for this cfg: expected {self.header_bytes} header bytes + "
                f"{expected_bytes} bytes ({self._needed} float32 values), got {self.header_bytes} + "
                f"{self.body_bytes} bytes; are the cfg and weights from the same model?"
            )


def _weights_header_size(weights: bytes) -> int:
    """Return the header size in bytes: 3 int32 versions then ``seen`` (int32 or int64)."""
    if len(weights) < 12:
        raise ModelLoadError(f"weights file is too short for a Darknet header: {len(weights)} bytes")
    major, minor, _revision = np.frombuffer(weights[:12], dtype="<i4")
    seen_is_int64 = (major * 10 + minor) >= 2 and major < 1000 and minor < 1000
    header_bytes = 20 if seen_is_int64 else 16
    if len(weights) < header_bytes:
        raise ModelLoadError(f"weights file is too short for a Darknet header: {len(weights)} bytes")
    return header_bytes


def _fold_batch_norm(
    kernel: np.ndarray, scales: np.ndarray, mean: np.ndarray, variance: np.ndarray, biases: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Fold Darknet batch norm into a convolution.

    ``kernel`` is float32 ``(f, c, k, k)``; the others are float32 ``(f,)``. Returns the
    folded kernel ``(f, c, k, k)`` and bias ``(f,)``, float32.
    """
    factor = scales.astype(np.float64) / (np.sqrt(variance.astype(np.float64)) + BN_EPSILON)
    folded_kernel = kernel.astype(np.float64) * factor[:, None, None, None]
    folded_bias = biases.astype(np.float64) - mean.astype(np.float64) * factor
    return folded_kernel.astype(np.float32), folded_bias.astype(np.float32)


# ------------------------------------------------------------------------- graph


@dataclass(frozen=True)
class _Tensor:
    """A graph value of shape ``[batch, channels, height, width]``."""

    name: str
    channels: int
    height: int
    width: int


@dataclass(frozen=True)
class _Head:
    """A decoded ``[yolo]`` head: float32 ``[batch, rows, 5 + classes]``; stride in input pixels."""

    name: str
    rows: int
    classes: int
    stride_px: float


@dataclass(frozen=True, eq=False)
class _HeadGeometry:
    """What decoding a ``[yolo]`` head needs; sizes in network-input pixels."""

    anchors_wh: np.ndarray  # float32 (A, 2): the anchors picked by mask
    stride_xy: np.ndarray  # float32 (2,): input pixels per grid cell
    grid_hw: tuple[int, int]
    outputs: int  # values per row: 5 + classes


class _GraphBuilder:
    """Collects ONNX nodes and initializers; names every value after its layer index."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def constant(self, name: str, array: np.ndarray) -> str:
        """Add ``array`` as an initializer called ``name`` and return the name."""
        self.initializers.append(numpy_helper.from_array(array, name=name))
        return name

    def node(self, op_type: str, inputs: Sequence[str], output: str, **attributes: Any) -> str:
        """Add one single-output node and return the output's name."""
        self.nodes.append(helper.make_node(op_type, list(inputs), [output], name=output, **attributes))
        return output

    def activation(self, kind: str, value: str, layer: int) -> str:
        """Apply a Darknet activation (``leaky`` or ``linear``) to ``value``."""
        if kind == "linear":
            return value
        if kind == "leaky":
            return self.node("LeakyRelu", [value], f"leaky_{layer}", alpha=LEAKY_SLOPE)
        raise UnsupportedModelError(f"activation={kind} is not supported; use leaky or linear")


def _convolutional(
    graph: _GraphBuilder, section: CfgSection, layer: int, source: _Tensor, reader: _WeightReader
) -> _Tensor:
    """Add a convolution (batch norm folded) and its activation."""
    if section.get_int("groups", 1) != 1:
        raise UnsupportedModelError("grouped convolutions (groups != 1) are not supported")
    filters, size = section.get_int("filters"), section.get_int("size", 1)
    stride = section.get_int("stride", 1)
    # Darknet: pad=1 means size//2 and takes precedence over an explicit padding=.
    padding = size // 2 if section.get_int("pad", 0) else section.get_int("padding", 0)
    height, width = ((n + 2 * padding - size) // stride + 1 for n in (source.height, source.width))
    if filters < 1 or size < 1 or stride < 1 or height < 1 or width < 1:
        raise ModelLoadError(f"filters={filters}, size={size}, stride={stride} gives no output")
    kernel, bias = _read_conv_params(reader, filters, source.channels, size, section.get_int("batch_normalize", 0) != 0)
    value = graph.node(
        "Conv",
        [
            source.name,
            graph.constant(f"conv_{layer}.weight", kernel),
            graph.constant(f"conv_{layer}.bias", bias),
        ],
        f"conv_{layer}",
        kernel_shape=[size, size],
        strides=[stride, stride],
        pads=[padding] * 4,
    )
    value = graph.activation(section.get_str("activation", "logistic"), value, layer)
    return _Tensor(value, filters, height, width)


def _read_conv_params(
    reader: _WeightReader, filters: int, channels: int, size: int, batch_normalize: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Read one conv layer's parameters; return kernel ``(f, c, k, k)`` and bias ``(f,)``, float32."""
    kernel_size = filters * channels * size * size
    biases = reader.take(filters)
    if not batch_normalize:
        return reader.take(kernel_size).reshape(filters, channels, size, size), biases
    scales, mean, variance = reader.take(filters), reader.take(filters), reader.take(filters)
    kernel = reader.take(kernel_size).reshape(filters, channels, size, size)
    return _fold_batch_norm(kernel, scales, mean, variance, biases)


def _maxpool(graph: _GraphBuilder, section: CfgSection, layer: int, source: _Tensor) -> _Tensor:
    """Add a max pool with Darknet's padding: ``size - 1`` in total, the smaller half first."""
    size = section.get_int("size", 1)
    stride = section.get_int("stride", 1)
    padding = section.get_int("padding", size - 1)
    height, width = ((n + padding - size) // stride + 1 for n in (source.height, source.width))
    if size < 1 or stride < 1 or height < 1 or width < 1:
        raise ModelLoadError(f"size={size}, stride={stride} gives no output")
    begin, end = padding // 2, padding - padding // 2
    value = graph.node(
        "MaxPool",
        [source.name],
        f"maxpool_{layer}",
        kernel_shape=[size, size],
        strides=[stride, stride],
        pads=[begin, begin, end, end],
    )
    return _Tensor(value, source.channels, height, width)


def _upsample(graph: _GraphBuilder, section: CfgSection, layer: int, source: _Tensor) -> _Tensor:
    """Add a nearest-neighbour upsampling by the integer ``stride``."""
    stride = section.get_int("stride", 2)
    if stride < 1 or section.get_float("scale", 1.0) != 1.0:
        raise UnsupportedModelError("only upsampling with stride >= 1 and scale=1 is supported")
    scales = graph.constant(f"upsample_{layer}.scales", np.array([1, 1, stride, stride], dtype=np.float32))
    value = graph.node(
        "Resize",
        [source.name, "", scales],
        f"upsample_{layer}",
        mode="nearest",
        coordinate_transformation_mode="asymmetric",
        nearest_mode="floor",
    )
    return _Tensor(value, source.channels, source.height * stride, source.width * stride)


def _route(graph: _GraphBuilder, section: CfgSection, layer: int, outputs: list[_Tensor | None]) -> _Tensor:
    """Concatenate earlier layers' outputs along channels (one layer: pass it through)."""
    if section.get_int("groups", 1) != 1:
        raise UnsupportedModelError("[route] with groups != 1 is not supported")
    sources = [_earlier_output(outputs, layer, index) for index in section.get_ints("layers")]
    if not sources:
        raise ModelLoadError("[route] needs at least one entry in layers=")
    if len({(s.height, s.width) for s in sources}) != 1:
        raise ModelLoadError(f"[route] joins layers of different sizes: {[(s.height, s.width) for s in sources]}")
    if len(sources) == 1:
        return sources[0]
    value = graph.node("Concat", [s.name for s in sources], f"route_{layer}", axis=1)
    return _Tensor(value, sum(s.channels for s in sources), sources[0].height, sources[0].width)


def _shortcut(
    graph: _GraphBuilder, section: CfgSection, layer: int, source: _Tensor, outputs: list[_Tensor | None]
) -> _Tensor:
    """Add the previous layer's output to an earlier one of the same shape, then activate."""
    other = _earlier_output(outputs, layer, section.get_int("from"))
    if (other.channels, other.height, other.width) != (source.channels, source.height, source.width):
        raise UnsupportedModelError("[shortcut] between layers of different shapes is not supported")
    value = graph.node("Add", [source.name, other.name], f"shortcut_{layer}")
    value = graph.activation(section.get_str("activation", "linear"), value, layer)
    return _Tensor(value, source.channels, source.height, source.width)


def _earlier_output(outputs: list[_Tensor | None], layer: int, index: int) -> _Tensor:
    """Resolve a Darknet layer reference (negative: relative to ``layer``) to its output."""
    absolute = layer + index if index < 0 else index
    if not 0 <= absolute < layer:
        raise ModelLoadError(f"layer reference {index} points outside layers 0..{layer - 1}")
    output = outputs[absolute]
    if output is None:
        raise UnsupportedModelError(f"layer reference {index} points at a [yolo] layer, which cannot be reused")
    return output


def _yolo(graph: _GraphBuilder, section: CfgSection, layer: int, source: _Tensor, net_hw: tuple[int, int]) -> _Head:
    """Decode a ``[yolo]`` head to float32 ``[batch, A*gh*gw, 5 + classes]`` rows (see module doc)."""
    if section.get_float("scale_x_y", 1.0) != 1.0 or section.get_int("new_coords", 0) != 0:
        raise UnsupportedModelError("[yolo] with scale_x_y or new_coords is not supported")
    anchors_wh = _head_anchors_wh(section)
    count, outputs = len(anchors_wh), 5 + section.get_int("classes", 20)
    if source.channels != count * outputs:
        raise ModelLoadError(
            f"[yolo] expects {count} anchors x {outputs} = {count * outputs} input channels, "
            f"got {source.channels} from the layer before"
        )
    prefix = f"yolo_{layer}"
    grid_shape = _shape(graph, f"{prefix}.grid_shape", [0, count, outputs, source.height, source.width])
    grid = graph.node("Reshape", [source.name, grid_shape], f"{prefix}.grid")
    rows = graph.node("Transpose", [grid], f"{prefix}.rows", perm=[0, 1, 3, 4, 2])
    stride_xy = np.array([net_hw[1] / source.width, net_hw[0] / source.height], dtype=np.float32)
    geometry = _HeadGeometry(anchors_wh, stride_xy, (source.height, source.width), outputs)
    decoded = _decode_rows(graph, prefix, rows, geometry)
    flat_shape = _shape(graph, f"{prefix}.flat_shape", [0, -1, outputs])
    name = graph.node("Reshape", [decoded, flat_shape], prefix)
    return _Head(name, count * source.height * source.width, outputs - 5, float(stride_xy.max()))


def _head_anchors_wh(section: CfgSection) -> np.ndarray:
    """Return the head's anchors picked by ``mask``: float32 ``(A, 2)`` as (w, h) in input pixels."""
    anchors = section.get_floats("anchors")
    if len(anchors) % 2:
        raise ModelLoadError(f"[yolo] anchors= holds an odd count of numbers ({len(anchors)})")
    all_wh = np.array(anchors, dtype=np.float32).reshape(-1, 2)
    mask = section.get_ints("mask") if "mask" in section.options else list(range(len(all_wh)))
    if not mask or any(not 0 <= m < len(all_wh) for m in mask):
        raise ModelLoadError(f"[yolo] mask={mask} must pick among the {len(all_wh)} anchors")
    return all_wh[mask]


def _decode_rows(graph: _GraphBuilder, prefix: str, rows: str, geometry: _HeadGeometry) -> str:
    """Decode raw ``[batch, A, gh, gw, 5 + classes]`` predictions; xywh end in input pixels."""
    parts = [f"{prefix}.txy", f"{prefix}.twh", f"{prefix}.tscores"]
    split_sizes = np.array([2, 2, geometry.outputs - 4], dtype=np.int64)
    split_inputs = [rows, graph.constant(f"{prefix}.split_sizes", split_sizes)]
    graph.nodes.append(helper.make_node("Split", split_inputs, parts, name=f"{prefix}.split", axis=-1))
    grid_h, grid_w = geometry.grid_hw
    gy, gx = np.meshgrid(np.arange(grid_h), np.arange(grid_w), indexing="ij")
    offsets_xy = np.stack([gx, gy], axis=-1).astype(np.float32)[None, None]  # (1, 1, gh, gw, 2)
    xy = graph.node("Sigmoid", [parts[0]], f"{prefix}.sigmoid_xy")
    xy = graph.node("Add", [xy, graph.constant(f"{prefix}.grid_xy", offsets_xy)], f"{prefix}.cell_xy")
    xy = graph.node("Mul", [xy, graph.constant(f"{prefix}.stride_xy", geometry.stride_xy)], f"{prefix}.xy")
    wh = graph.node("Exp", [parts[1]], f"{prefix}.exp_wh")
    anchors = geometry.anchors_wh.reshape(1, -1, 1, 1, 2)
    wh = graph.node("Mul", [wh, graph.constant(f"{prefix}.anchors_wh", anchors)], f"{prefix}.wh")
    scores = graph.node("Sigmoid", [parts[2]], f"{prefix}.scores")
    return graph.node("Concat", [xy, wh, scores], f"{prefix}.decoded", axis=-1)


def _shape(graph: _GraphBuilder, name: str, dims: list[int]) -> str:
    """Add an int64 shape constant for Reshape (0 copies the input's dim, -1 is inferred)."""
    return graph.constant(name, np.array(dims, dtype=np.int64))


# --------------------------------------------------------------------- conversion


def convert_darknet(cfg_text: str, weights: bytes) -> onnx.ModelProto:
    """Convert a Darknet cfg and its ``.weights`` bytes to a checked ONNX model.

    See the module docstring for the graph's input and output. Raises
    ``ModelLoadError`` for a malformed cfg or weights that do not match it, and
    ``UnsupportedModelError`` for sections or options the converter lacks.
    """
    sections = parse_cfg(cfg_text)
    net_chw = _net_input_chw(sections[0])
    reader = _WeightReader(weights)
    graph = _GraphBuilder()
    heads = _build_layers(graph, sections[1:], reader, net_chw)
    reader.check_consumed()
    if not heads:
        raise UnsupportedModelError("the cfg has no [yolo] section; only YOLO detectors can be converted")
    if len({head.classes for head in heads}) != 1:
        raise UnsupportedModelError(f"[yolo] heads disagree on classes: {[head.classes for head in heads]}")
    graph.node("Concat", [head.name for head in heads], OUTPUT_NAME, axis=1)
    model = _make_model(graph, net_chw, heads)
    _set_metadata(model, net_chw, heads, cfg_text)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise ModelLoadError(f"the converted Darknet model is not valid ONNX: {exc}") from exc
    return model


def _net_input_chw(net: CfgSection) -> tuple[int, int, int]:
    """Return the ``[net]`` input as (channels, height, width)."""
    chw = (net.get_int("channels", 3), net.get_int("height"), net.get_int("width"))
    if min(chw) < 1:
        raise ModelLoadError(f"[net] channels, height and width must be positive, got {chw}")
    return chw


def _build_layers(
    graph: _GraphBuilder, layers: list[CfgSection], reader: _WeightReader, net_chw: tuple[int, int, int]
) -> list[_Head]:
    """Add every layer's nodes in cfg order; return the decoded ``[yolo]`` heads in order."""
    current = _Tensor(INPUT_NAME, *net_chw)
    outputs: list[_Tensor | None] = []
    heads: list[_Head] = []
    for layer, section in enumerate(layers):
        if section.kind not in _SUPPORTED_KINDS:
            raise UnsupportedModelError(
                f"layer {layer} is a [{section.kind}] section, which the Darknet converter does not support "
                f"(supported: {', '.join(_SUPPORTED_KINDS)})"
            )
        try:
            if section.kind == "yolo":
                heads.append(_yolo(graph, section, layer, current, net_chw[1:]))
                outputs.append(None)
                continue
            current = _build_layer(graph, section, layer, current, outputs, reader)
        except (ModelLoadError, UnsupportedModelError) as exc:
            raise type(exc)(f"layer {layer} [{section.kind}]: {exc.message}") from exc
        outputs.append(current)
    return heads


def _build_layer(
    graph: _GraphBuilder,
    section: CfgSection,
    layer: int,
    current: _Tensor,
    outputs: list[_Tensor | None],
    reader: _WeightReader,
) -> _Tensor:
    """Add the nodes of one non-``[yolo]`` layer and return its output."""
    if section.kind == "convolutional":
        return _convolutional(graph, section, layer, current, reader)
    if section.kind == "maxpool":
        return _maxpool(graph, section, layer, current)
    if section.kind == "upsample":
        return _upsample(graph, section, layer, current)
    if section.kind == "route":
        return _route(graph, section, layer, outputs)
    return _shortcut(graph, section, layer, current, outputs)


def _make_model(graph: _GraphBuilder, net_chw: tuple[int, int, int], heads: list[_Head]) -> onnx.ModelProto:
    """Wrap the nodes in a graph with a dynamic-batch input and the ``output0`` output."""
    channels, height, width = net_chw
    images = helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", channels, height, width])
    rows = sum(head.rows for head in heads)
    output = helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", rows, 5 + heads[0].classes])
    onnx_graph = helper.make_graph(graph.nodes, "darknet", [images], [output], initializer=graph.initializers)
    return helper.make_model(
        onnx_graph,
        opset_imports=[helper.make_opsetid("", OPSET_VERSION)],
        ir_version=IR_VERSION,
        producer_name="specks.models.darknet",
    )


def _set_metadata(model: onnx.ModelProto, net_chw: tuple[int, int, int], heads: list[_Head], cfg_text: str) -> None:
    """Record stride, input size, source and the cfg's sha256 in ``metadata_props``."""
    stride_px = max(head.stride_px for head in heads)
    metadata = {
        "stride": str(int(stride_px)) if stride_px.is_integer() else str(stride_px),
        "imgsz": f"[{net_chw[1]}, {net_chw[2]}]",
        "source": "darknet",
        "darknet_cfg_sha256": hashlib.sha256(cfg_text.encode("utf-8")).hexdigest(),
    }
    helper.set_model_props(model, metadata)


def convert_darknet_cached(
    cfg_path: Path, weights_path: Path, cache_dir: Path, *, fix_cfg: Callable[[str], str] | None = None
) -> Path:
    """Convert once and cache: return ``cache_dir/darknet-<hash16>.onnx``.

    ``fix_cfg`` edits the cfg text after reading (the embedded default's known mistake).
    The hash is the sha256 of the cfg text used and the weights bytes. An existing file is
    returned as is; a new one is written to a temporary file in ``cache_dir`` and renamed
    into place atomically.
    """
    try:
        text = cfg_path.read_text(encoding="utf-8")
        weights = weights_path.read_bytes()
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"cannot read the Darknet files {cfg_path} / {weights_path}: {exc}") from exc
    if fix_cfg is not None:
        text = fix_cfg(text)
    digest = hashlib.sha256(text.encode("utf-8") + b"\0" + weights).hexdigest()
    target = cache_dir / f"darknet-{digest[:16]}.onnx"
    if target.is_file():
        return target
    model_bytes = convert_darknet(text, weights).SerializeToString()
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        _write_atomically(target, model_bytes)
    except OSError as exc:
        raise ModelLoadError(f"cannot write the converted model to {target}: {exc}") from exc
    return target


def _write_atomically(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` through a temporary file in the same folder."""
    handle, temp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as temp_file:
            temp_file.write(data)
        os.replace(temp_name, target)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
