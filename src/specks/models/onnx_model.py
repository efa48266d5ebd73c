"""An ONNX detection model on ONNX Runtime: loading, introspection, inference.

This package is the only place that imports onnxruntime.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from ..config import RuntimeOptions
from ..core.names import literal_or_none, resolve_names
from ..core.postprocess import GRID_HEADS, YOLOX_STRIDES, OutputLayout, anchor_points, yolox_grid
from ..core.preprocess import BGR_RAW_TOP_LEFT, RGB_UNIT_CENTERED, Preprocessing
from ..errors import ConfigError, InferenceError, ModelLoadError, UnsupportedModelError
from .overrides import NO_OVERRIDES, ModelOverrides

log = logging.getLogger(__name__)

DEFAULT_INPUT_SIZE = 640
DEFAULT_STRIDE = 32


@dataclass(frozen=True)
class ModelInfo:
    """What a loaded model is and expects.

    input_hw:      nominal input height and width in pixels (the static size, or the
                   exporter's ``imgsz`` for dynamic models).
    dynamic_hw:    the graph accepts other heights/widths (multiples of ``stride``), as
                   exported or once a static-input graph was found size-agnostic at load.
    dynamic_batch: the graph accepts several images in one run.
    preprocessing: channel order, value scale, pad value and placement the model expects.
    """

    name: str
    path: str
    source_format: str
    input_name: str
    input_hw: tuple[int, int]
    dynamic_hw: bool
    dynamic_batch: bool
    stride: int
    layout: OutputLayout
    names: tuple[str, ...]
    providers: tuple[str, ...]
    preprocessing: Preprocessing = RGB_UNIT_CENTERED

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "format": self.source_format,
            "input_size": {"height": self.input_hw[0], "width": self.input_hw[1]},
            "dynamic_input_size": self.dynamic_hw,
            "dynamic_batch": self.dynamic_batch,
            "stride": self.stride,
            "layout": self.layout.value,
            "num_classes": self.num_classes,
            "names": list(self.names),
            "providers": list(self.providers),
            "preprocessing": self.preprocessing.to_dict(),
        }


def _is_dynamic(dim: object) -> bool:
    return not isinstance(dim, int) or dim <= 0


def session_options(threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    # Pool threads spin between the operators of a run (waking a sleeping thread for each of a
    # nano model's ~300 small operators made YOLOX-Nano at 640x480 1.2x slower, measured by
    # benchmarks/ort_threads.py) but stop when the run returns: the request's next steps (decode,
    # letterbox, the next tile) and the other workers need those cores (threads left spinning
    # after runs made sliced requests 431 -> 491 ms).
    options.add_session_config_entry("session.intra_op.allow_spinning", "1")
    options.add_session_config_entry("session.force_spinning_stop", "1")
    # A memory pattern is a second, pre-planned block per input shape on top of the arena chunks
    # the first run left: yolov5n at 2560x2560 kept 930 MiB with it and 485 MiB without, at the
    # same speed (docs/performance.md, "Memory per model").
    options.enable_mem_pattern = False
    return options


# Runs with a larger input than this (pixels over the whole batch) give their arena memory back
# when they finish; smaller ones keep it. Re-faulting the pages costs a run ~7% at 2560x2560 and
# ~15% at 640x640, so the common sizes keep theirs and a worker keeps no 2560x2560 working set.
ARENA_KEEP_INPUT_PIXELS = 2048 * 2048


def _run_options(tensor: npt.NDArray[np.float32]) -> ort.RunOptions | None:
    """Options for one run: arena shrinkage after inputs larger than ``ARENA_KEEP_INPUT_PIXELS``."""
    batch, _, height, width = tensor.shape
    if batch * height * width <= ARENA_KEEP_INPUT_PIXELS:
        return None
    options = ort.RunOptions()
    options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
    return options


def _choose_providers(runtime: RuntimeOptions) -> list[str]:
    available = set(ort.get_available_providers())
    wanted = runtime.provider_names()
    chosen = [p for p in wanted if p in available]
    missing = [p for p in wanted if p not in available]
    if missing:
        log.warning("execution providers %s are not installed; using %s", missing, chosen or ["CPU"])
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


def create_session(model: str | bytes, runtime: RuntimeOptions, threads: int) -> ort.InferenceSession:
    """Open an InferenceSession, translating runtime errors into ModelLoadError."""
    try:
        return ort.InferenceSession(model, sess_options=session_options(threads), providers=_choose_providers(runtime))
    except Exception as exc:  # onnxruntime raises several unrelated exception types
        raise ModelLoadError(f"cannot load the ONNX model: {exc}") from exc


def _metadata_imgsz(value: str | None) -> tuple[int, int] | None:
    parsed = literal_or_none(value)
    if isinstance(parsed, int):
        return parsed, parsed
    if isinstance(parsed, (list, tuple)) and len(parsed) == 2 and all(isinstance(v, int) for v in parsed):
        return int(parsed[0]), int(parsed[1])
    return None


def _metadata_class_count(value: str | None) -> int | None:
    parsed = literal_or_none(value)
    return len(parsed) if isinstance(parsed, (dict, list)) else None


def detect_layout(output_shape: tuple[int, ...], input_hw: tuple[int, int], end2end_hint: bool) -> OutputLayout:
    """Tell the output layout apart from the shape of one (batch-1) run at ``input_hw``.

    One row per cell of stride 8, 16 and 32 grids is YOLOX's anchor-free head; three per cell
    (or other strides) is YOLOv5's. ``YOLOX`` here may still be ``YOLOX_DECODED``: only the
    output's values tell (see ``yolox_boxes_are_decoded``).
    """
    if len(output_shape) != 3:
        raise UnsupportedModelError(f"expected a detection output of rank 3 [batch, ..., ...], got {output_shape}")
    _, rows, cols = output_shape
    if end2end_hint and cols == 6:
        return OutputLayout.END_TO_END
    if rows < cols and rows >= 5:
        return OutputLayout.ULTRALYTICS
    if cols >= 6 and rows == anchor_points(input_hw, YOLOX_STRIDES):
        return OutputLayout.YOLOX
    anchor_counts = {k * anchor_points(input_hw, s) for k, s in GRID_HEADS}
    if cols >= 6 and rows in anchor_counts:
        return OutputLayout.YOLOV5
    if cols == 6:
        return OutputLayout.END_TO_END
    if cols > 6:
        return OutputLayout.YOLOV5
    raise UnsupportedModelError(f"unrecognised detection output shape {output_shape}")


def yolox_boxes_are_decoded(raw: npt.NDArray[np.float32], input_hw: tuple[int, int]) -> bool:
    """Whether the box columns of a (N, 5 + nc) YOLOX output at ``input_hw`` are decoded pixels.

    Raw offsets stay near the middle of their cell (dx, dy about 0.5) wherever the cell is;
    decoded centres grow with the cell's position. Whichever reading puts the centres nearer
    to their cells' middles wins: on the official YOLOX-Nano the raw reading is off by a median
    0.4 cell and the decoded one by 26.
    """
    grid_xy, stride_px = yolox_grid(input_hw)
    centres = raw[:, :2].astype(np.float64)
    as_offsets = float(np.median(np.abs(centres - 0.5)))
    as_pixels = float(np.median(np.abs(centres / stride_px - grid_xy - 0.5)))
    return as_pixels < as_offsets


def default_preprocessing(layout: OutputLayout) -> Preprocessing:
    """What a model of ``layout`` is trained on: YOLOX's own preprocessing, or RGB 0..1 centred."""
    return BGR_RAW_TOP_LEFT if layout in (OutputLayout.YOLOX, OutputLayout.YOLOX_DECODED) else RGB_UNIT_CENTERED


# The wide session (adaptive threads) takes runs up to this many input pixels over the batch: the
# full-image pass and single tiles, where a lone client waits on every millisecond. Its memory
# arena then stays small; native-resolution passes and tile batches run on the narrow session.
WIDE_MAX_INPUT_PIXELS = 1280 * 1280

# Silences the error ONNX Runtime logs for a run that is expected to fail (a size probe).
_QUIET_RUN = ort.RunOptions()
_QUIET_RUN.log_severity_level = 4


def probe_run(session: ort.InferenceSession, input_hw: tuple[int, int]) -> npt.NDArray[np.float32]:
    """The first output of a run on a black (1, 3, H, W) image; raises whatever ONNX Runtime raises."""
    feed = {session.get_inputs()[0].name: np.zeros((1, 3, *input_hw), np.float32)}
    output: npt.NDArray[np.float32] = session.run(None, feed, _QUIET_RUN)[0]
    return output


class OthersBusy(Protocol):
    """Whether another worker's prediction is in progress (the server's ``service.cores.CoreShare``)."""

    def others_busy(self) -> bool: ...


class OnnxModel:
    """A detection model ready to run: an InferenceSession plus what it expects.

    ``run`` is thread-safe (ONNX Runtime sessions are); nothing here holds per-request state.
    """

    def __init__(
        self, session: ort.InferenceSession, info: ModelInfo, threads: int = 1, graph: Path | bytes | None = None
    ) -> None:
        self.session = session
        self.info = info
        self.threads = threads
        self.graph = graph  # what the session was built from (the size-agnostic rewrite, if any)
        # Adaptive threads (``widen``): a second session on every core, for runs nothing else shares.
        self.wide_session: ort.InferenceSession | None = None
        self.core_share: OthersBusy | None = None

    @classmethod
    def load(
        cls,
        model: Path | bytes,
        *,
        runtime: RuntimeOptions,
        threads: int,
        source_format: str = "onnx",
        path: Path | None = None,
        name: str | None = None,
        overrides: ModelOverrides = NO_OVERRIDES,
    ) -> OnnxModel:
        """Open an ONNX file (or serialized bytes) and work out its input size, layout and names.

        A static-input graph that runs at other sizes too is given symbolic height and width
        (see ``specks.models.dynamic_size``). ``overrides`` take precedence over what the graph says.
        """
        model_path = path if path is not None else (model if isinstance(model, Path) else Path("model.onnx"))
        if isinstance(model, Path) and not model.is_file():
            raise ModelLoadError(f"model file not found: {model}")
        session = create_session(str(model) if isinstance(model, Path) else model, runtime, threads)
        info = inspect_session(session, model_path, source_format, name or model_path.name, overrides)
        graph: Path | bytes = model
        if not info.dynamic_hw:
            agnostic = size_agnostic_session(model, info, runtime, threads)
            if agnostic is not None:
                log.info("%s: its declared %s input runs at any multiple of %d", info.name, info.input_hw, info.stride)
                (session, graph), info = agnostic, dataclasses.replace(info, dynamic_hw=True)
        if overrides.input_hw is not None:
            info = with_nominal_hw(info, overrides.input_hw)
        return cls(session, info, threads, graph)

    def plain_session(self, threads: int) -> ort.InferenceSession:
        """A second session on the same graph with ONNX Runtime's own defaults but ``threads``:
        the bare yardstick benchmarks time against.

        Its idle threads spin between operators, as they do by default, but stop when a run
        returns: by default they go on spinning for tens of milliseconds, which takes a core
        from the server being timed right after (44-48 ms of CPU in a 50 ms pause:
        ``benchmarks/ort_threads.py``).
        """
        graph = self._graph_source()
        if graph is None:
            raise ModelLoadError(f"{self.info.name}: the graph it was loaded from is not known")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.add_session_config_entry("session.force_spinning_stop", "1")
        return ort.InferenceSession(graph, sess_options=options, providers=list(self.info.providers))

    def _graph_source(self) -> str | bytes | None:
        """What a further session on this model's graph opens: its file's path, or its bytes."""
        return str(self.graph) if isinstance(self.graph, Path) else self.graph

    def widen(self, threads: int, share: OthersBusy) -> None:
        """Add a session on ``threads`` threads that runs take while ``share`` says no other request is
        in progress (``specks.service.cores``); runs over ``WIDE_MAX_INPUT_PIXELS`` stay on the narrow one."""
        graph = self._graph_source()
        if graph is None or threads <= self.threads:
            return
        try:
            options, providers = session_options(threads), list(self.info.providers)
            wide = ort.InferenceSession(graph, sess_options=options, providers=providers)
            probe_run(wide, self.info.input_hw)  # warm, as the narrow session is after the layout probe
        except Exception as exc:  # onnxruntime raises several unrelated exception types
            raise ModelLoadError(f"{self.info.name}: cannot open its {threads}-thread session: {exc}") from exc
        self.wide_session, self.core_share = wide, share

    def run(self, tensor: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """(B, 3, H, W) float32 in 0..1 -> the raw first output, (B, ...) float32."""
        session = self.session
        if self.wide_session is not None and self.core_share is not None:
            batch, _, height, width = tensor.shape
            if batch * height * width <= WIDE_MAX_INPUT_PIXELS and not self.core_share.others_busy():
                session = self.wide_session
        try:
            return session.run(None, {self.info.input_name: tensor}, _run_options(tensor))[0]
        except Exception as exc:  # onnxruntime's own exception types are not importable portably
            raise InferenceError(f"inference failed: {exc}") from exc


def inspect_session(
    session: ort.InferenceSession, path: Path, source_format: str, name: str, overrides: ModelOverrides = NO_OVERRIDES
) -> ModelInfo:
    """Read input size, stride, names, output layout and preprocessing (a test run decides the layout)."""
    inputs = session.get_inputs()
    if len(inputs) != 1 or len(inputs[0].shape) != 4:
        raise UnsupportedModelError(
            f"expected one image input of shape [batch, 3, height, width], got {[i.shape for i in inputs]}"
        )
    meta = session.get_modelmeta().custom_metadata_map
    shape = inputs[0].shape
    dynamic_hw = _is_dynamic(shape[2]) or _is_dynamic(shape[3])
    if not _is_dynamic(shape[1]) and shape[1] != 3:
        raise UnsupportedModelError(f"expected 3 input channels (RGB), got {shape[1]}")
    if dynamic_hw:
        input_hw = _metadata_imgsz(meta.get("imgsz")) or (DEFAULT_INPUT_SIZE, DEFAULT_INPUT_SIZE)
    else:
        input_hw = (int(shape[2]), int(shape[3]))
    stride = int(meta["stride"]) if meta.get("stride", "").isdigit() else DEFAULT_STRIDE
    try:
        output = probe_run(session, input_hw)
    except Exception as exc:
        raise ModelLoadError(f"the model failed a test run at input {input_hw}: {exc}") from exc
    layout = overrides.layout or _detected_layout(output, input_hw, meta.get("end2end", "").lower() == "true")
    num_classes = _class_count(layout, output.shape, meta.get("names"))
    return ModelInfo(
        name=name,
        path=str(path),
        source_format=source_format,
        input_name=inputs[0].name,
        input_hw=input_hw,
        dynamic_hw=dynamic_hw,
        dynamic_batch=_is_dynamic(shape[0]),
        stride=stride,
        layout=layout,
        names=tuple(resolve_names(meta.get("names"), path, num_classes)),
        providers=tuple(session.get_providers()),
        preprocessing=overrides.preprocessing or default_preprocessing(layout),
    )


def _detected_layout(output: npt.NDArray[np.float32], input_hw: tuple[int, int], end2end_hint: bool) -> OutputLayout:
    layout = detect_layout(output.shape, input_hw, end2end_hint)
    if layout is OutputLayout.YOLOX and yolox_boxes_are_decoded(output[0], input_hw):
        return OutputLayout.YOLOX_DECODED
    return layout


def _class_count(layout: OutputLayout, output_shape: tuple[int, ...], names_metadata: str | None) -> int:
    if layout is OutputLayout.ULTRALYTICS:
        num_classes = output_shape[1] - 4
    elif layout is OutputLayout.END_TO_END:
        num_classes = _metadata_class_count(names_metadata) or 80
    else:  # YOLOv5 and YOLOX rows: 4 box values, objectness, class scores
        num_classes = output_shape[2] - 5
    if num_classes < 1:
        raise UnsupportedModelError(f"output shape {output_shape} leaves no room for class scores")
    return num_classes


def size_agnostic_session(
    model: Path | bytes, info: ModelInfo, runtime: RuntimeOptions, threads: int
) -> tuple[ort.InferenceSession, bytes] | None:
    """A session on ``model`` with symbolic height and width (and that rewritten graph), if it
    really runs at another size with the output rows its head has there; None if it does not
    (its sizes are baked in)."""
    import onnx  # only needed here and for Darknet conversion

    from .dynamic_size import expected_output_shape, second_probe_hw, with_symbolic_hw

    second_hw = second_probe_hw(info.input_hw, info.stride)
    try:
        proto = onnx.load(str(model)) if isinstance(model, Path) else onnx.load_from_string(model)
        rewritten = with_symbolic_hw(proto).SerializeToString()
        candidate = create_session(rewritten, runtime, threads)
        declared_shape = probe_run(candidate, info.input_hw).shape
        expected = expected_output_shape(info.layout, declared_shape, info.input_hw, second_hw)
        if expected is None or probe_run(candidate, second_hw).shape != expected:
            return None
    except Exception:  # any failure (onnx, session, run) means: keep the graph as declared
        log.debug("%s: input size stays fixed at %s", info.name, info.input_hw, exc_info=True)
        return None
    return candidate, rewritten


def with_nominal_hw(info: ModelInfo, input_hw: tuple[int, int]) -> ModelInfo:
    """``info`` with a declared nominal input size (a model profile's), checked against the model."""
    if not info.dynamic_hw:
        if tuple(input_hw) != info.input_hw:
            raise ConfigError(
                f"{info.name} has a fixed input of {info.input_hw[1]}x{info.input_hw[0]}; "
                f"an input size of {input_hw[1]}x{input_hw[0]} cannot be declared for it"
            )
        return info
    if input_hw[0] % info.stride or input_hw[1] % info.stride:
        raise ConfigError(f"a declared input size must be a multiple of the stride {info.stride} (got {input_hw})")
    return dataclasses.replace(info, input_hw=(int(input_hw[0]), int(input_hw[1])))
