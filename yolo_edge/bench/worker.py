"""One benchmark row, meant to run in a fresh process: ``python -m yolo_edge.bench.worker < job.json``.

A fresh process per row makes the memory column fair: ``peak_rss_mb`` is the resident-set
high-water mark (``VmHWM``) of a process that imported only what the row needs (an ONNX Runtime row
never imports PyTorch), loaded the model and ran the timing loops at every batch size; the mark is
reset (``/proc/self/clear_refs``) once the timing images are loaded and read before the accuracy
pass (whose dataset and pycocotools would otherwise dominate). ``model_rss_mb`` is that peak minus
the RSS at the reset: what loading and running the model added. Run in-process (``isolate=False``)
only ``model_rss_mb`` is reported (the process's peak is the orchestrator's).

Order within a row: timing images -> model -> batch 1 (warm-up + timed, tegrastats power on a
Jetson) -> larger batches -> peak memory -> pipelined FPS (``yolo_edge.stream.pipeline``, when
installed) -> accuracy on the validation set (the NMS-free model + ``VAL_NMS``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from .results import Row


@dataclass
class RowJob:
    """Everything one row needs (JSON-ready)."""

    backend: str
    precision: str
    model: str  # what is timed: checkpoint (.pt), ONNX with NMS as exported, engine
    eval_model: str | None = None  # what is scored: the NMS-free ONNX / engine (None: ``model``)
    checkpoint: str | None = None
    imgsz: tuple = (640, 640)
    runs: int = 100
    warmup: int = 10
    batch_sizes: tuple = (1, 8)
    timing_images: int = 16
    val: str | None = "synthetic:val"
    val_images: int | None = None
    pipelined: bool = True
    threads: int | None = None
    names: tuple = ()
    nms: dict | None = None  # deployed thresholds (NmsSpec fields) for pipelines whose NMS is not in the model
    isolated: bool = False
    show_progress: bool = True
    extra: dict = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "RowJob":
        return cls(**json.loads(text))


def runs_for(batch: int, runs: int, warmup: int) -> tuple[int, int]:
    """``(timed, warm-up)`` iterations at ``batch``: about as many images as batch 1 sees, but at least
    20 timed iterations (``runs`` when fewer) and 2 warm-up ones (``warmup`` when fewer)."""
    if batch <= 1:
        return runs, warmup
    return max(min(20, runs), runs // batch), max(min(2, warmup), warmup // batch)


def _status_mb(key: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def peak_rss_mb() -> float:
    """High-water resident set of this process image: ``VmHWM`` (Linux; since the last
    :func:`reset_peak_rss`), else ``ru_maxrss`` (which on Linux also carries the parent's peak
    across fork + exec, so it is only a fallback)."""
    v = _status_mb("VmHWM")
    if v is not None:
        return v
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 2**20 if sys.platform == "darwin" else r / 1024  # bytes on macOS, KiB on Linux


def reset_peak_rss() -> bool:
    """Reset ``VmHWM`` to the current RSS (``echo 5 > /proc/self/clear_refs``, Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def current_rss_mb() -> float | None:
    return _status_mb("VmRSS")


def gpu_memory_mb() -> float | None:
    """This process's GPU memory from ``nvidia-smi`` (desktop GPUs; None elsewhere)."""
    import shutil
    import subprocess

    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[0] == str(os.getpid()):
            try:
                return float(parts[1])
            except ValueError:
                return None
    return None


def _device(backend: str) -> str:
    from .results import GPU_BACKENDS

    return "cuda" if backend in GPU_BACKENDS else "cpu"


def open_pipeline(job: RowJob, path: str, accuracy: bool = False):
    """``(callable images -> Detections, stage pipeline or None, Detector or None)`` of a row.
    ``accuracy`` opens it with the evaluation thresholds (``VAL_NMS``)."""
    from ..evaluate.validate import VAL_NMS
    from ..runtime import Detector
    from .timing import DetectorStages

    from ..spec import NmsSpec

    b = job.backend
    nms = VAL_NMS if accuracy else (NmsSpec(**job.nms) if job.nms else None)
    if job.threads and b in ("torch", "torch-cuda", "reference"):
        import torch

        torch.set_num_threads(job.threads)
    if b == "reference":
        from .reference import ReferencePipeline

        p = ReferencePipeline(path, job.imgsz, nms=nms)
        return p, p, None
    if b == "ultralytics":
        from .ultralytics_ref import UltralyticsPredictor

        p = UltralyticsPredictor(path, job.names, job.imgsz, nms=nms)
        return p, None, None
    if b in ("torch", "torch-cuda"):
        from ..runtime.torch_runner import TorchRunner

        runner = TorchRunner(path, imgsz=job.imgsz, device="cuda" if b == "torch-cuda" else "cpu")
    elif b in ("ort-cpu", "ort-cuda", "ort-trt"):
        from ..runtime.ort_runner import OrtRunner

        runner = OrtRunner(path, providers={"ort-cpu": "cpu", "ort-cuda": "cuda", "ort-trt": "tensorrt"}[b],
                           threads=job.threads)
    elif b == "tensorrt":
        from ..runtime.trt_runner import TrtRunner

        runner = TrtRunner(path)
    else:
        from ..errors import YoloEdgeError

        raise YoloEdgeError(f"unknown backend {b!r}")
    det = Detector(runner, nms=nms, max_batch=max(job.batch_sizes))
    return det, DetectorStages(det), det


def _close(obj) -> None:
    runner = getattr(obj, "runner", None)
    if runner is None:
        return
    try:
        runner.deactivate()
        if hasattr(runner, "close"):
            runner.close()
    except Exception:
        pass


def run_row(job: RowJob) -> Row:
    """Measure one row (see the module doc). Errors propagate; the caller records them."""
    from ..data import load_dataset
    from .device import PowerMeter
    from .timing import make_batches, time_stages

    t_start = time.perf_counter()
    row = Row(job.backend, job.precision, device=_device(job.backend), model=Path(job.model).name)
    p = Path(job.model)
    row.size_mb = p.stat().st_size / 1e6 if p.is_file() else None
    ds = load_dataset(job.val or "synthetic:val")
    images = [ds[i].image for i in range(min(job.timing_images, len(ds)))]
    if not images:
        from ..errors import YoloEdgeError

        raise YoloEdgeError(f"no images in {job.val} to time with")

    import gc

    gc.collect()
    reset_peak_rss()
    base_rss = current_rss_mb()
    call, stages, det = open_pipeline(job, job.model)
    tag = f"{job.backend} {job.precision}"
    desc = (lambda b: f"{tag} b{b}") if job.show_progress else (lambda b: None)
    with call:
        for b in job.batch_sizes:
            runs, warmup = runs_for(b, job.runs, job.warmup)
            batches = make_batches(images, b)
            meter = PowerMeter.create() if b == job.batch_sizes[0] else None
            if job.backend == "ultralytics":
                from .ultralytics_ref import time_ultralytics

                if meter:
                    time_ultralytics(call, batches, 0, warmup)  # warm up outside the power window
                    meter.start()
                stats = time_ultralytics(call, batches, runs, 0 if meter else warmup, desc=desc(b))
            else:
                if meter:
                    time_stages(stages, batches, 1, max(0, warmup - 1))
                    meter.start()
                stats = time_stages(stages, batches, runs, 0 if meter else warmup, desc=desc(b))
            row.latency[str(b)] = stats
            row.throughput[str(b)] = b * 1000.0 / stats["e2e"].mean
            row.infer_throughput[str(b)] = b * 1000.0 / stats["infer"].mean
            if meter:
                watts = meter.stop()
                row.power_w = watts
        first = str(job.batch_sizes[0])
        row.fps = 1000.0 / row.latency[first]["e2e"].mean * int(first)
        if row.power_w:
            row.fps_per_w = row.fps / row.power_w
        peak = peak_rss_mb()
        row.model_rss_mb = peak - base_rss if base_rss is not None else None
        if job.isolated:  # in-process, the peak is the orchestrator's (PyTorch and all) and means little
            row.peak_rss_mb = peak
        if row.device == "cuda":
            row.gpu_mem_mb = gpu_memory_mb()

        if job.pipelined and det is not None:
            try:
                from ..stream.pipeline import pipelined_fps  # type: ignore[import-not-found]
            except ImportError:
                row.note = _join(row.note, "pipelined FPS: yolo_edge.stream.pipeline not installed")
            else:
                frames = [images[i % len(images)] for i in range(max(job.runs, 16))]
                res = pipelined_fps(det, frames)
                fps = res.get("fps") if isinstance(res, dict) else res
                row.pipelined_fps = float(fps) if fps is not None else None

    if job.val_images != 0 and job.val:
        _close(call)
        acc_call, _, _ = open_pipeline(job, job.eval_model or job.model, accuracy=True)
        from ..evaluate.validate import evaluate_detector

        with acc_call:
            res = evaluate_detector(acc_call, ds, max_images=job.val_images, batch=max(job.batch_sizes),
                                    desc=f"val {tag}" if job.show_progress else "val")
        _close(acc_call)
        row.map50_95, row.map50 = _f(res.map50_95), _f(res.map50)
        row.ap_small, row.ap_medium, row.ap_large = _f(res.ap_small), _f(res.ap_medium), _f(res.ap_large)
        row.ece, row.n_val = _f(res.ece), int(res.n_images)
    row.seconds = time.perf_counter() - t_start
    return row


def _f(v) -> float | None:
    import math

    return float(v) if v is not None and math.isfinite(float(v)) else None


def _join(a: str, b: str) -> str:
    return f"{a}; {b}" if a else b


RESULT_PREFIX = "YOLO_EDGE_BENCH_ROW "


def main() -> int:
    """Read a :class:`RowJob` as JSON on stdin, print the row as one ``RESULT_PREFIX`` JSON line."""
    job = RowJob.from_json(sys.stdin.read())
    job.isolated = True
    try:
        row = run_row(job)
    except Exception as e:  # reported as a failed row, with the reason
        from ..errors import YoloEdgeError

        detail = str(e) if isinstance(e, YoloEdgeError) else f"{type(e).__name__}: {e}"
        if not isinstance(e, YoloEdgeError):
            traceback.print_exc(file=sys.stderr)
        row = Row(job.backend, job.precision, device=_device(job.backend), status="failed",
                  note=detail.splitlines()[0] if detail else type(e).__name__)
    sys.stdout.write(RESULT_PREFIX + json.dumps(row.to_dict()) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
