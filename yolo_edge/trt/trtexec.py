"""The trtexec command line equivalent to a ``yolo-edge build`` (trtexec ships with JetPack).

Flags per TensorRT version (NVIDIA: "Command-Line Programs / trtexec", the 8.x→10.x trtexec
migration page and the 10.x→11.x trtexec migration page):

* ``--memPoolSize=workspace:<MiB>`` replaces ``--workspace=<MiB>`` (deprecated in 8.4, removed in
  10); a size without a suffix is in MiB.
* ``--minShapes/--optShapes/--maxShapes=<input>:<d0>x<d1>x...`` for the dynamic batch profile.
* ``--timingCacheFile=<file>`` reads and updates the timing cache.
* precision: 8.6 ``--fp16`` (FP16 ONNX, with ``--precisionConstraints=obey`` and the ONNX's FP32
  layers in ``--layerPrecisions``/``--layerOutputTypes``) / ``--int8`` (Q/DQ ONNX); 10.x ``--stronglyTyped``
  (DLA on 10.0-10.7: ``--fp16``/``--int8``, weakly typed);
  11.x nothing ("--stronglyTyped is no longer needed: it is always enabled", and ``--fp16``,
  ``--int8``, ``--best``, ``--calib`` are removed). Legacy implicit INT8: ``--int8
  --calib=<cache>`` (8.6 and 10.x only), for EntropyCalibration2 caches only: trtexec's
  calibrator is always an ``IInt8EntropyCalibrator2``.
* ``--noTF32`` unless TF32 was asked for (the build clears ``BuilderFlag.TF32``). Not in the 11.x
  removal list, so kept there too (unverified on 11.x).
* DLA: ``--useDLACore=<n>`` and ``--allowGPUFallback``.
* ``--builderOptimizationLevel=<n>`` (8.6+), ``--profilingVerbosity=detailed`` and
  ``--exportLayerInfo=<engine>.layers.json`` (read by ``yolo-edge inspect``).

trtexec writes no manifest: ``yolo-edge build MODEL.onnx --out ENGINE --adopt`` writes it
afterwards on the same machine.
"""

from __future__ import annotations

import shlex

from ..errors import YoloEdgeError
from .compat import TrtVersion

# trtexec's calibrator (RndInt8Calibrator) is an IInt8EntropyCalibrator2 (NVIDIA/TensorRT v8.6.1 and v10.3.0
# samples/common/sampleEngines.cpp); a cache of another algorithm does not match its header and is ignored.
TRTEXEC_CALIBRATION = "EntropyCalibration2"


def _shape(dims) -> str:
    return "x".join(str(int(d)) for d in dims)


def trtexec_command(plan, shell: bool = False):
    """The trtexec arguments for a :class:`~yolo_edge.trt.build.BuildPlan` (a list, or one
    shell-quoted line with ``shell=True``)."""
    from .inspect import layers_path

    cfg = plan.config
    v: TrtVersion = plan.version
    args = ["trtexec", f"--onnx={cfg.onnx}", f"--saveEngine={cfg.engine}"]
    if plan.profile:
        for key, flag in (("min", "--minShapes"), ("opt", "--optShapes"), ("max", "--maxShapes")):
            args.append(f"{flag}=" + ",".join(f"{name}:{_shape(s[key])}" for name, s in plan.profile.items()))
    if cfg.workspace_mib is not None:
        args.append(f"--memPoolSize=workspace:{int(cfg.workspace_mib)}")
    if cfg.timing_cache_path is not None:
        args.append(f"--timingCacheFile={cfg.timing_cache_path}")
    if plan.mode == "implicit-int8":
        algo = plan.calibration.get("algorithm")
        if algo != TRTEXEC_CALIBRATION:
            raise YoloEdgeError(
                f"trtexec calibrates with IInt8EntropyCalibrator2 only (NVIDIA/TensorRT samples/common/sampleEngines.cpp"
                f", RndInt8Calibrator), so it would ignore this {algo} cache and calibrate on random data: build with "
                f"`{cfg.command()}` instead, or use an EntropyCalibration2 cache (yolo-edge export --int8 writes one)")
        args += ["--int8", f"--calib={plan.calibration['cache']}"]
        if "FP16" in plan.builder_flags:
            args.append("--fp16")
    elif plan.mode == "strongly-typed":
        if v.strongly_typed_flag:
            args.append("--stronglyTyped")
    else:
        if "FP16" in plan.builder_flags:
            args.append("--fp16")
        if "INT8" in plan.builder_flags:
            args.append("--int8")
        if "OBEY_PRECISION_CONSTRAINTS" in plan.builder_flags:  # weak typing: pin the ONNX's FP32 layers
            from .build import fp32_node_names

            names = fp32_node_names(cfg.onnx)
            args.append("--precisionConstraints=obey")
            if names:
                args += ["--layerPrecisions=" + ",".join(f"{n}:fp32" for n in names),
                         "--layerOutputTypes=" + ",".join(f"{n}:fp32" for n in names)]
    if "TF32" in plan.cleared_flags:
        args.append("--noTF32")
    if cfg.dla_core is not None:
        args.append(f"--useDLACore={int(cfg.dla_core)}")
        if cfg.gpu_fallback:
            args.append("--allowGPUFallback")
    if cfg.opt_level is not None:
        args.append(f"--builderOptimizationLevel={int(cfg.opt_level)}")
    args += ["--profilingVerbosity=detailed", f"--exportLayerInfo={layers_path(cfg.engine)}"]
    if cfg.verbose:
        args.append("--verbose")
    return shlex.join(args) if shell else args
