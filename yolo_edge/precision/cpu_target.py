"""The ONNX Runtime CPU INT8 target inside the precision job (``--int8-target ort-cpu|both``).

:func:`run_cpu_target` is the CPU counterpart of the TensorRT steps of
:func:`~yolo_edge.precision.pipeline.run_precision`, with the same inputs and the same rules:
ranges from the one calibration pass, mAP on the validation split, and when the drop exceeds the
budget, layers ranked by sensitivity and excluded one at a time
(:func:`~yolo_edge.precision.sensitivity.exclude_until_within_budget`) with no recalibration.
One step comes first: the head's last convolutions kept float together (their 8-bit outputs feed
the float decode directly; measured on YOLOv5n/coco128 it is the largest single gain).
The graph transform itself is :mod:`yolo_edge.precision.int8_cpu`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

from .int8_cpu import (CPU_OP_TYPES, CpuInt8Config, activation_ranges, cpu_features, fused_op_counts,
                       int8_kernel_note, integer_op_count, quantize_cpu, quantized_nodes, quantized_tensors)

RANK_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")  # budget-loop candidates: the layers with weights


@dataclass
class CpuTargetResult:
    model: object  # the Q/DQ onnx.ModelProto (no NMS)
    result: object = None  # evaluation result (mAP) on the validation split, or None
    excluded: list[dict] = field(default_factory=list)  # beyond the decode tail, with reasons
    budget: dict | None = None
    ranking: list[dict] | None = None
    info: dict = field(default_factory=dict)  # for metadata["precision"]


def cpu_tensors(raw, tail_nodes: Sequence[str], exclude: Sequence[str] = ()) -> list[str]:
    """Tensors the CPU target quantizes (to be histogrammed by the calibration pass)."""
    return quantized_tensors(raw, CPU_OP_TYPES, exclude=set(tail_nodes) | set(exclude))


def rank_layers(raw, tail, stats, method: str, percentile: float, exclude: Sequence[str], batches,
                show_progress: bool = True):
    """Layers with weights, most harmful first, by the output error each causes when it alone is
    quantized (:func:`~yolo_edge.precision.sensitivity.layer_sensitivity`). The ranking runs on the
    switchable form of the TensorRT-target graph of the same layers and ranges (input Q/DQ only):
    it isolates each layer's own quantization, which the fused CPU graph (8-bit from layer to layer)
    cannot switch off one layer at a time."""
    from .int8 import Int8Config, activation_inputs, quantizable_nodes, quantize_qdq
    from .sensitivity import layer_sensitivity

    nodes = quantizable_nodes(raw, RANK_OPS, exclude=set(tail.nodes) | set(exclude))
    amax = stats.amax(method, percentile, names=activation_inputs(raw, nodes))
    proxy = quantize_qdq(raw, amax, Int8Config(method=method, percentile=percentile, op_types=RANK_OPS,
                                               exclude=tuple(exclude)), tail.nodes)
    ranking, _ = layer_sensitivity(raw, proxy, batches, nodes, show_progress=show_progress)
    return ranking


# tried in this order when no method is given; entropy added after measuring (int8_cpu bench, quiet VM):
# bundled synthetic model minmax 68.24, entropy 68.51 (FP32 68.69); YOLOv5n coco128 percentile 36.02,
# entropy 35.39 (before the head step)
AUTO_METHODS = ("percentile", "minmax", "entropy")


def run_cpu_target(raw, tail, stats, *, method: str | None, percentile: float, exclude: Sequence[str] = (),
                   reduce_range: bool = False, fp32_result=None, evaluate: Callable | None = None,
                   max_map_drop: float | None = None, max_exclusions: int = 6, sensitivity: str = "auto",
                   sensitivity_batches: Callable[[], list] | None = None, show_progress: bool = True,
                   log: Callable[[str], None] | None = None) -> CpuTargetResult:
    """Quantize ``raw`` (FP32, NMS stripped) for ONNX Runtime's CPU provider and, when ``evaluate``
    (``model -> evaluation result``) and ``fp32_result`` are given, hold it to ``max_map_drop``.

    ``method`` None: with ``evaluate``, each of :data:`AUTO_METHODS` is tried and the one with the
    highest mAP kept (two evaluations more; which one wins depends on the model: YOLOv5n on coco128
    loses 0.76 points with percentile, 1.39 with entropy and 2.40 with minmax, the bundled
    synthetic-data model 4.6 with percentile, 0.45 with minmax and 0.17 with entropy); without
    ``evaluate``, the first.

    ``sensitivity_batches()`` returns the letterboxed calibration batches used to rank layers."""
    from .graph import copy_model
    from .calibration import lower_bounds

    tensors = cpu_tensors(raw, tail.nodes, exclude)
    bounds = lower_bounds(raw)
    methods = [method] if method else list(AUTO_METHODS)
    trials: list[dict] = []

    def make(m: str):
        cfg_m = CpuInt8Config(method=m, percentile=percentile, exclude=tuple(exclude), reduce_range=reduce_range)
        return cfg_m, activation_ranges(stats, tensors, m, percentile, lower=bounds)

    cfg, ranges = make(methods[0])

    def quantize(extra: Sequence[str] = ()):
        return quantize_cpu(raw, ranges, cfg, [*tail.nodes, *extra])

    model = quantize()
    out = CpuTargetResult(model)
    if evaluate is not None and fp32_result is not None:
        out.result = evaluate(model)
        trials.append({"method": methods[0], "map50_95": out.result.map50_95})
        for m in methods[1:]:  # calibration method chosen on the validation split, like the exclusions
            cfg_m, ranges_m = make(m)
            model_m = quantize_cpu(raw, ranges_m, cfg_m, list(tail.nodes))
            r = evaluate(model_m)
            trials.append({"method": m, "map50_95": r.map50_95})
            if log:
                log(f"  calibration method {m}: mAP50-95 {100 * r.map50_95:.2f} (vs {100 * out.result.map50_95:.2f})")
            if r.map50_95 > out.result.map50_95:
                cfg, ranges, model, out.model, out.result = cfg_m, ranges_m, model_m, model_m, r
        fp32_map = fp32_result.map50_95

        def over(result) -> bool:
            return max_map_drop is not None and 100.0 * (fp32_map - result.map50_95) > max_map_drop + 1e-9

        steps: list[dict] = []
        base: list[str] = []
        # 1. the head's last convolutions as one step: their outputs (class logits, box distributions)
        #    feed the float decode directly, and an 8-bit output there costs the most accuracy
        head = [n for n in tail.head if n in set(quantized_nodes(model, RANK_OPS))]
        if over(out.result) and head and max_exclusions > 0:
            trial = quantize(head)
            r = evaluate(trial)
            keep = r.map50_95 > out.result.map50_95
            steps.append({"nodes": head, "map50_95_before": out.result.map50_95, "map50_95_after": r.map50_95,
                          "kept": keep})
            if log:
                log(f"  keep the head's last convs float ({len(head)}): mAP50-95 {100 * out.result.map50_95:.2f} -> "
                    f"{100 * r.map50_95:.2f} ({'kept' if keep else 'reverted'})")
            if keep:
                out.excluded += [{"node": n, "reason": (
                    f"head output kept float (ort-cpu): excluding the head's last convs raised INT8 mAP50-95 "
                    f"{100 * out.result.map50_95:.2f} -> {100 * r.map50_95:.2f}")} for n in head]
                base, out.model, out.result = list(head), trial, r
        # 2. then layers one at a time in sensitivity order (the shared budget loop)
        left = max_exclusions - len(steps)
        if sensitivity == "always" or (sensitivity == "auto" and over(out.result) and left > 0):
            from .sensitivity import exclude_until_within_budget

            ranking = rank_layers(raw, tail, stats, cfg.method, percentile, exclude,
                                  sensitivity_batches() if sensitivity_batches else [], show_progress)
            out.ranking = [r.to_dict() for r in ranking]
            if over(out.result) and left > 0:
                seen: dict[int, object] = {}

                def evaluate_map(m):
                    seen[id(m)] = evaluate(m)
                    return seen[id(m)].map50_95

                budget = exclude_until_within_budget([r.node for r in ranking if r.node not in base],
                                                     lambda extra: quantize([*base, *extra]), evaluate_map,
                                                     fp32_map, out.result.map50_95, max_map_drop,
                                                     max_steps=left, model=out.model, log=log)
                steps += [s.to_dict() for s in budget.steps]
                if budget.excluded:
                    out.model, out.result = budget.model, seen[id(budget.model)]
                    by = {s.node: s for s in budget.steps}
                    out.excluded += [{"node": n, "reason": (
                        f"sensitivity (ort-cpu): excluding it raised INT8 mAP50-95 {100 * by[n].map_before:.2f} "
                        f"-> {100 * by[n].map_after:.2f}")} for n in budget.excluded]
        if steps:
            out.budget = {"steps": steps, "final_map50_95": out.result.map50_95,
                          "within_budget": not over(out.result)}
    out.excluded = [{"node": n, "reason": "requested (--exclude)"} for n in exclude] + out.excluded
    counts = fused_op_counts(copy_model(out.model))
    feats = cpu_features()
    out.info = {"mode": "int8-qdq", "target": "ort-cpu", **cfg.algorithm(),
                **({"method_trials": trials} if len(trials) > 1 else {}),
                "quantized_layers": sorted(quantized_nodes(out.model, RANK_OPS)),
                "excluded": out.excluded, "ort_fused_ops": {k: v for k, v in sorted(counts.items())
                                                            if k.startswith("QLinear") or k in
                                                            ("QuantizeLinear", "DequantizeLinear")},
                "ort_integer_ops": integer_op_count(counts),
                "built_on_cpu": {**feats, "note": int8_kernel_note(feats)},
                "max_map_drop": max_map_drop}
    return out


__all__ = ["CpuTargetResult", "cpu_tensors", "rank_layers", "run_cpu_target"]
