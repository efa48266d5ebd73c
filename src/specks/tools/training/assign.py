"""SimOTA label assignment (YOLOX, arXiv:2107.08430) as pure tensor functions.

Anchors are the cells of a YOLOX head's stride 8, 16 and 32 grids, in the head's output order: level
by level, row-major inside a level (y, then x). Boxes are x1, y1, x2, y2 float32 in input pixels (the
letterboxed image the model sees). Nothing here holds state or touches a model: predictions come in
as detached tensors and an ``Assignment`` goes out.

Memory: the cost matrices are (G, N) for G ground-truth boxes and the N candidate anchors (those near
some gt), never (G, A, C), so A ~ 20,000 anchors with G ~ 500 boxes stays in the tens of MB.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

DEFAULT_STRIDES = (8, 16, 32)
IOU_COST_WEIGHT = 3.0  # YOLOX: cost = cls cost + 3 * IoU cost
OUTSIDE_BOTH_COST = 1e5  # YOLOX: an anchor not inside both the gt box and its centre region
IOU_EPS = 1e-8
BCE_LOG_CAP = 100.0  # torch's binary_cross_entropy clamps log() at -100; the class cost does the same


@dataclass(frozen=True)
class Assignment:
    """Which anchors of one image are foreground, and for which gt.

    fg_mask: (A,) bool, anchors that are foreground.
    matched_gt: (F,) int64, F = fg_mask.sum(): index of the gt each fg anchor predicts, in anchor order.
    matched_iou: (F,) float32: IoU of that anchor's predicted box with its gt.
    """

    fg_mask: Tensor
    matched_gt: Tensor
    matched_iou: Tensor

    def __post_init__(self) -> None:
        if self.fg_mask.dim() != 1 or self.fg_mask.dtype != torch.bool:
            raise ValueError(f"fg_mask must be (A,) bool, got {tuple(self.fg_mask.shape)} {self.fg_mask.dtype}")
        if self.matched_gt.shape != self.matched_iou.shape or self.matched_gt.dim() != 1:
            raise ValueError(
                f"matched_gt and matched_iou must both be (F,), got {tuple(self.matched_gt.shape)} "
                f"and {tuple(self.matched_iou.shape)}"
            )

    @classmethod
    def empty(cls, num_anchors: int, device: torch.device | str = "cpu") -> Assignment:
        """No foreground: every anchor is background (an image without gts)."""
        return cls(
            fg_mask=torch.zeros(num_anchors, dtype=torch.bool, device=device),
            matched_gt=torch.zeros(0, dtype=torch.int64, device=device),
            matched_iou=torch.zeros(0, dtype=torch.float32, device=device),
        )

    @property
    def fg_count(self) -> int:
        return int(self.matched_gt.numel())


def anchor_grid(input_hw: tuple[int, int], strides: Sequence[int] = DEFAULT_STRIDES) -> tuple[Tensor, Tensor]:
    """The anchor points of a YOLOX head for an input of ``input_hw`` (height, width) pixels.

    Returns (grid_xy, stride_px): grid_xy (A, 2) float32 holds each cell's integer x, y index on its
    level; stride_px (A,) float32 its level's stride. A = sum over strides of (H / s) * (W / s), in the
    head's order (levels in ``strides`` order, row-major inside a level). Both on the CPU.
    """
    height, width = input_hw
    largest = max(strides)
    if height % largest or width % largest:
        raise ValueError(f"input size {height}x{width} must be a multiple of the largest stride {largest}")
    grids, level_strides = [], []
    for stride in strides:
        ys, xs = torch.meshgrid(torch.arange(height // stride), torch.arange(width // stride), indexing="ij")
        grids.append(torch.stack((xs, ys), dim=-1).reshape(-1, 2).to(torch.float32))
        level_strides.append(torch.full((xs.numel(),), float(stride), dtype=torch.float32))
    return torch.cat(grids), torch.cat(level_strides)


def anchor_centers(grid_xy: Tensor, stride_px: Tensor) -> Tensor:
    """Centres (A, 2) of the anchor cells in input pixels: (grid + 0.5) * stride."""
    return (grid_xy + 0.5) * stride_px[:, None]


def decode_boxes(reg: Tensor, grid_xy: Tensor, stride_px: Tensor) -> Tensor:
    """Raw head regression (..., A, 4) = dx, dy, log_w, log_h -> boxes (..., A, 4) xyxy in input pixels.

    cx = (dx + grid_x) * stride, cy = (dy + grid_y) * stride, w = exp(log_w) * stride, likewise h.
    Differentiable; grid_xy (A, 2) and stride_px (A,) come from ``anchor_grid`` on reg's device.
    """
    stride = stride_px[:, None]
    center_xy = (reg[..., :2] + grid_xy) * stride
    half_wh = torch.exp(reg[..., 2:]) * stride / 2
    return torch.cat((center_xy - half_wh, center_xy + half_wh), dim=-1)


def paired_box_iou(a_xyxy: Tensor, b_xyxy: Tensor) -> Tensor:
    """IoU of boxes pairwise by position: (..., 4) with (..., 4), broadcast -> (...). Differentiable.

    Built from per-coordinate tensors, so broadcasting (N, 1, 4) against (1, M, 4) makes (N, M)
    intermediates only, never (N, M, 2).
    """
    ax1, ay1, ax2, ay2 = a_xyxy.unbind(-1)
    bx1, by1, bx2, by2 = b_xyxy.unbind(-1)
    inter_w = (torch.minimum(ax2, bx2) - torch.maximum(ax1, bx1)).clamp(min=0)
    inter_h = (torch.minimum(ay2, by2) - torch.maximum(ay1, by1)).clamp(min=0)
    inter = inter_w * inter_h
    area_a = (ax2 - ax1).clamp(min=0) * (ay2 - ay1).clamp(min=0)
    area_b = (bx2 - bx1).clamp(min=0) * (by2 - by1).clamp(min=0)
    return inter / (area_a + area_b - inter + IOU_EPS)


def box_iou(a_xyxy: Tensor, b_xyxy: Tensor) -> Tensor:
    """IoU matrix of boxes (N, 4) xyxy against (M, 4) xyxy -> (N, M), same frame and dtype."""
    return paired_box_iou(a_xyxy[:, None, :], b_xyxy[None, :, :])


def candidate_regions(
    centers_xy: Tensor, stride_px: Tensor, gt_xyxy: Tensor, center_radius: float
) -> tuple[Tensor, Tensor]:
    """Where each anchor centre lies relative to each gt -> (in_box, in_center), both (G, A) bool.

    in_box: the anchor centre (A, 2) is strictly inside the gt box (G, 4). in_center: it is within
    ``center_radius`` strides of the gt centre on both axes (a square, as in YOLOX), which gives even a
    gt smaller than a cell some anchors.
    """
    cx, cy = centers_xy[:, 0][None, :], centers_xy[:, 1][None, :]
    x1, y1, x2, y2 = (coord[:, None] for coord in gt_xyxy.unbind(-1))
    in_box = (cx > x1) & (cx < x2) & (cy > y1) & (cy < y2)
    radius = center_radius * stride_px[None, :]
    gt_cx, gt_cy = (x1 + x2) / 2, (y1 + y2) / 2
    in_center = ((cx - gt_cx).abs() < radius) & ((cy - gt_cy).abs() < radius)
    return in_box, in_center


def class_cost(pred_prob: Tensor, gt_class: Tensor) -> Tensor:
    """YOLOX's class cost: BCE of sqrt(pred_prob) against each gt's one-hot class, summed over classes.

    pred_prob (N, C) float32 = sigmoid(cls) * sigmoid(obj); gt_class (G,) int64 -> (G, N) float32.
    Computed as sum_c -log(1 - p_c) corrected at the gt's class, so no (G, N, C) tensor is made.
    """
    p = pred_prob.clamp(min=0).sqrt()
    neg_log_p = (-torch.log(p)).clamp(max=BCE_LOG_CAP)  # (N, C)
    neg_log_not_p = (-torch.log1p(-p)).clamp(max=BCE_LOG_CAP)  # (N, C)
    all_negative = neg_log_not_p.sum(dim=1)  # (N,): the cost if every class were a negative
    at_gt = (neg_log_p - neg_log_not_p).T[gt_class]  # (G, N): swap the gt class to a positive
    return all_negative[None, :] + at_gt


def dynamic_k(candidate_iou: Tensor, candidate_count: Tensor, candidate_topk: int) -> Tensor:
    """Anchors each gt takes: int(sum of its top-``candidate_topk`` IoUs), at least 1.

    candidate_iou (G, N) float32 is 0 off each gt's own candidates; candidate_count (G,) int64 caps k,
    so a gt never takes an anchor that is not its candidate. -> (G,) int64.
    """
    topk = min(candidate_topk, candidate_iou.shape[1])
    iou_sum = candidate_iou.topk(topk, dim=1).values.sum(dim=1)
    return torch.minimum(iou_sum.to(torch.int64).clamp(min=1), candidate_count)


def match_cheapest(cost: Tensor, k_per_gt: Tensor) -> Tensor:
    """Each gt (row of cost (G, N)) claims its ``k_per_gt`` (G,) cheapest anchors; an anchor claimed
    by several gts keeps only the cheapest. -> best_gt (N,) int64, -1 where no gt claimed the anchor."""
    num_gt, num_anchors = cost.shape
    k_max = int(k_per_gt.max())
    best_gt = torch.full((num_anchors,), -1, dtype=torch.int64, device=cost.device)
    if k_max == 0:
        return best_gt
    cheapest = cost.topk(k_max, dim=1, largest=False).indices  # (G, k_max)
    taken = torch.arange(k_max, device=cost.device)[None, :] < k_per_gt[:, None]
    rows = torch.arange(num_gt, device=cost.device)[:, None].expand_as(cheapest)
    claimed = torch.zeros_like(cost, dtype=torch.bool)
    claimed[rows[taken], cheapest[taken]] = True
    claimed_cost = cost.masked_fill(~claimed, float("inf"))
    return torch.where(claimed.any(dim=0), claimed_cost.argmin(dim=0), best_gt)


def simota_assign(
    pred_xyxy: Tensor,
    pred_prob: Tensor,
    grid_xy: Tensor,
    stride_px: Tensor,
    gt_xyxy: Tensor,
    gt_class: Tensor,
    *,
    center_radius: float = 2.5,
    candidate_topk: int = 10,
) -> Assignment:
    """SimOTA: assign the anchors of one image to its gts by a cost of class, IoU and geometry.

    pred_xyxy (A, 4) float32 decoded boxes and pred_prob (A, C) float32 = sigmoid(cls) * sigmoid(obj),
    both detached, input pixels; grid_xy (A, 2), stride_px (A,) from ``anchor_grid``; gt_xyxy (G, 4)
    float32 input pixels; gt_class (G,) int64. Candidates of a gt are anchors whose centre is inside
    its box or within ``center_radius`` strides of its centre; each gt takes its dynamic-k cheapest
    candidates (see ``dynamic_k`` and ``match_cheapest``). No gts -> an empty assignment.
    """
    with torch.no_grad():
        num_anchors = pred_xyxy.shape[0]
        if gt_xyxy.shape[0] == 0:
            return Assignment.empty(num_anchors, pred_xyxy.device)
        in_box, in_center = candidate_regions(anchor_centers(grid_xy, stride_px), stride_px, gt_xyxy, center_radius)
        # Restrict every (G, .) matrix to anchors that are a candidate of some gt, as YOLOX does.
        candidate_idx = (in_box | in_center).any(dim=0).nonzero().squeeze(1)  # (N,)
        in_box, in_center = in_box[:, candidate_idx], in_center[:, candidate_idx]
        own = in_box | in_center  # (G, N)
        iou = box_iou(gt_xyxy.float(), pred_xyxy[candidate_idx].float())  # (G, N)
        cost = (
            class_cost(pred_prob[candidate_idx].float(), gt_class)
            + IOU_COST_WEIGHT * -torch.log(iou + IOU_EPS)
            + OUTSIDE_BOTH_COST * (~(in_box & in_center)).float()
        ).masked_fill(~own, float("inf"))
        k_per_gt = dynamic_k(iou * own, own.sum(dim=1), candidate_topk)
        best_gt = match_cheapest(cost, k_per_gt)  # (N,)
        fg_candidate = best_gt >= 0
        fg_mask = torch.zeros(num_anchors, dtype=torch.bool, device=pred_xyxy.device)
        fg_mask[candidate_idx[fg_candidate]] = True
        matched_gt = best_gt[fg_candidate]
        matched_iou = iou[matched_gt, fg_candidate.nonzero().squeeze(1)]
        return Assignment(fg_mask=fg_mask, matched_gt=matched_gt, matched_iou=matched_iou)
