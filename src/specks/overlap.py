"""Overlap maths in one place: IoU and intersection-over-smaller, NMS, and merging duplicates.

Boxes are (N, 4) float32 arrays of x1, y1, x2, y2 in pixels of one frame. Every function here
is pure numpy; ``boxes`` holds the plain geometry (areas, conversions, clipping).
"""

from __future__ import annotations

import enum

import numpy as np
import numpy.typing as npt

from .boxes import FloatArray, IntArray, areas
from .types import Detections


class MatchMetric(str, enum.Enum):
    IOU = "iou"  # intersection over union
    IOS = "ios"  # intersection over the smaller box: a half box cut at a tile edge still matches


class MergeStrategy(str, enum.Enum):
    NMS = "nms"  # keep the best box of each overlapping group
    NMM = "nmm"  # greedy non-maximum merging: the best box grows to cover its group
    WBF = "wbf"  # weighted box fusion: a group becomes its score-weighted mean box


# Soft-NMS (Gaussian): a box overlapping a kept one by IoU u keeps its score times exp(-u^2 / sigma).
SOFT_NMS_SIGMA = 0.5


def intersections(box_xyxy: FloatArray, others_xyxy: FloatArray) -> FloatArray:
    """Intersection areas of one (4,) box with each of (N, 4) boxes -> (N,)."""
    w = np.minimum(box_xyxy[2], others_xyxy[:, 2]) - np.maximum(box_xyxy[0], others_xyxy[:, 0])
    h = np.minimum(box_xyxy[3], others_xyxy[:, 3]) - np.maximum(box_xyxy[1], others_xyxy[:, 1])
    return np.clip(w, 0, None) * np.clip(h, 0, None)


def overlaps(
    box_xyxy: FloatArray,
    others_xyxy: FloatArray,
    metric: MatchMetric = MatchMetric.IOU,
    *,
    box_area: float | None = None,
    other_areas: FloatArray | None = None,
) -> FloatArray:
    """Overlap of one (4,) box with each of (N, 4) boxes by ``metric`` -> (N,) float32 in 0..1.

    ``box_area`` / ``other_areas`` may be passed when the caller already has them (loops).
    """
    inter = intersections(box_xyxy, others_xyxy)
    area = float(areas(box_xyxy[None, :])[0]) if box_area is None else box_area
    others = areas(others_xyxy) if other_areas is None else other_areas
    if metric is MatchMetric.IOS:
        return (inter / np.maximum(np.minimum(area, others), 1e-9)).astype(np.float32)
    return (inter / np.maximum(area + others - inter, 1e-9)).astype(np.float32)


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
        iou = overlaps(xyxy[best], xyxy[rest], box_area=float(box_areas[best]), other_areas=box_areas[rest])
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


def soft_nms(
    xyxy: FloatArray, scores: FloatArray, score_threshold: float, sigma: float = SOFT_NMS_SIGMA
) -> tuple[IntArray, FloatArray]:
    """Gaussian soft-NMS (Bodla et al. 2017): overlapping boxes are down-weighted, not dropped.

    Returns the kept indices in the order they were picked (highest decayed score first) and
    their decayed scores; a box is dropped once its score falls to ``score_threshold`` or below.
    Crowds keep neighbours that hard NMS would remove.
    """
    remaining = np.arange(len(xyxy))
    current = scores.astype(np.float32).copy()
    box_areas = areas(xyxy)
    kept: list[int] = []
    kept_scores: list[float] = []
    while remaining.size:
        best_slot = int(np.argmax(current[remaining]))
        best = remaining[best_slot]
        kept.append(int(best))
        kept_scores.append(float(current[best]))
        remaining = np.delete(remaining, best_slot)
        if not remaining.size:
            break
        iou = overlaps(xyxy[best], xyxy[remaining], box_area=float(box_areas[best]), other_areas=box_areas[remaining])
        current[remaining] *= np.exp(-(iou**2) / sigma)
        remaining = remaining[current[remaining] > score_threshold]
    return np.asarray(kept, np.intp), np.asarray(kept_scores, np.float32)


def batched_soft_nms(
    found: Detections, score_threshold: float, max_keep: int | None = None, *, class_agnostic: bool = False
) -> Detections:
    """Class-aware soft-NMS -> Detections with decayed confidences, best first, at most ``max_keep``.

    With ``class_agnostic`` boxes of every class decay each other."""
    parts = []
    for members in _class_groups(found, class_agnostic):
        keep, decayed = soft_nms(members.xyxy, members.confidence, score_threshold)
        parts.append(Detections(members.xyxy[keep], decayed, members.class_id[keep]))
    if not parts:
        return found
    return Detections.concat(parts).sorted_by_confidence()[:max_keep]


def _class_groups(found: Detections, class_agnostic: bool) -> list[Detections]:
    """The detections class by class, or all together (``class_agnostic``)."""
    if class_agnostic:
        return [found] if len(found) else []
    return [found[found.class_id == label] for label in np.unique(found.class_id)]


def merge_detections(
    found: Detections,
    strategy: MergeStrategy,
    metric: MatchMetric,
    threshold: float,
    *,
    sources: int = 1,
    class_agnostic: bool = False,
) -> Detections:
    """Merge duplicates of one object (same class, overlap above ``threshold``), best first.

    NMS keeps the highest-scoring box of each group. NMM (greedy non-maximum merging)
    replaces it with the smallest box enclosing the group, keeping the highest score, so
    two halves of an object cut by a tile edge become one whole box. WBF (weighted box
    fusion) replaces a group with its score-weighted mean box, scored by the group's mean
    score times the share of the ``sources`` (passes) that found it. Classes are merged one
    at a time (as ``batched_nms`` does), so boxes of other classes never interact, unless
    ``class_agnostic``: then a group may span classes and takes its best box's class.
    """
    if len(found) == 0:
        return found
    merged = [
        weighted_box_fusion(group, metric, threshold, sources)
        if strategy is MergeStrategy.WBF
        else _merge_one_class(group, strategy, metric, threshold)
        for group in _class_groups(found, class_agnostic)
    ]
    return Detections.concat(merged).sorted_by_confidence()


def weighted_box_fusion(found: Detections, metric: MatchMetric, threshold: float, sources: int) -> Detections:
    """Weighted box fusion (Solovyev et al. 2021), boxes matched to clusters best first.

    Meant for one class at a time (``merge_detections`` groups them); a cluster takes the class
    of its best box. Each box joins the first cluster whose fused box it overlaps above ``threshold``, else starts
    one. A cluster's box is the score-weighted mean of its members; its score is their mean score
    times min(members, sources) / sources, so an object only one of several passes saw is damped.
    """
    found = found.sorted_by_confidence()
    fused_xyxy = np.zeros((0, 4), np.float32)
    weighted_sum = np.zeros((0, 4), np.float64)
    score_sum: list[float] = []
    members: list[int] = []
    labels: list[int] = []
    for box, score, label in zip(found.xyxy, found.confidence.astype(np.float64), found.class_id, strict=True):
        if len(fused_xyxy):
            overlap = overlaps(box, fused_xyxy, metric)
            target = int(np.argmax(overlap))
            if overlap[target] > threshold:
                weighted_sum[target] += box * score
                score_sum[target] += score
                members[target] += 1
                fused_xyxy[target] = weighted_sum[target] / score_sum[target]
                continue
        fused_xyxy = np.vstack([fused_xyxy, box[None, :]])
        weighted_sum = np.vstack([weighted_sum, (box * score)[None, :]])
        score_sum.append(float(score))
        members.append(1)
        labels.append(int(label))
    counts = np.asarray(members, np.float64)
    scores = np.asarray(score_sum) / counts * np.minimum(counts, sources) / sources
    return Detections(fused_xyxy.astype(np.float32), scores.astype(np.float32), np.asarray(labels, np.int32))


def _merge_one_class(found: Detections, strategy: MergeStrategy, metric: MatchMetric, threshold: float) -> Detections:
    found = found.sorted_by_confidence()
    box_areas = areas(found.xyxy)
    remaining = np.arange(len(found))
    kept_xyxy, kept_index = [], []
    while remaining.size:
        best, rest = remaining[0], remaining[1:]
        overlap = overlaps(
            found.xyxy[best], found.xyxy[rest], metric, box_area=float(box_areas[best]), other_areas=box_areas[rest]
        )
        group = rest[overlap > threshold]
        rest = rest[overlap <= threshold]
        box = found.xyxy[best]
        if strategy is MergeStrategy.NMM and group.size:
            box, rest = _grow(found.xyxy, box_areas, best, group, rest, metric, threshold)
        kept_xyxy.append(box)
        kept_index.append(best)
        remaining = rest
    index = np.asarray(kept_index, np.intp)
    return Detections(np.asarray(kept_xyxy, np.float32).reshape(-1, 4), found.confidence[index], found.class_id[index])


def _enclosing(xyxy: FloatArray) -> FloatArray:
    return np.concatenate([xyxy[:, :2].min(axis=0), xyxy[:, 2:].max(axis=0)])


def _grow(
    xyxy: FloatArray,
    box_areas: FloatArray,
    best: int,
    group: npt.NDArray[np.intp],
    rest: npt.NDArray[np.intp],
    metric: MatchMetric,
    threshold: float,
) -> tuple[FloatArray, npt.NDArray[np.intp]]:
    """Merge ``group`` into ``best``, then re-check the rest once against the grown box.

    A piece of an object cut by a tile edge may miss the best-scoring piece yet lie inside
    the grown box; one re-check absorbs it without chaining through a dense crowd.
    """
    members = np.concatenate([[best], group])
    grown = _enclosing(xyxy[members])
    if rest.size:
        overlap = overlaps(grown, xyxy[rest], metric, other_areas=box_areas[rest])
        members = np.concatenate([members, rest[overlap > threshold]])
        rest = rest[overlap <= threshold]
    return _enclosing(xyxy[members]), rest
