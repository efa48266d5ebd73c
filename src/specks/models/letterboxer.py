"""Letterboxing on ONNX Runtime: resize, reorder channels, scale and pad in one multi-threaded call.

Same result as ``specks.core.preprocess.letterbox`` (Pillow + numpy) within rounding, several
times faster on large images: ONNX Runtime's Resize runs on all intra-op threads and
writes the float tensor directly, with no intermediate uint8 resize or transpose copy.
The graph is built for one model's ``Preprocessing`` (channel order, value scale, pad value);
the placement is in each call's ``LetterboxPlan``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from onnx import TensorProto, helper

from ..core.imaging import ImageLimits
from ..core.knobs import SlicingSettings
from ..core.pipeline import Detector, ProfileDefaults
from ..core.preprocess import RGB_UNIT_CENTERED, ChannelOrder, LetterboxPlan, Preprocessing, letterbox, reduce_rgb
from .onnx_model import OnnxModel, session_options

_OPSET = 18  # Resize with the antialias attribute
# Shrinking below this scale gets an antialiasing low-pass (as Pillow's resize does); milder
# shrinking, e.g. a 1/2-scale JPEG decode fitted to the input, is plain bilinear and ~2x faster.
ANTIALIAS_BELOW_SCALE = 0.6


def _letterbox_graph(antialias: bool, preprocessing: Preprocessing) -> bytes:
    nodes = [
        helper.make_node("Cast", ["image"], ["image_f"], to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["image_f"], ["chw"], perm=[2, 0, 1]),
        helper.make_node("Unsqueeze", ["chw", "batch_axis"], ["nchw"]),
        helper.make_node("Resize", ["nchw", "", "", "sizes"], ["resized"], mode="linear", antialias=int(antialias)),
    ]
    if preprocessing.channel_order is ChannelOrder.BGR:  # reorder the resized content, the smallest copy
        nodes.append(helper.make_node("Gather", ["resized", "bgr_order"], ["ordered"], axis=1))
    ordered = "ordered" if preprocessing.channel_order is ChannelOrder.BGR else "resized"
    nodes += [
        helper.make_node("Mul", [ordered, "value_scale"], ["scaled"]),
        helper.make_node("Pad", ["scaled", "pads", "pad_value"], ["tensor"], mode="constant"),
    ]
    graph = helper.make_graph(
        nodes,
        "specks_letterbox",
        [
            helper.make_tensor_value_info("image", TensorProto.UINT8, ["h", "w", 3]),
            helper.make_tensor_value_info("sizes", TensorProto.INT64, [4]),
            helper.make_tensor_value_info("pads", TensorProto.INT64, [8]),
        ],
        [helper.make_tensor_value_info("tensor", TensorProto.FLOAT, [1, 3, "H", "W"])],
        initializer=[
            helper.make_tensor("batch_axis", TensorProto.INT64, [1], [0]),
            helper.make_tensor("bgr_order", TensorProto.INT64, [3], [2, 1, 0]),
            helper.make_tensor("value_scale", TensorProto.FLOAT, [], [preprocessing.value_scale]),
            helper.make_tensor("pad_value", TensorProto.FLOAT, [], [float(preprocessing.pad_fill)]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", _OPSET)])
    model.ir_version = 8
    return model.SerializeToString()


class OrtLetterboxer:
    """Callable (h, w, 3) uint8 RGB + plan -> (1, 3, H, W) float32 model input as ``preprocessing`` says."""

    def __init__(self, threads: int, preprocessing: Preprocessing = RGB_UNIT_CENTERED) -> None:
        self.preprocessing = preprocessing
        # The model's own options: in particular idle threads stop spinning when a call returns
        # (the model's session runs right after on the same cores; spinning on halved its speed).
        options = session_options(threads)
        self._sessions = {
            antialias: ort.InferenceSession(
                _letterbox_graph(antialias, preprocessing), options, providers=["CPUExecutionProvider"]
            )
            for antialias in (False, True)
        }

    def __call__(self, rgb: npt.NDArray[np.uint8], plan: LetterboxPlan) -> npt.NDArray[np.float32]:
        if plan.content_wh == (rgb.shape[1], rgb.shape[0]):
            # Nothing to resize (native tiles): numpy writes the tensor in one pass, as fast, and
            # its buffer goes back to the OS when freed, where the graph's float intermediates
            # (~180 MiB at 2560x2560) would stay in the session's arena.
            return letterbox(rgb, plan, self.preprocessing)
        # The graph works in float: shrink big images in uint8 first, to about twice the content,
        # so no float copy of a full-resolution photo is ever made (and the session's memory arena
        # stays bounded by the largest model input).
        rgb = reduce_rgb(
            rgb, max(1, min(rgb.shape[1] // (2 * plan.content_wh[0]), rgb.shape[0] // (2 * plan.content_wh[1])))
        )
        (content_w, content_h), (pad_x, pad_y) = plan.content_wh, plan.pad_xy
        in_h, in_w = plan.input_hw
        pads = [0, 0, pad_y, pad_x, 0, 0, in_h - content_h - pad_y, in_w - content_w - pad_x]
        feed = {
            "image": np.ascontiguousarray(rgb),
            "sizes": np.array([1, 3, content_h, content_w], np.int64),
            "pads": np.array(pads, np.int64),
        }
        shrink = min(content_w / rgb.shape[1], content_h / rgb.shape[0])
        tensor: npt.NDArray[np.float32] = self._sessions[shrink < ANTIALIAS_BELOW_SCALE].run(None, feed)[0]
        return tensor


def ort_detector(
    model: OnnxModel,
    limits: ImageLimits | None = None,
    slicing: SlicingSettings | None = None,
    *,
    profile: ProfileDefaults | None = None,
) -> Detector[OnnxModel]:
    """A ``Detector`` for ``model`` whose letterbox runs in ONNX Runtime, as the server's does."""
    letterboxer = OrtLetterboxer(model.threads, model.info.preprocessing)
    return Detector(model, limits, slicing, profile=profile, letterbox=letterboxer)
