"""The benchmark: every available backend x precision, speed + memory + accuracy + roofline, against
the baselines users would otherwise run (``yolo-edge bench`` ≡ ``python benchmarks/bench.py``).

    from yolo_edge.bench import BenchConfig, run_bench
    result = run_bench(BenchConfig(quick=True))
    print(result.goal)                      # ORT CPU FP32 end-to-end vs the reference notebook pipeline

Steps:

1. **Context**: CPU, GPU, library versions, Jetson power mode (:mod:`~yolo_edge.bench.device`).
2. **Models**: the checkpoint (default: bundled), exported to ONNX and made FP16/INT8 by the export and
   precision API, exactly as ``python export/export.py --int8`` does (or reused from ``onnx_dir``);
   NMS-free copies for the accuracy pass; TensorRT engines where TensorRT is; the Ultralytics-layout ONNX
   where Ultralytics is. Validation images are checked disjoint from the INT8 calibration images.
3. **Roofline**: matmul peak of the CPU (and GPU), the model's GFLOPs (:mod:`~yolo_edge.bench.roofline`).
4. **Rows**, each in a fresh process (:mod:`~yolo_edge.bench.worker`): size, per-stage latency p50/p90/p99
   at batch 1 and the larger batch, throughput, peak memory, pipelined FPS, mAP50-95/mAP50/AP by size/ECE.
5. **Ratios**: every row against the reference notebook pipeline and Ultralytics, and the goal
   (ONNX Runtime CPU FP32 end-to-end ≥ 2x the reference eager pipeline, same model, same CPU).
6. **Report**: Markdown, JSON, CSV, plots and ``command.txt`` in ``<out>/<device>/<date>/``.

Rows that cannot run here (no CUDA, no TensorRT, Ultralytics not installed) are listed as skipped
with the reason; a row that fails is recorded as failed with its error, and the others still run.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from ..errors import YoloEdgeError
from .results import BACKENDS, FP32_ONLY, GPU_BACKENDS, BenchResult, Row

PRECISIONS = ("fp32", "fp16", "int8", "int8-cpu")  # int8-cpu: the ONNX Runtime CPU INT8 target (ort-cpu rows)
GOAL_RATIO = 2.0  # ONNX Runtime CPU FP32 end-to-end vs the reference eager pipeline (issue #8)

FULL = {"runs": 100, "warmup": 10, "batch_sizes": (1, 8), "val_images": None, "timing_images": 16,
        "calib_images": 512, "max_map_drop": 1.0, "probe_sizes": (256, 512, 1024, 2048), "probe_repeats": 5}
QUICK = {"runs": 5, "warmup": 2, "batch_sizes": (1, 4), "val_images": 16, "timing_images": 4,
         "calib_images": 16, "max_map_drop": None, "probe_sizes": (256, 512), "probe_repeats": 2}
_UNSET = object()


@dataclass
class BenchConfig:
    """Settings of :func:`run_bench`; ``None`` means the full default, or the quick one with ``quick``.

    Attributes:
        model: yolo-edge checkpoint (default: the bundled ``yolo11n-synth.pt``).
        imgsz: input ``(H, W)`` (default: the checkpoint's training size, else 640).
        backends: any of :data:`~yolo_edge.bench.results.BACKENDS` (default: all; those not available
            here are listed as skipped with the reason).
        precisions: of the ONNX Runtime / TensorRT rows (PyTorch, the reference and Ultralytics are FP32).
        runs, warmup: timed and warm-up iterations at batch 1; a batch of B runs about as many images:
            ``max(min(20, runs), runs // B)`` timed iterations after ``max(min(2, warmup), warmup // B)``.
        batch_sizes: batch sizes timed (the first is the latency batch, normally 1).
        val, val_images: labelled validation data for the accuracy columns (``val_images=0``: no accuracy).
        timing_images: validation images cycled through by the timing loops.
        calib, calib_images, max_map_drop: how the INT8 model is made when it is not reused (as
            ``yolo-edge export --int8``; ``max_map_drop`` None: no budget loop).
        onnx_dir: reuse (and complete) the ONNX variants in this folder, e.g. ``runs/export``.
        work: cache of made models (default ``runs/bench``).
        out: results root; the report goes to ``<out>/<device slug>/<YYYY-MM-DD>/`` unless ``out_dir``.
        quick: small settings to check that everything runs (numbers not for publishing).
        isolate: run each row in a fresh process (fair peak memory; the default).
        head_to_head: time the ONNX Runtime CPU FP32, PyTorch, reference and Ultralytics pipelines
            interleaved in one process (:mod:`~yolo_edge.bench.headtohead`); the goal ratio comes from it.
        pipelined: measure pipelined FPS through ``yolo_edge.stream.pipeline`` when installed.
        threads: intra-op threads of ONNX Runtime and PyTorch (default: theirs).
        command: the command line recorded in ``command.txt`` (the CLI fills it in).
    """

    model: str | Path | None = None
    imgsz: tuple[int, int] | None = None
    backends: Sequence[str] | None = None
    precisions: Sequence[str] = PRECISIONS
    runs: int | None = None
    warmup: int | None = None
    batch_sizes: Sequence[int] | None = None
    val: str = "synthetic:val"
    val_images: int | None | object = _UNSET
    timing_images: int | None = None
    calib: str = "synthetic:calib"
    calib_images: int | None = None
    max_map_drop: float | None | object = _UNSET
    onnx_dir: str | Path | None = None
    work: str | Path = "runs/bench"
    out: str | Path = "benchmarks/results"
    out_dir: str | Path | None = None
    quick: bool = False
    isolate: bool = True
    pipelined: bool = True
    roofline: bool = True
    head_to_head: bool = True
    threads: int | None = None
    show_progress: bool = True
    command: str = ""
    probe_sizes: Sequence[int] | None = None
    probe_repeats: int | None = None

    def __post_init__(self):
        defaults = QUICK if self.quick else FULL
        for k, v in defaults.items():
            cur = getattr(self, k)
            if cur is None or cur is _UNSET:
                if k in ("val_images", "max_map_drop") and cur is None:
                    continue  # an explicit None: all images / no budget
                setattr(self, k, v)
        self.batch_sizes = tuple(int(b) for b in self.batch_sizes)
        self.precisions = tuple(self.precisions)
        self.backends = tuple(self.backends) if self.backends else BACKENDS
        unknown = [b for b in self.backends if b not in BACKENDS]
        if unknown:
            raise YoloEdgeError(f"unknown backend {unknown[0]!r}; choose from {', '.join(BACKENDS)} (or 'all')")
        bad = [p for p in self.precisions if p not in PRECISIONS]
        if bad:
            raise YoloEdgeError(f"unknown precision {bad[0]!r}; choose from {', '.join(PRECISIONS)}")
        if not self.precisions:
            raise YoloEdgeError("no precision to benchmark")
        if self.runs < 1 or self.warmup < 0:
            raise YoloEdgeError(f"runs must be >= 1 and warmup >= 0, got runs={self.runs}, warmup={self.warmup}")
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise YoloEdgeError(f"batch sizes must be >= 1, got {list(self.batch_sizes)}")
        if self.timing_images < 1:
            raise YoloEdgeError(f"timing images must be >= 1, got {self.timing_images}")
        if self.imgsz is not None:
            if isinstance(self.imgsz, int):
                self.imgsz = (self.imgsz, self.imgsz)
            self.imgsz = tuple(int(v) for v in self.imgsz)

    def to_dict(self) -> dict:
        d = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            d[f.name] = str(v) if isinstance(v, Path) else (list(v) if isinstance(v, tuple) else v)
        return d


# --- what can run here -----------------------------------------------------------------------------
def backend_status() -> dict[str, str | None]:
    """Backend -> None when it can run here, else the reason it cannot."""
    from ..deps import available
    from .device import ort_providers

    out: dict[str, str | None] = {}
    has_torch = available("torch")
    cuda = None
    if has_torch:
        try:
            import torch

            cuda = torch.cuda.is_available()
        except Exception:
            cuda = False
    providers = ort_providers()
    out["torch"] = None if has_torch else "PyTorch is not installed (pip install 'yolo-edge[torch]')"
    out["torch-cuda"] = (None if cuda else "PyTorch is not installed" if not has_torch
                         else "PyTorch sees no CUDA device")
    out["ort-cpu"] = None if providers else "onnxruntime is not installed (pip install 'yolo-edge[onnx]')"
    out["ort-cuda"] = (None if "CUDAExecutionProvider" in providers
                       else "CUDAExecutionProvider is not available (pip install 'yolo-edge[gpu]' on a CUDA machine)")
    out["ort-trt"] = (None if "TensorrtExecutionProvider" in providers
                      else "TensorrtExecutionProvider is not available (onnxruntime-gpu with TensorRT libraries)")
    if not available("tensorrt"):
        out["tensorrt"] = "tensorrt is not importable (pip install 'yolo-edge[trt]' on a machine with an NVIDIA GPU)"
    elif not (available("cuda") or available("pycuda")):
        out["tensorrt"] = "neither cuda-python nor pycuda is installed (pip install 'yolo-edge[trt]')"
    else:
        try:
            from ..trt.cuda import get_backend

            get_backend().close()
            out["tensorrt"] = None
        except Exception as e:
            out["tensorrt"] = f"no usable CUDA device for TensorRT ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
    out["reference"] = None if has_torch else "PyTorch is not installed"
    from .ultralytics_ref import available as ul_available

    ok, why = ul_available()
    out["ultralytics"] = None if ok else why
    return out


def plan(cfg: BenchConfig, status: dict[str, str | None]) -> tuple[list[tuple[str, str]], list[dict]]:
    """``([(backend, precision), ...] to run, [skipped rows with reasons])`` in report order."""
    todo, skipped = [], []
    for b in cfg.backends:
        precs = ["fp32"] if b in FP32_ONLY else [p for p in cfg.precisions if p != "int8-cpu" or b == "ort-cpu"]
        if b == "ultralytics" and {"int8", "int8-cpu"} & set(cfg.precisions):
            precs.append("int8")  # Ultralytics' own INT8 ONNX export (ultralytics_ref.ultralytics_int8)
        if b in FP32_ONLY and "fp32" not in cfg.precisions:
            continue
        for p in precs:
            if status.get(b):
                skipped.append({"backend": b, "precision": p, "reason": status[b]})
            else:
                todo.append((b, p))
    return todo, skipped


# --- the run -------------------------------------------------------------------------------------
def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _checkpoint_imgsz(checkpoint: Path) -> tuple[int, int]:
    from ..deps import available

    if available("torch"):
        from ..model import read_checkpoint

        v = (read_checkpoint(checkpoint).get("meta") or {}).get("imgsz", 640)
    else:
        v = 640
    return (int(v), int(v)) if isinstance(v, (int, float)) else tuple(int(x) for x in v)


def run_bench(cfg: BenchConfig | None = None, log: Callable[[str], None] = _log) -> BenchResult:
    """Run the benchmark (see the module doc) and write its report. Returns the result."""
    from .. import __version__
    from ..util import sha256_file
    from .artifacts import build_engines, check_disjoint_with, prepare_onnx
    from .device import device_context, device_slug
    from .report import write_report

    cfg = cfg or BenchConfig()
    t0 = time.perf_counter()
    started = _dt.datetime.now()
    if cfg.model:
        checkpoint = Path(cfg.model)
        if not checkpoint.is_file():
            raise YoloEdgeError(f"model not found: {checkpoint}")
        if checkpoint.suffix.lower() not in (".pt", ".pth"):
            raise YoloEdgeError(f"--model takes a yolo-edge checkpoint (.pt), got {checkpoint.name}; ONNX variants "
                                "are made from it (or reused with --onnx-dir)")
    else:
        from ..assets import default_checkpoint

        checkpoint = default_checkpoint()
    if cfg.onnx_dir is not None and not Path(cfg.onnx_dir).is_dir():
        raise YoloEdgeError(f"--onnx-dir not found: {cfg.onnx_dir}")
    imgsz = cfg.imgsz or _checkpoint_imgsz(checkpoint)
    sha = sha256_file(checkpoint)

    status = backend_status()
    todo, skipped = plan(cfg, status)
    if not todo:
        reasons = "; ".join(f"{s['backend']}: {s['reason']}" for s in skipped) or "none selected"
        raise YoloEdgeError(f"no backend can run here ({reasons})")
    uses_gpu = any(b in GPU_BACKENDS for b, _ in todo)
    context = device_context(gpu=True)
    notes: list[str] = []
    log(f"bench: {len(todo)} rows ({', '.join(f'{b} {p}' for b, p in todo)}); "
        f"{len(skipped)} skipped; device {context.get('cpu')} ({context.get('cpu_cores')} cores)"
        + (f", {context.get('gpu')}" if context.get("gpu") else ""))

    # models
    onnx_backends = {"ort-cpu", "ort-cuda", "ort-trt", "tensorrt", "ultralytics"}
    need_onnx = sorted({p for b, p in todo if b in onnx_backends}, key=PRECISIONS.index)
    art = None
    if need_onnx:
        d = Path(cfg.onnx_dir) if cfg.onnx_dir else (
            Path(cfg.work) / f"onnx-{sha[:12]}-{imgsz[0]}x{imgsz[1]}{'-quick' if cfg.quick else ''}")
        art = prepare_onnx(checkpoint, sha, imgsz, need_onnx, d, given=cfg.onnx_dir is not None, calib=cfg.calib,
                           calib_images=cfg.calib_images, val=cfg.val, val_images=cfg.val_images or None,
                           max_map_drop=cfg.max_map_drop, latency_runs=3 if cfg.quick else 20,
                           verbose=cfg.show_progress, log=log)
        if "int8" in art.onnx or "int8-cpu" in art.onnx:
            notes.append(check_disjoint_with(art.calibration, cfg.val, cfg.val_images or None))
        trt_precs = sorted({p for b, p in todo if b == "tensorrt"}, key=PRECISIONS.index)
        if trt_precs:
            try:
                build_engines(art, trt_precs, max(cfg.batch_sizes), cfg.show_progress, log)
            except Exception as e:  # keep the other rows
                msg = str(e).splitlines()[0] if str(e) else type(e).__name__
                for p in trt_precs:
                    todo.remove(("tensorrt", p))
                    skipped.append({"backend": "tensorrt", "precision": p, "reason": f"engine build failed: {msg}"})
        if any(b == "ultralytics" for b, _ in todo):
            from ..runtime.ort_runner import read_spec
            from .ultralytics_ref import to_ultralytics_layout

            names = read_spec(art.onnx["fp32"]).names
            art.engines["ultralytics"] = to_ultralytics_layout(art.onnx["fp32"], art.dir / "ultralytics" / "model.onnx",
                                                               names, imgsz)
        if ("ultralytics", "int8") in todo:
            try:
                art.engines["ultralytics-int8"] = _ultralytics_int8(art, cfg, names, imgsz, log)
            except Exception as e:  # keep the other rows
                todo.remove(("ultralytics", "int8"))
                skipped.append({"backend": "ultralytics", "precision": "int8",
                                "reason": f"its INT8 export failed: {str(e).splitlines()[0] if str(e) else type(e).__name__}"})

    # roofline
    roof: dict = {"gflops": None, "peaks": {}}
    if cfg.roofline:
        from .roofline import cpu_peak, cuda_peak, model_gflops

        log("roofline: matmul probe" + (" (CPU and GPU)" if uses_gpu else " (CPU)"))
        try:
            roof["gflops"] = model_gflops(checkpoint, imgsz)
        except Exception as e:
            notes.append(f"model GFLOPs not computed: {e}")
        roof["peaks"]["cpu"] = cpu_peak(cfg.probe_sizes, cfg.probe_repeats)
        if uses_gpu:
            roof["peaks"]["cuda"] = cuda_peak(repeats=cfg.probe_repeats)
        roof["imgsz"] = list(imgsz)

    # rows
    names = ()
    if art is not None:
        from ..runtime.ort_runner import read_spec

        names = tuple(read_spec(art.onnx["fp32"]).names)
    rows: list[Row] = []
    for i, (b, p) in enumerate(todo, 1):
        model, eval_model = _row_models(b, p, checkpoint, art)
        job = _job(cfg, b, p, model, eval_model, checkpoint, imgsz, names, art.nms if art is not None else None)
        log(f"[{i}/{len(todo)}] {b} {p}: {Path(model).name}")
        row = _run_isolated(job, log) if cfg.isolate else _run_here(job)
        _roofline_columns(row, roof)
        rows.append(row)
        if row.status == "ok":
            e2e = row.e2e_p50(cfg.batch_sizes[0])
            log(f"  e2e p50 {e2e:.1f} ms, {row.fps:.1f} FPS"
                + (f", mAP50-95 {100 * row.map50_95:.2f}" if row.map50_95 is not None else "")
                + f" ({row.seconds:.0f} s)")
        else:
            log(f"  failed: {row.note}")

    result = BenchResult(rows=rows, skipped=skipped, roofline=roof, context=context, config=cfg.to_dict(),
                         artifacts={**(art.to_dict() if art else {}), "checkpoint": str(checkpoint),
                                    "checkpoint_sha256": sha},
                         notes=notes, command=cfg.command, date=started.strftime("%Y-%m-%d %H:%M:%S"),
                         version=__version__)
    result.comparisons, result.goal = comparisons(result, cfg.batch_sizes)
    if cfg.head_to_head:
        result.head_to_head = head_to_head(cfg, result, checkpoint, imgsz, names, art, log)
        hh = result.head_to_head.get("vs_reference", {})
        if "ort-cpu fp32" in hh:
            result.goal.update(rows_ratio=result.goal.get("ratio"), ratio=hh["ort-cpu fp32"],
                               met=hh["ort-cpu fp32"] >= GOAL_RATIO, source="interleaved head-to-head")
    result.notes += method_notes(cfg, art)
    result.seconds = time.perf_counter() - t0
    out_dir = Path(cfg.out_dir) if cfg.out_dir else (
        Path(cfg.out) / device_slug(context, gpu=uses_gpu) / started.strftime("%Y-%m-%d"))
    files = write_report(result, out_dir)
    result.artifacts["report"] = {k: str(v) for k, v in files.items()}
    log(f"wrote {out_dir}/ ({', '.join(sorted(p.name for p in files.values()))}) in {result.seconds:.0f} s")
    return result


def _ultralytics_int8(art, cfg: BenchConfig, names, imgsz, log) -> Path:
    """Ultralytics' own INT8 ONNX recipe on our FP32 graph, calibrated on the same images as ours."""
    from ..precision.calibration import ImageSet
    from ..runtime.ort_runner import read_spec
    from .ultralytics_ref import to_ultralytics_layout, ultralytics_int8

    dst = art.dir / "ultralytics" / "model_int8.onnx"
    if dst.is_file() and dst.stat().st_mtime >= art.onnx["fp32"].stat().st_mtime:
        return dst
    spec = read_spec(art.onnx["fp32"])
    batches = list(ImageSet(cfg.calib, cfg.calib_images).batches(spec.letterbox, 1))
    log(f"ultralytics: its INT8 ONNX recipe on the same {len(batches)} calibration images ({cfg.calib})")
    q = ultralytics_int8(art.eval_onnx["fp32"], art.dir / "ultralytics" / "model.int8-raw.onnx", batches)
    return to_ultralytics_layout(q, dst, names, imgsz)


def _row_models(backend: str, precision: str, checkpoint: Path, art) -> tuple[str, str]:
    if backend in ("torch", "torch-cuda", "reference"):
        return str(checkpoint), str(checkpoint)
    if backend == "tensorrt":
        return str(art.engines[precision]), str(art.eval_engines.get(precision, art.engines[precision]))
    if backend == "ultralytics":
        p = str(art.engines["ultralytics" if precision == "fp32" else "ultralytics-int8"])
        return p, p
    return str(art.onnx[precision]), str(art.eval_onnx[precision])


def _job(cfg: BenchConfig, b, p, model, eval_model, checkpoint, imgsz, names, nms=None):
    from .worker import RowJob

    return RowJob(backend=b, precision=p, model=model, eval_model=eval_model, checkpoint=str(checkpoint),
                  imgsz=tuple(imgsz), runs=cfg.runs, warmup=cfg.warmup, batch_sizes=tuple(cfg.batch_sizes),
                  timing_images=cfg.timing_images, val=cfg.val if cfg.val_images != 0 else None,
                  val_images=cfg.val_images, pipelined=cfg.pipelined, threads=cfg.threads, names=tuple(names),
                  nms=nms, show_progress=cfg.show_progress)


def _run_here(job) -> Row:
    from .worker import run_row

    try:
        return run_row(job)
    except Exception as e:
        if not isinstance(e, YoloEdgeError):
            import traceback

            traceback.print_exc()
        return Row(job.backend, job.precision, status="failed", note=str(e).splitlines()[0] if str(e) else repr(e))


def _run_isolated(job, log) -> Row:
    from .worker import RESULT_PREFIX

    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])  # a source checkout works without installing
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.run([sys.executable, "-m", "yolo_edge.bench.worker"], input=job.to_json(), text=True,
                          stdout=subprocess.PIPE, stderr=None, env=env)
    line = next((ln for ln in reversed(proc.stdout.splitlines()) if ln.startswith(RESULT_PREFIX)), None)
    if line is None:
        return Row(job.backend, job.precision, status="failed",
                   note=f"worker exited with code {proc.returncode} without a result")
    return Row.from_dict(json.loads(line[len(RESULT_PREFIX):]))


def _roofline_columns(row: Row, roof: dict) -> None:
    from .roofline import achieved, peak_for

    if row.status != "ok" or not roof.get("gflops"):
        return
    row.gflops = roof["gflops"]
    big = max(row.infer_throughput, key=int) if row.infer_throughput else None
    peak, kind = peak_for(roof.get("peaks") or {}, row.device, row.precision)
    row.achieved_gflops_s, row.pct_peak = achieved(row.gflops, row.infer_throughput.get(big) if big else None, peak)
    row.peak_gflops_s, row.peak_kind = peak, kind


def comparisons(result: BenchResult, batch_sizes: Sequence[int]) -> tuple[list[dict], dict]:
    """Every row's end-to-end speed against the reference notebook pipeline and Ultralytics
    (same run, same images), and the goal check."""
    b1, big = str(batch_sizes[0]), str(max(batch_sizes))
    out = []
    for base_name in ("reference", "ultralytics"):
        base = result.row(base_name, "fp32")
        if base is None:
            continue
        for r in result.rows:
            if r.status != "ok" or r is base:
                continue
            e_r, e_b = r.e2e_p50(b1), base.e2e_p50(b1)
            t_r, t_b = r.throughput.get(big), base.throughput.get(big)
            out.append({"row": r.key, "baseline": base.key,
                        "e2e_p50_ms": e_r, "baseline_e2e_p50_ms": e_b,
                        "speedup_e2e_p50": e_b / e_r if e_r and e_b else None,
                        f"speedup_throughput_b{big}": t_r / t_b if t_r and t_b else None})
    goal = {"target": GOAL_RATIO, "row": "ort-cpu fp32", "baseline": "reference fp32", "ratio": None, "met": None}
    hit = next((c for c in out if c["row"] == "ort-cpu fp32" and c["baseline"] == "reference fp32"), None)
    if hit and hit["speedup_e2e_p50"] is not None:
        goal["ratio"] = hit["speedup_e2e_p50"]
        goal["met"] = hit["speedup_e2e_p50"] >= GOAL_RATIO
    return out, goal


H2H_ROWS = (("ort-cpu", "fp32"), ("ort-cpu", "int8-cpu"), ("torch", "fp32"), ("reference", "fp32"),
            ("ultralytics", "fp32"), ("ultralytics", "int8"))


def head_to_head(cfg: BenchConfig, result: BenchResult, checkpoint, imgsz, names, art, log) -> dict:
    """The baselines and our CPU pipelines timed interleaved in this process (drift-robust ratios);
    empty when the reference row did not run."""
    from ..data import load_dataset
    from .headtohead import interleaved, ratios
    from .worker import _close, open_pipeline

    rows = [(b, p) for b, p in H2H_ROWS if result.row(b, p) is not None]
    if ("reference", "fp32") not in rows or len(rows) < 2:
        return {}
    ds = load_dataset(cfg.val or "synthetic:val")
    images = [ds[i].image for i in range(min(cfg.timing_images, len(ds)))]
    rounds = 2 if cfg.quick else 5
    log(f"head-to-head: {', '.join(f'{b} {p}' for b, p in rows)} interleaved, {rounds} rounds x {len(images)} images")
    pipes, opened = {}, []
    try:
        for b, p in rows:
            model, _ = _row_models(b, p, checkpoint, art)
            pipe, _, _ = open_pipeline(_job(cfg, b, p, model, model, checkpoint, imgsz, names,
                                            art.nms if art is not None else None), model)
            pipes[f"{b} {p}"] = pipe
            opened.append(pipe)
        times = interleaved(pipes, images, rounds=rounds, warmup=2, progress=cfg.show_progress)
    finally:
        for pipe in opened:
            _close(pipe)
    out = {"rounds": rounds, "images": len(images), "times": times, "vs_reference": ratios(times, "reference fp32")}
    if "ultralytics fp32" in times:
        out["vs_ultralytics"] = ratios(times, "ultralytics fp32")
    return out


def method_notes(cfg: BenchConfig, art) -> list[str]:
    from .worker import runs_for

    b1, big = cfg.batch_sizes[0], max(cfg.batch_sizes)
    notes = [
        f"Latency: {cfg.warmup} warm-up then {cfg.runs} timed iterations at batch {b1} over {cfg.timing_images} "
        f"validation images" + "".join(f"; batch {b}: {runs_for(b, cfg.runs, cfg.warmup)[1]} warm-up then "
                                       f"{runs_for(b, cfg.runs, cfg.warmup)[0]} timed" for b in cfg.batch_sizes[1:])
        + ". pre = letterbox, "
        "infer = runner.infer (the model; decode and, for exports with NMS embedded, NMS inside), post = "
        "numpy NMS where the model has none + unletterbox; e2e = the whole iteration. Percentiles p50/p90/p99.",
        f"FPS = 1000 / mean e2e ms at batch {b1}; img/s at batch B = B x 1000 / mean e2e ms at B.",
        "Speed uses the deployed thresholds (score {score_threshold}, IoU {iou_threshold}, {max_det} per image: "
        "the NMS baked into the ONNX at export, the same thresholds in numpy for PyTorch and in the reference "
        "pipeline).".format(**((art.nms if art is not None and art.nms else None)
                               or {"score_threshold": 0.25, "iou_threshold": 0.45, "max_det": 100})),
        "Accuracy: the same weights and precision without NMS, then the numpy reference NMS with the evaluation "
        "thresholds (score 0.001, IoU 0.6, 300 per image), COCO mAP via pycocotools; ECE at IoU 0.5, 15 bins.",
        ("Memory: peak RSS of a fresh process per row (imports + model + timing loops at every batch size, before "
         "the accuracy pass); 'model RSS' = that peak minus the RSS just before the model was loaded." if cfg.isolate else
         "Memory: rows ran in one process (--in-process): only the RSS growth while loading and timing is shown."),
        f"Roofline: achieved GFLOP/s = model GFLOPs x images/s of the model stage alone at batch {big}; "
        "peak = best float32 matmul GFLOP/s of the device (GPU FP16/INT8 rows: the FP16 matmul peak).",
    ]
    if art is not None and art.calibration:
        c = art.calibration
        notes.append(f"INT8 calibrated on {c.get('images')} images of {c.get('source')} "
                     f"(data sha256 {str(c.get('data_sha256', ''))[:12]}…).")
    if cfg.quick:
        notes.append("QUICK RUN: few iterations and images, INT8 calibrated on few images without the mAP budget "
                     "loop; numbers only show that the benchmark runs.")
    return notes


__all__ = ["BenchConfig", "GOAL_RATIO", "PRECISIONS", "backend_status", "comparisons", "plan", "run_bench"]
