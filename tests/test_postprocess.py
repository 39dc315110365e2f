"""Numpy decode and NMS against independent references: onnx.reference, ONNX Runtime and slow loops."""

from __future__ import annotations

import numpy as np
import pytest

from yolo_edge.detections import Detections
from yolo_edge.postprocess import (batched_nms, decode, from_nms_outputs, make_anchors, nms, postprocess,
                                   postprocess_raw)
from yolo_edge.spec import NmsSpec


# --- slow, obviously-correct references -------------------------------------------------------
def slow_iou(a, b) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = np.float32(iw) * np.float32(ih)
    a1 = np.float32(a[2] - a[0]) * np.float32(a[3] - a[1])
    a2 = np.float32(b[2] - b[0]) * np.float32(b[3] - b[1])
    return float(inter / (a1 + a2 - inter))


def slow_postprocess(boxes, scores, score_thr, iou_thr, max_det):
    """Per class: visit candidates by score (ties: anchor), keep those not overlapping a kept one."""
    kept = []
    for c in range(scores.shape[1]):
        cand = [(float(scores[a, c]), a) for a in range(len(boxes)) if scores[a, c] > score_thr]
        cand.sort(key=lambda t: (-t[0], t[1]))
        chosen = []
        for s, a in cand:
            if all(slow_iou(boxes[a], boxes[k]) <= iou_thr for _, k in chosen):
                chosen.append((s, a))
        kept += [(s, c, a) for s, a in chosen[:max_det]]
    kept.sort(key=lambda t: (-t[0], t[1], t[2]))
    return kept[:max_det]


def slow_decode(feats, strides, reg_max):
    out_boxes, out_scores = [], []
    for f, s in zip(feats, strides):
        _, _, h, w = f.shape
        for i in range(h):
            for j in range(w):
                v = f[0, :, i, j].astype(np.float64)
                d = []
                for k in range(4):
                    logits = v[k * reg_max:(k + 1) * reg_max]
                    p = np.exp(logits - logits.max())
                    p /= p.sum()
                    d.append(sum(p[b] * b for b in range(reg_max)) * s)
                cx, cy = (j + 0.5) * s, (i + 0.5) * s
                out_boxes.append([cx - d[0], cy - d[1], cx + d[2], cy + d[3]])
                out_scores.append(1 / (1 + np.exp(-v[4 * reg_max:])))
    return np.array(out_boxes), np.array(out_scores)


def random_scene(rng, n_anchors=300, nc=5, clustered=True):
    """Boxes in clusters (so that NMS really suppresses) with random class scores."""
    centres = rng.uniform(50, 590, (max(1, n_anchors // 20), 2))
    c = centres[rng.integers(0, len(centres), n_anchors)] + rng.normal(0, 6 if clustered else 200, (n_anchors, 2))
    wh = rng.uniform(10, 120, (n_anchors, 2))
    boxes = np.concatenate([c - wh / 2, c + wh / 2], 1).astype(np.float32)
    scores = rng.uniform(0, 1, (n_anchors, nc)).astype(np.float32) ** 3
    return boxes, scores


def as_tuples(d: Detections, boxes):
    """(score, class, anchor) triplets, locating each kept box among the inputs."""
    out = []
    for b, s, c in d:
        a = int(np.flatnonzero(np.all(boxes == b, axis=1))[0])
        out.append((float(s), c, a))
    return out


# --- decode ---------------------------------------------------------------------------------
def test_decode_matches_slow_loop():
    rng = np.random.default_rng(0)
    feats = [rng.normal(0, 2, (1, 4 * 16 + 3, h, w)).astype(np.float32) for h, w in ((4, 6), (2, 3), (1, 2))]
    boxes, scores = decode(feats, (8, 16, 32), 16)
    ref_b, ref_s = slow_decode(feats, (8, 16, 32), 16)
    assert boxes.shape == (1, 24 + 6 + 2, 4) and scores.shape == (1, 32, 3)
    np.testing.assert_allclose(boxes[0], ref_b, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(scores[0], ref_s, rtol=1e-5, atol=1e-7)


def test_make_anchors_order():
    c, s = make_anchors([(2, 3), (1, 1)], (8, 32))
    np.testing.assert_array_equal(c[:4], [[4, 4], [12, 4], [20, 4], [4, 12]])
    np.testing.assert_array_equal(c[-1], [16, 16])
    assert s.tolist() == [8] * 6 + [32]


def test_postprocess_raw_equals_decode_then_postprocess():
    rng = np.random.default_rng(1)
    feats = [rng.normal(-4, 2, (2, 64 + 7, h, h)).astype(np.float32) for h in (16, 8, 4)]
    for f in feats:
        f[:, :64] = rng.normal(0, 2, f[:, :64].shape)
    boxes, scores = decode(feats, (8, 16, 32), 16)
    spec = NmsSpec(score_threshold=0.2, iou_threshold=0.5)
    fast = postprocess_raw(feats, (8, 16, 32), 16, spec)
    for b in range(2):
        ref = postprocess(boxes[b], scores[b], spec)
        assert len(ref) == len(fast[b]) > 5
        np.testing.assert_array_equal(ref.class_ids, fast[b].class_ids)
        np.testing.assert_allclose(ref.xyxy, fast[b].xyxy, atol=1e-3)
        np.testing.assert_allclose(ref.scores, fast[b].scores, atol=1e-6)


# --- NMS against the slow loop ----------------------------------------------------------------
@pytest.mark.parametrize("seed, n, nc, score_thr, iou_thr, max_det", [
    (0, 300, 5, 0.1, 0.5, 100),
    (1, 500, 80, 0.3, 0.45, 300),
    (2, 200, 3, 0.0, 0.7, 50),
    (3, 400, 2, 0.5, 0.3, 10),
    (4, 50, 1, 0.2, 0.0, 100),
])
def test_postprocess_matches_slow_loop(seed, n, nc, score_thr, iou_thr, max_det):
    rng = np.random.default_rng(seed)
    boxes, scores = random_scene(rng, n, nc)
    got = postprocess(boxes, scores, NmsSpec(score_threshold=score_thr, iou_threshold=iou_thr, max_det=max_det))
    ref = slow_postprocess(boxes, scores, score_thr, iou_thr, max_det)
    assert len(ref) > 0
    assert as_tuples(got, boxes) == [(pytest.approx(s), c, a) for s, c, a in ref]


def test_iou_exactly_at_threshold_is_kept():
    # IoU of these two boxes is exactly 8 / 16 = 0.5 in float32
    boxes = np.array([[0, 0, 4, 4], [0, 0, 4, 2]], np.float32)
    scores = np.array([[0.9], [0.8]], np.float32)
    assert len(postprocess(boxes, scores, NmsSpec(score_threshold=0.1, iou_threshold=0.5))) == 2
    assert len(postprocess(boxes, scores, NmsSpec(score_threshold=0.1, iou_threshold=0.49))) == 1
    assert nms(boxes, scores[:, 0], 0.5).tolist() == [0, 1]


def test_score_exactly_at_threshold_is_dropped():
    boxes = np.array([[0, 0, 4, 4], [10, 10, 14, 14]], np.float32)
    scores = np.array([[0.25], [0.2500001]], np.float32)
    d = postprocess(boxes, scores, NmsSpec(score_threshold=0.25))
    assert len(d) == 1 and d.xyxy[0, 0] == 10


def test_score_ties_visit_lower_anchor_first():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [0, 1, 10, 11]], np.float32)
    scores = np.full((3, 1), 0.5, np.float32)
    d = postprocess(boxes, scores, NmsSpec(score_threshold=0.1, iou_threshold=0.5))
    assert len(d) == 1 and d.xyxy[0].tolist() == [0, 0, 10, 10]


def test_class_aware():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10]], np.float32)
    scores = np.array([[0.9, 0.0], [0.0, 0.8]], np.float32)
    assert len(postprocess(boxes, scores, NmsSpec(score_threshold=0.1))) == 2
    assert len(postprocess(boxes, scores, NmsSpec(score_threshold=0.1, class_agnostic=True))) == 1
    assert batched_nms(boxes, np.array([0.9, 0.8]), np.array([0, 1]), 0.5).tolist() == [0, 1]


@pytest.mark.parametrize("boxes, scores", [
    (np.zeros((0, 4), np.float32), np.zeros((0, 80), np.float32)),
    (np.zeros((5, 4), np.float32), np.zeros((5, 80), np.float32)),
])
def test_empty(boxes, scores):
    d = postprocess(boxes, scores)
    assert len(d) == 0 and d.xyxy.shape == (0, 4)
    assert nms(boxes[:0], np.zeros(0), 0.5).shape == (0,)


def test_degenerate_boxes_never_suppress():
    boxes = np.array([[5, 5, 5, 5], [5, 5, 5, 5], [0, 0, 10, 10]], np.float32)  # zero area
    scores = np.array([[0.9], [0.8], [0.7]], np.float32)
    assert len(postprocess(boxes, scores, NmsSpec(score_threshold=0.1, iou_threshold=0.1))) == 3


def test_large_group_fallback_matches_slow_loop():
    """A single class with thousands of candidates takes the O(N)-memory path."""
    rng = np.random.default_rng(7)
    boxes, scores = random_scene(rng, 2500, 1, clustered=False)
    got = postprocess(boxes, scores, NmsSpec(score_threshold=0.05, iou_threshold=0.5, max_det=3000))
    ref = slow_postprocess(boxes, scores, 0.05, 0.5, 3000)
    assert as_tuples(got, boxes) == [(pytest.approx(s), c, a) for s, c, a in ref]


# --- NMS against ONNX's NonMaxSuppression (onnx.reference and ONNX Runtime) ---------------------
def _nms_graph(score_thr, iou_thr, max_per_class):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    g = helper.make_graph(
        [helper.make_node("NonMaxSuppression", ["boxes", "scores", "k", "iou", "thr"], ["sel"], center_point_box=0)],
        "nms",
        [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, None, 4]),
         helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, None, None])],
        [helper.make_tensor_value_info("sel", TensorProto.INT64, [None, 3])],
        [helper.make_tensor("k", TensorProto.INT64, [1], [max_per_class]),
         helper.make_tensor("iou", TensorProto.FLOAT, [1], [iou_thr]),
         helper.make_tensor("thr", TensorProto.FLOAT, [1], [score_thr])],
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


@pytest.mark.parametrize("engine", ["onnx.reference", "onnxruntime"])
@pytest.mark.parametrize("seed, n, nc, score_thr, iou_thr", [(0, 120, 80, 0.3, 0.5), (1, 200, 4, 0.05, 0.45)])
def test_postprocess_matches_onnx_nonmaxsuppression(engine, seed, n, nc, score_thr, iou_thr):
    rng = np.random.default_rng(seed)
    boxes, scores = random_scene(rng, n, nc)
    scores[::7, 0] = 0.5  # score ties
    boxes[5] = boxes[4] + np.float32([0.001, 0, 0, 0])  # a near duplicate
    model = _nms_graph(score_thr, iou_thr, 10_000)
    # ONNX boxes are [y1, x1, y2, x2] with center_point_box=0
    feeds = {"boxes": boxes[None][..., [1, 0, 3, 2]], "scores": scores.T[None].copy()}
    if engine == "onnx.reference":
        from onnx.reference import ReferenceEvaluator

        sel = ReferenceEvaluator(model).run(None, feeds)[0]
    else:
        ort = pytest.importorskip("onnxruntime")
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        sel = sess.run(None, feeds)[0]
    ref = {(int(c), int(a)) for _, c, a in sel}
    got = postprocess(boxes, scores, NmsSpec(score_threshold=score_thr, iou_threshold=iou_thr, max_det=10_000))
    assert {(c, a) for _, c, a in as_tuples(got, boxes)} == ref
    assert len(ref) > 10


def test_from_nms_outputs_ignores_padding():
    num = np.array([[2], [0]], np.int32)
    boxes = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    scores = np.array([[0.9, 0.8, 0.0], [0, 0, 0]], np.float32)
    classes = np.array([[1, 2, 0], [0, 0, 0]], np.int32)
    a, b = from_nms_outputs(num, boxes, scores, classes)
    assert len(a) == 2 and len(b) == 0 and a.class_ids.tolist() == [1, 2]
