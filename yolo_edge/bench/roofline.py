"""Roofline: the model's GFLOPs against the device's measured matmul peak.

* **Peak**: a matmul probe. Square ``float32`` matrices of a few sizes, multiplied with numpy (the
  BLAS numpy links) and with PyTorch (its own BLAS / oneDNN) on the CPU, and with PyTorch on a CUDA
  GPU when one is visible (``float32`` with TF32 off, and ``float16``); the best GFLOP/s of
  ``repeats`` tries per size is the peak. A matmul of ``n x n`` by ``n x n`` counts ``2 n^3`` FLOPs.
* **Model**: :func:`yolo_edge.model.gflops` at the benchmark's input size (2 x multiply-adds of the
  convolutions, linear layers and attention matmuls, for one image).
* **Achieved**: ``GFLOPs x images/s`` of the model stage (``runner.infer`` alone) at the largest
  batch measured; ``% of peak`` = achieved / peak of the row's device.

A convolutional detector at batch 1-8 is far from a large matmul's efficiency (small channel
counts, depthwise layers, memory-bound activations), so tens of percent on a CPU and a few percent
on a big GPU are normal; the column says how much headroom the device has, not a bug.
"""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np

DEFAULT_SIZES = (256, 512, 1024, 2048)


def matmul_gflops(fn, n: int, repeats: int = 5, min_seconds: float = 0.05) -> float:
    """Best GFLOP/s of ``fn()`` (one ``n x n`` @ ``n x n`` matmul) over ``repeats`` timed batches
    (each batch runs ``fn`` enough times to take at least ``min_seconds``)."""
    fn()  # warm-up (allocation, thread pool start)
    t = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t, 1e-9)
    inner = max(1, int(min_seconds / one))
    best = 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(inner):
            fn()
        dt = time.perf_counter() - t
        best = max(best, 2.0 * n**3 * inner / dt / 1e9)
    return best


def cpu_peak(sizes: Sequence[int] = DEFAULT_SIZES, repeats: int = 5, use_torch: bool = True) -> dict:
    """CPU float32 matmul peak: ``{"gflops": best, "by": {"numpy": {n: GFLOP/s}, "torch": {...}}}``."""
    rng = np.random.default_rng(0)
    by: dict[str, dict[int, float]] = {"numpy": {}}
    for n in sizes:
        a = rng.random((n, n), dtype=np.float32)
        b = rng.random((n, n), dtype=np.float32)
        out = np.empty((n, n), np.float32)
        by["numpy"][n] = matmul_gflops(lambda: np.matmul(a, b, out=out), n, repeats)
    from ..deps import available

    if use_torch and available("torch"):
        import torch

        by["torch"] = {}
        with torch.inference_mode():
            for n in sizes:
                a = torch.rand(n, n)
                b = torch.rand(n, n)
                out = torch.empty(n, n)
                by["torch"][n] = matmul_gflops(lambda: torch.mm(a, b, out=out), n, repeats)
    best = max(v for d in by.values() for v in d.values())
    return {"gflops": best, "by": {k: {str(n): round(v, 2) for n, v in d.items()} for k, d in by.items()},
            "dtype": "float32", "method": f"square matmul {list(sizes)}, best of {repeats}"}


def cuda_peak(sizes: Sequence[int] = (1024, 2048, 4096, 8192), repeats: int = 5) -> dict | None:
    """CUDA matmul peaks through PyTorch: ``{"fp32": GFLOP/s (TF32 off), "fp16": GFLOP/s}``, or None."""
    from ..deps import available

    if not available("torch"):
        return None
    import torch

    if not torch.cuda.is_available():
        return None
    out = {}
    prev = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        for name, dtype in (("fp32", torch.float32), ("fp16", torch.float16)):
            best = 0.0
            for n in sizes:
                a = torch.rand(n, n, device="cuda", dtype=dtype)
                b = torch.rand(n, n, device="cuda", dtype=dtype)

                def fn():
                    torch.mm(a, b)
                    torch.cuda.synchronize()

                best = max(best, matmul_gflops(fn, n, repeats))
                del a, b
            out[name] = best
    finally:
        torch.backends.cuda.matmul.allow_tf32 = prev
        torch.cuda.empty_cache()
    out["gpu"] = torch.cuda.get_device_name(0)
    out["method"] = f"torch.mm square {list(sizes)}, best of {repeats}, TF32 off"
    return out


def model_gflops(checkpoint, imgsz) -> float | None:
    """GFLOPs of one forward pass of the checkpoint at ``imgsz`` (None without PyTorch)."""
    from ..deps import available

    if not available("torch"):
        return None
    from ..model import gflops, load_checkpoint

    return float(gflops(load_checkpoint(checkpoint), tuple(imgsz)))


def achieved(gflops: float | None, images_per_s: float | None, peak: float | None = None) -> tuple:
    """``(achieved GFLOP/s, % of peak)``; None where an input is missing."""
    if gflops is None or images_per_s is None:
        return None, None
    a = gflops * images_per_s
    return a, (100.0 * a / peak if peak else None)


def peak_for(peaks: dict, device: str, precision: str) -> tuple[float | None, str]:
    """The peak a row is held to: CPU float32, or the GPU's fp16 peak for fp16/int8 rows, fp32 else."""
    if device == "cpu":
        cpu = peaks.get("cpu") or {}
        return cpu.get("gflops"), "CPU fp32 matmul"
    gpu = peaks.get("cuda") or {}
    if precision in ("fp16", "int8") and gpu.get("fp16"):
        return gpu["fp16"], "GPU fp16 matmul"
    return gpu.get("fp32"), "GPU fp32 matmul"


__all__ = ["DEFAULT_SIZES", "achieved", "cpu_peak", "cuda_peak", "matmul_gflops", "model_gflops", "peak_for"]
