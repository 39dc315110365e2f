"""PyTorch checkpoint -> ONNX (DESIGN §1–2).

    export_onnx("yolo11n.pt", "yolo11n.onnx", imgsz=(640, 640), nms=NmsSpec("onnx"))

Stages (each printed with its time when ``verbose``):

1. load the checkpoint (``weights_only``) and fold every BatchNorm into its conv;
2. ``torch.onnx.export`` (TorchScript exporter, ``dynamo=False``) of the model wrapped so that it
   returns the decoded ``boxes (B, A, 4)`` and ``scores (B, A, C)`` through
   :func:`yolo_edge.model.decode_torch` — the one torch decode; the batch axis is dynamic unless
   a static batch is asked for, the input size is fixed at export;
3. simplify (onnxslim, else onnxsim);
4. embed NMS (:func:`yolo_edge.export.nms.add_nms`) unless ``--nms none``;
5. ``onnx.checker`` (full check with shape inference);
6. write the ``yolo_edge`` metadata and save atomically (temporary file, then rename).
"""

from __future__ import annotations

import copy
import io
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

from ..deps import available, require
from ..errors import CheckpointError, YoloEdgeError
from ..spec import NmsSpec
from .metadata import build_spec, set_metadata
from .nms import MIN_NMS_OPSET, TRT_DENSE_THRESHOLD, TRT_PLUGIN, add_nms

DEFAULT_OPSET = 17
MIN_EXPORT_OPSET = 13  # lowest tested; older runtimes (TensorRT 8.2 on JetPack 4) stop at 13


class Stages:
    """Prints ``stage ... 1.23 s`` lines (the export's progress output)."""

    def __init__(self, verbose: bool = True, log: Callable[[str], None] | None = None):
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.verbose = verbose
        self.t0 = time.perf_counter()

    def __call__(self, name: str, detail: str = ""):
        return _Stage(self, name, detail)

    def note(self, msg: str) -> None:
        if self.verbose:
            self.log(f"  {msg}")


class _Stage:
    def __init__(self, stages: Stages, name: str, detail: str):
        self.s, self.name, self.detail = stages, name, detail

    def __enter__(self):
        self.t = time.perf_counter()
        return self

    def __exit__(self, exc_type, *exc):
        if exc_type is None and self.s.verbose:
            dt = time.perf_counter() - self.t
            extra = f" ({self.detail})" if self.detail else ""
            self.s.log(f"{self.name:<10} {dt:6.2f} s{extra}")
        return False


def normalize_imgsz(imgsz, stride: int = 32) -> tuple[int, int]:
    """``640`` or ``(H, W)`` -> ``(H, W)``, each a positive multiple of ``stride``."""
    if isinstance(imgsz, int):
        imgsz = (imgsz, imgsz)
    try:
        h, w = (int(v) for v in imgsz)
    except (TypeError, ValueError):
        raise YoloEdgeError(f"input size must be an int or (H, W), got {imgsz!r}") from None
    if h <= 0 or w <= 0 or h % stride or w % stride:
        raise YoloEdgeError(f"input size {h}x{w} must be positive multiples of the largest stride {stride}")
    return h, w


def load_model(checkpoint):
    """``(fused eval-mode model, checkpoint sha256)`` from a path or a ``YOLO`` module (copied)."""
    torch = require("torch")
    from ..model import YOLO, load_checkpoint
    from ..util import sha256_file

    if isinstance(checkpoint, YOLO):
        model, sha = copy.deepcopy(checkpoint), ""
    elif isinstance(checkpoint, torch.nn.Module):
        raise CheckpointError(f"expected a yolo_edge YOLO model, got {type(checkpoint).__name__}")
    else:
        path = Path(checkpoint)
        if not path.is_file():
            raise CheckpointError(f"checkpoint not found: {path}")
        if path.suffix.lower() == ".onnx":
            raise CheckpointError(f"{path} is an ONNX file, not a checkpoint: use --from-onnx {path} to adapt it")
        model, sha = load_checkpoint(path), sha256_file(path)
    model = model.float().eval()
    if not model.fused:
        model.fuse()
    return model, sha


def _decoded_module(model):
    torch = require("torch")
    from ..model import decode_torch

    class Decoded(torch.nn.Module):
        """images (B, 3, H, W) -> boxes (B, A, 4) xyxy input pixels, scores (B, A, C) after sigmoid."""

        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, images):
            return decode_torch(self.m(images), self.m.cfg.strides, self.m.cfg.reg_max)

    return Decoded(model).eval()


def torch_to_onnx(model, imgsz: tuple[int, int], *, dynamic_batch: bool = True, batch: int = 1,
                  opset: int = DEFAULT_OPSET):
    """The raw graph (``images`` -> ``boxes``, ``scores``) of a fused model, as an ``onnx.ModelProto``."""
    torch = require("torch")
    onnx = require("onnx")
    wrapper = _decoded_module(model)
    dummy = torch.zeros(batch, 3, *imgsz)
    axes = {"images": {0: "batch"}, "boxes": {0: "batch"}, "scores": {0: "batch"}} if dynamic_batch else None
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # deprecation and tracer notices of the TorchScript exporter
        torch.onnx.export(wrapper, (dummy,), buf, input_names=["images"], output_names=["boxes", "scores"],
                          opset_version=opset, dynamic_axes=axes, do_constant_folding=True, dynamo=False)
    return onnx.load_from_string(buf.getvalue())


def simplify_onnx(model):
    """onnxslim (preferred) or onnxsim; returns ``(model, tool name)``."""
    if available("onnxslim"):
        onnxslim = require("onnxslim")
        return onnxslim.slim(model), "onnxslim"
    if available("onnxsim"):
        onnxsim = require("onnxsim")
        simplified, ok = onnxsim.simplify(model)
        if not ok:
            raise YoloEdgeError("onnxsim could not validate the simplified model; export with --no-simplify")
        return simplified, "onnxsim"
    require("onnxslim")  # raises MissingDependency naming the extra
    raise AssertionError  # pragma: no cover


def check_onnx(model) -> None:
    """``onnx.checker`` with shape inference; a graph with the EfficientNMS_TRT plugin node is
    checked without that node (the checker knows no TensorRT plugins) and the node's wiring is
    checked by hand."""
    onnx = require("onnx")
    plugin = [n for n in model.graph.node if n.op_type == TRT_PLUGIN]
    if plugin:
        m = onnx.ModelProto()
        m.CopyFrom(model)
        node = [n for n in m.graph.node if n.op_type == TRT_PLUGIN][0]
        outs = list(node.output)
        m.graph.node.remove(node)
        del m.graph.output[:]
        for name in node.input:  # the plugin's inputs become the outputs of the checked graph
            m.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, [None] * 3))
        produced = {o for n in m.graph.node for o in n.output}
        missing = [i for i in node.input if i not in produced]
        if missing or [o.name for o in model.graph.output] != outs:
            raise YoloEdgeError(f"malformed {TRT_PLUGIN} wiring: inputs {list(node.input)}, outputs {outs}")
        model = m
    onnx.checker.check_model(model, full_check=True)


def save_onnx(model, out_path) -> Path:
    """Save atomically (temporary file in the same folder, then rename)."""
    onnx = require("onnx")
    from ..util import atomic_path

    out_path = Path(out_path)
    with atomic_path(out_path) as tmp:
        onnx.save(model, str(tmp))
        umask = os.umask(0)  # the temporary file is private (0600); give the artifact the usual mode
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
    return out_path


def export_onnx(
    checkpoint=None,
    out_path=None,
    imgsz=(640, 640),
    nms: NmsSpec | None = None,
    dynamic_batch: bool = True,
    batch: int = 1,
    simplify: bool = True,
    opset: int = DEFAULT_OPSET,
    verbose: bool = True,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Export a yolo-edge checkpoint to ONNX (see the module doc for the stages).

    Args:
        checkpoint: ``.pt`` path or a ``yolo_edge.model.YOLO`` module; None = the bundled checkpoint.
        out_path: the ``.onnx`` to write; None = ``<checkpoint stem>.onnx`` in the current folder.
        imgsz: input ``(H, W)`` (or an int), multiples of 32; fixed in the graph and the metadata.
        nms: flavour (``onnx`` | ``trt`` | ``none``) and thresholds baked into the graph.
        dynamic_batch: batch axis dynamic (True) or fixed at ``batch``.
        simplify: run onnxslim (or onnxsim).
        opset: ONNX opset (default 17; 13 to 16 for older runtimes such as TensorRT 8.2 on JetPack 4).

    Returns the path written. Raises :class:`YoloEdgeError` (or a subclass) on user errors.
    """
    nms = nms or NmsSpec()
    stages = Stages(verbose, log)
    if opset < MIN_EXPORT_OPSET:
        raise YoloEdgeError(f"opset {opset} is too old: export needs opset >= {MIN_EXPORT_OPSET} "
                            f"(default {DEFAULT_OPSET}; embedded NMS alone needs {MIN_NMS_OPSET})")
    if int(batch) < 1:
        raise YoloEdgeError(f"batch must be >= 1, got {batch}")
    if nms.flavour == "trt" and nms.score_threshold < TRT_DENSE_THRESHOLD:
        stages.note(f"warning: EfficientNMS_TRT with score threshold < {TRT_DENSE_THRESHOLD} keeps below-threshold "
                    "boxes (score -32768) when fewer than max_det pass; see efficient_nms_reference")
    if checkpoint is None:
        from ..assets import default_checkpoint

        checkpoint = default_checkpoint()

    source = str(checkpoint) if isinstance(checkpoint, (str, Path)) else type(checkpoint).__name__
    with stages("load", f"{source}, BatchNorm fused"):
        model, sha = load_model(checkpoint)
    imgsz = normalize_imgsz(imgsz, max(model.cfg.strides))
    if out_path is None:
        stem = Path(checkpoint).stem if isinstance(checkpoint, (str, Path)) else f"yolo11{model.cfg.scale}"
        out_path = Path(f"{stem}.onnx")
    out_path = Path(out_path)
    if out_path.suffix.lower() != ".onnx":
        raise YoloEdgeError(f"output file must end in .onnx, got {out_path}")
    axis = "dynamic batch" if dynamic_batch else f"static batch {batch}"
    with stages("export", f"opset {opset}, {imgsz[0]}x{imgsz[1]}, {axis}"):
        m = torch_to_onnx(model, imgsz, dynamic_batch=dynamic_batch, batch=int(batch), opset=opset)
    if simplify:
        n0 = len(m.graph.node)
        with stages("simplify") as st:
            m, tool = simplify_onnx(m)
            st.detail = f"{tool}: {n0} -> {len(m.graph.node)} nodes"
    with stages("check", "onnx.checker, raw outputs"):
        check_onnx(m)
    if nms.flavour != "none":
        detail = (f"{nms.flavour}: score > {nms.score_threshold}, IoU > {nms.iou_threshold}, K = {nms.max_det}"
                  if nms.flavour == "onnx" else
                  f"{TRT_PLUGIN}: score >= {nms.score_threshold}, IoU >= {nms.iou_threshold}, K = {nms.max_det}")
        with stages("add NMS", detail):
            m = add_nms(m, nms)
        with stages("check", "onnx.checker with NMS"):
            check_onnx(m)
    spec = build_spec(model.cfg.names, imgsz, nms, strides=model.cfg.strides, reg_max=model.cfg.reg_max,
                      scale=model.cfg.scale, checkpoint_sha256=sha)
    set_metadata(m, spec)
    m.producer_name, m.producer_version = "yolo-edge", spec.version
    m.doc_string = f"yolo-edge YOLO11{model.cfg.scale}, {len(spec.names)} classes, NMS {nms.flavour}"
    with stages("write", str(out_path)):
        save_onnx(m, out_path)
    return out_path
