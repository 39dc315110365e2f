"""Bring your own YOLO ONNX: append decode and NMS to a third-party export by graph surgery.

Supported output layouts (one output tensor, boxes as centre x, y, width, height in input pixels):

``yolov8`` — Ultralytics YOLOv8 / YOLO11 (also YOLOv9/v10 non-end2end exports): ``[B, 4 + C, A]``,
    class scores already sigmoided, no objectness.
``yolov5`` — YOLOv5 / YOLOv7: ``[B, A, 5 + C]`` with objectness at index 4; the score of class c
    is ``objectness * class_score`` (as their own NMS computes it).

The adapted model follows the DESIGN §2 contract exactly like an exported one: input ``images``
float32 ``[B, 3, H, W]`` RGB in [0, 1] letterboxed with pad 114 (Ultralytics' preprocessing is the
same), outputs ``boxes``/``scores`` or the four NMS outputs, and ``yolo_edge`` metadata with the
class names (given, or read from the model's own metadata: Ultralytics ``names``), the input size
and the NMS settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..deps import require
from ..errors import ModelFormatError, YoloEdgeError
from ..spec import NmsSpec
from .metadata import build_spec, get_spec, read_ultralytics_metadata, set_metadata
from .nms import NMS_OUTPUT_NAMES, _dims, _Graph, add_nms, check_opset, default_opset

FORMATS = ("auto", "yolov8", "yolov5")
LAYOUTS = {"yolov8": "[B, 4+C, A]", "yolov5": "[B, A, 5+C]"}
MIN_DECODE_OPSET = 11


def _load(path):
    onnx = require("onnx")
    path = Path(path)
    if not path.is_file():
        raise ModelFormatError(f"ONNX file not found: {path}")
    try:
        model = onnx.load(str(path))
    except Exception as e:  # protobuf raises DecodeError and friends
        raise ModelFormatError(f"{path} is not a readable ONNX model: {e}") from e
    from ..modelfile import check_onnx_proto

    check_onnx_proto(model, path)
    return model


def _probe_output_shape(model, input_name: str, imgsz: tuple[int, int], batch: int) -> tuple[int, ...]:
    """Run the model once on zeros to learn its output shape (for graphs with symbolic shapes)."""
    ort = require("onnxruntime")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        out = sess.run([model.graph.output[0].name], {input_name: np.zeros((batch, 3, *imgsz), np.float32)})[0]
    except Exception as e:  # onnxruntime raises its own exception types
        raise ModelFormatError(f"onnxruntime cannot run the model at {imgsz[0]}x{imgsz[1]}: {e}") from e
    return tuple(int(d) for d in out.shape)


def detect_layout(shape: Sequence[int], fmt: str = "auto", nc: int | None = None) -> tuple[str, int, int]:
    """``(format, C, A)`` of a YOLO output of static ``shape``; raises :class:`ModelFormatError`
    when the shape fits no supported layout (or not the one asked for)."""
    if len(shape) != 3:
        raise ModelFormatError(f"unrecognised YOLO output layout {list(shape)}: expected rank 3, "
                               f"{LAYOUTS['yolov8']} (yolov8) or {LAYOUTS['yolov5']} (yolov5)")
    d1, d2 = (int(v) for v in shape[1:])  # the batch axis may be symbolic ('batch')
    # channels (4 + C or 5 + C) are fewer than anchors in every real YOLO output
    fits = {"yolov8": 4 < d1 < d2 and (nc is None or d1 == 4 + nc),
            "yolov5": 5 < d2 < d1 and (nc is None or d2 == 5 + nc)}
    if fmt == "auto":
        candidates = [f for f, ok in fits.items() if ok]
        if not candidates:
            raise ModelFormatError(_layout_message(shape, nc))
        fmt = candidates[0]
    elif fmt not in LAYOUTS:
        raise YoloEdgeError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    elif not fits[fmt]:
        other = "yolov5" if fmt == "yolov8" else "yolov8"
        hint = f"; it fits {other} {LAYOUTS[other]}: use --format {other}" if fits[other] else ""
        raise ModelFormatError(_layout_message(shape, nc, fmt) + hint)
    C, A = (d1 - 4, d2) if fmt == "yolov8" else (d2 - 5, d1)
    return fmt, C, A


def _layout_message(shape, nc, fmt=None) -> str:
    want = f" with {nc} classes" if nc is not None else ""
    if fmt:
        return f"output shape {list(shape)} is not the {fmt} layout {LAYOUTS[fmt]}{want}"
    return (f"unrecognised YOLO output layout {list(shape)}{want}: expected {LAYOUTS['yolov8']} (yolov8/yolo11) "
            f"or {LAYOUTS['yolov5']} (yolov5/yolov7)")


def _read_names(names) -> tuple[str, ...] | None:
    if names is None:
        return None
    if isinstance(names, Path) or (isinstance(names, str) and (
            Path(names).suffix.lower() in (".txt", ".names", ".json", ".yaml", ".yml") or Path(names).is_file())):
        return names_from_file(names)
    if isinstance(names, str):
        return tuple(n.strip() for n in names.split(",") if n.strip())
    from .metadata import parse_names

    return parse_names(names)


def names_from_file(path) -> tuple[str, ...]:
    """Class names from a text file (one per line), a JSON list/dict, or a YAML with ``names:``."""
    from .metadata import parse_names

    p = Path(path)
    if not p.is_file():
        raise YoloEdgeError(f"names file not found: {p}")
    text = p.read_text(encoding="utf-8")
    if p.suffix.lower() == ".json":
        import json

        data = json.loads(text)
        return parse_names(data.get("names", data) if isinstance(data, dict) and "names" in data else data)
    if p.suffix.lower() in (".yaml", ".yml"):
        yaml = require("yaml")
        data = yaml.safe_load(text)
        if not isinstance(data, dict) or "names" not in data:
            raise YoloEdgeError(f"{p} has no 'names' entry")
        return parse_names(data["names"])
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def _set_static_input(model, name: str, imgsz: tuple[int, int]) -> None:
    """Fix the input's H and W (the size is part of the contract); leave the batch axis as it is."""
    inp = next(i for i in model.graph.input if i.name == name)
    dims = inp.type.tensor_type.shape.dim
    for d, v in zip(dims[2:], imgsz):
        d.Clear()
        d.dim_value = int(v)


def adapt_onnx(
    path,
    out_path=None,
    fmt: str = "auto",
    nms: NmsSpec | None = None,
    names=None,
    imgsz=None,
    verbose: bool = True,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Adapt a third-party YOLO ONNX to the yolo-edge contract and write it.

    Args:
        path: the source ``.onnx``.
        out_path: where to write; None = ``<stem>.yolo-edge.onnx`` next to the source.
        fmt: ``yolov8`` (``[B, 4+C, A]``), ``yolov5`` (``[B, A, 5+C]``) or ``auto``.
        nms: NMS flavour and thresholds to embed (``none`` keeps ``boxes``/``scores``).
        names: class names (sequence, ``"a,b,c"``, or a .txt/.json/.yaml file); default: the model's
            own metadata, else ``class0..``. Must match the model's class count.
        imgsz: input ``(H, W)``; default: the model's static input size or its ``imgsz`` metadata.

    Raises :class:`ModelFormatError` for an unrecognised layout, a class-count mismatch or an opset
    too old for the NMS asked for.
    """
    from .onnx_export import Stages, check_onnx, save_onnx

    onnx = require("onnx")
    nms = nms or NmsSpec()
    stages = Stages(verbose, log)
    path = Path(path)
    with stages("load", str(path)):
        model = _load(path)
    g = model.graph
    opset = default_opset(model)
    if nms.flavour != "none":
        check_opset(model)
    elif opset < MIN_DECODE_OPSET:
        raise ModelFormatError(f"the model uses ONNX opset {opset}; adapting needs opset >= {MIN_DECODE_OPSET}")

    # --- the image input -----------------------------------------------------------------
    init_names = {t.name for t in g.initializer}
    inputs = [i for i in g.input if i.name not in init_names]
    if len(inputs) != 1:
        raise ModelFormatError(f"expected one image input, the model has {len(inputs)}: {[i.name for i in inputs]}")
    inp = inputs[0]
    in_dims = _dims(inp)
    if len(in_dims) != 4 or in_dims[1] not in (3, None) or inp.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        raise ModelFormatError(f"expected a float32 image input [B, 3, H, W], got '{inp.name}' {in_dims}")
    if any(o.name in NMS_OUTPUT_NAMES for o in g.output):
        raise ModelFormatError(f"{path.name} already ends in NMS (outputs {[o.name for o in g.output]}); "
                               "adapt the model exported without NMS")

    meta = read_ultralytics_metadata(model)
    own = get_spec(model)
    if own is not None and {"boxes", "scores"} <= {o.name for o in g.output}:
        raise ModelFormatError(f"{path.name} is already a yolo-edge ONNX (NMS none): run it as it is "
                               f"(yolo-edge predict --model {path}), or export the checkpoint again with --nms onnx")
    static_hw = tuple(in_dims[2:]) if all(isinstance(v, int) and v > 0 for v in in_dims[2:]) else None
    if imgsz is not None:
        from .onnx_export import normalize_imgsz

        imgsz = normalize_imgsz(imgsz, 1)
        if static_hw and static_hw != imgsz:
            raise ModelFormatError(f"the model's input is fixed at {static_hw[0]}x{static_hw[1]}, not "
                                   f"{imgsz[0]}x{imgsz[1]}; re-export it at the size you need")
    else:
        imgsz = static_hw or meta.get("imgsz") or (own.imgsz if own else None)
        if imgsz is None:
            raise YoloEdgeError("the model's input size is dynamic and its metadata does not say it: pass --imgsz H W")
    if not static_hw:
        _set_static_input(model, inp.name, imgsz)
    batch = in_dims[0] if isinstance(in_dims[0], int) and in_dims[0] > 0 else None

    # --- names and layout ------------------------------------------------------------------
    given = _read_names(names)
    meta_names = meta.get("names") or (own.names if own and own.names else None)
    if len(g.output) > 1:
        stages.note(f"using output '{g.output[0].name}'; dropping {[o.name for o in g.output[1:]]}")
        del g.output[1:]
    out = g.output[0]
    shape = _dims(out)
    if len(shape) != 3 or not all(isinstance(v, int) and v > 0 for v in shape[1:]):
        shape = _probe_output_shape(model, inp.name, imgsz, batch or 1)  # symbolic or unknown shape
    fmt_used, C, A = detect_layout(shape, fmt)
    for source, n in (("--names", given), ("the model's metadata", meta_names)):
        if n is not None and len(n) != C:
            raise ModelFormatError(f"class count mismatch: the {fmt_used} output {list(shape)} has {C} classes "
                                   f"but {source} lists {len(n)} names")
    class_names = given or meta_names or tuple(f"class{i}" for i in range(C))

    # --- decode: raw output -> boxes (B, A, 4) xyxy, scores (B, A, C) ------------------------------
    with stages("decode", f"{fmt_used} {LAYOUTS[fmt_used]} -> boxes [B, {A}, 4] xyxy + scores [B, {A}, {C}]"):
        _append_decode(model, out.name, fmt_used, C, A, in_dims[0] or "batch")
    if nms.flavour != "none":
        with stages("add NMS", f"{nms.flavour}: score {nms.score_threshold}, IoU {nms.iou_threshold}, "
                               f"K = {nms.max_det}"):
            add_nms(model, nms)
    with stages("check", "onnx.checker"):
        del g.value_info[:]  # stale symbolic shapes; shape inference recomputes them
        check_onnx(model)
    from ..util import sha256_file

    strides = (8, 16, 32)
    spec = build_spec(class_names, imgsz, nms, strides=strides, reg_max=0, scale="",
                      extra={"source_format": fmt_used, "source_file": path.name, "source_sha256": sha256_file(path),
                             "source_producer": f"{model.producer_name} {model.producer_version}".strip()})
    set_metadata(model, spec)
    if out_path is None:
        out_path = path.with_name(f"{path.stem}.yolo-edge.onnx")
    out_path = Path(out_path)
    if out_path.resolve() == path.resolve():
        raise YoloEdgeError(f"refusing to overwrite the source model {path}; pass another --out")
    with stages("write", str(out_path)):
        save_onnx(model, out_path)
    return out_path


def _append_decode(model, raw: str, fmt: str, nc: int, anchors: int | None, batch) -> None:
    """Append xywh -> xyxy decode (and objectness x class for yolov5) after output ``raw``;
    the graph's outputs become ``boxes`` and ``scores``."""
    onnx = require("onnx")
    g = model.graph
    G = _Graph(g, "decode")
    for name in ("boxes", "scores"):
        if name in G.used:
            _rename_tensor(g, name, G.fresh(name))
    i64 = np.int64
    axis = G.const([2], i64, "axis2")
    c = {v: G.const([v], i64, f"i{v}") for v in (0, 2, 4, 5)}
    end = G.const([np.iinfo(np.int64).max], i64, "end")
    x = G.op("Transpose", raw, perm=[0, 2, 1]) if fmt == "yolov8" else raw  # (B, A, 4 + C [+1])
    xy = G.op("Slice", x, c[0], c[2], axis)  # (B, A, 2) centre
    wh = G.op("Slice", x, c[2], c[4], axis)  # (B, A, 2) size
    half = G.op("Mul", wh, G.const(0.5, np.float32, "half"))
    G.node("Concat", [G.op("Sub", xy, half), G.op("Add", xy, half)], outputs=["boxes"], axis=2)
    if fmt == "yolov8":
        G.node("Slice", [x, c[4], end, axis], outputs=["scores"])
    else:
        obj = G.op("Slice", x, c[4], c[5], axis)  # (B, A, 1)
        cls = G.op("Slice", x, c[5], end, axis)  # (B, A, C)
        G.node("Mul", [cls, obj], outputs=["scores"])
    del g.output[:]
    T = onnx.TensorProto
    g.output.extend([onnx.helper.make_tensor_value_info("boxes", T.FLOAT, [batch, anchors, 4]),
                     onnx.helper.make_tensor_value_info("scores", T.FLOAT, [batch, anchors, nc])])


def _rename_tensor(graph, old: str, new: str) -> None:
    for n in graph.node:
        n.input[:] = [new if i == old else i for i in n.input]
        n.output[:] = [new if o == old else o for o in n.output]
    for v in (*graph.value_info, *graph.output):
        if v.name == old:
            v.name = new

