"""ONNX -> TensorRT engine + manifest (``yolo-edge build``).

    from yolo_edge.trt import BuildConfig, build
    result = build(BuildConfig("runs/export/model.int8.onnx", max_batch=8))
    print(result.engine, result.report.summary())

The precision lives in the ONNX graph (DESIGN §1): ``model.onnx`` (FP32), ``model.fp16.onnx`` and
``model.int8.onnx`` (explicit Q/DQ). What TensorRT is told depends on its version:

* TensorRT >= 10: a strongly typed network (``NetworkDefinitionCreationFlag.STRONGLY_TYPED`` on
  10.x; always on 11.x): every layer runs in the type the ONNX gives it, no precision flags.
* TensorRT 8.6: ``EXPLICIT_BATCH`` network, ``BuilderFlag.FP16`` for the FP16 ONNX,
  ``BuilderFlag.INT8`` for the Q/DQ ONNX (weak typing: TensorRT may pick other kernels where
  the ONNX does not pin the type; ``fp16_fallback`` adds FP16 to an INT8 build). Under weak typing
  layer types are hints, so an FP16 build sets ``OBEY_PRECISION_CONSTRAINTS`` and pins every layer
  the ONNX keeps in FP32 (the decode tail) with ``layer.precision`` / ``set_output_type``.
* DLA (Jetson): on 10.0-10.7 a weakly typed network with the FP16/INT8 flags DLA needs (a strongly
  typed network forbids them and its layers may fall back to the GPU silently); 10.8-11.3 have no
  DLA, 11.4.1+ only on AGX Orin with JetPack 7.2.2+ (:func:`~yolo_edge.trt.compat.dla_support`).
* Plugins: ``trt.init_libnvinfer_plugins`` before parsing (TensorRT 10/11's parser finds
  ``EfficientNMS_TRT`` only in the registry) and before deserializing (every version).
* The legacy implicit-INT8 path (TensorRT 8.6 and 10.x, deprecated in 10.1, removed in 11): the
  FP32 ONNX plus ``calibration.cache``, read by an ``IInt8*Calibrator`` that never sees images
  (the cache's key is checked against the ONNX first, DESIGN §4).

Every build uses an optimization profile for a dynamic batch axis (min/opt/max), an optional
workspace limit, a timing cache on disk (one TensorRT rejects, from another version or GPU, is
replaced by a new one), ``ProfilingVerbosity.DETAILED`` (for the inspector
report) and, on Jetson, optionally a DLA core with GPU fallback. TF32 is disabled unless asked for,
so that FP32 layers compute in FP32 (parity with ONNX Runtime, DESIGN §6).

:func:`plan_build` decides all of this without TensorRT; :func:`build` applies the plan to the
TensorRT API and :func:`~yolo_edge.trt.trtexec.trtexec_command` writes it as a trtexec line, so the
two agree by construction.
"""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..deps import require
from ..errors import ModelFormatError, YoloEdgeError
from ..spec import ModelSpec
from ..util import atomic_write, sha256_file
from .compat import TrtVersion, init_plugins, make_logger, tensorrt

CALIBRATORS = {  # cache header algorithm -> calibrator class (TensorRT Python API, Int8 section)
    "EntropyCalibration2": "IInt8EntropyCalibrator2",
    "EntropyCalibration": "IInt8EntropyCalibrator",
    "MinMaxCalibration": "IInt8MinMaxCalibrator",
}
DEFAULT_TIMING_CACHE = "timing.cache"


@dataclass
class BuildConfig:
    """What to build.

    Attributes:
        onnx: the yolo-edge ONNX (FP32, FP16 or INT8 Q/DQ; ``yolo-edge export``).
        engine: output engine (default: the ONNX path with ``.engine``).
        min_batch, opt_batch, max_batch: optimization profile of a dynamic batch axis (default
            1/1/8; 1/1/1 on DLA). A static-batch ONNX takes its own batch.
        workspace_mib: builder workspace limit in MiB (None: TensorRT's default, the device memory).
        timing_cache: timing cache file, read and updated by every build ("auto": ``timing.cache``
            next to the engine; None: no cache).
        calibration_cache: legacy implicit-INT8 calibration cache (TensorRT 8.6/10.x) for the FP32
            ONNX, with its ``.json`` key from ``yolo-edge export --int8``.
        dla_core: run on this DLA core (Jetson); layers DLA cannot run go to the GPU unless
            ``gpu_fallback`` is False.
        fp16_fallback: weakly typed INT8 builds (8.6, implicit INT8) may also use FP16 kernels.
        tf32: allow TF32 for FP32 layers (faster on Ampere+, ~1e-3 relative error).
        opt_level: ``builder_optimization_level`` 0-5 (TensorRT default 3).
        inspect: write ``<engine>.layers.json`` (per-layer precision and format) after the build.
        verbose: TensorRT log at INFO.
    """

    onnx: Path
    engine: Path | None = None
    min_batch: int | None = None
    opt_batch: int | None = None
    max_batch: int | None = None
    workspace_mib: int | None = None
    timing_cache: Path | str | None = "auto"
    calibration_cache: Path | None = None
    dla_core: int | None = None
    gpu_fallback: bool = True
    fp16_fallback: bool = False
    tf32: bool = False
    opt_level: int | None = None
    inspect: bool = True
    verbose: bool = False

    def __post_init__(self):
        self.onnx = Path(self.onnx)
        self.engine = Path(self.engine) if self.engine else self.onnx.with_suffix(".engine")
        if self.calibration_cache is not None:
            self.calibration_cache = Path(self.calibration_cache)
        for name in ("min_batch", "opt_batch", "max_batch"):
            v = getattr(self, name)
            if v is not None and int(v) < 1:
                raise YoloEdgeError(f"{name.replace('_', '-')} must be >= 1, got {v}")
        if self.workspace_mib is not None and int(self.workspace_mib) < 1:
            raise YoloEdgeError(f"workspace must be >= 1 MiB, got {self.workspace_mib}")
        if self.opt_level is not None and not 0 <= int(self.opt_level) <= 5:
            raise YoloEdgeError(f"builder optimization level must be 0..5, got {self.opt_level}")
        if self.dla_core is not None and int(self.dla_core) < 0:
            raise YoloEdgeError(f"DLA core must be >= 0, got {self.dla_core}")

    @property
    def timing_cache_path(self) -> Path | None:
        if self.timing_cache in (None, "", False):
            return None
        if self.timing_cache == "auto":
            return self.engine.parent / DEFAULT_TIMING_CACHE
        return Path(self.timing_cache)

    def command(self) -> str:
        """The ``yolo-edge build`` command line that repeats this build."""
        args = ["yolo-edge", "build", str(self.onnx), "--out", str(self.engine)]
        for flag, v in (("--min-batch", self.min_batch), ("--opt-batch", self.opt_batch),
                        ("--max-batch", self.max_batch), ("--workspace", self.workspace_mib),
                        ("--calib-cache", self.calibration_cache), ("--dla-core", self.dla_core),
                        ("--opt-level", self.opt_level)):
            if v is not None:
                args += [flag, str(v)]
        if self.timing_cache is None:
            args.append("--no-timing-cache")
        elif self.timing_cache != "auto":
            args += ["--timing-cache", str(self.timing_cache)]
        if self.dla_core is not None and not self.gpu_fallback:
            args.append("--no-gpu-fallback")
        if self.fp16_fallback:
            args.append("--fp16-fallback")
        if self.tf32:
            args.append("--tf32")
        return shlex.join(args)


@dataclass(frozen=True)
class OnnxInfo:
    """What the build needs to know about the ONNX, read without TensorRT."""

    path: Path
    sha256: str
    spec: ModelSpec | None
    inputs: tuple[tuple[str, tuple], ...]  # (name, shape with None for dynamic axes)
    outputs: tuple[str, ...]
    n_qdq: int  # QuantizeLinear + DequantizeLinear nodes
    has_fp16: bool  # float16 initializers or casts to float16

    @property
    def precision(self) -> str:
        if self.n_qdq:
            return "int8"
        if self.spec is not None:
            return self.spec.precision
        return "fp16" if self.has_fp16 else "fp32"


def read_onnx(path) -> OnnxInfo:
    """Inputs, outputs, yolo-edge metadata and precision markers of an ONNX file."""
    path = Path(path)
    if not path.is_file():
        raise YoloEdgeError(f"ONNX model not found: {path}")
    onnx = require("onnx")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # onnx raises DecodeError and friends
        raise ModelFormatError(f"{path} is not a readable ONNX model: {e}") from e
    from ..modelfile import check_onnx_proto
    from ..spec import METADATA_KEY

    check_onnx_proto(model, path)

    meta = {p.key: p.value for p in model.metadata_props}
    spec = ModelSpec.from_json(meta[METADATA_KEY]) if METADATA_KEY in meta else None
    inits = {i.name for i in model.graph.initializer}

    def shape_of(vi):
        dims = vi.type.tensor_type.shape.dim
        return tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in dims)

    inputs = tuple((i.name, shape_of(i)) for i in model.graph.input if i.name not in inits)
    fp16 = onnx.TensorProto.FLOAT16
    has_fp16 = any(i.data_type == fp16 for i in model.graph.initializer) or any(
        n.op_type == "Cast" and any(a.name == "to" and a.i == fp16 for a in n.attribute) for n in model.graph.node)
    n_qdq = sum(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node)
    return OnnxInfo(path, sha256_file(path), spec, inputs, tuple(o.name for o in model.graph.output), n_qdq, has_fp16)


@dataclass
class BuildPlan:
    """Everything :func:`build` tells TensorRT, decided from the config, the ONNX and the version."""

    config: BuildConfig
    onnx: OnnxInfo
    version: TrtVersion
    precision: str  # fp32 | fp16 | int8
    mode: str  # strongly-typed | builder-flags | implicit-int8
    network_flags: list[str]
    builder_flags: list[str]
    cleared_flags: list[str]
    profile: dict[str, dict[str, list[int]]]  # input -> {"min", "opt", "max"}; empty for static shapes
    calibration: dict | None = None  # implicit INT8: cache path, algorithm, key; else the ONNX's record
    notes: list[str] = field(default_factory=list)

    @property
    def strongly_typed(self) -> bool:
        return self.mode == "strongly-typed"

    def to_dict(self) -> dict[str, Any]:
        c = self.config
        return {"tensorrt_target": str(self.version), "mode": self.mode, "network_flags": self.network_flags,
                "builder_flags": self.builder_flags, "cleared_flags": self.cleared_flags,
                "workspace_mib": c.workspace_mib, "timing_cache": str(c.timing_cache_path) if c.timing_cache_path
                else None, "dla_core": c.dla_core, "gpu_fallback": c.gpu_fallback if c.dla_core is not None else None,
                "tf32": c.tf32, "opt_level": c.opt_level, "command": c.command(), "notes": list(self.notes)}


def _batches(cfg: BuildConfig) -> tuple[int, int, int]:
    default_max = 1 if cfg.dla_core is not None else 8
    mn = int(cfg.min_batch or 1)
    mx = int(cfg.max_batch or max(default_max, mn))
    opt = int(cfg.opt_batch or mn)
    if not mn <= opt <= mx:
        raise YoloEdgeError(f"batch profile must satisfy min <= opt <= max, got {mn}/{opt}/{mx}")
    return mn, opt, mx


def _profile(cfg: BuildConfig, info: OnnxInfo) -> dict[str, dict[str, list[int]]]:
    profile = {}
    for name, shape in info.inputs:
        if not shape:
            raise ModelFormatError(f"{info.path}: input '{name}' has no shape")
        if any(d is None for d in shape[1:]):
            raise ModelFormatError(f"{info.path}: input '{name}' has dynamic spatial axes {shape}; export with a "
                                   "fixed size (yolo-edge export --imgsz H W)")
        if shape[0] is not None:  # static batch
            asked = [v for v in (cfg.min_batch, cfg.opt_batch, cfg.max_batch) if v is not None]
            if any(int(v) != shape[0] for v in asked):
                raise YoloEdgeError(f"{info.path} has a static batch of {shape[0]}; re-export with a dynamic batch "
                                    "(yolo-edge export --dynamic) to build other batch sizes")
            continue
        mn, opt, mx = _batches(cfg)
        rest = [int(d) for d in shape[1:]]
        profile[name] = {"min": [mn, *rest], "opt": [opt, *rest], "max": [mx, *rest]}
    return profile


def plan_build(cfg: BuildConfig, version, info: OnnxInfo | None = None) -> BuildPlan:
    """Decide network flags, builder flags and profile for TensorRT ``version`` (no TensorRT
    needed). Raises :class:`YoloEdgeError` for a combination that version cannot build."""
    version = version if isinstance(version, TrtVersion) else TrtVersion.parse(version)
    version.require_supported()
    info = info or read_onnx(cfg.onnx)
    notes: list[str] = []
    builder_flags: list[str] = []
    calibration = None
    spec_prec = info.spec.precision if info.spec is not None else None
    if info.n_qdq and spec_prec in ("fp32", "fp16"):
        notes.append(f"the metadata says {spec_prec} but the graph has {info.n_qdq} Q/DQ nodes: building INT8")
    if spec_prec == "int8" and not info.n_qdq and cfg.calibration_cache is None:
        raise ModelFormatError(f"{info.path} says int8 in its metadata but has no QuantizeLinear/DequantizeLinear "
                               "nodes; re-export it with `yolo-edge export --int8`")

    if cfg.calibration_cache is not None:  # legacy implicit INT8
        if not version.calibrators:
            raise YoloEdgeError(
                f"TensorRT {version} removed implicit INT8 calibration (IInt8Calibrator, BuilderFlag.INT8): build the "
                f"explicit Q/DQ model instead, e.g. `yolo-edge build {info.path.parent / (info.path.stem + '.int8.onnx')}` "
                "(written by `yolo-edge export --int8`)")
        if info.n_qdq or info.precision != "fp32":
            raise YoloEdgeError(f"a calibration cache goes with the FP32 ONNX; {info.path} is already {info.precision}"
                                " (its precision is in the graph): build it without --calib-cache")
        calibration = _check_calibration_cache(cfg.calibration_cache, info, version)
        precision, mode = "int8", "implicit-int8"
        network_flags = ["EXPLICIT_BATCH"] if version.explicit_batch_flag else []
        builder_flags = ["INT8"] + (["FP16"] if cfg.fp16_fallback else [])
        if version.major >= 10:
            notes.append("implicit INT8 calibration is deprecated since TensorRT 10.1 and removed in 11; prefer the "
                         "explicit Q/DQ model (model.int8.onnx)")
    else:
        precision = info.precision
        dla_weak = cfg.dla_core is not None and version.major == 10 and precision != "fp32"
        if version.strongly_typed and not dla_weak:
            mode = "strongly-typed"
            network_flags = ["STRONGLY_TYPED"] if version.strongly_typed_flag else []
            if cfg.fp16_fallback:
                notes.append(f"--fp16-fallback ignored: TensorRT {version} builds a strongly typed network, the "
                             "precision is the ONNX's")
        else:
            mode = "builder-flags"
            network_flags = ["EXPLICIT_BATCH"] if version.explicit_batch_flag else []
            if precision == "fp16":
                builder_flags = ["FP16"]
            elif precision == "int8":
                builder_flags = ["INT8"] + (["FP16"] if cfg.fp16_fallback or dla_weak else [])
            if dla_weak:
                # DLA runs only what the FP16/INT8 builder flags allow ("Working with DLA", TensorRT 10.x);
                # a strongly typed network forbids those flags, and its layers may silently fall back to
                # the GPU. So DLA builds on 10.x use the (deprecated, still present) weakly typed path.
                notes.append(f"DLA on TensorRT {version}: weakly typed network with builder flags "
                             f"{'+'.join(builder_flags)} (a strongly typed network cannot target DLA precisions)")
            if precision == "fp16":
                notes.append("FP16 with weak typing: the FP32 layers of the ONNX are pinned to FP32 "
                             "(OBEY_PRECISION_CONSTRAINTS)")
                builder_flags.append("OBEY_PRECISION_CONSTRAINTS")
        calibration = _onnx_calibration_record(info)

    if cfg.dla_core is not None:
        from .compat import dla_support

        ok, why = dla_support(version)
        if not ok:
            raise YoloEdgeError(why)
        if why:
            notes.append(why)
        if precision == "fp32":
            raise YoloEdgeError("DLA runs FP16 and INT8 only: build the FP16 or INT8 ONNX for DLA "
                                "(yolo-edge export --fp16 / --int8)")
        if cfg.gpu_fallback:
            builder_flags.append("GPU_FALLBACK")
    cleared = [] if cfg.tf32 else ["TF32"]
    return BuildPlan(cfg, info, version, precision, mode, network_flags, builder_flags, cleared,
                     _profile(cfg, info), calibration, notes)


def _onnx_calibration_record(info: OnnxInfo) -> dict | None:
    """The calibration data hash the precision job wrote into the ONNX metadata (FP16/INT8)."""
    extra = (info.spec.extra if info.spec is not None else {}) or {}
    cal = (extra.get("precision") or {}).get("calibration") if isinstance(extra.get("precision"), dict) else None
    if not cal:
        return None
    keep = ("data_sha256", "images", "source", "cache_key", "stats_key")
    return {"kind": "onnx-metadata", **{k: cal[k] for k in keep if k in cal}}


def _check_calibration_cache(path: Path, info: OnnxInfo, version: TrtVersion) -> dict:
    """Refuse a cache made for another ONNX or TensorRT version; return its manifest record."""
    from ..precision.cache import StaleCacheError, parse_trt_cache, read_key, sidecar, trt_version_tag

    if not path.is_file():
        raise YoloEdgeError(f"calibration cache not found: {path}")
    key = read_key(path)
    if key is None:
        raise StaleCacheError(f"{path} has no readable key file {sidecar(path).name}: its origin is unknown, so it is "
                              "not used; write it with `yolo-edge export --int8`")
    if key.onnx_sha256 != info.sha256:
        raise StaleCacheError(f"{path} was calibrated on another ONNX (sha256 {key.onnx_sha256[:12]}, "
                              f"{info.path.name} is {info.sha256[:12]}); recalibrate with `yolo-edge export --int8`")
    text = path.read_text()
    header, scales = parse_trt_cache(text)
    parts = header.split("-", 2)
    algorithm = parts[2] if len(parts) == 3 else ""
    if algorithm not in CALIBRATORS:
        raise YoloEdgeError(f"{path}: calibrator '{algorithm}' is not supported; use {', '.join(CALIBRATORS)}")
    want = trt_version_tag(version.short)
    if parts[1] != want:
        raise StaleCacheError(f"{path} was written for TensorRT tag {parts[1]} but this is TensorRT {version} "
                              f"(tag {want}); TensorRT ignores such a cache. Rewrite it for this version: "
                              f"yolo-edge export --int8 --trt-version {version.short}")
    meta = json.loads(sidecar(path).read_text())
    return {"kind": "calibration-cache", "cache": str(path), "cache_sha256": sha256_file(path),
            "algorithm": algorithm, "calibrator": CALIBRATORS[algorithm], "tensors": len(scales),
            "key": key.key, "data_sha256": key.images_sha256, "images": key.n_images,
            "preprocessing": key.preprocessing, "method": meta.get("method")}


def _calibrator(trt, cache: bytes, algorithm: str):
    """An INT8 calibrator that only replays ``cache`` (never gets a batch).

    The class must subclass TensorRT's calibrator type, so it is defined here, after importing
    TensorRT (STYLE: no TensorRT import at module level)."""
    base = getattr(trt, CALIBRATORS[algorithm])

    class CacheCalibrator(base):  # type: ignore[misc, valid-type]
        def __init__(self):
            base.__init__(self)
            self.cache = cache

        def get_batch_size(self):
            return 1

        def get_batch(self, names):
            return None  # no data: everything comes from the cache

        def read_calibration_cache(self):
            return self.cache

        def write_calibration_cache(self, cache):
            return None

    return CacheCalibrator()


@dataclass
class BuildResult:
    engine: Path
    manifest: Path
    plan: BuildPlan
    seconds: float
    layers: Path | None = None
    report: Any = None  # EngineReport
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"built {self.engine} ({self.plan.precision}, {self.plan.mode}, TensorRT {self.plan.version}) "
                 f"in {self.seconds:.1f} s; manifest {self.manifest.name}"]
        if self.report is not None:
            lines.append(f"layers: {self.report.summary()}" + (f" (details: {self.layers})" if self.layers else ""))
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _parser_errors(parser) -> list[str]:
    out = []
    for i in range(parser.num_errors):
        e = parser.get_error(i)
        try:
            where = f" (node {e.node()})" if e.node() >= 0 else ""
            out.append(f"{e.desc()}{where}")
        except (AttributeError, TypeError):
            out.append(str(e))
    return out


def build(cfg: BuildConfig, *, trt=None, env: dict | None = None, cuda=None, log=print) -> BuildResult:
    """Build the engine of ``cfg`` and write it, its manifest and its layer report.

    Args:
        trt: the ``tensorrt`` module (default: imported; tests pass a fake).
        env: the environment recorded in the manifest (default: :func:`current_environment`).
        cuda: CUDA backend for the environment (GPU name, CUDA version); default: the installed one.
        log: progress lines (None: quiet).
    """
    from .inspect import engine_information, layers_path, parse_engine_information
    from .manifest import current_environment, make_manifest, write_manifest

    t0 = time.perf_counter()
    trt = trt or tensorrt()
    version = TrtVersion.of(trt)
    plan = plan_build(cfg, version)
    say = log or (lambda *_: None)
    notes = list(plan.notes)
    say(f"build: {cfg.onnx} -> {cfg.engine} ({plan.precision}, {plan.mode}, TensorRT {version})")

    logger = make_logger(trt, cfg.verbose)
    # before parsing: 10/11's parser finds EfficientNMS_TRT only in the registry
    init_plugins(trt, logger, required=plan.onnx.spec is not None and plan.onnx.spec.nms.flavour == "trt")
    builder = trt.Builder(logger)
    flags = 0
    for name in plan.network_flags:
        flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(cfg.onnx)):
        errors = _parser_errors(parser)
        raise ModelFormatError(f"TensorRT {version} cannot parse {cfg.onnx}: " + "; ".join(errors or ["unknown error"]))

    if "OBEY_PRECISION_CONSTRAINTS" in plan.builder_flags:
        pinned = pin_fp32_layers(network, trt)
        say(f"build: {pinned} FP32 layers of the ONNX pinned to FP32")
    config = builder.create_builder_config()
    if cfg.workspace_mib is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(cfg.workspace_mib) << 20)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    for name in plan.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    for name in plan.cleared_flags:
        config.clear_flag(getattr(trt.BuilderFlag, name))
    if cfg.opt_level is not None:
        config.builder_optimization_level = int(cfg.opt_level)

    profile = None
    if plan.profile:
        profile = builder.create_optimization_profile()
        for name, s in plan.profile.items():
            profile.set_shape(name, tuple(s["min"]), tuple(s["opt"]), tuple(s["max"]))
        config.add_optimization_profile(profile)

    if plan.mode == "implicit-int8":
        cache = Path(plan.calibration["cache"]).read_bytes()
        config.int8_calibrator = _calibrator(trt, cache, plan.calibration["algorithm"])
        if profile is not None:
            config.set_calibration_profile(profile)

    if cfg.dla_core is not None:
        if int(builder.num_DLA_cores) <= int(cfg.dla_core):
            have = int(builder.num_DLA_cores)
            raise YoloEdgeError(f"DLA core {cfg.dla_core} does not exist: this device has {have} DLA core(s)"
                                + (" (DLA exists on Jetson AGX/NX Xavier and Orin)" if have == 0 else ""))
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(cfg.dla_core)

    tc_path = cfg.timing_cache_path
    timing_cache = None
    if tc_path is not None:
        blob = tc_path.read_bytes() if tc_path.is_file() else b""
        timing_cache = config.create_timing_cache(blob)
        if timing_cache is None:  # createTimingCache returns nullptr for a blob it rejects
            notes.append(f"timing cache {tc_path} was rejected by TensorRT {version} (another version or GPU, or "
                         "corrupt); starting a new one")
            say(f"build: {notes[-1]}")
            blob = b""
            timing_cache = config.create_timing_cache(b"")
            if timing_cache is None:
                raise YoloEdgeError(f"TensorRT {version} could not create an empty timing cache; build with "
                                    "--no-timing-cache")
        if not config.set_timing_cache(timing_cache, False):
            notes.append(f"timing cache {tc_path} was made by another TensorRT or GPU; starting a new one")
            timing_cache = config.create_timing_cache(b"")
            config.set_timing_cache(timing_cache, False)
        elif blob:
            say(f"build: timing cache {tc_path} ({len(blob)} bytes)")

    say("build: building (minutes for a large model; the timing cache makes the next build faster)")
    plan_bytes = builder.build_serialized_network(network, config)
    if plan_bytes is None:
        raise YoloEdgeError(f"TensorRT {version} could not build {cfg.onnx} (see its log above; --verbose shows more)")
    data = bytes(plan_bytes)
    with atomic_write(cfg.engine, "wb") as f:
        f.write(data)
    if tc_path is not None:
        with atomic_write(tc_path, "wb") as f:
            f.write(bytes(config.get_timing_cache().serialize()))

    report = layers = None
    if cfg.inspect:
        try:
            runtime = trt.Runtime(logger)
            engine = runtime.deserialize_cuda_engine(data)  # plugins registered above
            if engine is None:
                raise YoloEdgeError("the engine just built does not deserialize")
            opt = {n: s["opt"] for n, s in plan.profile.items()}
            text = engine_information(engine, trt, opt or None)
            report = parse_engine_information(text)
            layers = layers_path(cfg.engine)
            with atomic_write(layers, "w") as f:
                f.write(text if isinstance(text, str) else json.dumps(text))
        except (YoloEdgeError, RuntimeError, OSError) as e:
            notes.append(f"no layer report: {e}")

    env = env if env is not None else current_environment(trt, cuda)
    seconds = time.perf_counter() - t0
    from .trtexec import trtexec_command

    build_record = {**plan.to_dict(), "seconds": round(seconds, 2), "trtexec": trtexec_command(plan, shell=True)}
    manifest = make_manifest(engine_path=cfg.engine, onnx_path=cfg.onnx, onnx_sha256=plan.onnx.sha256,
                             spec=plan.onnx.spec, precision=plan.precision, mode=plan.mode,
                             profile=_profile_record(plan), environment=env, build=build_record,
                             calibration=plan.calibration)
    if report is not None:
        manifest["layers"] = {"file": layers.name if layers else None, "counts": report.counts()}
    mpath = write_manifest(cfg.engine, manifest)
    result = BuildResult(cfg.engine, mpath, plan, seconds, layers, report, notes)
    say(result.summary())
    return result


def fp32_node_names(onnx_path) -> list[str]:
    """Names of the ONNX nodes whose outputs are all float32 (the layers a weakly typed FP16 build
    pins to FP32; the trtexec line lists them in ``--layerPrecisions``/``--layerOutputTypes``)."""
    onnx = require("onnx")
    model = onnx.load(str(onnx_path))
    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception:  # pragma: no cover - odd graph: the build pins from TensorRT's own types
        pass
    g = model.graph
    types = {vi.name: vi.type.tensor_type.elem_type for vi in (*g.input, *g.output, *g.value_info)}
    f32 = onnx.TensorProto.FLOAT
    return [n.name for n in g.node if n.name and n.output and n.op_type not in ("Constant", "Shape")
            and all(types.get(o) == f32 for o in n.output)]


def pin_fp32_layers(network, trt) -> int:
    """Weak typing (TensorRT 8.6): pin every layer whose outputs are FP32 in the ONNX to FP32
    (``layer.precision`` + ``set_output_type``), so that ``BuilderFlag.FP16`` does not run the FP32
    decode tail in FP16; with ``OBEY_PRECISION_CONSTRAINTS`` TensorRT must follow them (without it
    the types are hints). Returns the number of layers pinned."""
    skip = {getattr(trt.LayerType, n, None) for n in ("CONSTANT", "SHAPE", "ASSERTION")}
    fp32 = trt.DataType.FLOAT
    pinned = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.type in skip or layer.num_outputs == 0:
            continue
        if all(layer.get_output(j).dtype == fp32 for j in range(layer.num_outputs)):
            layer.precision = fp32
            for j in range(layer.num_outputs):
                layer.set_output_type(j, fp32)
            pinned += 1
    return pinned


def _profile_record(plan: BuildPlan) -> dict:
    if plan.profile:
        return plan.profile
    return {name: {"static": [int(d) for d in shape]} for name, shape in plan.onnx.inputs}


def build_engine(onnx, engine=None, **options) -> Path:
    """Build ``onnx`` into ``engine`` (default: ``.engine`` next to it); returns the engine path.
    ``options`` are :class:`BuildConfig` fields."""
    return build(BuildConfig(Path(onnx), engine, **options)).engine


def adopt_engine(cfg: BuildConfig, *, env: dict | None = None, trt=None, cuda=None) -> Path:
    """Write the manifest of an engine built on this machine by other means (trtexec), after
    checking that this TensorRT deserializes it. Returns the manifest path."""
    from .manifest import current_environment, make_manifest, write_manifest

    if not cfg.engine.is_file():
        raise YoloEdgeError(f"engine not found: {cfg.engine}")
    trt = trt or tensorrt()
    version = TrtVersion.of(trt)
    plan = plan_build(cfg, version)
    logger = make_logger(trt)
    init_plugins(trt, logger, required=False)  # an EfficientNMS engine deserializes only with them registered
    engine = trt.Runtime(logger).deserialize_cuda_engine(cfg.engine.read_bytes())
    if engine is None:
        raise YoloEdgeError(f"TensorRT {version} cannot deserialize {cfg.engine}: it was built by another TensorRT "
                            "version or for another GPU; rebuild it here")
    from .trtexec import trtexec_command

    env = env if env is not None else current_environment(trt, cuda)
    build_record = {**plan.to_dict(), "adopted": True, "trtexec": trtexec_command(plan, shell=True)}
    manifest = make_manifest(engine_path=cfg.engine, onnx_path=cfg.onnx, onnx_sha256=plan.onnx.sha256,
                             spec=plan.onnx.spec, precision=plan.precision, mode=plan.mode,
                             profile=_profile_record(plan), environment=env, build=build_record,
                             calibration=plan.calibration)
    return write_manifest(cfg.engine, manifest)
