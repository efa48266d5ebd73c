"""The YOLOX loss (arXiv:2107.08430): SimOTA-assigned IoU, objectness and class terms.

The model's raw outputs for a batch of B images over A anchors (see ``assign.anchor_grid`` for the
anchor order): reg (B, A, 4) = dx, dy, log_w, log_h; obj_logit (B, A); cls_logit (B, A, C). Targets
are in input pixels (the letterboxed frame the model sees). Each term is summed over its anchors and
divided by the batch's foreground count, as YOLOX does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .assign import anchor_centers, decode_boxes, paired_box_iou, simota_assign


@dataclass(frozen=True)
class Targets:
    """One image's ground truth in input pixels.

    gt_xyxy (G, 4) float32; gt_class (G,) int64; ignore_xyxy (M, 4) float32: regions where no
    objectness loss applies to anchors whose centre is inside and that are not foreground (crowds,
    boxes cut by a crop, unlabelled areas).
    """

    gt_xyxy: Tensor
    gt_class: Tensor
    ignore_xyxy: Tensor

    def __post_init__(self) -> None:
        if self.gt_xyxy.dim() != 2 or self.gt_xyxy.shape[1] != 4:
            raise ValueError(f"gt_xyxy must be (G, 4), got {tuple(self.gt_xyxy.shape)}")
        if self.gt_class.shape != self.gt_xyxy.shape[:1]:
            raise ValueError(f"gt_class must be (G,) = ({self.gt_xyxy.shape[0]},), got {tuple(self.gt_class.shape)}")
        if self.ignore_xyxy.dim() != 2 or self.ignore_xyxy.shape[1] != 4:
            raise ValueError(f"ignore_xyxy must be (M, 4), got {tuple(self.ignore_xyxy.shape)}")


@dataclass(frozen=True)
class LossParts:
    """A batch's loss. total: scalar, differentiable. iou, obj, cls: detached scalars as weighted in
    total (total = iou + obj + cls), for logging. fg_count: foreground anchors over the batch."""

    total: Tensor
    iou: Tensor
    obj: Tensor
    cls: Tensor
    fg_count: int


@dataclass(frozen=True)
class _ImageSums:
    """One image's unnormalised loss sums (scalars, differentiable) and its foreground count."""

    iou: Tensor
    obj: Tensor
    cls: Tensor
    fg_count: int


def in_regions(centers_xy: Tensor, regions_xyxy: Tensor) -> Tensor:
    """Whether each point (A, 2) lies strictly inside any of the regions (M, 4) xyxy -> (A,) bool."""
    x, y = centers_xy[:, 0:1], centers_xy[:, 1:2]
    x1, y1, x2, y2 = (coord[None, :] for coord in regions_xyxy.unbind(-1))
    return ((x > x1) & (x < x2) & (y > y1) & (y < y2)).any(dim=1)


def _image_sums(
    pred_xyxy: Tensor, obj_logit: Tensor, cls_logit: Tensor, target: Targets, grid_xy: Tensor, stride_px: Tensor
) -> _ImageSums:
    """Loss sums of one image: pred_xyxy (A, 4) decoded, obj_logit (A,), cls_logit (A, C)."""
    pred_prob = (cls_logit.sigmoid() * obj_logit.sigmoid()[:, None]).detach()
    gt_xyxy = target.gt_xyxy.to(pred_xyxy)
    assignment = simota_assign(pred_xyxy.detach(), pred_prob, grid_xy, stride_px, gt_xyxy, target.gt_class)
    fg = assignment.fg_mask
    iou = paired_box_iou(pred_xyxy[fg], gt_xyxy[assignment.matched_gt])
    fg_class = target.gt_class[assignment.matched_gt]
    # IoU-aware class target: a well-localised anchor should also be a confident one.
    cls_target = F.one_hot(fg_class, cls_logit.shape[1]).to(cls_logit) * assignment.matched_iou[:, None]
    ignored = in_regions(anchor_centers(grid_xy, stride_px), target.ignore_xyxy.to(pred_xyxy)) & ~fg
    obj_loss = F.binary_cross_entropy_with_logits(obj_logit, fg.to(obj_logit), reduction="none")
    return _ImageSums(
        iou=(1 - iou**2).sum(),
        obj=obj_loss[~ignored].sum(),
        cls=F.binary_cross_entropy_with_logits(cls_logit[fg], cls_target, reduction="sum"),
        fg_count=assignment.fg_count,
    )


def _check_shapes(
    reg: Tensor, obj_logit: Tensor, cls_logit: Tensor, targets: Sequence[Targets], num_anchors: int
) -> None:
    batch = reg.shape[0]
    if batch == 0:
        raise ValueError("the batch is empty: yolox_loss needs at least one image")
    if reg.shape != (batch, num_anchors, 4):
        raise ValueError(f"reg must be (B, A, 4) with A = {num_anchors}, got {tuple(reg.shape)}")
    if obj_logit.shape != (batch, num_anchors):
        raise ValueError(f"obj_logit must be (B, A) = ({batch}, {num_anchors}), got {tuple(obj_logit.shape)}")
    if cls_logit.dim() != 3 or cls_logit.shape[:2] != (batch, num_anchors):
        raise ValueError(
            f"cls_logit must be (B, A, C) with B, A = {batch}, {num_anchors}, got {tuple(cls_logit.shape)}"
        )
    if len(targets) != batch:
        raise ValueError(f"got {len(targets)} targets for a batch of {batch} images")


def yolox_loss(
    reg: Tensor,
    obj_logit: Tensor,
    cls_logit: Tensor,
    targets: Sequence[Targets],
    grid_xy: Tensor,
    stride_px: Tensor,
    *,
    reg_weight: float = 5.0,
) -> LossParts:
    """YOLOX's loss for a batch: reg (B, A, 4), obj_logit (B, A), cls_logit (B, A, C) raw head outputs,
    one ``Targets`` per image, grid_xy (A, 2) and stride_px (A,) from ``anchor_grid`` on their device.

    Per image SimOTA picks the foreground anchors; then, summed and divided by max(batch fg, 1):
    iou = sum over fg of 1 - IoU^2 (times ``reg_weight``); obj = BCE-with-logits over all anchors
    (target 1 on fg), leaving out non-fg anchors centred in an ignore region; cls = BCE-with-logits on
    fg anchors against one_hot(class) * IoU. total = iou + obj + cls.
    """
    _check_shapes(reg, obj_logit, cls_logit, targets, grid_xy.shape[0])
    pred_xyxy = decode_boxes(reg, grid_xy, stride_px)  # (B, A, 4), differentiable
    sums = [
        _image_sums(pred_xyxy[i], obj_logit[i], cls_logit[i], target, grid_xy, stride_px)
        for i, target in enumerate(targets)
    ]
    fg_count = sum(s.fg_count for s in sums)
    divisor = float(max(fg_count, 1))
    iou = reg_weight * torch.stack([s.iou for s in sums]).sum() / divisor
    obj = torch.stack([s.obj for s in sums]).sum() / divisor
    cls = torch.stack([s.cls for s in sums]).sum() / divisor
    return LossParts(total=iou + obj + cls, iou=iou.detach(), obj=obj.detach(), cls=cls.detach(), fg_count=fg_count)
