"""INT8: explicit Q/DQ ONNX through ``onnxruntime.quantization`` (DESIGN §1).

What the graph gets (what TensorRT's explicit quantization expects):

* symmetric INT8 everywhere (zero-point 0, ``scale = amax / 127``);
* weights per output channel (``DequantizeLinear`` with ``axis=0`` on an INT8 initializer);
* activations per tensor: one ``QuantizeLinear -> DequantizeLinear`` pair on the *input* of each
  quantized layer, none on its output (TensorRT fuses Conv + SiLU and requantizes at the next
  layer's input; ``OpTypesToExcludeOutputQuantization``);
* biases stay float (TensorRT has no INT32 ``DequantizeLinear``; ``QuantizeBias=False``);
* the decode tail (DFL softmax, anchor arithmetic, score sigmoid, the Concat/Mul producing
  ``boxes`` and ``scores``) and every excluded layer carry no Q/DQ: they run in FP32/FP16. Boxes and
  scores are therefore never quantized, and never as one tensor.

Ranges come from :class:`~yolo_edge.precision.calibration.CalibrationStats` (one calibration pass
for every method); they are handed to ``quantize_static`` through its calibration-cache argument,
so re-quantizing with other exclusions never re-runs calibration.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from ..deps import require
from ..errors import YoloEdgeError
from .calibration import DEFAULT_METHOD, DEFAULT_PERCENTILE, METHODS
from .qdq import DEFAULT_SHIFT, DEFAULT_WEIGHT_SCALE, SHIFTS, WEIGHT_SCALES

DEFAULT_OP_TYPES = ("Conv",)
# trt: TensorRT's Q/DQ placement recommendations (weighted-layer inputs, residual Add input, MaxPool input);
# conv: Q/DQ on the inputs of ``op_types`` layers only (through onnxruntime.quantization; the placement
# before issue 12, kept for comparison)
PLACEMENTS = ("trt", "conv")
DEFAULT_PLACEMENT = "trt"


@dataclass(frozen=True)
class Int8Config:
    """How to quantize.

    Attributes:
        method: calibration method choosing each activation's ``amax``: minmax | entropy | percentile | mse.
        percentile: for ``percentile``, of ``|x|``.
        op_types: layers whose inputs get Q/DQ (``("Conv",)``: every convolution; add ``"MatMul"``
            for the attention block).
        exclude: extra node names kept in higher precision (beside the decode tail).
        per_channel: per-output-channel weight scales.
        weight_scale: ``trt`` placement: ``mse`` (each channel's clipping with the least squared error
            of its INT8 weights) or ``max`` (max|w| / 127); see :func:`~yolo_edge.precision.qdq.quantize_weight`.
            The ``conv`` placement (onnxruntime's quantizer) always uses ``max``.
        placement: ``trt`` (TensorRT's recommendations, see :func:`qdq_sites`) or ``conv`` (inputs of
            ``op_types`` layers only, the placement before issue 12).
        int8_weights: ``trt`` placement: INT8 weights ``{initializer: (q, scale)}`` written instead of
            nearest rounding (:func:`~yolo_edge.precision.rounding.gptq_weights`; made from data by the
            precision job, so not part of equality).
        shift: ``trt`` placement: which activations with a static lower bound (SiLU, Sigmoid, the
            image) get an INT8 grid moved over their range instead of centred on 0 (``all``,
            ``unpadded``, ``off``; see :func:`~yolo_edge.precision.qdq.shift_activations`).
    """

    method: str = DEFAULT_METHOD
    percentile: float = DEFAULT_PERCENTILE
    op_types: tuple[str, ...] = DEFAULT_OP_TYPES
    exclude: tuple[str, ...] = ()
    per_channel: bool = True
    placement: str = DEFAULT_PLACEMENT
    weight_scale: str = DEFAULT_WEIGHT_SCALE
    int8_weights: Mapping[str, tuple] | None = field(default=None, compare=False, repr=False)
    shift: str = DEFAULT_SHIFT

    def __post_init__(self):
        if self.placement not in PLACEMENTS:
            raise YoloEdgeError(f"unknown Q/DQ placement {self.placement!r}; choose from {', '.join(PLACEMENTS)}")
        if self.weight_scale not in WEIGHT_SCALES:
            raise YoloEdgeError(f"unknown weight scale {self.weight_scale!r}; choose from {', '.join(WEIGHT_SCALES)}")
        if self.shift not in SHIFTS:
            raise YoloEdgeError(f"unknown activation shift {self.shift!r}; choose from {', '.join(SHIFTS)}")
        if self.method not in METHODS:
            raise YoloEdgeError(f"unknown calibration method {self.method!r}; choose from {', '.join(METHODS)}")
        if not 0 < self.percentile <= 100:
            raise YoloEdgeError(f"percentile must be in (0, 100], got {self.percentile}")
        object.__setattr__(self, "op_types", tuple(self.op_types))
        object.__setattr__(self, "exclude", tuple(self.exclude))

    def algorithm(self) -> dict:
        d = {"method": self.method, "symmetric": True, "per_channel": self.per_channel,
             "op_types": list(self.op_types), "placement": self.placement,
             "weight_scale": self.weight_scale if self.placement == "trt" else "max",
             "weight_rounding": "gptq" if self.int8_weights and self.placement == "trt" else "nearest",
             "shift": self.shift if self.placement == "trt" else "off"}
        if self.method == "percentile":
            d["percentile"] = self.percentile
        return d


@contextlib.contextmanager
def _quiet():
    """onnxruntime.quantization logs warnings on the root logger and prints; silence both."""
    import io
    import sys

    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    out, sys.stdout = sys.stdout, io.StringIO()
    try:
        yield
    finally:
        sys.stdout = out
        logging.disable(previous)


def quantizable_nodes(model, op_types: Iterable[str] = DEFAULT_OP_TYPES, exclude: Iterable[str] = ()) -> list[str]:
    """Names of the nodes that will get Q/DQ: ``op_types`` nodes outside ``exclude``, in graph order."""
    ops, skip = set(op_types), set(exclude)
    return [n.name for n in model.graph.node if n.op_type in ops and n.name not in skip]


def activation_inputs(model, nodes: Sequence[str]) -> dict[str, list[str]]:
    """``{activation tensor: [consumer nodes]}``: the non-initializer float inputs of ``nodes``
    (data input only for Conv/Gemm; both inputs of MatMul)."""
    inits = {t.name for t in model.graph.initializer}
    by_name = {n.name: n for n in model.graph.node}
    out: dict[str, list[str]] = {}
    for name in nodes:
        n = by_name[name]
        ins = [n.input[0]] if n.op_type in ("Conv", "ConvTranspose", "Gemm") else list(n.input)
        for t in ins:
            if t and t not in inits:
                out.setdefault(t, []).append(name)
    return out


def quantize_qdq(model, amax: Mapping[str, float], config: Int8Config = Int8Config(),
                 nodes_to_exclude: Iterable[str] = ()):
    """Quantize ``model`` (an FP32 ``onnx.ModelProto``) to explicit Q/DQ with the given activation
    ranges. ``amax`` must cover the activation inputs of every quantized node; tensors it lacks are
    left unquantized by onnxruntime. Returns the Q/DQ ``onnx.ModelProto``."""
    onnx = require("onnx")
    q = require("onnxruntime.quantization")
    from onnxruntime.quantization.calibrate import TensorData, TensorsData

    excluded = sorted(set(nodes_to_exclude) | set(config.exclude))
    if config.placement != "conv":
        from .qdq import insert_qdq, qdq_sites

        return insert_qdq(model, qdq_sites(model, config, excluded), amax, per_channel=config.per_channel,
                          weight_scale=config.weight_scale, int8_weights=config.int8_weights, shift=config.shift)
    ranges = TensorsData(q.CalibrationMethod.MinMax, {
        k: TensorData(lowest=np.array(-abs(v), np.float32), highest=np.array(abs(v), np.float32))
        for k, v in amax.items()})
    extra = {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False,
             "OpTypesToExcludeOutputQuantization": list(config.op_types)}
    with tempfile.TemporaryDirectory(prefix="yolo_edge_q_") as tmp, _quiet():
        src, dst, cache = Path(tmp, "fp32.onnx"), Path(tmp, "int8.onnx"), Path(tmp, "ranges.json")
        onnx.save(model, str(src))
        kwargs = dict(quant_format=q.QuantFormat.QDQ, op_types_to_quantize=list(config.op_types),
                      per_channel=config.per_channel, activation_type=q.QuantType.QInt8,
                      weight_type=q.QuantType.QInt8, nodes_to_exclude=excluded,
                      calibrate_method=q.CalibrationMethod.MinMax, extra_options=extra)
        if "calibration_cache_path" in inspect.signature(q.quantize_static).parameters:
            from onnxruntime.quantization.calibrate import save_tensors_data

            save_tensors_data(ranges, cache)
            q.quantize_static(str(src), str(dst), None, calibration_cache_path=str(cache), **kwargs)
        else:  # onnxruntime < 1.2x: no range cache; drive the quantizer directly with our ranges
            _quantize_with_ranges(src, dst, ranges, kwargs)
        out = onnx.load(str(dst))
    # quantize_static loses nothing we need, but keep the source's metadata and IR version
    del out.metadata_props[:]
    out.metadata_props.extend(model.metadata_props)
    out.ir_version = max(out.ir_version, model.ir_version) if out.ir_version else model.ir_version
    return out


def _quantize_with_ranges(src: Path, dst: Path, ranges, kw: dict) -> None:  # pragma: no cover - old ORT
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer
    from onnxruntime.quantization.quant_utils import load_model_with_shape_infer

    model = load_model_with_shape_infer(src)
    quantizer = QDQQuantizer(model, kw["per_channel"], False, kw["weight_type"], kw["activation_type"], ranges,
                             [], kw["nodes_to_exclude"], kw["op_types_to_quantize"], kw["extra_options"])
    quantizer.quantize_model()
    quantizer.model.save_model_to_file(str(dst), False)


# --- inspecting a Q/DQ graph ---------------------------------------------------------------------
@dataclass
class QdqLayer:
    """One quantized layer of a Q/DQ graph."""

    node: str
    op_type: str
    activations: dict[str, str] = field(default_factory=dict)  # float tensor -> its DequantizeLinear output
    scales: dict[str, float] = field(default_factory=dict)  # float tensor -> activation scale
    weight: str = ""  # float weight name (the quantized initializer's source)
    weight_scales: np.ndarray | None = None  # per output channel
    weight_q: np.ndarray | None = None  # the INT8 weights


def _const(model, name: str):
    from onnx import numpy_helper

    for t in model.graph.initializer:
        if t.name == name:
            return numpy_helper.to_array(t)
    for n in model.graph.node:
        if n.op_type == "Constant" and n.output[0] == name:
            return numpy_helper.to_array(n.attribute[0].t)
    return None


def qdq_layers(qdq_model) -> dict[str, QdqLayer]:
    """``{node name: QdqLayer}`` for every node fed by a ``DequantizeLinear``."""
    from .graph import dq_fed_inputs

    out: dict[str, QdqLayer] = {}
    for n, idx, dq, qn in dq_fed_inputs(qdq_model):
        layer = out.setdefault(n.name, QdqLayer(n.name, n.op_type))
        src = dq.input[0]
        scale = _const(qdq_model, dq.input[1])
        if qn is not None:  # activation: x -> Q -> DQ
            layer.activations[qn.input[0]] = n.input[idx]
            layer.scales[qn.input[0]] = float(np.asarray(scale).reshape(-1)[0])
        elif idx == 1:  # weight: INT8 initializer -> DQ
            layer.weight = src[: -len("_quantized")] if src.endswith("_quantized") else src
            layer.weight_scales = np.asarray(scale, np.float32).reshape(-1)
            layer.weight_q = _const(qdq_model, src)
    return out


def activation_scales(qdq_model) -> dict[str, float]:
    """``{float tensor: scale}`` of every activation ``QuantizeLinear`` in a Q/DQ graph."""
    scales = {}
    for layer in qdq_layers(qdq_model).values():
        scales.update(layer.scales)
    return scales


def fake_quant(x: np.ndarray, scale, axis: int | None = None, qmin: int = -128, qmax: int = 127) -> np.ndarray:
    """Numpy reference of ``DequantizeLinear(QuantizeLinear(x))`` with zero-point 0 (round half to even)."""
    s = np.asarray(scale, np.float32)
    if axis is not None and s.ndim == 1:
        shape = [1] * x.ndim
        shape[axis] = -1
        s = s.reshape(shape)
    return (np.clip(np.round(x / s), qmin, qmax) * s).astype(np.float32)


def dump_ranges(amax: Mapping[str, float]) -> str:
    return json.dumps({k: float(v) for k, v in sorted(amax.items())}, indent=1)
