"""FP16: the graph converted to float16 with float32 inputs and outputs and a keep-FP32 list.

Kept in FP32 by default:

* the decode tail (:func:`~yolo_edge.precision.graph.find_decode_tail`): DFL softmax and
  expectation, anchor arithmetic in input pixels (FP16 has 0.25 px resolution at 512..1024), the
  score sigmoid, and so the NMS inputs;
* every node whose output, or whose input, reaches more than ``overflow_fraction * 65504`` in
  magnitude on the calibration images (the producer would overflow; its consumers would receive
  an ``inf`` after the cast). They are listed with the range that put them there.

Converted with ``onnxruntime.transformers.float16.convert_float_to_float16(keep_io_types=True,
node_block_list=...)``, which inserts the Casts around blocked nodes.

Note on verification: ONNX Runtime's CPU provider has FP16 kernels for few ops and runs the rest
in FP32 between inserted Casts, so a CPU run checks the FP16 weights and the graph, while the
activation precision is that of the target (TensorRT, CUDA) only on a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

from ..deps import require

FP16_MAX = 65504.0
DEFAULT_OVERFLOW_FRACTION = 0.5


@dataclass
class Fp16Result:
    """A converted model and why each FP32 node stayed FP32.

    Attributes:
        model: the FP16 ``onnx.ModelProto`` (float32 inputs and outputs).
        kept: ``[{"node", "op_type", "reason"}]`` for every node left in FP32, graph order.
        overflow: ``[{"tensor", "amax", "producer", "consumers"}]`` for tensors beyond the threshold.
    """

    model: object
    kept: list[dict] = field(default_factory=list)
    overflow: list[dict] = field(default_factory=list)

    @property
    def kept_nodes(self) -> list[str]:
        return [k["node"] for k in self.kept]


def overflow_tensors(model, ranges: Mapping[str, float], fraction: float = DEFAULT_OVERFLOW_FRACTION) -> list[dict]:
    """Tensors whose calibration ``max(|min|, |max|)`` exceeds ``fraction * 65504``, with the node that
    produces them and the nodes that read them."""
    limit = fraction * FP16_MAX
    prod = {o: n for n in model.graph.node for o in n.output}
    cons: dict[str, list[str]] = {}
    for n in model.graph.node:
        for i in n.input:
            cons.setdefault(i, []).append(n.name)
    out = []
    for t, a in ranges.items():
        if a is not None and abs(float(a)) > limit:
            p = prod.get(t)
            out.append({"tensor": t, "amax": float(abs(a)), "producer": p.name if p is not None else None,
                        "consumers": cons.get(t, [])})
    return out


def convert_fp16(model, ranges: Mapping[str, float] | None = None, *, tail: Iterable[str] = (),
                 keep_fp32: Iterable[str] = (), overflow_fraction: float = DEFAULT_OVERFLOW_FRACTION) -> Fp16Result:
    """Convert an FP32 ``onnx.ModelProto`` to FP16 with FP32 I/O.

    Args:
        model: the FP32 graph (boxes/scores outputs; NMS is added afterwards).
        ranges: ``{tensor: amax}`` from calibration, for the overflow check (None: no check).
        tail: decode-tail node names (kept FP32, reason ``decode tail``).
        keep_fp32: further node names kept FP32 (reason ``requested``).
        overflow_fraction: keep nodes whose tensors exceed this fraction of 65504.
    """
    require("onnx")
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    reasons: dict[str, str] = {}
    for n in tail:
        reasons.setdefault(n, "decode tail (DFL softmax, anchor arithmetic, score sigmoid, NMS inputs)")
    for n in keep_fp32:
        reasons.setdefault(n, "requested")
    overflow = overflow_tensors(model, ranges or {}, overflow_fraction)
    for o in overflow:
        why = f"FP16 overflow risk: |{o['tensor']}| reaches {o['amax']:.4g} (> {overflow_fraction:g} x 65504)"
        for n in ([o["producer"]] if o["producer"] else []) + o["consumers"]:
            reasons.setdefault(n, why)
    op_block = set(DEFAULT_OP_BLOCK_LIST)
    names = {n.name for n in model.graph.node}
    unknown = [n for n in keep_fp32 if n not in names]
    if unknown:
        from ..errors import YoloEdgeError

        raise YoloEdgeError(f"--keep-fp32 names no node of the graph: {unknown[:5]}")
    m16 = convert_float_to_float16(model, keep_io_types=True, node_block_list=sorted(reasons),
                                   op_block_list=sorted(op_block))
    tidy_casts(m16)
    kept = []
    for n in model.graph.node:
        if n.name in reasons:
            kept.append({"node": n.name, "op_type": n.op_type, "reason": reasons[n.name]})
        elif n.op_type in op_block:
            kept.append({"node": n.name, "op_type": n.op_type, "reason": f"{n.op_type} has no FP16 form"})
    return Fp16Result(m16, kept, overflow)


def tidy_casts(model) -> None:
    """Repair what ``convert_float_to_float16`` leaves between FP32 nodes (in place).

    It casts every blocked node's output to FP16 and casts it back to FP32 for the next blocked
    node, so a chain of "FP32" nodes would still round its values to FP16 between nodes, and a
    tensor read by two blocked nodes gets two identical Cast nodes (an invalid graph). Here:

    * identical duplicate nodes are dropped;
    * ``x (fp32) -> Cast(fp16) -> Cast(fp32) -> y`` becomes ``x -> y`` (an Identity when ``y`` is a
      graph output);
    * Casts left without consumers are removed.
    """
    from onnx import TensorProto

    g = model.graph
    seen, keep = {}, []
    for n in g.node:
        key = n.SerializeToString()
        if n.output and n.output[0] in seen and seen[n.output[0]] == key:
            continue
        for o in n.output:
            seen[o] = key
        keep.append(n)
    del g.node[:]
    g.node.extend(keep)

    def cast_to(n):
        return next((a.i for a in n.attribute if a.name == "to"), None) if n.op_type == "Cast" else None

    outputs = {o.name for o in g.output}
    prod = {o: n for n in g.node for o in n.output}
    fp32_sources = {i.name for i in g.input if i.type.tensor_type.elem_type == TensorProto.FLOAT}
    for n in g.node:  # tensors written by FP32 nodes: outputs of Casts to FP32 and of non-cast FP32 producers
        if cast_to(n) == TensorProto.FLOAT:
            fp32_sources.update(n.output)
    rename: dict[str, str] = {}
    for c2 in list(g.node):
        if cast_to(c2) != TensorProto.FLOAT:
            continue
        c1 = prod.get(c2.input[0])
        if c1 is None or cast_to(c1) != TensorProto.FLOAT16:
            continue
        x = c1.input[0]
        src = prod.get(x)
        fp32 = x in fp32_sources or (src is not None and src.op_type != "Cast" and c1.name.endswith("_cast_to_fp16_node"))
        if not fp32:
            continue
        if c2.output[0] in outputs:
            c2.op_type = "Identity"
            del c2.attribute[:]
            c2.input[0] = x
        else:
            rename[c2.output[0]] = x
            g.node.remove(c2)
    if rename:
        for n in g.node:
            for i, name in enumerate(n.input):
                while name in rename:
                    name = rename[name]
                n.input[i] = name
    while True:  # dead casts
        used = {i for n in g.node for i in n.input} | outputs
        dead = [n for n in g.node if n.op_type == "Cast" and not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            g.node.remove(n)
    live = {o for n in g.node for o in n.output}
    vi = [v for v in g.value_info if v.name in live]
    del g.value_info[:]
    g.value_info.extend(vi)
    toposort(model)


def toposort(model) -> None:
    """Sort the graph's nodes topologically (stable: keeps the given order where it can)."""
    g = model.graph
    ready = {i.name for i in g.input} | {t.name for t in g.initializer} | {""}
    pending = list(g.node)
    out = []
    while pending:
        rest = []
        for n in pending:
            if all(i in ready for i in n.input):
                out.append(n)
                ready.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):
            raise ValueError(f"graph has a cycle or a missing input near node {rest[0].name!r}")
        pending = rest
    del g.node[:]
    g.node.extend(out)
