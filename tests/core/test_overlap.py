"""Overlap maths: IoU, NMS and merging duplicates (specks.core.overlap)."""

from __future__ import annotations

import numpy as np
import pytest

from factories import boxes, classes, iou_matrix, scores
from specks.core import overlap as overlap_module
from specks.core.overlap import (
    SOFT_NMS_SIGMA,
    MatchMetric,
    MergeStrategy,
    batched_nms,
    batched_soft_nms,
    merge_detections,
    nms,
    overlaps,
    soft_nms,
)
from specks.core.types import Detections

NMS, NMM = MergeStrategy.NMS, MergeStrategy.NMM
IOU, IOS = MatchMetric.IOU, MatchMetric.IOS


def detections(rows: list[tuple[list[float], float, int]]) -> Detections:
    """Detections from (box, confidence, class id) rows."""
    if not rows:
        return Detections.empty()
    boxes, scores, classes = zip(*rows, strict=True)
    return Detections.from_arrays(boxes, scores, classes)


# -- geometry --------------------------------------------------------------------------------------


# step = round(tile * (1 - overlap)); the last tile is shifted inward to end at the border.
UNIT = [0, 0, 10, 10]


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        pytest.param(UNIT, UNIT, 1.0, id="identical"),
        pytest.param(UNIT, [20, 20, 30, 30], 0.0, id="disjoint"),
        pytest.param(UNIT, [10, 0, 20, 10], 0.0, id="touching-edges"),
        pytest.param(UNIT, [5, 0, 15, 10], 50 / 150, id="half-shifted"),
        pytest.param(UNIT, [0, 0, 5, 5], 25 / 100, id="contained"),
        pytest.param(UNIT, [0, 0, 10, 5], 0.5, id="top-half"),
        pytest.param([2.5, 2.5, 7.5, 7.5], [5, 5, 10, 10], 6.25 / 43.75, id="fractional"),
        pytest.param([5, 5, 5, 5], UNIT, 0.0, id="zero-area-inside"),
        pytest.param([5, 5, 5, 5], [5, 5, 5, 5], 0.0, id="zero-area-both"),
        pytest.param([10, 10, 0, 0], UNIT, 0.0, id="inverted"),
    ],
)
def test_iou_matrix_of_one_pair(a: list[float], b: list[float], expected: float) -> None:
    result = iou_matrix(boxes(a), boxes(b))

    assert result.shape == (1, 1)
    assert result.dtype == np.float32
    assert result[0, 0] == pytest.approx(expected, abs=1e-6)
    # IoU is symmetric.
    assert iou_matrix(boxes(b), boxes(a))[0, 0] == pytest.approx(expected, abs=1e-6)


def test_iou_matrix_pairs_every_box_of_a_with_every_box_of_b() -> None:
    a = boxes(UNIT, [5, 0, 15, 10])
    b = boxes(UNIT, [0, 0, 5, 5], [100, 100, 110, 110])

    expected = np.array([[1.0, 0.25, 0.0], [50 / 150, 0.0, 0.0]], np.float32)
    np.testing.assert_allclose(iou_matrix(a, b), expected, atol=1e-6)


@pytest.mark.parametrize(
    ("a", "b", "expected_shape"),
    [
        pytest.param(boxes(), boxes(UNIT, UNIT, UNIT), (0, 3), id="a-empty"),
        pytest.param(boxes(UNIT, UNIT), boxes(), (2, 0), id="b-empty"),
        pytest.param(boxes(), boxes(), (0, 0), id="both-empty"),
    ],
)
def test_iou_matrix_of_empty_arrays_has_an_empty_shape(a: np.ndarray, b: np.ndarray, expected_shape: tuple) -> None:
    assert iou_matrix(a, b).shape == expected_shape


CHAIN = boxes([0, 0, 10, 10], [5, 0, 15, 10], [10, 0, 20, 10])
# IoU of the first two is 90 / 110 = 0.82.
NEAR_DUPLICATES = boxes([0, 0, 10, 10], [1, 0, 11, 10])
FOUR_DISJOINT = boxes([0, 0, 1, 1], [10, 10, 11, 11], [20, 20, 21, 21], [30, 30, 31, 31])


@pytest.mark.parametrize(
    ("xyxy", "box_scores", "iou_threshold", "max_keep", "expected"),
    [
        pytest.param(boxes(), scores(), 0.5, None, [], id="empty"),
        pytest.param(boxes(UNIT), scores(0.1), 0.5, None, [0], id="single"),
        pytest.param(NEAR_DUPLICATES, scores(0.9, 0.8), 0.5, None, [0], id="duplicate-dropped"),
        pytest.param(NEAR_DUPLICATES, scores(0.8, 0.9), 0.5, None, [1], id="higher-score-wins"),
        pytest.param(NEAR_DUPLICATES, scores(0.9, 0.8), 0.9, None, [0, 1], id="below-threshold-kept"),
        pytest.param(boxes(UNIT, [0, 0, 10, 5]), scores(0.9, 0.8), 0.5, None, [0, 1], id="iou-equal-threshold-kept"),
        pytest.param(CHAIN, scores(0.9, 0.8, 0.7), 0.3, None, [0, 2], id="greedy-dropped-box-suppresses-nothing"),
        pytest.param(CHAIN, scores(0.9, 0.8, 0.7), 0.4, None, [0, 1, 2], id="chain-below-threshold"),
        pytest.param(FOUR_DISJOINT, scores(0.3, 0.9, 0.6, 0.1), 0.5, None, [1, 2, 0, 3], id="sorted-by-score"),
        pytest.param(FOUR_DISJOINT, scores(0.3, 0.9, 0.6, 0.1), 0.5, 2, [1, 2], id="max-keep"),
        pytest.param(FOUR_DISJOINT, scores(0.3, 0.9, 0.6, 0.1), 0.5, 0, [], id="max-keep-zero"),
        pytest.param(FOUR_DISJOINT, scores(0.5, 0.5, 0.5, 0.5), 0.5, None, [0, 1, 2, 3], id="ties-keep-index-order"),
        pytest.param(
            boxes([5, 5, 5, 5], [5, 5, 5, 5]),
            scores(0.9, 0.8),
            0.5,
            None,
            [0, 1],
            id="zero-area-never-overlap",
        ),
        pytest.param(
            boxes(UNIT, UNIT, [40, 40, 50, 50], [41, 40, 51, 50]),
            scores(0.6, 0.5, 0.8, 0.7),
            0.5,
            2,
            [2, 0],
            id="max-keep-counts-kept-boxes-only",
        ),
    ],
)
def test_nms(
    xyxy: np.ndarray, box_scores: np.ndarray, iou_threshold: float, max_keep: int | None, expected: list[int]
) -> None:
    keep = nms(xyxy, box_scores, iou_threshold, max_keep)

    assert keep.dtype == np.intp
    assert keep.tolist() == expected


@pytest.mark.parametrize(
    ("xyxy", "box_scores", "class_id", "max_keep", "expected"),
    [
        pytest.param(boxes(), scores(), classes(), None, [], id="empty"),
        pytest.param(boxes(UNIT, UNIT), scores(0.9, 0.8), classes(0, 0), None, [0], id="same-class-merged"),
        pytest.param(boxes(UNIT, UNIT), scores(0.8, 0.9), classes(3, 7), None, [1, 0], id="other-class-kept"),
        pytest.param(
            NEAR_DUPLICATES[[0, 1, 0]],
            scores(0.9, 0.8, 0.7),
            classes(0, 1, 0),
            None,
            [0, 1],
            id="mixed",
        ),
        pytest.param(
            boxes([-20, -20, -10, -10], [-20, -20, -10, -10], [-19, -20, -9, -10]),
            scores(0.9, 0.8, 0.7),
            classes(0, 1, 1),
            None,
            [0, 1],
            id="negative-coordinates",
        ),
        pytest.param(
            boxes(UNIT, UNIT, UNIT),
            scores(0.7, 0.9, 0.8),
            classes(0, 1, 2),
            2,
            [1, 2],
            id="max-keep",
        ),
    ],
)
def test_batched_nms_is_class_aware(
    xyxy: np.ndarray, box_scores: np.ndarray, class_id: np.ndarray, max_keep: int | None, expected: list[int]
) -> None:
    assert batched_nms(xyxy, box_scores, class_id, 0.5, max_keep).tolist() == expected


@pytest.mark.parametrize(
    ("metric", "expected"),
    [(IOU, [1.0, 50 / 150, 25 / 100, 0.0]), (IOS, [1.0, 0.5, 1.0, 0.0])],
)
def test_overlaps_of_one_box_with_many(metric: MatchMetric, expected: list[float]) -> None:
    others = boxes(UNIT, [5, 0, 15, 10], [0, 0, 5, 5], [20, 20, 30, 30])
    np.testing.assert_allclose(overlaps(boxes(UNIT)[0], others, metric), expected, atol=1e-6)


def test_overlaps_agrees_with_iou_matrix() -> None:
    rng = np.random.default_rng(3)
    corners = rng.uniform(0, 100, (20, 2)).astype(np.float32)
    xyxy = np.concatenate([corners, corners + rng.uniform(1, 40, (20, 2)).astype(np.float32)], axis=1)
    matrix = iou_matrix(xyxy, xyxy)
    for row in range(len(xyxy)):
        np.testing.assert_allclose(overlaps(xyxy[row], xyxy), matrix[row], atol=1e-6)


LEFT_HALF, RIGHT_HALF, WHOLE = [100, 100, 140, 160], [140, 100, 180, 160], [100, 100, 180, 160]

# Each row: input (box, confidence, class), strategy, metric, threshold, expected output rows, best first.
MERGE_CASES = {
    "cut at a tile edge + full-image box -> one union box (nmm, ios)": (
        [(LEFT_HALF, 0.7, 2), (RIGHT_HALF, 0.6, 2), (WHOLE, 0.8, 2)],
        NMM,
        IOS,
        0.5,
        [(WHOLE, 0.8, 2)],
    ),
    "halves of overlapping tiles, a half scoring best -> union box, best score (nmm, ios)": (
        [([500, 100, 640, 160], 0.9, 0), ([512, 100, 700, 160], 0.8, 0), ([505, 100, 690, 160], 0.6, 0)],
        NMM,
        IOS,
        0.5,
        [([500, 100, 700, 160], 0.9, 0)],
    ),
    "nmm grows the best box to the smallest box enclosing its group": (
        [([10, 10, 50, 50], 0.9, 1), ([5, 12, 48, 55], 0.5, 1)],
        NMM,
        IOU,
        0.5,
        [([5, 10, 50, 55], 0.9, 1)],
    ),
    "neighbours that touch and barely overlap stay two (nms, iou 0.5)": (
        [([0, 0, 40, 60], 0.9, 0), ([38, 0, 78, 60], 0.8, 0)],
        NMS,
        IOU,
        0.5,
        [([0, 0, 40, 60], 0.9, 0), ([38, 0, 78, 60], 0.8, 0)],
    ),
    "neighbours that touch stay two under nmm too": (
        [([0, 0, 40, 60], 0.9, 0), ([38, 0, 78, 60], 0.8, 0)],
        NMM,
        IOU,
        0.5,
        [([0, 0, 40, 60], 0.9, 0), ([38, 0, 78, 60], 0.8, 0)],
    ),
    "nms keeps the highest-scoring box unchanged": (
        [([12, 12, 52, 52], 0.7, 0), ([10, 10, 50, 50], 0.9, 0), ([11, 9, 51, 49], 0.8, 0)],
        NMS,
        IOU,
        0.5,
        [([10, 10, 50, 50], 0.9, 0)],
    ),
    "different classes never merge, even at threshold 0 (nmm)": (
        [(WHOLE, 0.9, 0), (WHOLE, 0.8, 1), (LEFT_HALF, 0.7, 2)],
        NMM,
        IOS,
        0.0,
        [(WHOLE, 0.9, 0), (WHOLE, 0.8, 1), (LEFT_HALF, 0.7, 2)],
    ),
    "different classes never merge (nms)": (
        [(WHOLE, 0.9, 3), (WHOLE, 0.8, 5)],
        NMS,
        IOU,
        0.0,
        [(WHOLE, 0.9, 3), (WHOLE, 0.8, 5)],
    ),
    "output sorted by confidence, separate boxes all kept": (
        [([0, 0, 10, 10], 0.3, 0), ([100, 0, 110, 10], 0.9, 0), ([200, 0, 210, 10], 0.6, 1)],
        NMS,
        IOU,
        0.5,
        [([100, 0, 110, 10], 0.9, 0), ([200, 0, 210, 10], 0.6, 1), ([0, 0, 10, 10], 0.3, 0)],
    ),
    "empty input": ([], NMM, IOS, 0.5, []),
}


@pytest.mark.parametrize(
    ("rows", "strategy", "metric", "threshold", "expected"), list(MERGE_CASES.values()), ids=list(MERGE_CASES)
)
def test_merge_detections(
    rows: list[tuple[list[float], float, int]],
    strategy: MergeStrategy,
    metric: MatchMetric,
    threshold: float,
    expected: list[tuple[list[float], float, int]],
) -> None:
    merged = merge_detections(detections(rows), strategy, metric, threshold)
    want = detections(expected)
    np.testing.assert_array_equal(merged.xyxy, want.xyxy)
    np.testing.assert_array_equal(merged.confidence, want.confidence)
    np.testing.assert_array_equal(merged.class_id, want.class_id)


# [0,0,20,10] vs [0,0,10,10]: IoU = 100/200 = 0.5, IoS = 100/100 = 1.
# [0,0,10,10] vs [5,0,25,10]: IoU = 50/250 = 0.2, IoS = 50/100 = 0.5.
WIDE_AND_INSIDE = [([0, 0, 20, 10], 0.9, 0), ([0, 0, 10, 10], 0.8, 0)]
HALF_SHIFTED = [([0, 0, 10, 10], 0.9, 0), ([5, 0, 25, 10], 0.8, 0)]


@pytest.mark.parametrize(
    ("rows", "metric", "threshold", "expected_count"),
    [
        (WIDE_AND_INSIDE, IOU, 0.5, 2),  # overlap exactly at the threshold: not merged
        (WIDE_AND_INSIDE, IOU, 0.49, 1),
        (WIDE_AND_INSIDE, IOS, 0.99, 1),
        (WIDE_AND_INSIDE, IOS, 1.0, 2),
        (HALF_SHIFTED, IOS, 0.5, 2),
        (HALF_SHIFTED, IOS, 0.49, 1),
        (HALF_SHIFTED, IOU, 0.2, 2),
        (HALF_SHIFTED, IOU, 0.19, 1),
        (HALF_SHIFTED, IOU, 0.49, 2),  # the metric matters: IoU 0.2 vs IoS 0.5
    ],
)
@pytest.mark.parametrize("strategy", [NMS, NMM])
def test_merge_happens_only_above_the_threshold(
    rows: list[tuple[list[float], float, int]],
    metric: MatchMetric,
    threshold: float,
    expected_count: int,
    strategy: MergeStrategy,
) -> None:
    merged = merge_detections(detections(rows), strategy, metric, threshold)
    assert len(merged) == expected_count
    assert merged.confidence[0] == np.float32(0.9)


# A piece of a cut object that misses the best piece but lies inside the grown box is absorbed.
CUT_LEFT, CUT_RIGHT, CUT_WHOLE = [100, 100, 140, 160], [140, 100, 180, 160], [100, 100, 180, 160]
# A car 700 px wide across tiles [0, 640] and [512, 1152]: pieces overlap by IoS 128/340 = 0.38.
BIG_LEFT, BIG_RIGHT, BIG_WHOLE = [300, 0, 640, 100], [512, 0, 1000, 100], [300, 0, 1000, 100]


@pytest.mark.parametrize(
    ("boxes", "scores", "expected_box"),
    [
        ([CUT_LEFT, CUT_RIGHT, CUT_WHOLE], [0.8, 0.7, 0.9], CUT_WHOLE),  # the full-image box scores best
        ([CUT_LEFT, CUT_RIGHT, CUT_WHOLE], [0.9, 0.8, 0.6], CUT_WHOLE),  # the right piece lies inside the grown box
        ([BIG_LEFT, BIG_RIGHT, BIG_WHOLE], [0.9, 0.8, 0.6], BIG_WHOLE),  # likewise, for a 700 px object
    ],
)
def test_nmm_ios_merges_every_piece_of_a_cut_object(boxes, scores, expected_box) -> None:
    found = Detections.from_arrays(boxes, scores, [2] * len(boxes))
    merged = merge_detections(found, MergeStrategy.NMM, MatchMetric.IOS, 0.5)
    np.testing.assert_array_equal(merged.xyxy, np.array([expected_box], np.float32))
    assert merged.confidence.tolist() == [pytest.approx(max(scores))]


# Two 4 px boxes 0.3 px apart near (8000, 8000): IoU = 14.8 / 17.2 = 0.8605.
NEAR_8000 = [[7996.0, 7996.0, 8000.0, 8000.0], [7996.3, 7996.0, 8000.3, 8000.0]]


@pytest.mark.parametrize(("threshold", "expected_count"), [(0.855, 1), (0.865, 2)])
@pytest.mark.parametrize("class_id", [0, 79])
def test_merge_decides_the_same_for_every_class_far_from_the_origin(
    class_id: int, threshold: float, expected_count: int
) -> None:
    found = Detections.from_arrays(NEAR_8000, [0.9, 0.8], [class_id, class_id])
    merged = merge_detections(found, MergeStrategy.NMS, MatchMetric.IOU, threshold)
    assert len(merged) == expected_count


# -- soft-NMS and weighted box fusion ---------------------------------------------------------------


def test_soft_nms_decays_an_overlapping_box_instead_of_dropping_it() -> None:
    xyxy = boxes(UNIT, [1, 0, 11, 10], [50, 50, 60, 60])
    iou = 9 * 10 / (2 * 100 - 90)
    keep, decayed = soft_nms(xyxy, scores(0.9, 0.8, 0.7), score_threshold=0.01)
    assert keep.tolist() == [0, 2, 1]  # the disjoint box keeps 0.7 and now outranks the decayed one
    np.testing.assert_allclose(decayed, [0.9, 0.7, 0.8 * np.exp(-(iou**2) / SOFT_NMS_SIGMA)], rtol=1e-5)
    assert nms(xyxy, scores(0.9, 0.8, 0.7), 0.5).tolist() == [0, 2]  # hard NMS drops it


def test_soft_nms_drops_boxes_that_decay_below_the_threshold() -> None:
    keep, _ = soft_nms(boxes(UNIT, UNIT), scores(0.9, 0.5), score_threshold=0.25)
    assert keep.tolist() == [0]  # identical boxes: 0.5 * exp(-2) = 0.07


def test_batched_soft_nms_keeps_classes_apart_and_caps_the_count() -> None:
    found = detections([(UNIT, 0.9, 0), (UNIT, 0.8, 1), ([1, 0, 11, 10], 0.7, 0)])
    kept = batched_soft_nms(found, 0.01, max_keep=2)
    assert kept.class_id.tolist() == [0, 1]  # the same box in another class is untouched
    assert kept.confidence.tolist() == pytest.approx([0.9, 0.8])


def test_wbf_fuses_a_group_into_its_score_weighted_mean_box() -> None:
    found = detections([([0, 0, 10, 10], 0.9, 0), ([2, 0, 12, 10], 0.3, 0), ([50, 50, 60, 60], 0.6, 0)])
    fused = merge_detections(found, MergeStrategy.WBF, IOU, 0.5, sources=2)
    assert len(fused) == 2
    np.testing.assert_allclose(fused.xyxy[0], [0.5, 0, 10.5, 10], atol=1e-5)  # (0.9 * 0 + 0.3 * 2) / 1.2
    # Found by both passes: the mean score; found by one of two: half of it.
    np.testing.assert_allclose(fused.confidence, [0.6, 0.3], atol=1e-6)


@pytest.mark.parametrize("strategy", list(MergeStrategy))
def test_class_agnostic_merging_fuses_across_classes_into_the_best_boxs_class(strategy: MergeStrategy) -> None:
    found = detections([(UNIT, 0.8, 0), (UNIT, 0.9, 1), ([50, 50, 60, 60], 0.7, 0)])
    merged = merge_detections(found, strategy, IOU, 0.5, sources=1, class_agnostic=True)
    assert merged.class_id.tolist() == [1, 0]  # one box per object; the group's best says its class
    assert merge_detections(found, strategy, IOU, 0.5, sources=1).class_id.tolist() == [1, 0, 0]


def test_wbf_never_fuses_across_classes() -> None:
    found = detections([(UNIT, 0.9, 0), (UNIT, 0.8, 1)])
    fused = merge_detections(found, MergeStrategy.WBF, IOU, 0.5, sources=1)
    assert sorted(fused.class_id.tolist()) == [0, 1]
    np.testing.assert_allclose(sorted(fused.confidence.tolist()), [0.8, 0.9], atol=1e-6)


# -- bounded and vectorised: the same answers as the plain loops, at a bounded cost ----------------------------
#
# The loops below are the merges as they were written before they were vectorised (one ``overlaps`` call
# per kept box, a growing stack of WBF clusters): the reference every faster path must match exactly.


def reference_nms(xyxy: np.ndarray, box_scores: np.ndarray, threshold: float, metric: MatchMetric = IOU) -> list[int]:
    order = np.argsort(-box_scores, kind="stable")
    keep = []
    while order.size:
        keep.append(int(order[0]))
        overlap = overlaps(xyxy[order[0]], xyxy[order[1:]], metric)
        order = order[1:][overlap <= threshold]
    return keep


def reference_soft_nms(
    xyxy: np.ndarray, box_scores: np.ndarray, score_threshold: float
) -> tuple[list[int], list[float]]:
    remaining, current, kept, kept_scores = np.arange(len(xyxy)), box_scores.astype(np.float32).copy(), [], []
    while remaining.size:
        slot = int(np.argmax(current[remaining]))
        best = remaining[slot]
        kept.append(int(best))
        kept_scores.append(float(current[best]))
        remaining = np.delete(remaining, slot)
        current[remaining] *= np.exp(-(overlaps(xyxy[best], xyxy[remaining]) ** 2) / SOFT_NMS_SIGMA)
        remaining = remaining[current[remaining] > score_threshold]
    return kept, kept_scores


def reference_wbf(found: Detections, metric: MatchMetric, threshold: float, sources: int) -> Detections:
    found = found.sorted_by_confidence()
    fused, weighted, score_sum, members, labels = np.zeros((0, 4), np.float32), np.zeros((0, 4)), [], [], []
    for box, score, label in zip(found.xyxy, found.confidence.astype(np.float64), found.class_id, strict=True):
        overlap = overlaps(box, fused, metric) if len(fused) else np.zeros(0)
        if overlap.size and overlap.max() > threshold:
            target = int(np.argmax(overlap))
            weighted[target] += box * score
            score_sum[target] += score
            members[target] += 1
            fused[target] = weighted[target] / score_sum[target]
            continue
        fused, weighted = np.vstack([fused, box[None]]), np.vstack([weighted, (box * score)[None]])
        score_sum.append(float(score))
        members.append(1)
        labels.append(int(label))
    counts = np.asarray(members, np.float64)
    fused_scores = np.asarray(score_sum) / counts * np.minimum(counts, sources) / sources
    return Detections(fused, fused_scores.astype(np.float32), np.asarray(labels, np.int32))


def reference_merge(
    found: Detections, strategy: MergeStrategy, metric: MatchMetric, threshold: float, sources: int, agnostic: bool
) -> Detections:
    groups = [found] if agnostic else [found[found.class_id == label] for label in np.unique(found.class_id)]
    merged = []
    for group in groups:
        if strategy is MergeStrategy.WBF:
            merged.append(reference_wbf(group, metric, threshold, sources))
            continue
        group = group.sorted_by_confidence()
        remaining, kept_xyxy, kept_index = np.arange(len(group)), [], []
        while remaining.size:
            best, rest = remaining[0], remaining[1:]
            overlap = overlaps(group.xyxy[best], group.xyxy[rest], metric)
            members, rest = rest[overlap > threshold], rest[overlap <= threshold]
            box = group.xyxy[best]
            if strategy is NMM and members.size:
                members = np.concatenate([[best], members])
                grown = np.concatenate([group.xyxy[members, :2].min(axis=0), group.xyxy[members, 2:].max(axis=0)])
                absorbed = overlaps(grown, group.xyxy[rest], metric) > threshold
                members, rest = np.concatenate([members, rest[absorbed]]), rest[~absorbed]
                box = np.concatenate([group.xyxy[members, :2].min(axis=0), group.xyxy[members, 2:].max(axis=0)])
            kept_xyxy.append(box)
            kept_index.append(best)
            remaining = rest
        index = np.asarray(kept_index, np.intp)
        kept = np.asarray(kept_xyxy, np.float32).reshape(-1, 4)
        merged.append(Detections(kept, group.confidence[index], group.class_id[index]))
    return Detections.concat(merged).sorted_by_confidence()


def tile_like_detections(objects: int, seed: int, *, classes_count: int = 3) -> Detections:
    """Objects seen 1-4 times each with a few pixels of jitter (as tiles and passes see them), plus
    as many lone boxes, over a 3200x3200 image."""
    rng = np.random.default_rng(seed)
    corner = rng.uniform(0, 3000, (objects, 2))
    size = rng.uniform(4, 200, (objects, 2))
    copies = rng.integers(1, 5, objects)
    centre = np.repeat(corner, copies, axis=0) + rng.normal(0, 2, (copies.sum(), 2))
    wh = np.repeat(size, copies, axis=0) * rng.uniform(0.9, 1.1, (copies.sum(), 2))
    lone_corner, lone_wh = rng.uniform(0, 3000, (objects, 2)), rng.uniform(4, 200, (objects, 2))
    xyxy = np.concatenate([np.hstack([centre, centre + wh]), np.hstack([lone_corner, lone_corner + lone_wh])])
    labels = np.concatenate(
        [np.repeat(rng.integers(0, classes_count, objects), copies), rng.integers(0, classes_count, objects)]
    )
    return Detections.from_arrays(xyxy, rng.uniform(0.01, 1, len(xyxy)), labels)


def assert_same_detections(found: Detections, expected: Detections) -> None:
    np.testing.assert_array_equal(found.xyxy, expected.xyxy)
    np.testing.assert_array_equal(found.confidence, expected.confidence)
    np.testing.assert_array_equal(found.class_id, expected.class_id)


@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.55, 0.9, 1.0])
@pytest.mark.parametrize("metric", [IOU, IOS])
@pytest.mark.parametrize("strategy", list(MergeStrategy))
@pytest.mark.parametrize("agnostic", [False, True])
def test_merges_match_the_plain_loops(
    strategy: MergeStrategy, metric: MatchMetric, threshold: float, agnostic: bool
) -> None:
    found = tile_like_detections(120, seed=int(threshold * 100))
    merged = merge_detections(found, strategy, metric, threshold, sources=2, class_agnostic=agnostic)
    assert_same_detections(merged, reference_merge(found, strategy, metric, threshold, 2, agnostic))


@pytest.mark.parametrize("strategy", list(MergeStrategy))
def test_max_keep_cuts_a_merge_where_the_whole_merge_would_be_cut(strategy: MergeStrategy) -> None:
    found = tile_like_detections(150, seed=7)
    whole = merge_detections(found, strategy, IOU, 0.5, sources=2)
    assert_same_detections(merge_detections(found, strategy, IOU, 0.5, sources=2, max_keep=40), whole[:40])


@pytest.mark.parametrize(("cap", "expected_scores"), [(4, [0.9, 0.8, 0.7, 0.6]), (3, [0.9, 0.8, 0.7])])
@pytest.mark.parametrize("strategy", list(MergeStrategy))
def test_only_the_most_confident_boxes_enter_a_merge(
    strategy: MergeStrategy, cap: int, expected_scores: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(overlap_module, "MAX_MERGE_BOXES", cap)
    found = detections([(FOUR_DISJOINT[i].tolist(), s, 0) for i, s in enumerate([0.6, 0.9, 0.7, 0.8])])
    merged = merge_detections(found, strategy, IOU, 0.5)
    assert merged.confidence.tolist() == pytest.approx(expected_scores)


@pytest.mark.parametrize("strategy", list(MergeStrategy))
def test_at_threshold_one_nothing_merges_even_identical_boxes(strategy: MergeStrategy) -> None:
    found = detections([(UNIT, 0.9, 0), (UNIT, 0.8, 0), ([0, 0, 10, 5], 0.7, 0)])
    merged = merge_detections(found, strategy, IOS, 1.0, sources=2)
    np.testing.assert_array_equal(merged.xyxy, found.xyxy)
    expected = [0.45, 0.4, 0.35] if strategy is MergeStrategy.WBF else [0.9, 0.8, 0.7]  # alone: 1 of 2 sources
    np.testing.assert_allclose(merged.confidence, expected, rtol=1e-6)


@pytest.mark.parametrize("iou_threshold", [0.0, 0.45, 0.7, 0.99, 1.0])
def test_blocked_nms_matches_the_plain_loop_across_blocks_and_chunks(
    iou_threshold: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(overlap_module, "NMS_CHUNK", 100)  # several chunks of later boxes per block
    found = tile_like_detections(300, seed=3)  # ~1,050 boxes: five blocks of NMS_BLOCK
    assert len(found) > 4 * overlap_module.NMS_BLOCK
    expected = reference_nms(found.xyxy, found.confidence, iou_threshold)
    assert nms(found.xyxy, found.confidence, iou_threshold).tolist() == expected
    assert nms(found.xyxy, found.confidence, iou_threshold, max_keep=300).tolist() == expected[:300]


@pytest.mark.parametrize("score_threshold", [0.0, 0.01, 0.3])
def test_soft_nms_matches_the_plain_loop(score_threshold: float) -> None:
    found = tile_like_detections(60, seed=5)
    expected_keep, expected_scores = reference_soft_nms(found.xyxy, found.confidence, score_threshold)
    keep, decayed = soft_nms(found.xyxy, found.confidence, score_threshold)
    assert keep.tolist() == expected_keep and decayed.tolist() == pytest.approx(expected_scores, abs=0)
    keep, decayed = soft_nms(found.xyxy, found.confidence, score_threshold, max_keep=20)
    assert keep.tolist() == expected_keep[:20]
