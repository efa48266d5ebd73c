"""Static INT8 copies of detection graphs: ONNX Runtime's quantizer, calibrated on the caller's inputs.

The float graph is the one Specks serves (the size-agnostic rewrite of a static-input graph, so
calibration and serving run at any size), converted to opset 13 where it is older: opset 11 has no
per-channel DequantizeLinear. The quantized file keeps the input and output names, gets symbolic
height and width, and carries the nominal input size, stride and class names in its metadata, so
``specks serve --model FILE`` serves it as the source model is served, with no special case.

The default recipe was measured on the embedded YOLOX-Nano, one ``QuantRecipe`` field at a time
(``benchmarks/quantize_speed.py`` measures the chosen one; 2 cores of an AMD EPYC with AVX2 but
no VNNI, calibrated on 4 drone photos at 2016x1504 and 8 COCO photos at 640, scored on 6 other
drone photos and 42 other COCO photos; fp32: AP50 0.240 / 0.551):

- the output tail (every node after the last convolutions) always stays float: one 8-bit scale
  over raw box offsets and 0..1 scores is too coarse for either;
- the first three convolutions stay float: the first sees raw 0..255 pixels and its output spans
  -0.3..144, so one uint8 step there is 0.56 and the error compounds (all quantized: AP50 0.021 /
  0.117); the first two float fixed that (0.234 / 0.528, min-max ranges) and the third float held
  AP50 on a second split too (COCO calibrated on 35 photos, scored on the 15 others: AP50 drop
  -0.001 with three, 0.027 with two, 0.025 with six float);
- percentile ranges (ONNX Runtime's 99.999th) rather than min-max: with three float, AP50 0.250 /
  0.553 (fp32 0.240 / 0.551), AP on COCO 0.345 against 0.357 (min-max: 0.233 / 0.536);
- per-channel weights: per-tensor lost 0.08 AP50 on COCO;
- uint8 activations: int8 (S8S8) ran 2.5x *slower* than fp32 on this AVX2 CPU, uint8 1.1-1.3x faster;
- QDQ and QOperator score the same and run within noise of each other; QDQ is kept (the format
  ONNX Runtime recommends, and the one other runtimes read);
- keeping the depthwise convolutions or the head's last convolutions float bought no accuracy
  worth its time (depthwise float: larger output error; head float: AP50 within noise).
"""

from __future__ import annotations

import contextlib
import enum
import io
import logging
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
from onnx import version_converter

from ..errors import ModelLoadError
from .dynamic_size import with_symbolic_hw

# Per-channel DequantizeLinear (its ``axis``) needs opset 13.
PER_CHANNEL_MIN_OPSET = 13


class QuantFormat(str, enum.Enum):
    """QDQ: Quantize/DequantizeLinear pairs ONNX Runtime fuses into integer kernels; QOPERATOR: QLinearConv etc."""

    QDQ = "qdq"
    QOPERATOR = "qoperator"


class Calibration(str, enum.Enum):
    """How activation ranges are drawn from the calibration inputs."""

    MINMAX = "minmax"
    PERCENTILE = "percentile"  # ONNX Runtime's default 99.999th percentile of |x|
    ENTROPY = "entropy"


class ActivationType(str, enum.Enum):
    UINT8 = "uint8"
    INT8 = "int8"


@dataclass(frozen=True)
class QuantRecipe:
    """How a graph is quantized.

    per_channel:       one weight scale per output channel (else one per tensor).
    activations:       uint8 or int8 activations (weights are int8 either way).
    calibration:       how activation ranges are set.
    float_stem_convs:  the first this many convolutions (in graph order), and every node before
                       the next one, stay float; 0: none.
    float_head:        the last convolutions (those no other convolution follows) stay float.
    float_depthwise:   grouped (depthwise) convolutions stay float.
    The output tail (nodes after the last convolutions) always stays float.
    """

    quant_format: QuantFormat = QuantFormat.QDQ
    per_channel: bool = True
    activations: ActivationType = ActivationType.UINT8
    calibration: Calibration = Calibration.PERCENTILE
    float_stem_convs: int = 3
    float_head: bool = False
    float_depthwise: bool = False

    def describe(self) -> dict[str, object]:
        return {
            "format": self.quant_format.value,
            "per_channel": self.per_channel,
            "activations": self.activations.value,
            "calibration": self.calibration.value,
            "float_stem_convs": self.float_stem_convs,
            "float_head": self.float_head,
            "float_depthwise": self.float_depthwise,
        }


DEFAULT_RECIPE = QuantRecipe()

# One calibration input: {input name: (B, 3, H, W) float32}; sizes may differ from one to the next.
CalibrationFeed = dict[str, npt.NDArray[np.float32]]


def float_graph(graph: Path | bytes, *, symbolic_hw: bool = True) -> onnx.ModelProto:
    """The graph to quantize, opset 13 or later, with symbolic height and width unless ``symbolic_hw``
    is False (a graph whose sizes are baked in); raises ModelLoadError."""
    try:
        model = onnx.load(str(graph)) if isinstance(graph, Path) else onnx.load_from_string(graph)
        if symbolic_hw:
            model = with_symbolic_hw(model)
        if default_opset(model) < PER_CHANNEL_MIN_OPSET:
            model = version_converter.convert_version(model, PER_CHANNEL_MIN_OPSET)
    except Exception as exc:  # onnx raises several unrelated exception types
        raise ModelLoadError(f"cannot prepare the model for quantization: {exc}") from exc
    for index, node in enumerate(model.graph.node):  # nodes_to_exclude picks nodes by name
        node.name = node.name or f"specks_node_{index}"
    return model


def default_opset(model: onnx.ModelProto) -> int:
    return next((entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")), 1)


def float_node_names(model: onnx.ModelProto, recipe: QuantRecipe) -> list[str]:
    """Names of the nodes ``recipe`` keeps in float: the output tail, and the stem, head and
    depthwise convolutions it asks for (``float_graph`` names every node)."""
    nodes = list(model.graph.node)
    convs = [node for node in nodes if node.op_type == "Conv"]
    before_conv = nodes_before_conv(nodes)
    kept = [node.name for node in nodes if node.op_type != "Conv" and not before_conv[node.name]]
    if recipe.float_stem_convs and len(convs) > recipe.float_stem_convs:
        kept += [node.name for node in nodes[: nodes.index(convs[recipe.float_stem_convs])]]
    if recipe.float_head:
        kept += [node.name for node in convs if not before_conv[node.name]]
    if recipe.float_depthwise:
        kept += [node.name for node in convs if is_depthwise(node)]
    return list(dict.fromkeys(kept))


def nodes_before_conv(nodes: Sequence[onnx.NodeProto]) -> dict[str, bool]:
    """Node name -> whether a convolution follows it somewhere downstream (nodes in topological order)."""
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in nodes:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    before: dict[str, bool] = {}
    for node in reversed(nodes):  # every consumer comes later in a topologically sorted graph
        after = [c for output in node.output for c in consumers.get(output, [])]
        before[node.name] = any(c.op_type == "Conv" or before.get(c.name, False) for c in after)
    return before


def is_depthwise(node: onnx.NodeProto) -> bool:
    return any(attribute.name == "group" and attribute.i > 1 for attribute in node.attribute)


class StridedReader:
    """ONNX Runtime's CalibrationDataReader over feeds made one source at a time.

    With ``CalibStridedMinMax`` ONNX Runtime asks for one source per pass and folds its ranges in
    before the next, so only one source's activations are ever held (a 2016x1504 YOLOX-Nano
    input's are several GB). ``CalibMaxIntermediateOutputs`` would bound them too, but ONNX Runtime
    1.32 drops the collected data instead of folding it in ("No data is collected").
    """

    def __init__(self, sources: Sequence[Callable[[], list[CalibrationFeed]]]) -> None:
        self._sources = sources
        self._feeds: Iterator[CalibrationFeed] = iter(())

    def __len__(self) -> int:
        return len(self._sources)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._feeds = (feed for source in self._sources[start_index:end_index] for feed in source())

    def get_next(self) -> CalibrationFeed | None:
        return next(self._feeds, None)


def quantize_graph(
    model: onnx.ModelProto,
    sources: Sequence[Callable[[], list[CalibrationFeed]]],
    output: Path,
    *,
    recipe: QuantRecipe = DEFAULT_RECIPE,
    metadata: dict[str, str] | None = None,
    calibration_cache: Path | None = None,
) -> None:
    """Write a static INT8 copy of ``model`` (from ``float_graph``) to ``output``.

    sources: one callable per calibration image, returning the model inputs serving that image
             runs (a full-image input, or its tiles), made when the calibrator asks for them.
    metadata: entries to set in the written model's metadata (e.g. imgsz, stride, names).
    calibration_cache: a file for the calibrated ranges: read when it exists (``sources`` are then
             not run), else written; lets several recipes share one calibration.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantType, quantize_static
    from onnxruntime.quantization import QuantFormat as OrtQuantFormat

    if not sources:
        raise ModelLoadError("quantization needs at least one calibration image")
    excluded = float_node_names(model, recipe)
    ort_format = OrtQuantFormat.QDQ if recipe.quant_format is QuantFormat.QDQ else OrtQuantFormat.QOperator
    method = {
        Calibration.MINMAX: CalibrationMethod.MinMax,
        Calibration.PERCENTILE: CalibrationMethod.Percentile,
        Calibration.ENTROPY: CalibrationMethod.Entropy,
    }[recipe.calibration]
    with tempfile.TemporaryDirectory(prefix="specks-quantize-") as folder:
        source = Path(folder) / "float.onnx"
        onnx.save(model, str(source))
        try:
            with quiet_quantizer():
                quantize_static(
                    str(source),
                    str(output),
                    StridedReader(sources),  # duck-typed: ORT calls only len, set_range and get_next
                    quant_format=ort_format,
                    per_channel=recipe.per_channel,
                    activation_type=QuantType.QUInt8 if recipe.activations is ActivationType.UINT8 else QuantType.QInt8,
                    weight_type=QuantType.QInt8,
                    nodes_to_exclude=excluded,
                    calibrate_method=method,
                    extra_options={"CalibStridedMinMax": 1},
                    # ONNX Runtime 1.32's keyword; only passed when asked for, so older versions still run.
                    **({} if calibration_cache is None else {"calibration_cache_path": str(calibration_cache)}),
                )
        except Exception as exc:  # onnxruntime.quantization raises several unrelated exception types
            raise ModelLoadError(f"quantization failed: {exc}") from exc
    if metadata:
        set_metadata(output, metadata)


class _NotFromQuantizer(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "onnxruntime" not in record.pathname


@contextlib.contextmanager
def quiet_quantizer() -> Iterator[None]:
    """Silence ONNX Runtime's quantizer while it works: it prints progress to stdout (which would
    break ``specks quantize --json``) and logs advice on the root logger."""
    root, quiet = logging.getLogger(), _NotFromQuantizer()
    root.addFilter(quiet)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.removeFilter(quiet)


def set_metadata(path: Path, entries: dict[str, str]) -> None:
    """Set (or replace) metadata entries of the ONNX file at ``path``."""
    model = onnx.load(str(path))
    kept = [prop for prop in model.metadata_props if prop.key not in entries]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in entries.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
