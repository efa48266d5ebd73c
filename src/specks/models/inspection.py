"""What an ONNX detection model is and expects (``ModelInfo``), read from an open session.

The graph's input and metadata give the input size, stride and class names; one probe run on a
black image tells the output layout (YOLOv5, YOLOX raw or decoded, Ultralytics, end-to-end) and
the class count, since exporters do not label them. ``specks.models.onnx_model`` opens the
sessions and runs them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from ..core.names import literal_or_none, resolve_names
from ..core.postprocess import GRID_HEADS, YOLOX_STRIDES, OutputLayout, anchor_points, yolox_grid
from ..core.preprocess import BGR_RAW_TOP_LEFT, RGB_UNIT_CENTERED, Preprocessing
from ..errors import ConfigError, ModelLoadError, UnsupportedModelError
from .overrides import NO_OVERRIDES, ModelOverrides

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
        preprocessing=overrides.preprocessing or _default_preprocessing(layout),
    )


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


# Silences the error ONNX Runtime logs for a run that is expected to fail (a size probe).
_QUIET_RUN = ort.RunOptions()
_QUIET_RUN.log_severity_level = 4


def probe_run(session: ort.InferenceSession, input_hw: tuple[int, int]) -> npt.NDArray[np.float32]:
    """The first output of a run on a black (1, 3, H, W) image; raises whatever ONNX Runtime raises."""
    feed = {session.get_inputs()[0].name: np.zeros((1, 3, *input_hw), np.float32)}
    output: npt.NDArray[np.float32] = session.run(None, feed, _QUIET_RUN)[0]
    return output


def detect_layout(output_shape: tuple[int, ...], input_hw: tuple[int, int], end2end_hint: bool) -> OutputLayout:
    """Tell the output layout apart from the shape of one (batch-1) run at ``input_hw``.

    One row per cell of stride 8, 16 and 32 grids is YOLOX's anchor-free head; three per cell
    (or other strides) is YOLOv5's. ``YOLOX`` here may still be ``YOLOX_DECODED``: only the
    output's values tell (see ``_yolox_boxes_are_decoded``).
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


def _detected_layout(output: npt.NDArray[np.float32], input_hw: tuple[int, int], end2end_hint: bool) -> OutputLayout:
    layout = detect_layout(output.shape, input_hw, end2end_hint)
    if layout is OutputLayout.YOLOX and _yolox_boxes_are_decoded(output[0], input_hw):
        return OutputLayout.YOLOX_DECODED
    return layout


def _yolox_boxes_are_decoded(raw: npt.NDArray[np.float32], input_hw: tuple[int, int]) -> bool:
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


def _default_preprocessing(layout: OutputLayout) -> Preprocessing:
    """What a model of ``layout`` is trained on: YOLOX's own preprocessing, or RGB 0..1 centred."""
    return BGR_RAW_TOP_LEFT if layout in (OutputLayout.YOLOX, OutputLayout.YOLOX_DECODED) else RGB_UNIT_CENTERED


def _is_dynamic(dim: object) -> bool:
    return not isinstance(dim, int) or dim <= 0


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
