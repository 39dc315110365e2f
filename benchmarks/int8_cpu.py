#!/usr/bin/env python3
"""INT8 on a CPU: our ONNX Runtime CPU INT8 target against FP32, the TensorRT-target INT8 graph and
Ultralytics (its FP32 ONNX predictor and its own INT8 ONNX export), end to end, interleaved.

    python benchmarks/int8_cpu.py                                   # bundled checkpoint
    python benchmarks/int8_cpu.py --from-onnx ../shared/data/yolov5n.onnx --format yolov5

Data: for a COCO model (80 classes) the coco128 split of ``../shared/data`` when present (sorted
names, first 64 calibrate, last 64 validate; budget 0.7 mAP points), else synthetic:calib /
synthetic:val (budget 1.0). The Ultralytics
rows need ``ultralytics`` importable: run this script with the side venv's Python (its torch and
torchvision do not import beside the main install's CPU torch), e.g.
``YOLO_OFFLINE=1 PYTHONPATH=$PWD /work/venv-ultra/bin/python benchmarks/int8_cpu.py``.
Nothing is downloaded. The logic is :mod:`yolo_edge.bench.int8_cpu`; results go to
``benchmarks/results/<device>/<date>-int8-cpu-<model>/`` (JSON, Markdown, command).
"""

import argparse
import datetime as dt
import os
import shlex
import sys
from pathlib import Path

try:
    import yolo_edge  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("YOLO_OFFLINE", "1")  # Ultralytics: no update checks, no downloads

from yolo_edge.bench.int8_cpu import Int8CpuBenchConfig, run_int8_cpu_bench  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="yolo-edge checkpoint (default: bundled)")
    p.add_argument("--from-onnx", default=None, help="a third-party YOLO ONNX to adapt instead")
    p.add_argument("--format", dest="src_format", default="auto", choices=("auto", "yolov8", "yolov5"))
    p.add_argument("--calib", default=None, help="calibration data (default: coco128 first 64, else synthetic:calib)")
    p.add_argument("--val", default=None, help="validation data (default: coco128 last 64, else synthetic:val)")
    p.add_argument("--calib-images", type=int, default=None)
    p.add_argument("--val-images", type=int, default=None)
    p.add_argument("--max-map-drop", type=float, default=None, help="budget (default 0.7 on coco128, else 1.0)")
    p.add_argument("--rounds", type=int, default=6, help="head-to-head rounds (default 6)")
    p.add_argument("--images", type=int, default=8, help="validation images per round (default 8)")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads (default: its own)")
    p.add_argument("--no-ultralytics", action="store_true")
    p.add_argument("--no-ort-recipe", action="store_true",
                   help="skip the row of ONNX Runtime's own quantize_static recipe (issue 13's reference)")
    p.add_argument("--trt-target", action="store_true", help="also the TensorRT-target INT8 graph (slow on a CPU)")
    p.add_argument("--work", default=None, help="models and intermediate files (default runs/bench-int8-cpu/<model>)")
    p.add_argument("--out", default=None, help="results folder (default benchmarks/results/<device>/<date>-int8-cpu-"
                                                "<model>)")
    a = p.parse_args(argv)
    name = Path(a.from_onnx or a.model or "bundled").stem
    out = a.out
    if out is None:
        from yolo_edge.bench.device import device_context, device_slug

        root = Path(__file__).resolve().parent / "results"
        out = root / device_slug(device_context(gpu=False)) / f"{dt.date.today():%Y-%m-%d}-int8-cpu-{name}"
    cfg = Int8CpuBenchConfig(model=a.model, from_onnx=a.from_onnx, src_format=a.src_format, calib=a.calib, val=a.val,
                             calib_images=a.calib_images, val_images=a.val_images, max_map_drop=a.max_map_drop,
                             rounds=a.rounds, images=a.images, threads=a.threads, ultralytics=not a.no_ultralytics,
                             ort_recipe=not a.no_ort_recipe, trt_target=a.trt_target,
                             work=a.work or f"runs/bench-int8-cpu/{name}", out=str(out),
                             command="python benchmarks/int8_cpu.py " + " ".join(shlex.quote(x) for x in
                                                                                 (argv or sys.argv[1:])))
    res = run_int8_cpu_bench(cfg)
    from yolo_edge.bench.int8_cpu import int8_cpu_markdown

    print(int8_cpu_markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
