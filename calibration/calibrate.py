#!/usr/bin/env python3
"""Thin wrapper: ``python calibration/calibrate.py ARGS`` is ``yolo-edge calibrate ARGS``.

Writes the INT8 Q/DQ model, the per-layer report (``report/report.html``, ``report.json``,
``ranges.png``, ``histograms.png``, ``sqnr.png``) and TensorRT's legacy ``calibration.cache``
(+ its key ``calibration.cache.json``) into ``--out-dir`` (default ``runs/calibrate``). See
``calibration/README.md`` for choosing calibration images and ``yolo-edge calibrate --help``.
"""

import sys
from pathlib import Path

try:
    import yolo_edge  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from yolo_edge.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["calibrate", *sys.argv[1:]]))
