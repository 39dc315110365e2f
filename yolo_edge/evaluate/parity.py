"""Parity between two models, backends or precisions at the three levels of DESIGN §6.

    from yolo_edge.evaluate.parity import parity
    res = parity("yolo11n.pt", "yolo11n.onnx", data="synthetic:val", max_images=16)
    print(res.table()); exit(res.exit_code)

A is the reference, B the model under test; each is a path (``.pt``, ``.onnx``, ``.engine``) or a
:class:`~yolo_edge.runtime.Runner`. Both see the same images, each letterboxed by its own spec, and
each runs once per batch; the three levels are computed from those outputs:

1. **Raw tensors** (``boxes`` and ``scores`` before NMS), when both sides output them (PyTorch, an
   ONNX or engine exported with ``--nms none``) and take the same input size. The error of a
   tensor is ``max |A - B| / max |A|`` over all images (relative to the tensor's scale: pixels for
   boxes, probabilities for scores). Budget ``rtol`` (default 1e-4) for FP32 pairs.
2. **Detections** in source pixels, matched per image by class and IoU >= ``iou`` (0.9), greedily
   by B's score (:func:`~yolo_edge.evaluate.greedy_match`). Reported: detections per side,
   unmatched A (missed by B) and unmatched B (extra), max box and score deltas of the matches.
   FP32 pairs must match one to one; a detection whose score is within ``score_margin`` of the
   score threshold (or of the lowest score kept when a side is at ``max_det``) may flip either way
   with any rounding and is not counted against the pair (it is reported as borderline). Both sides
   use the same thresholds: an NMS-embedded side's baked-in ones, else A's.
3. **Task accuracy**: COCO mAP50-95, mAP50 and AP small/medium/large of each side on the labelled
   data (decoded outputs with the evaluation thresholds, NMS-embedded outputs as they are). Fails
   when B's mAP50-95 is more than ``budget_map`` points below A's.

"Strict" (levels 1–2 budgets apply) defaults to "both sides are FP32"; FP16 and INT8 pairs report
their drift at levels 1–2 and are held to the mAP budget only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import YoloEdgeError
from ..spec import NmsSpec

LEVEL_NAMES = {1: "raw tensors", 2: "detections", 3: "accuracy"}
BUDGET_EXIT_CODE = 2


@dataclass
class ParityConfig:
    """Knobs of :func:`parity` (see the module doc)."""

    data: Any = "synthetic:val"
    max_images: int | None = 16
    levels: Sequence[int] = (1, 2, 3)
    rtol: float = 1e-4
    iou: float = 0.9
    budget_map: float = 1.0  # mAP50-95 points B may lose against A
    batch: int = 4
    strict: bool | None = None  # None: strict when both sides are FP32
    score_margin: float = 1e-3
    device: str = "cpu"
    backend_a: str | None = None
    backend_b: str | None = None
    check_manifest: bool | None = None  # TensorRT engines (None: unless YOLO_EDGE_NO_MANIFEST_CHECK=1)

    def __post_init__(self):
        self.levels = tuple(sorted({int(x) for x in self.levels}))
        if not self.levels or any(x not in LEVEL_NAMES for x in self.levels):
            raise YoloEdgeError(f"parity levels must be among 1, 2, 3, got {list(self.levels)}")
        if not 0.0 < self.iou <= 1.0:
            raise YoloEdgeError(f"IoU threshold must be in (0, 1], got {self.iou}")
        if self.rtol < 0 or self.budget_map < 0:
            raise YoloEdgeError("tolerances and budgets must be >= 0")
        if self.batch < 1 or (self.max_images is not None and self.max_images < 1):
            raise YoloEdgeError("batch and max-images must be >= 1")


@dataclass
class Check:
    level: int
    name: str
    a: str = ""
    b: str = ""
    value: str = ""
    budget: str = ""
    status: str = "info"  # pass | FAIL | drift | info | skip
    why: str = ""


@dataclass
class Side:
    label: str
    runner: Any
    backend: str
    precision: str
    layout: str

    @property
    def spec(self):
        return self.runner.spec

    def describe(self) -> str:
        nms = "raw boxes/scores" if self.layout == "decoded" else f"NMS {self.spec.nms.flavour} embedded"
        return f"{self.label} ({self.backend}, {self.precision}, {nms})"


@dataclass
class ParityResult:
    a: str
    b: str
    data: str
    n_images: int
    strict: bool
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not any(c.status == "FAIL" for c in self.checks)

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else BUDGET_EXIT_CODE

    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.status == "FAIL"]

    def table(self) -> str:
        head = [f"### Parity: A = {self.a} vs B = {self.b}",
                f"{self.n_images} images of {self.data}; {'strict (FP32 pair)' if self.strict else 'drift report'}",
                "", "| level | check | A | B | difference | budget | result |", "|---|---|---|---|---|---|---|"]
        rows = [f"| {c.level} {LEVEL_NAMES[c.level]} | {c.name} | {c.a} | {c.b} | {c.value} | {c.budget} | "
                f"{c.status} |" for c in self.checks]
        tail = [""] + [f"- FAIL level {c.level} ({c.name}): {c.why}" for c in self.failures()]
        tail += [f"- note: {n}" for n in self.notes]
        tail.append(f"**{'PASS' if self.passed else 'FAIL'}**")
        return "\n".join(head + rows + tail)

    def to_dict(self) -> dict:
        return {"a": self.a, "b": self.b, "data": self.data, "images": self.n_images, "strict": self.strict,
                "passed": self.passed, "checks": [c.__dict__ for c in self.checks], "notes": self.notes,
                "metrics": self.metrics}


# --- helpers ----------------------------------------------------------------------------------
def _open(model, backend, cfg: ParityConfig) -> Side:
    from ..runtime import Runner, backend_for, load_runner

    if isinstance(model, Runner):
        runner, label = model, getattr(model, "path", None) or type(model).__name__
    elif str(model).startswith(("grpc:/", "http:/", "https:/")):  # a model on a Triton server
        runner, label = load_runner(str(model)), str(model)
    else:
        path = Path(model)
        if not path.exists():
            raise YoloEdgeError(f"model not found: {path}")
        kind = backend_for(path, backend)
        if kind in ("tensorrt", "trt"):
            from ..runtime.trt_runner import TrtRunner

            runner = TrtRunner(path, check_manifest=cfg.check_manifest)
        else:
            runner = load_runner(path, backend=backend, device=cfg.device)
        label = path
    label = Path(label).name if isinstance(label, (str, Path)) else str(label)
    half = bool(getattr(runner, "half", False))
    precision = "fp16" if half else runner.spec.precision
    return Side(label, runner, runner.name, precision, runner.output_layout)


def _run(runner, x: np.ndarray) -> dict[str, np.ndarray]:
    """One batch through ``runner``, padding to a static batch when the model has one."""
    n = x.shape[0]
    fixed = runner.fixed_batch
    if fixed and n != fixed:
        outs = []
        for i in range(0, n, fixed):
            chunk = x[i:i + fixed]
            m = chunk.shape[0]
            if m < fixed:
                chunk = np.concatenate([chunk, np.zeros((fixed - m, *chunk.shape[1:]), chunk.dtype)])
            outs.append({k: v[:m] for k, v in runner.infer({runner.inputs[0].name: chunk}).items()})
        return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}
    return runner.infer({runner.inputs[0].name: x})


def _detections(side: Side, out: dict, nms: NmsSpec, metas) -> list:
    from ..postprocess import from_nms_outputs, postprocess

    if side.layout == "nms":
        dets = from_nms_outputs(out["num_dets"], out["det_boxes"], out["det_scores"], out["det_classes"])
    else:
        dets = [postprocess(b, s, nms) for b, s in zip(out["boxes"], out["scores"])]
    return [d.unletterbox(m) for d, m in zip(dets, metas)]


def _pct(v: float) -> str:
    return f"{v:.2f}" if v is not None and math.isfinite(v) else "-"


class _RawStats:
    def __init__(self):
        self.max_abs = {"boxes": 0.0, "scores": 0.0}
        self.scale = {"boxes": 0.0, "scores": 0.0}
        self.where = {"boxes": None, "scores": None}
        self.shape_error = None

    def update(self, a: dict, b: dict, offset: int) -> None:
        for k in ("boxes", "scores"):
            x, y = np.asarray(a[k], np.float64), np.asarray(b[k], np.float64)
            if x.shape != y.shape:
                self.shape_error = f"{k} shapes differ: A {x.shape}, B {y.shape}"
                return
            d = np.abs(x - y)
            if d.size and float(d.max()) > self.max_abs[k]:
                self.max_abs[k] = float(d.max())
                idx = np.unravel_index(int(d.argmax()), d.shape)
                self.where[k] = (offset + int(idx[0]), *map(int, idx[1:]))
            if x.size:
                self.scale[k] = max(self.scale[k], float(np.abs(x).max()))

    def rel(self, k: str) -> float:
        return self.max_abs[k] / max(self.scale[k], 1e-12)


class _DetStats:
    def __init__(self, iou: float, margin: float, nms: NmsSpec):
        self.iou, self.margin, self.nms = iou, margin, nms
        self.n_a = self.n_b = self.matched = 0
        self.unmatched_a = self.unmatched_b = 0
        self.borderline_a = self.borderline_b = 0
        self.max_box = self.max_score = 0.0
        self.first_unmatched = None

    def _borderline(self, score: float, dets) -> bool:
        if abs(score - self.nms.score_threshold) <= self.margin:
            return True
        return len(dets) >= self.nms.max_det and score <= float(dets.scores.min()) + self.margin

    def update(self, da, db, image: int) -> None:
        from .calibration_error import greedy_match

        self.n_a += len(da)
        self.n_b += len(db)
        m = greedy_match(db.xyxy, db.scores, db.class_ids, da.xyxy, da.class_ids, self.iou)
        hit = m >= 0
        self.matched += int(hit.sum())
        if hit.any():
            self.max_box = max(self.max_box, float(np.abs(db.xyxy[hit] - da.xyxy[m[hit]]).max()))
            self.max_score = max(self.max_score, float(np.abs(db.scores[hit] - da.scores[m[hit]]).max()))
        miss_a = np.setdiff1d(np.arange(len(da)), m[hit])
        for i in miss_a:
            if self._borderline(float(da.scores[i]), da):
                self.borderline_a += 1
            else:
                self.unmatched_a += 1
                self.first_unmatched = self.first_unmatched or (
                    f"image {image}: A's class {int(da.class_ids[i])} box {np.round(da.xyxy[i], 1).tolist()} "
                    f"score {float(da.scores[i]):.3f} has no match in B")
        for j in np.flatnonzero(~hit):
            if self._borderline(float(db.scores[j]), db):
                self.borderline_b += 1
            else:
                self.unmatched_b += 1
                self.first_unmatched = self.first_unmatched or (
                    f"image {image}: B's class {int(db.class_ids[j])} box {np.round(db.xyxy[j], 1).tolist()} "
                    f"score {float(db.scores[j]):.3f} has no match in A")


def _deploy_nms(a: Side, b: Side, notes: list[str]) -> NmsSpec:
    """The thresholds both sides use at level 2: an embedded side's, else A's."""
    emb = [s for s in (a, b) if s.layout == "nms"]
    if len(emb) == 2 and (emb[0].spec.nms.score_threshold, emb[0].spec.nms.iou_threshold) != (
            emb[1].spec.nms.score_threshold, emb[1].spec.nms.iou_threshold):
        notes.append("the two models embed different NMS thresholds: detections are compared as they are")
    nms = (emb[0] if emb else a).spec.nms
    return NmsSpec("none", nms.score_threshold, nms.iou_threshold, nms.max_det, nms.class_agnostic)


# --- the job ----------------------------------------------------------------------------------
def parity(model_a, model_b, data=None, config: ParityConfig | None = None, **options) -> ParityResult:
    """Compare ``model_b`` against the reference ``model_a`` (paths or runners) on ``data``.

    ``options`` are :class:`ParityConfig` fields (``max_images``, ``levels``, ``rtol``, ``iou``,
    ``budget_map``, ...). Returns a :class:`ParityResult`; ``result.exit_code`` is 2 beyond a budget.
    """
    from ..data import load_dataset
    from ..letterbox import letterbox_batch
    from .coco import DetectionEvaluator
    from .validate import VAL_NMS

    cfg = config or ParityConfig(**options)
    if data is not None:
        cfg.data = data
    ds = load_dataset(cfg.data)
    n = len(ds) if cfg.max_images is None else min(cfg.max_images, len(ds))
    if n == 0:
        raise YoloEdgeError(f"dataset {cfg.data} has no images")
    a = _open(model_a, cfg.backend_a, cfg)
    b = _open(model_b, cfg.backend_b, cfg)
    if a.spec.nc and b.spec.nc and a.spec.nc != b.spec.nc:
        raise YoloEdgeError(f"the models do not predict the same classes: A has {a.spec.nc}, B has {b.spec.nc}")
    strict = (a.precision == "fp32" and b.precision == "fp32") if cfg.strict is None else bool(cfg.strict)
    data_name = cfg.data if isinstance(cfg.data, (str, Path)) else type(cfg.data).__name__
    res = ParityResult(a.describe(), b.describe(), str(data_name), n, strict)
    notes = res.notes

    do1 = 1 in cfg.levels
    if do1 and not (a.layout == b.layout == "decoded"):
        which = " and ".join(s.label for s in (a, b) if s.layout != "decoded")
        notes.append(f"level 1 skipped: {which} has NMS embedded, so its raw boxes/scores are not outputs "
                     "(export with --nms none to compare raw tensors)")
        res.checks.append(Check(1, "boxes / scores", status="skip", why="NMS embedded"))
        do1 = False
    if do1 and a.spec.letterbox != b.spec.letterbox:
        notes.append(f"level 1 skipped: the inputs differ (A {a.spec.imgsz}, B {b.spec.imgsz})")
        res.checks.append(Check(1, "boxes / scores", status="skip", why="different input sizes"))
        do1 = False
    ds_names = tuple(getattr(ds, "names", ()) or ())
    do3 = 3 in cfg.levels
    if do3 and not ds_names:
        notes.append(f"level 3 skipped: {data_name} has no labels")
        res.checks.append(Check(3, "mAP", status="skip", why="no labels"))
        do3 = False
    if do3 and a.spec.nc and len(ds_names) != a.spec.nc:
        notes.append(f"level 3 skipped: the models have {a.spec.nc} classes, the data {len(ds_names)}")
        res.checks.append(Check(3, "mAP", status="skip", why="class count differs from the data"))
        do3 = False

    deploy = _deploy_nms(a, b, notes)
    raw = _RawStats()
    dets = _DetStats(cfg.iou, cfg.score_margin, deploy)
    names = a.spec.names or b.spec.names or ds_names
    evals = {"A": DetectionEvaluator(names), "B": DetectionEvaluator(names)} if do3 else {}
    for s in (a, b):
        if do3 and s.layout == "nms" and s.spec.nms.score_threshold > VAL_NMS.score_threshold * 10:
            notes.append(f"{s.label} embeds NMS with score threshold {s.spec.nms.score_threshold}: its mAP is computed "
                         "on what it returns (export with --conf 0.001 for a full PR curve)")

    with a.runner, b.runner:
        for start in range(0, n, cfg.batch):
            samples = [ds[i] for i in range(start, min(n, start + cfg.batch))]
            images = [smp.image for smp in samples]
            outs, metas = {}, {}
            for key, s in (("A", a), ("B", b)):
                x, metas[key] = letterbox_batch(images, s.spec.letterbox)
                outs[key] = _run(s.runner, x)
            if do1:
                raw.update(outs["A"], outs["B"], start)
            if 2 in cfg.levels:
                da = _detections(a, outs["A"], deploy, metas["A"])
                db = _detections(b, outs["B"], deploy, metas["B"])
                for k, (x, y) in enumerate(zip(da, db)):
                    dets.update(x, y, start + k)
            if do3:
                for key, s in (("A", a), ("B", b)):
                    for smp, d in zip(samples, _detections(s, outs[key], VAL_NMS, metas[key])):
                        evals[key].update(d, smp.xyxy, smp.class_ids, image_size=smp.image.shape[:2],
                                          image_id=smp.image_id)

    if do1:
        _level1(res, raw, cfg, strict)
    if 2 in cfg.levels:
        _level2(res, dets, cfg, strict)
    if do3:
        _level3(res, {k: e.compute() for k, e in evals.items()}, cfg)
    return res


def _level1(res: ParityResult, raw: _RawStats, cfg: ParityConfig, strict: bool) -> None:
    if raw.shape_error:
        res.checks.append(Check(1, "boxes / scores", status="FAIL", why=raw.shape_error))
        return
    for k, unit in (("boxes", "px"), ("scores", "")):
        rel = raw.rel(k)
        ok = rel <= cfg.rtol
        status = ("pass" if ok else "FAIL") if strict else "drift"
        where = raw.where[k]
        why = "" if ok else (f"{k} differ by {rel:.2e} relative (max |A-B| {raw.max_abs[k]:.4g}{unit} at image "
                             f"{where[0]}, index {list(where[1:])}; scale {raw.scale[k]:.4g}); budget {cfg.rtol:.0e}")
        res.checks.append(Check(1, f"{k}: max abs(A-B) / max abs(A)", value=f"{rel:.2e}",
                                budget=f"<= {cfg.rtol:.0e}" if strict else "-", status=status, why=why))
        res.metrics[f"raw_{k}_rel"] = rel
        res.metrics[f"raw_{k}_max_abs"] = raw.max_abs[k]


def _level2(res: ParityResult, d: _DetStats, cfg: ParityConfig, strict: bool) -> None:
    unmatched = d.unmatched_a + d.unmatched_b
    ok = unmatched == 0
    status = ("pass" if ok else "FAIL") if strict else "drift"
    border = f"; {d.borderline_a + d.borderline_b} borderline" if d.borderline_a + d.borderline_b else ""
    why = "" if ok else (f"{d.unmatched_a} of A's {d.n_a} detections unmatched in B and {d.unmatched_b} of B's {d.n_b} "
                         f"unmatched in A (class + IoU >= {cfg.iou}); first: {d.first_unmatched}")
    res.checks.append(Check(2, f"detections matched (class, IoU >= {cfg.iou})", a=str(d.n_a), b=str(d.n_b),
                            value=f"{d.matched} matched, {d.unmatched_a} only A, {d.unmatched_b} only B{border}",
                            budget="one to one" if strict else "-", status=status, why=why))
    res.checks.append(Check(2, "max box delta (source px)", value=f"{d.max_box:.4g}"))
    res.checks.append(Check(2, "max score delta", value=f"{d.max_score:.3g}"))
    res.metrics.update({"det_a": d.n_a, "det_b": d.n_b, "det_matched": d.matched, "det_only_a": d.unmatched_a,
                        "det_only_b": d.unmatched_b, "det_borderline": d.borderline_a + d.borderline_b,
                        "det_max_box_delta": d.max_box, "det_max_score_delta": d.max_score})


def _level3(res: ParityResult, r: dict, cfg: ParityConfig) -> None:
    ra, rb = r["A"], r["B"]
    pa, pb = 100 * ra.map50_95, 100 * rb.map50_95
    if not (math.isfinite(pa) and math.isfinite(pb)):
        res.checks.append(Check(3, "mAP50-95", status="skip", why="undefined (no ground truth)"))
        return
    delta = pb - pa
    ok = delta >= -cfg.budget_map - 1e-9
    res.checks.append(Check(3, "mAP50-95 (%)", a=f"{pa:.2f}", b=f"{pb:.2f}", value=f"{delta:+.2f}",
                            budget=f">= -{cfg.budget_map:g}", status="pass" if ok else "FAIL",
                            why="" if ok else f"B's mAP50-95 is {-delta:.2f} points below A's (budget {cfg.budget_map:g})"))
    for name, attr in (("mAP50 (%)", "map50"), ("AP small (%)", "ap_small"), ("AP medium (%)", "ap_medium"),
                       ("AP large (%)", "ap_large")):
        x, y = 100 * getattr(ra, attr), 100 * getattr(rb, attr)
        both = math.isfinite(x) and math.isfinite(y)
        res.checks.append(Check(3, name, a=_pct(x), b=_pct(y), value=f"{y - x:+.2f}" if both else "-"))
    res.metrics.update({"map50_95_a": pa, "map50_95_b": pb, "map50_a": 100 * ra.map50, "map50_b": 100 * rb.map50})
