#!/usr/bin/env python3
"""Where an ONNX model's time goes in ONNX Runtime on a CPU: kernel time per operator type, at
each thread count, from ONNX Runtime's own profiler.

    python benchmarks/ort_op_profile.py runs/bench-int8-cpu/yolov5n/yolov5n.onnx \\
        runs/bench-int8-cpu/yolov5n/yolov5n.int8-cpu.onnx --threads 1 2

One letterboxed image (a coco128 photo when ``../shared/data`` is present, else a synthetic scene)
runs ``--runs`` times per model and thread count after ``--warmup`` runs; the table gives the mean
kernel milliseconds per run of the top operator types (after ONNX Runtime's graph fusions, so
``QLinearConv`` etc. for a fused INT8 graph) and how much each gains from the threads. The
profiler adds its own overhead: compare the shares and the scaling, not the absolute time.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout without installing

COCO = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "coco128" / "images" / "train"


def _image(size: int):
    from yolo_edge.data import load_dataset
    from yolo_edge.letterbox import letterbox, read_image

    photos = sorted(COCO.glob("*.jpg")) if COCO.is_dir() else []
    img = read_image(photos[len(photos) // 2]) if photos else load_dataset("synthetic:val")[0].image
    return letterbox(img, size)[0][None]


def profile(path: str, threads: int, x, runs: int, warmup: int) -> dict[str, float]:
    """``{op type: mean kernel ms per run}`` from ONNX Runtime's profiler."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        so.profile_file_prefix = str(Path(tmp) / "prof")
        s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        name = s.get_inputs()[0].name
        for _ in range(warmup):
            s.run(None, {name: x})
        for _ in range(runs):
            s.run(None, {name: x})
        f = s.end_profiling()
        events = json.loads(Path(f).read_text())
    by = collections.defaultdict(float)
    kernels = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    for e in kernels[-len(kernels) * runs // (runs + warmup):]:  # the timed runs only
        by[e["args"]["op_name"]] += e["dur"] / 1000.0 / runs
    return dict(by)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--top", type=int, default=10)
    a = p.parse_args(argv)
    import onnx

    for path in a.models:
        dims = onnx.load(path, load_external_data=False).graph.input[0].type.tensor_type.shape.dim
        x = _image(int(dims[-1].dim_value or 640))
        res = {t: profile(path, t, x, a.runs, a.warmup) for t in a.threads}
        first, last = a.threads[0], a.threads[-1]
        ops = sorted(res[first], key=lambda k: -res[first][k])[: a.top]
        print(f"\n{path}")
        print("| op type | " + " | ".join(f"{t} thread(s) ms" for t in a.threads) + f" | gain {first}->{last} |")
        print("|---|" + "---:|" * (len(a.threads) + 1))
        for op in ops:
            v = [res[t].get(op, 0.0) for t in a.threads]
            gain = f"{v[0] / v[-1]:.2f}×" if v[-1] else "—"
            print(f"| {op} | " + " | ".join(f"{x_:.2f}" for x_ in v) + f" | {gain} |")
        tot = [sum(res[t].values()) for t in a.threads]
        print("| **all kernels** | " + " | ".join(f"**{x_:.2f}**" for x_ in tot) + f" | {tot[0] / tot[-1]:.2f}× |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
