"""Benchmarks: latency per stage, FPS, memory, accuracy and roofline per backend and precision, against
the pipelines users would otherwise run (``yolo-edge bench`` ≡ ``python benchmarks/bench.py``).

    from yolo_edge.bench import BenchConfig, run_bench
    result = run_bench(BenchConfig(quick=True))

Importing this package needs numpy only; PyTorch, ONNX Runtime, TensorRT, matplotlib are imported
by the rows and the report that use them.
"""

from .results import BACKENDS, LABELS, BenchResult, Row
from .run import GOAL_RATIO, PRECISIONS, BenchConfig, backend_status, run_bench
from .timing import DetectorStages, StageTimer, Stats, percentiles, summarize, time_stages

__all__ = ["BACKENDS", "BenchConfig", "BenchResult", "DetectorStages", "GOAL_RATIO", "LABELS", "PRECISIONS", "Row",
           "StageTimer", "Stats", "backend_status", "percentiles", "run_bench", "summarize", "time_stages"]
