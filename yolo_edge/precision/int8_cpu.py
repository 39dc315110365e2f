"""INT8 for ONNX Runtime on a CPU: a Q/DQ graph that ONNX Runtime fuses into integer kernels.

The TensorRT target (:mod:`yolo_edge.precision.int8`) puts one ``Q -> DQ`` pair on the *input* of
each Conv and none on its output: TensorRT fuses around that, ONNX Runtime does not, so on a CPU
that graph runs float convolutions plus Q/DQ work (slower than FP32). ONNX Runtime's graph
optimizer replaces a node group ``DQ -> op -> Q`` by one integer operator when *every* float input
and the output of ``op`` carry Q/DQ (``QDQSelectorActionTransformer``, onnxruntime
``onnxruntime/core/optimizer/qdq_transformer/selectors_actions/qdq_selector_action_transformer.cc``):

* ``Conv`` -> ``QLinearConv``, ``MatMul`` -> ``QLinearMatMul`` / ``MatMulIntegerToFloat``;
* ``Add`` / ``Mul`` -> ``QLinearAdd`` / ``QLinearMul``, ``Sigmoid`` -> ``QLinearSigmoid`` (table lookup),
  ``Concat`` -> ``QLinearConcat``;
* ``MaxPool``, ``Resize``, ``Reshape``, ``Transpose``, ``Split``, ``Slice`` ... run on the 8-bit data
  (the DQ/Q pair around them is dropped).

So this target quantizes activations on the inputs *and* outputs of those ops, and the whole
backbone and neck stay in 8 bits from one convolution to the next (SiLU = ``x * Sigmoid(x)``
becomes QLinearSigmoid + QLinearMul). Types follow ONNX Runtime's quantization guide
(https://onnxruntime.ai/docs/performance/model-optimizations/quantization.html, "Data type
selection" and "When to use reduce-range"):

* activations **uint8, asymmetric** (zero-point from the calibrated min/max), weights **int8,
  symmetric, per output channel** (U8S8): the fast path of MLAS on x86-64 (AVX2 ``vpmaddubsw``,
  AVX-512 VNNI / AVX-VNNI ``vpdpbusd``) and supported on ARM64 (``sdot``/``udot``, ``i8mm``);
* ``reduce_range`` (7-bit weights) only for x86-64 *without* VNNI, where the AVX2 U8S8 kernel can
  saturate its 16-bit intermediate sums; not needed with VNNI or on ARM (``--int8-reduce-range``);
* the decode tail (DFL, anchors, score sigmoid, boxes/scores) stays float, as in the TensorRT target;
  biases become INT32 (``QuantizeBias``), which QLinearConv needs.

Ranges come from the same :class:`~yolo_edge.precision.calibration.CalibrationStats` pass as the
TensorRT target (the calibration method's ``amax`` clips the exact min/max), and the same budget
loop excludes layers by name. :func:`fused_op_counts` reads back what ONNX Runtime actually made of
the graph (``SessionOptions.optimized_model_filepath``).
"""

from __future__ import annotations

import inspect
import math
import platform
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from ..deps import require
from ..errors import YoloEdgeError
from .calibration import DEFAULT_METHOD, DEFAULT_PERCENTILE, METHODS

TARGETS = ("trt", "ort-cpu")
# Calibration method of the CPU target. Asymmetric uint8 spends its 256 levels on [min, max]; one
# outlier stretches that range for every value. Measured on YOLOv5n, coco128 (first 64 calibrate,
# last 64 validate), mAP50-95 vs FP32 36.78: minmax 34.39 (-2.40), percentile 99.99 36.02 (-0.76),
# percentile with the head's last convs float 36.97 (scratch experiment). The bundled synthetic-data
# model goes the other way (68.69 FP32: percentile 64.09, minmax 68.24), so with validation data the
# job tries both (precision/cpu_target.py); this is the choice without validation data.
CPU_DEFAULT_METHOD = "percentile"
CPU_SUFFIX = "int8-cpu"  # <name>.int8-cpu.onnx
# ops ONNX Runtime's CPU provider fuses or runs in 8 bits when wrapped in DQ -> op -> Q (module doc)
CPU_OP_TYPES = ("Conv", "MatMul", "Add", "Mul", "Sigmoid", "Concat", "MaxPool", "Resize", "Split", "Slice",
                "Reshape", "Transpose")
INTEGER_OPS = ("QLinearConv", "ConvInteger", "QLinearMatMul", "MatMulInteger", "MatMulIntegerToFloat",
               "QLinearAdd", "QLinearMul", "QLinearSigmoid", "QLinearConcat", "QGemm")


@dataclass(frozen=True)
class CpuInt8Config:
    """How to quantize for ONNX Runtime's CPU provider.

    Attributes:
        method, percentile: calibration method (as the TensorRT target): ``amax`` clips the calibrated
            ``[min, max]`` of each activation to ``[-amax, amax]``.
        op_types: ops whose inputs and outputs get Q/DQ (:data:`CPU_OP_TYPES`).
        exclude: node names kept float (beside the decode tail).
        per_channel: per-output-channel weight scales.
        reduce_range: 7-bit weights, for x86-64 CPUs without VNNI.
        activation_type: ``uint8`` (U8S8, the x86 fast path) or ``int8`` (S8S8).
    """

    method: str = CPU_DEFAULT_METHOD
    percentile: float = DEFAULT_PERCENTILE
    op_types: tuple[str, ...] = CPU_OP_TYPES
    exclude: tuple[str, ...] = ()
    per_channel: bool = True
    reduce_range: bool = False
    activation_type: str = "uint8"

    def __post_init__(self):
        if self.method not in METHODS:
            raise YoloEdgeError(f"unknown calibration method {self.method!r}; choose from {', '.join(METHODS)}")
        if self.activation_type not in ("uint8", "int8"):
            raise YoloEdgeError(f"activation type must be uint8 or int8, got {self.activation_type!r}")
        object.__setattr__(self, "op_types", tuple(self.op_types))
        object.__setattr__(self, "exclude", tuple(self.exclude))

    def algorithm(self) -> dict:
        d = {"target": "ort-cpu", "method": self.method, "activations": f"{self.activation_type}, asymmetric"
             if self.activation_type == "uint8" else "int8, symmetric", "weights": "int8, symmetric, "
             + ("per-channel (axis 0)" if self.per_channel else "per-tensor"), "reduce_range": self.reduce_range,
             "op_types": list(self.op_types)}
        if self.method == "percentile":
            d["percentile"] = self.percentile
        return d


def shape_nodes(model) -> list[str]:
    """Nodes computing shapes, not image data: ``Shape``/``Size``/``Constant`` and every node whose
    inputs all come from such nodes or initializers (e.g. ``Mul(height, 2.0) -> Floor -> Cast`` that
    an exported ``Upsample`` uses for its output size). They are never quantized: 8-bit arithmetic
    on a size (40 -> 39.8 -> floor 39) breaks the graph."""
    inits = {t.name for t in model.graph.initializer}
    derived: set[str] = set()
    out = []
    for n in model.graph.node:
        ins = [i for i in n.input if i and i not in inits]
        if n.op_type in ("Shape", "Size", "Constant") or all(i in derived for i in ins):
            derived.update(o for o in n.output if o)
            out.append(n.name)
    return out


def quantized_tensors(model, op_types: Iterable[str] = CPU_OP_TYPES, exclude: Iterable[str] = ()) -> list[str]:
    """Float activations that get Q/DQ: the non-initializer inputs and the outputs of ``op_types``
    nodes outside ``exclude`` and outside the shape arithmetic (:func:`shape_nodes`), in graph order
    (the tensors that need calibrated ranges)."""
    from .graph import float_activations

    ops, skip = set(op_types), set(exclude) | set(shape_nodes(model))
    floats = set(float_activations(model))
    out: dict[str, None] = {}
    for n in model.graph.node:
        if n.op_type in ops and n.name not in skip:
            for t in (*n.input, *n.output):
                if t in floats:
                    out[t] = None
    return list(out)


def activation_ranges(stats, names: Iterable[str], method: str = CPU_DEFAULT_METHOD,
                      percentile: float = DEFAULT_PERCENTILE, lower: Mapping[str, float] | None = None
                      ) -> dict[str, tuple[float, float]]:
    """``{tensor: (rmin, rmax)}`` for asymmetric quantization from calibration statistics: the
    observed min/max, clipped to ``[-amax, amax]`` of ``method``. Where the min was only sampled
    (tensors with a static lower bound, see :func:`~yolo_edge.precision.calibration.lower_bounds`)
    the bound is used, so nothing is clipped below."""
    lower = lower or {}
    out = {}
    for t in names:
        st = stats.tensors.get(t)
        if st is None or not math.isfinite(st.min):
            continue
        lo = st.min if st.min_exact or t not in lower else min(st.min, lower[t])
        amax = st.amax(method, percentile)
        lo, hi = max(lo, -amax), min(st.max, amax)
        out[t] = (float(lo), float(hi))
    return out


def quantize_cpu(model, ranges: Mapping[str, tuple[float, float]], config: CpuInt8Config = CpuInt8Config(),
                 nodes_to_exclude: Iterable[str] = ()):
    """Quantize ``model`` (FP32 ``onnx.ModelProto``, NMS stripped) to the CPU Q/DQ form with the given
    activation ranges. Returns the Q/DQ ``onnx.ModelProto`` (metadata of ``model`` kept)."""
    onnx = require("onnx")
    q = require("onnxruntime.quantization")
    from onnxruntime.quantization.calibrate import TensorData, TensorsData

    from .int8 import _quantize_with_ranges, _quiet

    excluded = sorted(set(nodes_to_exclude) | set(config.exclude) | set(shape_nodes(model)))
    data = TensorsData(q.CalibrationMethod.MinMax, {
        k: TensorData(lowest=np.array(lo, np.float32), highest=np.array(hi, np.float32))
        for k, (lo, hi) in ranges.items()})
    u8 = config.activation_type == "uint8"
    extra = {"ActivationSymmetric": not u8, "WeightSymmetric": True, "QuantizeBias": True,
             # a tensor read by a quantized and a float node gets one Q and a DQ per reader
             "DedicatedQDQPair": False}
    with tempfile.TemporaryDirectory(prefix="yolo_edge_qcpu_") as tmp, _quiet():
        src, dst, cache = Path(tmp, "fp32.onnx"), Path(tmp, "int8.onnx"), Path(tmp, "ranges.json")
        onnx.save(model, str(src))
        kwargs = dict(quant_format=q.QuantFormat.QDQ, op_types_to_quantize=list(config.op_types),
                      per_channel=config.per_channel, reduce_range=config.reduce_range,
                      activation_type=q.QuantType.QUInt8 if u8 else q.QuantType.QInt8,
                      weight_type=q.QuantType.QInt8, nodes_to_exclude=excluded,
                      calibrate_method=q.CalibrationMethod.MinMax, extra_options=extra)
        if "calibration_cache_path" in inspect.signature(q.quantize_static).parameters:
            from onnxruntime.quantization.calibrate import save_tensors_data

            save_tensors_data(data, cache)
            q.quantize_static(str(src), str(dst), None, calibration_cache_path=str(cache), **kwargs)
        else:  # pragma: no cover - onnxruntime < 1.2x
            kwargs.pop("reduce_range")
            _quantize_with_ranges(src, dst, data, kwargs)
        out = onnx.load(str(dst))
    del out.metadata_props[:]
    out.metadata_props.extend(model.metadata_props)
    out.ir_version = max(out.ir_version, model.ir_version) if out.ir_version else model.ir_version
    return out


def quantized_nodes(qdq_model, op_types: Iterable[str] = CPU_OP_TYPES) -> list[str]:
    """Names of the ``op_types`` nodes whose every float input comes from a ``DequantizeLinear``
    (for layers with weights: the data *and* the weight input; a layer left float still reads the
    dequantized output of its quantized neighbour)."""
    prod = {o: n for n in qdq_model.graph.node for o in n.output}
    inits = {t.name for t in qdq_model.graph.initializer}
    ops = set(op_types)
    out = []
    for n in qdq_model.graph.node:
        if n.op_type not in ops:
            continue
        if n.op_type in ("Conv", "ConvTranspose", "Gemm"):
            ins = list(n.input[:2])
            if any(t in inits or prod.get(t) is None for t in ins):
                continue
        else:
            ins = [t for t in n.input if t and t not in inits and prod.get(t) is not None
                   and prod[t].op_type not in ("Constant",)]
        if ins and all(prod[t].op_type == "DequantizeLinear" for t in ins):
            out.append(n.name)
    return out


def optimized_model(path, out_path=None):
    """The graph ONNX Runtime's CPU provider runs after its optimizations (all levels), as an
    ``onnx.ModelProto``: written through ``SessionOptions.optimized_model_filepath``."""
    ort = require("onnxruntime")
    onnx = require("onnx")
    with tempfile.TemporaryDirectory(prefix="yolo_edge_opt_") as tmp:
        target = Path(out_path) if out_path else Path(tmp, "optimized.onnx")
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.optimized_model_filepath = str(target)
        src = path.SerializeToString() if isinstance(path, onnx.ModelProto) else str(path)
        ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])
        return onnx.load(str(target))


def fused_op_counts(path) -> Counter:
    """``Counter`` of op types in the graph ONNX Runtime runs on the CPU (:func:`optimized_model`)."""
    return Counter(n.op_type for n in optimized_model(path).graph.node)


def integer_op_count(counts: Mapping[str, int]) -> int:
    return sum(v for k, v in counts.items() if k in INTEGER_OPS)


# --- the running CPU ---------------------------------------------------------------------------
_X86_FLAGS = ("avx2", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8")
_ARM_FLAGS = ("asimddp", "i8mm", "sve")


def cpu_features() -> dict:
    """The CPU features ONNX Runtime's 8-bit kernels depend on (Linux ``/proc/cpuinfo``; empty
    elsewhere): x86 AVX2 / AVX-512 BW / VNNI / AMX-INT8, ARM dot product (``asimddp``) and ``i8mm``."""
    machine = platform.machine().lower()
    flags: set[str] = set()
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key in ("flags", "features"):
                flags.update(value.split())
            elif key == "model name" and not model:
                model = value.strip()
    except OSError:
        pass
    known = _ARM_FLAGS if machine in ("aarch64", "arm64") else _X86_FLAGS
    return {"machine": machine, "model": model, "features": [f for f in known if f in flags]}


def int8_kernel_note(features: dict | None = None) -> str:
    """One line on which 8-bit kernel path this CPU gets, and whether ``reduce_range`` is advised."""
    f = features or cpu_features()
    have = set(f["features"])
    if f["machine"] in ("aarch64", "arm64"):
        return ("ARM64 " + ("with dot-product instructions (sdot/udot): fast 8-bit kernels" if "asimddp" in have
                            else "without dot-product instructions: 8-bit kernels gain little over FP32"))
    if have & {"avx512_vnni", "avx_vnni", "amx_int8"}:
        return "x86-64 with VNNI: fast U8S8 kernels, no reduce_range needed"
    if "avx2" in have:
        return "x86-64 AVX2 without VNNI: U8S8 works; use --int8-reduce-range if accuracy suffers (saturation)"
    return "x86-64 without AVX2: 8-bit kernels gain little over FP32"


__all__ = ["CPU_DEFAULT_METHOD", "CPU_OP_TYPES", "CPU_SUFFIX", "CpuInt8Config", "INTEGER_OPS", "TARGETS", "activation_ranges",
           "cpu_features", "fused_op_counts", "int8_kernel_note", "integer_op_count", "optimized_model",
           "quantize_cpu", "quantized_nodes", "quantized_tensors", "shape_nodes"]
