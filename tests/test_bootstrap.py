"""Image bootstrap of mAP: the re-accumulation equals pycocotools on the full set, and the
interval of a model against itself is a point."""

import numpy as np
import pytest

pytest.importorskip("pycocotools")

from yolo_edge.detections import Detections  # noqa: E402
from yolo_edge.evaluate.bootstrap import paired_bootstrap  # noqa: E402
from yolo_edge.evaluate.coco import DetectionEvaluator  # noqa: E402


def noisy_evaluator(seed: int, n_images: int = 30, jitter: float = 6.0) -> DetectionEvaluator:
    rng = np.random.default_rng(0)
    noise = np.random.default_rng(seed)
    ev = DetectionEvaluator(("a", "b", "c"))
    for i in range(n_images):
        g = rng.integers(1, 6)
        xy = rng.uniform(0, 300, (g, 2))
        wh = rng.uniform(8, 120, (g, 2))
        gt = np.concatenate([xy, xy + wh], axis=1)
        cls = rng.integers(0, 3, g)
        keep = noise.random(g) > 0.15
        pred = gt[keep] + noise.normal(0, jitter, (int(keep.sum()), 4))
        extra = noise.uniform(0, 300, (2, 4))
        extra[:, 2:] = extra[:, :2] + 30
        boxes = np.concatenate([pred, extra]).astype(np.float32)
        scores = np.concatenate([noise.uniform(0.3, 1.0, int(keep.sum())), noise.uniform(0, 0.5, 2)]).astype(np.float32)
        ids = np.concatenate([cls[keep], noise.integers(0, 3, 2)])
        ev.update(Detections(boxes, scores, ids), gt, cls, image_size=(480, 640))
    return ev


def test_full_set_equals_pycocotools():
    evs = [noisy_evaluator(1), noisy_evaluator(2, jitter=12.0)]
    b = paired_bootstrap(evs, n=20)
    for i, ev in enumerate(evs):
        assert b.point[i] == pytest.approx(ev.compute().map50_95, abs=1e-9)
    lo, hi = b.interval(1, 0)
    assert lo < hi and b.samples.shape == (20, 2)


def test_a_model_against_itself_has_a_zero_interval():
    ev = noisy_evaluator(3)
    b = paired_bootstrap([ev, ev], n=30)
    assert b.interval(1, 0) == (0.0, 0.0)
    assert b.std(1, 0) == 0.0


def test_budget_loop_refuses_a_validation_set_too_small_for_the_budget():
    from yolo_edge.precision.pipeline import measurement_noise

    a, b = noisy_evaluator(1), noisy_evaluator(2, jitter=12.0)
    tight = measurement_noise(a, b, budget=0.1, n=50)
    assert tight["too_noisy"] and "follows noise" in tight["warning"] and "30 validation images" in tight["warning"]
    lo, hi = tight["ci90"]
    assert lo <= tight["delta"] <= hi
    loose = measurement_noise(a, b, budget=None, n=50)
    assert not loose["too_noisy"] and "warning" not in loose
    # the agreement with the reference model's own detections: 1 for a model against itself, less
    # for the jittered one, and the same number agreement() gives
    from yolo_edge.evaluate.bootstrap import agreement

    assert measurement_noise(a, a, budget=None, n=10)["agreement_map50_95"] == pytest.approx(1.0)
    assert loose["agreement_map50_95"] == pytest.approx(agreement(b, a).compute().map50_95)
    assert loose["agreement_map50_95"] < 0.9
    assert "agreement with FP32 detections" in loose["summary"]


# --- agreement with a reference model's detections ------------------------------------------------
def _ev(dets_per_image, names=("a", "b")):
    from yolo_edge.detections import Detections
    from yolo_edge.evaluate.coco import DetectionEvaluator

    ev = DetectionEvaluator(list(names))
    for boxes, scores, cls in dets_per_image:
        ev.update(Detections(np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32),
                             np.asarray(cls, np.int32)), np.zeros((0, 4)), np.zeros(0), image_size=(200, 200))
    return ev


def test_agreement_is_one_for_the_reference_itself_and_ignores_its_weak_boxes():
    from yolo_edge.evaluate.bootstrap import agreement

    ref = _ev([([[10, 10, 60, 60], [100, 100, 150, 180], [5, 5, 20, 20]], [0.9, 0.6, 0.1], [0, 1, 1]),
               ([[30, 40, 90, 120]], [0.8], [0])])
    assert agreement(ref, ref).compute().map50_95 == pytest.approx(1.0)


def test_agreement_against_hand_computed_average_precision():
    """Reference labels: class a one box per image, class b one box (image 0). The candidate finds
    both class-a boxes exactly and misses b: AP(a) = 1, AP(b) = 0, mAP 0.5 (pycocotools averages
    over classes with labels). Then one class-a box shrunk to IoU 0.725 with its label (below)."""
    from yolo_edge.evaluate.bootstrap import agreement

    ref = _ev([([[10, 10, 60, 60], [100, 100, 150, 180]], [0.9, 0.6], [0, 1]), ([[30, 40, 90, 120]], [0.8], [0])])
    miss_b = _ev([([[10, 10, 60, 60]], [0.7], [0]), ([[30, 40, 90, 120]], [0.75], [0])])
    assert agreement(miss_b, ref).compute().map50_95 == pytest.approx(0.5)
    # box [30,40,90,120] (60x80) against [30,40,90,98] (60x58): IoU = 58 / 80 = 0.725 -> matches at 0.50 … 0.70 (5 of 10)
    shifted = _ev([([[10, 10, 60, 60]], [0.7], [0]), ([[30, 40, 90, 98]], [0.75], [0])])
    # thresholds 0.50-0.70: both hit, AP 1; 0.75-0.95: the shifted box (ranked first) is a false positive,
    # then a hit at recall 0.5 with precision 0.5 -> COCO's 101-point interpolated AP = 51 * 0.5 / 101
    ap_a = (5 * 1.0 + 5 * (51 * 0.5 / 101)) / 10
    assert agreement(shifted, ref).compute().map50_95 == pytest.approx((ap_a + 0.0) / 2, abs=1e-6)


def test_agreement_refuses_different_image_counts():
    from yolo_edge.evaluate.bootstrap import agreement

    with pytest.raises(ValueError, match="images"):
        agreement(_ev([([], [], [])]), _ev([([], [], [])] * 2))
