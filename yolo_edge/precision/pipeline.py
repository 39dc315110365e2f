"""The precision job: FP32 ONNX -> FP16 and INT8 ONNX, calibration report, TensorRT legacy cache,
and an accuracy/speed table measured in ONNX Runtime (``yolo-edge export --int8``).

    from yolo_edge.precision import PrecisionConfig, run_precision
    result = run_precision("runs/export/model.onnx", PrecisionConfig(out_dir="runs/export"))
    print(result.table())

Steps (each printed with its time, long ones with a progress bar):

1. strip NMS from the FP32 graph and find the decode tail (kept in higher precision);
2. hash the calibration and validation images; refuse an overlap (``force_overlap`` to override);
3. one calibration pass (or reuse ``calibration.stats.npz`` when its key still matches);
4. INT8 ranges from the calibration method; INT8 weight levels rounded by GPTQ on
   ``rounding_images`` calibration images (``precision/rounding.py``, PyTorch); the guard's layers
   kept FP16 within ``head_guard`` of the convolution FLOPs, chosen by their measured effect on the
   full INT8 model's outputs (``sensitivity.sensitive_guard``, ONNX Runtime); the ranges refined
   end to end on ``refine_images`` calibration images against FP32's boxes and scores, through
   those weights, from the calibrated ranges (the shifted grids' from ``qdq.shifted_start``)
   (``precision/refine.py``, PyTorch); the INT8 Q/DQ graph;
   FP16 graph with the keep-FP32 list and the overflow check;
5. mAP of FP32, FP16 and INT8 on the validation images, all three the same way: graphs without
   NMS, then the numpy reference NMS with the evaluation thresholds (``VAL_NMS``: score 0.001,
   IoU 0.6, 300 per image), so that the embedded NMS thresholds do not cap mAP;
6. the paired image-bootstrap 90 % interval of the INT8 ΔmAP (``bootstrap`` resamples); when it is
   wider than the budget (or the validation set has fewer than 50 images) a loud warning, and the
   exclusion loop is not run (it would follow noise). Otherwise, when INT8 loses more than
   ``max_map_drop`` points: rank layers by their own output noise-to-signal ratio (one inference
   per image ranks them all) and exclude them one at a time (no recalibration) until within budget;
7. NMS added back to the FP16/INT8 graphs (same flavour and thresholds as the FP32 export), with
   ``precision`` and ``extra["precision"]`` metadata (excluded nodes with reasons, calibration
   method and data hash); the TensorRT legacy cache with its key; the report (JSON/HTML/PNG);
8. latency: ONNX Runtime CPU, batch 1, model only (``session.run`` on a letterboxed image), p50.

``PrecisionResult.exit_code`` is 2 when the INT8 drop exceeds the budget (the CLI returns it).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..deps import available, require
from ..errors import ModelFormatError, YoloEdgeError
from .cache import DEFAULT_TRT_VERSION, CacheKey, preprocessing_of, read_key, write_cache
from .calibration import (DEFAULT_CALIB_IMAGES, DEFAULT_METHOD, DEFAULT_PERCENTILE, HIST_BINS, SAMPLES_PER_IMAGE,
                          STATS_VERSION, CalibrationStats, ImageSet, check_disjoint, collect_stats, data_hash)
from .int8 import DEFAULT_OP_TYPES, DEFAULT_PLACEMENT, Int8Config
from .qdq import DEFAULT_SHIFT, DEFAULT_WEIGHT_SCALE, HEAD_GUARD_SHARE, head_guard, shifted_tensors
from .sensitivity import DEFAULT_GUARD, GUARDS
from .refine import REFINE_IMAGES
from .rounding import DEFAULT_WEIGHT_ROUNDING, ROUNDING_IMAGES, WEIGHT_ROUNDINGS

BUDGET_EXIT_CODE = 2
FP16_RANGE_IMAGES = 32  # calibration images for the FP16 overflow check when no INT8 model is made


@dataclass
class PrecisionConfig:
    """Settings of :func:`run_precision` (the CLI maps its flags onto these).

    Attributes:
        out_dir: where ``<name>.fp16.onnx``, ``<name>.int8.onnx``, ``calibration.cache``(+``.json``),
            ``calibration.stats.npz`` and ``report/`` go.
        name: stem of the output files (default: the FP32 ONNX's stem).
        fp16, int8: which precisions to produce.
        calib: calibration data (folder, dataset, video, ``synthetic:calib``); ``calib_images`` of it.
        val: labelled validation data for mAP (None: no accuracy columns, no budget check).
        val_images: how many validation images (None: all).
        method, percentile, op_types, exclude, placement: INT8 settings
            (:class:`~yolo_edge.precision.int8.Int8Config`); with ``placement="trt"`` two INT8 files are
            written: ``<name>.int8.onnx`` (FP16 graph, FP16 scales: TensorRT >= 10, strongly typed) and
            ``<name>.int8.fp32scales.onnx`` (FP32 graph, FP32 scales, the same quantization: TensorRT 8.6
            and ONNX Runtime, which measures the accuracy).
        keep_fp32: node names kept FP32 in the FP16 model (besides the defaults).
        max_map_drop: INT8 mAP50-95 budget in points below FP32 (None: no budget).
        max_exclusions: evaluations the budget loop may spend.
        int8_target: ``trt`` (``<name>.int8.onnx``, Q/DQ for TensorRT), ``ort-cpu``
            (``<name>.int8-cpu.onnx``, Q/DQ that ONNX Runtime fuses into integer kernels on a CPU) or ``both``.
        int8_reduce_range: for ``ort-cpu``, 7-bit weights (x86 CPUs without VNNI).
        int8_cpu_method: calibration method of the ``ort-cpu`` target (``method`` is the TensorRT
            target's); None: with validation data, percentile, minmax and entropy are tried and the
            most accurate kept (``precision/cpu_target.py``); without, percentile.
        head_guard: ``trt`` target: the FLOP share of the quantized layers the guard may keep FP16
            (0: off; at most 0.05 meets issue 12's floor of 95 % INT8).
        guard: ``trt`` target: which layers that share keeps FP16. ``sensitive`` (the default): those
            whose exclusion lowers the full INT8 model's output loss against FP32 most per FLOP,
            measured on ``GUARD_IMAGES`` calibration images
            (:func:`~yolo_edge.precision.sensitivity.sensitive_guard`); ``head``: the finest-resolution
            prediction convs (:func:`~yolo_edge.precision.qdq.head_guard`).
        weight_scale: ``trt`` placement: each weight channel's scale, ``mse`` (the clipping with the
            least squared error of its INT8 weights) or ``max`` (max|w| / 127); see
            :func:`~yolo_edge.precision.qdq.quantize_weight`.
        weight_rounding: ``trt`` placement: ``gptq`` (each layer's INT8 weights rounded to lower its
            output error on the first ``rounding_images`` calibration images,
            :func:`~yolo_edge.precision.rounding.gptq_weights`; the default; needs PyTorch, else
            nearest with a note) or ``nearest``.
        rounding_images: calibration images the ``gptq`` rounding gathers layer inputs from.
        shift: ``trt`` placement: which activations with a static lower bound get an INT8 grid moved
            over their range (``all``, ``unpadded``, ``off``;
            :func:`~yolo_edge.precision.qdq.shift_activations`).
        refine_images: ``trt`` target: calibration images on which the activation ranges are refined
            end to end against FP32's outputs (:func:`~yolo_edge.precision.refine.refine_amax`; 0: off,
            the calibration method's ranges are used as they are).
        sensitivity: ``auto`` (rank layers only when over budget), ``always`` or ``never``.
        sensitivity_images: calibration images used to rank layers.
        bootstrap: image-bootstrap resamples for the confidence interval of the INT8 ΔmAP (0: none).
        sensitivity_map_top: with ``always`` and a validation set, the ΔmAP of excluding each of
            this many top-ranked layers alone is measured too.
        report_images: calibration images used for the SQNR measurements.
        force_overlap: proceed when calibration and validation images overlap.
        trt_version: TensorRT version the legacy cache is written for (header ``TRT-<tag>-...``).
        reuse_stats: reuse ``calibration.stats.npz`` when its key matches.
    """

    out_dir: str | Path = "runs/export"
    name: str | None = None
    fp16: bool = True
    int8: bool = True
    calib: str = "synthetic:calib"
    calib_images: int | None = DEFAULT_CALIB_IMAGES
    val: str | None = "synthetic:val"
    val_images: int | None = None
    method: str = DEFAULT_METHOD
    percentile: float = DEFAULT_PERCENTILE
    op_types: tuple[str, ...] = DEFAULT_OP_TYPES
    exclude: tuple[str, ...] = ()
    placement: str = DEFAULT_PLACEMENT
    keep_fp32: tuple[str, ...] = ()
    max_map_drop: float | None = 1.0
    max_exclusions: int = 6
    sensitivity: str = "auto"
    sensitivity_images: int = 4
    bootstrap: int = 100
    sensitivity_map_top: int = 3
    report_images: int = 4
    force_overlap: bool = False
    trt_version: str | None = None
    reuse_stats: bool = True
    batch: int = 2
    latency_runs: int = 20
    show_progress: bool = True
    build_engines: bool = True
    int8_target: str = "trt"  # trt | ort-cpu | both (precision/int8_cpu.py)
    int8_reduce_range: bool = False  # ort-cpu: 7-bit weights for x86 CPUs without VNNI
    int8_cpu_method: str | None = None  # ort-cpu calibration method (None: int8_cpu.CPU_DEFAULT_METHOD)
    head_guard: float = HEAD_GUARD_SHARE  # trt target: FLOP share the guard may keep FP16 (0: off)
    guard: str = DEFAULT_GUARD  # trt target: which layers the guard keeps FP16: sensitive | head
    weight_scale: str = DEFAULT_WEIGHT_SCALE  # trt placement: per-channel weight scales, mse | max
    weight_rounding: str = DEFAULT_WEIGHT_ROUNDING  # trt placement: gptq | nearest
    rounding_images: int = ROUNDING_IMAGES  # calibration images gptq gathers layer inputs from
    refine_images: int = REFINE_IMAGES  # trt target: images to refine the ranges on against FP32's outputs (0: off)
    shift: str = DEFAULT_SHIFT  # trt placement: activation grids moved over [lower bound, amax]: all | unpadded | off

    def int8_config(self, exclude: Sequence[str] = ()) -> Int8Config:
        return Int8Config(method=self.method, percentile=self.percentile, op_types=tuple(self.op_types),
                          exclude=tuple(self.exclude) + tuple(exclude), placement=self.placement,
                          weight_scale=self.weight_scale, shift=self.shift)


@dataclass
class Row:
    precision: str
    path: str
    size_mb: float
    map50_95: float | None = None
    map50: float | None = None
    delta_map50_95: float | None = None  # points (0..100 scale), negative = worse than FP32
    latency_ms: float | None = None
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class PrecisionResult:
    """What :func:`run_precision` produced."""

    rows: list[Row]
    paths: dict[str, Path]
    report_dir: Path | None
    within_budget: bool | None
    drop: float | None
    max_map_drop: float | None
    seconds: float
    excluded: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    fp16_kept: list[dict] = field(default_factory=list)  # FP32 nodes beyond the decode tail (overflow, requested)

    @property
    def exit_code(self) -> int:
        return BUDGET_EXIT_CODE if self.within_budget is False else 0

    def table(self) -> str:
        head = ["precision", "file MB", "mAP50-95", "mAP50", "ΔmAP50-95", "ORT CPU p50 ms"]
        rows = []
        for r in self.rows:
            rows.append([r.precision, f"{r.size_mb:.2f}",
                         "—" if r.map50_95 is None else f"{100 * r.map50_95:.2f}",
                         "—" if r.map50 is None else f"{100 * r.map50:.2f}",
                         "—" if r.delta_map50_95 is None else (f"{r.delta_map50_95:+.2f}" if r.precision != "fp32"
                                                                 else "0 (ref)"),
                         "—" if r.latency_ms is None else f"{r.latency_ms:.1f}"])
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
        line = "  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(head, widths)))
        out = [line, "-" * len(line)]
        for r in rows:
            out.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
        return "\n".join(out)


class _Subset:
    """The validation images actually evaluated (spread over the dataset)."""

    def __init__(self, ds, indices):
        self.ds, self.indices = ds, list(indices)
        self.names = tuple(getattr(ds, "names", ()))

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        return self.ds[self.indices[i]]


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class _Stage:
    def __init__(self, name: str, verbose: bool = True):
        self.name, self.verbose, self.detail = name, verbose, ""

    def __enter__(self):
        self.t = time.perf_counter()
        return self

    def __exit__(self, exc_type, *exc):
        if exc_type is None and self.verbose:
            extra = f" ({self.detail})" if self.detail else ""
            _log(f"{self.name:<12} {time.perf_counter() - self.t:6.1f} s{extra}")
        return False


def default_trt_version() -> str:
    """The installed TensorRT's version, else :data:`~yolo_edge.precision.cache.DEFAULT_TRT_VERSION`."""
    if available("tensorrt"):
        try:
            return str(require("tensorrt").__version__)
        except Exception:  # a broken TensorRT install must not stop the CPU path
            pass
    return DEFAULT_TRT_VERSION


def _save(model, path: Path) -> Path:
    onnx = require("onnx")
    from ..util import atomic_path

    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp))
    return path


def _with_spec(model, spec):
    from ..export.metadata import set_metadata

    set_metadata(model, spec)
    return model


def evaluate_onnx(path, dataset, batch: int = 8, desc: str = "val", keep: bool = False):
    """mAP of a graph without NMS: ONNX Runtime CPU, numpy NMS with ``VAL_NMS``. With ``keep``,
    ``(result, evaluator)``: the evaluator holds the per-image detections (for the bootstrap)."""
    from ..evaluate.bootstrap import collect
    from ..evaluate.validate import VAL_NMS
    from ..runtime import Detector
    from ..runtime.ort_runner import OrtRunner

    runner = OrtRunner(path, providers="cpu")
    with Detector(runner, nms=VAL_NMS, max_batch=batch) as det:
        ev = collect(det, dataset, batch=batch, desc=desc)
    return (ev.compute(), ev) if keep else ev.compute()


MIN_VAL_IMAGES = 50  # fewer validation images than this: ΔmAP is rarely resolved to 1 point


def measurement_noise(fp32_ev, int8_ev, budget: float | None, n: int = 100) -> dict:
    """How well the validation set measures the INT8 ΔmAP: its paired image-bootstrap 90 % interval,
    and whether that is too wide for ``budget`` (half-width above the budget, or fewer than
    :data:`MIN_VAL_IMAGES` images), with the warning to print; and the INT8 model's agreement with
    FP32's own detections (:func:`~yolo_edge.evaluate.bootstrap.agreement`, mAP50-95 0..1), which
    does not depend on which changes happen to hit labelled objects."""
    from ..evaluate.bootstrap import agreement, paired_bootstrap

    b = paired_bootstrap([fp32_ev, int8_ev], n=n)
    lo, hi = b.interval(1, 0)
    half = (hi - lo) / 2.0
    images = fp32_ev.n_images
    too = budget is not None and (half > budget or images < MIN_VAL_IMAGES)
    agree = agreement(int8_ev, fp32_ev).compute().map50_95
    out = {"images": images, "delta": b.delta(1, 0), "ci90": [lo, hi], "half_width": half, "resamples": n,
           "too_noisy": bool(too), "agreement_map50_95": agree,
           "summary": f"ΔmAP50-95 {b.delta(1, 0):+.2f}, 90 % CI {lo:+.2f} … {hi:+.2f} ({images} images, {n} resamples)"
                      f"; agreement with FP32 detections {100 * agree:.1f}"}
    if too:
        out["warning"] = (f"{images} validation images measure the INT8 ΔmAP50-95 only to ±{half:.2f} points "
                          f"(90 % bootstrap interval {lo:+.2f} … {hi:+.2f}), "
                          + (f"wider than the --max-map-drop budget of {budget:g}" if half > budget
                             else f"and fewer than {MIN_VAL_IMAGES} images")
                          + ": the budget decision follows noise; give more validation images (--val, --val-images)"
                          " or a larger budget")
    return out


def latency_ms(path, x: np.ndarray, runs: int = 20, warmup: int = 3) -> float:
    """p50 of ``session.run`` on one input (ONNX Runtime CPU, model only)."""
    from .calibration import ort_session

    sess = ort_session(Path(path))
    name = sess.get_inputs()[0].name
    for _ in range(warmup):
        sess.run(None, {name: x})
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        sess.run(None, {name: x})
        times.append(time.perf_counter() - t)
    return 1000.0 * float(np.median(times))


def stats_key(onnx_sha: str, letterbox, hashes: Sequence[str]) -> CacheKey:
    return CacheKey(onnx_sha, preprocessing_of(letterbox), data_hash(hashes), len(hashes),
                    {"stats": STATS_VERSION, "bins": HIST_BINS, "samples_per_image": SAMPLES_PER_IMAGE})


def load_or_collect_stats(model, images: ImageSet, letterbox, sampled: Sequence[str], key: CacheKey, path: Path,
                          reuse: bool = True, batch: int = 2, show_progress: bool = True,
                          log: Callable[[str], None] = _log) -> tuple[CalibrationStats, bool]:
    """Calibration statistics from ``path`` when its key equals ``key`` (and it covers ``sampled``),
    else from a new pass (then saved with its key). Returns ``(stats, reused)``."""
    if reuse and path.is_file():
        found = read_key(path)
        if found is not None and found.key == key.key:
            stats = CalibrationStats.load(path)
            if set(sampled) <= set(stats.histogrammed()):
                return stats, True
        elif found is not None:
            log(f"  {path.name} was made for a different {', '.join(found.differences(key))}: recalibrating")
    stats = collect_stats(model, images, letterbox, sampled=sampled, batch=batch, show_progress=show_progress)
    stats.save(path)
    from ..util import atomic_write

    with atomic_write(path.with_name(path.name + ".json"), "w") as f:
        json.dump(key.to_dict(), f, indent=1, sort_keys=True)
    return stats, False


def run_precision(fp32_onnx, cfg: PrecisionConfig | None = None) -> PrecisionResult:
    """Run the precision job on an FP32 yolo-edge ONNX (see the module doc)."""
    cfg = cfg or PrecisionConfig()
    onnx = require("onnx")
    from ..export.metadata import get_spec
    from ..export.nms import add_nms
    from ..spec import NmsSpec
    from ..util import sha256_file
    from .fp16 import convert_fp16
    from .graph import copy_model, find_decode_tail, fixed_batch, float_activations, prepare, strip_nms
    from .int8 import activation_inputs, activation_scales, qdq_layers, quantizable_nodes, quantize_qdq

    t_start = time.perf_counter()
    verbose = cfg.show_progress
    if cfg.int8_target not in ("trt", "ort-cpu", "both"):
        raise YoloEdgeError(f"int8 target must be trt, ort-cpu or both, got {cfg.int8_target!r}")
    make_trt = cfg.int8 and cfg.int8_target in ("trt", "both")
    make_cpu = cfg.int8 and cfg.int8_target in ("ort-cpu", "both")
    if cfg.guard not in GUARDS:
        raise YoloEdgeError(f"guard must be {' or '.join(GUARDS)}, got {cfg.guard!r}")
    if cfg.weight_rounding not in WEIGHT_ROUNDINGS:
        raise YoloEdgeError(f"weight rounding must be {' or '.join(WEIGHT_ROUNDINGS)}, got {cfg.weight_rounding!r}")
    if cfg.sensitivity not in ("auto", "always", "never"):
        raise YoloEdgeError(f"sensitivity must be auto, always or never, got {cfg.sensitivity!r}")
    fp32_path = Path(fp32_onnx)
    if not fp32_path.is_file():
        raise YoloEdgeError(f"ONNX model not found: {fp32_path}")
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = cfg.name or fp32_path.stem
    notes: list[str] = []
    paths: dict[str, Path] = {"fp32": fp32_path}

    # 1. graph ---------------------------------------------------------------------------------
    with _Stage("prepare", verbose) as st:
        src = onnx.load(str(fp32_path))
        spec = get_spec(src)
        if spec is None:
            raise ModelFormatError(f"{fp32_path} has no yolo_edge metadata: export it with `yolo-edge export`")
        if spec.precision != "fp32":
            raise ModelFormatError(f"{fp32_path} is already {spec.precision}: start from the FP32 export")
        raw = prepare(strip_nms(src))
        tail = find_decode_tail(raw)
        nodes = quantizable_nodes(raw, cfg.op_types, exclude=set(tail.nodes) | set(cfg.exclude))
        unknown = [n for n in (*cfg.exclude, *cfg.keep_fp32) if n not in {x.name for x in raw.graph.node}]
        if unknown:
            raise YoloEdgeError(f"no node named {unknown[0]!r} in {fp32_path} (see report.json for node names)")
        if cfg.placement == "conv":
            acts = activation_inputs(raw, nodes)
        else:  # TensorRT placement: weighted-layer inputs, residual Add inputs, MaxPool inputs
            from .qdq import qdq_sites

            acts = {t: [n for n, _ in uses] for t, uses in qdq_sites(raw, cfg.int8_config(), tail.nodes).items()}
        # the guard keeps layers FP16 within cfg.head_guard of the FLOPs: the finest-resolution prediction
        # convs (head), or the layers measured to matter most per FLOP (sensitive: chosen after calibration)
        guarded = make_trt and cfg.placement == "trt" and cfg.head_guard > 0
        guard = head_guard(raw, tail.head, nodes, cfg.head_guard) if guarded and cfg.guard == "head" else []
        nodes = [n for n in nodes if n not in guard]
        chosen = None  # sensitivity.GuardChoice of the sensitive guard

        rounded = None  # RoundingResult once the weights are rounded (gptq)

        def icfg(extra: Sequence[str] = ()) -> Int8Config:
            return dataclasses.replace(cfg.int8_config([*guard, *extra]),
                                       int8_weights=rounded.weights if rounded is not None else None)

        sampled = list(acts) if cfg.int8 else []
        if make_cpu:
            from .cpu_target import cpu_tensors

            sampled = list(dict.fromkeys([*sampled, *cpu_tensors(raw, tail.nodes, cfg.exclude)]))
        fb = fixed_batch(raw)
        onnx_sha = sha256_file(fp32_path)
        st.detail = f"{len(raw.graph.node)} nodes, decode tail {len(tail.nodes)}, {len(nodes)} layers to quantize"

    # 2. data ----------------------------------------------------------------------------------
    with _Stage("data", verbose) as st:
        calib = ImageSet(cfg.calib, cfg.calib_images)
        if not cfg.int8:  # FP16 only needs the overflow check: exact min/max of every tensor on a few images
            calib = calib.head(FP16_RANGE_IMAGES)
        calib_hashes = calib.hashes(desc="hash calib" if verbose else None)
        val_ds = None
        if cfg.val:
            val = ImageSet(cfg.val, cfg.val_images)
            val_hashes = val.hashes(desc="hash val" if verbose else None)
            overlap = check_disjoint(calib_hashes, val_hashes, force=cfg.force_overlap,
                                     calib_name=f"calibration ({cfg.calib})", eval_name=f"validation ({cfg.val})")
            if overlap:
                notes.append(f"{len(overlap)} calibration images overlap the validation set (--force-overlap)")
            val_ds = _Subset(val.dataset, val.indices)
            if not getattr(val.dataset, "names", ()):
                raise YoloEdgeError(f"validation data {cfg.val} has no labels: give a labelled dataset or --val none")
        st.detail = (f"{len(calib)} calibration images ({cfg.calib})"
                     + (f", {len(val_ds)} validation images ({cfg.val}), disjoint" if val_ds is not None else ""))

    # 3. calibration ---------------------------------------------------------------------------
    stats_path = out_dir / "calibration.stats.npz"
    key = stats_key(onnx_sha, spec.letterbox, calib_hashes)
    with _Stage("calibrate", verbose) as st:
        stats, reused = load_or_collect_stats(raw, calib, spec.letterbox, sampled, key, stats_path,
                                              reuse=cfg.reuse_stats, batch=cfg.batch, show_progress=verbose)
        st.detail = (f"reused {stats_path.name} (same key)" if reused
                     else f"{stats.n_images} images, {len(stats.tensors)} tensors, {stats.seconds:.1f} s")
    calib_info = {"source": cfg.calib, "images": stats.n_images, "data_sha256": stats.data_hash,
                  "letterbox": preprocessing_of(spec.letterbox), "stats_key": key.key,
                  "calibration_seconds": round(stats.seconds, 2), "reused": reused}

    tmp = tempfile.TemporaryDirectory(prefix="yolo_edge_prec_")
    tmpdir = Path(tmp.name)
    eval_spec = spec.replace(nms=NmsSpec(flavour="none"))

    def eval_copy(model, precision: str) -> Path:
        return _save(_with_spec(copy_model(model), eval_spec.replace(precision=precision)),
                     tmpdir / f"{precision}.onnx")

    # 4. conversions ---------------------------------------------------------------------------
    fp16_res = None
    qdq = None
    excluded: list[dict] = [{"node": n, "reason": "decode tail (kept FP32: DFL, anchors, sigmoid, NMS inputs)"}
                            for n in tail.nodes]
    excluded += [{"node": n, "reason": "requested (--exclude)"} for n in cfg.exclude]
    auto_choice = None
    if cfg.int8 and cfg.method == "auto":
        from .sensitivity import auto_amax

        with _Stage("auto", verbose) as st:
            batches = list(calib.head(cfg.sensitivity_images).batches(spec.letterbox, fb or 1, fixed=fb is not None))
            amax, auto_choice = auto_amax(raw, stats, lambda a: quantize_qdq(raw, a, icfg(), tail.nodes),
                                          acts, batches, percentile=cfg.percentile)
            counts = {m: list(auto_choice.values()).count(m) for m in dict.fromkeys(auto_choice.values())}
            st.detail = "per tensor: " + ", ".join(f"{m} {k}" for m, k in counts.items())
    else:
        amax = stats.amax(cfg.method, cfg.percentile, names=acts)
    lower = {}  # the tensors on shifted grids (qdq.shift_activations) and their lower bounds
    higher = {*guard, *cfg.exclude}  # layers kept in higher precision: their inputs are not quantized for them
    if make_trt and cfg.placement == "trt":
        from .qdq import shift_bounds, shifted_start

        def bounds(higher):  # the shifted grids' lower bounds, for the sites still read by an INT8 layer
            return shift_bounds(raw, {t: [c for c in cs if c not in higher] for t, cs in acts.items()
                                      if t in amax and any(c not in higher for c in cs)}, cfg.shift)

        lower = bounds(higher)
    refined = None
    calibrated_amax = amax
    if make_trt and cfg.placement == "trt" and cfg.weight_rounding == "gptq" and cfg.rounding_images > 0:
        rounded = _round_weights(raw, nodes, calib, cfg, spec, fb, notes, verbose)
    if guarded and cfg.guard == "sensitive":
        from .sensitivity import GUARD_IMAGES, sensitive_guard

        with _Stage("guard", verbose) as st:
            start = shifted_start(amax, lower, stats.absmax()) if lower else amax
            batches = list(calib.head(GUARD_IMAGES).batches(spec.letterbox, fb or 1, fixed=fb is not None))
            chosen = sensitive_guard(raw, quantize_qdq(raw, start, icfg(), tail.nodes), batches, nodes,
                                     cfg.head_guard, show_progress=verbose)
            guard = chosen.nodes
            nodes = [n for n in nodes if n not in guard]
            higher = {*guard, *cfg.exclude}
            lower = bounds(higher)
            st.detail = chosen.summary()
    if cfg.guard == "head":
        excluded += [{"node": n, "reason": f"head guard: finest-resolution prediction layer kept FP16 (--int8-guard "
                                           f"head, --int8-head-guard {cfg.head_guard:g}: at most "
                                           f"{100 * cfg.head_guard:g} % of the weighted-layer FLOPs)"} for n in guard]
    else:
        excluded += [{"node": n, "reason": f"guard: kept FP16, the layers whose FP16 lowers the INT8 model's output "
                                           f"loss against FP32 most per FLOP (--int8-guard sensitive, at most "
                                           f"{100 * cfg.head_guard:g} % of the convolution FLOPs)",
                      "output_loss_gain": chosen.gain[n], "flop_share": chosen.share[n]} for n in guard]
    if lower:  # the shifted grids start higher (qdq.shifted_start): the calibrated ranges, and the refinement's start
        amax = calibrated_amax = shifted_start(amax, lower, stats.absmax())
    if make_trt and cfg.refine_images > 0:
        amax, refined = _refine(raw, acts, amax, nodes, higher, calib, cfg, spec, fb, notes, verbose,
                                icfg().int8_weights, lower)
    if cfg.fp16:
        with _Stage("fp16", verbose) as st:
            fp16_res = convert_fp16(raw, stats.absmax(), tail=tail.nodes, keep_fp32=cfg.keep_fp32)
            st.detail = (f"{len(fp16_res.kept)} nodes kept FP32"
                         + (f", {len(fp16_res.overflow)} overflow-risk tensors" if fp16_res.overflow else ""))
    if make_trt:
        with _Stage("int8", verbose) as st:
            qdq = quantize_qdq(raw, amax, icfg(), tail.nodes)
            n_q = sum(layer.op_type in cfg.op_types for layer in qdq_layers(qdq).values())
            st.detail = f"{n_q} layers quantized (Q/DQ), method {cfg.method}"

    # 5. accuracy ------------------------------------------------------------------------------
    results: dict[str, object] = {}
    eval_paths = {"fp32": eval_copy(raw, "fp32")}
    if fp16_res is not None:
        eval_paths["fp16"] = eval_copy(fp16_res.model, "fp16")
    if qdq is not None:
        eval_paths["int8"] = eval_copy(qdq, "int8")
    evaluators: dict[str, object] = {}
    if val_ds is not None:
        for prec, p in eval_paths.items():
            with _Stage(f"mAP {prec}", verbose) as st:
                results[prec], evaluators[prec] = evaluate_onnx(p, val_ds, desc=f"val {prec}", keep=True)
                st.detail = f"mAP50-95 {100 * results[prec].map50_95:.2f}, mAP50 {100 * results[prec].map50:.2f}"
    noise = None
    if "int8" in evaluators and cfg.bootstrap > 0:
        with _Stage("bootstrap", verbose) as st:
            noise = measurement_noise(evaluators["fp32"], evaluators["int8"], cfg.max_map_drop, cfg.bootstrap)
            st.detail = noise["summary"]
        if noise["too_noisy"]:
            notes.append(noise["warning"])
            _log(f"WARNING: {noise['warning']}")

    cpu = None
    if make_cpu:  # quantize, evaluate and hold to the budget in one step (precision/cpu_target.py)
        from .cpu_target import run_cpu_target
        from .int8_cpu import CPU_DEFAULT_METHOD

        with _Stage("int8-cpu", verbose) as st:
            cpu = run_cpu_target(
                raw, tail, stats, method=cfg.int8_cpu_method or (None if val_ds is not None else CPU_DEFAULT_METHOD),
                percentile=cfg.percentile,
                exclude=cfg.exclude,
                reduce_range=cfg.int8_reduce_range, fp32_result=results.get("fp32"),
                evaluate=(lambda m: evaluate_onnx(eval_copy(m, "int8"), val_ds, desc="val int8-cpu"))
                if val_ds is not None else None,
                max_map_drop=cfg.max_map_drop, max_exclusions=cfg.max_exclusions, sensitivity=cfg.sensitivity,
                sensitivity_batches=lambda: list(calib.head(cfg.sensitivity_images).batches(
                    spec.letterbox, fb or 1, fixed=fb is not None)), show_progress=verbose, log=_log if verbose else None)
            eval_paths["int8-cpu"] = eval_copy(cpu.model, "int8")
            if cpu.result is not None:
                results["int8-cpu"] = cpu.result
            st.detail = (f"{len(cpu.info['quantized_layers'])} layers quantized, {cpu.info['ort_integer_ops']} "
                         f"integer ops after ONNX Runtime fusion"
                         + (f", mAP50-95 {100 * cpu.result.map50_95:.2f}" if cpu.result is not None else "")
                         + (f", {len(cpu.excluded)} layer(s) excluded" if cpu.excluded else ""))

    # 6. budget --------------------------------------------------------------------------------
    sens_report = None
    budget = None
    drop = None
    if qdq is not None and "int8" in results:
        drop = 100.0 * (results["fp32"].map50_95 - results["int8"].map50_95)
    elif qdq is None and "int8-cpu" in results:  # ort-cpu only: its drop is the one held to the budget
        drop = 100.0 * (results["fp32"].map50_95 - results["int8-cpu"].map50_95)
    over = drop is not None and cfg.max_map_drop is not None and drop > cfg.max_map_drop
    if over and noise is not None and noise["too_noisy"] and cfg.sensitivity == "auto":
        over = False  # the exclusion loop would follow noise: refuse it (warned above)
        notes.append("budget loop not run: the validation set cannot resolve the budget")
    if qdq is not None and (cfg.sensitivity == "always" or (cfg.sensitivity == "auto" and over)):
        from .sensitivity import exclude_until_within_budget, layer_output_sqnr

        with _Stage("sensitivity", verbose) as st:
            batches = list(calib.head(cfg.sensitivity_images).batches(spec.letterbox, fb or 1, fixed=fb is not None))
            ranking = layer_output_sqnr(raw, qdq, batches, nodes)
            sens_report = {"images": len(batches), "ranking": [r.to_dict() for r in ranking],
                           "method": "each layer's own output noise-to-signal ratio, INT8 vs FP32 on the same "
                                     "input (one inference per image ranks every layer; see sensitivity.py)"}
            st.detail = f"{len(ranking)} layers ranked; worst {ranking[0].node if ranking else '-'}"

        def quantize(extra):
            return quantize_qdq(raw, amax, icfg(extra), tail.nodes)

        if cfg.sensitivity == "always" and "int8" in results and cfg.sensitivity_map_top > 0:
            with _Stage("ΔmAP top", verbose) as st:
                base = results["int8"].map50_95
                for r in sens_report["ranking"][: cfg.sensitivity_map_top]:
                    v = evaluate_onnx(eval_copy(quantize([r["node"]]), "int8"), val_ds,
                                      desc=f"val -{r['node'][-20:]}").map50_95
                    r["delta_map50_95_if_excluded"] = 100.0 * (v - base)
                st.detail = ", ".join(f"{r['node']} {r['delta_map50_95_if_excluded']:+.2f}"
                                      for r in sens_report["ranking"][: cfg.sensitivity_map_top])
        if over:
            by_node = {r.node: r for r in ranking}

            seen_evals: dict[int, object] = {}

            def evaluate(model):
                seen_evals[id(model)] = evaluate_onnx(eval_copy(model, "int8"), val_ds, desc="val int8", keep=True)
                return seen_evals[id(model)][0].map50_95

            def agreement(model):  # with FP32's own detections, on the same images (evaluate/bootstrap.py)
                from ..evaluate.bootstrap import agreement as agree

                ev = evaluators["int8"] if model is qdq else seen_evals[id(model)][1]
                return agree(ev, evaluators["fp32"]).compute().map50_95

            with _Stage("budget", verbose) as st:
                budget = exclude_until_within_budget([r.node for r in ranking], quantize, evaluate,
                                                     results["fp32"].map50_95, results["int8"].map50_95,
                                                     cfg.max_map_drop, max_steps=cfg.max_exclusions,
                                                     model=qdq, agreement=agreement, log=_log if verbose else None)
                st.detail = f"{len(budget.excluded)} layer(s) excluded, {budget.reason}"
            sens_report["budget"] = budget.to_dict()
            if budget.excluded:
                qdq = budget.model
                eval_paths["int8"] = eval_copy(qdq, "int8")
                results["int8"], evaluators["int8"] = seen_evals[id(qdq)]
                if noise is not None:  # the interval and agreement of the model that is written
                    noise = measurement_noise(evaluators["fp32"], evaluators["int8"], cfg.max_map_drop,
                                              cfg.bootstrap)
                steps = {s.node: s for s in budget.steps}
                for k, n in enumerate(budget.excluded):
                    s = steps[n]
                    excluded.append({"node": n, "reason": (
                        f"sensitivity: output noise-to-signal {by_node[n].error:.3g} (rank {ranking.index(by_node[n]) + 1}); "
                        f"excluding it raised INT8 mAP50-95 {100 * s.map_before:.2f} -> {100 * s.map_after:.2f}")})
                drop = 100.0 * (results["fp32"].map50_95 - results["int8"].map50_95)

    # 7. artifacts -----------------------------------------------------------------------------
    trt_version = cfg.trt_version or default_trt_version()
    int8_info = None
    with _Stage("write", verbose) as st:
        written = []
        if fp16_res is not None:
            m = add_nms(copy_model(fp16_res.model), spec.nms) if spec.nms.flavour != "none" else fp16_res.model
            extra = {**spec.extra, "precision": {"mode": "fp16", "io": "float32", "kept_fp32": fp16_res.kept,
                                                 "overflow": fp16_res.overflow, "overflow_threshold": 0.5 * 65504,
                                                 "calibration": calib_info}}
            paths["fp16"] = _save(_with_spec(m, spec.replace(precision="fp16", extra=extra)), out_dir / f"{name}.fp16.onnx")
            written.append(paths["fp16"].name)
        if qdq is not None:
            scales = activation_scales(qdq)
            shifts = shifted_tensors(qdq)  # the tensors on shifted grids (qdq.shift_activations)
            for z, sh in shifts.items():  # the implicit cache is symmetric: the top of the grid
                scales.setdefault(sh["source"], (sh["shift"] + 127.0 * scales[z]) / 127.0)
            cache_key = CacheKey(onnx_sha, preprocessing_of(spec.letterbox), stats.data_hash, stats.n_images,
                                 {**icfg().algorithm(),
                                  **({"refined_on_images": refined.images} if refined is not None and refined.kept
                                     else {})})
            int8_info = {"mode": "int8-qdq", "target": "trt", "symmetric": True, "weights": "per-channel (axis 0)",
                         "activations": "per-tensor", "op_types": list(cfg.op_types), "method": cfg.method,
                         **({"percentile": cfg.percentile} if cfg.method == "percentile" else {}),
                         "quantized_layers": sorted(n for n, l in qdq_layers(qdq).items()
                                                    if l.op_type in cfg.op_types),
                         **({"auto_methods": auto_choice} if auto_choice else {}),
                         **({"refined": refined.to_dict()} if refined is not None else {}),
                         "weight_rounding": rounded.to_dict() if rounded is not None else "nearest",
                         "shift": {"mode": icfg().algorithm()["shift"], "tensors": {
                             sh["source"]: sh["shift"] for sh in shifts.values()}},
                         "excluded": excluded, "calibration": {**calib_info, "cache_key": cache_key.key},
                         "max_map_drop": cfg.max_map_drop,
                         "head_guard": {"share": cfg.head_guard, "policy": cfg.guard, "nodes": guard,
                                        **({"sensitive": chosen.to_dict()} if chosen is not None else {})}}
            int8_info["placement"] = cfg.placement
            for key, variant, info in _int8_variants(qdq, raw, tail, fp16_res, stats, cfg, name, int8_info):
                m = add_nms(copy_model(variant), spec.nms) if spec.nms.flavour != "none" else copy_model(variant)
                paths[key] = _save(_with_spec(m, spec.replace(precision="int8", extra={**spec.extra, "precision": info})),
                                   out_dir / info["file"])
                written.append(f"{paths[key].name} (TensorRT {info['tensorrt']})")
            # legacy implicit-INT8 cache for the FP32 graph: Q/DQ scales where we have them, min/max
            # elsewhere; nothing for the decode tail or excluded layers (TensorRT keeps them out of INT8)
            skip = set(tail.tensors) | {o for n in raw.graph.node
                                        if n.name in {e["node"] for e in excluded} for o in n.output}
            table = {}
            for t in float_activations(raw):
                if t in skip or t not in stats.tensors:
                    continue
                table[t] = scales[t] if t in scales else stats.tensors[t].absmax / 127.0
            table = {k: v for k, v in table.items() if v > 0}
            paths["cache"] = write_cache(out_dir / "calibration.cache", table, cache_key, trt_version=trt_version,
                                         extra={"onnx": str(fp32_path), "method": cfg.method})
            written.append(f"calibration.cache ({len(table)} tensors, TRT {trt_version})")
        if cpu is not None:
            from .int8_cpu import CPU_SUFFIX

            cpu_info = {**cpu.info, "calibration": calib_info}
            m = add_nms(copy_model(cpu.model), spec.nms) if spec.nms.flavour != "none" else copy_model(cpu.model)
            paths["int8-cpu"] = _save(_with_spec(m, spec.replace(precision="int8", extra={
                **spec.extra, "precision": cpu_info})), out_dir / f"{name}.{CPU_SUFFIX}.onnx")
            written.append(paths["int8-cpu"].name)
        st.detail = ", ".join(written)

    # 8. latency -------------------------------------------------------------------------------
    x = next(ImageSet(cfg.val or cfg.calib, 1).batches(spec.letterbox, fb or 1, fixed=fb is not None))
    rows: list[Row] = []
    with _Stage("latency", verbose) as st:
        for prec in ("fp32", "fp16", "int8", "int8-cpu"):
            if prec not in paths:
                continue
            p = paths[prec]
            note = ""
            if prec == "int8" and "int8_fp32scales" in paths:  # ONNX Runtime measures the FP32-scale twin
                p = paths["int8_fp32scales"]
                note = f"ONNX Runtime runs {p.name}; {paths['int8'].name} is the same quantization for TensorRT >= 10"
            try:
                lat = latency_ms(p, x, cfg.latency_runs)
            except Exception:  # EfficientNMS_TRT: ONNX Runtime cannot run the plugin; time the graph without NMS
                lat = latency_ms(eval_paths[prec], x, cfg.latency_runs)
                note = "latency without NMS (TensorRT plugin)"
            if fb:
                note = "; ".join(filter(None, [note, f"latency of a static batch of {fb}"]))
            r = results.get(prec)
            rows.append(Row(prec, str(p), p.stat().st_size / 1e6, getattr(r, "map50_95", None),
                            getattr(r, "map50", None), None, lat, note))
        st.detail = ", ".join(f"{r.precision} {r.latency_ms:.1f} ms" for r in rows)
    if "fp32" in results:
        for r in rows:
            if r.map50_95 is not None:
                r.delta_map50_95 = 100.0 * (r.map50_95 - results["fp32"].map50_95)

    # 9. report --------------------------------------------------------------------------------
    report_dir = None
    if qdq is not None:
        from .report import measure_sqnr, tensor_entries, unshifted_view, weight_sqnr, write_report

        with _Stage("report", verbose) as st:
            batches = list(calib.head(cfg.report_images).batches(spec.letterbox, fb or 1, fixed=fb is not None))
            layers = qdq_layers(qdq)
            pairs, scales = {}, {}
            for layer in layers.values():
                pairs.update(layer.activations)
                scales.update(layer.scales)
            view, pairs, scales, offsets = unshifted_view(qdq, pairs, scales)
            sq = measure_sqnr(raw, view, pairs, batches, scales, offsets)
            final_amax = {t: offsets.get(t, 0.0) + scales[t] * 127.0 for t in pairs}  # the top of each grid
            entries = tensor_entries(stats, final_amax, acts, sq, cfg.percentile,
                                     calibrated=calibrated_amax if refined is not None and refined.kept else None,
                                     offsets=offsets)
            wsq = weight_sqnr(raw, qdq)
            pmap = _precision_maps(paths)
            report = {
                "model": str(fp32_path), "onnx_sha256": onnx_sha, "name": name,
                "precision_map": pmap,
                "calibration": {**calib_info, "method": cfg.method,
                                **({"percentile": cfg.percentile} if cfg.method == "percentile" else {}),
                                "refined": refined.summary() if refined is not None else "no",
                                "weight_rounding": rounded.summary() if rounded is not None else "nearest",
                                "guard": (chosen.summary() if chosen is not None
                                          else f"{cfg.guard}: {len(guard)} layers kept FP16" if guard else "none"),
                                "activation_shift": (f"{icfg().algorithm()['shift']}: {len(offsets)} of {len(pairs)} "
                                                     "tensors on INT8 grids over [lower bound, amax]"),
                                "trt_cache": str(paths.get("cache", "")), "trt_version": trt_version,
                                "sqnr_images": len(batches)},
                "evaluation": [r.to_dict() for r in rows],
                "budget": {"max_map_drop": cfg.max_map_drop, "drop": drop, "noise": noise,
                           "within": None if drop is None or cfg.max_map_drop is None else drop <= cfg.max_map_drop},
                "outputs": {k: v for k, v in sq.items() if k not in pairs},
                "int8": int8_info,
                "layers": [{"node": n, "op_type": l.op_type, "weight_sqnr_db": wsq.get(n),
                            "inputs": list(dict.fromkeys(shifts[t]["source"] if t in shifts else t
                                                         for t in l.activations))} for n, l in layers.items()],
                "fp16": {"kept": fp16_res.kept, "overflow": fp16_res.overflow} if fp16_res else {},
                "sensitivity": sens_report,
                "flag_counts": {f: sum(f in e["flags"] for e in entries)
                                for f in ("narrow_range", "heavy_saturation", "fp16_overflow_risk", "low_sqnr")},
                "tensors": entries,
                "notes": notes,
            }
            if cpu is not None:
                report["int8_cpu"] = {**cpu.info, "ranking": cpu.ranking, "budget": cpu.budget}
            report_dir = out_dir / "report"
            files = write_report(report, report_dir)
            paths.update({f"report:{k}": v for k, v in files.items()})
            st.detail = f"{report_dir}/report.html, {sum(bool(e['flags']) for e in entries)} flagged tensors"
            if "int8" in paths and "10" in pmap.get(paths["int8"].name, {}):
                p10 = pmap[paths["int8"].name]["10"]
                st.detail += (f"; TensorRT 10 precision map of {paths['int8'].name}: convolution FLOPs INT8 "
                              f"{100 * p10['conv_flops_int8_share']:.1f} %, FP32 nodes outside the decode tail "
                              f"{len(p10['fp32_nodes_outside_tail'])}")
    elif cpu is not None:  # ort-cpu only: the same report, output SQNR and the CPU target's decisions
        from .report import measure_sqnr, write_report

        with _Stage("report", verbose) as st:
            batches = list(calib.head(cfg.report_images).batches(spec.letterbox, fb or 1, fixed=fb is not None))
            report = {"model": str(fp32_path), "onnx_sha256": onnx_sha, "name": name,
                      "calibration": {**calib_info, "method": cfg.method, "sqnr_images": len(batches)},
                      "evaluation": [r.to_dict() for r in rows],
                      "budget": {"max_map_drop": cfg.max_map_drop, "drop": drop, "within": None if drop is None
                                 or cfg.max_map_drop is None else drop <= cfg.max_map_drop},
                      "outputs": measure_sqnr(raw, cpu.model, {}, batches), "int8": cpu.info,
                      "sensitivity": {"ranking": cpu.ranking, "budget": cpu.budget} if cpu.ranking else None,
                      "notes": notes}
            report_dir = out_dir / "report"
            files = write_report(report, report_dir)
            paths.update({f"report:{k}": v for k, v in files.items()})
            st.detail = f"{report_dir}/report.html"
    tmp.cleanup()

    within = None
    if drop is not None and cfg.max_map_drop is not None:
        within = drop <= cfg.max_map_drop + 1e-9
    if cpu is not None and qdq is not None and "int8-cpu" in results and cfg.max_map_drop is not None:
        cpu_drop = 100.0 * (results["fp32"].map50_95 - results["int8-cpu"].map50_95)
        within = bool(within) and cpu_drop <= cfg.max_map_drop + 1e-9
        drop = max(drop, cpu_drop) if drop is not None else cpu_drop
    if cpu is not None:
        excluded = excluded + [{**e, "reason": f"ort-cpu: {e['reason']}"} for e in cpu.excluded
                               if not e["reason"].startswith("requested")]
    return PrecisionResult(rows, paths, report_dir, within, drop, cfg.max_map_drop, time.perf_counter() - t_start,
                           [e for e in excluded if not e["reason"].startswith("decode tail")], notes,
                           [k for k in (fp16_res.kept if fp16_res else []) if not k["reason"].startswith("decode tail")
                            and "no FP16 form" not in k["reason"]])


def _torch_step(stage: str, step: Callable, not_done: str, instead: str, notes: list, verbose: bool):
    """Run ``step()`` (a step on the refinement's PyTorch interpreter) as stage ``stage`` and return
    its result; None, with a note ``"<not_done>: <why>"`` (and a warning), when PyTorch is missing or
    the interpreter cannot run the graph (``instead`` says what is used then)."""
    from .refine import UnsupportedGraph

    with _Stage(stage, verbose) as st:
        try:
            r = step()
        except ImportError:
            st.detail = f"skipped: PyTorch is not installed ({instead})"
            notes.append(f"{not_done}: PyTorch is not installed")
            return None
        except (UnsupportedGraph, RuntimeError, ValueError, IndexError, KeyError, np.linalg.LinAlgError) as e:
            why = str(e) if isinstance(e, UnsupportedGraph) else f"{type(e).__name__}: {e}"
            st.detail = f"skipped: {why}"
            notes.append(f"{not_done}: {why}")
            _log(f"WARNING: {not_done} ({why}); {instead}")
            return None
        st.detail = r.summary()
    return r


def _round_weights(raw, nodes, calib, cfg, spec, fb, notes, verbose):
    """The GPTQ-rounded INT8 weights (:class:`~yolo_edge.precision.rounding.RoundingResult`) of the
    quantized layers, from the first ``cfg.rounding_images`` calibration images; None, with a note,
    when PyTorch is missing or the graph has an operator the interpreter cannot run."""
    from .rounding import gptq_weights

    batches = list(calib.head(cfg.rounding_images).batches(spec.letterbox, fb or 1, fixed=fb is not None))
    return _torch_step("gptq", lambda: gptq_weights(raw, nodes, batches, cfg.int8_config().weight_scale,
                                                    show_progress=verbose),
                       "INT8 weights not rounded by gptq", "nearest rounding is used", notes, verbose)


def _refine(raw, acts, amax, nodes, skip, calib, cfg, spec, fb, notes, verbose, int8_weights=None, lower=None):
    """``(amax, RefineResult | None)``: the ranges refined end to end against FP32's outputs on the
    first ``cfg.refine_images`` calibration images (precision/refine.py), or the calibrated ones with
    a note when PyTorch is missing or the graph has an operator the refinement cannot run."""
    from .refine import refine_amax

    sites = {t: [c for c in cs if c not in skip] for t, cs in acts.items()}
    sites = {t: cs for t, cs in sites.items() if cs}
    algo = cfg.int8_config().algorithm()
    batches = list(calib.head(cfg.refine_images).batches(spec.letterbox, fb or 1, fixed=fb is not None))
    r = _torch_step("refine", lambda: refine_amax(raw, sites, amax, nodes, batches, show_progress=verbose,
                                                  weight_scale=algo["weight_scale"],
                                                  int8_weights=int8_weights, lower=lower),
                    "activation ranges not refined", "the calibrated ranges are used", notes, verbose)
    return (amax, None) if r is None else (r.amax, r)


def _precision_maps(paths: dict) -> dict:
    """``{file name: {TensorRT version: precision map summary}}`` for each INT8 file, for the versions
    it is written for (see :mod:`~yolo_edge.precision.precision_map`)."""
    from .precision_map import precision_summaries

    out = {}
    if "int8" in paths:
        versions = ("10", "11") if "int8_fp32scales" in paths else ("8.6", "10", "11")
        out[paths["int8"].name] = precision_summaries(paths["int8"], versions)
    if "int8_fp32scales" in paths:
        out[paths["int8_fp32scales"].name] = {
            **precision_summaries(paths["int8_fp32scales"], ("8.6",)),
            "8.6 --fp16-fallback": precision_summaries(paths["int8_fp32scales"], ("8.6",), fp16_flag=True)["8.6"]}
    return out


def _int8_variants(qdq, raw, tail, fp16_res, stats, cfg, name: str, info: dict):
    """``(paths key, Q/DQ model, metadata)`` of each INT8 file. ``placement="trt"``: the FP16-scale graph
    (TensorRT >= 10) as ``<name>.int8.onnx`` and the FP32-scale twin (TensorRT 8.6, ONNX Runtime) as
    ``<name>.int8.fp32scales.onnx``; ``placement="conv"``: the one FP32-scale graph."""
    if cfg.placement == "conv":
        return [("int8", qdq, {**info, "file": f"{name}.int8.onnx", "scales": "float32", "graph": "float32",
                               "tensorrt": "8.6, 10, 11 (on 10/11 the layers between INT8 convolutions run FP32)",
                               "onnxruntime": True})]
    from .fp16 import convert_fp16
    from .qdq import fp16_scale_twin

    f16 = fp16_res.model if fp16_res is not None else convert_fp16(raw, stats.absmax(), tail=tail.nodes).model
    q16 = fp16_scale_twin(qdq, f16)
    f32_file, f16_file = f"{name}.int8.fp32scales.onnx", f"{name}.int8.onnx"
    return [("int8", q16, {**info, "file": f16_file, "scales": "float16", "graph": "float16 (decode tail float32)",
                           "tensorrt": ">= 10 (strongly typed)", "onnxruntime": True, "twin": f32_file}),
            ("int8_fp32scales", qdq, {**info, "file": f32_file, "scales": "float32", "graph": "float32",
                                      "tensorrt": "8.6 (builder flags)", "onnxruntime": True, "twin": f16_file})]


def engine_message(result: PrecisionResult, build: bool = True) -> list[str]:
    """Where the TensorRT engines will be built, and the engines themselves when TensorRT is here."""
    lines = []
    onnxs = [result.paths[p] for p in ("fp32", "fp16", "int8") if p in result.paths]
    if available("tensorrt") and build:
        from ..trt import build_engine

        if "int8_fp32scales" in result.paths and default_trt_version().split(".")[0] in ("8", "9"):
            onnxs[-1] = result.paths["int8_fp32scales"]  # TensorRT 8.6 takes FP32 Q/DQ scales only
        for p in onnxs:
            lines.append(f"built {build_engine(p)}")
        return lines
    lines.append("TensorRT is not installed here; build the engines on the target device (Jetson / GPU):")
    for p in onnxs:
        lines.append(f"  yolo-edge build {p}   -> {p.with_suffix('.engine')}")
    if "int8_fp32scales" in result.paths:
        p = result.paths["int8_fp32scales"]
        lines.append(f"  TensorRT 8.6 (FP32 Q/DQ scales): yolo-edge build {p}   -> {p.with_suffix('.engine')}")
    if "cache" in result.paths:
        lines.append(f"  legacy implicit INT8 (TensorRT <= 10): yolo-edge build {result.paths['fp32']} "
                     f"--calib-cache {result.paths['cache']}")
    return lines


def export_and_run(checkpoint=None, cfg: PrecisionConfig | None = None, imgsz=(640, 640), nms=None,
                   verbose: bool = True) -> PrecisionResult:
    """Export ``checkpoint`` (default: the bundled one) to ``<out_dir>/model.onnx`` and run the job."""
    from ..export.onnx_export import export_onnx

    cfg = cfg or PrecisionConfig()
    out = Path(cfg.out_dir) / f"{cfg.name or 'model'}.onnx"
    path = export_onnx(checkpoint, out, imgsz=imgsz, nms=nms, verbose=verbose)
    return run_precision(path, cfg)


def fmt_seconds(s: float) -> str:
    if s < 60:
        return f"{s:.1f} s"
    m, sec = divmod(int(round(s)), 60)
    return f"{m} min {sec} s"


__all__ = ["BUDGET_EXIT_CODE", "PrecisionConfig", "PrecisionResult", "Row", "engine_message", "evaluate_onnx",
           "export_and_run", "latency_ms", "run_precision", "stats_key"]

