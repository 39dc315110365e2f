"""``yolo-edge bench``: FPS, latency per stage, memory, mAP and roofline per backend and precision.

No heavy import at module level: ``yolo-edge bench --help`` works on a numpy + OpenCV install.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

BACKEND_CHOICES = ("all", "torch", "torch-cuda", "ort-cpu", "ort-cuda", "ort-trt", "tensorrt", "reference",
                   "ultralytics")  # = results.BACKENDS + "all"


class _Default:
    """Argparse default of options whose default depends on --quick (argparse leaves non-strings alone)."""

    def __repr__(self) -> str:
        return "default"


DEFAULT = _Default()


def _non_negative_or(cast, words: tuple[str, ...], what: str):
    """An argparse type: a number >= 0 (``cast``), or one of ``words`` meaning ``None``."""

    def parse(v: str):
        if v.lower() in words:
            return None
        try:
            x = cast(v)
        except ValueError:
            x = -1
        if x < 0:
            raise argparse.ArgumentTypeError(f"expected {what} >= 0 or '{words[0]}', got {v!r}")
        return x

    return parse


_images = _non_negative_or(int, ("all", "none"), "a number of images")  # --val-images
_budget = _non_negative_or(float, ("none", "off"), "mAP points")  # --max-map-drop


def command_line(args) -> str:
    """The command that produced this run: the real command line when run as ``yolo-edge`` or
    ``benchmarks/bench.py``, else the equivalent ``yolo-edge bench`` with every option given."""
    env = " ".join(f"{k}={shlex.quote(os.environ[k])}" for k in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS",
                                                                  "CUDA_VISIBLE_DEVICES") if os.environ.get(k))
    prog = Path(sys.argv[0]).name if sys.argv else ""
    if prog == "bench.py":
        cmd = "python " + shlex.join([_rel(sys.argv[0]), *sys.argv[1:]])
    elif prog == "yolo-edge" and len(sys.argv) > 1 and sys.argv[1] == "bench":
        cmd = shlex.join(["yolo-edge", *sys.argv[1:]])
    else:
        parts = ["yolo-edge", "bench"]
        for k, v in sorted(vars(args).items()):
            if v is None and k in ("val_images", "max_map_drop"):  # given explicitly as all / none
                v = "all" if k == "val_images" else "none"
            if k in ("func", "command") or v is None or v is False or v is DEFAULT:
                continue
            flag = "--" + k.replace("_", "-")
            if v is True:
                parts.append(flag)
            elif isinstance(v, (list, tuple)):
                parts += [flag, *map(str, v)]
            else:
                parts += [flag, str(v)]
        cmd = shlex.join(parts)
    return f"{env} {cmd}" if env else cmd


def _rel(p: str) -> str:
    try:
        return str(Path(p).resolve().relative_to(Path.cwd()))
    except ValueError:
        return p


def config_from_args(args):
    from .run import BenchConfig, _UNSET

    backends = None if not args.backends or "all" in args.backends else tuple(args.backends)
    return BenchConfig(
        model=args.model, imgsz=tuple(args.imgsz) if args.imgsz else None, backends=backends,
        precisions=tuple(args.precisions), runs=args.runs, warmup=args.warmup,
        batch_sizes=tuple(args.batch_sizes) if args.batch_sizes else None, val=args.val,
        val_images=_UNSET if args.val_images is DEFAULT else args.val_images,
        timing_images=args.timing_images, calib=args.calib, calib_images=args.calib_images,
        max_map_drop=_UNSET if args.max_map_drop is DEFAULT else args.max_map_drop,
        onnx_dir=args.onnx_dir, work=args.work, out=args.out, out_dir=args.out_dir, quick=args.quick,
        isolate=not args.in_process, pipelined=not args.no_pipelined, roofline=not args.no_roofline,
        head_to_head=not args.no_head_to_head,
        threads=args.threads, command=command_line(args))


def cmd_bench(args) -> int:
    from .run import backend_status, run_bench

    if args.list:
        for name, why in backend_status().items():
            print(f"{name:<12} {'available' if why is None else 'not available: ' + why}")
        return 0
    result = run_bench(config_from_args(args))
    goal = result.goal or {}
    if goal.get("ratio") is not None:
        print(f"ONNX Runtime CPU FP32 end-to-end vs the reference PyTorch eager pipeline: {goal['ratio']:.2f}x "
              f"(goal >= {goal['target']:g}x: {'met' if goal['met'] else 'NOT met'})")
    print(f"report: {result.artifacts.get('report', {}).get('md')}")
    return 0 if all(r.status == "ok" for r in result.rows) else 1


def build_bench(p) -> None:
    p.add_argument("--model", "-m", default=None, help="yolo-edge checkpoint (default: the bundled yolo11n-synth.pt)")
    p.add_argument("--imgsz", type=int, nargs=2, metavar=("H", "W"), help="input size (default: the checkpoint's)")
    p.add_argument("--backends", nargs="+", choices=BACKEND_CHOICES, default=["all"], metavar="BACKEND",
                   help="rows to measure: " + ", ".join(BACKEND_CHOICES) + " (default all; those not available here "
                        "are listed as skipped with the reason)")
    p.add_argument("--precisions", nargs="+", choices=("fp32", "fp16", "int8", "int8-cpu"),
                   default=["fp32", "fp16", "int8", "int8-cpu"],
                   help="precisions of the ONNX Runtime / TensorRT rows (default all): int8 is the TensorRT-target "
                        "Q/DQ model, int8-cpu the ONNX Runtime CPU target (ort-cpu rows only); with Ultralytics "
                        "installed, an int8 precision adds its own INT8 ONNX export as a row")
    p.add_argument("--runs", type=int, default=None, help="timed iterations at batch 1 (default 100; quick 5)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up iterations (default 10; quick 2)")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=None, metavar="B",
                   help="batch sizes, the first is the latency batch (default 1 8; quick 1 4)")
    p.add_argument("--val", default="synthetic:val", help="labelled validation data (default synthetic:val, "
                                                          "disjoint from synthetic:calib)")
    p.add_argument("--val-images", type=_images, default=DEFAULT, metavar="N",
                   help="validation images for mAP (default all; quick 16; 0 = no accuracy)")
    p.add_argument("--timing-images", type=int, default=None, metavar="N",
                   help="validation images the timing loops cycle through (default 16; quick 4)")
    p.add_argument("--calib", default="synthetic:calib", help="INT8 calibration data when the INT8 model is made")
    p.add_argument("--calib-images", type=int, default=None, metavar="N", help="default 512; quick 16")
    p.add_argument("--max-map-drop", type=_budget, default=DEFAULT, metavar="POINTS",
                   help="INT8 mAP budget when the INT8 model is made (default 1.0 as yolo-edge export --int8; "
                        "quick: none)")
    p.add_argument("--onnx-dir", default=None, metavar="DIR",
                   help="reuse model.onnx / model.fp16.onnx / model.int8.onnx from here (e.g. runs/export after "
                        "python export/export.py --int8); missing ones are made there")
    p.add_argument("--work", default="runs/bench", help="cache of made models (default runs/bench)")
    p.add_argument("--out", default="benchmarks/results",
                   help="results root: the report goes to OUT/<device>/<date>/ (default benchmarks/results)")
    p.add_argument("--out-dir", default=None, help="write the report exactly here instead")
    p.add_argument("--quick", action="store_true",
                   help="small settings to check that everything runs (about 2-3 min on 2 CPU cores)")
    p.add_argument("--in-process", action="store_true",
                   help="run every row in this process (faster start; peak memory not comparable)")
    p.add_argument("--no-pipelined", action="store_true", help="skip the pipelined FPS column")
    p.add_argument("--no-roofline", action="store_true", help="skip the matmul probe and the GFLOP/s columns")
    p.add_argument("--no-head-to-head", action="store_true",
                   help="skip the interleaved timing of ORT CPU FP32 / PyTorch / reference / Ultralytics "
                        "(the goal ratio then comes from the separate rows)")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads of ONNX Runtime and PyTorch")
    p.add_argument("--list", action="store_true", help="list the backends and whether they can run here, then exit")


COMMANDS = [("bench", cmd_bench,
             "FPS, per-stage latency, memory, mAP and roofline for every backend x precision, vs the reference "
             "PyTorch pipeline", build_bench)]
