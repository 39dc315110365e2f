"""INT8 weights rounded with the calibration images' statistics (GPTQ), not each to its nearest level.

Nearest rounding makes each weight's error as small as it can be alone, but what the detector sees
is a layer's *output* error ``(W - Q) X`` on real inputs ``X``, and there the errors of weights that
read correlated inputs add up or cancel. GPTQ (Frantar et al. 2023, "GPTQ: Accurate Post-Training
Quantization for Generative Pre-trained Transformers", after Optimal Brain Quantization) rounds the
input columns of a layer one at a time and moves each rounding error onto the columns not yet
rounded, in proportion to the inverse Hessian ``H = X Xᵀ`` of the layer-output error, so the later
columns compensate for the earlier ones. The per-channel scales are not changed (they come from
``weight_scale``, :func:`~yolo_edge.precision.qdq.quantize_weight`), so the graph is the same: only
which INT8 level each weight takes differs.

The default (``--int8-weight-rounding gptq``; ``nearest`` is the old rounding). Measured on YOLOv5n
and eight halves of coco128 (README "GPTQ weight rounding"; ``benchmarks/int8_accuracy.py
--also-weight-rounding nearest``): each layer's output error on the calibration images falls to
about a quarter of nearest rounding's (median). With symmetric activation grids the detector's
output error against FP32 on the held-out half fell by 8 % and neither mAP50-95 nor agreement with
FP32's detections moved; with the shifted grids (``qdq.shift_activations``), whose steps are half as
large so that the weights' share of the error is larger, it falls by about a fifth and both move
(numbers in the README).

Covers ``Conv`` layers with ``group == 1``; depthwise and other grouped convolutions, Gemm and
MatMul keep nearest rounding.

:func:`gptq_int8` is the numpy core (one layer); :func:`gptq_weights` gathers ``H`` for every
convolution from the FP32 graph run by the refinement's PyTorch interpreter (PyTorch imported there
only).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from .qdq import _weight_axis, quantize_weight

WEIGHT_ROUNDINGS = ("gptq", "nearest")
DEFAULT_WEIGHT_ROUNDING = "gptq"
GPTQ_DAMP = 0.01  # of the mean diagonal of H, added to it (the GPTQ paper's default)
GPTQ_BLOCK = 128  # columns updated lazily together (same result as one at a time, fewer passes)
ROUNDING_IMAGES = 64  # calibration images the precision job gathers layer inputs from
GPTQ_COLUMNS = 8192  # input positions kept per image and layer (a random subset) for H


def gptq_int8(w: np.ndarray, h: np.ndarray, scale: np.ndarray, damp: float = GPTQ_DAMP,
              block: int = GPTQ_BLOCK) -> np.ndarray:
    """INT8 levels ``q (Cout, d)`` of the weights ``w (Cout, d)`` of a layer whose inputs have the
    second-moment matrix ``h (d, d)`` (``E[x xᵀ]`` over input vectors ``x``), with the fixed
    per-output-channel ``scale (Cout,)``: ``q * scale[:, None]`` approximates ``w`` in the layer's
    output error ``tr((w - q s) h (w - q s)ᵀ)``, levels in [-127, 127], round half to even.

    Columns are rounded in order; the error of column ``i`` is spread over the columns after it
    through the upper Cholesky factor of ``(h + damp * mean(diag h) * I)^-1`` (GPTQ). Inputs that are
    never nonzero (``h[i, i] == 0``) get weight 0 before rounding: they do not change the output."""
    w = np.array(w, np.float64)
    h = np.array(h, np.float64)
    s = np.asarray(scale, np.float64).reshape(-1, 1)
    if w.ndim != 2 or h.shape != (w.shape[1], w.shape[1]) or s.shape[0] != w.shape[0]:
        raise ValueError(f"shapes: w {w.shape}, h {h.shape}, scale {np.shape(scale)}")
    d = w.shape[1]
    dead = np.diag(h) == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    h[np.diag_indices(d)] += damp * float(np.mean(np.diag(h)))
    u = np.linalg.cholesky(np.linalg.inv(h)).T  # upper: u.T @ u == inv(h)
    q = np.zeros_like(w)
    for i1 in range(0, d, block):
        i2 = min(i1 + block, d)
        wb = w[:, i1:i2].copy()
        err = np.zeros_like(wb)
        ub = u[i1:i2, i1:i2]
        for i in range(i2 - i1):
            qi = np.clip(np.round(wb[:, i:i + 1] / s), -127, 127)
            q[:, i1 + i] = qi[:, 0]
            e = (wb[:, i:i + 1] - qi * s) / ub[i, i]
            wb[:, i:] -= e @ ub[i:i + 1, i:]
            err[:, i] = e[:, 0]
        w[:, i2:] -= err @ u[i1:i2, i2:]
    return q.astype(np.int8)


def output_error(w: np.ndarray, q: np.ndarray, scale: np.ndarray, h: np.ndarray) -> float:
    """``tr((w - q s) h (w - q s)ᵀ)``: the mean squared output error of a layer (per input vector)."""
    dlt = np.asarray(w, np.float64) - np.asarray(q, np.float64) * np.asarray(scale, np.float64).reshape(-1, 1)
    return float(np.einsum("ij,jk,ik->", dlt, np.asarray(h, np.float64), dlt))


@dataclass
class RoundingResult:
    """What :func:`gptq_weights` did.

    Attributes:
        weights: ``{weight initializer: (q int8, scale float32)}`` for the layers it rounded (the
            rest keep nearest rounding).
        error_before, error_after: ``{layer: output error}`` with nearest and GPTQ levels, on the
            images ``H`` came from.
    """

    weights: dict[str, tuple[np.ndarray, np.ndarray]]
    images: int
    seconds: float
    error_before: dict[str, float] = field(default_factory=dict)
    error_after: dict[str, float] = field(default_factory=dict)

    def ratio(self) -> float:
        """Median over layers of (GPTQ output error / nearest output error)."""
        r = [self.error_after[k] / v for k, v in self.error_before.items() if v > 0]
        return float(np.median(r)) if r else 1.0

    def summary(self) -> str:
        return (f"{len(self.weights)} layers, {self.images} images: layer output error "
                f"x{self.ratio():.2f} of nearest rounding (median), {self.seconds:.0f} s")

    def to_dict(self) -> dict:
        return {"layers": len(self.weights), "images": self.images, "seconds": round(self.seconds, 1),
                "median_error_ratio": round(self.ratio(), 4),
                "error": {k: [self.error_before[k], self.error_after.get(k)] for k in self.error_before}}


def gptq_weights(model, weighted: Iterable[str], batches: Iterable[np.ndarray], weight_scale: str,
                 damp: float = GPTQ_DAMP, columns: int = GPTQ_COLUMNS, seed: int = 0,
                 show_progress: bool = False) -> RoundingResult:
    """GPTQ INT8 weights for the ``weighted`` layers of ``model`` (the precision job's prepared FP32
    graph), from the FP32 inputs those layers see on ``batches`` (letterboxed float32 images).

    Covers ``Conv`` layers with ``group == 1`` and a constant weight (every convolution of the YOLO
    models here); other layers keep nearest rounding. The scales are ``quantize_weight(w, axis,
    weight_scale)``'s. Up to ``columns`` input positions per image and layer (a seeded random
    subset) enter ``H``."""
    import torch
    import torch.nn.functional as F

    from ..deps import progress
    from .refine import TorchGraph, _attrs

    t0 = time.perf_counter()
    by_name = {n.name: n for n in model.graph.node}
    inits = {t.name: t for t in model.graph.initializer}
    want = {n for n in weighted if n in by_name and by_name[n].op_type == "Conv" and by_name[n].input[1] in inits
            and _attrs(by_name[n]).get("group", 1) == 1}
    g = TorchGraph(model)
    sums: dict[str, object] = {}
    counts: dict[str, int] = {}
    gen = torch.Generator().manual_seed(seed)

    def capture(n, a, ins):
        if n.name not in want:
            return
        x, w = ins[0], ins[1]
        nd = w.ndim - 2
        if nd != 2:
            return  # GPTQ here covers 2-D convolutions; the layer keeps nearest rounding
        p = list(a.get("pads") or [0] * (2 * nd))
        if p[:nd] != p[nd:]:
            x = F.pad(x, [v for i in reversed(range(nd)) for v in (p[i], p[i + nd])])
            p = [0] * (2 * nd)
        cols = F.unfold(x, tuple(w.shape[2:]), dilation=tuple(a.get("dilations", [1, 1])),
                        padding=tuple(p[:nd]), stride=tuple(a.get("strides", [1, 1])))
        cols = cols.permute(1, 0, 2).reshape(cols.shape[1], -1)
        if cols.shape[1] > columns:
            cols = cols[:, torch.randperm(cols.shape[1], generator=gen)[:columns]]
        cols = cols.double()
        sums[n.name] = sums.get(n.name, 0) + cols @ cols.T
        counts[n.name] = counts.get(n.name, 0) + int(cols.shape[1])

    xs = list(batches)
    images = sum(int(x.shape[0]) for x in xs)
    with torch.no_grad():
        for x in progress(xs, total=len(xs), desc="gptq inputs", unit="batch", disable=not show_progress):
            g.run(torch.from_numpy(np.ascontiguousarray(x)), quantize=False, on_node=capture)
    from onnx import numpy_helper

    out, before, after = {}, {}, {}
    for name in (n for n in by_name if n in sums):
        node = by_name[name]
        arr = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32)
        h = (sums[name] / max(counts[name], 1)).numpy()
        q0, s = quantize_weight(arr, _weight_axis(node, arr), weight_scale)
        w2 = arr.reshape(arr.shape[0], -1)
        q = gptq_int8(w2, h, s, damp)
        before[name] = output_error(w2, q0.reshape(w2.shape), s, h)
        after[name] = output_error(w2, q, s, h)
        if after[name] >= before[name]:  # never worse than nearest on the images it was fitted to
            q = q0.reshape(w2.shape)
            after[name] = before[name]
        out[node.input[1]] = (q.reshape(arr.shape), s)
    return RoundingResult(out, images, time.perf_counter() - t0, before, after)

