"""Task-aligned label assignment (TOOD, Feng et al. 2021; as used by YOLOv8/YOLO11).

For every ground-truth box g and anchor a whose centre lies inside g:

    t(g, a) = s(a, class_g) ** alpha * IoU(g, box_a) ** beta

where s is the predicted class probability and box_a the predicted box of anchor a. Each GT
takes its ``topk`` anchors by t (only anchors inside it, only t > 0). An anchor taken by several
GTs keeps the one it overlaps most. The classification target of a positive anchor is the
one-hot class scaled by its normalised alignment

    t(g, a) / max_a' t(g, a') * max_a' IoU(g, box_a')

so the best-aligned anchor of a GT aims at that GT's best IoU and the others at less.

Shapes: B images, A anchors, M ground-truth slots per image (padded; ``mask_gt`` says which
are real), C classes. Boxes are xyxy in input pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def box_iou_pairwise(gt: torch.Tensor, pred: torch.Tensor, eps: float = 1e-9) -> torch.Tensor:
    """IoU of every GT with every prediction of the same image.

    gt (B, M, 4), pred (B, A, 4), both xyxy -> (B, M, A) in [0, 1].
    """
    g = gt[:, :, None, :]  # (B, M, 1, 4)
    p = pred[:, None, :, :]  # (B, 1, A, 4)
    iw = (torch.minimum(g[..., 2], p[..., 2]) - torch.maximum(g[..., 0], p[..., 0])).clamp(min=0)
    ih = (torch.minimum(g[..., 3], p[..., 3]) - torch.maximum(g[..., 1], p[..., 1])).clamp(min=0)
    inter = iw * ih  # (B, M, A)
    area_g = (g[..., 2] - g[..., 0]).clamp(min=0) * (g[..., 3] - g[..., 1]).clamp(min=0)
    area_p = (p[..., 2] - p[..., 0]).clamp(min=0) * (p[..., 3] - p[..., 1]).clamp(min=0)
    return inter / (area_g + area_p - inter + eps)


def anchors_inside(anchor_points: torch.Tensor, gt_bboxes: torch.Tensor, eps: float = 1e-9) -> torch.Tensor:
    """Which anchor centres lie strictly inside which GT box.

    anchor_points (A, 2) xy pixels, gt_bboxes (B, M, 4) xyxy -> bool (B, M, A).
    """
    x, y = anchor_points[:, 0], anchor_points[:, 1]  # (A,)
    g = gt_bboxes[..., None]  # (B, M, 4, 1)
    margin = torch.stack(  # (B, M, 4, A): distances to the left, top, right, bottom edges
        (x - g[:, :, 0], y - g[:, :, 1], g[:, :, 2] - x, g[:, :, 3] - y), dim=2
    )
    return margin.amin(dim=2) > eps


@dataclass
class Assignment:
    """What the loss needs, per anchor.

    labels (B, A) int64 class of the assigned GT (0 where negative);
    bboxes (B, A, 4) xyxy of the assigned GT (zeros where negative);
    scores (B, A, C) soft classification targets (all zero where negative);
    fg_mask (B, A) bool positive anchors; gt_idx (B, A) int64 index of the assigned GT slot.
    """

    labels: torch.Tensor
    bboxes: torch.Tensor
    scores: torch.Tensor
    fg_mask: torch.Tensor
    gt_idx: torch.Tensor


class TaskAlignedAssigner:
    """Assign ground truth to anchors by the task-alignment metric (module docstring).

    Args:
        topk: candidate anchors per GT.
        alpha: exponent of the class score in the metric.
        beta: exponent of the IoU in the metric.
    """

    def __init__(self, topk: int = 10, alpha: float = 0.5, beta: float = 6.0, eps: float = 1e-9):
        self.topk, self.alpha, self.beta, self.eps = topk, alpha, beta, eps

    @torch.no_grad()
    def __call__(
        self,
        pd_scores: torch.Tensor,
        pd_bboxes: torch.Tensor,
        anchor_points: torch.Tensor,
        gt_labels: torch.Tensor,
        gt_bboxes: torch.Tensor,
        mask_gt: torch.Tensor,
    ) -> Assignment:
        """
        Args:
            pd_scores: (B, A, C) predicted class probabilities (after sigmoid).
            pd_bboxes: (B, A, 4) predicted boxes, xyxy input pixels.
            anchor_points: (A, 2) anchor centres, input pixels.
            gt_labels: (B, M) integer classes of the GT slots.
            gt_bboxes: (B, M, 4) GT boxes, xyxy input pixels.
            mask_gt: (B, M) bool, True for real GTs, False for padding.
        """
        B, A, C = pd_scores.shape
        M = gt_bboxes.shape[1]
        device = pd_scores.device
        if M == 0 or not bool(mask_gt.any()):
            return Assignment(
                labels=torch.zeros(B, A, dtype=torch.long, device=device),
                bboxes=torch.zeros(B, A, 4, dtype=pd_bboxes.dtype, device=device),
                scores=torch.zeros_like(pd_scores),
                fg_mask=torch.zeros(B, A, dtype=torch.bool, device=device),
                gt_idx=torch.zeros(B, A, dtype=torch.long, device=device),
            )
        gt_labels = gt_labels.long().clamp(0, C - 1)  # padded slots may carry junk
        mask_gt = mask_gt.bool()

        # 1. candidates: anchor centre inside a real GT
        cand = anchors_inside(anchor_points, gt_bboxes) & mask_gt[:, :, None]  # (B, M, A)

        # 2. alignment metric t = s^alpha * IoU^beta on candidates
        iou = box_iou_pairwise(gt_bboxes, pd_bboxes) * cand  # (B, M, A)
        cls_idx = gt_labels[:, :, None].expand(B, M, A)  # (B, M, A)
        score = pd_scores.transpose(1, 2).gather(1, cls_idx)  # (B, M, A): s(a, class_g)
        metric = score.pow(self.alpha) * iou.pow(self.beta) * cand  # (B, M, A)

        # 3. top-k anchors per GT, keeping only candidates with a positive metric
        k = min(self.topk, A)
        top_idx = metric.topk(k, dim=2).indices  # (B, M, k)
        in_topk = torch.zeros_like(cand).scatter_(2, top_idx, True)  # (B, M, A)
        mask_pos = in_topk & cand & (metric > 0)  # (B, M, A)

        # 4. an anchor claimed by several GTs keeps the GT it overlaps most
        multi = mask_pos.sum(dim=1, keepdim=True) > 1  # (B, 1, A)
        best_gt = (iou * mask_pos).argmax(dim=1, keepdim=True)  # (B, 1, A): among the claimants
        only_best = torch.zeros_like(mask_pos).scatter_(1, best_gt, True)  # (B, M, A)
        mask_pos = torch.where(multi, only_best, mask_pos)
        fg_mask = mask_pos.any(dim=1)  # (B, A)
        gt_idx = mask_pos.float().argmax(dim=1)  # (B, A): the one True slot, 0 for negatives

        # 5. targets gathered from the assigned GT
        batch = torch.arange(B, device=device)[:, None]  # (B, 1)
        labels = gt_labels[batch, gt_idx]  # (B, A)
        bboxes = gt_bboxes[batch, gt_idx]  # (B, A, 4)
        scores = torch.nn.functional.one_hot(labels, C).to(pd_scores.dtype)  # (B, A, C)
        scores = scores * fg_mask[..., None]

        # 6. soft targets: alignment normalised per GT, scaled to that GT's best IoU
        metric = metric * mask_pos  # (B, M, A)
        max_metric = metric.amax(dim=2, keepdim=True)  # (B, M, 1)
        max_iou = (iou * mask_pos).amax(dim=2, keepdim=True)  # (B, M, 1)
        norm = (metric * max_iou / (max_metric + self.eps)).amax(dim=1)  # (B, A)
        scores = scores * norm[..., None]
        labels = labels * fg_mask
        bboxes = bboxes * fg_mask[..., None]
        return Assignment(labels=labels, bboxes=bboxes, scores=scores, fg_mask=fg_mask, gt_idx=gt_idx)
