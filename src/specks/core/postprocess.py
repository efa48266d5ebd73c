"""Raw model outputs -> Detections in model-input pixels, one decoder per output layout.

Layouts (per image, the batch axis already removed):

- ``YOLOV5``       (N, 5 + nc): cx, cy, w, h, objectness, nc class scores (original YOLOv5,
                   and Specks' own Darknet conversions).
- ``ULTRALYTICS``  (4 + nc, N): cx, cy, w, h, nc class scores, no objectness
                   (YOLOv5u, YOLOv8, YOLO11 exports).
- ``END_TO_END``   (K, 6): x1, y1, x2, y2, score, class id, already de-duplicated
                   (YOLO26 / YOLOv10 NMS-free heads, exports with NMS built in).
- ``YOLOX``        (N, 5 + nc): dx, dy, log_w, log_h, objectness, nc class scores: YOLOX's
                   raw grid offsets, one row per cell of the stride 8, 16 and 32 grids in that
                   order (row-major, x fastest), N = H/8*W/8 + H/16*W/16 + H/32*W/32. Decoded
                   as ``cx = (dx + grid_x) * stride``, ``w = exp(log_w) * stride``; scores are
                   already sigmoided and a box scores objectness x class score.
- ``YOLOX_DECODED`` (N, 5 + nc): YOLOX exported with its decoding inside the graph: rows as
                   ``YOLOV5`` (cx, cy, w, h in input pixels, objectness, class scores).
"""

from __future__ import annotations

import enum
import functools
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..errors import InferenceError
from .boxes import FloatArray, cxcywh_to_xyxy
from .knobs import DEFAULT_CONF, DEFAULT_IOU, DEFAULT_MAX_DET
from .overlap import batched_nms, batched_soft_nms
from .types import Detections

# Most candidates one run hands to NMS, the best by score, chosen before boxes are expanded per
# class. At conf 0 every anchor x class was a candidate (5 M on one 2016x1504 YOLOX tile): expanding
# them took a worker from 290 to 650 MiB, and NMS over the 30,000 best kept before took about a
# second per run. At conf 0.001 a run has up to 1,509 candidates on COCO tiny50 (YOLOX-Nano, 640)
# and 22,000 on VisDrone (one multi-label 2016x1504 tile); keeping the best 5,000 changed no answer
# on either set (YOLOX-Nano, yolov5n, yolov5n_dynamic, max_det 300 / 500), the best 2,000 changed
# 9 of 10 VisDrone answers.
MAX_CANDIDATES_BEFORE_NMS = 5_000
YOLOX_STRIDES = (8, 16, 32)
# exp(10) strides is far past any image: the bound only keeps random weights from making inf boxes.
_MAX_LOG_WH = 10.0


class OutputLayout(str, enum.Enum):
    YOLOV5 = "yolov5"
    ULTRALYTICS = "ultralytics"
    END_TO_END = "end2end"
    YOLOX = "yolox"
    YOLOX_DECODED = "yolox_decoded"


@dataclass(frozen=True)
class PostprocessParams:
    """Per-request filtering: thresholds in 0..1, a cap on the count, optional class ids."""

    conf_threshold: float = DEFAULT_CONF
    iou_threshold: float = DEFAULT_IOU
    max_detections: int = DEFAULT_MAX_DET
    class_ids: frozenset[int] | None = None
    multi_label: bool = False
    soft_nms: bool = False
    class_agnostic: bool = False  # NMS across classes: one box per object whatever its class
    # Per-class thresholds (index: class id) when a request gives them; ``conf_threshold`` is then
    # their lowest, the floor every candidate must pass before its class's own threshold.
    class_conf: tuple[float, ...] | None = None


def _allowed_columns(num_classes: int, class_ids: frozenset[int] | None) -> npt.NDArray[np.intp] | None:
    """Class columns a request keeps (None: all of them), in class order."""
    if class_ids is None:
        return None
    return np.asarray(sorted(c for c in class_ids if 0 <= c < num_classes), np.intp)


def _best_allowed(class_scores: npt.NDArray[np.float32], allowed: npt.NDArray[np.intp] | None) -> FloatArray:
    """(N, nc) class scores (a view: nothing of that size is copied without a class filter) -> (N,)
    best score among the allowed classes, -1 where none is allowed."""
    if allowed is None:
        return class_scores.max(axis=1)
    if not allowed.size:
        return np.full(len(class_scores), -1.0, np.float32)
    return class_scores[:, allowed].max(axis=1)


def top_rows(best_score: FloatArray, conf_threshold: float, max_rows: int) -> npt.NDArray[np.intp]:
    """Indices, ascending, of the rows scoring above ``conf_threshold``: the ``max_rows`` best of them.

    Kept in their original order so that NMS meets them as it would have without the cap.
    """
    rows = np.flatnonzero(best_score > conf_threshold)
    if len(rows) > max_rows:
        rows = np.sort(rows[np.argpartition(-best_score[rows], max_rows - 1)[:max_rows]])
    return rows


def _candidates(
    boxes_cxcywh: npt.NDArray[np.float32], class_scores: npt.NDArray[np.float32], params: PostprocessParams
) -> Detections:
    """Rows of boxes and (N, nc) class scores -> at most ``MAX_CANDIDATES_BEFORE_NMS`` candidates
    above the threshold, the best by score, in row order.

    With ``multi_label`` a box yields one candidate per class above the threshold (as the
    YOLO validators score), else only its best class. Classes outside ``class_ids`` never count.
    The caller has already cut the rows to the best ``MAX_CANDIDATES_BEFORE_NMS`` by their best
    score, so this expands at most that many rows.
    """
    allowed = _allowed_columns(class_scores.shape[1], params.class_ids)
    if allowed is not None:
        mask = np.zeros(class_scores.shape[1], bool)
        mask[allowed] = True
        class_scores = np.where(mask[None, :], class_scores, -1.0).astype(np.float32)
    if params.multi_label:
        row, column = np.nonzero(class_scores > params.conf_threshold)
        score = class_scores[row, column]
        best = top_rows(score, params.conf_threshold, MAX_CANDIDATES_BEFORE_NMS)
        row, column = row[best], column[best]
        return Detections(cxcywh_to_xyxy(boxes_cxcywh[row]), score[best].astype(np.float32), column.astype(np.int32))
    score, class_id = _best_class(class_scores)
    keep = score > params.conf_threshold
    return Detections(cxcywh_to_xyxy(boxes_cxcywh[keep]), score[keep].astype(np.float32), class_id[keep])


def _best_class(class_scores: npt.NDArray[np.float32]) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int32]]:
    """(N, nc) scores -> best score (N,) and its class (N,)."""
    class_id = class_scores.argmax(axis=1).astype(np.int32)
    return np.take_along_axis(class_scores, class_id[:, None].astype(np.intp), axis=1)[:, 0], class_id


def _scored_rows(
    objectness: FloatArray, class_scores: npt.NDArray[np.float32], params: PostprocessParams
) -> npt.NDArray[np.intp]:
    """Rows of an objectness layout (score = objectness x class score) worth decoding: objectness and
    best allowed score above the threshold, the ``MAX_CANDIDATES_BEFORE_NMS`` best (``top_rows``).

    objectness x the best class score is the best product, rounding included, as objectness >= 0.
    Class scores are read only for rows above the objectness threshold (few at usual confidences);
    when most rows are, the (N, nc) view is reduced in place rather than copied.
    """
    allowed = _allowed_columns(class_scores.shape[1], params.class_ids)
    rows = np.flatnonzero(objectness > params.conf_threshold)
    if 2 * len(rows) > len(objectness):
        best_class = _best_allowed(class_scores, allowed)[rows]
    else:
        best_class = _best_allowed(class_scores[rows], allowed)
    return rows[top_rows(objectness[rows] * best_class, params.conf_threshold, MAX_CANDIDATES_BEFORE_NMS)]


def decode_yolov5(raw: npt.NDArray[np.float32], params: PostprocessParams) -> Detections:
    """(N, 5 + nc) rows -> candidate Detections (before NMS), input pixels."""
    rows = raw[_scored_rows(raw[:, 4], raw[:, 5:], params)]
    return _candidates(rows[:, :4], rows[:, 5:] * rows[:, 4:5], params)


def decode_ultralytics(raw: npt.NDArray[np.float32], params: PostprocessParams) -> Detections:
    """(4 + nc, N) columns -> candidate Detections (before NMS), input pixels."""
    allowed = _allowed_columns(len(raw) - 4, params.class_ids)
    best = _best_allowed(raw[4:].T, allowed)
    rows = raw[:, top_rows(best, params.conf_threshold, MAX_CANDIDATES_BEFORE_NMS)].T
    return _candidates(rows[:, :4], rows[:, 4:], params)


# (rows per grid cell, strides) of the grid heads whose output row counts are recognised.
GRID_HEADS = [(k, s) for k in (1, 3) for s in ((8, 16, 32), (16, 32), (8, 16, 32, 64))]


def anchor_points(input_hw: tuple[int, int], strides: tuple[int, ...]) -> int:
    """Grid cells over all heads for an input size: rows of an anchor-free head."""
    return sum(math.ceil(input_hw[0] / s) * math.ceil(input_hw[1] / s) for s in strides)


@functools.lru_cache(maxsize=32)
def yolox_grid(
    input_hw: tuple[int, int], strides: tuple[int, ...] = YOLOX_STRIDES
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """The cell (grid_x, grid_y) (N, 2) and stride (N, 1) of each row of a YOLOX output at ``input_hw``.

    Read-only float32 arrays, cached per input size (a request reuses the size of the last one).
    """
    cells, cell_strides = [], []
    for stride in strides:
        rows, columns = math.ceil(input_hw[0] / stride), math.ceil(input_hw[1] / stride)
        grid_y, grid_x = np.meshgrid(np.arange(rows), np.arange(columns), indexing="ij")
        cells.append(np.stack([grid_x.ravel(), grid_y.ravel()], axis=1))
        cell_strides.append(np.full((rows * columns, 1), stride))
    grid_xy = np.concatenate(cells).astype(np.float32)
    stride_px = np.concatenate(cell_strides).astype(np.float32)
    grid_xy.flags.writeable = False
    stride_px.flags.writeable = False
    return grid_xy, stride_px


def decode_yolox(raw: npt.NDArray[np.float32], params: PostprocessParams, input_hw: tuple[int, int]) -> Detections:
    """(N, 5 + nc) raw grid offsets of a run at ``input_hw`` -> candidate Detections, input pixels."""
    grid_xy, stride_px = yolox_grid(input_hw)
    if len(raw) != len(grid_xy):
        raise InferenceError(
            f"a YOLOX output at input {input_hw[1]}x{input_hw[0]} should have {len(grid_xy)} rows "
            f"(strides {YOLOX_STRIDES}), got {len(raw)}"
        )
    keep = _scored_rows(raw[:, 4], raw[:, 5:], params)
    rows, stride = raw[keep], stride_px[keep]
    centre_xy = (rows[:, :2] + grid_xy[keep]) * stride
    size_wh = np.exp(np.minimum(rows[:, 2:4], _MAX_LOG_WH)) * stride
    return _candidates(np.concatenate([centre_xy, size_wh], axis=1), rows[:, 5:] * rows[:, 4:5], params)


def decode_end_to_end(raw: npt.NDArray[np.float32], params: PostprocessParams) -> Detections:
    """(K, 6) rows -> final Detections, input pixels."""
    class_id = raw[:, 5].round().astype(np.int32)
    keep = raw[:, 4] > params.conf_threshold
    if params.class_ids is not None:
        keep &= np.isin(class_id, list(params.class_ids))
    return Detections(raw[keep, :4].astype(np.float32), raw[keep, 4].astype(np.float32), class_id[keep])


_DECODERS = {
    OutputLayout.YOLOV5: decode_yolov5,
    OutputLayout.ULTRALYTICS: decode_ultralytics,
    OutputLayout.END_TO_END: decode_end_to_end,
    OutputLayout.YOLOX_DECODED: decode_yolov5,
}


def above_class_conf(found: Detections, class_conf: tuple[float, ...]) -> Detections:
    """The detections scoring above their own class's threshold (``class_conf[class_id]``)."""
    thresholds = np.asarray(class_conf, np.float32)
    known = found.class_id < len(thresholds)
    floor = np.where(known, thresholds[np.minimum(found.class_id, len(thresholds) - 1)], np.inf)
    return found[found.confidence > floor]


def postprocess(
    raw: npt.NDArray[np.float32], layout: OutputLayout, params: PostprocessParams, input_hw: tuple[int, int]
) -> Detections:
    """One image's raw output of a run at ``input_hw`` -> final Detections in input pixels, best first.

    Applies the confidence and class filters, class-aware NMS, or soft-NMS (not for end-to-end
    layouts, which are already de-duplicated) and the ``max_detections`` cap. Only the
    ``YOLOX`` layout needs ``input_hw`` (its rows are offsets within grids of that size).
    """
    candidates = decode_yolox(raw, params, input_hw) if layout is OutputLayout.YOLOX else _DECODERS[layout](raw, params)
    if params.class_conf is not None:
        candidates = above_class_conf(candidates, params.class_conf)
    if layout is OutputLayout.END_TO_END:
        return candidates.sorted_by_confidence()[: params.max_detections]
    if params.soft_nms:
        return batched_soft_nms(
            candidates, params.conf_threshold, params.max_detections, class_agnostic=params.class_agnostic
        )
    groups = np.zeros_like(candidates.class_id) if params.class_agnostic else candidates.class_id
    keep = batched_nms(candidates.xyxy, candidates.confidence, groups, params.iou_threshold, params.max_detections)
    return candidates[keep]
