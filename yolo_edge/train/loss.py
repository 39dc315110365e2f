"""Detection loss: CIoU + DFL on the box, BCE on the classes (YOLOv8 / YOLO11 recipe).

    total = B * (7.5 * box + 0.5 * cls + 1.5 * dfl)

Each part is normalised by the sum of the soft classification targets of the batch (at least 1),
and the sum is multiplied by the batch size B as in YOLOv8 so its learning rates carry over.

Targets are one ``(M, 6)`` tensor for the whole batch: ``(batch_idx, class, x1, y1, x2, y2)``
in input pixels of the tensor the model saw.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from yolo_edge.train.assigner import TaskAlignedAssigner


def bbox_iou(box1: torch.Tensor, box2: torch.Tensor, CIoU: bool = False, eps: float = 1e-7) -> torch.Tensor:
    """IoU (or Complete-IoU) of matching xyxy boxes, ``(..., 4)`` each -> ``(...)``.

    CIoU = IoU - rho^2 / c^2 - alpha * v (Zheng et al. 2020), where rho is the distance between
    the box centres, c the diagonal of the smallest enclosing box,
    v = 4 / pi^2 * (atan(w2 / h2) - atan(w1 / h1))^2 and alpha = v / (v - IoU + 1).
    """
    b1_x1, b1_y1, b1_x2, b1_y2 = box1.unbind(-1)
    b2_x1, b2_y1, b2_x2, b2_y2 = box2.unbind(-1)
    w1, h1 = b1_x2 - b1_x1, (b1_y2 - b1_y1).clamp(min=eps)
    w2, h2 = b2_x2 - b2_x1, (b2_y2 - b2_y1).clamp(min=eps)
    inter = (torch.minimum(b1_x2, b2_x2) - torch.maximum(b1_x1, b2_x1)).clamp(min=0) * (
        torch.minimum(b1_y2, b2_y2) - torch.maximum(b1_y1, b2_y1)
    ).clamp(min=0)
    union = w1 * h1 + w2 * h2 - inter + eps
    iou = inter / union
    if not CIoU:
        return iou
    cw = torch.maximum(b1_x2, b2_x2) - torch.minimum(b1_x1, b2_x1)  # enclosing box width
    ch = torch.maximum(b1_y2, b2_y2) - torch.minimum(b1_y1, b2_y1)  # and height
    c2 = cw.pow(2) + ch.pow(2) + eps  # squared diagonal
    rho2 = ((b2_x1 + b2_x2 - b1_x1 - b1_x2).pow(2) + (b2_y1 + b2_y2 - b1_y1 - b1_y2).pow(2)) / 4
    v = (4 / math.pi**2) * (torch.atan(w2 / h2) - torch.atan(w1 / h1)).pow(2)
    with torch.no_grad():
        alpha = v / (v - iou + (1 + eps))
    return iou - (rho2 / c2 + v * alpha)


def dfl_loss(pred_dist: torch.Tensor, target: torch.Tensor, reg_max: int) -> torch.Tensor:
    """Distribution focal loss of each box: cross-entropy to the two bins around the target.

    pred_dist (N, 4, reg_max) logits; target (N, 4) distances in stride units, clamped here to
    [0, reg_max - 1 - 0.01]. A target t between bins l = floor(t) and l + 1 gives
    (l + 1 - t) * CE(pred, l) + (t - l) * CE(pred, l + 1). Returns (N,), the mean over the 4 sides.
    """
    target = target.clamp(0, reg_max - 1 - 0.01)
    left = target.long()  # (N, 4)
    w_left = left + 1 - target
    w_right = 1 - w_left
    logits = pred_dist.reshape(-1, reg_max)  # (N*4, R)
    ce_left = F.cross_entropy(logits, left.reshape(-1), reduction="none").view(left.shape)
    ce_right = F.cross_entropy(logits, (left + 1).reshape(-1), reduction="none").view(left.shape)
    return (ce_left * w_left + ce_right * w_right).mean(dim=-1)


def make_anchors_torch(feats: list[torch.Tensor], strides) -> tuple[torch.Tensor, torch.Tensor]:
    """Anchor centres (A, 2) in input pixels and per-anchor stride (A, 1), same order as decode."""
    points, stride_col = [], []
    for f, s in zip(feats, strides):
        h, w = f.shape[2:]
        ys = (torch.arange(h, device=f.device, dtype=torch.float32) + 0.5) * s
        xs = (torch.arange(w, device=f.device, dtype=torch.float32) + 0.5) * s
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        points.append(torch.stack((xx.reshape(-1), yy.reshape(-1)), dim=1))
        stride_col.append(torch.full((h * w, 1), float(s), device=f.device))
    return torch.cat(points), torch.cat(stride_col)


@dataclass
class LossGains:
    box: float = 7.5
    cls: float = 0.5
    dfl: float = 1.5


class DetectionLoss:
    """``DetectionLoss(model_cfg)(feats, targets) -> (total, {"box", "cls", "dfl"})``.

    Args:
        model_cfg: anything with ``nc``, ``reg_max`` and ``strides`` (a ``ModelConfig``).
        feats: the model's raw outputs, 3 x ``(B, 4*reg_max + nc, H/s, W/s)``.
        targets: ``(M, 6)`` rows ``(batch_idx, class, x1, y1, x2, y2)`` in input pixels.

    ``total`` is a scalar with gradient; the parts are detached, unweighted, per batch
    (before the gains and the batch-size factor).
    """

    def __init__(self, model_cfg, gains: LossGains | None = None, assigner: TaskAlignedAssigner | None = None):
        self.nc = int(model_cfg.nc)
        self.reg_max = int(model_cfg.reg_max)
        self.strides = tuple(int(s) for s in model_cfg.strides)
        self.gains = gains or LossGains()
        self.assigner = assigner or TaskAlignedAssigner(topk=10, alpha=0.5, beta=6.0)

    def _pad_targets(self, targets: torch.Tensor, batch_size: int):
        """(M, 6) -> labels (B, Mmax), boxes (B, Mmax, 4), mask (B, Mmax)."""
        device = targets.device
        if targets.numel() == 0:
            z = torch.zeros(batch_size, 0, device=device)
            return z.long(), torch.zeros(batch_size, 0, 4, device=device), z.bool()
        bidx = targets[:, 0].long()
        counts = torch.bincount(bidx, minlength=batch_size)
        m = int(counts.max())
        labels = torch.zeros(batch_size, m, dtype=torch.long, device=device)
        boxes = torch.zeros(batch_size, m, 4, device=device)
        mask = torch.zeros(batch_size, m, dtype=torch.bool, device=device)
        order = torch.argsort(bidx, stable=True)
        bidx = bidx[order]
        starts = torch.cumsum(counts, 0) - counts  # (B,)
        slot = torch.arange(len(bidx), device=device) - starts[bidx]  # position within its image
        labels[bidx, slot] = targets[order, 1].long()
        boxes[bidx, slot] = targets[order, 2:6].float()
        mask[bidx, slot] = True
        return labels, boxes, mask

    def __call__(self, feats: list[torch.Tensor], targets: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        R, C = self.reg_max, self.nc
        B = feats[0].shape[0]
        flat = torch.cat([f.reshape(B, 4 * R + C, -1) for f in feats], dim=2).float()  # (B, 4R+C, A)
        pred_dist = flat[:, : 4 * R].transpose(1, 2).reshape(B, -1, 4, R)  # (B, A, 4, R)
        pred_logits = flat[:, 4 * R :].transpose(1, 2)  # (B, A, C)
        anchors, stride = make_anchors_torch(feats, self.strides)  # (A, 2), (A, 1)

        # decoded predictions in pixels (softmax expectation, as decode_torch)
        bins = torch.arange(R, device=flat.device, dtype=flat.dtype)
        ltrb = pred_dist.softmax(dim=-1) @ bins * stride  # (B, A, 4) pixels
        pred_boxes = torch.cat((anchors - ltrb[..., :2], anchors + ltrb[..., 2:]), dim=-1)  # (B, A, 4)

        gt_labels, gt_boxes, mask_gt = self._pad_targets(targets.to(flat.device), B)
        a = self.assigner(pred_logits.detach().sigmoid(), pred_boxes.detach(), anchors, gt_labels, gt_boxes, mask_gt)
        score_sum = a.scores.sum().clamp(min=1)

        loss_cls = F.binary_cross_entropy_with_logits(pred_logits, a.scores, reduction="none").sum() / score_sum
        fg = a.fg_mask
        if fg.any():
            weight = a.scores.sum(-1)[fg]  # (P,)
            iou = bbox_iou(pred_boxes[fg], a.bboxes[fg], CIoU=True)  # (P,)
            loss_box = ((1.0 - iou) * weight).sum() / score_sum
            anchors_fg = anchors.expand(B, -1, -1)[fg]  # (P, 2)
            stride_fg = stride.expand(B, -1, -1)[fg]  # (P, 1)
            tgt = a.bboxes[fg]
            target_ltrb = torch.cat((anchors_fg - tgt[:, :2], tgt[:, 2:] - anchors_fg), dim=1) / stride_fg  # (P, 4)
            loss_dfl = (dfl_loss(pred_dist[fg], target_ltrb, R) * weight).sum() / score_sum
        else:
            loss_box = loss_dfl = pred_dist.sum() * 0.0

        g = self.gains
        total = (g.box * loss_box + g.cls * loss_cls + g.dfl * loss_dfl) * B
        parts = {"box": float(loss_box.detach()), "cls": float(loss_cls.detach()), "dfl": float(loss_dfl.detach())}
        return total, parts
