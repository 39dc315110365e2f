"""Static TensorRT readiness check of an ONNX file (``yolo-edge check MODEL.onnx --trt 8.6|10|11``):
will TensorRT's ONNX parser take this graph, with which plugins, under which limits? No TensorRT needed.

The operator x data-type table is onnx-tensorrt's own ``docs/operators.md``, transcribed row by row
into ``data/onnx_trt_ops.json`` (repository, branch, commit and path recorded there; regenerate
with :func:`parse_operators_md`):

* TensorRT 8.6: onnx/onnx-tensorrt branch ``8.6-GA`` (opsets up to 17; INT64 is cast down to INT32
  and DOUBLE to FLOAT by the parser, as its note says);
* TensorRT 10.x: branch ``10.1-GA`` (opsets 9 to 20; INT64 native; UINT8 only at network I/O);
* TensorRT 11.x: no onnx-tensorrt 11 table was available to this transcription; the 10.x table
  is used (the parser's types did not narrow in 11; unverified, said in every 11 report).

Limits checked besides the table (each with its source):

* TopK: ``K`` must be a constant and ``K < 3840`` (operators.md 10.1-GA: "`K` input must be less
  than 3840"; NvInfer.h v8.6.1 ITopKLayer: "Currently only values of K up to 3840 are supported").
* NonMaxSuppression -> ``INMSLayer``: "only the K highest scoring boxes in each batch item will be
  considered for selection. The value of K is 2000 for SM 5.3 and 6.2 devices, and 5000 otherwise"
  (NvInfer.h v8.6.1, v10.3.0, v11.1). A graph whose NMS sees more candidates than that is flagged.
* QuantizeLinear / DequantizeLinear: zero point 0 (operators.md), INT8 (8.6) or INT8/FP8/INT4 (10.x)
  quantized type; a UINT8 Q/DQ graph is an ONNX Runtime CPU model, not a TensorRT one.
* EfficientNMS_TRT (a plugin, found in the plugin registry): every attribute written (the
  creator keeps fields from the previous plugin it made), ``iou_threshold > 0``,
  ``score_threshold >= 0``, ``max_output_boxes > 0``, flags 0 or 1 (NVIDIA/TensorRT v10.3.0
  ``plugin/efficientNMSPlugin/efficientNMSPlugin.cpp``, ``EfficientNMSPluginCreator::createPlugin``).
  On 10.x and 11.x the parser finds it only after ``trt.init_libnvinfer_plugins`` (the 8.6 parser
  calls ``initLibNvInferPlugins`` itself: onnx-tensorrt 8.6-GA ``ModelImporter.cpp``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from ..deps import require
from ..errors import ModelFormatError, YoloEdgeError

DATA = Path(__file__).with_name("data") / "onnx_trt_ops.json"
TARGETS = ("8.6", "10", "11")
TOPK_MAX_K = {"8.6": 3840, "10": 3839, "11": 3839}  # largest K allowed (see the module doc)
INMS_TOPK = 5000  # INMSLayer candidate cap (2000 on SM 5.3/6.2, devices that have no TensorRT >= 8.5)
# Plugins of libnvinfer_plugin that the export writes, with the first version that has them.
PLUGINS = {"EfficientNMS_TRT": {"version": "1", "since": "8.0"}}
EFFICIENT_NMS_ATTRS = ("background_class", "box_coding", "class_agnostic", "iou_threshold", "max_output_boxes",
                       "plugin_version", "score_activation", "score_threshold")

_ONNX_TYPES = {1: "FP32", 10: "FP16", 16: "BF16", 6: "INT32", 7: "INT64", 3: "INT8", 2: "UINT8", 9: "BOOL",
               11: "DOUBLE", 17: "FP8", 18: "FP8", 19: "FP8", 20: "FP8", 22: "INT4", 21: "UINT4", 4: "UINT16",
               5: "INT16", 12: "UINT32", 13: "UINT64", 8: "STRING"}


def parse_operators_md(text: str) -> dict:
    """onnx-tensorrt ``docs/operators.md`` -> ``{op: {"supported": bool, "types": [...], "restrictions": str}}``."""
    ops = {}
    rows = False
    for line in text.splitlines():
        if line.startswith("| Operator"):
            rows = True
            continue
        if not rows or not line.startswith("|") or line.startswith("|--"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not cells or not cells[0]:
            continue
        name, sup = cells[0], (cells[1] if len(cells) > 1 else "")
        raw = cells[2] if len(cells) > 2 else ""
        types = [t.strip().replace("INF64", "INT64") for t in raw.split(",") if t.strip()]
        ops[name] = {"supported": sup.upper().startswith("Y"), "types": types,
                     "restrictions": cells[3] if len(cells) > 3 else ""}
    return ops


@lru_cache(maxsize=None)
def tables() -> dict:
    return json.loads(DATA.read_text())


def target_key(version) -> str:
    """'8.6', '8.6.1.6' -> '8.6'; '10', '10.3.0' -> '10'; '11.1' -> '11'."""
    m = re.match(r"^\s*(\d+)(?:\.(\d+))?", str(version))
    if not m:
        raise YoloEdgeError(f"unknown TensorRT version {version!r}: use 8.6, 10 or 11")
    major, minor = int(m.group(1)), int(m.group(2) or 0)
    if major == 8 and minor >= 5:
        return "8.6"
    if major in (10, 11):
        return str(major)
    raise YoloEdgeError(f"TensorRT {version} is not a target yolo-edge checks: use 8.6, 10 or 11")


def op_table(version) -> dict:
    key = target_key(version)
    return tables()["versions"]["8.6" if key == "8.6" else "10"]


@dataclass(frozen=True)
class Finding:
    level: str  # error | warning | info
    message: str
    node: str = ""
    op: str = ""

    def __str__(self) -> str:
        where = f"{self.op} '{self.node}': " if self.node else (f"{self.op}: " if self.op else "")
        return f"{self.level}: {where}{self.message}"


@dataclass
class Readiness:
    """What :func:`check_onnx` found for one TensorRT target."""

    path: str
    target: str
    source: str
    opset: int
    findings: list[Finding] = field(default_factory=list)
    plugins: list[str] = field(default_factory=list)
    limits: dict = field(default_factory=dict)
    ops: dict = field(default_factory=dict)  # op -> count

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "error"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        n_w = sum(f.level == "warning" for f in self.findings)
        verdict = "parses" if self.ok else f"will NOT parse ({len(self.errors)} error(s))"
        plug = f"; plugins: {', '.join(self.plugins)}" if self.plugins else ""
        return f"TensorRT {self.target}: {self.path} {verdict}, {n_w} warning(s), opset {self.opset}{plug}"

    def to_dict(self) -> dict:
        return {"path": self.path, "tensorrt": self.target, "ok": self.ok, "opset": self.opset, "table": self.source,
                "plugins": self.plugins, "limits": self.limits, "ops": self.ops,
                "findings": [{"level": f.level, "op": f.op, "node": f.node, "message": f.message}
                             for f in self.findings]}

    def text(self) -> str:
        lines = [self.summary(), f"  table: {self.source}"]
        lines += [f"  {k}: {v}" for k, v in self.limits.items()]
        lines += [f"  {f}" for f in self.findings]
        return "\n".join(lines)


def _load(model_or_path):
    onnx = require("onnx")
    if isinstance(model_or_path, (str, Path)):
        p = Path(model_or_path)
        if not p.is_file():
            raise YoloEdgeError(f"ONNX model not found: {p}")
        try:
            return onnx.load(str(p)), str(p)
        except Exception as e:  # onnx raises DecodeError and friends
            raise ModelFormatError(f"{p} is not a readable ONNX model: {e}") from e
    return model_or_path, getattr(model_or_path.graph, "name", "model")


def _types_and_shapes(model) -> tuple[dict, dict, dict]:
    onnx = require("onnx")
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # custom domains / odd graphs: fall back to what is declared
        inferred = model
    types, shapes = {}, {}
    g = inferred.graph
    for vi in (*g.input, *g.output, *g.value_info):
        tt = vi.type.tensor_type
        if tt.elem_type:
            types[vi.name] = _ONNX_TYPES.get(tt.elem_type, str(tt.elem_type))
        if tt.HasField("shape"):
            shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
    consts = {}
    from onnx import numpy_helper

    for t in model.graph.initializer:
        types[t.name] = _ONNX_TYPES.get(t.data_type, str(t.data_type))
        shapes[t.name] = list(t.dims)
        consts[t.name] = numpy_helper.to_array(t)
    for n in model.graph.node:
        if n.op_type == "Constant" and n.output:
            for a in n.attribute:
                if a.name == "value":
                    consts[n.output[0]] = numpy_helper.to_array(a.t)
                    types[n.output[0]] = _ONNX_TYPES.get(a.t.data_type, "?")
    return types, shapes, consts


def _attrs(node) -> dict:
    onnx = require("onnx")
    out = {}
    for a in node.attribute:
        v = onnx.helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


def _made_for(model, key: str) -> str | None:
    """The message when the file's own metadata says it is for other TensorRT versions (the INT8 FP16-scale
    file is for TensorRT >= 10, its FP32-scale twin for 8.6), else ``None``."""
    raw = next((p.value for p in model.metadata_props if p.key == "yolo_edge"), None)
    try:
        info = json.loads(raw)["extra"]["precision"] if raw else None
    except (ValueError, KeyError, TypeError):
        return None
    wanted = str(info.get("tensorrt", "")) if isinstance(info, dict) else ""
    if not wanted:
        return None
    fits = ("8.6" in wanted) if key == "8.6" else (">= 10" in wanted or key in wanted)
    if fits:
        return None
    twin = info.get("twin")
    hint = f"; use its twin {twin} for TensorRT {key}" if twin else ""
    if key != "8.6":
        return (f"this file is made for TensorRT {wanted}: on {key} the layers between INT8 convolutions would run "
                f"FP32{hint}")
    return f"this file is made for TensorRT {wanted}, not {key}{hint}"


def check_onnx(model_or_path, version) -> Readiness:
    """Check an ONNX model (path or ``ModelProto``) against TensorRT ``version`` (8.6 / 10 / 11)."""
    key = target_key(version)
    table = op_table(key)
    model, path = _load(model_or_path)
    ops = table["operators"]
    opset = next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    source = f"{table['repo']}@{table['branch']} ({table['commit'][:12]}) {table['path']}"
    r = Readiness(path, key, source, opset)
    if key == "11":
        r.findings.append(Finding("info", "no onnx-tensorrt 11.x operator table was available: checked against the "
                                          "10.x table (10.1-GA)"))
    made_for = _made_for(model, key)
    if made_for:  # the FP16-scale INT8 file cannot parse on 8.6 (opset 19); the FP32-scale twin parses on 10/11
        r.findings.append(Finding("error" if key == "8.6" else "warning", made_for))
    lo, hi = table["opsets"]
    if not lo <= opset <= hi and not (made_for and key == "8.6"):
        r.findings.append(Finding("error", f"ONNX opset {opset} is outside what TensorRT {key}'s parser supports "
                                           f"({lo}..{hi}); re-export with --opset {min(max(opset, lo), hi)}"))
    types, shapes, consts = _types_and_shapes(model)

    def norm(t):
        if t is None:
            return None
        if t == "DOUBLE":
            return "FP32"
        if key == "8.6" and t == "INT64":
            return "INT32"  # "TensorRT will attempt to cast down INT64 to INT32" (8.6-GA operators.md)
        return t

    def err(node, msg):
        r.findings.append(Finding("error", msg, node.name, node.op_type))

    def warn(node, msg):
        r.findings.append(Finding("warning", msg, node.name, node.op_type))

    cpu_int8 = False
    producers = {o: n for n in model.graph.node for o in n.output}
    for node in model.graph.node:
        op = node.op_type
        r.ops[op] = r.ops.get(op, 0) + 1
        if node.domain not in ("", "ai.onnx"):
            if node.domain == "com.microsoft":
                cpu_int8 = True
            err(node, f"operator domain '{node.domain}' is ONNX Runtime's, not TensorRT's")
            continue
        row = ops.get(op)
        if row is None:
            if op in PLUGINS:
                _check_plugin(r, node, key)
            else:
                err(node, f"not in onnx-tensorrt's operator table for TensorRT {key} and not a TensorRT plugin")
            continue
        if not row["supported"]:
            if op.startswith("QLinear") or op in ("ConvInteger", "MatMulInteger", "DynamicQuantizeLinear"):
                cpu_int8 = True
            err(node, f"not supported by TensorRT {key}'s ONNX parser (onnx-tensorrt table: N)")
            continue
        checked = []
        if op == "Where":
            checked = [node.input[1]] if len(node.input) > 1 else []
        elif op == "ConstantOfShape":
            checked = [node.output[0]]
        elif op == "Cast":
            checked = [node.input[0], node.output[0]]
        elif node.input:
            checked = [node.input[0]]
        allowed = set(row["types"])
        for name in checked:
            t = norm(types.get(name))
            if t is None or not allowed:
                continue
            if t not in allowed:
                if t == "UINT8" and op in ("DequantizeLinear", "QuantizeLinear"):
                    cpu_int8 = True
                err(node, f"{t} {'output' if name in node.output else 'input'} '{name}' is not supported "
                          f"(TensorRT {key}: {', '.join(row['types'])})")
        _check_limits(r, node, key, types, shapes, consts, err, warn, producers)
    if cpu_int8:
        r.findings.insert(0, Finding("error", "this is an ONNX Runtime CPU INT8 model (uint8 / QLinear / "
                                              "com.microsoft operators), not a TensorRT file: build the explicit "
                                              "Q/DQ model for TensorRT instead (model.int8.onnx from yolo-edge "
                                              "export --int8)"))
    r.limits = {"topk_max_k": TOPK_MAX_K[key], "inms_candidates_per_image": INMS_TOPK}
    return r


def _const_scalar(consts, name):
    v = consts.get(name)
    if v is None:
        return None
    return v.reshape(-1)[0] if v.size else None


def _check_limits(r, node, key, types, shapes, consts, err, warn, producers=None):
    op = node.op_type
    producers = producers or {}
    if op == "TopK" and len(node.input) > 1:
        k = _const_scalar(consts, node.input[1])
        if k is None:
            err(node, "K is not a constant; TensorRT's TopK needs a constant K")
        elif int(k) > TOPK_MAX_K[key]:
            err(node, f"K = {int(k)} exceeds TensorRT's TopK limit (K <= {TOPK_MAX_K[key]} on {key}); lower max_det")
    elif op in ("QuantizeLinear", "DequantizeLinear"):
        zp = node.input[2] if len(node.input) > 2 and node.input[2] else None
        if zp is not None:
            v = consts.get(zp)
            if v is None:
                err(node, "the zero point is not a constant")
            elif v.size and (v != 0).any():
                err(node, "the zero point must be 0 (TensorRT quantizes symmetrically)")
        if op == "QuantizeLinear":
            out_t = types.get(zp) if zp else "UINT8"  # no zero point: uint8 by the ONNX spec
            ok = ("INT8",) if key == "8.6" else ("INT8", "FP8", "INT4")
            if out_t is not None and out_t not in ok:
                err(node, f"quantizes to {out_t}; TensorRT {key} takes {'/'.join(ok)}")
    elif op == "NonMaxSuppression":
        s = shapes.get(node.input[1]) if len(node.input) > 1 else None
        if s and len(s) == 3 and s[1] and s[2]:
            n = s[1] * s[2]
            prod = producers.get(node.input[1])
            if prod is not None and prod.op_type == "Where" and (shapes.get(prod.input[1]) or [0, 0])[1:2] == [1]:
                n = s[2]  # Where(class == c, score, 0): each box scores in one class row only (yolo-edge pre-selection)
            if n > INMS_TOPK:
                warn(node, f"{s[1]} classes x {s[2]} boxes = {n} candidates per image: TensorRT's INMSLayer "
                           f"considers only the best {INMS_TOPK} (NvInfer.h INMSLayer); pre-select in the graph")
        for i, what in ((2, "max_output_boxes_per_class"), (3, "iou_threshold"), (4, "score_threshold")):
            if len(node.input) > i and node.input[i] and node.input[i] not in consts:
                err(node, f"{what} must be a constant")
    elif op in ("ReduceSum", "Slice", "Squeeze", "Unsqueeze") and len(node.input) > (3 if op == "Slice" else 1):
        idx = 3 if op == "Slice" else 1
        if node.input[idx] and node.input[idx] not in consts:
            err(node, "axes must be a constant (onnx-tensorrt restriction)")
    elif op == "Resize":
        a = _attrs(node)
        if a.get("mode", "nearest") not in ("nearest", "linear"):
            err(node, f"mode {a.get('mode')!r} is not supported (nearest, linear)")


def _check_plugin(r: Readiness, node, key: str) -> None:
    a = _attrs(node)
    version = str(a.get("plugin_version", "1"))
    r.plugins.append(f"{node.op_type} v{version}")
    if key != "8.6":
        r.findings.append(Finding("info", "found in the plugin registry only after trt.init_libnvinfer_plugins() "
                                          "(yolo-edge build/run call it; trtexec loads libnvinfer_plugin itself)",
                                  node.name, node.op_type))
    if node.op_type == "EfficientNMS_TRT":
        missing = [k for k in EFFICIENT_NMS_ATTRS if k not in a]
        if missing:
            r.findings.append(Finding("error", f"attributes {missing} not written: the plugin creator keeps the "
                                               "values of the previous plugin it made in this process", node.name,
                                      node.op_type))
        checks = (("iou_threshold", lambda v: v > 0, "must be > 0"),
                  ("score_threshold", lambda v: v >= 0, "must be >= 0"),
                  ("max_output_boxes", lambda v: v > 0, "must be > 0"),
                  ("score_activation", lambda v: v in (0, 1), "must be 0 or 1"),
                  ("class_agnostic", lambda v: v in (0, 1), "must be 0 or 1"),
                  ("box_coding", lambda v: v in (0, 1), "must be 0 or 1"))
        for name, ok, what in checks:
            if name in a and not ok(a[name]):
                r.findings.append(Finding("error", f"{name} = {a[name]} {what} (EfficientNMSPluginCreator)",
                                          node.name, node.op_type))
        if len(node.input) not in (2, 3):
            r.findings.append(Finding("error", "takes boxes, scores and optional anchors", node.name, node.op_type))


def check_all(model_or_path, versions=TARGETS) -> list[Readiness]:
    return [check_onnx(model_or_path, v) for v in versions]
