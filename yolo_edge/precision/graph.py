"""ONNX graph helpers shared by the FP16 and INT8 paths (onnx only; no onnxruntime).

* :func:`find_decode_tail` — the nodes downstream of the last head layers (DFL softmax, anchor
  arithmetic, score sigmoid, the Concat/Mul producing ``boxes``/``scores``, and NMS when
  embedded). They are found structurally: walk back from the graph outputs and stop at the last
  ``Conv``/``Gemm``/``MatMul`` on every path, so no node name is assumed.
* :func:`strip_nms` — the sub-graph computing ``boxes`` and ``scores`` of a graph with NMS
  embedded (precision conversion runs on it; NMS is added back with
  :func:`yolo_edge.export.add_nms`).
* :func:`expose` — a copy whose outputs include chosen intermediate tensors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from ..deps import require
from ..errors import ModelFormatError

# The ops that end the decode tail: the last layers with weights on every path to an output.
STOP_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
FLOAT = 1  # onnx.TensorProto.FLOAT
# ORT 1.17+ runs IR <= 9 .. 13 depending on the build; models we write keep the IR they came with.


def load(model):
    """An ``onnx.ModelProto`` from a path or a ModelProto (returned as is)."""
    onnx = require("onnx")
    if isinstance(model, onnx.ModelProto):
        return model
    try:
        return onnx.load(str(model))
    except FileNotFoundError:
        raise ModelFormatError(f"ONNX model not found: {model}") from None
    except Exception as e:  # protobuf decode errors have no common type
        raise ModelFormatError(f"cannot read ONNX model {model}: {e}") from e


def copy_model(model):
    onnx = require("onnx")
    m = onnx.ModelProto()
    m.CopyFrom(model)
    return m


def name_nodes(model) -> None:
    """Give every unnamed node a unique name (in place): quantization and FP16 block lists use names."""
    used = {n.name for n in model.graph.node if n.name}
    for i, n in enumerate(model.graph.node):
        if not n.name:
            name = f"{n.op_type}_{i}"
            while name in used:
                name += "_"
            n.name = name
            used.add(name)


def inline_identities(model) -> None:
    """Remove ``Identity`` nodes that merely rename an initializer (in place).

    The TorchScript exporter emits them for shared parameters; the quantizer needs a Conv's
    weight and bias to be initializers, not Identity outputs."""
    g = model.graph
    inits = {t.name for t in g.initializer}
    outputs = {o.name for o in g.output}
    rename = {}
    for n in list(g.node):
        if n.op_type == "Identity" and n.input[0] in inits and n.output[0] not in outputs:
            rename[n.output[0]] = n.input[0]
            g.node.remove(n)
    if rename:
        for n in g.node:
            for i, name in enumerate(n.input):
                if name in rename:
                    n.input[i] = rename[name]


def prepare(model):
    """A copy ready for precision conversion: named nodes, no initializer Identity nodes."""
    m = copy_model(load(model))
    inline_identities(m)
    name_nodes(m)
    return m


def producers(model) -> dict:
    return {out: n for n in model.graph.node for out in n.output}


def consumers(model) -> dict:
    out: dict[str, list] = {}
    for n in model.graph.node:
        for name in n.input:
            if name:
                out.setdefault(name, []).append(n)
    return out


def initializer_names(model) -> set[str]:
    return {t.name for t in model.graph.initializer}


@dataclass(frozen=True)
class DecodeTail:
    """The decode (and NMS) tail of a detector graph: kept in higher precision.

    Attributes:
        nodes: names of the tail nodes, in graph order.
        head: names of the last weighted layers (``Conv``/``Gemm``/``MatMul``) that feed the tail.
        tensors: every tensor produced inside the tail.
    """

    nodes: tuple[str, ...]
    head: tuple[str, ...]
    tensors: frozenset

    def __contains__(self, node_name: str) -> bool:
        return node_name in set(self.nodes)

    def to_dict(self) -> dict:
        return {"nodes": list(self.nodes), "head": list(self.head)}


def find_decode_tail(model, outputs: Sequence[str] | None = None, stop_ops: Iterable[str] = STOP_OPS) -> DecodeTail:
    """Nodes reachable backwards from ``outputs`` (default: all graph outputs) without passing
    through a node of ``stop_ops``. For a YOLO graph this is the DFL softmax and expectation, the
    anchor arithmetic, the score sigmoid, the Concat/Reshape/Transpose plumbing that splits the head
    output into boxes and scores, and NMS when it is embedded. A convolution that reads a Softmax
    (Ultralytics writes the DFL expectation as a fixed 1x1 conv) is part of the tail, not a stop."""
    g = model.graph
    stop = set(stop_ops)
    prod = producers(model)
    names = list(outputs) if outputs is not None else [o.name for o in g.output]
    stack, seen, tail, head = list(names), set(), set(), set()
    while stack:
        t = stack.pop()
        if t in seen:
            continue
        seen.add(t)
        node = prod.get(t)
        if node is None:
            continue
        if node.op_type in stop and not _reads_softmax(node, prod):
            head.add(node.name)
            continue
        if node.name in tail:
            continue
        tail.add(node.name)
        stack.extend(i for i in node.input if i)
    order = [n.name for n in g.node]
    tensors = frozenset(o for n in g.node if n.name in tail for o in n.output)
    return DecodeTail(tuple(n for n in order if n in tail), tuple(n for n in order if n in head), tensors)


_PASS_THROUGH = {"Transpose", "Reshape", "Identity", "Squeeze", "Unsqueeze", "Flatten", "Cast"}


def _reads_softmax(node, prod) -> bool:
    """True for a weighted layer fed by a Softmax (through reshapes): the DFL expectation written as
    a fixed 1x1 convolution (Ultralytics exports), which belongs to the decode, not to the head."""
    for t in node.input[:1]:
        p = prod.get(t)
        while p is not None and p.op_type in _PASS_THROUGH:
            p = prod.get(p.input[0])
        if p is not None and p.op_type == "Softmax":
            return True
    return False


def tensor_types(model) -> dict[str, object]:
    """``{tensor: ValueInfoProto}`` after ONNX shape inference (inputs, outputs and intermediates)."""
    onnx = require("onnx")
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # custom ops (EfficientNMS_TRT) or odd graphs: use what the model carries
        inferred = model
    g = inferred.graph
    return {v.name: v for v in (*g.input, *g.value_info, *g.output)}


def float_activations(model, exclude_ops: Iterable[str] = ("Constant", "Shape")) -> list[str]:
    """Names of every float32 tensor computed by a node (not initializers), in graph order."""
    types = tensor_types(model)
    skip = set(exclude_ops)
    out = []
    for name in [i.name for i in model.graph.input]:
        v = types.get(name)
        if v is not None and v.type.tensor_type.elem_type == FLOAT:
            out.append(name)
    for n in model.graph.node:
        if n.op_type in skip:
            continue
        for o in n.output:
            v = types.get(o)
            if o and v is not None and v.type.tensor_type.elem_type == FLOAT:
                out.append(o)
    return out


def static_sizes(model, batch: int = 1) -> dict[str, int]:
    """Elements per tensor with the batch axis fixed to ``batch`` (tensors of unknown size left out)."""
    m = copy_model(model)
    for inp in m.graph.input:
        dims = inp.type.tensor_type.shape.dim
        if len(dims) and not dims[0].HasField("dim_value"):
            dims[0].dim_value = batch
    out = {}
    for name, v in tensor_types(m).items():
        dims = v.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") and d.dim_value > 0 for d in dims):
            size = 1
            for d in dims:
                size *= d.dim_value
            out[name] = size
    return out


def fixed_batch(model) -> int | None:
    """The static batch size of the first input, or None when the batch axis is dynamic."""
    dims = model.graph.input[0].type.tensor_type.shape.dim
    return int(dims[0].dim_value) if len(dims) and dims[0].HasField("dim_value") and dims[0].dim_value > 0 else None


def expose(model, names: Sequence[str]):
    """A copy of ``model`` whose outputs are its own followed by ``names`` (float tensors of any shape)."""
    onnx = require("onnx")
    m = copy_model(model)
    have = {o.name for o in m.graph.output}
    for name in names:
        if name not in have:
            m.graph.output.append(onnx.helper.make_tensor_value_info(name, FLOAT, None))
            have.add(name)
    return m


def strip_nms(model, boxes: str = "boxes", scores: str = "scores"):
    """The part of ``model`` that computes ``boxes (B, A, 4)`` and ``scores (B, A, C)``.

    A graph whose outputs already are ``boxes`` and ``scores`` is returned as a copy. A graph with NMS
    embedded (``yolo-edge export`` keeps those two tensor names in front of its NMS) is cut there.
    Raises :class:`ModelFormatError` when the tensors do not exist.
    """
    onnx = require("onnx")
    if {o.name for o in model.graph.output} == {boxes, scores}:
        return copy_model(model)
    model = copy_model(model)
    name_nodes(model)
    g = model.graph
    prod = producers(model)
    missing = [t for t in (boxes, scores) if t not in prod]
    if missing:
        raise ModelFormatError(
            f"the graph has no tensor named {missing}: precision conversion needs a yolo-edge export "
            f"(boxes and scores in front of NMS); outputs are {[o.name for o in g.output]}"
        )
    keep, stack = set(), [boxes, scores]
    while stack:
        n = prod.get(stack.pop())
        if n is None or n.name in keep:
            continue
        keep.add(n.name)
        stack.extend(i for i in n.input if i)
    types = tensor_types(model)

    def out_info(name: str, last: int | None):
        v = types.get(name)
        if v is not None and len(v.type.tensor_type.shape.dim) == 3:
            info = onnx.ValueInfoProto()
            info.CopyFrom(v)
            return info
        batch = g.input[0].type.tensor_type.shape.dim[0]
        b = batch.dim_value if batch.HasField("dim_value") else (batch.dim_param or "batch")
        return onnx.helper.make_tensor_value_info(name, FLOAT, [b, "anchors", last])

    m = model
    nodes = [n for n in m.graph.node if n.name in keep]
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    used = {i for n in nodes for i in n.input}
    inits = [t for t in m.graph.initializer if t.name in used]
    del m.graph.initializer[:]
    m.graph.initializer.extend(inits)
    vinfo = [v for v in m.graph.value_info if v.name in {o for n in nodes for o in n.output}]
    del m.graph.value_info[:]
    m.graph.value_info.extend(vinfo)
    del m.graph.output[:]
    m.graph.output.extend([out_info(boxes, 4), out_info(scores, None)])
    return m


def node_by_name(model) -> dict:
    return {n.name: n for n in model.graph.node}


def dq_fed_inputs(model):
    """Every input of a non-Q/DQ node that a ``DequantizeLinear`` produces, in graph order:
    ``(node, input index, the DQ node, the QuantizeLinear feeding that DQ or None)``. A Q means an
    activation (``x -> Q -> DQ``); None a constant (an INT8 weight initializer -> DQ)."""
    prod = producers(model)
    for n in model.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        for idx, t in enumerate(n.input):
            dq = prod.get(t)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = prod.get(dq.input[0])
            yield n, idx, dq, (q if q is not None and q.op_type == "QuantizeLinear" else None)
