"""Numpy decode and class-aware NMS: the reference oracle and the CPU fallback.

Semantics follow the ONNX ``NonMaxSuppression`` operator so that a graph with NMS embedded and
this module give the same detections:

* a (box, class) pair is a candidate when its score is strictly greater than the threshold;
* candidates are visited by descending score, ties by ascending anchor index;
* a candidate is suppressed when its IoU with an already kept box of the same class is strictly
  greater than the IoU threshold (IoU computed in float32 as ``inter / (a1 + a2 - inter)``);
* the kept pairs of all classes are ranked by score (ties: class, then anchor) and cut at
  ``max_det``.
"""

from __future__ import annotations

import functools
from typing import Sequence

import numpy as np

from .detections import Detections
from .spec import NmsSpec


def make_anchors(shapes: Sequence[tuple[int, int]], strides: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Cached :func:`_make_anchors` (the arrays are read-only)."""
    return _make_anchors(tuple((int(h), int(w)) for h, w in shapes), tuple(int(v) for v in strides))


@functools.lru_cache(maxsize=16)
def _make_anchors(shapes: tuple, strides: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Anchor centres ``(A, 2)`` in input pixels and per-anchor stride ``(A,)``.

    Level order as given (stride 8 first); within a level row-major: cell (i, j) has
    centre ``((j + 0.5) * s, (i + 0.5) * s)``.
    """
    centres, stride_col = [], []
    for (h, w), s in zip(shapes, strides):
        jj, ii = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        centres.append(np.stack([(jj.ravel() + 0.5) * s, (ii.ravel() + 0.5) * s], axis=1))
        stride_col.append(np.full(h * w, s, np.float32))
    centres, stride_col = np.concatenate(centres), np.concatenate(stride_col)
    centres.flags.writeable = False
    stride_col.flags.writeable = False
    return centres, stride_col


def dfl_expectation(logits: np.ndarray, reg_max: int) -> np.ndarray:
    """``(..., 4 * reg_max)`` DFL logits -> ``(..., 4)`` expected distances in stride units."""
    x = logits.reshape(*logits.shape[:-1], 4, reg_max).astype(np.float32)
    x = np.exp(x - x.max(axis=-1, keepdims=True))
    return (x @ np.arange(reg_max, dtype=np.float32)) / x.sum(axis=-1)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-x.astype(np.float32)))).astype(np.float32)


def flatten_feats(feats: Sequence[np.ndarray]) -> np.ndarray:
    """Raw head outputs ``[(B, 4*reg_max + C, H_s, W_s)] -> (B, A, 4*reg_max + C)``."""
    return np.concatenate(
        [np.asarray(f, np.float32).reshape(f.shape[0], f.shape[1], -1) for f in feats], axis=2
    ).transpose(0, 2, 1)


def decode(feats: Sequence[np.ndarray], strides: Sequence[int], reg_max: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Decode raw head outputs (DESIGN §2).

    Args:
        feats: one array per stride, ``(B, 4*reg_max + C, H_s, W_s)``; channels
            ``[k*reg_max, (k+1)*reg_max)`` are the DFL logits of side k (l, t, r, b), then C class logits.
        strides: e.g. ``(8, 16, 32)``, same order as ``feats``.

    Returns:
        ``boxes (B, A, 4)`` xyxy in input pixels and ``scores (B, A, C)`` after sigmoid.
    """
    if len(feats) != len(strides):
        raise ValueError(f"got {len(feats)} feature maps for {len(strides)} strides")
    flat = flatten_feats(feats)  # (B, A, 4*reg_max + C)
    centres, s = make_anchors([f.shape[2:] for f in feats], strides)
    ltrb = dfl_expectation(flat[..., : 4 * reg_max], reg_max) * s[None, :, None]  # (B, A, 4)
    boxes = np.concatenate([centres - ltrb[..., :2], centres + ltrb[..., 2:]], axis=-1)
    return boxes.astype(np.float32), sigmoid(flat[..., 4 * reg_max :])


def box_iou_one_to_many(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one xyxy box with ``(N, 4)`` boxes, float32, same operation order as ONNX NMS."""
    box = box.astype(np.float32)
    boxes = boxes.astype(np.float32)
    iw = np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0])
    ih = np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1])
    inter = iw * ih
    a1 = (box[2] - box[0]) * (box[3] - box[1])
    a2 = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = a1 + a2 - inter
    valid = (iw > 0) & (ih > 0) & (a1 > 0) & (a2 > 0) & (union > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(valid, inter / np.where(valid, union, 1), 0).astype(np.float32)
    return iou


def pairwise_iou(boxes: np.ndarray) -> np.ndarray:
    """``(N, N)`` IoU matrix of xyxy boxes, float32, same operation order as ONNX NMS."""
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    iw = np.minimum(b[:, None, 2], b[None, :, 2]) - np.maximum(b[:, None, 0], b[None, :, 0])
    ih = np.minimum(b[:, None, 3], b[None, :, 3]) - np.maximum(b[:, None, 1], b[None, :, 1])
    inter = iw * ih
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area[:, None] + area[None, :] - inter
    valid = (iw > 0) & (ih > 0) & (area[:, None] > 0) & (area[None, :] > 0) & (union > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(valid, inter / np.where(valid, union, 1), 0).astype(np.float32)


def _greedy(boxes: np.ndarray, iou_threshold: float, limit: int | None = None) -> np.ndarray:
    """Greedy suppression of boxes already in visit order; returns kept positions."""
    n = len(boxes)
    if n == 0:
        return np.zeros(0, np.int64)
    thr = np.float32(iou_threshold)
    if n <= 2048:
        over = pairwise_iou(boxes) > thr
        suppressed = np.zeros(n, bool)
        keep = []
        for i in range(n):
            if suppressed[i]:
                continue
            keep.append(i)
            if limit is not None and len(keep) >= limit:
                break
            suppressed |= over[i]
        return np.asarray(keep, np.int64)
    order = np.arange(n)  # large inputs: one row of IoU at a time, O(N) memory
    keep = []
    while order.size and (limit is None or len(keep) < limit):
        i = order[0]
        keep.append(i)
        rest = order[1:]
        order = rest[box_iou_one_to_many(boxes[i], boxes[rest]) <= thr]
    return np.asarray(keep, np.int64)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy NMS of one class. Returns kept indices, highest score first (ties: lower index)."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    scores = np.asarray(scores, np.float32).reshape(-1)
    order = np.lexsort((np.arange(len(scores)), -scores))
    return order[_greedy(boxes[order], iou_threshold)]


def batched_nms(boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Class-aware NMS: a box suppresses only boxes of its own class. Returns kept indices
    ordered by descending score (ties: class, then index)."""
    class_ids = np.asarray(class_ids).reshape(-1)
    scores = np.asarray(scores, np.float32).reshape(-1)
    keep = [np.flatnonzero(class_ids == c)[nms(boxes[class_ids == c], scores[class_ids == c], iou_threshold)]
            for c in np.unique(class_ids)]
    if not keep:
        return np.zeros(0, np.int64)
    keep = np.concatenate(keep)
    return keep[np.lexsort((keep, class_ids[keep], -scores[keep]))]


def postprocess(boxes: np.ndarray, scores: np.ndarray, nms_spec: NmsSpec | None = None,
                anchor_ids: np.ndarray | None = None) -> Detections:
    """Decoded outputs of one image -> Detections in input pixels.

    Args:
        boxes: ``(A, 4)`` xyxy input pixels.
        scores: ``(A, C)`` after sigmoid.
        anchor_ids: optional original anchor index of each row (for tie-breaking when the
            caller already dropped rows); defaults to ``arange(A)``.
    """
    spec = nms_spec or NmsSpec()
    boxes = np.asarray(boxes, np.float32)
    scores = np.asarray(scores, np.float32)
    if boxes.ndim != 2 or boxes.shape[1] != 4 or scores.ndim != 2 or scores.shape[0] != boxes.shape[0]:
        raise ValueError(f"expected boxes (A, 4) and scores (A, C), got {boxes.shape} and {scores.shape}")
    mask = scores > np.float32(spec.score_threshold)
    rows = np.flatnonzero(mask.any(axis=1))  # 2-D nonzero on the full (A, C) mask is slow
    r, c_idx = np.nonzero(mask[rows])
    a_idx = rows[r]
    if a_idx.size == 0:
        return Detections.empty()
    cand_scores = scores[a_idx, c_idx]
    anchors = a_idx if anchor_ids is None else np.asarray(anchor_ids)[a_idx]
    groups = np.zeros_like(c_idx) if spec.class_agnostic else c_idx
    # one sort for all classes: by group, then score desc, then anchor asc (ONNX visit order)
    order = np.lexsort((anchors, -cand_scores, groups))
    keep = _grouped_greedy(boxes[a_idx[order]], groups[order], spec.iou_threshold, spec.max_det)
    keep = order[keep]
    keep = keep[np.lexsort((anchors[keep], c_idx[keep], -cand_scores[keep]))][: spec.max_det]
    return Detections(boxes[a_idx[keep]], cand_scores[keep], c_idx[keep])


def _grouped_greedy(boxes: np.ndarray, groups: np.ndarray, iou_threshold: float, limit: int) -> np.ndarray:
    """Greedy NMS of several groups at once; rows sorted by group, then visit order.

    Groups are padded to a ``(G, L)`` grid and suppressed position by position, so the Python
    loop runs ``L`` (the largest group) times instead of once per kept box per class.
    Returns kept row positions.
    """
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    sizes = np.diff(np.r_[starts, len(groups)])
    G, L = len(starts), int(sizes.max())
    if G * L * L > 4_000_000:  # one huge group: fall back to per-group greedy
        bounds = np.r_[starts, len(groups)]
        return np.concatenate([bounds[g] + _greedy(boxes[bounds[g]:bounds[g + 1]], iou_threshold, limit)
                               for g in range(G)])
    pos = np.arange(len(groups)) - np.repeat(starts, sizes)  # position inside its group
    gid = np.repeat(np.arange(G), sizes)
    valid = np.zeros((G, L), bool)
    valid[gid, pos] = True
    b = np.zeros((G, L, 4), np.float32)
    b[gid, pos] = boxes
    iw = np.minimum(b[:, :, None, 2], b[:, None, :, 2]) - np.maximum(b[:, :, None, 0], b[:, None, :, 0])
    ih = np.minimum(b[:, :, None, 3], b[:, None, :, 3]) - np.maximum(b[:, :, None, 1], b[:, None, :, 1])
    inter = iw * ih
    area = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area[:, :, None] + area[:, None, :] - inter
    ok = (iw > 0) & (ih > 0) & (area[:, :, None] > 0) & (area[:, None, :] > 0) & (union > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        over = ok & (inter / np.where(ok, union, 1) > np.float32(iou_threshold))
    suppressed = ~valid
    kept = np.zeros((G, L), bool)
    count = np.zeros(G, np.int64)
    for p in range(L):
        k = ~suppressed[:, p] & (count < limit)
        kept[:, p] = k
        count += k
        suppressed |= over[:, p, :] & k[:, None]
    return np.flatnonzero(kept[gid, pos])


def postprocess_raw(feats: Sequence[np.ndarray], strides: Sequence[int], reg_max: int,
                    nms_spec: NmsSpec | None = None) -> list[Detections]:
    """Raw head outputs of a batch -> one Detections per image (input pixels).

    Fast path: thresholds class logits before the sigmoid and decodes boxes only for anchors
    that have a candidate. Equal to ``postprocess(*decode(feats))`` up to float rounding.
    """
    spec = nms_spec or NmsSpec()
    centres, s = make_anchors([f.shape[2:] for f in feats], strides)
    thr = spec.score_threshold
    logit_thr = np.float32(np.log(thr / (1 - thr))) if 0 < thr < 1 else (-np.inf if thr <= 0 else np.inf)
    levels = [np.asarray(f, np.float32).reshape(f.shape[0], f.shape[1], -1) for f in feats]  # (B, no, HW)
    offsets = np.cumsum([0] + [lv.shape[2] for lv in levels])
    out = []
    for b in range(levels[0].shape[0]):
        # only anchors with at least one class logit above the threshold are decoded
        picked = [(off, np.flatnonzero((lv[b, 4 * reg_max:] >= logit_thr).any(axis=0)))
                  for lv, off in zip(levels, offsets)]
        rows = np.concatenate([off + idx for off, idx in picked])
        if rows.size == 0:
            out.append(Detections.empty())
            continue
        sel = np.concatenate([lv[b][:, idx] for lv, (_, idx) in zip(levels, picked)], axis=1).T  # (n, no)
        ltrb = dfl_expectation(sel[:, : 4 * reg_max], reg_max) * s[rows, None]
        c = centres[rows]
        boxes = np.concatenate([c - ltrb[:, :2], c + ltrb[:, 2:]], axis=1)
        out.append(postprocess(boxes, sigmoid(sel[:, 4 * reg_max:]), spec, anchor_ids=rows))
    return out


def from_nms_outputs(num_dets: np.ndarray, det_boxes: np.ndarray, det_scores: np.ndarray,
                     det_classes: np.ndarray) -> list[Detections]:
    """EfficientNMS-layout outputs (DESIGN §2) -> one Detections per image; padding ignored."""
    num = np.asarray(num_dets).reshape(-1)
    return [Detections(det_boxes[b, : int(n)], det_scores[b, : int(n)], det_classes[b, : int(n)])
            for b, n in enumerate(num)]
