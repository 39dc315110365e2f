"""Precision map: a static prediction of the precision each node of an ONNX graph computes in under
TensorRT, per version (``yolo-edge info --precision MODEL.onnx [--trt 8.6|10|11]``).

Rules (onnx only; no TensorRT import):

* **TensorRT 10 and 11, strongly typed** (the network takes its types from the ONNX graph; TensorRT
  developer guide, "Strong Typing" and "Explicit Quantization",
  https://docs.nvidia.com/deeplearning/tensorrt/latest/inference-library/quantized-types-explicit-quantization.html:
  "Use explicit quantization with Strong Typing"; ``IDequantizeLayer::setToType`` sets a DQ's
  output type, which the ONNX parser takes from the scale's type):

  - a ``DequantizeLinear``'s output has the type of its scale (FP16 scale -> FP16 tensor);
  - a ``QuantizeLinear``'s output is INT8 (the type of its zero point);
  - ``Cast`` sets the type (``to``); ``CastLike`` takes its second input's type;
  - every other op computes in the float type of its inputs (graph inputs and initializers keep
    their declared types);
  - a ``Conv``/``ConvTranspose``/``Gemm``/``MatMul`` whose data and weight inputs are both outputs of
    ``DequantizeLinear`` runs **INT8** (TensorRT fuses the DQ into the layer);
  - a data-movement op that commutes with quantization (``MaxPool``, ``Concat``, ``Resize``,
    ``Reshape``, ...) whose float inputs all come from DQ and whose outputs all go to
    ``QuantizeLinear`` runs INT8 too (DQ -> op -> Q is one INT8 op).

* **TensorRT 8.6, weak typing with builder flags**: the same INT8 rule for layers surrounded by
  Q/DQ; every other float layer runs FP16 when ``BuilderFlag.FP16`` is set (the builder may choose
  it; the prediction assumes it does) and FP32 otherwise. FP16 scales are not accepted by 8.6
  (the 8.6.1 operator reference, ``Dequantize``: scale "T2: float32").

``QuantizeLinear``/``DequantizeLinear`` themselves are fused into their neighbours (precision
``qdq``); nodes that compute no float tensor, or only arithmetic on static shapes (folded at
build time), are ``shape``. FLOPs: a multiply-add
counts 2 (Conv: ``2 * out_elems * Cin/group * kH * kW``; MatMul/Gemm: ``2 * out_elems * K``), every
other node its output elements (pooling: times its window), with the batch fixed to 1.

An **FP32 island** is a connected group of FP32 nodes; islands inside the decode tail
(:func:`~yolo_edge.precision.graph.find_decode_tail`) are expected, any other one is a defect of the
INT8/FP16 graph for that TensorRT version.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Iterable

from ..deps import require
from ..errors import YoloEdgeError

TRT_VERSIONS = ("8.6", "10", "11")
WEIGHTED = ("Conv", "ConvTranspose", "Gemm", "MatMul")
CONV = ("Conv", "ConvTranspose")
# ops that only move or select values: DQ -> op -> Q runs as one INT8 op
COMMUTING = ("MaxPool", "Concat", "Resize", "Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Slice",
             "Split", "Identity", "Pad", "GlobalMaxPool")
POOLS = ("MaxPool", "AveragePool")
QDQ = ("QuantizeLinear", "DequantizeLinear")
# onnx.TensorProto element types
_FLOAT_TYPES = {1: "fp32", 10: "fp16", 16: "bf16", 11: "fp64"}
_INT8_TYPES = {2: "uint8", 3: "int8"}
_NO_FLOAT_OUT = ("Shape", "Size", "NonZero", "ArgMax", "ArgMin", "NonMaxSuppression", "Equal", "Less", "Greater",
                 "LessOrEqual", "GreaterOrEqual", "Not", "And", "Or", "Xor", "IsNaN", "IsInf", "Range")


def normalize_trt(version: str | int | float) -> str:
    """``"8.6"``, ``"10"`` or ``"11"`` from ``8.6``, ``"8.6.1"``, ``10``, ``"10.3"``..."""
    s = str(version).strip()
    major = s.split(".")[0]
    if major == "8":
        return "8.6"
    if major in ("10", "11"):
        return major
    raise YoloEdgeError(f"--trt must be one of {', '.join(TRT_VERSIONS)} (got {version!r})")


@dataclass
class NodePrecision:
    """One node's predicted compute precision."""

    node: str
    op_type: str
    precision: str  # int8 | fp16 | bf16 | fp32 | qdq | shape
    flops: int = 0
    tail: bool = False  # in the decode tail
    reason: str = ""


@dataclass
class PrecisionMap:
    """The prediction for one graph and one TensorRT version.

    Attributes:
        trt: ``"8.6"``, ``"10"`` or ``"11"``.
        nodes: every node, graph order.
        islands: connected groups of FP32 nodes: ``{"nodes", "op_types", "flops", "tail"}``.
        fp16_flag: 8.6 only: whether ``BuilderFlag.FP16`` was assumed.
    """

    trt: str
    nodes: list[NodePrecision]
    islands: list[dict] = field(default_factory=list)
    fp16_flag: bool | None = None

    def flops_by_precision(self, op_types: Iterable[str] | None = None) -> dict[str, int]:
        ops = set(op_types) if op_types is not None else None
        out = {"int8": 0, "fp16": 0, "bf16": 0, "fp32": 0}
        for n in self.nodes:
            if n.precision in out and (ops is None or n.op_type in ops):
                out[n.precision] += n.flops
        return out

    def shares(self, op_types: Iterable[str] | None = None) -> dict[str, float]:
        """Share of FLOPs (0..1) per precision, over all float nodes or only ``op_types``."""
        f = self.flops_by_precision(op_types)
        total = sum(f.values())
        return {k: (v / total if total else 0.0) for k, v in f.items()}

    @property
    def conv_int8_share(self) -> float:
        return self.shares(CONV)["int8"]

    @property
    def fp32_outside_tail(self) -> list[NodePrecision]:
        return [n for n in self.nodes if n.precision == "fp32" and not n.tail]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for n in self.nodes:
            out[n.precision] = out.get(n.precision, 0) + 1
        return out

    def summary(self) -> dict:
        return {"trt": self.trt, **({"fp16_flag": self.fp16_flag} if self.fp16_flag is not None else {}),
                "flops_share": {k: round(v, 6) for k, v in self.shares().items()},
                "conv_flops_int8_share": round(self.conv_int8_share, 6),
                "gflops": round(sum(self.flops_by_precision().values()) / 1e9, 4),
                "node_counts": self.counts(),
                "fp32_nodes_outside_tail": [n.node for n in self.fp32_outside_tail],
                "fp32_islands": self.islands}

    def to_dict(self) -> dict:
        return {**self.summary(), "nodes": [asdict(n) for n in self.nodes]}

    def format(self, all_nodes: bool = False) -> str:
        """Human-readable summary (and optionally every node)."""
        s = self.shares()
        flag = "" if self.fp16_flag is None else (" (builder flags INT8+FP16)" if self.fp16_flag
                                                  else " (builder flag INT8 only)")
        lines = [f"TensorRT {self.trt}{flag}: predicted compute precision",
                 "FLOPs share: " + ", ".join(f"{k.upper()} {100 * v:.1f} %" for k, v in s.items() if v or k != "bf16"),
                 f"convolution FLOPs in INT8: {100 * self.conv_int8_share:.1f} %",
                 "nodes: " + ", ".join(f"{k} {v}" for k, v in sorted(self.counts().items()))]
        out = self.fp32_outside_tail
        lines.append(f"FP32 nodes outside the decode tail: {len(out)}")
        lines.append(f"FP32 islands: {len(self.islands)}")
        for i, isl in enumerate(self.islands):
            where = "decode tail" if isl["tail"] else "OUTSIDE the decode tail"
            shown = ", ".join(isl["nodes"][:6]) + (f", ... (+{len(isl['nodes']) - 6})" if len(isl["nodes"]) > 6 else "")
            lines.append(f"  {i + 1}. {len(isl['nodes'])} node(s), {isl['flops'] / 1e6:.2f} MFLOPs, {where}: {shown}")
        if all_nodes:
            lines.append("")
            w = max((len(n.node) for n in self.nodes), default=4)
            for n in self.nodes:
                lines.append(f"{n.node:<{w}}  {n.op_type:<18} {n.precision:<5} {n.flops:>12d}"
                             f"{'  tail' if n.tail else ''}{'  ' + n.reason if n.reason else ''}")
        return "\n".join(lines)


# --- shapes and FLOPs ------------------------------------------------------------------------
def _shapes(model) -> dict[str, list[int]]:
    """``{tensor: static shape}`` with a dynamic leading batch fixed to 1 (unknown shapes left out)."""
    onnx = require("onnx")
    from .graph import copy_model

    m = copy_model(model)
    for inp in m.graph.input:
        dims = inp.type.tensor_type.shape.dim
        if len(dims) and not dims[0].HasField("dim_value"):
            dims[0].dim_value = 1
    try:
        m = onnx.shape_inference.infer_shapes(m)
    except Exception:  # custom ops: keep what the model carries
        pass
    out = {}
    g = m.graph
    for v in (*g.input, *g.value_info, *g.output):
        dims = v.type.tensor_type.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            out[v.name] = [int(d.dim_value) for d in dims]
    for t in g.initializer:
        out[t.name] = list(t.dims)
    return out


def _prod(xs) -> int:
    p = 1
    for x in xs:
        p *= int(x)
    return p


def node_flops(node, shapes: dict[str, list[int]]) -> int:
    """FLOPs of one node (multiply-add = 2); 0 when shapes are unknown or for Q/DQ."""
    if node.op_type in QDQ or node.op_type == "Constant":
        return 0
    out = shapes.get(node.output[0]) if node.output else None
    if out is None:
        return 0
    n_out = _prod(out)
    if node.op_type in CONV:
        w = shapes.get(node.input[1])
        if w is None:
            return 0
        if node.op_type == "Conv":  # w: (Cout, Cin/group, kH, kW)
            return 2 * n_out * _prod(w[1:])
        x = shapes.get(node.input[0])  # ConvTranspose, w: (Cin, Cout/group, kH, kW)
        return 2 * _prod(x) * _prod(w[1:]) if x else 0
    if node.op_type in ("MatMul", "Gemm"):
        a = shapes.get(node.input[0])
        if not a:
            return 0
        trans_a = next((a_.i for a_ in node.attribute if a_.name == "transA"), 0)
        k = a[-2] if (node.op_type == "Gemm" and trans_a) else a[-1]
        return 2 * n_out * k
    if node.op_type in POOLS:
        k = next((list(a.ints) for a in node.attribute if a.name == "kernel_shape"), [1])
        return n_out * _prod(k)
    return n_out


# --- the prediction --------------------------------------------------------------------------
def _elem_types(model) -> dict[str, int]:
    """Element types we know without propagation: inputs, initializers, Constants, value_info."""
    g = model.graph
    types: dict[str, int] = {}
    for v in (*g.value_info, *g.output, *g.input):
        if v.type.tensor_type.elem_type:
            types[v.name] = v.type.tensor_type.elem_type
    for t in g.initializer:
        types[t.name] = t.data_type
    for n in g.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    types[n.output[0]] = a.t.data_type
    return types


def precision_map(model, trt: str | int | float = "10", fp16_flag: bool = False, tail=None) -> PrecisionMap:
    """Predict each node's compute precision under TensorRT ``trt`` (see the module doc).

    Args:
        model: a path or an ``onnx.ModelProto``.
        trt: ``8.6`` (weak typing, builder flags), ``10`` or ``11`` (strongly typed).
        fp16_flag: 8.6 only: ``BuilderFlag.FP16`` is set beside ``INT8``.
        tail: decode-tail node names (default: :func:`~yolo_edge.precision.graph.find_decode_tail`).
    """
    from .graph import find_decode_tail, load

    model = load(model)
    trt = normalize_trt(trt)
    strong = trt != "8.6"
    g = model.graph
    if tail is None:
        try:
            tail = set(find_decode_tail(model).nodes)
        except Exception:  # not a detector graph: no tail
            tail = set()
    tail = set(tail)
    declared = _elem_types(model)
    prod = {o: n for n in g.node for o in n.output}
    cons: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            if i:
                cons.setdefault(i, []).append(n)
    shapes = _shapes(model)
    inits = {t.name for t in g.initializer}

    # 1. element types by propagation in graph order (ONNX graphs are topologically sorted)
    types = {k: v for k, v in declared.items() if k in inits or k in {i.name for i in g.input}
             or (k in prod and prod[k].op_type == "Constant")}
    for n in g.node:
        if n.op_type == "Constant":
            continue
        if n.op_type == "DequantizeLinear":
            t = [types.get(n.input[1], declared.get(n.input[1], 1))]
        elif n.op_type == "QuantizeLinear":
            t = [types.get(n.input[2], 2) if len(n.input) > 2 and n.input[2] else 2]
        elif n.op_type == "Cast":
            t = [next(a.i for a in n.attribute if a.name == "to")]
        elif n.op_type == "CastLike":
            t = [types.get(n.input[1], 1)]
        elif n.op_type in _NO_FLOAT_OUT:
            t = [declared.get(o, 7) for o in n.output]
        else:
            fin = [types[i] for i in n.input if i and types.get(i) in _FLOAT_TYPES]
            if fin:
                t = [declared.get(o) if declared.get(o) not in (None, *_FLOAT_TYPES) else fin[0] for o in n.output]
            else:  # no float input: shape arithmetic, or a custom op's declared outputs
                t = [declared.get(o, 7) for o in n.output]
        for o, ty in zip(n.output, t + [t[-1]] * (len(n.output) - len(t))):
            if o:
                types[o] = ty

    # tensors that depend on the input data (Shape/Size outputs do not: shapes are static in an
    # engine, so the arithmetic on them is folded at build time)
    data: set[str] = {i.name for i in g.input}
    for n in g.node:
        if n.op_type not in ("Shape", "Size") and any(i in data for i in n.input):
            data.update(o for o in n.output if o)

    def from_dq(name: str) -> bool:
        p = prod.get(name)
        return p is not None and p.op_type == "DequantizeLinear"

    # 2. compute precision per node
    nodes: list[NodePrecision] = []
    for n in g.node:
        if n.op_type == "Constant":
            continue
        flops = node_flops(n, shapes)
        in_tail = n.name in tail
        if n.op_type in QDQ:
            nodes.append(NodePrecision(n.name, n.op_type, "qdq", 0, in_tail, "fused into its neighbours"))
            continue
        if not any(o in data for o in n.output) and n.op_type not in WEIGHTED:
            nodes.append(NodePrecision(n.name, n.op_type, "shape", 0, in_tail, "shape arithmetic (folded)"))
            continue
        float_ins = [i for i in n.input if i and types.get(i) in _FLOAT_TYPES]
        float_outs = [o for o in n.output if o and types.get(o) in _FLOAT_TYPES]
        if n.op_type in WEIGHTED:
            xw = [i for i in n.input[:2] if i]
            if len(xw) == 2 and all(from_dq(i) for i in xw):
                nodes.append(NodePrecision(n.name, n.op_type, "int8", flops, in_tail, "inputs and weights from DQ"))
                continue
        if (n.op_type in COMMUTING and float_ins and all(from_dq(i) for i in float_ins if i not in inits)
                and all(c.op_type == "QuantizeLinear" for o in n.output for c in cons.get(o, []))
                and any(cons.get(o) for o in n.output)):
            nodes.append(NodePrecision(n.name, n.op_type, "int8", flops, in_tail, "DQ -> op -> Q"))
            continue
        ref = float_outs or float_ins
        if not ref:
            nodes.append(NodePrecision(n.name, n.op_type, "shape", 0, in_tail, "no float tensor"))
            continue
        if strong:
            # the op computes in its inputs' type (a Cast: in the type it writes)
            ty = types[float_outs[0]] if (n.op_type in ("Cast", "CastLike") and float_outs) else types[ref[0]]
            if float_ins and n.op_type not in ("Cast", "CastLike"):
                ty = types[float_ins[0]]
            prec = _FLOAT_TYPES.get(ty, "fp32")
            if prec == "fp64":
                prec = "fp32"
            nodes.append(NodePrecision(n.name, n.op_type, prec, flops, in_tail))
        else:
            prec = "fp16" if fp16_flag else "fp32"
            nodes.append(NodePrecision(n.name, n.op_type, prec, flops, in_tail,
                                       "builder flag FP16" if fp16_flag else "no FP16 builder flag"))

    # 3. FP32 islands: connected components over producer -> consumer edges
    fp32 = {n.node for n in nodes if n.precision == "fp32"}
    by_name = {n.node: n for n in nodes}
    parent = {x: x for x in fp32}

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for n in g.node:
        if n.name not in fp32:
            continue
        for i in n.input:
            p = prod.get(i)
            if p is not None and p.name in fp32:
                parent[find(p.name)] = find(n.name)
    groups: dict[str, list[str]] = {}
    for n in g.node:
        if n.name in fp32:
            groups.setdefault(find(n.name), []).append(n.name)
    islands = []
    for members in groups.values():
        islands.append({"nodes": members, "op_types": sorted({by_name[m].op_type for m in members}),
                        "flops": sum(by_name[m].flops for m in members),
                        "tail": all(by_name[m].tail for m in members)})
    islands.sort(key=lambda d: (d["tail"], -d["flops"]))
    return PrecisionMap(trt, nodes, islands, fp16_flag if not strong else None)


def precision_summaries(model, versions: Iterable[str] = TRT_VERSIONS, fp16_flag: bool = False) -> dict[str, dict]:
    """``{version: PrecisionMap.summary()}`` for each TensorRT version (for the calibration report)."""
    from .graph import find_decode_tail, load

    model = load(model)
    try:
        tail = set(find_decode_tail(model).nodes)
    except Exception:
        tail = set()
    return {v: precision_map(model, v, fp16_flag=fp16_flag, tail=tail).summary() for v in versions}


def print_precision_map(path, trt: str = "10", fp16_flag: bool = False, as_json: bool = False,
                        all_nodes: bool = False) -> int:
    """What ``yolo-edge info --precision`` prints."""
    pm = precision_map(path, trt, fp16_flag=fp16_flag)
    if as_json:
        print(json.dumps(pm.to_dict() if all_nodes else pm.summary(), indent=1))
    else:
        print(f"{path}")
        print(pm.format(all_nodes=all_nodes))
    return 0


__all__ = ["NodePrecision", "PrecisionMap", "TRT_VERSIONS", "node_flops", "normalize_trt", "precision_map",
           "precision_summaries", "print_precision_map"]
