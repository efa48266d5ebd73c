"""A YOLOX-layout ONNX graph as a trainable PyTorch module, and trained weights written back as ONNX.

No converter: the module walks the ONNX graph's own nodes (Conv, SiLU as Sigmoid*Mul, Slice,
Concat, MaxPool, Resize, Add) with torch operators, and every Conv's weights and biases are the
graph's initializers as parameters. Training stops at the head's last convolutions: per level,
the raw box regression, objectness logit and class logits (YOLOX's graph applies the sigmoids
after them). Export copies the trained tensors back into the same graph, so the exported file
keeps the input's contract (YOLOX layout, BGR 0..255 input, image at the top-left) and a model
made by ``specks train`` can be trained again.

The release YOLOX graph has BatchNorm folded into its convolutions and takes raw 0..255 pixels,
so the first convolution's gradient is thousands of times its weights' size. The module takes
0..1 pixels and holds that convolution's weights times 255 (exact; undone at export): measured in
``../shared/TRAINING-FACTS.md``, it is what lets AdamW train the folded weights smoothly.
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper
from torch import Tensor, nn

from ...errors import UnsupportedModelError

PIXEL_SCALE = 255.0  # the graph's input range; the module takes pixels / PIXEL_SCALE
TRAINABLE_LAYOUT_MESSAGE = (
    "specks train trains YOLOX-layout ONNX models (the embedded default YOLOX-Nano, YOLOX's own "
    "export script's output with no decoding in the graph, or a model made by specks train)"
)
CLASS_PRIOR = 0.01  # a new class's starting probability, as YOLOX initialises its class convolutions


@dataclass(frozen=True)
class HeadLevel:
    """One stride level of a YOLOX head: the Conv nodes that end its three branches.

    reg_output, obj_output, cls_output: names of the graph values (raw, before any sigmoid):
    (B, 4, H, W) box regression, (B, 1, H, W) objectness logit, (B, C, H, W) class logits.
    cls_weight, cls_bias: initializer names of the class convolution.
    """

    reg_output: str
    obj_output: str
    cls_output: str
    cls_weight: str
    cls_bias: str


@dataclass(frozen=True)
class YoloxHead:
    """What training needs to know about a YOLOX graph besides its nodes."""

    levels: tuple[HeadLevel, ...]  # in output order: strides 8, 16, 32
    first_conv_weight: str
    class_count: int

    def raw_outputs(self) -> list[str]:
        """The graph values the module computes: each level's reg, obj and cls convolution outputs."""
        return [name for level in self.levels for name in (level.reg_output, level.obj_output, level.cls_output)]


def find_yolox_head(graph: onnx.GraphProto) -> YoloxHead:
    """Locate the head in a YOLOX export; UnsupportedModelError for any other layout.

    YOLOX ends each level in Concat(reg, Sigmoid(obj), Sigmoid(cls)) on the channel axis, then
    Reshape, a Concat of the levels and a Transpose.
    """
    producer = {out: node for node in graph.node for out in node.output}
    initializers = {tensor.name for tensor in graph.initializer}
    level_concats = _level_concats(graph, producer)
    levels = tuple(_head_level(concat, producer, initializers) for concat in level_concats)
    first_conv = next((node for node in graph.node if node.op_type == "Conv"), None)
    if first_conv is None or first_conv.input[1] not in initializers:
        raise UnsupportedModelError(f"{TRAINABLE_LAYOUT_MESSAGE}; this graph has no convolution with weights")
    class_counts = {_initializer_shape(graph, level.cls_weight)[0] for level in levels}
    if len(class_counts) != 1:
        raise UnsupportedModelError(f"{TRAINABLE_LAYOUT_MESSAGE}; the head's levels disagree on the class count")
    return YoloxHead(levels, first_conv.input[1], class_counts.pop())


def _level_concats(graph: onnx.GraphProto, producer: Mapping[str, onnx.NodeProto]) -> list[onnx.NodeProto]:
    if len(graph.output) != 1:
        raise UnsupportedModelError(f"{TRAINABLE_LAYOUT_MESSAGE}; this graph has {len(graph.output)} outputs")
    node = producer.get(graph.output[0].name)
    if node is not None and node.op_type == "Transpose":
        node = producer.get(node.input[0])
    if node is None or node.op_type != "Concat" or len(node.input) != 3:
        raise UnsupportedModelError(f"{TRAINABLE_LAYOUT_MESSAGE}; its output is not a concatenation of 3 levels")
    concats = []
    for name in node.input:
        reshape = producer.get(name)
        level = producer.get(reshape.input[0]) if reshape is not None and reshape.op_type == "Reshape" else None
        if level is None or level.op_type != "Concat" or len(level.input) != 3:
            raise UnsupportedModelError(f"{TRAINABLE_LAYOUT_MESSAGE}; a level does not end in box, object, class")
        concats.append(level)
    return concats


def _head_level(concat: onnx.NodeProto, producer: Mapping[str, onnx.NodeProto], initializers: set[str]) -> HeadLevel:
    reg_name, obj_sigmoid, cls_sigmoid = concat.input
    raw = []
    for name in (obj_sigmoid, cls_sigmoid):
        sigmoid = producer.get(name)
        if sigmoid is None or sigmoid.op_type != "Sigmoid":
            raise UnsupportedModelError(f"{TRAINABLE_LAYOUT_MESSAGE}; a head score is not a sigmoid")
        raw.append(sigmoid.input[0])
    convs = [producer.get(name) for name in (reg_name, *raw)]
    if any(conv is None or conv.op_type != "Conv" or len(conv.input) < 3 for conv in convs):
        raise UnsupportedModelError(f"{TRAINABLE_LAYOUT_MESSAGE}; a head branch does not end in a convolution")
    cls_conv = convs[2]
    assert cls_conv is not None
    if not {cls_conv.input[1], cls_conv.input[2]} <= initializers:
        raise UnsupportedModelError(f"{TRAINABLE_LAYOUT_MESSAGE}; the class convolution has no stored weights")
    return HeadLevel(reg_name, raw[0], raw[1], cls_conv.input[1], cls_conv.input[2])


def _initializer_shape(graph: onnx.GraphProto, name: str) -> tuple[int, ...]:
    tensor = next(t for t in graph.initializer if t.name == name)
    return tuple(int(d) for d in tensor.dims)


# -- the module ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Step:
    """One operation of the module: an ONNX node, or a fused SiLU (Mul(x, Sigmoid(x)))."""

    op: str
    inputs: tuple[str, ...]
    output: str
    attrs: Mapping[str, Any]


def _parameter_key(name: str) -> str:
    return "p_" + re.sub(r"\W", "_", name)


class YoloxModule(nn.Module):
    """The graph up to its head convolutions, on torch.

    forward(images): images (B, 3, H, W) float32, BGR, values 0..1 (pixels / 255), H and W
    multiples of 32. Returns per level (strides 8, 16, 32) a tuple (reg (B, 4, h, w),
    obj_logit (B, 1, h, w), cls_logit (B, C, h, w)).
    """

    def __init__(self, model: onnx.ModelProto, head: YoloxHead) -> None:
        super().__init__()
        graph = model.graph
        self.head = head
        self.input_name = _image_input(graph)
        arrays = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
        conv_params = {name for node in graph.node if node.op_type == "Conv" for name in node.input[1:]}
        self.param_names = {name: _parameter_key(name) for name in conv_params if name in arrays}
        self.params = nn.ParameterDict(
            {key: nn.Parameter(torch.from_numpy(arrays[name].astype(np.float32).copy()))
             for name, key in self.param_names.items()}
        )  # fmt: skip
        with torch.no_grad():
            self.params[self.param_names[head.first_conv_weight]].mul_(PIXEL_SCALE)
        self.constants = {name: value for name, value in arrays.items() if name not in self.param_names}
        self.steps = _fuse_silu(_needed_nodes(graph, head.raw_outputs()))

    def param(self, initializer: str) -> nn.Parameter:
        return self.params[self.param_names[initializer]]

    def forward(self, images: Tensor) -> list[tuple[Tensor, Tensor, Tensor]]:
        values: dict[str, Tensor] = {self.input_name: images}
        for step in self.steps:
            args = [values[name] if name in values else self._stored(name) for name in step.inputs]
            values[step.output] = _OPS[step.op](args, step.attrs)
        return [(values[lv.reg_output], values[lv.obj_output], values[lv.cls_output]) for lv in self.head.levels]

    def _stored(self, name: str) -> Any:
        if name in self.param_names:
            return self.params[self.param_names[name]]
        if name == "":
            return None
        return self.constants[name]

    def backbone_parameters(self) -> list[nn.Parameter]:
        """Parameters of every Conv before the neck's first upsampling (YOLOX's CSPDarknet and SPP)."""
        names: list[str] = []
        for step in self.steps:
            if step.op == "Resize":
                break
            if step.op == "Conv":
                names.extend(name for name in step.inputs[1:] if name in self.param_names)
        return [self.param(name) for name in names]


def _image_input(graph: onnx.GraphProto) -> str:
    initializers = {tensor.name for tensor in graph.initializer}
    return next(value.name for value in graph.input if value.name not in initializers)


def _needed_nodes(graph: onnx.GraphProto, outputs: Sequence[str]) -> list[onnx.NodeProto]:
    """The nodes the ``outputs`` depend on, in graph (topological) order."""
    producer = {out: node for node in graph.node for out in node.output}
    needed: set[str] = set()
    pending = list(outputs)
    while pending:
        node = producer.get(pending.pop())
        if node is not None and node.name + node.output[0] not in needed:
            needed.add(node.name + node.output[0])
            pending.extend(node.input)
    return [node for node in graph.node if node.name + node.output[0] in needed]


def _fuse_silu(nodes: Sequence[onnx.NodeProto]) -> tuple[_Step, ...]:
    """Steps for ``nodes``, with each Mul(x, Sigmoid(x)) whose sigmoid feeds nothing else as one SiLU."""
    sigmoid_of = {node.output[0]: node.input[0] for node in nodes if node.op_type == "Sigmoid"}
    uses: dict[str, int] = {}
    for node in nodes:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    fused: set[str] = set()
    steps = []
    for node in nodes:
        a, b = (list(node.input) + ["", ""])[:2]
        if node.op_type == "Mul" and sigmoid_of.get(b) == a and uses[b] == 1:
            fused.add(b)
            steps.append(_Step("SiLU", (a,), node.output[0], {}))
            continue
        attrs = {attr.name: onnx.helper.get_attribute_value(attr) for attr in node.attribute}
        steps.append(_Step(node.op_type, tuple(node.input), node.output[0], attrs))
    return tuple(step for step in steps if step.output not in fused)


# -- operators -------------------------------------------------------------------------------------


def _conv(args: list[Any], attrs: Mapping[str, Any]) -> Tensor:
    x, weight, bias = (args + [None])[:3]
    pads = list(attrs.get("pads", [0, 0, 0, 0]))
    if pads[:2] != pads[2:]:
        raise UnsupportedModelError(f"{TRAINABLE_LAYOUT_MESSAGE}; asymmetric convolution padding {pads}")
    return F.conv2d(
        x, weight, bias,
        stride=tuple(attrs.get("strides", [1, 1])), padding=tuple(pads[:2]),
        dilation=tuple(attrs.get("dilations", [1, 1])), groups=int(attrs.get("group", 1)),
    )  # fmt: skip


def _slice(args: list[Any], attrs: Mapping[str, Any]) -> Tensor:
    x, starts, ends = args[:3]
    axes = args[3] if len(args) > 3 and args[3] is not None else np.arange(len(starts))
    steps = args[4] if len(args) > 4 and args[4] is not None else np.ones(len(starts), np.int64)
    index: list[slice] = [slice(None)] * x.dim()
    for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
        if step < 1:
            raise UnsupportedModelError(f"{TRAINABLE_LAYOUT_MESSAGE}; a Slice with step {step}")
        size = x.shape[int(axis)]
        index[int(axis)] = slice(int(min(start, size)), int(min(end, size)), int(step))
    return x[tuple(index)]


def _max_pool(args: list[Any], attrs: Mapping[str, Any]) -> Tensor:
    pads = list(attrs.get("pads", [0, 0, 0, 0]))
    return F.max_pool2d(
        args[0], tuple(attrs["kernel_shape"]), stride=tuple(attrs.get("strides", [1, 1])),
        padding=tuple(pads[:2]), ceil_mode=bool(attrs.get("ceil_mode", 0)),
    )  # fmt: skip


def _resize(args: list[Any], attrs: Mapping[str, Any]) -> Tensor:
    scales = args[2] if len(args) > 2 else None
    if attrs.get("mode", b"nearest") not in (b"nearest", "nearest") or scales is None or len(scales) != 4:
        raise UnsupportedModelError(f"{TRAINABLE_LAYOUT_MESSAGE}; only nearest upsampling by scale is supported")
    return F.interpolate(args[0], scale_factor=(float(scales[2]), float(scales[3])), mode="nearest")


def _reshape(args: list[Any], attrs: Mapping[str, Any]) -> Tensor:
    return args[0].reshape(tuple(int(v) for v in args[1]))


_OPS: dict[str, Callable[[list[Any], Mapping[str, Any]], Tensor]] = {
    "Conv": _conv,
    "SiLU": lambda args, attrs: F.silu(args[0]),
    "Sigmoid": lambda args, attrs: torch.sigmoid(args[0]),
    "Mul": lambda args, attrs: args[0] * args[1],
    "Add": lambda args, attrs: args[0] + args[1],
    "Concat": lambda args, attrs: torch.cat(args, dim=int(attrs["axis"])),
    "Slice": _slice,
    "MaxPool": _max_pool,
    "Resize": _resize,
    "Reshape": _reshape,
    "Transpose": lambda args, attrs: args[0].permute(*attrs["perm"]),
}


def check_supported(model: onnx.ModelProto, head: YoloxHead) -> None:
    """UnsupportedModelError when a node the module needs has no torch operator here."""
    unknown = sorted({node.op_type for node in _needed_nodes(model.graph, head.raw_outputs())} - set(_OPS))
    if unknown:
        raise UnsupportedModelError(f"{TRAINABLE_LAYOUT_MESSAGE}; this graph uses {', '.join(unknown)}")


# -- classes ---------------------------------------------------------------------------------------


def class_sources(base_names: Sequence[str], new_names: Sequence[str]) -> list[int | None]:
    """For each new class, the base class whose head weights it starts from (same name), or None."""
    from ...core.names import canonical_names

    base = {name.lower(): i for i, name in enumerate(canonical_names(list(base_names)))}
    return [base.get(name.lower()) for name in canonical_names(list(new_names))]


def set_classes(module: YoloxModule, sources: Sequence[int | None], generator: torch.Generator) -> None:
    """Replace every level's class convolution with one row per new class (copied or fresh)."""
    for level in module.head.levels:
        weight, bias = module.param(level.cls_weight), module.param(level.cls_bias)
        new_weight = torch.randn((len(sources), *weight.shape[1:]), generator=generator) * 0.01
        new_bias = torch.full((len(sources),), -math.log((1 - CLASS_PRIOR) / CLASS_PRIOR))
        for row, source in enumerate(sources):
            if source is not None:
                new_weight[row], new_bias[row] = weight.detach()[source], bias.detach()[source]
        module.params[module.param_names[level.cls_weight]] = nn.Parameter(new_weight)
        module.params[module.param_names[level.cls_bias]] = nn.Parameter(new_bias)
    module.head = _with_class_count(module.head, len(sources))


def _with_class_count(head: YoloxHead, count: int) -> YoloxHead:
    return YoloxHead(head.levels, head.first_conv_weight, count)


# -- loading and export ----------------------------------------------------------------------------


def load_yolox_graph(path: Path) -> tuple[onnx.ModelProto, YoloxHead]:
    """Read an ONNX file and locate its YOLOX head (UnsupportedModelError otherwise)."""
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError, OSError, ...
        raise UnsupportedModelError(f"cannot read {path} as an ONNX model: {exc}") from exc
    head = find_yolox_head(model.graph)
    check_supported(model, head)
    return model, head


def export_onnx(
    base: onnx.ModelProto, module: YoloxModule, class_names: Sequence[str], metadata: Mapping[str, str]
) -> onnx.ModelProto:
    """``base`` with the module's weights, its class count and names, symbolic height and width.

    The trained module's tensors replace the initializers of the same name (the first
    convolution's weights divided back by 255); the head's Reshapes get 5 + classes channels.
    metadata: extra key -> value pairs for the file's metadata (provenance).
    """
    from ...models.dynamic_size import with_symbolic_hw

    model = copy.deepcopy(base)
    old_channels = 5 + _initializer_shape(model.graph, module.head.levels[0].cls_weight)[0]
    new_channels = 5 + len(class_names)
    trained = {name: module.params[key].detach().cpu().numpy() for name, key in module.param_names.items()}
    trained[module.head.first_conv_weight] = trained[module.head.first_conv_weight] / PIXEL_SCALE
    for index, tensor in enumerate(model.graph.initializer):
        if tensor.name in trained:
            replacement = numpy_helper.from_array(trained[tensor.name].astype(np.float32), tensor.name)
        elif _is_head_shape(model.graph, tensor.name, old_channels):
            shape = numpy_helper.to_array(tensor).copy()
            shape[1] = new_channels
            replacement = numpy_helper.from_array(shape, tensor.name)
        else:
            continue
        model.graph.initializer[index].CopyFrom(replacement)
    model = with_symbolic_hw(model)
    names = {str(i): name for i, name in enumerate(class_names)}
    _set_metadata(model, {"names": json.dumps(names), **metadata})
    return model


def _is_head_shape(graph: onnx.GraphProto, name: str, channels: int) -> bool:
    """True for a Reshape target shape [1, channels, -1] (YOLOX's per-level flattening)."""
    if not any(node.op_type == "Reshape" and node.input[1] == name for node in graph.node):
        return False
    tensor = next(t for t in graph.initializer if t.name == name)
    shape = numpy_helper.to_array(tensor)
    return shape.ndim == 1 and len(shape) == 3 and int(shape[1]) == channels and int(shape[2]) == -1


def _set_metadata(model: onnx.ModelProto, values: Mapping[str, str]) -> None:
    kept = [(p.key, p.value) for p in model.metadata_props if p.key not in values]
    del model.metadata_props[:]
    for key, value in [*kept, *values.items()]:
        model.metadata_props.add(key=key, value=value)


def yolox_output(levels: Sequence[tuple[Tensor, Tensor, Tensor]]) -> Tensor:
    """The graph's own output from the module's: (B, A, 5 + C) as [dx, dy, log_w, log_h, obj, classes]
    with sigmoids applied, levels flattened row-major in order (what ONNX Runtime returns)."""
    parts = [torch.cat((reg, obj.sigmoid(), cls.sigmoid()), dim=1).flatten(2) for reg, obj, cls in levels]
    return torch.cat(parts, dim=2).transpose(1, 2)


def flat_predictions(levels: Sequence[tuple[Tensor, Tensor, Tensor]]) -> tuple[Tensor, Tensor, Tensor]:
    """Raw head outputs flattened like ``yolox_output``: reg (B, A, 4), obj_logit (B, A), cls_logit (B, A, C)."""
    reg = torch.cat([r.flatten(2) for r, _, _ in levels], dim=2).transpose(1, 2)
    obj = torch.cat([o.flatten(2) for _, o, _ in levels], dim=2)[:, 0, :]
    cls = torch.cat([c.flatten(2) for _, _, c in levels], dim=2).transpose(1, 2)
    return reg, obj, cls
