"""yolo_edge.evaluate: the evaluator against pycocotools driven directly, ECE against slow loops."""

from __future__ import annotations

import contextlib
import io
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from yolo_edge.detections import Detections
from yolo_edge.evaluate import (
    COCO_STATS_NAMES,
    DetectionEvaluator,
    box_iou,
    expected_calibration_error,
    greedy_match,
    plot_pr_curves,
    plot_reliability,
    reliability_diagram,
)

pytest.importorskip("pycocotools")

NAMES = ["car", "person", "dog", "unused"]  # "unused" never appears: AP NaN, left out of means
SPARSE_CAT_IDS = [3, 7, 11, 42]  # the reference uses COCO-like sparse ids, the evaluator class_id + 1


# -- random scenes -----------------------------------------------------------------------------

def _q(x):
    """Round to multiples of 1/4 px: exact in float32, so xyxy <-> xywh round-trips exactly."""
    return np.round(np.asarray(x, dtype=np.float64) * 4) / 4


def _box_of_size(rng, size_range, img_w, img_h):
    w, h = _q(rng.uniform(*size_range, size=2))
    x, y = _q(rng.uniform(0, img_w - w)), _q(rng.uniform(0, img_h - h))
    return [x, y, w, h]


def _make_scenes(seed: int, n_images: int = 7, crowd: bool = False):
    """Images with small/medium/large GT of classes 0..2, jittered detections with random scores,
    duplicates, wrong classes, false positives, missed objects; image 0 has no detections,
    image 1 no ground truth, image 2 more than 100 detections."""
    rng = np.random.default_rng(seed)
    img_w, img_h = 640.0, 480.0
    sizes = [(4, 30), (36, 90), (100, 250)]
    scenes = []
    for i in range(n_images):
        n_gt = 0 if i == 1 else int(rng.integers(2, 9))
        gt_xywh, gt_cls = [], []
        for _ in range(n_gt):
            gt_xywh.append(_box_of_size(rng, sizes[int(rng.integers(0, 3))], img_w, img_h))
            gt_cls.append(int(rng.choice([0, 0, 1, 1, 2])))
        gt_xywh = np.array(gt_xywh, dtype=np.float64).reshape(-1, 4)
        gt_cls = np.array(gt_cls, dtype=np.int64)
        crowd_mask = np.zeros(n_gt, dtype=bool)
        if crowd and n_gt > 2:
            crowd_mask[0] = True

        dets, scores, dcls = [], [], []
        if i != 0:
            for (x, y, w, h), c in zip(gt_xywh, gt_cls):
                for _dup in range(1 + int(rng.random() < 0.25)):
                    if rng.random() < 0.2:
                        continue  # missed
                    jit = _q(rng.normal(0, 0.12, size=4) * np.array([w, h, w, h]))
                    nw, nh = max(1.0, w + jit[2]), max(1.0, h + jit[3])
                    dets.append([x + jit[0], y + jit[1], nw, nh])
                    scores.append(rng.random())
                    dcls.append(int(c) if rng.random() < 0.9 else int(rng.integers(0, 3)))
            n_fp = 110 if i == 2 else int(rng.integers(0, 5))
            for _ in range(n_fp):
                dets.append(_box_of_size(rng, sizes[int(rng.integers(0, 3))], img_w, img_h))
                scores.append(rng.random() * 0.6)
                dcls.append(0 if i == 2 else int(rng.integers(0, 3)))
        scenes.append({
            "size": (int(img_h), int(img_w)),
            "gt_xywh": gt_xywh,
            "gt_cls": gt_cls,
            "gt_crowd": crowd_mask,
            "dt_xywh": np.array(dets, dtype=np.float64).reshape(-1, 4),
            "dt_score": np.array(scores, dtype=np.float32).astype(np.float64),  # Detections keeps float32
            "dt_cls": np.array(dcls, dtype=np.int64),
        })
    return scenes


def _xyxy(xywh):
    out = np.array(xywh, dtype=np.float64).reshape(-1, 4)
    out[:, 2:] += out[:, :2]
    return out


def _feed(ev: DetectionEvaluator, scenes) -> None:
    for i, s in enumerate(scenes):
        ev.update(
            Detections(_xyxy(s["dt_xywh"]), s["dt_score"], s["dt_cls"]),
            _xyxy(s["gt_xywh"]), s["gt_cls"],
            image_size=s["size"], image_id=f"img{i}", gt_iscrowd=s["gt_crowd"],
        )


def _pycocotools_reference(scenes):
    """pycocotools driven directly with hand-made COCO dicts (independent id scheme)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, anns, results = [], [], []
    for i, s in enumerate(scenes):
        img_id = 1000 + 17 * i
        h, w = s["size"]
        images.append({"id": img_id, "height": h, "width": w, "file_name": f"{i}.jpg"})
        for box, c, crowd in zip(s["gt_xywh"], s["gt_cls"], s["gt_crowd"]):
            anns.append({"id": 500 + len(anns), "image_id": img_id, "category_id": SPARSE_CAT_IDS[c],
                         "bbox": [float(v) for v in box], "area": float(box[2] * box[3]),
                         "iscrowd": int(crowd)})
        for box, sc, c in zip(s["dt_xywh"], s["dt_score"], s["dt_cls"]):
            results.append({"image_id": img_id, "category_id": SPARSE_CAT_IDS[c],
                            "bbox": [float(v) for v in box], "score": float(sc)})
    cats = [{"id": cid, "name": n} for cid, n in zip(SPARSE_CAT_IDS, NAMES)]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": anns, "categories": cats}
        gt.createIndex()
        dt = gt.loadRes(results)
        E = COCOeval(gt, dt, "bbox")
        E.evaluate()
        E.accumulate()
        E.summarize()
    stats = np.where(E.stats == -1, np.nan, E.stats)
    prec = E.eval["precision"]  # (T, R, K, A, M), K in sorted SPARSE_CAT_IDS order
    per_class, per_class50 = {}, {}
    for k, name in enumerate(NAMES):
        s = prec[:, :, k, 0, 2]
        per_class[name] = float(np.mean(s[s > -1])) if np.any(s > -1) else math.nan
        s50 = prec[0, :, k, 0, 2]
        per_class50[name] = float(np.mean(s50[s50 > -1])) if np.any(s50 > -1) else math.nan
    return stats, per_class, per_class50, prec


# -- (a) evaluator == pycocotools --------------------------------------------------------------

@pytest.mark.parametrize("seed, crowd", [(0, False), (1, False), (2, True)])
def test_evaluator_reproduces_pycocotools(seed, crowd):
    scenes = _make_scenes(seed, crowd=crowd)
    ev = DetectionEvaluator(NAMES)
    _feed(ev, scenes)
    res = ev.compute()
    ref_stats, ref_ap, ref_ap50, ref_prec = _pycocotools_reference(scenes)

    # the scenes exercise what they should
    assert 0.05 < ref_stats[0] < 0.95 and np.all(np.isfinite(ref_stats[:6]))
    np.testing.assert_allclose(res.coco_stats, ref_stats, rtol=0, atol=1e-12, equal_nan=True)
    assert [res.map50_95, res.map50, res.map75, res.ap_small, res.ap_medium, res.ap_large] == list(
        res.coco_stats[:6])
    for name in NAMES:
        np.testing.assert_allclose(res.per_class_ap[name], ref_ap[name], rtol=0, atol=1e-12, equal_nan=True)
        np.testing.assert_allclose(res.per_class_ap50[name], ref_ap50[name], rtol=0, atol=1e-12, equal_nan=True)
    assert math.isnan(res.per_class_ap["unused"])

    # PR curves: pycocotools' precision at IoU .5 and averaged over .5:.95, -1 -> NaN
    ref = np.where(ref_prec[:, :, :, 0, 2] < 0, np.nan, ref_prec[:, :, :, 0, 2])  # (T, R, K)
    assert res.precision.shape == (2, len(NAMES), 101) and res.recall.shape == (101,)
    np.testing.assert_allclose(res.precision[0], ref[0].T, equal_nan=True)
    np.testing.assert_allclose(res.precision[1], ref.mean(axis=0).T, equal_nan=True)

    n_gt = sum(int((~s["gt_crowd"]).sum()) for s in scenes)
    assert (res.n_images, res.n_gt, res.n_pred) == (len(scenes), n_gt, sum(len(s["dt_score"]) for s in scenes))
    assert sum(res.per_class_n_gt.values()) == n_gt


def test_update_many_equals_update_loop():
    scenes = _make_scenes(3, n_images=4)
    a, b = DetectionEvaluator(NAMES), DetectionEvaluator(NAMES)
    _feed(a, scenes)
    b.update_many(
        [Detections(_xyxy(s["dt_xywh"]), s["dt_score"], s["dt_cls"]) for s in scenes],
        [_xyxy(s["gt_xywh"]) for s in scenes], [s["gt_cls"] for s in scenes],
        image_sizes=[s["size"] for s in scenes],
    )
    ra, rb = a.compute(), b.compute()
    np.testing.assert_array_equal(ra.coco_stats, rb.coco_stats)
    assert ra.ece == rb.ece
    b.reset()
    assert b.n_images == 0 and b.compute().n_images == 0


def test_max_dets_caps_detections():
    # one object, 12 false positives scoring above the true positive
    gt = np.array([[10, 10, 60, 60]], np.float64)
    fps = np.array([[200 + 20 * i, 200, 215 + 20 * i, 215] for i in range(12)], np.float64)
    pred = Detections(np.vstack([fps, gt]), np.r_[np.full(12, 0.9), 0.5], np.zeros(13, int))
    for max_dets, expect_found in [(100, True), (10, False)]:
        ev = DetectionEvaluator(["a"], max_dets=max_dets)
        ev.update(pred, gt, [0])
        res = ev.compute()
        assert bool(res.map50 > 0) is expect_found
        assert res.max_dets == max_dets


# -- (b) perfect / empty -----------------------------------------------------------------------

def test_perfect_predictions_give_map_one():
    scenes = _make_scenes(4, n_images=5)
    ev = DetectionEvaluator(NAMES)
    for s in scenes:
        gt = _xyxy(s["gt_xywh"])
        ev.update(Detections(gt, np.ones(len(gt)), s["gt_cls"]), gt, s["gt_cls"])
    res = ev.compute()
    assert res.map50_95 == res.map50 == res.map75 == 1.0
    assert all(v == 1.0 for k, v in res.per_class_ap.items() if k != "unused")
    assert res.ece == 0.0


def test_no_predictions_give_zero():
    scenes = _make_scenes(5, n_images=4)
    ev = DetectionEvaluator(NAMES)
    for s in scenes:
        ev.update(Detections.empty(), _xyxy(s["gt_xywh"]), s["gt_cls"])
    res = ev.compute()
    assert res.map50_95 == res.map50 == res.map75 == 0.0
    assert res.per_class_ap["car"] == 0.0 and math.isnan(res.per_class_ap["unused"])
    assert res.n_pred == 0 and math.isnan(res.ece)
    json.dumps(res.to_dict(include_curves=True), allow_nan=False)


def test_no_ground_truth_gives_nan_and_all_wrong_ece():
    ev = DetectionEvaluator(["a", "b"])
    ev.update(Detections([[0, 0, 10, 10], [5, 5, 50, 50]], [0.9, 0.9], [0, 1]), np.zeros((0, 4)), [])
    res = ev.compute()
    assert np.all(np.isnan(res.coco_stats)) and np.all(np.isnan(res.precision))
    assert res.ece == pytest.approx(0.9)
    assert "-" in res.summary_line()


def test_empty_evaluator():
    res = DetectionEvaluator(["a"]).compute()
    assert res.n_images == 0 and math.isnan(res.map50_95) and math.isnan(res.ece)


def test_small_only_scene_has_nan_large():
    gt = np.array([[0, 0, 10, 10], [50, 50, 70, 62]], np.float64)
    ev = DetectionEvaluator(["a"])
    ev.update(Detections(gt, [0.8, 0.7], [0, 0]), gt, [0, 0])
    res = ev.compute()
    assert res.ap_small == 1.0 and math.isnan(res.ap_medium) and math.isnan(res.ap_large)


def _det1():
    return Detections([[0, 0, 1, 1]], [0.5], [0])


@pytest.mark.parametrize("call, exc", [
    (lambda ev: ev.update(_det1(), np.zeros((2, 3)), [0, 0]), ValueError),  # gt shape
    (lambda ev: ev.update(_det1(), np.zeros((2, 4)), [0]), ValueError),  # class ids length
    (lambda ev: ev.update(_det1(), np.zeros((1, 4)), [5]), ValueError),  # gt class out of range
    (lambda ev: ev.update(Detections([[0, 0, 1, 1]], [0.5], [9]), np.zeros((0, 4)), []), ValueError),
    (lambda ev: ev.update(_det1(), np.array([[5, 5, 1, 1]]), [0]), ValueError),  # x2 < x1
    (lambda ev: ev.update(_det1(), np.zeros((0, 4)), [], image_size=(1, 2, 3)), ValueError),
    (lambda ev: [ev.update(_det1(), np.zeros((0, 4)), [], image_id="x") for _ in range(2)], ValueError),
    (lambda ev: ev.update(np.zeros((1, 4)), np.zeros((0, 4)), []), TypeError),
    (lambda ev: ev.update_many([_det1()], [], []), ValueError),
    (lambda ev: DetectionEvaluator(["a", "a"]), ValueError),
    (lambda ev: DetectionEvaluator([]), ValueError),
    (lambda ev: DetectionEvaluator(["a"], max_dets=5), ValueError),
])
def test_invalid_input_raises(call, exc):
    with pytest.raises(exc):
        call(DetectionEvaluator(["a", "b"]))


def test_result_rendering():
    ev = DetectionEvaluator(NAMES)
    _feed(ev, _make_scenes(6, n_images=3))
    res = ev.compute()
    d = res.to_dict(include_curves=True)
    json.dumps(d, allow_nan=False)
    assert d["per_class_ap"]["unused"] is None and list(d["coco_stats"]) == list(COCO_STATS_NAMES)
    assert len(d["precision"]["iou50"]) == len(NAMES) and len(d["recall"]) == 101
    table = res.table()
    assert all(f"| {n} |" in table for n in NAMES) and "| all |" in table and "mAP50-95" in table
    assert f"{res.map50_95:.3f}" in res.summary_line() and str(res) == res.summary_line()


# -- (c) matching and calibration error --------------------------------------------------------

def _iou_slow(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _greedy_match_slow(pb, ps, pc, gb, gc, thr=0.5):
    order = sorted(range(len(ps)), key=lambda i: (-ps[i], i))
    taken, out = set(), [-1] * len(ps)
    for i in order:
        best, best_iou = -1, -1.0
        for j in range(len(gb)):
            if j in taken or gc[j] != pc[i]:
                continue
            iou = _iou_slow(pb[i], gb[j])
            if iou >= thr and iou > best_iou:
                best, best_iou = j, iou
        if best >= 0:
            out[i] = best
            taken.add(best)
    return out


def _ece_slow(scores, correct, n_bins):
    edges = np.linspace(0, 1, n_bins + 1)
    total, n = 0.0, len(scores)
    for b in range(n_bins):
        last = b == n_bins - 1
        idx = [i for i, s in enumerate(scores) if edges[b] <= s and (s < edges[b + 1] or (last and s <= 1.0))]
        if idx:
            acc = sum(bool(correct[i]) for i in idx) / len(idx)
            conf = sum(scores[i] for i in idx) / len(idx)
            total += len(idx) / n * abs(acc - conf)
    return total


def test_greedy_match_hand_case():
    gt = np.array([[0, 0, 10, 10], [2, 0, 12, 10]], np.float64)
    pred = np.array([
        [0.5, 0, 10.5, 10],  # score .9: IoU .90 with gt0, .74 with gt1 -> gt0
        [0, 0, 10, 10],  # score .8: IoU 1 with gt0 (taken), .67 with gt1 -> gt1
        [1, 0, 11, 10],  # score .7: both taken -> unmatched
        [2, 0, 12, 10],  # score .95 but class 1: no class-1 gt -> unmatched
    ], np.float64)
    out = greedy_match(pred, [0.9, 0.8, 0.7, 0.95], [0, 0, 0, 1], gt, [0, 0])
    assert out.tolist() == [0, 1, -1, -1]


@pytest.mark.parametrize("pred_box, matched", [
    ([0, 0, 10, 5], True),  # IoU exactly 0.5: inclusive
    ([0, 0, 10, 4.75], False),
    ([0, 0, 10, 10], True),
])
def test_greedy_match_threshold_is_inclusive(pred_box, matched):
    out = greedy_match(np.array([pred_box]), [0.5], [0], np.array([[0, 0, 10, 10]]), [0])
    assert bool(out[0] >= 0) is matched


def test_greedy_match_empty():
    assert greedy_match(np.zeros((0, 4)), [], [], np.zeros((3, 4)), [0, 1, 2]).shape == (0,)
    assert greedy_match(np.ones((2, 4)), [0.1, 0.2], [0, 0], np.zeros((0, 4)), []).tolist() == [-1, -1]


def test_greedy_match_against_slow_loop():
    rng = np.random.default_rng(0)
    for _ in range(150):
        n_gt, n_pred = int(rng.integers(0, 8)), int(rng.integers(0, 12))
        # coarse grid: many equal IoUs, boxes exactly at the threshold, tied scores
        g = rng.integers(0, 6, size=(n_gt, 2)).astype(float)
        gb = np.hstack([g, g + rng.integers(1, 4, size=(n_gt, 2))])
        src = gb[rng.integers(0, max(n_gt, 1), size=n_pred)] if n_gt else np.zeros((n_pred, 4))
        pb = src + rng.integers(-1, 2, size=(n_pred, 4))
        pb[:, 2:] = np.maximum(pb[:, 2:], pb[:, :2] + 1)
        ps = np.round(rng.random(n_pred), 1)
        pc, gc = rng.integers(0, 2, size=n_pred), rng.integers(0, 2, size=n_gt)
        fast = greedy_match(pb, ps, pc, gb, gc)
        assert fast.tolist() == _greedy_match_slow(pb.tolist(), ps.tolist(), pc.tolist(), gb.tolist(), gc.tolist())


def test_box_iou_against_slow():
    rng = np.random.default_rng(1)
    a = rng.uniform(0, 50, size=(6, 4))
    a[:, 2:] += a[:, :2]
    b = rng.uniform(0, 50, size=(5, 4))
    b[:, 2:] = b[:, :2]  # degenerate boxes: IoU 0, not NaN
    b[:3, 2:] += 20
    ref = np.array([[_iou_slow(x, y) for y in b] for x in a])
    np.testing.assert_allclose(box_iou(a, b), ref, rtol=1e-12, atol=0)


@pytest.mark.parametrize("scores, correct, n_bins, expected", [
    ([0.9] * 5, [False] * 5, 15, 0.9),  # all wrong at 0.9
    ([1.0, 1.0], [True, True], 15, 0.0),  # all right at 1.0 (last bin is closed)
    ([0.0, 0.0], [False, False], 10, 0.0),
    # bins of width 0.1: bin 1 acc .5 conf .15 -> .35 * 2/4; bin 9 acc 1 conf .95 -> .05 * 2/4
    ([0.15, 0.15, 0.95, 0.95], [False, True, True, True], 10, 0.2),
    ([0.3, 0.7], [True, False], 1, 0.0),  # one bin: acc .5, conf .5
    ([0.3, 0.7], [False, False], 1, 0.5),
])
def test_ece_hand_cases(scores, correct, n_bins, expected):
    assert expected_calibration_error(scores, correct, n_bins) == pytest.approx(expected, abs=1e-12)


def test_ece_against_slow_loop():
    rng = np.random.default_rng(2)
    for n_bins in (1, 10, 15):
        scores = np.concatenate([rng.random(300), np.linspace(0, 1, n_bins + 1)])  # edges included
        correct = rng.random(scores.size) < scores ** 2
        assert expected_calibration_error(scores, correct, n_bins) == pytest.approx(
            _ece_slow(scores.tolist(), correct.tolist(), n_bins), abs=1e-12)
    rel = reliability_diagram(scores, correct, 15)
    assert rel.n == scores.size and rel.counts.shape == (15,)
    assert rel.mce >= rel.ece


def test_ece_perfectly_calibrated_is_near_zero():
    rng = np.random.default_rng(3)
    scores = rng.random(200_000)
    correct = rng.random(scores.size) < scores
    assert expected_calibration_error(scores, correct) < 0.01
    assert expected_calibration_error(scores, ~correct) > 0.3


def test_ece_rejects_bad_input():
    assert math.isnan(expected_calibration_error([], []))
    with pytest.raises(ValueError):
        expected_calibration_error([1.5], [True])
    with pytest.raises(ValueError):
        expected_calibration_error([0.5, 0.5], [True])
    with pytest.raises(ValueError):
        expected_calibration_error([0.5], [True], n_bins=0)


def test_evaluator_ece_uses_greedy_matching():
    scenes = _make_scenes(7, n_images=4)
    ev = DetectionEvaluator(NAMES, ece_bins=10)
    _feed(ev, scenes)
    scores, correct = [], []
    for s in scenes:
        gb, pb = _xyxy(s["gt_xywh"]).tolist(), _xyxy(s["dt_xywh"]).tolist()
        m = _greedy_match_slow(pb, s["dt_score"].tolist(), s["dt_cls"].tolist(), gb, s["gt_cls"].tolist())
        scores += s["dt_score"].tolist()
        correct += [j >= 0 for j in m]
    assert ev.compute().ece == pytest.approx(_ece_slow(scores, correct, 10), abs=1e-12)


# -- (d) plots ---------------------------------------------------------------------------------

def _assert_png(path: Path):
    data = path.read_bytes()
    assert len(data) > 1000 and data[:8] == b"\x89PNG\r\n\x1a\n"


def test_plots_write_pngs(tmp_path):
    pytest.importorskip("matplotlib")
    ev = DetectionEvaluator(NAMES)
    _feed(ev, _make_scenes(8, n_images=3))
    res = ev.compute()
    _assert_png(plot_pr_curves(res, tmp_path / "out" / "pr.png"))
    _assert_png(plot_reliability(res, tmp_path / "out" / "reliability.png"))
    _assert_png(plot_reliability(res.reliability, tmp_path / "rel2.png"))
    # degenerate results still plot
    empty = DetectionEvaluator(["a"])
    empty.update(Detections.empty(), np.zeros((0, 4)), [])
    res0 = empty.compute()
    _assert_png(plot_pr_curves(res0, tmp_path / "pr0.png"))
    _assert_png(plot_reliability(res0, tmp_path / "rel0.png"))
    leftovers = sorted(p.name for p in tmp_path.rglob("*") if p.is_file() and p.name.startswith("."))
    assert leftovers == []


def test_import_needs_no_torch_matplotlib_or_pycocotools():
    code = (
        "import sys, yolo_edge.evaluate\n"
        "bad = [m for m in ('torch', 'matplotlib', 'pycocotools') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)
