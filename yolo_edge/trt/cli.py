"""``yolo-edge build`` (ONNX -> TensorRT engine + manifest) and ``yolo-edge inspect`` (per-layer
precision of an engine). Importing this module needs neither TensorRT nor onnx, so ``--help``
works everywhere; ``--print-trtexec`` needs onnx only."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import MissingDependency, YoloEdgeError


def config_from_args(args):
    from .build import BuildConfig

    tc = None if args.no_timing_cache else (args.timing_cache or "auto")
    return BuildConfig(onnx=Path(args.onnx), engine=Path(args.out) if args.out else None,
                       min_batch=args.min_batch, opt_batch=args.opt_batch, max_batch=args.max_batch,
                       workspace_mib=args.workspace, timing_cache=tc, calibration_cache=args.calib_cache,
                       dla_core=args.dla_core, gpu_fallback=not args.no_gpu_fallback, fp16_fallback=args.fp16_fallback,
                       tf32=args.tf32, opt_level=args.opt_level, inspect=not args.no_inspect, verbose=args.verbose)


def _target_version(args) -> str:
    if args.target_trt:
        return args.target_trt
    from ..deps import available

    if available("tensorrt"):
        from .compat import tensorrt

        return str(tensorrt().__version__)
    raise YoloEdgeError("TensorRT is not installed here: name the target's version for the trtexec line, e.g. "
                        "--target-trt 10.3 (JetPack 6) or --target-trt 8.6")


def cmd_build(args) -> int:
    from .build import adopt_engine, build, plan_build

    cfg = config_from_args(args)
    from ..modelfile import check_detector_io
    from .build import read_onnx

    info = read_onnx(cfg.onnx)  # a readable detector ONNX, before any TensorRT work
    check_detector_io(info.path, info.inputs, info.outputs)
    if args.print_trtexec:
        from .trtexec import trtexec_command

        plan = plan_build(cfg, _target_version(args))
        for note in plan.notes:
            print(f"# note: {note}")
        print(trtexec_command(plan, shell=True))
        print(f"# then, on the same machine, write the engine's manifest: {cfg.command()} --adopt")
        return 0
    try:
        if args.adopt:
            path = adopt_engine(cfg)
            print(f"wrote {path} for {cfg.engine} (built elsewhere, checked to deserialize here)")
            return 0
        build(cfg)
    except MissingDependency as e:
        if e.module.split(".")[0] != "tensorrt":
            raise
        raise YoloEdgeError(f"{e}; or print the trtexec command for the target device: yolo-edge build {cfg.onnx} "
                            "--print-trtexec --target-trt X.Y") from e
    return 0


def build_build(p) -> None:
    p.add_argument("onnx", help="yolo-edge ONNX: model.onnx (FP32), model.fp16.onnx or model.int8.onnx (Q/DQ)")
    p.add_argument("--out", "-o", help="engine file (default: the ONNX path with .engine)")
    g = p.add_argument_group("optimization profile (dynamic batch)")
    g.add_argument("--min-batch", type=int, default=None, help="smallest batch (default 1)")
    g.add_argument("--opt-batch", type=int, default=None, help="batch the kernels are tuned for (default: min)")
    g.add_argument("--max-batch", type=int, default=None, help="largest batch (default 8; 1 on DLA)")
    g = p.add_argument_group("builder")
    g.add_argument("--workspace", type=int, default=None, metavar="MiB", help="workspace limit (default: TensorRT's)")
    g.add_argument("--timing-cache", default=None, metavar="FILE",
                   help="timing cache read and updated by the build (default: timing.cache next to the engine)")
    g.add_argument("--no-timing-cache", action="store_true", help="build without a timing cache")
    g.add_argument("--calib-cache", default=None, metavar="FILE",
                   help="legacy implicit INT8 (TensorRT 8.6/10.x): calibration.cache for the FP32 ONNX, checked against "
                        "its .json key")
    g.add_argument("--fp16-fallback", action="store_true",
                   help="weakly typed INT8 builds (TensorRT 8.6, --calib-cache) may also use FP16 kernels")
    g.add_argument("--tf32", action="store_true", help="allow TF32 for FP32 layers (faster, ~1e-3 relative error)")
    g.add_argument("--opt-level", type=int, default=None, help="builder optimization level 0-5 (TensorRT default 3)")
    g.add_argument("--dla-core", type=int, default=None, help="Jetson: run on this DLA core (FP16/INT8 models)")
    g.add_argument("--no-gpu-fallback", action="store_true", help="with --dla-core: fail instead of running "
                                                                   "unsupported layers on the GPU")
    g.add_argument("--no-inspect", action="store_true", help="skip the per-layer report (<engine>.layers.json)")
    g.add_argument("--verbose", "-v", action="store_true", help="TensorRT log at INFO")
    g = p.add_argument_group("trtexec")
    g.add_argument("--print-trtexec", action="store_true",
                   help="print the equivalent trtexec command (trtexec ships with JetPack) and exit")
    g.add_argument("--target-trt", default=None, metavar="X.Y",
                   help="TensorRT version of the target for --print-trtexec (default: the installed one)")
    g.add_argument("--adopt", action="store_true",
                   help="write the manifest of --out, an engine built on this machine by trtexec from this ONNX")


def cmd_inspect(args) -> int:
    from .inspect import inspect_engine

    report = inspect_engine(args.engine)
    print(report.table(None if args.all else 40))
    print()
    print(report.summary())
    if args.json:
        from ..util import atomic_write

        with atomic_write(args.json, "w") as f:
            json.dump(report.to_dict(), f, indent=1)
        print(f"wrote {args.json}")
    return 0


def build_inspect(p) -> None:
    p.add_argument("engine", help="a TensorRT engine (needs TensorRT and its GPU) or its <engine>.layers.json")
    p.add_argument("--all", action="store_true", help="every layer (default: the first 40)")
    p.add_argument("--json", default=None, help="also write the report as JSON")


def cmd_check(args) -> int:
    from .readiness import TARGETS, check_onnx

    versions = TARGETS if args.trt == "all" else (args.trt,)
    reports = [check_onnx(args.onnx, v) for v in versions]
    for r in reports:
        print(r.text())
    if args.json:
        from ..util import atomic_write

        with atomic_write(args.json, "w") as f:
            json.dump([r.to_dict() for r in reports], f, indent=1)
        print(f"wrote {args.json}")
    return 0 if all(r.ok for r in reports) else 1


def build_check(p) -> None:
    p.add_argument("onnx", help="an ONNX model (yolo-edge export writes model.onnx, .fp16.onnx, .int8.onnx)")
    p.add_argument("--trt", default="all", choices=("8.6", "10", "11", "all"),
                   help="TensorRT version to check against (default: all three)")
    p.add_argument("--json", default=None, help="also write the findings as JSON")


def cmd_doctor(args) -> int:
    from .doctor import DoctorConfig, run_doctor

    cfg = DoctorConfig(out=Path(args.out), imgsz=args.imgsz, data=args.data, max_images=args.max_images,
                       precisions=tuple(args.precisions.split(",")), nms=tuple(args.nms.split(",")),
                       calib_images=args.calib_images, trtexec=not args.no_trtexec)
    report = run_doctor(cfg)
    print(report.markdown())
    print(f"wrote {report.json_path} and {report.md_path}")
    return report.exit_code


def build_doctor(p) -> None:
    p.add_argument("--out", default="runs/doctor", help="report folder (doctor.json, doctor.md, models, engines)")
    p.add_argument("--imgsz", type=int, default=320, help="export size of the bundled model (default 320)")
    p.add_argument("--data", default="synthetic:val",
                   help="labelled data for parity levels 2-3 (default synthetic:val)")
    p.add_argument("--max-images", type=int, default=32, help="images for parity (default 32)")
    p.add_argument("--precisions", default="fp32,fp16,int8", help="comma-separated (default fp32,fp16,int8)")
    p.add_argument("--nms", default="onnx,trt,none",
                   help="NMS flavours, comma-separated (default onnx,trt,none; none gives parity level 1)")
    p.add_argument("--calib-images", type=int, default=64, help="INT8 calibration images (default 64)")
    p.add_argument("--no-trtexec", action="store_true", help="skip the trtexec timing comparison")


COMMANDS = [
    ("build", cmd_build, "build a TensorRT engine (+ manifest, layer report) from a yolo-edge ONNX", build_build),
    ("inspect", cmd_inspect, "per-layer precision and format of a TensorRT engine (which layers run INT8)",
     build_inspect),
    ("check", cmd_check, "will TensorRT 8.6/10/11 parse this ONNX? operators x types, plugins, limits (no TensorRT "
     "needed)", build_check),
    ("doctor", cmd_doctor, "field self-test on the device: versions, plugins, FP32/FP16/INT8 builds of both NMS "
     "flavours, parity 1-3, runner vs trtexec timing; JSON + Markdown report", build_doctor),
]
