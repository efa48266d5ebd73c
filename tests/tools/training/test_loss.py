"""Tests of the YOLOX loss on hand-made boxes and head outputs."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from torch import Tensor  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from specks.tools.training.assign import Assignment, anchor_centers, anchor_grid, box_iou, decode_boxes, simota_assign  # noqa: E402
from specks.tools.training.loss import LossParts, Targets, yolox_loss  # noqa: E402

INPUT_HW = (64, 64)
NUM_CLASSES = 2
GT = [14.0, 18.0, 46.0, 42.0]  # 32 x 24 px, centre (30, 30)
GT_CLASS = 1


def targets(gt_rows: list[list[float]], gt_class: list[int], ignore_rows: list[list[float]] | None = None) -> Targets:
    return Targets(
        gt_xyxy=torch.tensor(gt_rows, dtype=torch.float32).reshape(-1, 4),
        gt_class=torch.tensor(gt_class, dtype=torch.int64),
        ignore_xyxy=torch.tensor(ignore_rows or [], dtype=torch.float32).reshape(-1, 4),
    )


def outputs(num_anchors: int, batch: int = 1, seed: int = 0, scale: float = 0.1) -> tuple[Tensor, Tensor, Tensor]:
    """Small random head outputs: reg (B, A, 4), obj_logit (B, A), cls_logit (B, A, C)."""
    generator = torch.Generator().manual_seed(seed)
    return (
        torch.randn(batch, num_anchors, 4, generator=generator) * scale,
        torch.randn(batch, num_anchors, generator=generator) * scale,
        torch.randn(batch, num_anchors, NUM_CLASSES, generator=generator) * scale,
    )


def loss(reg: Tensor, obj: Tensor, cls: Tensor, batch_targets: list[Targets]) -> LossParts:
    grid_xy, stride_px = anchor_grid(INPUT_HW)
    return yolox_loss(reg, obj, cls, batch_targets, grid_xy, stride_px)


def perfect_outputs() -> tuple[Tensor, Tensor, Tensor, list[int]]:
    """Three stride-8 anchors in the gt's centre predict it exactly and confidently; the rest predict
    specks with low confidence. -> reg, obj_logit, cls_logit (batch 1) and the chosen anchor indices."""
    grid_xy, stride_px = anchor_grid(INPUT_HW)
    reg = torch.zeros(1, len(grid_xy), 4)
    reg[..., 2:] = -6.0
    obj = torch.full((1, len(grid_xy)), -8.0)
    cls = torch.full((1, len(grid_xy), NUM_CLASSES), -8.0)
    chosen = [3 * 8 + 3, 3 * 8 + 4, 4 * 8 + 3]  # cells (3, 3), (4, 3), (3, 4): centres 28 or 36
    x1, y1, x2, y2 = GT
    for i in chosen:
        center = torch.tensor([(x1 + x2) / 2, (y1 + y2) / 2]) / 8 - grid_xy[i]
        reg[0, i] = torch.cat((center, torch.log(torch.tensor([x2 - x1, y2 - y1]) / 8)))
        obj[0, i] = 8.0
        cls[0, i, GT_CLASS] = 8.0
    return reg, obj, cls, chosen


def test_perfect_predictions_cost_less_than_perturbed_ones() -> None:
    reg, obj, cls, _ = perfect_outputs()
    perfect = loss(reg, obj, cls, [targets([GT], [GT_CLASS])])
    assert perfect.fg_count == 3 and perfect.iou.item() < 1e-4 and perfect.total.item() < 0.1
    noise = torch.randn(reg.shape, generator=torch.Generator().manual_seed(0)) * 0.3
    perturbed = loss(reg + noise, obj, cls, [targets([GT], [GT_CLASS])])
    assert perturbed.iou > perfect.iou + 0.1 and perturbed.total > perfect.total + 0.1
    wrong_class = loss(reg, obj, cls.flip(-1), [targets([GT], [GT_CLASS])])
    assert wrong_class.cls > perfect.cls + 1.0


def test_parts_add_up_and_are_detached() -> None:
    reg, obj, cls = (t.requires_grad_() for t in outputs(84))
    parts = loss(reg, obj, cls, [targets([GT], [GT_CLASS])])
    assert parts.total.requires_grad and not (parts.iou.requires_grad or parts.obj.requires_grad)
    assert parts.total.item() == pytest.approx((parts.iou + parts.obj + parts.cls).item(), rel=1e-6)
    plain = yolox_loss(reg, obj, cls, [targets([GT], [GT_CLASS])], *anchor_grid(INPUT_HW), reg_weight=1.0)
    assert parts.iou.item() == pytest.approx(5.0 * plain.iou.item(), rel=1e-5)


def test_gradients_reach_all_three_outputs() -> None:
    reg, obj, cls = (t.requires_grad_() for t in outputs(84, batch=2))
    parts = loss(reg, obj, cls, [targets([GT], [GT_CLASS]), targets([], [])])
    parts.total.backward()
    for tensor in (reg, obj, cls):
        assert tensor.grad is not None and torch.isfinite(tensor.grad).all() and tensor.grad.abs().sum() > 0
    assert reg.grad is not None and reg.grad[1].eq(0).all()  # the image without gts has no box loss


def test_ignore_region_removes_objectness_loss_of_a_confident_wrong_prediction() -> None:
    reg, obj, cls = outputs(84)
    grid_xy, stride_px = anchor_grid(INPUT_HW)
    far = 7 * 8 + 7  # stride-8 cell (7, 7), centre (60, 60): far from the gt
    obj[0, far] = 6.0
    without = loss(reg, obj, cls, [targets([GT], [GT_CLASS])])
    with_ignore = loss(reg, obj, cls, [targets([GT], [GT_CLASS], [[56.0, 56.0, 64.0, 64.0]])])
    expected_drop = F.binary_cross_entropy_with_logits(obj[0, far], torch.tensor(0.0)).item() / without.fg_count
    assert with_ignore.obj.item() == pytest.approx(without.obj.item() - expected_drop, rel=1e-5)
    assert with_ignore.iou == without.iou and with_ignore.cls == without.cls


def assignment_for(reg: Tensor, obj: Tensor, cls: Tensor) -> Assignment:
    """SimOTA of image 0 of the outputs against the one gt, as yolox_loss runs it."""
    grid_xy, stride_px = anchor_grid(INPUT_HW)
    pred_prob = cls[0].sigmoid() * obj[0].sigmoid()[:, None]
    pred_xyxy = decode_boxes(reg[0], grid_xy, stride_px)
    return simota_assign(pred_xyxy, pred_prob, grid_xy, stride_px, torch.tensor([GT]), torch.tensor([GT_CLASS]))


def test_ignore_region_keeps_objectness_loss_of_foreground_anchors() -> None:
    reg, obj, cls = outputs(84)
    parts = loss(reg, obj, cls, [targets([GT], [GT_CLASS], [[0.0, 0.0, 64.0, 64.0]])])
    fg = assignment_for(reg, obj, cls).fg_mask
    expected = F.binary_cross_entropy_with_logits(obj[0, fg], torch.ones(int(fg.sum())), reduction="sum")
    assert parts.fg_count == int(fg.sum()) >= 1
    assert parts.obj.item() == pytest.approx(expected.item() / parts.fg_count, rel=1e-5)


def test_class_target_is_one_hot_scaled_by_iou() -> None:
    reg, obj, cls = outputs(84)
    parts = loss(reg, obj, cls, [targets([GT], [GT_CLASS])])
    assignment = assignment_for(reg, obj, cls)
    assert 0.05 < float(assignment.matched_iou.max()) < 0.9  # stride-sized boxes: partial overlaps
    target = torch.zeros(assignment.fg_count, NUM_CLASSES)
    target[:, GT_CLASS] = assignment.matched_iou
    expected = F.binary_cross_entropy_with_logits(cls[0, assignment.fg_mask], target, reduction="sum")
    assert parts.cls.item() == pytest.approx(expected.item() / assignment.fg_count, rel=1e-5)


def test_image_without_gts_gives_objectness_only() -> None:
    reg, obj, cls = outputs(84, scale=1.0)
    parts = loss(reg, obj, cls, [targets([], [])])
    assert parts.fg_count == 0 and parts.iou.item() == 0.0 and parts.cls.item() == 0.0
    expected = F.binary_cross_entropy_with_logits(obj[0], torch.zeros(84), reduction="sum")
    assert parts.obj.item() == pytest.approx(expected.item(), rel=1e-5)  # divided by max(0, 1)
    ignore = [[0.0, 0.0, 32.0, 64.0]]  # the left half
    halved = loss(reg, obj, cls, [targets([], [], ignore)])
    right = anchor_centers(*anchor_grid(INPUT_HW))[:, 0] > 32
    expected_right = F.binary_cross_entropy_with_logits(obj[0, right], torch.zeros(int(right.sum())), reduction="sum")
    assert halved.obj.item() == pytest.approx(expected_right.item(), rel=1e-5)


def test_rejects_a_batch_and_targets_of_different_lengths() -> None:
    reg, obj, cls = outputs(84, batch=2)
    with pytest.raises(ValueError, match="2 images"):
        loss(reg, obj, cls, [targets([GT], [GT_CLASS])])


def test_targets_check_shapes() -> None:
    with pytest.raises(ValueError, match="gt_class"):
        Targets(torch.zeros(2, 4), torch.zeros(3, dtype=torch.int64), torch.zeros(0, 4))


def test_a_short_optimisation_learns_the_box() -> None:
    grid_xy, stride_px = anchor_grid(INPUT_HW)
    reg = torch.zeros(1, len(grid_xy), 4, requires_grad=True)
    obj = torch.zeros(1, len(grid_xy), requires_grad=True)
    cls = torch.zeros(1, len(grid_xy), NUM_CLASSES, requires_grad=True)
    optimizer = torch.optim.Adam([reg, obj, cls], lr=0.05)
    batch_targets = [targets([GT], [GT_CLASS])]
    first = math.inf
    for step in range(200):
        optimizer.zero_grad()
        parts = yolox_loss(reg, obj, cls, batch_targets, grid_xy, stride_px)
        parts.total.backward()
        optimizer.step()
        first = parts.total.item() if step == 0 else first
    assert parts.total.item() < 0.25 * first
    with torch.no_grad():
        score = obj[0].sigmoid() * cls[0, :, GT_CLASS].sigmoid()
        best_xyxy = decode_boxes(reg[0], grid_xy, stride_px)[score.argmax()]
        assert box_iou(best_xyxy[None], torch.tensor([GT])).item() > 0.7
