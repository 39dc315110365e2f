"""COCO-style box mAP through pycocotools, plus confidence calibration, for any backend.

``DetectionEvaluator`` is a metric object (``update`` / ``reset`` / ``compute``) fed with
:class:`~yolo_edge.detections.Detections` from whichever runner (PyTorch, ONNX Runtime,
TensorRT) and the ground truth of the same image, both in source pixels. ``compute`` builds
the COCO ground-truth and result sets in memory and runs pycocotools' ``COCOeval`` (the kept
reference implementation: no AP is computed here beyond averaging its precision array the way
``COCOeval.summarize`` does).

Conventions:

- Category id = ``class_id + 1`` (pycocotools treats id 0 as "unmatched"); every name in
  ``names`` is a category, so a class without ground truth gets AP NaN and is left out of
  the means (pycocotools' -1).
- Ground-truth ``area`` is the box area ``w * h`` (there are no masks), so small / medium /
  large follow box area (< 32², < 96², rest). Official COCO numbers use the mask area for
  ground truth, so APs/APm/APl on COCO val differ slightly from the official tool's.
- ``max_dets`` (default 100, the COCO standard) is the per-image cap of the main metrics;
  pycocotools keeps the highest-scoring ``max_dets`` per image *and class*.
- Undefined metrics (no ground truth at all, no large objects, ...) are NaN, never -1.
"""

from __future__ import annotations

import contextlib
import io
import math
from dataclasses import dataclass, field
from typing import Any, Hashable, Sequence

import numpy as np

from ..deps import require
from ..detections import Detections
from .calibration_error import ReliabilityDiagram, greedy_match, reliability_diagram

__all__ = ["COCO_STATS_NAMES", "DetectionEvaluator", "EvalResult"]

# Order of pycocotools' ``COCOeval.stats`` (bbox), with maxDets = (1, 10, max_dets).
COCO_STATS_NAMES = (
    "AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large",
    "AR1", "AR10", "AR", "AR_small", "AR_medium", "AR_large",
)

_NAN = float("nan")


def _fmt(v: float, digits: int = 3) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:.{digits}f}"


def _json_float(v: float) -> float | None:
    return float(v) if v is not None and math.isfinite(v) else None


@dataclass(frozen=True, eq=False)
class EvalResult:
    """COCO box metrics and confidence calibration of one evaluation run.

    All AP values are in ``[0, 1]``; NaN where undefined (pycocotools' -1).

    Attributes:
        names: class names, index = class id.
        map50_95, map50, map75: mean AP over IoU .50:.95, at .50, at .75 (area all).
        ap_small, ap_medium, ap_large: mAP50-95 by box area (< 32², 32²..96², > 96² px²).
        per_class_ap: class name -> AP50-95 (NaN for a class without ground truth).
        per_class_ap50: class name -> AP50.
        per_class_n_gt: class name -> number of (non-crowd) ground-truth boxes.
        ece: expected calibration error of the scores (IoU 0.5, see ``calibration_error``).
        reliability: the binned data behind ``ece``.
        coco_stats: ``(12,)`` pycocotools ``stats`` in :data:`COCO_STATS_NAMES` order, -1 -> NaN.
        precision: ``(2, K, R)`` pycocotools' interpolated precision at the recall thresholds,
            area all, ``max_dets``; ``[0]`` at IoU 0.50, ``[1]`` averaged over IoU .50:.95.
            NaN rows for classes without ground truth.
        recall: ``(R,)`` the recall thresholds (0, 0.01, ..., 1), the x axis of ``precision``.
        n_images, n_gt, n_pred: images evaluated, non-crowd ground-truth boxes, predictions.
        max_dets: per-image detection cap used.
    """

    names: tuple[str, ...]
    map50_95: float
    map50: float
    map75: float
    ap_small: float
    ap_medium: float
    ap_large: float
    per_class_ap: dict[str, float]
    per_class_ap50: dict[str, float]
    per_class_n_gt: dict[str, int]
    ece: float
    reliability: ReliabilityDiagram
    coco_stats: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    n_images: int
    n_gt: int
    n_pred: int
    max_dets: int = 100

    def to_dict(self, include_curves: bool = False) -> dict[str, Any]:
        """JSON-ready dict (NaN -> None). ``include_curves`` adds ``precision`` and ``recall``."""
        out: dict[str, Any] = {
            "map50_95": _json_float(self.map50_95),
            "map50": _json_float(self.map50),
            "map75": _json_float(self.map75),
            "ap_small": _json_float(self.ap_small),
            "ap_medium": _json_float(self.ap_medium),
            "ap_large": _json_float(self.ap_large),
            "ece": _json_float(self.ece),
            "n_images": self.n_images,
            "n_gt": self.n_gt,
            "n_pred": self.n_pred,
            "max_dets": self.max_dets,
            "names": list(self.names),
            "per_class_ap": {k: _json_float(v) for k, v in self.per_class_ap.items()},
            "per_class_ap50": {k: _json_float(v) for k, v in self.per_class_ap50.items()},
            "per_class_n_gt": dict(self.per_class_n_gt),
            "coco_stats": dict(zip(COCO_STATS_NAMES, (_json_float(v) for v in self.coco_stats))),
            "reliability": self.reliability.to_dict(),
        }
        if include_curves:
            out["recall"] = [float(v) for v in self.recall]
            out["precision"] = {
                "iou50": [[_json_float(v) for v in row] for row in self.precision[0]],
                "iou50_95": [[_json_float(v) for v in row] for row in self.precision[1]],
            }
        return out

    def table(self, digits: int = 3) -> str:
        """Markdown: per-class table (``all`` first), then the summary metrics."""
        lines = [
            "| class | instances | AP50 | AP50-95 |",
            "|:--|--:|--:|--:|",
            f"| all | {self.n_gt} | {_fmt(self.map50, digits)} | {_fmt(self.map50_95, digits)} |",
        ]
        for name in self.names:
            lines.append(
                f"| {name} | {self.per_class_n_gt.get(name, 0)} | {_fmt(self.per_class_ap50[name], digits)} "
                f"| {_fmt(self.per_class_ap[name], digits)} |"
            )
        lines += [
            "",
            "| mAP50-95 | mAP50 | mAP75 | AP small | AP medium | AP large | ECE | images | predictions |",
            "|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
            f"| {_fmt(self.map50_95, digits)} | {_fmt(self.map50, digits)} | {_fmt(self.map75, digits)} "
            f"| {_fmt(self.ap_small, digits)} | {_fmt(self.ap_medium, digits)} | {_fmt(self.ap_large, digits)} "
            f"| {_fmt(self.ece, digits)} | {self.n_images} | {self.n_pred} |",
        ]
        return "\n".join(lines)

    def summary_line(self) -> str:
        return (
            f"mAP50-95 {_fmt(self.map50_95)}  mAP50 {_fmt(self.map50)}  mAP75 {_fmt(self.map75)}  "
            f"APs/m/l {_fmt(self.ap_small)}/{_fmt(self.ap_medium)}/{_fmt(self.ap_large)}  "
            f"ECE {_fmt(self.ece)}  ({self.n_images} images, {self.n_gt} gt, {self.n_pred} predictions)"
        )

    def __str__(self) -> str:
        return self.summary_line()


@dataclass
class _Image:
    size: tuple[int, int] | None
    gt_xyxy: np.ndarray  # float64 (G, 4)
    gt_class_ids: np.ndarray  # int64 (G,)
    gt_iscrowd: np.ndarray  # bool (G,)
    pred_xyxy: np.ndarray  # float64 (P, 4)
    pred_scores: np.ndarray  # float64 (P,)
    pred_class_ids: np.ndarray  # int64 (P,)


def _xywh(xyxy: np.ndarray) -> np.ndarray:
    out = xyxy.copy()
    out[:, 2:] -= xyxy[:, :2]
    return out


@dataclass(eq=False)
class DetectionEvaluator:
    """COCO box mAP (pycocotools) and ECE over a stream of images.

    Example::

        ev = DetectionEvaluator(names)
        for image, gt in dataset:
            ev.update(detector(image), gt.xyxy, gt.class_ids, image_size=image.shape[:2])
        res = ev.compute()
        print(res.table())

    Args:
        names: class names; class id ``i`` is ``names[i]``.
        max_dets: per-image detection cap (COCO standard 100; must be >= 10). Feed the
            detector's raw output (low score threshold) for comparable mAP.
        ece_bins: equal-width bins of the calibration error.
        ece_iou: IoU at which a prediction counts as correct for the calibration error.
        verbose: let pycocotools print its progress and summary.
    """

    names: Sequence[str]
    max_dets: int = 100
    ece_bins: int = 15
    ece_iou: float = 0.5
    verbose: bool = False
    _images: list[_Image] = field(default_factory=list, init=False, repr=False)
    _image_ids: dict[Hashable, int] = field(default_factory=dict, init=False, repr=False)
    _ece_scores: list[np.ndarray] = field(default_factory=list, init=False, repr=False)
    _ece_correct: list[np.ndarray] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self):
        self.names = tuple(str(n) for n in self.names)
        if not self.names:
            raise ValueError("names must list at least one class")
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"class names must be unique, got {list(self.names)}")
        if int(self.max_dets) < 10:
            raise ValueError(f"max_dets must be >= 10 (COCO also reports AR@1 and AR@10), got {self.max_dets}")
        self.max_dets = int(self.max_dets)

    # -- metric protocol -------------------------------------------------------------------

    def reset(self) -> None:
        self._images.clear()
        self._image_ids.clear()
        self._ece_scores.clear()
        self._ece_correct.clear()

    def update(
        self,
        pred: Detections,
        gt_xyxy: np.ndarray,
        gt_class_ids: np.ndarray,
        image_size: tuple[int, int] | None = None,
        image_id: Hashable | None = None,
        gt_iscrowd: np.ndarray | None = None,
    ) -> None:
        """Add one image.

        Args:
            pred: detections of the image, in source pixels (after ``unletterbox``).
            gt_xyxy: ``(G, 4)`` ground-truth boxes ``(x1, y1, x2, y2)`` in the same pixels.
            gt_class_ids: ``(G,)`` ground-truth class ids.
            image_size: ``(h, w)``; informational (COCO ``images`` entry), not used by box AP.
            image_id: any hashable key; must be unique (default: running index).
            gt_iscrowd: ``(G,)`` bool, COCO crowd regions: ignored by AP (a detection on one is
                neither right nor wrong) and never matched for the calibration error.
        """
        if not isinstance(pred, Detections):
            raise TypeError(f"pred must be Detections, got {type(pred).__name__}")
        gt_xyxy = np.asarray(gt_xyxy, dtype=np.float64)
        if gt_xyxy.size == 0:
            gt_xyxy = gt_xyxy.reshape(0, 4)
        if gt_xyxy.ndim != 2 or gt_xyxy.shape[1] != 4:
            raise ValueError(f"gt_xyxy must have shape (G, 4), got {gt_xyxy.shape}")
        n_gt = len(gt_xyxy)
        gt_class_ids = np.asarray(gt_class_ids).reshape(-1)
        if gt_class_ids.shape != (n_gt,):
            raise ValueError(f"gt_class_ids must have shape ({n_gt},) to match gt_xyxy, got {gt_class_ids.shape}")
        gt_class_ids = gt_class_ids.astype(np.int64)
        if gt_iscrowd is None:
            gt_iscrowd = np.zeros(n_gt, dtype=bool)
        gt_iscrowd = np.asarray(gt_iscrowd, dtype=bool).reshape(-1)
        if gt_iscrowd.shape != (n_gt,):
            raise ValueError(f"gt_iscrowd must have shape ({n_gt},), got {gt_iscrowd.shape}")
        if np.any(gt_xyxy[:, 2:] < gt_xyxy[:, :2]):
            raise ValueError("gt_xyxy must satisfy x1 <= x2 and y1 <= y2")
        k = len(self.names)
        for what, ids in (("gt_class_ids", gt_class_ids), ("pred.class_ids", pred.class_ids)):
            if ids.size and (ids.min() < 0 or ids.max() >= k):
                raise ValueError(f"{what} must be in [0, {k}) for {k} class names, got max {int(ids.max())}")
        if image_size is not None:
            if len(image_size) != 2:
                raise ValueError(f"image_size must be (h, w), got {image_size!r}")
            image_size = (int(image_size[0]), int(image_size[1]))
        if image_id is None:
            image_id = len(self._images)
        if image_id in self._image_ids:
            raise ValueError(f"image_id {image_id!r} was already added")

        img = _Image(
            size=image_size,
            gt_xyxy=gt_xyxy.copy(),
            gt_class_ids=gt_class_ids,
            gt_iscrowd=gt_iscrowd,
            pred_xyxy=pred.xyxy.astype(np.float64),
            pred_scores=pred.scores.astype(np.float64),
            pred_class_ids=pred.class_ids.astype(np.int64),
        )
        keep = ~gt_iscrowd
        matched = greedy_match(
            img.pred_xyxy, img.pred_scores, img.pred_class_ids,
            gt_xyxy[keep], gt_class_ids[keep], iou_threshold=self.ece_iou,
        )
        self._image_ids[image_id] = len(self._images) + 1  # COCO image id, 1-based
        self._images.append(img)
        self._ece_scores.append(img.pred_scores)
        self._ece_correct.append(matched >= 0)

    def update_many(
        self,
        preds: Sequence[Detections],
        gt_xyxy: Sequence[np.ndarray],
        gt_class_ids: Sequence[np.ndarray],
        image_sizes: Sequence[tuple[int, int] | None] | None = None,
        image_ids: Sequence[Hashable] | None = None,
        gt_iscrowd: Sequence[np.ndarray | None] | None = None,
    ) -> None:
        """:meth:`update` for each image of a batch (parallel sequences)."""
        n = len(preds)
        if len(gt_xyxy) != n or len(gt_class_ids) != n:
            raise ValueError(f"got {n} predictions but {len(gt_xyxy)} gt_xyxy and {len(gt_class_ids)} gt_class_ids")
        for seq, what in ((image_sizes, "image_sizes"), (image_ids, "image_ids"), (gt_iscrowd, "gt_iscrowd")):
            if seq is not None and len(seq) != n:
                raise ValueError(f"{what} has {len(seq)} entries for {n} images")
        for i in range(n):
            self.update(
                preds[i], gt_xyxy[i], gt_class_ids[i],
                image_size=None if image_sizes is None else image_sizes[i],
                image_id=None if image_ids is None else image_ids[i],
                gt_iscrowd=None if gt_iscrowd is None else gt_iscrowd[i],
            )

    @property
    def n_images(self) -> int:
        return len(self._images)

    # -- COCO conversion -------------------------------------------------------------------

    def coco_dicts(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The in-memory COCO ground-truth dataset and result list that :meth:`compute` evaluates
        (bbox ``[x, y, w, h]``, category id = class id + 1, 1-based image and annotation ids)."""
        images, annotations, results = [], [], []
        for iid, img in enumerate(self._images, start=1):
            entry: dict[str, Any] = {"id": iid}
            if img.size is not None:
                entry["height"], entry["width"] = img.size
            images.append(entry)
            gxywh = _xywh(img.gt_xyxy)
            areas = (gxywh[:, 2] * gxywh[:, 3]).tolist()
            for box, area, cid, crowd in zip(gxywh.tolist(), areas, img.gt_class_ids.tolist(), img.gt_iscrowd.tolist()):
                annotations.append({
                    "id": len(annotations) + 1, "image_id": iid, "category_id": cid + 1,
                    "bbox": box, "area": area, "iscrowd": int(crowd),
                })
            pxywh = _xywh(img.pred_xyxy)
            for box, score, cid in zip(pxywh.tolist(), img.pred_scores.tolist(), img.pred_class_ids.tolist()):
                results.append({"image_id": iid, "category_id": cid + 1, "bbox": box, "score": score})
        categories = [{"id": i + 1, "name": n} for i, n in enumerate(self.names)]
        return {"images": images, "annotations": annotations, "categories": categories}, results

    def compute(self) -> EvalResult:
        """Run pycocotools on everything added since the last :meth:`reset`."""
        k = len(self.names)
        rel = reliability_diagram(
            np.concatenate(self._ece_scores) if self._ece_scores else np.zeros(0),
            np.concatenate(self._ece_correct) if self._ece_correct else np.zeros(0, bool),
            self.ece_bins,
        )
        n_gt_per_class = np.zeros(k, dtype=np.int64)
        for img in self._images:
            n_gt_per_class += np.bincount(img.gt_class_ids[~img.gt_iscrowd], minlength=k)
        n_pred = int(sum(len(img.pred_scores) for img in self._images))
        recall = np.linspace(0.0, 1.0, 101)

        if not self._images:
            stats = np.full(12, np.nan)
            prec = np.full((2, k, recall.size), np.nan)
            ap = ap50 = np.full(k, np.nan)
        else:
            stats, prec, recall, ap, ap50 = self._run_cocoeval()

        return EvalResult(
            names=self.names,
            map50_95=float(stats[0]),
            map50=float(stats[1]),
            map75=float(stats[2]),
            ap_small=float(stats[3]),
            ap_medium=float(stats[4]),
            ap_large=float(stats[5]),
            per_class_ap={n: float(v) for n, v in zip(self.names, ap)},
            per_class_ap50={n: float(v) for n, v in zip(self.names, ap50)},
            per_class_n_gt={n: int(v) for n, v in zip(self.names, n_gt_per_class)},
            ece=rel.ece,
            reliability=rel,
            coco_stats=stats,
            precision=prec,
            recall=recall,
            n_images=len(self._images),
            n_gt=int(n_gt_per_class.sum()),
            n_pred=n_pred,
            max_dets=self.max_dets,
        )

    def _run_cocoeval(self):
        coco_mod = require("pycocotools.coco", extra="eval")
        cocoeval_mod = require("pycocotools.cocoeval", extra="eval")
        gt_dataset, results = self.coco_dicts()
        quiet = contextlib.nullcontext() if self.verbose else contextlib.redirect_stdout(io.StringIO())
        with quiet:
            gt = coco_mod.COCO()
            gt.dataset = gt_dataset
            gt.createIndex()
            if results:
                dt = gt.loadRes(results)
            else:  # loadRes needs one result; an empty result set gives AP 0 where there is GT
                dt = coco_mod.COCO()
                dt.dataset = {
                    "images": list(gt_dataset["images"]),
                    "categories": [dict(c) for c in gt_dataset["categories"]],
                    "annotations": [],
                }
                dt.createIndex()
            ev = cocoeval_mod.COCOeval(gt, dt, "bbox")
            ev.params.maxDets = [1, 10, self.max_dets]
            ev.evaluate()
            ev.accumulate()
            if self.verbose and self.max_dets == 100:
                ev.summarize()  # its AP line assumes maxDets 100
        return _summaries(ev)


def _mean_valid(s: np.ndarray) -> float:
    """Mean over entries > -1, NaN if none: ``COCOeval.summarize``'s reduction."""
    v = s[s > -1]
    return float(np.mean(v)) if v.size else _NAN


def _summaries(ev) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Reduce ``COCOeval.eval`` as ``summarize`` does, for any ``maxDets[2]`` (``summarize``
    hard-codes 100 for the first AP)."""
    p = ev.params
    precision = ev.eval["precision"]  # (T, R, K, A, M), -1 where undefined
    recall = ev.eval["recall"]  # (T, K, A, M)
    t50 = int(np.argmin(np.abs(p.iouThrs - 0.5)))
    t75 = int(np.argmin(np.abs(p.iouThrs - 0.75)))
    a_all, a_s, a_m, a_l = (p.areaRngLbl.index(x) for x in ("all", "small", "medium", "large"))
    m = len(p.maxDets) - 1
    stats = np.array([
        _mean_valid(precision[:, :, :, a_all, m]),
        _mean_valid(precision[t50, :, :, a_all, m]),
        _mean_valid(precision[t75, :, :, a_all, m]),
        _mean_valid(precision[:, :, :, a_s, m]),
        _mean_valid(precision[:, :, :, a_m, m]),
        _mean_valid(precision[:, :, :, a_l, m]),
        _mean_valid(recall[:, :, a_all, 0]),
        _mean_valid(recall[:, :, a_all, 1]),
        _mean_valid(recall[:, :, a_all, m]),
        _mean_valid(recall[:, :, a_s, m]),
        _mean_valid(recall[:, :, a_m, m]),
        _mean_valid(recall[:, :, a_l, m]),
    ])
    k = precision.shape[2]
    ap = np.array([_mean_valid(precision[:, :, c, a_all, m]) for c in range(k)])
    ap50 = np.array([_mean_valid(precision[t50, :, c, a_all, m]) for c in range(k)])
    pr = precision[:, :, :, a_all, m].astype(np.float64)  # (T, R, K)
    pr[pr < 0] = np.nan  # -1: class without ground truth (the whole column)
    curves = np.stack([pr[t50].T, pr.mean(axis=0).T])  # (2, K, R)
    return stats, curves, np.asarray(p.recThrs, dtype=np.float64), ap, ap50
