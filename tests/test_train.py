"""Trainer pieces: assigner and losses on hand-computed cases, augmentation geometry, and a short
overfit run that must lower the loss. Small images (64-128 px) and batch 2 keep it quick on CPU."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from yolo_edge.train.assigner import TaskAlignedAssigner  # noqa: E402
from yolo_edge.train.augment import (  # noqa: E402
    AugmentConfig,
    Augmenter,
    affine_matrix,
    clip_boxes,
    hflip,
    mosaic4,
    transform_boxes,
    warp,
)
from yolo_edge.train.loss import DetectionLoss, bbox_iou, dfl_loss  # noqa: E402

# ----------------------------------------------------------------------------- assigner

# A 4x4 grid at stride 8 (a 32x32 input): anchor k = 4 * i + j has centre (8j + 4, 8i + 4).
#
#   GT0 (0, 0, 16, 16), class 0: centres inside -> anchors 0, 1, 4, 5
#   GT1 (8, 8, 32, 24), class 2: centres inside -> anchors 5, 6, 7, 9, 10, 11
#
# Predicted boxes (everything else is (0, 0, 1, 1)), IoU with GT0 / GT1:
#   a0  (0, 0, 16, 16)   1         / -
#   a1  (0, 0, 16, 8)    128/256   / -
#   a5  (8, 8, 24, 24)   64/448    / 256/384
#   a6  (16, 8, 32, 16)  -         / 128/384
#   a10 (8, 8, 32, 24)   -         / 1
#   a4  (0, 0, 1, 1)     1/256     / -
# All class scores 0.5, so the metric 0.5**alpha * IoU**beta ranks by IoU. With topk = 3:
#   GT0 takes a0, a1, a5 (a4 is fourth); GT1 takes a10, a5, a6 (a7, a9, a11 have IoU 0).
#   a5 is claimed twice and keeps GT1 (IoU 2/3 > 1/7).
# Soft targets = metric / max metric of the GT * max IoU of the GT = (IoU / max IoU)**beta here:
#   a0: 1, a1: (1/2)**6, a10: 1, a5: (2/3)**6, a6: (1/3)**6.

BETA = 6.0


def _grid():
    ys, xs = torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="ij")
    return torch.stack([xs.reshape(-1) * 8 + 4, ys.reshape(-1) * 8 + 4], dim=1)  # (16, 2)


def _hand_case():
    pd_boxes = torch.tensor([[0.0, 0, 1, 1]]).repeat(16, 1)
    pd_boxes[0] = torch.tensor([0.0, 0, 16, 16])
    pd_boxes[1] = torch.tensor([0.0, 0, 16, 8])
    pd_boxes[5] = torch.tensor([8.0, 8, 24, 24])
    pd_boxes[6] = torch.tensor([16.0, 8, 32, 16])
    pd_boxes[10] = torch.tensor([8.0, 8, 32, 24])
    gt_boxes = torch.tensor([[0.0, 0, 16, 16], [8, 8, 32, 24], [0, 0, 0, 0]])  # third slot is padding
    gt_labels = torch.tensor([0, 2, 1])
    mask_gt = torch.tensor([True, True, False])
    return pd_boxes, gt_boxes, gt_labels, mask_gt


def test_assigner_hand_case_with_padding_and_empty_image():
    pd_boxes, gt_boxes, gt_labels, mask_gt = _hand_case()
    B, A, C = 2, 16, 3
    pd_scores = torch.full((B, A, C), 0.5)
    pd = torch.stack([pd_boxes, pd_boxes])
    gtb = torch.stack([gt_boxes, gt_boxes])
    gtl = torch.stack([gt_labels, gt_labels])
    mask = torch.stack([mask_gt, torch.zeros(3, dtype=torch.bool)])  # image 1 has no GT
    a = TaskAlignedAssigner(topk=3, alpha=0.5, beta=BETA)(pd_scores, pd, _grid(), gtl, gtb, mask)

    expected = {0: (0, 1.0), 1: (0, 0.5**BETA), 5: (2, (2 / 3) ** BETA), 6: (2, (1 / 3) ** BETA), 10: (2, 1.0)}
    assert sorted(torch.nonzero(a.fg_mask[0]).flatten().tolist()) == sorted(expected)
    assert not a.fg_mask[1].any() and a.scores[1].abs().sum() == 0
    for k, (cls, soft) in expected.items():
        assert a.labels[0, k] == cls
        gt = 0 if cls == 0 else 1
        assert a.gt_idx[0, k] == gt
        torch.testing.assert_close(a.bboxes[0, k], gt_boxes[gt])
        want = torch.zeros(C)
        want[cls] = soft
        torch.testing.assert_close(a.scores[0, k], want, atol=1e-5, rtol=1e-4)
    negatives = ~a.fg_mask[0]
    assert a.scores[0][negatives].abs().sum() == 0


def test_assigner_no_gt_at_all():
    pd_scores = torch.rand(2, 16, 3)
    pd = torch.rand(2, 16, 4) * 16
    pd[..., 2:] += 16
    a = TaskAlignedAssigner()(pd_scores, pd, _grid(), torch.zeros(2, 0), torch.zeros(2, 0, 4), torch.zeros(2, 0, dtype=bool))
    assert not a.fg_mask.any() and a.scores.shape == (2, 16, 3) and a.scores.sum() == 0


def test_assigner_class_score_enters_metric():
    """With equal IoUs the anchor with the higher class score wins the single top-1 slot."""
    pts = torch.tensor([[4.0, 4.0], [12.0, 4.0]])
    pd = torch.tensor([[[0.0, 0, 16, 8], [0, 0, 16, 8]]])
    scores = torch.tensor([[[0.2, 0.0], [0.0, 0.9]]])  # class 0: a0 = 0.2, a1 = 0.0
    a = TaskAlignedAssigner(topk=1)(scores, pd, pts, torch.tensor([[0]]), torch.tensor([[[0.0, 0, 16, 8]]]),
                                    torch.tensor([[True]]))
    assert a.fg_mask[0].tolist() == [True, False]


# ----------------------------------------------------------------------------- losses


def test_ciou_identical_boxes_is_one():
    b = torch.tensor([[10.0, 20, 50, 80], [0, 0, 3, 7]])
    torch.testing.assert_close(bbox_iou(b, b, CIoU=True), torch.ones(2), atol=1e-6, rtol=0)


def test_ciou_hand_computed():
    b1 = torch.tensor([0.0, 0, 2, 2])  # w1 = h1 = 2, centre (1, 1)
    b2 = torch.tensor([3.0, 0, 7, 2])  # w2 = 4, h2 = 2, centre (5, 1); disjoint -> IoU 0
    iou = 0.0
    rho2 = (5 - 1) ** 2 + (1 - 1) ** 2  # 16
    c2 = 7**2 + 2**2  # enclosing box 7 x 2 -> 53
    v = 4 / math.pi**2 * (math.atan(4 / 2) - math.atan(2 / 2)) ** 2
    alpha = v / (v - iou + 1)
    want = iou - (rho2 / c2 + alpha * v)
    got = bbox_iou(b1[None], b2[None], CIoU=True)[0]
    assert abs(float(got) - want) < 1e-5

    b3 = torch.tensor([1.0, 0, 3, 2])  # overlaps b1 on 1 x 2: IoU = 2 / 6
    iou = 2 / 6
    rho2 = 1.0
    c2 = 3**2 + 2**2
    want = iou - rho2 / c2  # same aspect -> v = 0
    assert abs(float(bbox_iou(b1[None], b3[None], CIoU=True)[0]) - want) < 1e-5
    assert abs(float(bbox_iou(b1[None], b3[None])[0]) - iou) < 1e-5


def test_dfl_matches_manual_cross_entropy():
    torch.manual_seed(0)
    R = 16
    logits = torch.randn(3, 4, R)
    target = torch.tensor([[0.0, 2.3, 7.75, 14.5], [15.0, 0.5, 3.0, 9.99], [1.25, 1.25, 20.0, -1.0]])
    got = dfl_loss(logits, target, R)
    logp = logits.log_softmax(-1)
    want = torch.zeros(3)
    for n in range(3):
        total = 0.0
        for k in range(4):
            t = min(max(float(target[n, k]), 0.0), R - 1 - 0.01)
            lo = math.floor(t)
            total += -(lo + 1 - t) * float(logp[n, k, lo]) - (t - lo) * float(logp[n, k, lo + 1])
        want[n] = total / 4
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


class _Cfg:
    nc, reg_max, strides = 3, 16, (8, 16, 32)


def test_detection_loss_shapes_and_empty_targets():
    feats = [torch.randn(2, 4 * 16 + 3, 64 // s, 64 // s, requires_grad=True) for s in (8, 16, 32)]
    loss_fn = DetectionLoss(_Cfg())
    total, parts = loss_fn(feats, torch.zeros(0, 6))
    assert set(parts) == {"box", "cls", "dfl"} and parts["box"] == 0 and parts["dfl"] == 0
    total.backward()
    assert all(f.grad is not None for f in feats)
    targets = torch.tensor([[0, 1, 8.0, 8, 40, 30], [1, 2, 20, 20, 60, 60], [1, 0, 0, 0, 12, 12]])
    total, parts = loss_fn(feats, targets)
    assert total.ndim == 0 and torch.isfinite(total) and parts["box"] > 0 and parts["dfl"] > 0


# ----------------------------------------------------------------------------- augmentation


def _painted(size=128, box=(30, 20, 70, 50)):
    img = np.full((size, size, 3), 114, np.uint8)
    x1, y1, x2, y2 = box
    img[y1:y2, x1:x2] = 255
    return img, np.array([box], np.float32)


def _bright_box(img):
    ys, xs = np.nonzero(img[..., 0] > 184)  # > halfway between 114 and 255
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


def test_flip_twice_is_identity():
    img, boxes = _painted()
    f_img, f_boxes = hflip(img, boxes)
    np.testing.assert_array_equal(f_boxes, [[128 - 70, 20, 128 - 30, 50]])
    np.testing.assert_array_equal(_bright_box(f_img), f_boxes[0])
    img2, boxes2 = hflip(f_img, f_boxes)
    np.testing.assert_array_equal(img2, img)
    np.testing.assert_array_equal(boxes2, boxes)


@pytest.mark.parametrize("scale, centre", [(1.5, (64, 64)), (0.5, (40, 70)), (1.0, (90, 30))])
def test_affine_moves_pixels_where_boxes_say(scale, centre):
    img, boxes = _painted()
    M = affine_matrix((64, 64), centre, scale)
    out = warp(img, M, (128, 128))
    want = clip_boxes(transform_boxes(boxes, M), (128, 128))[0]
    np.testing.assert_allclose(_bright_box(out), want, atol=1.0)


def test_augmenter_random_crops_keep_boxes_on_the_object():
    img, boxes = _painted()
    aug = Augmenter(AugmentConfig(hsv_h=0, hsv_s=0, hsv_v=0, min_area_frac=0.6))
    rng = np.random.default_rng(0)
    seen = 0
    for _ in range(20):
        out, b, c = aug(img.copy(), boxes, np.array([1]), rng, out_size=(64, 64))
        assert out.shape == (64, 64, 3)
        if len(b):
            seen += 1
            assert c.tolist() == [1]
            assert (b[:, :2] >= 0).all() and (b[:, 2:] <= 64).all()
            np.testing.assert_allclose(_bright_box(out), b[0], atol=1.0)
    assert seen >= 10


def test_mosaic_offsets_boxes_per_quadrant():
    ims = [np.full((32, 32, 3), v, np.uint8) for v in (10, 20, 30, 40)]
    bx = [np.array([[1, 2, 5, 6]], np.float32)] * 4
    canvas, b, c = mosaic4(ims, bx, [np.array([k]) for k in range(4)])
    assert canvas.shape == (64, 64, 3) and canvas[40, 40, 0] == 40 and canvas[5, 40, 0] == 20
    np.testing.assert_array_equal(b[3], [33, 34, 37, 38])
    assert c.tolist() == [0, 1, 2, 3]


# ----------------------------------------------------------------------------- training


def _tiny_scenes(n_images: int, size: int, seed: int = 0, min_objects: int = 2):
    """The first ``n_images`` synthetic scenes of ``size`` px with at least ``min_objects`` objects."""
    from yolo_edge.data.synthetic import SyntheticScenes

    ds = SyntheticScenes(64, seed=seed, size=size)
    return [ds[i] for i in range(len(ds)) if len(ds[i].xyxy) >= min_objects][:n_images]


def test_a_few_steps_overfit_a_tiny_set():
    from yolo_edge.model import YOLO, ModelConfig
    from yolo_edge.train.trainer import TrainConfig, TrainSamples, build_optimizer, collate

    torch.manual_seed(0)
    scenes = _tiny_scenes(2, 128)
    still = AugmentConfig(scale=0, translate=0, fliplr=0, hsv_h=0, hsv_s=0, hsv_v=0)
    samples = TrainSamples(scenes, 128, None, still)
    images, targets = collate([samples[0], samples[1]])
    assert targets.shape[1] == 6 and len(targets) >= 4
    x = images.float() / 255
    model = YOLO(ModelConfig(scale="n", nc=8)).train()
    loss_fn = DetectionLoss(model.cfg)
    opt = build_optimizer(model, TrainConfig(lr0=0.002))
    losses = []
    for _ in range(25):
        loss, parts = loss_fn(model(x), targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert all(math.isfinite(v) for v in losses)
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:3]), losses


def test_train_writes_checkpoints_and_resumes(tmp_path):
    from yolo_edge.data.synthetic import SyntheticScenes
    from yolo_edge.model import load_checkpoint
    from yolo_edge.train.trainer import TrainConfig, train, val

    train_ds, val_ds = SyntheticScenes(4, seed=0, size=64), SyntheticScenes(2, seed=1, size=(48, 64))
    common = dict(batch=2, imgsz=64, train_data=train_ds, val_data=val_ds, out=str(tmp_path), verbose=False)
    best = train(TrainConfig(epochs=1, train_crop=32, warmup_min_iters=1, augment=AugmentConfig(mosaic=1.0), **common))
    assert best == tmp_path / "best.pt" and best.exists()
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    assert last["train_state"]["epoch"] == 1 and last["train_state"]["train_config"]["train_crop"] == 32
    load_checkpoint(tmp_path / "last.pt")  # a regular checkpoint too (EMA weights)

    train(TrainConfig(epochs=2, resume=True, **common))
    rows = (tmp_path / "results.csv").read_text().strip().splitlines()
    assert len(rows) == 3 and rows[0].startswith("epoch,")  # header + epochs 1 and 2
    assert torch.load(tmp_path / "last.pt", weights_only=True)["train_state"]["epoch"] == 2
    res = val(best, val_ds, imgsz=64, batch=2, verbose=False)
    assert res.n_images == 2 and 0.0 <= res.map50_95 <= 1.0


def test_capped_postprocess_equals_reference_without_cap():
    from yolo_edge.postprocess import postprocess_raw
    from yolo_edge.spec import NmsSpec
    from yolo_edge.train.trainer import postprocess_capped

    rng = np.random.default_rng(0)
    feats = [rng.normal(0, 2, (2, 4 * 16 + 3, 64 // s, 64 // s)).astype(np.float32) for s in (8, 16, 32)]
    spec = NmsSpec(score_threshold=0.05, iou_threshold=0.6, max_det=300)
    ref = postprocess_raw(feats, (8, 16, 32), 16, spec)
    got = postprocess_capped(feats, (8, 16, 32), 16, spec, max_candidates=10**6)
    for r, g in zip(ref, got):
        np.testing.assert_allclose(g.xyxy, r.xyxy, atol=1e-4)
        np.testing.assert_array_equal(g.class_ids, r.class_ids)
    capped = postprocess_capped(feats, (8, 16, 32), 16, spec, max_candidates=20)
    assert all(len(c) <= 20 for c in capped) and all(len(c) > 0 for c in capped)
