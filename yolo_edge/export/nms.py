"""NMS embedded in the ONNX graph, built node by node with ``onnx.helper`` (DESIGN §2).

:func:`add_nms` takes a graph whose outputs are ``boxes (B, A, 4)`` (xyxy, input pixels) and
``scores (B, A, C)`` (after sigmoid) and replaces them with the four EfficientNMS-layout outputs

    num_dets int32 (B, 1) · det_boxes float32 (B, K, 4) · det_scores float32 (B, K) · det_classes int32 (B, K)

in one of two flavours:

``onnx`` (default) — the standard ``NonMaxSuppression`` operator (ONNX Runtime on any device;
TensorRT >= 8.5 maps it to ``INMSLayer``), padded to a fixed ``K`` inside the graph::

    scores_t = Transpose(scores)                          (B, C, A)
    top_s, top_i = TopK(Reshape(scores_t, (B, C*A)), N)   (B, N): the best N = min(3839, C*A) candidates
    class, anchor = top_i // A, top_i % A ; boxes_n = GatherND(boxes, anchor)          (B, N, 4)
    scores_n = Where(class == c, top_s, 0)                (B, C, N): each candidate in its own class row
    selected = NonMaxSuppression(boxes_n, scores_n, K, iou, score)   (M, 3) = (batch, class, n)
    dense    = ConstantOfShape(B, max(N, K)) = -1 ;  ScatterND(dense, (batch, n), score)
    values, n = TopK(dense, K)                            (B, K): score desc, ties -> lower class, then anchor
    num_dets = Cast(ReduceSum(Cast(values > -0.5, float)), int32) ;  padding rows -> box 0, score 0, class 0

Every step is batched, so a dynamic batch axis works: each image gets its own K rows. The
pre-selection is there for TensorRT: its ``INMSLayer`` considers only the best 5000 boxes of an
image (NvInfer.h), and TopK takes K < 3840, so the graph hands NMS at most :data:`PRESELECT`
(3839) candidates and ONNX Runtime and TensorRT see the same ones. Greedy NMS decides a candidate
from higher-scoring ones only, so the result equals NMS over all candidates whenever the K kept
detections rank among the best 3839 candidates -- always at deploy thresholds (``score 0.25``:
far fewer candidates); at evaluation thresholds (``0.001``) low-scoring tail detections can differ
(measured in the README, "TensorRT readiness"). Within that, the detections equal
:func:`yolo_edge.postprocess.postprocess` one to one: candidates ``score > score_threshold``,
suppression when ``IoU > iou_threshold`` with a kept box of the same class, at most K kept per
class, then the best K over all classes ranked by score (ties: class, then anchor).
``class_agnostic=True`` runs NMS on each anchor's best class (the lowest class index on ties),
pre-selecting the best N anchors, which is what :func:`postprocess` does for boxes of positive area.

``trt`` — one ``EfficientNMS_TRT`` plugin node (TensorRT only; ONNX Runtime cannot run it). Its
semantics differ slightly from ours; :func:`efficient_nms_reference` is a numpy model of it.

Padding rows (past ``num_dets``) hold box 0, score 0 and class 0 in both flavours, as
EfficientNMS writes them; consumers must ignore them.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..deps import require
from ..errors import ModelFormatError
from ..spec import NmsSpec

# NonMaxSuppression and TopK-with-k-input need opset 10, ScatterND / GatherND 11, GatherND's
# batch_dims 12 (Unsqueeze and ReduceSum are written in the form of the model's opset).
MIN_NMS_OPSET = 12
NMS_OUTPUT_NAMES = ("num_dets", "det_boxes", "det_scores", "det_classes")
TRT_PLUGIN = "EfficientNMS_TRT"
# TensorRT's TopK takes K < 3840 (onnx/onnx-tensorrt 10.1-GA docs/operators.md, TopK: "`K` input must be
# less than 3840"; NVIDIA/TensorRT v8.6.1 include/NvInfer.h, ITopKLayer: "values of K up to 3840").
TRT_MAX_TOPK = 3839
# TensorRT maps NonMaxSuppression to INMSLayer, which considers only the best 5000 boxes of an image
# (2000 on SM 5.3/6.2; NVIDIA/TensorRT v10.3.0 include/NvInfer.h, INMSLayer). The graph pre-selects
# this many (anchor, class) candidates first, so TensorRT and ONNX Runtime see the same ones.
PRESELECT = TRT_MAX_TOPK
# EfficientNMS_TRT processes at most this many top-scoring candidates per image (numSelectedBoxes).
TRT_NUM_SELECTED_BOXES = 4096
# Below this score threshold EfficientNMS switches to a dense kernel (see efficient_nms_reference).
TRT_DENSE_THRESHOLD = 0.007


def default_opset(model) -> int:
    """The version of the default ONNX domain a model imports (0 when it imports none)."""
    for op in model.opset_import:
        if op.domain in ("", "ai.onnx"):
            return int(op.version)
    return 0


def check_opset(model, what: str = "embedded NMS") -> int:
    opset = default_opset(model)
    if opset < MIN_NMS_OPSET:
        raise ModelFormatError(
            f"the model uses ONNX opset {opset}, but {what} needs opset >= {MIN_NMS_OPSET} "
            "(NonMaxSuppression, TopK, ScatterND, GatherND with batch_dims); "
            f"re-export it with opset {MIN_NMS_OPSET} or later (Ultralytics: opset=17), or use --nms none"
        )
    return opset


class _Graph:
    """Appends nodes and constants to an ONNX graph under a name prefix, avoiding name clashes."""

    def __init__(self, graph, prefix: str, opset: int = 17):
        self.onnx = require("onnx")
        self.graph = graph
        self.prefix = prefix
        self.opset = opset
        self.used = {n for node in graph.node for n in (*node.input, *node.output, node.name)}
        self.used |= {t.name for t in graph.initializer} | {v.name for v in (*graph.input, *graph.output)}
        self.counter = 0

    def fresh(self, hint: str) -> str:
        while True:
            self.counter += 1
            name = f"{self.prefix}/{hint}_{self.counter}"
            if name not in self.used:
                self.used.add(name)
                return name

    def const(self, value, dtype, hint: str = "const") -> str:
        from onnx import numpy_helper

        name = self.fresh(hint)
        self.graph.initializer.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def node(self, op: str, inputs: Sequence[str], n_out: int = 1, outputs: Sequence[str] | None = None,
             domain: str = "", **attrs) -> list[str]:
        outputs = list(outputs) if outputs is not None else [self.fresh(op.lower()) for _ in range(n_out)]
        self.graph.node.append(self.onnx.helper.make_node(op, list(inputs), outputs, name=self.fresh(op),
                                                          domain=domain, **attrs))
        return outputs

    def op(self, op: str, *inputs: str, **attrs) -> str:
        return self.node(op, inputs, **attrs)[0]

    def unsqueeze(self, x: str, axis: int) -> str:  # axes became an input in opset 13
        if self.opset >= 13:
            return self.op("Unsqueeze", x, self.const([axis], np.int64, "axes"))
        return self.op("Unsqueeze", x, axes=[axis])

    def squeeze(self, x: str, axis: int) -> str:
        if self.opset >= 13:
            return self.op("Squeeze", x, self.const([axis], np.int64, "axes"))
        return self.op("Squeeze", x, axes=[axis])

    def unsqueeze_axes(self, x: str, axes: Sequence[int]) -> str:
        if self.opset >= 13:
            return self.op("Unsqueeze", x, self.const(list(axes), np.int64, "axes"))
        return self.op("Unsqueeze", x, axes=list(axes))

    def reduce_sum(self, x: str, axis: int, outputs: Sequence[str] | None = None) -> str:
        if self.opset >= 13:
            return self.node("ReduceSum", [x, self.const([axis], np.int64, "axes")], outputs=outputs, keepdims=1)[0]
        return self.node("ReduceSum", [x], outputs=outputs, axes=[axis], keepdims=1)[0]


def _output(graph, name: str):
    for o in graph.output:
        if o.name == name:
            return o
    raise ModelFormatError(f"the graph has no output '{name}' (outputs: {[o.name for o in graph.output]})")


def _dims(value_info) -> list:
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
            for d in value_info.type.tensor_type.shape.dim]


def add_nms(model, nms: NmsSpec, boxes: str = "boxes", scores: str = "scores"):
    """Replace the ``boxes``/``scores`` outputs of ``model`` (an ``onnx.ModelProto``, edited in
    place and returned) with embedded NMS of flavour ``nms.flavour`` (``none`` returns it as is).

    Raises :class:`ModelFormatError` when the outputs are missing or have the wrong rank, or the
    opset is below :data:`MIN_NMS_OPSET`.
    """
    if nms.flavour == "none":
        return model
    onnx = require("onnx")
    opset = check_opset(model)
    g = model.graph
    b_out, s_out = _output(g, boxes), _output(g, scores)
    bd, sd = _dims(b_out), _dims(s_out)
    if len(bd) != 3 or len(sd) != 3 or (isinstance(bd[2], int) and bd[2] != 4):
        raise ModelFormatError(f"NMS needs boxes (B, A, 4) and scores (B, A, C); got {bd} and {sd}")
    batch = bd[0] if bd[0] is not None else "batch"
    K = int(nms.max_det)
    taken = _Graph(g, "nms").used & set(NMS_OUTPUT_NAMES)
    if taken:
        raise ModelFormatError(f"the graph already has tensors named {sorted(taken)}: is NMS already embedded?")

    check_trt_limits(nms)
    if nms.flavour == "onnx":
        n_anchors, n_classes = bd[1], sd[2]
        if not (isinstance(n_anchors, int) and isinstance(n_classes, int)):
            n_anchors, n_classes = _inferred_sizes(model, boxes, scores, n_anchors, n_classes)
        outs = _onnx_nms(_Graph(g, "nms", opset), boxes, scores, nms, n_anchors, n_classes)
    elif nms.flavour == "trt":
        outs = _trt_nms(_Graph(g, "nms", opset), boxes, scores, nms)
    else:  # pragma: no cover - NmsSpec validates the flavour
        raise ValueError(nms.flavour)
    del g.output[:]
    T = onnx.TensorProto
    g.output.extend([
        onnx.helper.make_tensor_value_info(outs[0], T.INT32, [batch, 1]),
        onnx.helper.make_tensor_value_info(outs[1], T.FLOAT, [batch, K, 4]),
        onnx.helper.make_tensor_value_info(outs[2], T.FLOAT, [batch, K]),
        onnx.helper.make_tensor_value_info(outs[3], T.INT32, [batch, K]),
    ])
    return model


def _inferred_sizes(model, boxes: str, scores: str, n_anchors, n_classes):
    """A and C from ONNX shape inference when the declared outputs leave them symbolic."""
    onnx = require("onnx")
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # an odd graph: the NMS graph then pads instead
        return n_anchors, n_classes
    dims = {vi.name: _dims(vi) for vi in (*inferred.graph.value_info, *inferred.graph.output)}
    b, s = dims.get(boxes) or [], dims.get(scores) or []
    a = b[1] if len(b) == 3 and isinstance(b[1], int) and b[1] > 0 else n_anchors
    c = s[2] if len(s) == 3 and isinstance(s[2], int) and s[2] > 0 else n_classes
    return a, c


def _onnx_nms(G: _Graph, boxes: str, scores: str, nms: NmsSpec, num_anchors=None, num_classes=None) -> list[str]:
    T = G.onnx.TensorProto
    i64 = np.int64
    K = G.const([nms.max_det], i64, "max_det")
    iou = G.const([nms.iou_threshold], np.float32, "iou_threshold")
    thr = G.const([nms.score_threshold], np.float32, "score_threshold")
    c0, c1, c2, c3 = (G.const([v], i64, f"i{v}") for v in (0, 1, 2, 3))

    scores_t = G.op("Transpose", scores, perm=[0, 2, 1])  # (B, C, A)
    shape = G.op("Shape", scores_t)
    B, C, A = G.op("Slice", shape, c0, c1), G.op("Slice", shape, c1, c2), G.op("Slice", shape, c2, c3)  # (1,) each
    static = isinstance(num_anchors, int) and isinstance(num_classes, int) and num_anchors > 0 and num_classes > 0

    if nms.class_agnostic:  # NMS on each anchor's best class (lowest class index on ties)
        one = G.const([1], i64, "k1")
        best, best_cls = G.node("TopK", [scores_t, one], n_out=2, axis=1)  # (B, 1, A)
        flat, width = G.squeeze(best, 1), (num_anchors if static else None)  # (B, A)
        width_t = A
    else:
        flat = G.op("Reshape", scores_t, G.const([0, -1], i64, "flat"))  # (B, C*A): index = class * A + anchor
        width = num_classes * num_anchors if static else None
        width_t = G.op("Mul", C, A)
    # Pre-selection: the best N candidates (score desc; ties: lower class, then anchor), so TensorRT's
    # INMSLayer never sees more than its cap (PRESELECT < INMS_TOPK) and TopK's K stays < 3840.
    if width is not None:
        n_keep = min(PRESELECT, width)
    else:  # sizes unknown here: pad with PRESELECT scores of -1 (never above a threshold >= 0), so K is a
        n_keep = PRESELECT  # constant (TensorRT's TopK needs one) and never above the axis length
        pad = G.op("ConstantOfShape", G.op("Concat", B, G.const([PRESELECT], i64, "pad_w"), axis=0),
                   value=G.onnx.helper.make_tensor("pad", T.FLOAT, [1], [-1.0]))
        flat = G.op("Concat", flat, pad, axis=1)
    N = G.const([n_keep], i64, "preselect")
    top_s, top_i = G.node("TopK", [flat, N], n_out=2, axis=1, largest=1, sorted=1)  # (B, N)
    if width is None:  # padding columns (score -1, never selected) point at a valid anchor
        top_i = G.op("Min", top_i, G.op("Sub", width_t, c1))
    if nms.class_agnostic:
        anc_n = top_i
        cls_n = G.op("GatherND", G.squeeze(best_cls, 1), G.unsqueeze(top_i, -1), batch_dims=1)  # (B, N)
        scores_n = G.unsqueeze(top_s, 1)  # (B, 1, N)
    else:
        cls_n, anc_n = G.op("Div", top_i, A), G.op("Mod", top_i, A)  # (B, N)
        if static:
            classes = G.const(np.arange(num_classes, dtype=i64).reshape(1, -1, 1), i64, "classes")
        else:
            classes = G.unsqueeze_axes(G.op("Range", G.const(0, i64, "r0"), G.squeeze(C, 0), G.const(1, i64, "r1")),
                                       (0, 2))
        mask = G.op("Equal", G.unsqueeze(cls_n, 1), classes)  # (B, C, N): the candidate's own class row
        scores_n = G.op("Where", mask, G.unsqueeze(top_s, 1), G.const(0.0, np.float32, "zero_s"))  # (B, C, N)
    boxes_n = G.op("GatherND", boxes, G.unsqueeze(anc_n, -1), batch_dims=1)  # (B, N, 4)

    selected = G.op("NonMaxSuppression", boxes_n, scores_n, K, iou, thr)  # (M, 3) = (b, c, n)
    sel_scores = G.op("GatherND", scores_n, selected)  # (M,)
    sel_batch = G.op("Slice", selected, c0, c1, c1)  # (M, 1)
    sel_n = G.op("Slice", selected, c2, c3, c1)  # (M, 1)
    if nms.class_agnostic:  # rank ties by class, then anchor: column = class * N + n
        sel_class = G.unsqueeze(G.op("GatherND", cls_n, G.op("Concat", sel_batch, sel_n, axis=1)), -1)  # (M, 1)
        column = G.op("Add", G.op("Mul", sel_class, N), sel_n)
        cols = num_classes * n_keep if static else None
        cols_t = G.op("Mul", C, N)
    else:
        column, cols, cols_t = sel_n, n_keep, N
    scatter_index = G.op("Concat", sel_batch, column, axis=1)  # (M, 2)

    if cols is not None:  # at least K columns, so TopK(K) is valid
        W = G.const([max(cols, int(nms.max_det))], i64, "width")
    else:
        W = G.op("Max", cols_t, K)
    dense = G.op("ConstantOfShape", G.op("Concat", B, W, axis=0),
                 value=G.onnx.helper.make_tensor("fill", T.FLOAT, [1], [-1.0]))  # (B, W) = -1
    dense = G.op("ScatterND", dense, scatter_index, sel_scores)
    values, index = G.node("TopK", [dense, K], n_out=2, axis=1, largest=1, sorted=1)  # (B, K): ties -> lower n
    if nms.class_agnostic:
        index = G.op("Mod", index, N)  # column -> n
    index = G.unsqueeze(G.op("Min", index, G.op("Sub", N, c1)), -1)  # (B, K, 1); padding clamped (masked below)

    valid = G.op("Greater", values, G.const(-0.5, np.float32, "pad_cut"))  # (B, K) bool
    # ReduceSum in float (onnx-tensorrt 8.6 ReduceSum: FP32/FP16 only), then int32
    count = G.reduce_sum(G.op("Cast", valid, to=T.FLOAT), 1)
    num_dets = G.node("Cast", [count], outputs=["num_dets"], to=T.INT32)[0]  # (B, 1)
    det_class = G.op("Cast", G.op("GatherND", cls_n, index, batch_dims=1), to=T.INT32)  # (B, K)
    boxes_k = G.op("GatherND", boxes_n, index, batch_dims=1)  # (B, K, 4)
    zero_f = G.const(0.0, np.float32, "zero_f")
    det_boxes = G.node("Where", [G.unsqueeze(valid, -1), boxes_k, zero_f], outputs=["det_boxes"])[0]
    det_scores = G.node("Where", [valid, values, zero_f], outputs=["det_scores"])[0]
    det_classes = G.node("Where", [valid, det_class, G.const(0, np.int32, "zero_i")], outputs=["det_classes"])[0]
    return [num_dets, det_boxes, det_scores, det_classes]


def nms_model(nms: NmsSpec, num_classes: int | None = None, num_anchors: int | None = None,
              opset: int = 17):
    """A graph that is only the embedded NMS: inputs ``boxes (B, A, 4)`` and ``scores (B, A, C)``
    (fed through Identity), outputs as :func:`add_nms` makes them. For benchmarks and tests."""
    onnx = require("onnx")
    h, T = onnx.helper, onnx.TensorProto
    graph = h.make_graph(
        [h.make_node("Identity", ["in_boxes"], ["boxes"]), h.make_node("Identity", ["in_scores"], ["scores"])],
        "nms_only",
        [h.make_tensor_value_info("in_boxes", T.FLOAT, ["batch", num_anchors or "anchors", 4]),
         h.make_tensor_value_info("in_scores", T.FLOAT, ["batch", num_anchors or "anchors", num_classes or "classes"])],
        [h.make_tensor_value_info("boxes", T.FLOAT, ["batch", num_anchors or "anchors", 4]),
         h.make_tensor_value_info("scores", T.FLOAT, ["batch", num_anchors or "anchors", num_classes or "classes"])])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", opset)])
    model.ir_version = min(model.ir_version, 8)
    return add_nms(model, nms)


def check_trt_limits(nms: NmsSpec) -> None:
    """Refuse NMS settings TensorRT cannot build: ``max_det`` is a TopK K (K < 3840) in the ``onnx``
    flavour; EfficientNMS needs ``iou_threshold > 0`` (NVIDIA/TensorRT v10.3.0
    plugin/efficientNMSPlugin/efficientNMSPlugin.cpp, ``PLUGIN_VALIDATE(iouThreshold > 0.0F)``)."""
    if nms.flavour == "onnx" and int(nms.max_det) > TRT_MAX_TOPK:
        raise ModelFormatError(f"max_det {nms.max_det} is above TensorRT's TopK limit (K < 3840): use --max-det "
                               f"{TRT_MAX_TOPK} or less")
    if nms.flavour == "trt" and not float(nms.iou_threshold) > 0:
        raise ModelFormatError(f"EfficientNMS_TRT needs an IoU threshold > 0 (got {nms.iou_threshold}): use e.g. "
                               "--iou 0.45, or --nms onnx")


def trt_attributes(nms: NmsSpec) -> dict:
    """The EfficientNMS_TRT attributes for ``nms`` (boxes are corners, scores already sigmoided).

    Every attribute is written, ``class_agnostic`` too: ``EfficientNMSPluginCreator::createPlugin``
    sets only the fields it is given on a member ``mParam`` it keeps between calls (NVIDIA/TensorRT
    v10.3.0 plugin/efficientNMSPlugin/efficientNMSPlugin.cpp), so an attribute left out takes the
    value of the previous plugin built in the same process (an agnostic build, then a class-aware
    one, would give agnostic NMS).
    """
    attrs = {
        "background_class": -1,
        "box_coding": 0,
        "iou_threshold": float(nms.iou_threshold),
        "max_output_boxes": int(nms.max_det),
        "plugin_version": "1",
        "score_activation": 0,
        "score_threshold": float(nms.score_threshold),
        "class_agnostic": int(bool(nms.class_agnostic)),
    }
    return attrs


def _trt_nms(G: _Graph, boxes: str, scores: str, nms: NmsSpec) -> list[str]:
    # Default domain: TensorRT's ONNX parser looks an unknown op_type up in the plugin registry.
    G.node(TRT_PLUGIN, [boxes, scores], outputs=list(NMS_OUTPUT_NAMES), **trt_attributes(nms))
    return list(NMS_OUTPUT_NAMES)


def nms_nodes(model) -> list:
    """The NonMaxSuppression / EfficientNMS_TRT nodes of a model (for inspection and tests)."""
    return [n for n in model.graph.node if n.op_type in ("NonMaxSuppression", TRT_PLUGIN)]


def node_attributes(node) -> dict:
    onnx = require("onnx")
    out = {}
    for a in node.attribute:
        v = onnx.helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


# ---------------------------------------------------------------------------------------------
def efficient_nms_reference(
    boxes: np.ndarray,
    scores: np.ndarray,
    score_threshold: float,
    iou_threshold: float,
    max_output_boxes: int = 100,
    class_agnostic: bool = False,
    background_class: int = -1,
    num_selected_boxes: int = TRT_NUM_SELECTED_BOXES,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """What TensorRT's ``EfficientNMS_TRT`` plugin computes (FP32, box_coding 0, no sigmoid), in numpy.

    Args:
        boxes: ``(B, A, 4)`` corners; scores: ``(B, A, C)``.

    Returns:
        ``num_dets (B, 1) int32, det_boxes (B, K, 4), det_scores (B, K), det_classes (B, K) int32``,
        padding rows zero (class 0).

    Semantics, read from the plugin's CUDA source (efficientNMSInference.cu), and how they differ
    from ours (:func:`yolo_edge.postprocess.postprocess`, the ONNX ``NonMaxSuppression`` rules):

    1. Candidates are ``(anchor, class)`` pairs with ``score >= score_threshold`` (ours: ``>``),
       ``class != background_class``.
    2. Candidates of an image are sorted by score, descending, in one list for all classes. Ties
       follow the order in which an atomic counter admitted them, which is not deterministic on
       the GPU; this model breaks them by element index ``anchor * C + class`` (ours: anchor, then
       class within a class; class, then anchor in the final ranking).
    3. Only the first ``num_selected_boxes`` (4096) sorted candidates take part; the rest are
       dropped before NMS (ours: no cap).
    4. Greedy NMS down the sorted list: a candidate is dropped when a kept candidate of the same
       class (any class when ``class_agnostic``) overlaps it with ``IoU >= iou_threshold`` (ours:
       ``>``). IoU uses reordered corners; zero intersection or union gives 0.
    5. Kept candidates are written in that order (score descending) until ``max_output_boxes``;
       there is no per-class cap (ours: K per class, then best K overall — the same result).
    6. With ``score_threshold < 0.007`` the plugin switches to a dense kernel that does not filter:
       scores below the threshold become ``-32768`` and still take part, so an image with fewer
       than ``max_output_boxes`` real detections gets rows with score ``-32768``. Use a threshold
       of at least 0.007 with ``--nms trt``.

    So on inputs without exact ties, without scores or IoUs exactly at a threshold and with fewer
    than 4096 candidates, the plugin and :func:`postprocess` return the same detections.
    """
    boxes = np.asarray(boxes, np.float32)
    scores = np.asarray(scores, np.float32)
    Bn, A, C = scores.shape
    K = int(max_output_boxes)
    num = np.zeros((Bn, 1), np.int32)
    out_boxes = np.zeros((Bn, K, 4), np.float32)
    out_scores = np.zeros((Bn, K), np.float32)
    out_classes = np.zeros((Bn, K), np.int32)
    thr = np.float32(score_threshold)
    dense = score_threshold < TRT_DENSE_THRESHOLD
    for b in range(Bn):
        flat = scores[b].reshape(-1).copy()  # element index = anchor * C + class
        cls_of = np.tile(np.arange(C), A)
        if dense:
            flat[(flat < thr) | (cls_of == background_class)] = np.float32(-(1 << 15))
            elems = np.arange(flat.size)
        else:
            elems = np.flatnonzero((flat >= thr) & (cls_of != background_class))
        order = elems[np.argsort(-flat[elems], kind="stable")][:num_selected_boxes]
        anchors, classes, sc = order // C, order % C, flat[order]
        bx = boxes[b, anchors]
        corners = np.concatenate([np.minimum(bx[:, :2], bx[:, 2:]), np.maximum(bx[:, :2], bx[:, 2:])], axis=1)
        dropped = np.zeros(len(order), bool)
        kept: list[int] = []
        for i in range(len(order)):
            if dropped[i]:
                continue
            if len(kept) >= K:
                break
            kept.append(i)
            rest = np.arange(i + 1, len(order))
            same = rest if class_agnostic else rest[classes[rest] == classes[i]]
            if same.size:
                dropped[same[_trt_iou(corners[i], corners[same]) >= np.float32(iou_threshold)]] = True
        kept_a = np.asarray(kept, np.int64)
        n = len(kept_a)
        num[b, 0] = n
        out_boxes[b, :n] = bx[kept_a]
        out_scores[b, :n] = sc[kept_a]
        out_classes[b, :n] = classes[kept_a]
    return num, out_boxes, out_scores, out_classes


def _trt_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    iw = np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0])
    ih = np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1])
    inter = np.where((iw > 0) & (ih > 0), iw * ih, np.float32(0))
    area = lambda b: np.where((b[..., 2] > b[..., 0]) & (b[..., 3] > b[..., 1]),  # noqa: E731
                              (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1]), np.float32(0))
    union = area(box) + area(boxes) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((inter > 0) & (union > 0), inter / np.where(union > 0, union, 1), 0).astype(np.float32)
