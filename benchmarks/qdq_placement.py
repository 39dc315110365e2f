"""Q/DQ placement: TensorRT's recommendations (``trt``) against convolution inputs only (``conv``, the
earlier placement) on the same calibration, same ranges, same evaluator.

For each placement: ONNX Runtime CPU mAP of the FP32-scale INT8 graph, and for ``trt`` also of the
FP16-scale graph written for TensorRT >= 10; and the precision map of each INT8 file (TensorRT 10
and 8.6): share of convolution FLOPs in INT8, FP32 nodes outside the decode tail.

    python benchmarks/qdq_placement.py --from-onnx ../shared/data/yolov5n.onnx --format yolov5 \\
        --calib ../scratch/coco128-split/first64 --val ../scratch/coco128-split/last64 --out runs/qdq_placement

(coco128 split: sorted names, the first 64 images calibrate, the last 64 validate.) Without
``--from-onnx`` the bundled checkpoint is exported at 640 px. Writes ``<out>/results.json`` and
prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def _evaluate(model, tmp: Path, val_data: str, desc: str, n: int | None = None):
    """COCO metrics of an exported graph: NMS stripped, ONNX Runtime CPU + the reference NMS (the
    pipeline's evaluator)."""
    from yolo_edge.export.metadata import get_spec
    from yolo_edge.precision.calibration import ImageSet
    from yolo_edge.precision.graph import strip_nms
    from yolo_edge.precision.pipeline import _save, _Subset, _with_spec, evaluate_onnx
    from yolo_edge.spec import NmsSpec

    spec = get_spec(model)
    path = _save(_with_spec(strip_nms(model), spec.replace(nms=NmsSpec(flavour="none"))), tmp)
    val = ImageSet(val_data, n)
    try:
        return evaluate_onnx(path, _Subset(val.dataset, val.indices), desc=f"val {desc}")
    finally:
        path.unlink()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--from-onnx", default=None, help="third-party YOLO ONNX (default: the bundled checkpoint)")
    ap.add_argument("--format", default="auto")
    ap.add_argument("--calib", required=True)
    ap.add_argument("--val", required=True)
    ap.add_argument("--calib-images", type=int, default=64)
    ap.add_argument("--val-images", type=int, default=None, help="validation images (default: all)")
    ap.add_argument("--method", default=None, help="calibration method (default: the package default)")
    ap.add_argument("--out", default="runs/qdq_placement")
    args = ap.parse_args(argv)

    import onnx

    from yolo_edge.cli import main as cli
    from yolo_edge.precision.calibration import DEFAULT_METHOD
    from yolo_edge.precision.pipeline import PrecisionConfig, run_precision
    from yolo_edge.precision.precision_map import precision_map

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fp32 = out / "model.onnx"
    if not fp32.is_file():
        cmd = ["export", "--out", str(fp32)]
        cmd += ["--from-onnx", args.from_onnx, "--format", args.format] if args.from_onnx else []
        if cli(cmd) != 0:
            return 1
    method = args.method or DEFAULT_METHOD
    rows, maps = [], {}
    fp32_e = _evaluate(onnx.load(str(fp32)), out / "_eval_fp32.onnx", args.val, "fp32", args.val_images)
    for placement in ("trt", "conv"):  # trt first: its calibration covers conv's tensors (stats reused)
        t0 = time.perf_counter()
        cfg = PrecisionConfig(out_dir=out, name=placement, fp16=False, int8=True, calib=args.calib,
                              calib_images=args.calib_images, val=None, method=method, max_map_drop=None,
                              sensitivity="never", placement=placement, latency_runs=3, show_progress=False)
        res = run_precision(fp32, cfg)
        files = {"int8": res.paths["int8"]}
        if "int8_fp32scales" in res.paths:
            files["int8_fp32scales"] = res.paths["int8_fp32scales"]
        for key, path in files.items():
            scales = "fp32" if (key == "int8_fp32scales" or placement == "conv") else "fp16"
            m = onnx.load(str(path))
            e = _evaluate(m, out / f"_eval_{path.name}", args.val, path.name, args.val_images)
            m50_95, m50, small = e.map50_95, e.map50, e.ap_small
            pm10 = precision_map(m, "10")
            pm86 = precision_map(m, "8.6")
            maps[path.name] = {"10": pm10.summary(), "8.6": pm86.summary()}
            rows.append({"placement": placement, "file": path.name, "scales": scales, "map50_95": m50_95,
                         "map50": m50, "ap_small": small,
                         "delta_map50_95": 100 * (m50_95 - fp32_e.map50_95),
                         "trt10_conv_int8_pct": 100 * pm10.conv_int8_share,
                         "trt10_fp32_nodes_outside_tail": len(pm10.fp32_outside_tail),
                         "trt10_flops_pct": {k: round(100 * v, 2) for k, v in pm10.shares().items()},
                         "seconds": round(time.perf_counter() - t0, 1)})
    for r in rows:
        r["delta_ap_small"] = None if r["ap_small"] is None else 100 * (r["ap_small"] - fp32_e.ap_small)
    result = {"command": " ".join(["python", "benchmarks/qdq_placement.py", *(argv or sys.argv[1:])]),
              "method": method, "calib": args.calib, "calib_images": args.calib_images, "val": args.val,
              "val_images": args.val_images,
              "fp32": {"map50_95": fp32_e.map50_95, "map50": fp32_e.map50, "ap_small": fp32_e.ap_small},
              "rows": rows, "precision_maps": maps,
              "machine": "2-core AMD EPYC VM, CPU only, ONNX Runtime CPU provider (shared, under load)"}
    (out / "results.json").write_text(json.dumps(result, indent=1, default=str))
    print(f"FP32: mAP50-95 {100 * fp32_e.map50_95:.2f}, mAP50 {100 * fp32_e.map50:.2f}, AP small "
          f"{100 * fp32_e.ap_small:.2f}  (method {method})")
    print("| placement | file | scales | mAP50-95 | ΔmAP50-95 | mAP50 | ΔAP small | TRT 10: conv FLOPs INT8 | "
          "TRT 10: FP32 nodes outside decode tail |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        ds = "—" if r["delta_ap_small"] is None else f"{r['delta_ap_small']:+.2f}"
        print(f"| {r['placement']} | {r['file']} | {r['scales']} | {100 * r['map50_95']:.2f} | "
              f"{r['delta_map50_95']:+.2f} | {100 * r['map50']:.2f} | {ds} | {r['trt10_conv_int8_pct']:.1f} % | "
              f"{r['trt10_fp32_nodes_outside_tail']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
