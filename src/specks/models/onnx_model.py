"""An ONNX detection model on ONNX Runtime: its sessions, and ``OnnxModel.run``.

``OnnxModel.load`` opens a session (with the options measured below), asks
``specks.models.inspection`` what the model is and expects, gives a static-input graph that runs
at any size symbolic height and width, and may later add a wide session for runs nothing else
shares (adaptive threads). This package is the only place that imports onnxruntime.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from ..config import RuntimeOptions
from ..errors import InferenceError, ModelLoadError
from .inspection import ModelInfo, inspect_session, probe_run, with_nominal_hw
from .overrides import NO_OVERRIDES, ModelOverrides

log = logging.getLogger(__name__)


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


def _create_session(model: str | bytes, runtime: RuntimeOptions, threads: int) -> ort.InferenceSession:
    """Open an InferenceSession, translating runtime errors into ModelLoadError."""
    try:
        return ort.InferenceSession(model, sess_options=session_options(threads), providers=_choose_providers(runtime))
    except Exception as exc:  # onnxruntime raises several unrelated exception types
        raise ModelLoadError(f"cannot load the ONNX model: {exc}") from exc


# The wide session (adaptive threads) takes runs up to this many input pixels over the batch: the
# full-image pass and single tiles, where a lone client waits on every millisecond. Its memory
# arena then stays small; native-resolution passes and tile batches run on the narrow session.
WIDE_MAX_INPUT_PIXELS = 1280 * 1280


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
        session = _create_session(str(model) if isinstance(model, Path) else model, runtime, threads)
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
        """(B, 3, H, W) float32 letterboxed as ``info.preprocessing`` says -> the raw first output, (B, ...) float32.

        The channel order and value scale are the model's own: RGB in 0..1 for most, BGR in
        0..255 for YOLOX (``core.preprocess.letterbox`` and ``models.letterboxer`` make both).
        """
        session = self.session
        if self.wide_session is not None and self.core_share is not None:
            batch, _, height, width = tensor.shape
            if batch * height * width <= WIDE_MAX_INPUT_PIXELS and not self.core_share.others_busy():
                session = self.wide_session
        try:
            return session.run(None, {self.info.input_name: tensor}, _run_options(tensor))[0]
        except Exception as exc:  # onnxruntime's own exception types are not importable portably
            raise InferenceError(f"inference failed: {exc}") from exc


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
        candidate = _create_session(rewritten, runtime, threads)
        declared_shape = probe_run(candidate, info.input_hw).shape
        expected = expected_output_shape(info.layout, declared_shape, info.input_hw, second_hw)
        if expected is None or probe_run(candidate, second_hw).shape != expected:
            return None
    except Exception:  # any failure (onnx, session, run) means: keep the graph as declared
        log.debug("%s: input size stays fixed at %s", info.name, info.input_hw, exc_info=True)
        return None
    return candidate, rewritten
