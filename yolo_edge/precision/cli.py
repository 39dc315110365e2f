"""``yolo-edge calibrate`` and the precision flags of ``yolo-edge export`` (``--fp16``, ``--int8``, ...).

No torch or onnx import at module level: ``yolo-edge --help`` works on a numpy + OpenCV install.

``export`` is defined by :mod:`yolo_edge.export.cli`; this module registers the same command name
again with the export arguments plus :func:`add_precision_args` (``yolo_edge.cli`` loads this
module after the export layer, so this registration is the one in effect). Without ``--fp16`` /
``--int8`` the command is exactly the export layer's :func:`~yolo_edge.export.cli.cmd_export`.

Exit codes: 0 success, 1 user error (one line on stderr), 2 the INT8 model misses the
``--max-map-drop`` budget (the report path is printed).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..cli_types import fraction, non_negative_int, positive_int
from ..errors import YoloEdgeError

METHODS = ("minmax", "entropy", "percentile", "mse", "auto")  # = calibration.METHODS (kept here: no numpy import)
HEAD_GUARD_SHARE = 0.05  # = qdq.HEAD_GUARD_SHARE (kept here: no numpy import)
REFINE_IMAGES = 32  # = refine.REFINE_IMAGES
WEIGHT_SCALES = ("mse", "max")  # = qdq.WEIGHT_SCALES
DEFAULT_WEIGHT_SCALE = "mse"  # = qdq.DEFAULT_WEIGHT_SCALE
WEIGHT_ROUNDINGS = ("gptq", "nearest")  # = rounding.WEIGHT_ROUNDINGS
DEFAULT_WEIGHT_ROUNDING = "gptq"  # = rounding.DEFAULT_WEIGHT_ROUNDING
GUARDS = ("sensitive", "head")  # = sensitivity.GUARDS
DEFAULT_GUARD = "sensitive"  # = sensitivity.DEFAULT_GUARD
GUARD_IMAGES = 8  # = sensitivity.GUARD_IMAGES
SHIFTS = ("all", "unpadded", "off")  # = qdq.SHIFTS
DEFAULT_SHIFT = "all"  # = qdq.DEFAULT_SHIFT



def _none_or(value: str):
    return None if value.lower() in ("none", "off", "") else value


def _float_or_none(value: str):
    return None if value.lower() in ("none", "off") else float(value)


def add_calibration_args(p: argparse.ArgumentParser, *, val_default: str | None) -> None:
    g = p.add_argument_group("calibration")
    g.add_argument("--calib", default="synthetic:calib", metavar="DATA",
                   help="calibration images: an image folder, a dataset (YOLO dir, COCO json, synthetic:calib) or a "
                        "video; letterboxed like every model input (default synthetic:calib)")
    g.add_argument("--calib-images", type=positive_int, default=512, metavar="N",
                   help="number of calibration images, spread over DATA (default 512)")
    g.add_argument("--calib-method", choices=METHODS, default="entropy",
                   help="how each activation's range is chosen: entropy (default; ONNX Runtime's and ModelOpt's KL "
                        "calibrator, measured best overall in benchmarks/int8_accuracy.py), minmax, percentile, mse, "
                        "auto (per tensor, by layer-output error; a few more inferences)")
    g.add_argument("--percentile", type=float, default=99.99, help="for --calib-method percentile (default 99.99)")
    g.add_argument("--val", type=_none_or, default=val_default, metavar="DATA",
                   help="labelled validation data for mAP and the budget; must not share images with --calib "
                        f"(default {val_default or 'none'}; 'none' to skip)")
    g.add_argument("--val-images", type=positive_int, default=None, metavar="N", help="validation images (default: all)")
    g.add_argument("--strict", action="store_true", help="fail on bad labels in --val (default: warn, count, skip)")
    g.add_argument("--force-overlap", action="store_true",
                   help="proceed even when calibration and validation images overlap (not recommended)")
    g.add_argument("--recalibrate", action="store_true",
                   help="ignore calibration statistics saved by an earlier run with the same key")


def add_int8_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("INT8 / mixed precision")
    g.add_argument("--max-map-drop", type=_float_or_none, default=1.0, metavar="POINTS",
                   help="INT8 mAP50-95 budget below FP32, in points; layers are excluded one at a time until the "
                        "INT8 model is within it; exit code 2 if it cannot be met (default 1.0; 'none' = no budget)")
    g.add_argument("--max-exclusions", type=int, default=6, metavar="N",
                   help="evaluations the budget loop may spend (default 6)")
    g.add_argument("--sensitivity", choices=("auto", "always", "never"), default="auto",
                   help="rank layers by sensitivity: only when over budget (auto), always, or never")
    g.add_argument("--exclude", action="append", default=[], metavar="NODE",
                   help="keep this node in higher precision in the INT8 model (repeatable)")
    g.add_argument("--quantize-ops", default="Conv", metavar="OPS",
                   help="comma-separated op types whose inputs get Q/DQ (default Conv; e.g. Conv,MatMul)")
    g.add_argument("--qdq-placement", choices=("trt", "conv"), default="trt",
                   help="where Q/DQ goes: trt (default; TensorRT's recommendations: weighted-layer inputs, the residual "
                        "input of Add, MaxPool; writes <out>.int8.onnx with FP16 scales for TensorRT >= 10 and "
                        "<out>.int8.fp32scales.onnx for TensorRT 8.6 / ONNX Runtime) or conv (convolution inputs "
                        "only, FP32 scales: the earlier placement)")
    g.add_argument("--int8-guard-share", "--int8-head-guard", dest="int8_head_guard", type=fraction,
                   default=HEAD_GUARD_SHARE, metavar="SHARE",
                   help="trt target: the share of the convolution FLOPs the guard may keep FP16 (default 0.05, so "
                        ">= 95 %% run INT8; 0 = quantize every layer)")
    g.add_argument("--int8-guard", choices=GUARDS, default=DEFAULT_GUARD,
                   help="trt target: which layers the guard keeps FP16: sensitive (default; those whose FP16 lowers "
                        f"the INT8 model's output error against FP32 most per FLOP, measured on {GUARD_IMAGES} "
                        "calibration images) or head (the finest-resolution prediction convs, the small-object head)")
    g.add_argument("--int8-refine", type=non_negative_int, default=REFINE_IMAGES, metavar="N",
                   help="trt target: refine the activation ranges end to end on N calibration images, by gradient "
                        "descent on how far the INT8 boxes and scores move from FP32's (needs PyTorch; default "
                        f"{REFINE_IMAGES}; 0 = use the calibration method's ranges as they are)")
    g.add_argument("--int8-weight-scale", choices=WEIGHT_SCALES, default=DEFAULT_WEIGHT_SCALE,
                   help="trt placement: each weight channel's INT8 scale: mse (default; the clipping of max|w| with "
                        "the least squared error of the INT8 weights) or max (max|w| / 127)")
    g.add_argument("--int8-weight-rounding", choices=WEIGHT_ROUNDINGS, default=DEFAULT_WEIGHT_ROUNDING,
                   help="trt placement: gptq (default; each layer's INT8 weights rounded so that its output error "
                        "on 64 calibration images is least, the scales unchanged; needs PyTorch, else nearest) or "
                        "nearest (each weight to its nearest INT8 level)")
    g.add_argument("--int8-shift", choices=SHIFTS, default=DEFAULT_SHIFT,
                   help="trt placement: activations that never go below a small bound (SiLU, Sigmoid outputs, the "
                        "image) are quantized over [bound, amax] instead of [-amax, amax], with the shift folded "
                        "into the consumer convolutions' biases: half the INT8 step. all (default): every such "
                        "tensor read only by convolutions (padded ones get an explicit Pad); unpadded: only those "
                        "read by unpadded convolutions (no layer but a Sub); off")
    g.add_argument("--int8-target", choices=("trt", "ort-cpu", "both"), default="trt",
                   help="trt (default): <name>.int8.onnx, Q/DQ for TensorRT (slower than FP32 in ONNX Runtime on a "
                        "CPU); ort-cpu: <name>.int8-cpu.onnx, Q/DQ that ONNX Runtime fuses into integer kernels "
                        "(QLinearConv...), the fast one on a CPU; both")
    g.add_argument("--int8-cpu-method", choices=METHODS, default=None,
                   help="calibration method of the ort-cpu target (default: with --val, percentile, minmax and "
                        "entropy are tried and the most accurate kept; without, percentile); --calib-method is the "
                        "trt target's")
    g.add_argument("--int8-reduce-range", action="store_true",
                   help="ort-cpu: 7-bit weights, for x86 CPUs without VNNI (AVX2 only) if accuracy suffers")
    g.add_argument("--trt-version", default=None, metavar="X.Y.Z",
                   help="TensorRT version the legacy calibration.cache is for (default: the installed one, else 8.6.1)")


def add_precision_args(p: argparse.ArgumentParser) -> None:
    """The precision group of ``yolo-edge export``."""
    g = p.add_argument_group("precision (FP16 / INT8 ONNX, measured in ONNX Runtime)")
    g.add_argument("--fp16", action="store_true", help="also write <out>.fp16.onnx (FP16, FP32 I/O, keep-FP32 list)")
    g.add_argument("--int8", action="store_true",
                   help="also write <out>.int8.onnx (explicit Q/DQ), the FP16 model, calibration.cache and a report, "
                        "and print FP32/FP16/INT8 size, mAP and latency (default output dir runs/export/)")
    g.add_argument("--no-fp16", action="store_true", help="with --int8: skip the FP16 model")
    g.add_argument("--keep-fp32", action="append", default=[], metavar="NODE",
                   help="keep this node in FP32 in the FP16 model (repeatable)")
    add_calibration_args(p, val_default="synthetic:val")
    add_int8_args(p)


def config_from_args(args, out_dir: Path, name: str, *, fp16: bool, int8: bool):
    from .pipeline import PrecisionConfig

    if args.calib_images is not None and args.calib_images < 1:
        raise YoloEdgeError(f"--calib-images must be >= 1, got {args.calib_images}")
    return PrecisionConfig(
        out_dir=out_dir, name=name, fp16=fp16, int8=int8, calib=args.calib, calib_images=args.calib_images,
        val=args.val, val_images=args.val_images, method=args.calib_method, percentile=args.percentile,
        op_types=tuple(o.strip() for o in args.quantize_ops.split(",") if o.strip()),
        exclude=tuple(args.exclude), placement=getattr(args, "qdq_placement", "trt"), keep_fp32=tuple(getattr(args, "keep_fp32", []) or []),
        max_map_drop=args.max_map_drop if args.val else None, max_exclusions=args.max_exclusions,
        sensitivity=args.sensitivity, force_overlap=args.force_overlap, trt_version=args.trt_version,
        reuse_stats=not args.recalibrate, show_progress=not getattr(args, "quiet", False),
        int8_target=getattr(args, "int8_target", "trt"), int8_reduce_range=getattr(args, "int8_reduce_range", False),
        int8_cpu_method=getattr(args, "int8_cpu_method", None),
        head_guard=getattr(args, "int8_head_guard", HEAD_GUARD_SHARE),
        guard=getattr(args, "int8_guard", DEFAULT_GUARD),
        refine_images=getattr(args, "int8_refine", REFINE_IMAGES),
        weight_scale=getattr(args, "int8_weight_scale", DEFAULT_WEIGHT_SCALE),
        weight_rounding=getattr(args, "int8_weight_rounding", DEFAULT_WEIGHT_ROUNDING),
        shift=getattr(args, "int8_shift", DEFAULT_SHIFT))


def finish(result, t0: float) -> int:
    """Print the table, where the engines go, the report, and the verdict; return the exit code."""
    from .pipeline import engine_message, fmt_seconds

    print()
    print(result.table())
    if any(r.note for r in result.rows):
        for r in result.rows:
            if r.note:
                print(f"  {r.precision}: {r.note}")
    if any(r.map50_95 is not None for r in result.rows):
        print("mAP: ONNX Runtime CPU, graphs without NMS + reference NMS (score 0.001, IoU 0.6), ΔmAP in points "
              "vs FP32")
    print("latency: ONNX Runtime CPU, batch 1, model only. On a CPU use the int8-cpu model (--int8-target ort-cpu): "
          "ONNX Runtime fuses its Q/DQ into integer kernels. The int8 (TensorRT) and fp16 models are for TensorRT; "
          "ONNX Runtime's CPU provider runs them in float (not faster here)")
    for note in result.notes:
        print(f"note: {note}")
    by_reason: dict[str, list[str]] = {}  # one line per reason (the guard keeps several layers alike)
    for e in result.excluded:
        by_reason.setdefault(e["reason"], []).append(e["node"])
    for reason, nodes in by_reason.items():
        print(f"INT8: kept in higher precision: {', '.join(nodes)} — {reason}")
    for k in result.fp16_kept:
        print(f"FP16: kept in FP32: {k['node']} — {k['reason']}")
    print()
    for line in engine_message(result):
        print(line)
    written = [str(p) for k, p in result.paths.items() if k in ("fp16", "int8", "int8_fp32scales", "int8-cpu", "cache")]
    if written:
        print("wrote " + ", ".join(written))
    if result.report_dir is not None:
        print(f"report: {result.report_dir / 'report.html'}")
    print(f"total {fmt_seconds(time.perf_counter() - t0)}")
    if result.exit_code:
        where = f" — see {result.report_dir / 'report.html'}" if result.report_dir is not None else ""
        print(f"yolo-edge: INT8 mAP50-95 is {result.drop:.2f} points below FP32, over the --max-map-drop budget of "
              f"{result.max_map_drop:g}{where}", file=sys.stderr)
    return result.exit_code


# --- export --fp16 / --int8 ------------------------------------------------------------------------
def build_export(p: argparse.ArgumentParser) -> None:
    from ..export.cli import add_export_args

    add_export_args(p)
    add_precision_args(p)


def cmd_export(args) -> int:
    from ..export import cli as export_cli

    if not (args.fp16 or args.int8):
        return export_cli.cmd_export(args)
    t0 = time.perf_counter()
    if args.out is None:
        args.out = str(Path("runs/export") / "model.onnx")
    out = Path(args.out)
    if out.suffix.lower() != ".onnx":
        raise YoloEdgeError(f"--out must name the FP32 .onnx (the other files go next to it), got {out}")
    from ..preflight import check_precision_inputs

    for line in check_precision_inputs(args):  # calibration and validation data, before the export
        print(line, file=sys.stderr)
    fp32 = export_cli.run_export(args)  # FP32 ONNX with the requested NMS, imgsz, opset, ...
    cfg = config_from_args(args, out.parent, out.stem, fp16=args.fp16 or (args.int8 and not args.no_fp16),
                           int8=args.int8)
    from .pipeline import run_precision

    return finish(run_precision(fp32, cfg), t0)


# --- calibrate ---------------------------------------------------------------------------------
def build_calibrate(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="?", help="FP32 yolo-edge ONNX, or a checkpoint (.pt) to export first "
                                           "(default: the bundled checkpoint)")
    p.add_argument("--out-dir", "-o", default="runs/calibrate", help="output folder (default runs/calibrate)")
    p.add_argument("--imgsz", type=int, nargs="+", metavar="N", help="input size when exporting a checkpoint")
    p.add_argument("--fp16", action="store_true", help="also write the FP16 model (overflow check from the same pass)")
    p.add_argument("--keep-fp32", action="append", default=[], metavar="NODE", help="with --fp16: keep NODE in FP32")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    add_calibration_args(p, val_default=None)
    add_int8_args(p)


def cmd_calibrate(args) -> int:
    t0 = time.perf_counter()
    out_dir = Path(args.out_dir)
    model = Path(args.model) if args.model else None
    from ..preflight import check_output_dir, check_precision_inputs

    check_output_dir(out_dir, "--out-dir")
    if model is not None and not model.is_file():
        raise YoloEdgeError(f"model not found: {model}")
    for line in check_precision_inputs(args):  # before the export and the calibration
        print(line, file=sys.stderr)
    if model is None or model.suffix.lower() in (".pt", ".pth"):
        from ..export.onnx_export import export_onnx

        imgsz = (640, 640)
        if args.imgsz:
            imgsz = (args.imgsz[0], args.imgsz[-1])
        model = export_onnx(model, out_dir / "model.onnx", imgsz=imgsz, verbose=not args.quiet)
    elif not model.is_file():
        raise YoloEdgeError(f"model not found: {model}")
    elif model.suffix.lower() != ".onnx":
        raise YoloEdgeError(f"expected an FP32 .onnx or a .pt checkpoint, got {model}")
    cfg = config_from_args(args, out_dir, model.stem, fp16=args.fp16, int8=True)
    from .pipeline import run_precision

    return finish(run_precision(model, cfg), t0)


COMMANDS = [
    ("export", cmd_export,
     "export a checkpoint to ONNX with embedded NMS (--fp16/--int8: also FP16 and INT8 Q/DQ ONNX, report, table)",
     build_export),
    ("calibrate", cmd_calibrate,
     "INT8 calibration of an FP32 ONNX: Q/DQ model, per-layer report, TensorRT calibration cache",
     build_calibrate),
]
