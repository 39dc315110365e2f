"""Per-layer INT8 sensitivity and mixed precision under an accuracy budget.

**Ranking proxy** (what the budget loop uses, :func:`layer_output_sqnr`): one graph computes,
next to every quantized layer, the same layer in FP32 on the FP32 sources of its inputs, and the
squared error between the two outputs; one inference per image ranks every layer by its own output
noise-to-signal ratio (60 layers of yolov5n on 4 images: one pass, ~14 s on a loaded 2-core CPU).
The same machinery picks ``auto`` calibration per tensor (:func:`auto_amax`).

**Detector-output ranking** (slower, :func:`layer_sensitivity`, one inference per layer): one ONNX Runtime session runs a "switchable" copy
of the Q/DQ graph in which every quantized layer's inputs go through
``Where(flag, DequantizeLinear output, FP32 tensor)``, with one boolean graph input per layer.
For each layer the graph runs with *only that layer quantized* (all other flags off) on a few
calibration images, and the layer's score is the error of the detector outputs against FP32
(:func:`output_error`). Quantizing one layer at a time isolates each layer's own damage; the
errors of several layers roughly add up, so the ranking is also the order in which excluding
layers from the full INT8 model helps most. (The other choice, excluding one layer from the full
INT8 model, measures the same thing with every other layer's noise on top.)

**Guard** (:func:`sensitive_guard`, run by every INT8 job before the refinement): which layers the
FLOP share allowed out of INT8 (5 %) goes to. The full INT8 model runs once per layer with only that
layer FP16 (the switchable graph below, all other flags on), and layers are taken by the output loss
they remove per FLOP.

**Budget** (:func:`exclude_until_within_budget`): starting from the full INT8 model, exclude the
worst-ranked layer, re-quantize (same calibration ranges: no recalibration), re-measure mAP on the
validation split; keep the exclusion when it helps, revert it when it does not, and stop once
the INT8 mAP50-95 is within ``max_drop`` points of FP32 or after ``max_steps`` evaluations. Every
step is recorded with its mAP, so the report says which layers stayed in higher precision and why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np

from ..deps import progress, require
from .qdq import shifted_tensors
from .refine import BOX_SCORE  # anchors whose FP32 score is below it carry no box term (no torch import)

FLAG_PREFIX = "qflag::"


def output_error(ref: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray]) -> float:
    """Detector output error of ``test`` against ``ref``, both ``(boxes (B, A, 4), scores (B, A, C))``.

    ``score NMSE + box error``: the score part is ``||s - s_ref||^2 / ||s_ref||^2`` (dominated by
    confident anchors); the box part is the squared box-corner error relative to the box's width and
    height, averaged over anchors weighted by their FP32 confidence. Both are dimensionless; 0 is exact.
    """
    rb, rs = (np.asarray(a, np.float64) for a in ref)
    tb, ts = (np.asarray(a, np.float64) for a in test)
    score = float(((ts - rs) ** 2).sum() / max((rs ** 2).sum(), 1e-12))
    w = rs.max(axis=-1)  # (B, A)
    wh = np.clip(rb[..., 2:] - rb[..., :2], 1.0, None)
    rel = (((tb - rb) / np.concatenate([wh, wh], axis=-1)) ** 2).sum(axis=-1)
    box = float((w * rel).sum() / max(w.sum(), 1e-12))
    return score + box


def _qdq_copy(fp32_model, qdq_model, layers):
    """A copy of ``qdq_model`` to add nodes to, with what both graph builders below read: ``(model,
    graph, FP32 initializers by name, the copy's initializer names, its quantized layers, producer
    of each tensor, the layers asked for)``."""
    from .graph import copy_model
    from .int8 import qdq_layers

    m = copy_model(qdq_model)
    g = m.graph
    info = qdq_layers(m)
    return (m, g, {t.name: t for t in fp32_model.graph.initializer}, {t.name for t in g.initializer}, info,
            {o: n for n in g.node for o in n.output}, set(info if layers is None else layers))


def _fp32_bias(node, layer, shift, fp_inits, inits):
    """The bias a layer on a shifted input (:func:`~yolo_edge.precision.qdq.shift_activations`) needs
    with its FP32 weights: the Q/DQ graph's bias carries ``c * sum(INT8 weights)``, the FP32 layer's
    must carry ``c * sum(FP32 weights)`` to compute the FP32 layer exactly. None when not shifted."""
    from onnx import numpy_helper

    if shift is None or layer.weight not in fp_inits or len(node.input) < 3 or node.input[2] not in inits:
        return None
    w = numpy_helper.to_array(fp_inits[layer.weight]).astype(np.float64)
    wq = layer.weight_q.astype(np.float64) * layer.weight_scales.reshape([-1] + [1] * (w.ndim - 1))
    b = numpy_helper.to_array(inits[node.input[2]]).astype(np.float64)
    fixed = b + shift["shift"] * (w - wq).reshape(w.shape[0], -1).sum(axis=1)
    return numpy_helper.from_array(fixed.astype(np.float32), f"{node.name}::fp32_bias")


def switchable_model(fp32_model, qdq_model, layers: Iterable[str] | None = None):
    """A copy of ``qdq_model`` where each quantized layer (of ``layers``; default all) reads
    ``Where(<flag>, quantized input, FP32 input)`` for its activation and weight inputs, with one
    boolean scalar input ``qflag::<node>`` per layer, plus ``qflag::__shared__`` for the other
    consumers of quantized tensors (residual Adds, Concats). All flags on = the Q/DQ model, all off =
    FP32. Returns ``(model, {node: flag input name})``."""
    onnx = require("onnx")
    from onnx import TensorProto, helper

    m, g, fp_inits, have, info, prod, wanted = _qdq_copy(fp32_model, qdq_model, layers)
    shifts = shifted_tensors(m)
    inits = {t.name: t for t in g.initializer}
    flags: dict[str, str] = {}
    shared = f"{FLAG_PREFIX}__shared__"
    new_nodes: dict[str, list] = {}
    for n in list(g.node):
        if n.name not in info:
            continue
        layer = info[n.name]
        own = n.name in wanted and n.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul")
        flag = f"{FLAG_PREFIX}{n.name}" if own else shared
        for idx, t in enumerate(list(n.input)):
            dq = prod.get(t)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = prod.get(dq.input[0])
            if q is not None and q.op_type == "QuantizeLinear":
                src = q.input[0]
                fixed = _fp32_bias(n, layer, shifts.get(src), fp_inits, inits)
                if fixed is not None:  # FP32 weights on a shifted input: the bias must carry their sum
                    g.initializer.append(fixed)
                    out = f"{n.input[2]}::{n.name}::sel2"
                    new_nodes.setdefault(n.name, []).append(
                        helper.make_node("Where", [flag, n.input[2], fixed.name], [out], name=f"sel::{n.name}::2"))
                    n.input[2] = out
            elif layer.weight and layer.weight in fp_inits:
                src = layer.weight
                if src not in have:
                    g.initializer.append(fp_inits[src])
                    have.add(src)
            else:
                continue
            out = f"{t}::{n.name}::sel{idx}"
            new_nodes.setdefault(n.name, []).append(
                helper.make_node("Where", [flag, t, src], [out], name=f"sel::{n.name}::{idx}"))
            n.input[idx] = out
        flags.setdefault(n.name if own else "__shared__", flag)
    # insert the Where nodes right before their consumers: keep the graph topologically sorted
    order = []
    for n in g.node:
        order.extend(new_nodes.get(n.name, []))
        order.append(n)
    del g.node[:]
    g.node.extend(order)
    for f in dict.fromkeys(flags.values()):
        g.input.append(helper.make_tensor_value_info(f, TensorProto.BOOL, []))
    onnx.checker.check_model(m)
    return m, flags


@dataclass
class LayerSensitivity:
    """Output error with only ``node`` quantized (larger = more harmful)."""

    node: str
    error: float

    def to_dict(self) -> dict:
        return {"node": self.node, "output_error": self.error}


def _switched(fp32_model, qdq_model, layers, batches):
    """``(flags, run)``: the switchable graph of ``qdq_model`` in one ONNX Runtime session, and
    ``run(on)``, its ``(boxes, scores)`` on each of ``batches`` with the flag inputs in ``on`` true
    (quantized) and the others false (FP32)."""
    from .calibration import ort_session

    sw, flags = switchable_model(fp32_model, qdq_model, layers)
    sess = ort_session(sw)
    names = [o.name for o in sess.get_outputs()]
    ib, isc = names.index("boxes"), names.index("scores")
    in_name = [i.name for i in sess.get_inputs() if not i.name.startswith(FLAG_PREFIX)][0]
    all_flags = list(dict.fromkeys(flags.values()))

    def run(on) -> list[tuple[np.ndarray, np.ndarray]]:
        feeds = {f: np.array(f in on) for f in all_flags}
        return [(o[ib], o[isc]) for o in (sess.run(names, {in_name: x, **feeds}) for x in batches)]

    return flags, run


def layer_sensitivity(fp32_model, qdq_model, batches: Sequence[np.ndarray], layers: Iterable[str] | None = None,
                      show_progress: bool = True) -> tuple[list[LayerSensitivity], float]:
    """Rank quantized layers by the output error each causes alone (see the module doc).

    Returns ``(ranking worst first, error of the full INT8 model)``."""
    flags, run = _switched(fp32_model, qdq_model, layers, batches)
    ref = run(set())
    full = run(set(flags.values()))

    def err(outs):
        return output_error(tuple(np.concatenate(v) for v in zip(*ref)), tuple(np.concatenate(v) for v in zip(*outs)))

    nodes = [k for k in flags if k != "__shared__"]
    out = []
    for node in progress(nodes, desc="sensitivity", unit="layer", disable=not show_progress):
        out.append(LayerSensitivity(node, err(run({flags[node]}))))
    out.sort(key=lambda s: -s.error)
    return out, err(full)


def local_error_model(fp32_model, qdq_model, layers: Iterable[str] | None = None):
    """A copy of ``qdq_model`` that also computes, next to each quantized weighted layer (``Conv``,
    ``ConvTranspose``, ``Gemm``, ``MatMul``; of ``layers``, default all), the same layer in FP32 on the
    FP32 sources of its quantized inputs, and outputs ``err::<node>`` = ``sum((y_int8 - y_fp32)^2)``
    and ``ref::<node>`` = ``sum(y_fp32^2)``. One run gives every layer's own output SQNR (its
    input and weight quantization, given the activations that reach it). Returns ``(model, nodes)``."""
    require("onnx")  # a clear error without the onnx extra
    from onnx import TensorProto, helper

    m, g, fp_inits, have, info, prod, wanted = _qdq_copy(fp32_model, qdq_model, layers)
    shifts = shifted_tensors(m)
    inits = {t.name: t for t in g.initializer}
    done = []
    for n in list(g.node):
        if n.name not in wanted or n.name not in info or n.op_type not in ("Conv", "ConvTranspose", "Gemm", "MatMul"):
            continue
        layer = info[n.name]
        ins = list(n.input)
        for idx, t in enumerate(ins):
            dq = prod.get(t)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = prod.get(dq.input[0])
            if q is not None and q.op_type == "QuantizeLinear":
                ins[idx] = q.input[0]
                sh = shifts.get(q.input[0])
                fixed = _fp32_bias(n, layer, shifts.get(q.input[0]), fp_inits, inits)
                if fixed is not None:  # the FP32 clone of a layer on a shifted input
                    g.initializer.append(fixed)
                    ins[2] = fixed.name
            elif layer.weight and layer.weight in fp_inits:
                ins[idx] = layer.weight
                if layer.weight not in have:
                    g.initializer.append(fp_inits[layer.weight])
                    have.add(layer.weight)
        ref = f"{n.output[0]}::fp32"
        clone = helper.make_node(n.op_type, ins, [ref], name=f"{n.name}::fp32")
        clone.attribute.extend(n.attribute)
        diff = f"{n.output[0]}::diff"
        g.node.extend([clone, helper.make_node("Sub", [n.output[0], ref], [diff], name=f"{n.name}::diff"),
                       helper.make_node("ReduceSumSquare", [diff], [f"err::{n.name}"], keepdims=0,
                                        name=f"{n.name}::err"),
                       helper.make_node("ReduceSumSquare", [ref], [f"ref::{n.name}"], keepdims=0,
                                        name=f"{n.name}::ref")])
        g.output.extend([helper.make_tensor_value_info(f"err::{n.name}", TensorProto.FLOAT, []),
                         helper.make_tensor_value_info(f"ref::{n.name}", TensorProto.FLOAT, [])])
        done.append(n.name)
    return m, done


def layer_output_sqnr(fp32_model, qdq_model, batches: Sequence[np.ndarray], layers: Iterable[str] | None = None,
                      ) -> list[LayerSensitivity]:
    """The cheap proxy: each quantized layer's own output noise-to-signal ratio
    (``||y_int8 - y_fp32||^2 / ||y_fp32||^2``, :func:`local_error_model`) over ``batches``, worst
    first. One inference per batch ranks every layer (layer_sensitivity needs one per layer)."""
    from .calibration import ort_session

    m, nodes = local_error_model(fp32_model, qdq_model, layers)
    sess = ort_session(m)
    names = [f"{k}::{n}" for n in nodes for k in ("err", "ref")]
    acc = np.zeros(len(names))
    in_name = sess.get_inputs()[0].name
    for x in batches:
        acc += np.asarray([float(v) for v in sess.run(names, {in_name: x})])
    out = [LayerSensitivity(n, float(acc[2 * i] / max(acc[2 * i + 1], 1e-30))) for i, n in enumerate(nodes)]
    out.sort(key=lambda s: -s.error)
    return out


AUTO_CANDIDATES = ("minmax", "entropy", "percentile", "mse")


def auto_amax(fp32_model, stats, quantize: Callable[[dict], object], acts: dict[str, list[str]],
              batches: Sequence[np.ndarray], candidates: Sequence[str] = AUTO_CANDIDATES,
              percentile: float = 99.99) -> tuple[dict[str, float], dict[str, str]]:
    """``auto`` calibration: for every quantized activation, the candidate method whose ``amax``
    gives the least error at the output of the layers that read it.

    Each candidate's ranges quantize the whole graph once (``quantize(amax) -> Q/DQ model``);
    :func:`local_error_model` then measures every layer's own output noise-to-signal ratio in one
    inference per batch. A tensor takes the method with the smallest summed ratio over its
    consumer layers (``acts``: ``{tensor: [layers]}``); ties keep the earlier candidate. Costs one
    inference of the error model per candidate and batch, on top of the one calibration pass.
    Returns ``({tensor: amax}, {tensor: method})``."""
    from .calibration import ort_session

    per = {}
    nsr: dict[str, dict[str, float]] = {}
    for c in candidates:
        per[c] = stats.amax(c, percentile, names=acts)
        m, nodes = local_error_model(fp32_model, quantize(per[c]), [n for ns in acts.values() for n in ns])
        sess = ort_session(m)
        names = [f"{k}::{n}" for n in nodes for k in ("err", "ref")]
        acc = np.zeros(len(names))
        for x in batches:
            acc += np.asarray([float(v) for v in sess.run(names, {sess.get_inputs()[0].name: x})])
        nsr[c] = {n: acc[2 * i] / max(acc[2 * i + 1], 1e-30) for i, n in enumerate(nodes)}
    amax, choice = {}, {}
    for t, layers in acts.items():
        scores = [sum(nsr[c].get(n, 0.0) for n in layers) for c in candidates]
        best = candidates[int(np.argmin(scores))]
        amax[t], choice[t] = per[best][t], best
    return amax, choice


@dataclass
class ExclusionStep:
    node: str
    map_before: float
    map_after: float
    kept: bool
    agreement_before: float | None = None
    agreement_after: float | None = None

    def to_dict(self) -> dict:
        d = {"node": self.node, "map50_95_before": self.map_before, "map50_95_after": self.map_after,
             "kept": self.kept}
        if self.agreement_after is not None:
            d.update(agreement_before=self.agreement_before, agreement_after=self.agreement_after)
        return d


@dataclass
class ExclusionResult:
    """Outcome of :func:`exclude_until_within_budget`.

    Attributes:
        excluded: layers left in higher precision, in the order they were excluded.
        final_map: mAP50-95 (0..1) of the INT8 model with those exclusions.
        within_budget: whether FP32 - final_map <= max_drop.
        steps: every evaluation made, kept or reverted.
        model: the final Q/DQ model.
        reason: why the loop stopped.
    """

    excluded: list[str]
    final_map: float
    within_budget: bool
    steps: list[ExclusionStep] = field(default_factory=list)
    model: object = None
    reason: str = ""

    def to_dict(self) -> dict:
        return {"excluded": list(self.excluded), "final_map50_95": self.final_map,
                "within_budget": self.within_budget, "reason": self.reason,
                "steps": [s.to_dict() for s in self.steps]}


def exclude_until_within_budget(ranking: Sequence[str], quantize: Callable[[list[str]], object],
                                evaluate: Callable[[object], float], fp32_map: float, int8_map: float,
                                max_drop: float, *, max_steps: int = 6, min_gain: float = 0.0,
                                model=None, agreement: Callable[[object], float] | None = None,
                                log: Callable[[str], None] | None = None) -> ExclusionResult:
    """Greedy mixed precision: exclude layers in ``ranking`` order until within budget.

    Args:
        ranking: candidate node names, most harmful first.
        quantize: ``excluded nodes -> Q/DQ model`` (reusing calibration ranges).
        evaluate: ``model -> mAP50-95`` in 0..1 on the validation split.
        fp32_map, int8_map: mAP50-95 of FP32 and of the INT8 model without extra exclusions.
        max_drop: budget in mAP points (0..100 scale, e.g. 1.0).
        max_steps: evaluations allowed.
        min_gain: an exclusion is kept only when it raises mAP by more than this (0..1 scale).
        model: the INT8 model without extra exclusions (returned when none is kept).
        agreement: ``model -> agreement with FP32's own detections`` on the same images (its
            baseline is taken on ``model``). When given, an exclusion is kept
            only when it raises this too: leaving a layer in higher precision can only bring the
            model closer to FP32, so an mAP gain that does not come with it is the luck of which
            changes hit labelled objects (on 64 COCO images, one refinement pass to the next moves
            ΔmAP50-95 by about a point).
    """
    say = log or (lambda s: None)
    excluded: list[str] = []
    current, best_model = int8_map, model
    steps: list[ExclusionStep] = []

    def within(v: float) -> bool:
        return (fp32_map - v) * 100.0 <= max_drop + 1e-9

    if within(current):
        return ExclusionResult([], current, True, steps, best_model, "within budget without exclusions")
    reason = f"ranking exhausted ({len(ranking)} candidates)"
    agree = agreement(model) if agreement is not None and model is not None else None
    for node in ranking:
        if len(steps) >= max_steps:
            reason = f"stopped after {max_steps} evaluations (--max-exclusions)"
            break
        trial = [*excluded, node]
        m = quantize(trial)
        v = float(evaluate(m))
        a = float(agreement(m)) if agree is not None else None
        keep = v > current + min_gain and (a is None or a > agree)
        steps.append(ExclusionStep(node, current, v, keep, agree, a))
        say(f"  exclude {node}: mAP50-95 {current * 100:.2f} -> {v * 100:.2f}"
            + (f", agreement with FP32 {agree * 100:.2f} -> {a * 100:.2f}" if a is not None else "")
            + f" ({'kept' if keep else 'reverted'})")
        if keep:
            excluded, current, best_model = trial, v, m
            agree = a
            if within(current):
                reason = "within budget"
                break
    return ExclusionResult(excluded, current, within(current), steps, best_model, reason)


# --- the FP16 guard: which layers the FLOP share kept out of INT8 buys most for ----------------

GUARDS = ("sensitive", "head")
DEFAULT_GUARD = "sensitive"
GUARD_IMAGES = 8  # calibration images the sensitive guard measures each layer's exclusion on


def detector_loss(ref: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
                  box_score: float = BOX_SCORE) -> float:
    """The refinement's output loss (:func:`~yolo_edge.precision.refine.output_loss`) in numpy, per
    image: the squared score error summed over anchors and classes, plus ``1 - IoU`` of each anchor's
    box with its FP32 box weighted by FP32's best score, over the anchors where that score is at
    least ``box_score``; ``ref`` and ``test`` are ``(boxes (B, A, 4) xyxy, scores (B, A, C))``."""
    rb, rs = (np.asarray(a, np.float64) for a in ref)
    tb, ts = (np.asarray(a, np.float64) for a in test)
    score = float(((ts - rs) ** 2).sum())
    w = rs.max(axis=-1)
    keep = w >= box_score
    a, b, w = tb[keep], rb[keep], w[keep]
    ix = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = ix * iy

    def area(z):
        return np.clip(z[:, 2] - z[:, 0], 0, None) * np.clip(z[:, 3] - z[:, 1], 0, None)

    iou = inter / (area(a) + area(b) - inter + 1e-9)
    return (score + float((w * (1.0 - iou)).sum())) / max(rb.shape[0], 1)


@dataclass
class GuardChoice:
    """The layers :func:`sensitive_guard` keeps FP16, and the measurements behind the choice.

    Attributes:
        nodes: the layers kept FP16, in the order chosen (best gain per FLOP first).
        gain: ``{layer: output loss of the full INT8 model - output loss with only that layer
            FP16}`` for every layer measured (larger = more worth keeping FP16).
        share: ``{layer: its FLOPs / the FLOPs of every convolution in the graph}`` for every
            candidate (the precision map's denominator, :attr:`PrecisionMap.conv_int8_share`).
        budget: the share the guard could spend: ``max_share`` less the share of the convolutions
            that are not candidates (decode tail, ``--exclude``), which are not INT8 either.
        full_error: output loss of the full INT8 model on these images (per image).
        skipped: candidates not measured, each alone over the FLOP share.
    """

    nodes: list[str]
    gain: dict[str, float]
    share: dict[str, float]
    full_error: float
    images: int
    max_share: float
    seconds: float
    skipped: list[str] = field(default_factory=list)
    budget: float = 0.0

    def spent(self) -> float:
        return float(sum(self.share[n] for n in self.nodes))

    def summary(self) -> str:
        return (f"{len(self.nodes)} layers kept FP16 ({100 * self.spent():.2f} % of the FLOPs, share "
                f"{100 * self.max_share:g} %), chosen from {len(self.gain)} by output loss on {self.images} "
                f"images, {self.seconds:.0f} s")

    def to_dict(self) -> dict:
        return {"policy": "sensitive", "nodes": list(self.nodes), "max_share": self.max_share,
                "flop_share": round(self.spent(), 5), "budget": round(self.budget, 5), "images": self.images,
                "seconds": round(self.seconds, 1),
                "full_int8_output_loss": self.full_error, "skipped_over_share": list(self.skipped),
                "layers": [{"node": n, "gain": self.gain[n], "flop_share": round(self.share[n], 5),
                            "kept_fp16": n in self.nodes}
                           for n in sorted(self.gain, key=lambda k: -self.gain[k])]}


def sensitive_guard(fp32_model, qdq_model, batches: Sequence[np.ndarray], layers: Iterable[str],
                    max_share: float, show_progress: bool = False) -> GuardChoice:
    """The weighted layers of ``layers`` to keep FP16 so that at most ``max_share`` of the graph's
    convolution FLOPs are not INT8 (the other convolutions not in ``layers`` count against it),
    chosen by what each is measured to buy.

    ``qdq_model`` is the full INT8 model (every layer of ``layers`` quantized). On ``batches`` it runs
    once with every layer quantized and once per layer with only that layer FP16 (its activation
    and weight inputs FP32, :func:`switchable_model`); a layer's gain is how much the detector's
    output loss against FP32 (:func:`detector_loss`) falls. Layers are then taken by gain per FLOP,
    best first, while the FLOPs kept out of INT8 stay within the share; a layer that would exceed
    it is passed over for cheaper ones, and a layer with no gain is never taken. Candidates that
    alone exceed the share are not measured."""
    import time

    from .precision_map import CONV, _shapes, node_flops

    t0 = time.perf_counter()
    images = sum(int(np.shape(x)[0]) for x in batches)
    layers = list(dict.fromkeys(layers))
    shapes = _shapes(fp32_model)
    by_name = {n.name: n for n in fp32_model.graph.node}
    convs = {n.name: float(node_flops(n, shapes)) for n in fp32_model.graph.node if n.op_type in CONV}
    total = sum(convs.values())
    flops = {n: float(node_flops(by_name[n], shapes)) for n in layers if n in by_name}
    share = {n: (f / total if total > 0 else 0.0) for n, f in flops.items()}
    budget = max_share - (sum(f for n, f in convs.items() if n not in flops) / total if total > 0 else 0.0)
    fits = [n for n in flops if 0 < share[n] <= budget]
    skipped = [n for n in flops if share[n] > budget]
    if budget <= 0 or not fits or not batches:
        return GuardChoice([], {}, share, float("nan"), images, max_share, time.perf_counter() - t0, skipped,
                           budget)
    flags, run = _switched(fp32_model, qdq_model, fits, batches)
    every = set(flags.values())
    ref = run(set())

    def loss(outs) -> float:
        return float(np.mean([detector_loss(r, o) for r, o in zip(ref, outs)]))

    full = loss(run(every))
    measured = [n for n in fits if n in flags]
    gain = {n: full - loss(run(every - {flags[n]}))
            for n in progress(measured, desc="guard", unit="layer", disable=not show_progress)}
    chosen, spent = [], 0.0
    for n in sorted(measured, key=lambda k: -gain[k] / max(share[k], 1e-12)):
        if gain[n] > 0 and spent + share[n] <= budget + 1e-12:
            chosen.append(n)
            spent += share[n]
    return GuardChoice(chosen, gain, share, full, images, max_share, time.perf_counter() - t0, skipped, budget)
