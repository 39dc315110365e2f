#!/usr/bin/env python3
"""Thin wrapper: ``python export/export.py ARGS`` is ``yolo-edge export ARGS``.

Works from a source checkout without installing (the repository root is put on ``sys.path`` when
``yolo_edge`` is not importable). See ``yolo-edge export --help`` for the options.
"""

import sys
from pathlib import Path

try:
    import yolo_edge  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from yolo_edge.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["export", *sys.argv[1:]]))
