"""What a benchmark run produces: one :class:`Row` per backend x precision, and the run around them.

Plain dataclasses of JSON types (numbers, strings, lists, dicts with string keys), so that
``BenchResult.from_dict(json.loads(json.dumps(r.to_dict())))`` is ``r`` again.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .timing import Stats

BACKENDS = ("torch", "torch-cuda", "ort-cpu", "ort-cuda", "ort-trt", "tensorrt", "reference", "ultralytics")
LABELS = {
    "torch": "PyTorch CPU (Detector)",
    "torch-cuda": "PyTorch CUDA (Detector)",
    "ort-cpu": "ONNX Runtime CPU",
    "ort-cuda": "ONNX Runtime CUDA EP",
    "ort-trt": "ONNX Runtime TensorRT EP",
    "tensorrt": "TensorRT",
    "reference": "reference notebook (PyTorch eager)",
    "ultralytics": "Ultralytics ONNX predictor",
}
GPU_BACKENDS = ("torch-cuda", "ort-cuda", "ort-trt", "tensorrt")
FP32_ONLY = ("torch", "torch-cuda", "reference", "ultralytics")


@dataclass
class Row:
    """One backend x precision.

    Latency is per batch size (``latency["1"]["e2e"]`` is a :class:`Stats` in ms); ``fps`` is
    ``1000 / mean e2e ms`` at batch 1; ``throughput[b]`` is ``b * 1000 / mean e2e ms`` at batch b
    (pre + infer + post), ``infer_throughput[b]`` the same for the model stage alone.
    """

    backend: str
    precision: str
    device: str = "cpu"  # cpu | cuda
    status: str = "ok"  # ok | failed
    note: str = ""
    model: str = ""  # file timed (name only)
    size_mb: float | None = None
    latency: dict[str, dict[str, Stats]] = field(default_factory=dict)
    fps: float | None = None
    throughput: dict[str, float] = field(default_factory=dict)
    infer_throughput: dict[str, float] = field(default_factory=dict)
    pipelined_fps: float | None = None
    peak_rss_mb: float | None = None
    model_rss_mb: float | None = None
    gpu_mem_mb: float | None = None
    map50_95: float | None = None
    map50: float | None = None
    ap_small: float | None = None
    ap_medium: float | None = None
    ap_large: float | None = None
    ece: float | None = None
    n_val: int | None = None
    gflops: float | None = None
    achieved_gflops_s: float | None = None
    peak_gflops_s: float | None = None
    pct_peak: float | None = None
    peak_kind: str | None = None
    power_w: float | None = None
    fps_per_w: float | None = None
    seconds: float | None = None

    @property
    def key(self) -> str:
        return f"{self.backend} {self.precision}"

    @property
    def label(self) -> str:
        return f"{LABELS.get(self.backend, self.backend)} {self.precision.upper()}"

    def stage(self, name: str, batch: int | str = 1) -> Stats | None:
        return (self.latency.get(str(batch)) or {}).get(name)

    def e2e_p50(self, batch: int | str = 1) -> float | None:
        s = self.stage("e2e", batch)
        return s.p50 if s else None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["latency"] = {b: {k: s.to_dict() for k, s in st.items()} for b, st in self.latency.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Row":
        d = dict(d)
        d["latency"] = {str(b): {k: Stats.from_dict(s) for k, s in st.items()} for b, st in (d.get("latency") or {}).items()}
        for k in ("throughput", "infer_throughput"):
            d[k] = {str(b): v for b, v in (d.get(k) or {}).items()}
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class BenchResult:
    """A whole run: rows, skipped rows with reasons, the ratios against the baselines, context."""

    rows: list[Row]
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"backend", "precision", "reason"}
    comparisons: list[dict[str, Any]] = field(default_factory=list)
    goal: dict[str, Any] = field(default_factory=dict)
    head_to_head: dict[str, Any] = field(default_factory=dict)  # interleaved timing (headtohead.py)
    roofline: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    command: str = ""
    date: str = ""
    seconds: float | None = None
    version: str = ""

    def row(self, backend: str, precision: str = "fp32") -> Row | None:
        return next((r for r in self.rows if r.backend == backend and r.precision == precision and r.status == "ok"),
                    None)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["rows"] = [r.to_dict() for r in self.rows]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "BenchResult":
        d = dict(d)
        d["rows"] = [Row.from_dict(r) for r in d.get("rows", [])]
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


__all__ = ["BACKENDS", "BenchResult", "FP32_ONLY", "GPU_BACKENDS", "LABELS", "Row"]
