"""Image-bootstrap confidence intervals for mAP and for the difference of two models' mAP.

A validation set of a few dozen images gives an mAP whose noise easily exceeds a 1-point budget.
:func:`paired_bootstrap` resamples the *images* with replacement (the same resample for every
model, so the difference keeps its pairing) and recomputes mAP50-95 on each resample:

    evs = [collect(detector_fp32, ds), collect(detector_int8, ds)]
    d = paired_bootstrap(evs, n=200)
    lo, hi = d.interval(1, 0)          # 90 % interval of mAP(int8) - mAP(fp32), points

pycocotools matches detections to ground truth once per model (``COCOeval.evaluate``, per image);
each resample only re-accumulates the per-image matches over the drawn images (the arithmetic of
``COCOeval.accumulate``, area "all", the evaluator's ``max_dets``, vectorised: a resample of 64
images and 80 classes takes milliseconds). ``tests/test_bootstrap.py`` holds the full-set value
equal to pycocotools' mAP.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

import numpy as np

from ..deps import require
from .coco import DetectionEvaluator


def collect(detector, dataset, batch: int = 8, desc: str | None = None) -> DetectionEvaluator:
    """Run ``detector`` over ``dataset`` into a :class:`DetectionEvaluator` (not yet computed)."""
    from ..deps import progress

    ev = DetectionEvaluator(detector.names or getattr(dataset, "names", ()))
    n = len(dataset)
    bar = progress(total=n, desc=desc or "val", unit="img", disable=desc is None)
    for start in range(0, n, batch):
        samples = [dataset[i] for i in range(start, min(n, start + batch))]
        for s, d in zip(samples, detector([s.image for s in samples])):
            ev.update(d, s.xyxy, s.class_ids, image_size=s.image.shape[:2], image_id=s.image_id)
        if bar is not None and hasattr(bar, "update"):
            bar.update(len(samples))
    if bar is not None and hasattr(bar, "close"):
        bar.close()
    return ev


AGREEMENT_CONF = 0.25  # the deploy threshold: reference detections at or above it are the "labels"


def agreement(ev: DetectionEvaluator, reference: DetectionEvaluator, conf: float = AGREEMENT_CONF
              ) -> DetectionEvaluator:
    """An evaluator that scores ``ev``'s detections against ``reference``'s detections (those with a
    score ``>= conf``) as ground truth, image by image: how closely a quantized model reproduces the
    FP32 model's boxes, classes and ranking. ``.compute().map50_95`` is 1.0 for a model that
    reproduces them (and adds nothing scored above them). Unlike ΔmAP against labels it does not
    depend on whether a change happens to hit or miss a labelled object, so small changes move it
    less at random: the FP32-scale and FP16-scale INT8 files of YOLOv5n, the same quantization,
    differ by 0.5-0.9 points of ΔmAP on 64 coco128 images but by 0.5-1.9 points of agreement out of
    ~88. Both evaluators must hold the same images in the same order."""
    if ev.n_images != reference.n_images:
        raise ValueError(f"{ev.n_images} images against {reference.n_images} in the reference")
    from ..detections import Detections

    out = DetectionEvaluator(ev.names, max_dets=ev.max_dets)
    def ordered(b):  # corners ordered: a label must be, and both sides alike
        return np.concatenate([np.minimum(b[:, :2], b[:, 2:]), np.maximum(b[:, :2], b[:, 2:])], 1)

    for img, ref in zip(ev._images, reference._images):
        keep = ref.pred_scores >= conf
        out.update(Detections(ordered(img.pred_xyxy).astype(np.float32), img.pred_scores.astype(np.float32),
                              img.pred_class_ids.astype(np.int32)),
                   ordered(ref.pred_xyxy[keep]), ref.pred_class_ids[keep], image_size=img.size)
    return out


def _matched(ev: DetectionEvaluator):
    """``COCOeval`` after ``evaluate()`` (area all, ``max_dets``), for re-accumulation."""
    coco_mod = require("pycocotools.coco", extra="eval")
    cocoeval_mod = require("pycocotools.cocoeval", extra="eval")
    gt_dataset, results = ev.coco_dicts()
    with contextlib.redirect_stdout(io.StringIO()):
        gt = coco_mod.COCO()
        gt.dataset = gt_dataset
        gt.createIndex()
        if results:
            dt = gt.loadRes(results)
        else:
            dt = coco_mod.COCO()
            dt.dataset = {"images": list(gt_dataset["images"]), "annotations": [],
                          "categories": [dict(c) for c in gt_dataset["categories"]]}
            dt.createIndex()
        e = cocoeval_mod.COCOeval(gt, dt, "bbox")
        e.params.maxDets = [ev.max_dets]
        e.params.areaRng = [e.params.areaRng[0]]
        e.params.areaRngLbl = ["all"]
        e.evaluate()
    return e


class _Matches:
    """Per category and image, what ``COCOeval.accumulate`` reads from ``evalImgs`` (area all, one
    ``maxDets``): detection scores, matches per IoU threshold, ignore flags, non-ignored GT count."""

    def __init__(self, e):
        n_img, n_cat = len(e.params.imgIds), len(e.params.catIds)
        md = e.params.maxDets[-1]
        self.rec = np.asarray(e.params.recThrs)
        self.t = len(e.params.iouThrs)
        self.cats = []
        for k in range(n_cat):
            per = []
            for i in range(n_img):
                r = e.evalImgs[k * n_img + i]
                if r is None:
                    per.append(None)
                    continue
                per.append((np.asarray(r["dtScores"][:md], np.float64), np.asarray(r["dtMatches"])[:, :md] != 0,
                            np.asarray(r["dtIgnore"])[:, :md].astype(bool),
                            int(np.count_nonzero(np.asarray(r["gtIgnore"]) == 0))))
            self.cats.append(per)

    def map(self, idx: np.ndarray) -> float:
        """mAP50-95 over the images at ``idx`` (repeats allowed), as ``accumulate`` + ``summarize``
        compute it: precision interpolated at the recall thresholds, categories without
        ground truth left out."""
        vals = []
        for per in self.cats:
            rows = [per[i] for i in idx if per[i] is not None]
            npig = sum(r[3] for r in rows)
            if npig == 0:
                continue
            if not rows or sum(r[0].size for r in rows) == 0:
                vals.append(np.zeros((self.t, self.rec.size)))
                continue
            scores = np.concatenate([r[0] for r in rows])
            order = np.argsort(-scores, kind="mergesort")
            dtm = np.concatenate([r[1] for r in rows], axis=1)[:, order]
            dti = np.concatenate([r[2] for r in rows], axis=1)[:, order]
            tp = np.cumsum(dtm & ~dti, axis=1, dtype=np.float64)
            fp = np.cumsum(~dtm & ~dti, axis=1, dtype=np.float64)
            nd = tp.shape[1]
            rc = tp / npig
            pr = tp / (fp + tp + np.spacing(1))
            pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]  # precision envelope
            q = np.zeros((self.t, self.rec.size))
            for t in range(self.t):
                inds = np.searchsorted(rc[t], self.rec, side="left")
                ok = inds < nd
                q[t, ok] = pr[t, inds[ok]]
            vals.append(q)
        return float(np.mean(vals)) if vals else float("nan")


@dataclass
class Bootstrap:
    """mAP50-95 (0..1) of each model on each resample: ``samples[b, model]``; ``point[model]`` on the
    images as drawn."""

    samples: np.ndarray
    point: np.ndarray

    def delta(self, a: int, b: int) -> float:
        """Points: ``100 * (mAP[a] - mAP[b])`` on the full set."""
        return 100.0 * float(self.point[a] - self.point[b])

    def interval(self, a: int, b: int, level: float = 0.90) -> tuple[float, float]:
        """Percentile interval of ``100 * (mAP[a] - mAP[b])`` over the resamples."""
        d = 100.0 * (self.samples[:, a] - self.samples[:, b])
        d = d[np.isfinite(d)]
        q = (1.0 - level) / 2.0
        return float(np.quantile(d, q)), float(np.quantile(d, 1.0 - q))

    def std(self, a: int, b: int) -> float:
        d = 100.0 * (self.samples[:, a] - self.samples[:, b])
        return float(np.nanstd(d))


def paired_bootstrap(evaluators: list[DetectionEvaluator], n: int = 200, seed: int = 0) -> Bootstrap:
    """Resample the images ``n`` times (the same draws for every evaluator; they must hold the
    same images in the same order) and recompute each evaluator's mAP50-95."""
    sizes = {e.n_images for e in evaluators}
    if len(sizes) != 1:
        raise ValueError(f"paired bootstrap needs the same images for every model, got sizes {sorted(sizes)}")
    m = sizes.pop()
    matched = [_Matches(_matched(e)) for e in evaluators]
    rng = np.random.default_rng(seed)
    out = np.empty((n, len(evaluators)))
    full = np.arange(m)
    point = np.array([e.map(full) for e in matched])
    for b in range(n):
        idx = rng.integers(0, m, m)
        out[b] = [e.map(idx) for e in matched]
    return Bootstrap(out, point)


__all__ = ["Bootstrap", "collect", "paired_bootstrap"]
