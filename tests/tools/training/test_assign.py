"""Tests of the anchor grid, box decoding and SimOTA assignment on hand-made boxes."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from torch import Tensor  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from specks.tools.training.assign import (  # noqa: E402
    Assignment,
    anchor_centers,
    anchor_grid,
    box_iou,
    class_cost,
    decode_boxes,
    dynamic_k,
    match_cheapest,
    simota_assign,
)

NUM_CLASSES = 3


def boxes(rows: list[list[float]]) -> Tensor:
    """(N, 4) float32 xyxy boxes from plain lists."""
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, 4)


def reg_for_box(box_xyxy: list[float], grid_xy: Tensor, stride: float) -> Tensor:
    """The raw (4,) regression that makes an anchor at ``grid_xy`` (2,) decode exactly to ``box_xyxy``."""
    x1, y1, x2, y2 = box_xyxy
    center = torch.tensor([(x1 + x2) / 2, (y1 + y2) / 2]) / stride - grid_xy
    log_wh = torch.log(torch.tensor([x2 - x1, y2 - y1]) / stride)
    return torch.cat((center, log_wh))


def anchor_index(grid_xy: Tensor, stride_px: Tensor, x: int, y: int, stride: int) -> int:
    hit = (grid_xy[:, 0] == x) & (grid_xy[:, 1] == y) & (stride_px == stride)
    return int(hit.nonzero().item())


def assign(
    input_hw: tuple[int, int],
    gt_rows: list[list[float]],
    gt_class: list[int],
    reg: Tensor | None = None,
    prob: Tensor | None = None,
) -> tuple[Assignment, Tensor, Tensor, Tensor]:
    """SimOTA on a grid of ``input_hw``; default predictions: stride-sized boxes, probability 0.25 -> (
    assignment, anchor centres (A, 2), stride_px (A,), pred_xyxy (A, 4))."""
    grid_xy, stride_px = anchor_grid(input_hw)
    reg = torch.zeros(len(grid_xy), 4) if reg is None else reg
    prob = torch.full((len(grid_xy), NUM_CLASSES), 0.25) if prob is None else prob
    pred_xyxy = decode_boxes(reg, grid_xy, stride_px)
    result = simota_assign(pred_xyxy, prob, grid_xy, stride_px, boxes(gt_rows), torch.tensor(gt_class))
    return result, anchor_centers(grid_xy, stride_px), stride_px, pred_xyxy


def near_gt(centers_xy: Tensor, stride_px: Tensor, gt_xyxy: Tensor, radius: float = 2.5) -> Tensor:
    """(F,) bool: each centre (F, 2) lies in its gt box (F, 4) or within ``radius`` strides of its centre."""
    inside = (centers_xy > gt_xyxy[:, :2]).all(1) & (centers_xy < gt_xyxy[:, 2:]).all(1)
    gt_center = (gt_xyxy[:, :2] + gt_xyxy[:, 2:]) / 2
    close = ((centers_xy - gt_center).abs() < radius * stride_px[:, None]).all(1)
    return inside | close


def test_anchor_grid_sizes_and_order() -> None:
    grid_xy, stride_px = anchor_grid((64, 96))
    assert grid_xy.shape == (8 * 12 + 4 * 6 + 2 * 3, 2) and stride_px.shape == (126,)
    assert grid_xy.dtype == stride_px.dtype == torch.float32
    # Level order 8, 16, 32; inside a level row-major: x runs fastest.
    assert grid_xy[0].tolist() == [0, 0] and grid_xy[1].tolist() == [1, 0] and grid_xy[12].tolist() == [0, 1]
    assert grid_xy[95].tolist() == [11, 7] and grid_xy[96].tolist() == [0, 0] and grid_xy[-1].tolist() == [2, 1]
    assert stride_px[:96].eq(8).all() and stride_px[96:120].eq(16).all() and stride_px[120:].eq(32).all()


def test_anchor_grid_rejects_size_not_multiple_of_32() -> None:
    with pytest.raises(ValueError, match="multiple of the largest stride 32"):
        anchor_grid((60, 96))


def test_decode_boxes_zeros_gives_stride_box_at_cell_and_scales_with_reg() -> None:
    grid_xy, stride_px = torch.tensor([[2.0, 3.0], [1.0, 0.0]]), torch.tensor([16.0, 8.0])
    reg = torch.tensor([[[0.0, 0.0, 0.0, 0.0], [0.5, 0.5, math.log(2.0), 0.0]]])  # (1, 2, 4)
    decoded = decode_boxes(reg, grid_xy, stride_px)
    assert decoded.shape == (1, 2, 4)
    # centre (2*16, 3*16), 16 px square; then centre (1.5*8, 0.5*8), 16 x 8 px.
    torch.testing.assert_close(decoded[0], boxes([[24, 40, 40, 56], [4, 0, 20, 8]]))


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ([0, 0, 2, 2], [0, 0, 2, 2], 1.0),
        ([0, 0, 2, 2], [1, 0, 3, 2], 2 / 6),
        ([0, 0, 4, 4], [1, 1, 3, 3], 4 / 16),
        ([0, 0, 2, 2], [2, 2, 4, 4], 0.0),  # touching corners
        ([0, 0, 2, 2], [5, 5, 9, 9], 0.0),
    ],
)
def test_box_iou_known_values(a: list[float], b: list[float], expected: float) -> None:
    assert box_iou(boxes([a]), boxes([b])).item() == pytest.approx(expected, abs=1e-6)


def test_box_iou_is_n_by_m() -> None:
    iou = box_iou(boxes([[0, 0, 2, 2], [0, 0, 4, 4]]), boxes([[0, 0, 2, 2], [1, 1, 3, 3], [8, 8, 9, 9]]))
    torch.testing.assert_close(iou, torch.tensor([[1.0, 1 / 7, 0.0], [0.25, 0.25, 0.0]]))


def test_class_cost_equals_bce_of_sqrt_prob_against_one_hot() -> None:
    generator = torch.Generator().manual_seed(0)
    prob = torch.rand(7, NUM_CLASSES, generator=generator)
    prob[0, 0] = 0.0  # log(0) is capped as in torch's BCE
    gt_class = torch.tensor([0, 2, 2, 1])
    target = F.one_hot(gt_class, NUM_CLASSES).float()[:, None, :].expand(4, 7, NUM_CLASSES)
    expected = F.binary_cross_entropy(prob.sqrt()[None].expand(4, 7, NUM_CLASSES), target, reduction="none").sum(-1)
    torch.testing.assert_close(class_cost(prob, gt_class), expected)


@pytest.mark.parametrize(
    ("topk", "counts", "expected"),
    [
        (10, [4, 4], [2, 1]),  # 0.9+0.8+0.7 = 2.4 -> 2; 0.2 -> at least 1
        (2, [4, 4], [1, 1]),  # only the top 2 count: 1.7 -> 1
        (10, [1, 4], [1, 1]),  # never more than the gt's own candidates
        (10, [4, 0], [2, 0]),  # a gt with no candidate takes nothing
    ],
)
def test_dynamic_k(topk: int, counts: list[int], expected: list[int]) -> None:
    iou = torch.tensor([[0.9, 0.8, 0.7, 0.0], [0.2, 0.0, 0.0, 0.0]])
    assert dynamic_k(iou, torch.tensor(counts), topk).tolist() == expected


def test_match_cheapest_gives_a_contested_anchor_to_the_cheaper_gt() -> None:
    cost = torch.tensor([[1.0, 2.0, 9.0, 5.0], [2.0, 1.0, 9.0, 0.5]])
    # gt 0 takes anchors 0, 1; gt 1 takes 3, 1 (k = 2 each): anchor 1 is cheaper for gt 1.
    assert match_cheapest(cost, torch.tensor([2, 2])).tolist() == [0, 1, -1, 1]
    assert match_cheapest(cost, torch.tensor([1, 0])).tolist() == [0, -1, -1, -1]


def test_single_gt_gets_foreground_anchors_near_it() -> None:
    gt = [[40.0, 40.0, 80.0, 72.0]]
    result, centers, stride_px, pred_xyxy = assign((128, 128), gt, [1])
    fg = result.fg_mask
    assert fg.shape == (len(centers),) and result.fg_count >= 1 and int(fg.sum()) == result.fg_count
    assert result.matched_gt.dtype == torch.int64 and result.matched_gt.eq(0).all()
    assert near_gt(centers[fg], stride_px[fg], boxes(gt).expand(result.fg_count, 4)).all()
    torch.testing.assert_close(result.matched_iou, box_iou(pred_xyxy[fg], boxes(gt))[:, 0])


@pytest.mark.parametrize("k", [1, 3, 5])
def test_dynamic_k_follows_perfect_predictions(k: int) -> None:
    gt = [40.0, 40.0, 80.0, 72.0]  # centre (60, 56)
    grid_xy, stride_px = anchor_grid((128, 128))
    reg = torch.zeros(len(grid_xy), 4)
    reg[:, 2:] = -10.0  # every other prediction is a speck: IoU ~ 0
    cells = [(7, 6), (7, 7), (6, 6), (8, 6), (6, 7)][:k]  # stride 8, inside the box and the centre region
    chosen = [anchor_index(grid_xy, stride_px, x, y, 8) for x, y in cells]
    for i in chosen:
        reg[i] = reg_for_box(gt, grid_xy[i], 8.0)
    result, *_ = assign((128, 128), [gt], [0], reg=reg)
    assert result.fg_mask.nonzero().squeeze(1).tolist() == sorted(chosen)
    torch.testing.assert_close(result.matched_iou, torch.ones(k), atol=1e-5, rtol=0)


def test_identical_gts_do_not_share_anchors_and_the_cheaper_class_wins() -> None:
    prob = torch.full((len(anchor_grid((128, 128))[0]), NUM_CLASSES), 0.01)
    prob[:, 0] = 0.9  # the model believes class 0: gt 0 is cheaper on every anchor
    gt = [[40.0, 40.0, 80.0, 72.0], [40.0, 40.0, 80.0, 72.0]]
    result, *_ = assign((128, 128), gt, [2, 0], prob=prob)
    assert result.fg_count >= 1 and result.matched_gt.eq(1).all()
    alone, *_ = assign((128, 128), gt[1:], [0], prob=prob)
    assert torch.equal(result.fg_mask, alone.fg_mask)  # gt 0 claimed the same anchors and lost them all


def test_overlapping_gts_split_anchors_one_gt_each() -> None:
    gt = [[16.0, 16.0, 64.0, 64.0], [40.0, 40.0, 96.0, 88.0]]
    result, centers, stride_px, _ = assign((128, 128), gt, [0, 1])
    assert int(result.fg_mask.sum()) == result.fg_count == len(result.matched_iou)
    assert set(result.matched_gt.tolist()) == {0, 1}
    fg = result.fg_mask
    assert near_gt(centers[fg], stride_px[fg], boxes(gt)[result.matched_gt]).all()


def test_no_gts_gives_empty_assignment() -> None:
    grid_xy, stride_px = anchor_grid((64, 64))
    result = simota_assign(
        torch.zeros(len(grid_xy), 4),
        torch.full((len(grid_xy), 2), 0.5),
        grid_xy,
        stride_px,
        torch.zeros(0, 4),
        torch.zeros(0, dtype=torch.int64),
    )
    assert result.fg_mask.shape == (len(grid_xy),) and not result.fg_mask.any()
    assert result.matched_gt.shape == (0,) and result.matched_gt.dtype == torch.int64
    assert result.matched_iou.shape == (0,) and result.matched_iou.dtype == torch.float32


def test_far_anchor_is_never_assigned_even_with_a_perfect_box() -> None:
    gt = [8.0, 8.0, 40.0, 40.0]
    grid_xy, stride_px = anchor_grid((256, 256))
    far = anchor_index(grid_xy, stride_px, 28, 28, 8)  # centre (228, 228)
    reg = torch.zeros(len(grid_xy), 4)
    reg[far] = reg_for_box(gt, grid_xy[far], 8.0)
    prob = torch.full((len(grid_xy), NUM_CLASSES), 0.05)
    prob[far] = 0.99
    result, centers, stride_px, _ = assign((256, 256), [gt], [0], reg=reg, prob=prob)
    assert not result.fg_mask[far] and result.fg_count >= 1
    fg = result.fg_mask
    assert near_gt(centers[fg], stride_px[fg], boxes([gt]).expand(result.fg_count, 4)).all()


def test_tiny_gt_gets_an_anchor_from_the_centre_radius() -> None:
    gt = [[30.0, 30.0, 34.0, 34.0]]  # 4 px, between anchor centres (28 and 36 at stride 8)
    result, centers, stride_px, _ = assign((64, 64), gt, [2])
    assert result.fg_count >= 1
    fg_centers = centers[result.fg_mask]
    assert not ((fg_centers > 30) & (fg_centers < 34)).all(1).any()  # none inside the box itself
    assert near_gt(fg_centers, stride_px[result.fg_mask], boxes(gt).expand(result.fg_count, 4)).all()


def test_many_gts_on_a_large_grid() -> None:
    """~21,500 anchors and 500 gts: the cost matrices stay (G, candidates)."""
    generator = torch.Generator().manual_seed(1)
    grid_xy, stride_px = anchor_grid((1024, 1024))
    top_left = torch.rand(500, 2, generator=generator) * 960
    gt_xyxy = torch.cat((top_left, top_left + 4 + torch.rand(500, 2, generator=generator) * 60), dim=1)
    gt_class = torch.randint(0, NUM_CLASSES, (500,), generator=generator)
    pred_xyxy = decode_boxes(torch.zeros(len(grid_xy), 4), grid_xy, stride_px)
    prob = torch.rand(len(grid_xy), NUM_CLASSES, generator=generator)
    result = simota_assign(pred_xyxy, prob, grid_xy, stride_px, gt_xyxy, gt_class)
    assert result.fg_count == int(result.fg_mask.sum()) and result.fg_count >= 250
    assert int(result.matched_gt.min()) >= 0 and int(result.matched_gt.max()) < 500
    fg = result.fg_mask
    assert near_gt(anchor_centers(grid_xy, stride_px)[fg], stride_px[fg], gt_xyxy[result.matched_gt]).all()
