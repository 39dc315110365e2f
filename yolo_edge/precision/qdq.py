"""Q/DQ placement for TensorRT, and its FP16-scale twin for TensorRT >= 10 (onnx + numpy only).

Where the Q/DQ pairs go (``Int8Config(placement="trt")``), following NVIDIA's explicit-quantization
guidance: TensorRT Developer Guide, "Working with INT8" -> "Explicit Quantization" ->
"Q/DQ Layer-Placement Recommendations" (8.x: https://docs.nvidia.com/deeplearning/tensorrt/developer-guide/index.html#qdq-placement-recs;
10.x: .../latest/inference-library/quantized-types-explicit-quantization.html): "quantize all inputs of
weighted operations (Convolution, Transposed Convolution and GEMM)", "by default, do not quantize the
outputs of weighted operations", "quantize the residual input in skip connections" (TensorRT fuses
the element-wise addition that follows a weighted layer, and the precision of the Add's other input
decides the precision of the fused output); MaxPool commutes with quantization ("TensorRT
Processing of Q/DQ Networks"), so DQ -> MaxPool runs INT8. ModelOpt's ONNX quantizer
(``nvidia-modelopt`` 0.47, ``modelopt/onnx/quantization/graph_utils.py``:
``build_non_residual_input_map``) finds the residual input from the same idea:

* **every input of a weighted layer** (``op_types``, default ``Conv``): the activation per tensor,
  the weights per output channel (an INT8 initializer and a ``DequantizeLinear``);
* **the residual input of Add**: for ``x + f(x)`` where ``f`` ends in a convolution (through its
  activation: SiLU as ``Mul(x, Sigmoid(x))``, ReLU, ...), the skip input ``x`` gets Q/DQ and ``f(x)``
  none, so TensorRT fuses the Add into that convolution's INT8 epilogue;
* **MaxPool's input**, so DQ -> MaxPool runs INT8 and the pooled tensor stays INT8 into the next
  quantized layer.

Nothing is placed on layer outputs (TensorRT requantizes at the next layer's input), in the decode
tail, or on excluded nodes. One Q/DQ pair per tensor is shared by every consumer that wants it.

Two files carry the same quantization (identical INT8 weights, identical placement; scales
differ only in dtype):

* the **FP32-scale** graph (:func:`insert_qdq` on the FP32 graph): ONNX Runtime on a CPU validates it;
  TensorRT 8.6 builds it with builder flags (8.6's ``IDequantizeLayer`` takes FP32 scales only);
* the **FP16-scale** graph (:func:`fp16_scale_twin`: the same Q/DQ on the FP16 graph, opset 19):
  under strongly typed TensorRT (10, 11) a ``DequantizeLinear``'s output takes its scale's type, so
  everything between INT8 layers (SiLU, Concat, Resize, Split, the Add) runs FP16 instead of FP32.
  ONNX Runtime's CPU provider runs it too (FP16 Q/DQ kernels since opset 19).
"""

from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np

from ..deps import require
from ..errors import YoloEdgeError

QDQ_OPSET = 19  # QuantizeLinear/DequantizeLinear accept FP16 scales from opset 19
_ACTIVATIONS = ("Relu", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Clip", "Tanh", "Elu", "Selu")
_WEIGHT_AXIS = {"Conv": 0, "ConvTranspose": 1}


def fusible_conv(model, tensor: str, prod=None, cons=None):
    """The convolution whose output ``tensor`` is, through at most one pointwise activation
    (SiLU written ``Mul(x, Sigmoid(x))``, ReLU, ...) that reads nothing else; None otherwise."""
    from .graph import consumers, producers

    prod = prod if prod is not None else producers(model)
    cons = cons if cons is not None else consumers(model)
    p = prod.get(tensor)
    if p is None:
        return None
    if p.op_type in ("Conv", "ConvTranspose"):
        return p
    if p.op_type in _ACTIVATIONS:
        c = prod.get(p.input[0])
        return c if c is not None and c.op_type in ("Conv", "ConvTranspose") else None
    if p.op_type == "Mul" and len(p.input) == 2:  # SiLU: x * Sigmoid(x)
        for a, b in ((0, 1), (1, 0)):
            s = prod.get(p.input[b])
            if s is not None and s.op_type == "Sigmoid" and s.input[0] == p.input[a]:
                c = prod.get(p.input[a])
                if c is not None and c.op_type in ("Conv", "ConvTranspose"):
                    return c
    return None


def _ancestors(prod, tensor: str, limit: int = 10000) -> set[str]:
    """Every tensor upstream of ``tensor`` (inclusive)."""
    seen, stack = set(), [tensor]
    while stack and len(seen) < limit:
        t = stack.pop()
        if t in seen:
            continue
        seen.add(t)
        p = prod.get(t)
        if p is not None:
            stack.extend(i for i in p.input if i)
    return seen


def residual_inputs(model, exclude: Iterable[str] = ()) -> dict[str, int]:
    """``{Add node: index of its residual (skip) input}`` for every residual Add outside ``exclude``.

    An Add ``a + b`` is residual when one input (the skip ``a``) is upstream of the other (``b``),
    and ``b`` is the output of a convolution (with its activation) that TensorRT can fuse the Add
    into. Adds with a constant input (bias, anchor offsets) are not residual."""
    from .graph import consumers, initializer_names, producers

    prod, cons = producers(model), consumers(model)
    consts = initializer_names(model) | {n.output[0] for n in model.graph.node if n.op_type == "Constant"}
    skip = set(exclude)
    out = {}
    for n in model.graph.node:
        if n.op_type != "Add" or n.name in skip or len(n.input) != 2:
            continue
        a, b = n.input
        if a in consts or b in consts or a not in prod or b not in prod:
            continue
        for res, branch, idx in ((a, b, 0), (b, a, 1)):
            if res in _ancestors(prod, branch) and fusible_conv(model, branch, prod, cons) is not None:
                out[n.name] = idx
                break
    return out


def qdq_sites(model, config, exclude: Iterable[str] = ()) -> dict[str, list[tuple[str, int]]]:
    """``{activation tensor: [(consumer node, input index)]}``: where ``placement="trt"`` puts an
    activation Q/DQ (weights are added by :func:`insert_qdq` for the weighted consumers)."""
    from .graph import initializer_names

    skip = set(exclude) | set(config.exclude)
    ops = set(config.op_types)
    consts = initializer_names(model) | {n.output[0] for n in model.graph.node if n.op_type == "Constant"}
    res = residual_inputs(model, skip)
    sites: dict[str, list[tuple[str, int]]] = {}

    def add(t, node, idx):
        if t and t not in consts:
            sites.setdefault(t, []).append((node, idx))

    for n in model.graph.node:
        if n.name in skip:
            continue
        if n.op_type in ops:
            if n.op_type in _WEIGHT_AXIS or n.op_type == "Gemm":
                if len(n.input) > 1 and n.input[1] in consts:  # a layer without constant weights stays float
                    add(n.input[0], n.name, 0)
            else:  # MatMul: both inputs (the constant one is a weight)
                add(n.input[0], n.name, 0)
                add(n.input[1], n.name, 1)
        elif n.name in res:
            add(n.input[res[n.name]], n.name, res[n.name])
        elif n.op_type == "MaxPool":
            add(n.input[0], n.name, 0)
    return sites


# Share of the quantizable weighted-layer FLOPs the head guard may keep FP16 (issue 12's floor: at
# least 95 % of the convolution FLOPs run INT8).
HEAD_GUARD_SHARE = 0.05


def head_guard(model, head: Iterable[str], quantized: Iterable[str], max_share: float = HEAD_GUARD_SHARE
               ) -> list[str]:
    """The head's prediction layers kept FP16 (no Q/DQ), finest resolution first, within a FLOP share.

    ``head`` are the last weighted layers before the decode tail (:class:`~yolo_edge.precision.graph.DecodeTail`),
    one group per output resolution (YOLOv5: one 1x1 conv per level; YOLOv8/11: a box and a class
    conv per level). Their outputs are the box coordinates and the objectness / class logits
    themselves, and the finest level (stride 8) carries the small objects. Groups are taken from the
    finest resolution while the FLOPs kept out of INT8 stay within ``max_share`` of the FLOPs of all
    ``quantized`` weighted layers (head included); a group that would exceed it stops the walk.

    Measured on YOLOv5n, coco128 (first 64 / last 64 and swapped): quantizing the stride-8
    prediction conv's input costs AP-small 0.5 point on both splits and its agreement with FP32
    detections on small objects 2-5 points (``benchmarks/int8_accuracy.py``; README "INT8
    calibration methods"). It is 4.7 % of YOLOv5n's convolution FLOPs.
    """
    from .precision_map import _prod, _shapes, node_flops

    if max_share <= 0:
        return []
    shapes = _shapes(model)
    by_name = {n.name: n for n in model.graph.node}
    quantized = [n for n in quantized if n in by_name]
    total = sum(node_flops(by_name[n], shapes) for n in quantized)
    levels: dict[int, list[str]] = {}
    for name in head:
        n = by_name.get(name)
        out = shapes.get(n.output[0]) if n is not None and name in quantized else None
        if out is None or len(out) < 3:
            continue  # a Gemm / unknown shape: no resolution to order by
        levels.setdefault(_prod(out[2:]), []).append(name)
    kept: list[str] = []
    spent = 0
    for res in sorted(levels, reverse=True):
        cost = sum(node_flops(by_name[n], shapes) for n in levels[res])
        if total <= 0 or (spent + cost) / total > max_share:
            break
        kept += levels[res]
        spent += cost
    return kept


def _scale(amax: float) -> np.float32:
    a = float(abs(amax))
    return np.float32(a / 127.0) if a > 0 else np.float32(1.0)


# Per-channel weight scales: ``mse`` (the default: the clipping of each channel, from
# WEIGHT_CLIP_RATIOS x max|w|, with the least squared rounding + clipping error of its INT8 weights)
# or ``max`` (max|w| / 127, as TensorRT's and ModelOpt's). On YOLOv5n mse lowers the weights' total
# squared error by 0.5 % (18 % of the channels take 0.99 x max). Measured on coco128, eight halves,
# refined ranges, two orders of the refinement images (README "INT8 calibration methods"): mean
# agreement with FP32 90.7 against max's 90.2, ΔmAP50-95 -0.93 against -1.03, ΔAP-small -0.51
# against -0.78; higher agreement on 11 of the 16 runs.
WEIGHT_SCALES = ("mse", "max")
DEFAULT_WEIGHT_SCALE = "mse"
WEIGHT_CLIP_RATIOS = np.linspace(0.6, 1.0, 41, dtype=np.float32)


def quantize_weight(w: np.ndarray, axis: int | None, scale: str = "max") -> tuple[np.ndarray, np.ndarray]:
    """Symmetric INT8 of a weight: ``(q int8, scale float32)`` per channel along ``axis`` (per tensor
    when None), round half to even, values in [-127, 127].

    ``scale="max"``: ``max|w| / 127`` (1 where the channel is all zeros). ``scale="mse"``: for each
    channel, ``r * max|w| / 127`` with the ratio ``r`` of :data:`WEIGHT_CLIP_RATIOS` whose INT8
    weights are closest to ``w`` in squared error (``r = 1``, the max scale, is among them and wins
    ties, so the error is never larger than max's). Data-free: it depends on the weights only."""
    if scale not in WEIGHT_SCALES:
        raise YoloEdgeError(f"unknown weight scale {scale!r}; choose from {', '.join(WEIGHT_SCALES)}")
    w = np.asarray(w, np.float32)
    if axis is None:
        flat = w.reshape(1, -1)
    else:
        flat = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
    amax = np.abs(flat).max(axis=1, initial=0.0)
    s = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
    if scale == "mse":
        def err(sc):
            return ((np.clip(np.round(flat / sc[:, None]), -127, 127) * sc[:, None] - flat) ** 2).sum(axis=1)

        best = err(s)
        for r in WEIGHT_CLIP_RATIOS[::-1][1:]:  # from the max scale down; strictly better replaces
            cand = np.where(amax > 0, r * amax / 127.0, 1.0).astype(np.float32)
            e = err(cand)
            s = np.where(e < best, cand, s)
            best = np.minimum(e, best)
    if axis is None:
        s0 = np.float32(s[0])
        return np.clip(np.round(w / s0), -127, 127).astype(np.int8), np.asarray(s0, np.float32)
    shape = [1] * w.ndim
    shape[axis] = -1
    return np.clip(np.round(w / s.reshape(shape)), -127, 127).astype(np.int8), s


# --- shifted activation grids ---------------------------------------------------------------
# TensorRT's INT8 is symmetric (zero point 0), so a tensor that never goes below a small lower bound
# (SiLU's outputs >= -0.2785, a Sigmoid's >= 0, the image >= 0) uses only the levels from about 0 to
# 127 of its grid: 7 of the 8 bits. When every quantized consumer of such a tensor is a convolution,
# the grid can be moved over the tensor's real range [lo, amax] for free: the graph quantizes
# ``z = x - c`` (a ``Sub`` before the ``QuantizeLinear``; TensorRT fuses it into the producer's
# pointwise epilogue like the activation) with scale ``(amax - lo) / 254``, and each consumer
# convolution gets ``c * sum(W_int8 * w_scale)`` added to its bias, which is exactly what the shift
# took away: ``conv(z + c, Wq) + b = conv(z, Wq) + (b + c * sum Wq)``. The step is half the
# symmetric one. A padded convolution would pad ``z`` with zeros, i.e. ``x`` with ``c``, so with
# ``shift="all"`` its input is padded explicitly after the ``Sub`` with ``-c`` (``x`` padded with 0;
# the convolution's own pads become 0), and ``c`` is a whole number of steps so that the padded
# border is exactly an INT8 level. ``shift="unpadded"`` shifts only tensors read by unpadded
# convolutions (no extra layer but the ``Sub``), ``"off"`` none.
SHIFTS = ("all", "unpadded", "off")
DEFAULT_SHIFT = "all"
SHIFT_SUFFIX = "_shifted"


def _node_attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _conv_pads(node) -> list[int]:
    return [int(v) for v in _node_attrs(node).get("pads", [])]


def shift_bounds(model, uses: Mapping[str, Iterable[str]], shift: str = DEFAULT_SHIFT,
                 bounds: Mapping[str, float] | None = None) -> dict[str, float]:
    """``{activation tensor: lower bound}`` of the Q/DQ sites (``{tensor: [consumer node, ...]}``)
    that get a shifted INT8 grid under ``shift`` (see :data:`SHIFTS`): the tensor has a static lower
    bound (:func:`~yolo_edge.precision.calibration.lower_bounds`; ``bounds`` overrides it) and every
    listed consumer is a convolution with constant weights reading it as its data input (unpadded
    ones only for ``"unpadded"``)."""
    if shift not in SHIFTS:
        raise YoloEdgeError(f"unknown activation shift {shift!r}; choose from {', '.join(SHIFTS)}")
    if shift == "off":
        return {}
    from .calibration import lower_bounds
    from .graph import initializer_names

    bounds = lower_bounds(model) if bounds is None else bounds
    consts = initializer_names(model)
    by_name = {n.name: n for n in model.graph.node}
    out = {}
    for t, consumers in uses.items():
        lo = bounds.get(t)
        consumers = list(consumers)
        if lo is None or not np.isfinite(lo) or not consumers:
            continue

        def ok(c):
            n = by_name.get(c)
            if n is None or n.op_type != "Conv" or n.input[0] != t or len(n.input) < 2 or n.input[1] not in consts:
                return False
            if _node_attrs(n).get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET", b"VALID", "VALID"):
                return False
            return shift == "all" or not any(_conv_pads(n))

        if all(ok(c) for c in consumers):
            out[t] = float(lo)
    return out


def shift_of(amax: float, lower: float) -> tuple[float, float]:
    """``(c, scale)`` of the shifted grid over ``[lower, amax]``: ``scale = (amax - lower) / 254`` and
    ``c`` the whole number of steps nearest the middle of the range (so 0 is on the grid)."""
    s = np.float32((float(amax) - float(lower)) / 254.0)
    if not s > 0:
        raise YoloEdgeError(f"shifted grid needs amax > lower bound, got {amax} and {lower}")
    k = np.round((float(amax) + float(lower)) / (2.0 * float(s)))
    return float(np.float32(k * s)), float(s)


def shifted_start(amax: Mapping[str, float], lower: Mapping[str, float], absmax: Mapping[str, float]
                  ) -> dict[str, float]:
    """The top of each shifted grid as calibrated: the refinement's start, and what the INT8 files
    get when the ranges are not refined (``--int8-refine 0``, or no PyTorch). It is the geometric
    mean of the calibration method's ``amax`` (chosen for the symmetric grid's step) and the
    tensor's largest ``|x|`` on the calibration images; other tensors keep ``amax``. A shifted grid
    has half the step, so rounding costs less and clipping relatively more. On yolov5n over eight
    coco128 halves (README "Shifted INT8 grids"), without refinement, it lowered the output error
    against FP32 from 1.77 to 1.50 and moved agreement 92.3 -> 93.6, ΔmAP50-95 -0.95 -> -0.82,
    ΔAP-small -1.00 -> -0.36 (means). As the refinement's start instead of the method's ``amax``
    (README "The refinement starts from the calibrated ranges") it lowered the held-out output
    error on seven halves of eight (means 1.05 -> 1.02, ΔmAP50-95 -0.45 -> -0.36)."""
    out = dict(amax)
    for t in lower:
        if t in out and absmax.get(t, 0.0) > out[t] > 0:
            out[t] = float(np.sqrt(out[t] * absmax[t]))
    return out


def shift_activations(model, sites: Mapping[str, list[tuple[str, int]]], amax: Mapping[str, float],
                      lower: Mapping[str, float], per_channel: bool = True,
                      weight_scale: str = DEFAULT_WEIGHT_SCALE,
                      int8_weights: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None):
    """The float graph with the shifted sites of ``lower`` (:func:`shift_bounds`) rewritten:
    ``x -> Sub(c) [-> Pad(-c)] -> consumer convolution``, each consumer's bias corrected by ``c``
    times the sum of the INT8 weights that :func:`insert_qdq` will write (same ``weight_scale`` /
    ``int8_weights``). A padded consumer reads ``x - c`` padded with ``-c`` (``x`` padded with 0,
    exactly an INT8 level since ``c`` is a whole number of steps: TensorRT may move the Q before the
    Pad) and its own pads become 0. Returns ``(model, sites, amax)`` for :func:`insert_qdq`: the
    shifted tensors replace the original ones, with ``amax = 127 * scale`` (:func:`shift_of`)."""
    from onnx import helper, numpy_helper

    from .graph import copy_model

    m = copy_model(model)
    g = m.graph
    by_name = {n.name: n for n in g.node}
    inits = {t.name: t for t in g.initializer}
    opset = max((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), default=0)
    new_sites = {t: list(u) for t, u in sites.items()}
    new_amax = dict(amax)
    new_nodes, new_inits = [], []
    for t, lo in lower.items():
        if t not in sites or t not in amax or not float(amax[t]) > lo:
            continue
        c, s = shift_of(amax[t], lo)
        groups: dict[tuple, list[tuple[str, int]]] = {}
        for node, idx in sites[t]:
            groups.setdefault(tuple(_conv_pads(by_name[node])), []).append((node, idx))
        del new_sites[t]
        z = f"{t}{SHIFT_SUFFIX}"
        new_inits.append(numpy_helper.from_array(np.asarray(c, np.float32), f"{z}_c"))
        new_nodes.append(helper.make_node("Sub", [t, f"{z}_c"], [z], name=f"{z}_Sub"))
        for pads, uses in groups.items():
            src = z
            if any(pads):
                nd = len(pads) // 2
                full = [0, 0, *pads[:nd], 0, 0, *pads[nd:]]
                src = f"{z}_pad" + "_".join(str(p) for p in pads)
                if opset >= 11:
                    new_inits += [numpy_helper.from_array(np.asarray(full, np.int64), f"{src}_pads"),
                                  numpy_helper.from_array(np.asarray(-c, np.float32), f"{src}_value")]
                    new_nodes.append(helper.make_node("Pad", [z, f"{src}_pads", f"{src}_value"], [src],
                                                      name=f"{src}_Pad"))
                else:
                    new_nodes.append(helper.make_node("Pad", [z], [src], name=f"{src}_Pad", pads=full, value=-c))
            new_sites[src] = list(uses)
            new_amax[src] = 127.0 * s
            for node, idx in uses:
                n = by_name[node]
                n.input[idx] = src
                if any(pads):
                    for a in n.attribute:
                        if a.name == "pads":
                            del a.ints[:]
                            a.ints.extend([0] * len(pads))
                w = numpy_helper.to_array(inits[n.input[1]])
                axis = _weight_axis(n, w) if per_channel else None
                if per_channel and int8_weights and n.input[1] in int8_weights:
                    q, ws = (np.asarray(v) for v in int8_weights[n.input[1]])
                else:
                    q, ws = quantize_weight(w, axis, weight_scale)
                shape = [1] * w.ndim
                if np.ndim(ws):
                    shape[axis] = -1
                wq = q.astype(np.float64) * np.reshape(ws, shape)
                corr = c * wq.reshape(w.shape[0], -1).sum(axis=1)
                b = numpy_helper.to_array(inits[n.input[2]]).astype(np.float64) if len(n.input) > 2 and n.input[2] \
                    else np.zeros(w.shape[0])
                bname = f"{node}_shifted_bias"
                new_inits.append(numpy_helper.from_array((b + corr).astype(np.float32), bname))
                inits[bname] = new_inits[-1]
                if len(n.input) > 2:
                    n.input[2] = bname
                else:
                    n.input.append(bname)
    g.node.extend(new_nodes)
    g.initializer.extend(new_inits)
    _drop_unused_initializers(m)
    return m, new_sites, new_amax


def shifted_tensors(qdq_model) -> dict[str, dict]:
    """``{tensor a QuantizeLinear reads: {"source", "shift", "padded"}}`` for the shifted sites of a
    Q/DQ graph (what :func:`shift_activations` wrote: the ``Sub`` output, or the ``Pad`` after it)."""
    from onnx import numpy_helper

    inits = {t.name: t for t in qdq_model.graph.initializer}
    subs = {}
    for n in qdq_model.graph.node:
        if n.op_type == "Sub" and n.output[0].endswith(SHIFT_SUFFIX) and n.input[1] in inits:
            subs[n.output[0]] = {"source": n.input[0], "shift": float(numpy_helper.to_array(inits[n.input[1]])),
                                 "padded": False}
    out = dict(subs)
    for n in qdq_model.graph.node:
        if n.op_type == "Pad" and n.input[0] in subs:
            out[n.output[0]] = {**subs[n.input[0]], "padded": True}
    quantized = {n.input[0] for n in qdq_model.graph.node if n.op_type == "QuantizeLinear"}
    return {t: v for t, v in out.items() if t in quantized}

def insert_qdq(model, sites: Mapping[str, list[tuple[str, int]]], amax: Mapping[str, float],
               per_channel: bool = True, weight_scale: str = DEFAULT_WEIGHT_SCALE,
               int8_weights: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None, shift: str = "off"):
    """A copy of ``model`` (FP32) with an activation Q/DQ pair (scale ``amax / 127``, zero point 0)
    on each tensor of ``sites`` that has an ``amax``, feeding the listed consumers, and INT8 weights
    with a ``DequantizeLinear`` for every weighted consumer (Conv, ConvTranspose, Gemm; MatMul with a
    constant input). ``weight_scale``: how each weight channel's scale is chosen
    (:func:`quantize_weight`); ``int8_weights``: ``{weight initializer: (q int8, scale)}`` written
    as they are instead (per-channel weights rounded by :func:`~yolo_edge.precision.rounding.gptq_weights`).
    ``shift``: which sites with a static lower bound get a shifted grid (:data:`SHIFTS`,
    :func:`shift_activations`; ``amax`` is then the top of their range).
    Names follow onnxruntime.quantization (``<t>_QuantizeLinear_Output``,
    ``<w>_quantized``...). Returns the Q/DQ ``onnx.ModelProto``."""
    onnx = require("onnx")
    from onnx import helper, numpy_helper

    from .fp16 import toposort
    from .graph import copy_model

    lower = shift_bounds(model, {t: [n for n, _ in u] for t, u in sites.items() if t in amax}, shift)
    if lower:
        model, sites, amax = shift_activations(model, sites, amax, lower, per_channel, weight_scale, int8_weights)
    m = copy_model(model)
    g = m.graph
    by_name = {n.name: n for n in g.node}
    inits = {t.name: t for t in g.initializer}
    new_nodes, new_inits = [], []
    weighted = set()
    for t, uses in sites.items():
        if t not in amax:
            continue
        dq = _qdq_pair(t, t, np.asarray(_scale(amax[t]), np.float32), None, new_nodes, new_inits)
        for node, idx in uses:
            n = by_name[node]
            n.input[idx] = dq
            if n.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul"):
                weighted.add(node)
    done: dict[str, str] = {}
    for node in sorted(weighted):
        n = by_name[node]
        for idx in ((1,) if n.op_type != "MatMul" else (0, 1)):
            w = n.input[idx] if len(n.input) > idx else ""
            if w not in inits:
                continue
            if w not in done:
                arr = numpy_helper.to_array(inits[w])
                axis = _weight_axis(n, arr) if per_channel else None
                if per_channel and int8_weights and w in int8_weights:
                    q, s = (np.asarray(v) for v in int8_weights[w])
                    if q.shape != arr.shape or q.dtype != np.int8 or s.shape != (arr.shape[axis],):
                        raise YoloEdgeError(f"rounded INT8 weight for {w!r} does not match it: q {q.shape} "
                                            f"{q.dtype}, scale {s.shape}, weight {arr.shape}")
                else:
                    q, s = quantize_weight(arr, axis, weight_scale)
                new_inits += [numpy_helper.from_array(q, f"{w}_quantized"),
                              numpy_helper.from_array(s, f"{w}_scale"),
                              numpy_helper.from_array(np.zeros(s.shape, np.int8), f"{w}_zero_point")]
                attrs = {"axis": axis} if axis is not None else {}
                new_nodes.append(helper.make_node("DequantizeLinear", [f"{w}_quantized", f"{w}_scale",
                                                                       f"{w}_zero_point"],
                                                  [f"{w}_DequantizeLinear_Output"], name=f"{w}_DequantizeLinear",
                                                  **attrs))
                done[w] = f"{w}_DequantizeLinear_Output"
            n.input[idx] = done[w]
    g.node.extend(new_nodes)
    g.initializer.extend(new_inits)
    _drop_unused_initializers(m)
    if max((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), default=0) < 13:
        raise YoloEdgeError("per-channel Q/DQ needs ONNX opset >= 13: re-export the model with a newer opset")
    toposort(m)
    onnx.checker.check_model(m) if m.ByteSize() < 2 ** 31 else None
    return m


def _qdq_pair(x: str, base: str, scale: np.ndarray, zero_point, nodes: list, inits: list) -> str:
    """Append ``x -> QuantizeLinear -> DequantizeLinear`` (per tensor; names from ``base`` as
    onnxruntime.quantization writes them) to ``nodes`` / ``inits``; returns the DQ output name."""
    from onnx import helper, numpy_helper

    sname, zname, q = f"{base}_scale", f"{base}_zero_point", f"{base}_QuantizeLinear_Output"
    inits += [numpy_helper.from_array(np.asarray(scale), sname),
              numpy_helper.from_array(zero_point if zero_point is not None else np.asarray(0, np.int8), zname)]
    nodes += [helper.make_node("QuantizeLinear", [x, sname, zname], [q], name=f"{base}_QuantizeLinear"),
              helper.make_node("DequantizeLinear", [q, sname, zname], [f"{base}_DequantizeLinear_Output"],
                               name=f"{base}_DequantizeLinear")]
    return f"{base}_DequantizeLinear_Output"


def _weight_axis(node, arr: np.ndarray) -> int | None:
    if arr.ndim < 2:
        return None
    if node.op_type in _WEIGHT_AXIS:
        return _WEIGHT_AXIS[node.op_type]
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return 0 if trans_b else 1
    return arr.ndim - 1  # MatMul B (K, N): per output column


def _drop_unused_initializers(m) -> None:
    used = {i for n in m.graph.node for i in n.input} | {o.name for o in m.graph.output}
    keep = [t for t in m.graph.initializer if t.name in used]
    del m.graph.initializer[:]
    m.graph.initializer.extend(keep)


def to_opset(model, opset: int = QDQ_OPSET):
    """``model`` converted to ONNX opset ``opset`` (no-op when it is already there or above)."""
    onnx = require("onnx")
    have = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if have >= opset:
        return model
    from onnx import version_converter

    try:
        out = version_converter.convert_version(model, opset)
    except Exception as e:
        raise YoloEdgeError(f"cannot convert the graph from opset {have} to {opset} for FP16 Q/DQ scales: {e}") from e
    out.ir_version = max(out.ir_version, model.ir_version)
    del out.metadata_props[:]
    out.metadata_props.extend(model.metadata_props)
    onnx.checker.check_model(out)
    return out


def fp16_scale_twin(qdq_model, fp16_model, opset: int = QDQ_OPSET):
    """The Q/DQ of ``qdq_model`` (FP32 graph, FP32 scales) placed on ``fp16_model`` (the same graph
    converted to FP16, e.g. by :func:`~yolo_edge.precision.fp16.convert_fp16`), with every scale in
    the type of the tensor it quantizes (FP16, or FP32 where the FP16 graph kept a node FP32).

    The placement (consumer node and input index), the INT8 weights and the zero points are those of
    ``qdq_model``; scales are the same numbers cast to FP16. The result has opset >= 19."""
    onnx = require("onnx")
    from onnx import TensorProto, helper, numpy_helper

    from .fp16 import toposort
    from .graph import copy_model, dq_fed_inputs, tensor_types

    src = qdq_model
    sinits = {t.name: t for t in src.graph.initializer}
    m = to_opset(copy_model(fp16_model), opset)
    g = m.graph
    by_name = {n.name: n for n in g.node}
    types = tensor_types(m)

    def elem(name: str) -> int:
        v = types.get(name)
        return v.type.tensor_type.elem_type if v is not None else TensorProto.FLOAT16

    np_of = {TensorProto.FLOAT16: np.float16, TensorProto.FLOAT: np.float32}
    new_nodes, new_inits = [], []
    made: dict[str, str] = {}  # key -> DQ output in the twin
    shifts = shifted_tensors(src)
    sprod = {o: n for n in src.graph.node for o in n.output}
    copied: set[str] = set()
    for n, idx, dq, qsrc in dq_fed_inputs(src):
        tgt = by_name.get(n.name)
        if tgt is None:
            raise YoloEdgeError(f"node {n.name!r} of the Q/DQ graph is missing from the FP16 graph")
        scale = numpy_helper.to_array(sinits[dq.input[1]])
        zp = numpy_helper.to_array(sinits[dq.input[2]]) if len(dq.input) > 2 and dq.input[2] else None
        axis = next((a.i for a in dq.attribute if a.name == "axis"), None)
        if qsrc is not None and qsrc.input[0] in shifts:  # shifted activation: x -> Sub [-> Pad] -> Q -> DQ
            z, sh = qsrc.input[0], shifts[qsrc.input[0]]
            u = tgt.input[idx]  # the source tensor as the FP16 graph has it (the image behind its Cast)
            et = elem(u) if elem(u) in np_of else TensorProto.FLOAT16
            key = f"a:{z}"
            if key not in made:
                sub = sprod[z] if not sh["padded"] else sprod[sprod[z].input[0]]
                if f"sub:{sub.name}" not in made:
                    new_inits.append(numpy_helper.from_array(np.asarray(sh["shift"], np_of[et]), sub.input[1]))
                    new_nodes.append(helper.make_node("Sub", [u, sub.input[1]], list(sub.output), name=sub.name))
                    made[f"sub:{sub.name}"] = sub.output[0]
                if sh["padded"]:
                    pad = sprod[z]
                    pads = next((list(a.ints) for a in pad.attribute if a.name == "pads"), None)
                    if pads is None:
                        pads = numpy_helper.to_array(sinits[pad.input[1]]).tolist()
                    pin = [f"{pad.name}_pads", f"{pad.name}_value"]
                    new_inits += [numpy_helper.from_array(np.asarray(pads, np.int64), pin[0]),
                                  numpy_helper.from_array(np.asarray(-sh["shift"], np_of[et]), pin[1])]
                    new_nodes.append(helper.make_node("Pad", [sub.output[0], *pin], [z], name=pad.name))
                made[key] = _qdq_pair(z, z, scale.astype(np_of[et]), zp, new_nodes, new_inits)
            tgt.input[idx] = made[key]
            # the consumer convolution as the shift left it: its pads (0 when padded explicitly) and bias
            del tgt.attribute[:]
            tgt.attribute.extend(n.attribute)
            if len(n.input) > 2 and n.input[2] in sinits:
                b = numpy_helper.to_array(sinits[n.input[2]])
                bt = elem(tgt.input[2]) if len(tgt.input) > 2 and tgt.input[2] else et
                bname = f"{n.input[2]}_twin"
                if bname not in copied:
                    new_inits.append(numpy_helper.from_array(b.astype(np_of.get(bt, np.float16)), bname))
                    copied.add(bname)
                if len(tgt.input) > 2:
                    tgt.input[2] = bname
                else:
                    tgt.input.append(bname)
        elif qsrc is not None:  # activation: x -> Q -> DQ
            u = tgt.input[idx]
            et = elem(u) if elem(u) in np_of else TensorProto.FLOAT16
            key = f"a:{u}"
            if key not in made:
                made[key] = _qdq_pair(u, u, scale.astype(np_of[et]), zp, new_nodes, new_inits)
            tgt.input[idx] = made[key]
        else:  # weight: INT8 initializer -> DQ
            x = tgt.input[0] if idx != 0 else tgt.input[1]
            et = elem(x) if elem(x) in np_of else TensorProto.FLOAT16
            key = f"w:{dq.input[0]}:{et}"
            if key not in made:
                base = dq.input[0] if et == TensorProto.FLOAT16 else f"{dq.input[0]}_fp32"
                qw = sinits[dq.input[0]]
                qcopy = onnx.TensorProto()
                qcopy.CopyFrom(qw)
                qcopy.name = f"{base}"
                sname, zname = f"{base}_wscale", f"{base}_wzero_point"
                new_inits += [qcopy, numpy_helper.from_array(scale.astype(np_of[et]), sname),
                              numpy_helper.from_array(zp if zp is not None else np.zeros(scale.shape, np.int8),
                                                      zname)]
                attrs = {"axis": axis} if axis is not None else {}
                new_nodes.append(helper.make_node("DequantizeLinear", [qcopy.name, sname, zname],
                                                  [f"{base}_DequantizeLinear_Output"],
                                                  name=f"{base}_DequantizeLinear", **attrs))
                made[key] = f"{base}_DequantizeLinear_Output"
            tgt.input[idx] = made[key]
    g.node.extend(new_nodes)
    g.initializer.extend(new_inits)
    _drop_unused_initializers(m)
    toposort(m)
    onnx.checker.check_model(m) if m.ByteSize() < 2 ** 31 else None
    return m


def same_quantization(a, b) -> list[str]:
    """Differences between two Q/DQ graphs other than the scales' dtype: which (node, input) gets a
    DQ, the INT8 weights, zero points and axes, and scales equal after casting both to FP16.
    Returns human-readable differences (empty: the same quantization)."""
    from onnx import numpy_helper

    from .graph import dq_fed_inputs

    def table(m):
        inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
        out = {}
        for n, idx, dq, q in dq_fed_inputs(m):
            kind = "act" if q is not None else "weight"
            out[(n.name, idx)] = {
                "kind": kind, "scale": inits[dq.input[1]].astype(np.float16),
                "zp": inits[dq.input[2]] if len(dq.input) > 2 else None,
                "axis": next((a.i for a in dq.attribute if a.name == "axis"), None),
                "w": inits.get(dq.input[0]) if kind == "weight" else None}
        return out

    ta, tb = table(a), table(b)
    diffs = [f"{k} only in the first" for k in ta.keys() - tb.keys()]
    diffs += [f"{k} only in the second" for k in tb.keys() - ta.keys()]
    for k in ta.keys() & tb.keys():
        x, y = ta[k], tb[k]
        if x["kind"] != y["kind"] or x["axis"] != y["axis"]:
            diffs.append(f"{k}: {x['kind']}/axis {x['axis']} vs {y['kind']}/axis {y['axis']}")
        if x["scale"].shape != y["scale"].shape or not np.array_equal(x["scale"], y["scale"]):
            diffs.append(f"{k}: scales differ beyond FP16 rounding")
        if (x["zp"] is None) != (y["zp"] is None) or (x["zp"] is not None and not np.array_equal(x["zp"], y["zp"])):
            diffs.append(f"{k}: zero points differ")
        if x["kind"] == "weight" and (x["w"] is None or y["w"] is None or not np.array_equal(x["w"], y["w"])):
            diffs.append(f"{k}: INT8 weights differ")
    return sorted(diffs)


__all__ = ["DEFAULT_SHIFT", "QDQ_OPSET", "SHIFTS", "fp16_scale_twin", "fusible_conv", "insert_qdq", "qdq_sites",
           "quantize_weight", "residual_inputs", "same_quantization", "shift_activations", "shift_bounds", "shift_of",
           "shifted_start", "shifted_tensors", "to_opset"]
