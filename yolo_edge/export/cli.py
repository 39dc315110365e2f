"""``yolo-edge export``: checkpoint -> ONNX, or adapt a third-party YOLO ONNX (``--from-onnx``).

This module imports neither torch nor onnx at import time (``yolo-edge export --help`` works on
the base install); :func:`cmd_export` imports them through the export functions.

The argument builder is split in groups so later layers can extend the same command:
:func:`add_export_args` adds everything this layer needs; a precision layer adds its own group
(``--fp16``, ``--int8``, calibration flags) with another ``add_*_args(p)`` and post-processes the
written ONNX from :func:`cmd_export`'s result (see :func:`run_export`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..cli_types import image_size, opset, positive_int, probability
from ..errors import YoloEdgeError

NMS_CHOICES = ("onnx", "trt", "none")
FORMAT_CHOICES = ("auto", "yolov8", "yolov5")


def add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", "-m", help="yolo-edge checkpoint (.pt) to export (default: the bundled yolo11n-synth.pt)")
    g.add_argument("--from-onnx", metavar="ONNX",
                   help="adapt a third-party YOLO ONNX instead (Ultralytics YOLOv8/YOLO11, YOLOv5/v7): append "
                        "xywh->xyxy decode and NMS, write the yolo-edge metadata")
    g.add_argument("--format", dest="src_format", choices=FORMAT_CHOICES, default="auto",
                   help="layout of the --from-onnx output: yolov8 [B, 4+C, A] or yolov5 [B, A, 5+C] "
                        "(objectness x class score); auto guesses from the shape")
    g.add_argument("--names", help="class names for --from-onnx: a .txt (one per line), .json or .yaml file, or "
                                   "'a,b,c' (default: the model's own metadata)")
    g.add_argument("--out", "-o", help="output .onnx (default: <model stem>.onnx in the current folder; "
                                       "<stem>.yolo-edge.onnx next to a --from-onnx source)")


def add_shape_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("input shape")
    g.add_argument("--imgsz", type=image_size, nargs="+", metavar="N",
                   help="input size: N (square) or H W, multiples of 32 (default 640; --from-onnx: the model's own)")
    g.add_argument("--batch", type=positive_int, default=1,
                   help="batch size of the dummy input / of a static export (default 1)")
    mode = g.add_mutually_exclusive_group()
    mode.add_argument("--dynamic", dest="dynamic", action="store_true", default=True,
                      help="dynamic batch axis (default)")
    mode.add_argument("--static", dest="dynamic", action="store_false", help="fix the batch axis at --batch")


def add_nms_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("NMS (baked into the graph)")
    g.add_argument("--nms", choices=NMS_CHOICES, default="onnx",
                   help="onnx: standard NonMaxSuppression, runs in ONNX Runtime and TensorRT (default); "
                        "trt: EfficientNMS_TRT plugin (TensorRT only); none: raw boxes [B,A,4] + scores [B,A,C]")
    g.add_argument("--conf", type=probability, default=0.25, help="score threshold (default 0.25)")
    g.add_argument("--iou", type=probability, default=0.45, help="IoU threshold (default 0.45)")
    g.add_argument("--max-det", type=positive_int, default=100, help="K, detections per image (default 100)")
    g.add_argument("--agnostic", action="store_true", help="class-agnostic NMS (default: class-aware)")


def add_onnx_args(p: argparse.ArgumentParser) -> None:
    from .onnx_export import DEFAULT_OPSET, MIN_EXPORT_OPSET

    g = p.add_argument_group("ONNX")
    g.add_argument("--opset", type=opset, default=DEFAULT_OPSET, help=f"ONNX opset, >= {MIN_EXPORT_OPSET} (default {DEFAULT_OPSET})")
    g.add_argument("--no-simplify", dest="simplify", action="store_false", help="skip onnxslim/onnxsim")
    g.add_argument("--quiet", "-q", action="store_true", help="no progress output")


def add_export_args(p: argparse.ArgumentParser) -> None:
    """Everything ``yolo-edge export`` takes at this layer (extend with more ``add_*_args``)."""
    add_model_args(p)
    add_shape_args(p)
    add_nms_args(p)
    add_onnx_args(p)


def nms_from_args(args):
    from ..spec import NmsSpec

    try:
        return NmsSpec(flavour=args.nms, score_threshold=args.conf, iou_threshold=args.iou,
                       max_det=args.max_det, class_agnostic=args.agnostic)
    except ValueError as e:
        raise YoloEdgeError(str(e)) from None


def imgsz_from_args(args):
    if not args.imgsz:
        return None
    if len(args.imgsz) == 1:
        return (args.imgsz[0], args.imgsz[0])
    if len(args.imgsz) == 2:
        return tuple(args.imgsz)
    raise YoloEdgeError(f"--imgsz takes N or H W, got {len(args.imgsz)} values")


def run_export(args) -> Path:
    """Map the arguments to :func:`export_onnx` / :func:`adapt_onnx`; returns the written path."""
    nms = nms_from_args(args)
    imgsz = imgsz_from_args(args)
    if args.out:
        from ..preflight import check_output_file

        check_output_file(args.out)
    if args.from_onnx:
        if args.model:
            raise YoloEdgeError("pass either --model (a checkpoint) or --from-onnx (an ONNX), not both")
        if not args.dynamic:
            raise YoloEdgeError("--static does not apply to --from-onnx: the batch axis stays as the source has it")
        from .adapters import adapt_onnx

        return adapt_onnx(args.from_onnx, args.out, fmt=args.src_format, nms=nms, names=args.names,
                          imgsz=imgsz, verbose=not args.quiet)
    if args.names:
        raise YoloEdgeError("--names applies to --from-onnx only (a checkpoint carries its class names)")
    from .onnx_export import export_onnx

    return export_onnx(args.model, args.out, imgsz=imgsz or (640, 640), nms=nms, dynamic_batch=args.dynamic,
                       batch=args.batch, simplify=args.simplify, opset=args.opset, verbose=not args.quiet)


def cmd_export(args) -> int:
    out = run_export(args)
    size = out.stat().st_size / 1e6
    print(f"wrote {out} ({size:.1f} MB, NMS {args.nms})")
    return 0


COMMANDS = [
    ("export", cmd_export, "export a checkpoint to ONNX with embedded NMS, or adapt a third-party YOLO ONNX",
     add_export_args),
]
