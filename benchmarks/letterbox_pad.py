"""The letterbox parity gap: mAP with pad value 114 (yolo-edge, Ultralytics) vs 0 (DeepStream nvinfer's
``symmetric-padding`` fills black), ONNX Runtime FP32 on CPU, everything else identical.

    python benchmarks/letterbox_pad.py [--data-dir ../shared/data] [--synthetic-images 200] [--out FILE.json]

Models and data:
  * ``yolov5n.onnx`` (../shared/data) adapted with ``--format yolov5 --nms none``, evaluated on the
    coco128 validation split (sorted file names, the last 64) with the val thresholds (score 0.001,
    IoU 0.6, 300 per image);
  * the bundled ``yolo11n-synth.pt`` exported to ONNX (``--nms none``) on ``synthetic:val``.

Writes one JSON with mAP50-95 / mAP50 per (model, pad) and the deltas.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def last64(ds):
    from yolo_edge.precision.pipeline import _Subset

    order = sorted(range(len(ds)), key=lambda i: os.path.basename(ds[i].path))
    return _Subset(ds, order[-64:])


def evaluate_pads(onnx_path, dataset, pads=(114, 0)):
    from yolo_edge.evaluate.validate import VAL_NMS, evaluate_detector
    from yolo_edge.runtime import Detector
    from yolo_edge.runtime.ort_runner import OrtRunner

    out = {}
    runner = OrtRunner(onnx_path)
    with runner:
        for pad in pads:
            det = Detector(runner, nms=VAL_NMS)
            det.spec = det.spec.replace(letterbox=dataclasses.replace(det.spec.letterbox, pad_value=pad))
            res = evaluate_detector(det, dataset, desc=f"pad {pad}")
            out[pad] = {"map50_95": round(float(res.map50_95), 4), "map50": round(float(res.map50), 4)}
            print(f"  pad {pad:3d}: mAP50-95 {out[pad]['map50_95']:.4f}  mAP50 {out[pad]['map50']:.4f}", flush=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--synthetic-images", type=int, default=200)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "letterbox_pad.json"))
    args = ap.parse_args(argv)

    from yolo_edge.data import load_dataset
    from yolo_edge.export import export_onnx
    from yolo_edge.export.adapters import adapt_onnx
    from yolo_edge.spec import NmsSpec

    results = {}
    data = Path(args.data_dir)
    with tempfile.TemporaryDirectory() as tmp:
        if (data / "yolov5n.onnx").is_file() and (data / "coco128").is_dir():
            print("yolov5n.onnx on coco128 (last 64, sorted names)", flush=True)
            ds = load_dataset(data / "coco128")
            onnx = adapt_onnx(data / "yolov5n.onnx", Path(tmp) / "yolov5n.none.onnx", fmt="yolov5",
                              nms=NmsSpec("none"), names=list(ds.names), verbose=False)
            results["yolov5n_coco128_last64"] = evaluate_pads(onnx, last64(ds))
        else:
            print(f"skipping yolov5n: {data}/yolov5n.onnx or coco128 not found", flush=True)
        print(f"bundled yolo11n-synth on synthetic:val:{args.synthetic_images}", flush=True)
        onnx = export_onnx(None, Path(tmp) / "synth.none.onnx", nms=NmsSpec("none"), verbose=False)
        results["yolo11n_synth_synthetic_val"] = evaluate_pads(
            onnx, load_dataset(f"synthetic:val:{args.synthetic_images}"))
    for r in results.values():
        r["delta_map50_95"] = round(r[0]["map50_95"] - r[114]["map50_95"], 4)
        r["delta_map50"] = round(r[0]["map50"] - r[114]["map50"], 4)
    doc = {"command": "python benchmarks/letterbox_pad.py " + " ".join(argv or sys.argv[1:]),
           "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, ONNX Runtime CPU FP32",
           "results": {k: {str(p): v for p, v in r.items()} for k, r in results.items()}}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from yolo_edge.util import atomic_write

    with atomic_write(out, "w") as f:
        json.dump(doc, f, indent=1)
    print(json.dumps(doc["results"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
