#!/usr/bin/env python3
"""Thin wrapper: ``python benchmarks/bench.py ARGS`` is ``yolo-edge bench ARGS``.

Every available backend x precision (PyTorch, ONNX Runtime CPU/CUDA/TensorRT EP, TensorRT; FP32,
FP16, INT8) against the reference PyTorch eager pipeline and Ultralytics' ONNX predictor: latency per
stage, FPS, memory, mAP, roofline. Results go to ``benchmarks/results/<device>/<date>/``.

    python benchmarks/bench.py                 # the full run (about 10-15 min on 2 CPU cores)
    python benchmarks/bench.py --quick         # check that everything runs
    python benchmarks/bench.py --onnx-dir runs/export   # reuse `python export/export.py --int8` models

Works from a source checkout without installing (the repository root is put on ``sys.path`` when
``yolo_edge`` is not importable). See ``yolo-edge bench --help`` for the options.
"""

import sys
from pathlib import Path

try:
    import yolo_edge  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from yolo_edge.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
