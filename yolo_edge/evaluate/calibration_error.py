"""Confidence calibration of a detector: greedy matching, reliability diagram, ECE (numpy only).

Detection calibration as in Küppers et al., "Multivariate Confidence Calibration for Object
Detection" (CVPR-W 2020), reduced to the confidence alone: a prediction is *correct* when it
matches a ground-truth box of the same class at IoU >= 0.5, matching greedily in score order
with every ground truth matched at most once (the COCO rule). Then, with equal-width bins over
``[0, 1]``::

    ECE = sum_b (n_b / N) * |acc_b - conf_b|

where ``acc_b`` is the fraction of correct predictions in bin ``b`` and ``conf_b`` their mean
score. A detector whose 0.8-score boxes are right 80 % of the time has ECE 0.

ECE depends on which predictions are counted, i.e. on the score threshold they were cut at:
compare ECE values only between runs that used the same threshold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "ReliabilityDiagram",
    "box_iou",
    "expected_calibration_error",
    "greedy_match",
    "reliability_diagram",
]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of ``a (N, 4)`` and ``b (M, 4)`` boxes ``(x1, y1, x2, y2)`` -> ``float64 (N, M)``.

    Continuous coordinates (area = w * h, no ``+1``), as pycocotools. A pair whose union is
    empty (two degenerate boxes) has IoU 0.
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])  # (N,)
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])  # (M,)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])  # (N, M, 2)
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])  # (N, M, 2)
    wh = np.clip(rb - lt, 0.0, None)
    inter = wh[..., 0] * wh[..., 1]  # (N, M)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def greedy_match(
    pred_xyxy: np.ndarray,
    pred_scores: np.ndarray,
    pred_class_ids: np.ndarray,
    gt_xyxy: np.ndarray,
    gt_class_ids: np.ndarray,
    iou_threshold: float = 0.5,
) -> np.ndarray:
    """Match predictions to ground truth of the same class, greedily in score order.

    Predictions are visited highest score first (ties: lower index first); each takes the
    still-unmatched same-class ground truth with the highest IoU, provided that IoU is
    ``>= iou_threshold`` (ties: lower ground-truth index). Each ground truth is matched once.

    Args:
        pred_xyxy: ``(P, 4)`` boxes; pred_scores: ``(P,)``; pred_class_ids: ``(P,)``.
        gt_xyxy: ``(G, 4)`` boxes; gt_class_ids: ``(G,)``. Same pixel frame as the predictions.
        iou_threshold: minimum IoU of a match (inclusive).

    Returns:
        ``int64 (P,)``: for each prediction (in the input order) the index of its ground truth,
        or ``-1`` when unmatched. ``correct = greedy_match(...) >= 0``.
    """
    pred_xyxy = np.asarray(pred_xyxy, dtype=np.float64).reshape(-1, 4)
    gt_xyxy = np.asarray(gt_xyxy, dtype=np.float64).reshape(-1, 4)
    pred_scores = np.asarray(pred_scores, dtype=np.float64).reshape(-1)
    pred_class_ids = np.asarray(pred_class_ids).reshape(-1)
    gt_class_ids = np.asarray(gt_class_ids).reshape(-1)
    n_pred, n_gt = len(pred_xyxy), len(gt_xyxy)
    if pred_scores.shape != (n_pred,) or pred_class_ids.shape != (n_pred,):
        raise ValueError(f"pred_scores and pred_class_ids must have shape ({n_pred},)")
    if gt_class_ids.shape != (n_gt,):
        raise ValueError(f"gt_class_ids must have shape ({n_gt},) to match gt_xyxy")
    matched = np.full(n_pred, -1, dtype=np.int64)
    if n_pred == 0 or n_gt == 0:
        return matched

    iou = box_iou(pred_xyxy, gt_xyxy)  # (P, G)
    iou[pred_class_ids[:, None] != gt_class_ids[None, :]] = -1.0
    order = np.argsort(-pred_scores, kind="stable")
    has_candidate = (iou >= iou_threshold).any(axis=1)  # predictions that can match at all
    taken = np.zeros(n_gt, dtype=bool)
    for i in order[has_candidate[order]]:
        row = np.where(taken, -1.0, iou[i])
        j = int(np.argmax(row))
        if row[j] >= iou_threshold:
            matched[i] = j
            taken[j] = True
    return matched


@dataclass(frozen=True, eq=False)
class ReliabilityDiagram:
    """Binned confidence vs accuracy.

    Attributes:
        edges: ``(n_bins + 1,)`` bin edges over ``[0, 1]``; bin ``b`` holds
            ``edges[b] <= score < edges[b + 1]``, the last bin also holds 1.0.
        counts: ``int64 (n_bins,)`` predictions per bin.
        accuracy: ``(n_bins,)`` fraction correct per bin, NaN for an empty bin.
        confidence: ``(n_bins,)`` mean score per bin, NaN for an empty bin.
    """

    edges: np.ndarray
    counts: np.ndarray
    accuracy: np.ndarray
    confidence: np.ndarray

    @property
    def n(self) -> int:
        return int(self.counts.sum())

    @property
    def ece(self) -> float:
        """Expected calibration error; NaN when there are no predictions."""
        if self.n == 0:
            return float("nan")
        full = self.counts > 0
        gap = np.abs(self.accuracy[full] - self.confidence[full])
        return float(np.sum(self.counts[full] / self.n * gap))

    @property
    def mce(self) -> float:
        """Maximum calibration error (largest gap over non-empty bins); NaN when empty."""
        full = self.counts > 0
        if not full.any():
            return float("nan")
        return float(np.max(np.abs(self.accuracy[full] - self.confidence[full])))

    def to_dict(self) -> dict[str, Any]:
        def clean(a):
            return [None if not np.isfinite(v) else float(v) for v in a]

        return {
            "edges": [float(v) for v in self.edges],
            "counts": [int(v) for v in self.counts],
            "accuracy": clean(self.accuracy),
            "confidence": clean(self.confidence),
            "ece": None if self.n == 0 else self.ece,
        }


def _bin_index(scores: np.ndarray, edges: np.ndarray) -> np.ndarray:
    n_bins = len(edges) - 1
    return np.clip(np.searchsorted(edges, scores, side="right") - 1, 0, n_bins - 1)


def reliability_diagram(scores: np.ndarray, correct: np.ndarray, n_bins: int = 15) -> ReliabilityDiagram:
    """Bin ``scores (N,)`` in ``[0, 1]`` into ``n_bins`` equal-width bins with the accuracy of
    ``correct (N,)`` (bool) in each. Scores a rounding error outside ``[0, 1]`` are clipped; others
    raise ``ValueError``."""
    if int(n_bins) < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    n_bins = int(n_bins)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    correct = np.asarray(correct).reshape(-1)
    if correct.shape != scores.shape:
        raise ValueError(f"correct must have shape {scores.shape} to match scores, got {correct.shape}")
    if scores.size and (not np.all(np.isfinite(scores)) or scores.min() < -1e-6 or scores.max() > 1 + 1e-6):
        raise ValueError("scores must be finite and in [0, 1]")
    scores = np.clip(scores, 0.0, 1.0)
    correct = correct.astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = _bin_index(scores, edges)
    counts = np.bincount(idx, minlength=n_bins).astype(np.int64)
    hits = np.bincount(idx, weights=correct, minlength=n_bins)
    conf = np.bincount(idx, weights=scores, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.where(counts > 0, hits / counts, np.nan)
        confidence = np.where(counts > 0, conf / counts, np.nan)
    return ReliabilityDiagram(edges, counts, accuracy, confidence)


def expected_calibration_error(scores: np.ndarray, correct: np.ndarray, n_bins: int = 15) -> float:
    """``sum_b (n_b / N) * |acc_b - conf_b|`` over ``n_bins`` equal-width score bins on ``[0, 1]``.

    Args:
        scores: ``(N,)`` confidences in ``[0, 1]``.
        correct: ``(N,)`` bool, e.g. ``greedy_match(...) >= 0``.

    Returns:
        ECE in ``[0, 1]``; NaN when ``N == 0``.
    """
    return reliability_diagram(scores, correct, n_bins).ece
