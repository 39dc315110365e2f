"""INT8 accuracy and calibration time: every calibration method, the default job with its budget,
and plain post-training quantization, against FP32 and FP16 on the synthetic validation set.

    python benchmarks/int8_accuracy.py                       # bundled checkpoint, 512 calib, 200 val
    python benchmarks/int8_accuracy.py --model best.pt --val-images 100 --out benchmarks/results/int8

Rows (mAP in points on the validation images; ONNX Runtime CPU; graphs without NMS + the numpy
reference NMS with the evaluation thresholds, the same for every row):

* ``fp32``, ``fp16`` — the export and its FP16 model (decode tail FP32);
* ``int8 <method>`` — YOLO-aware Q/DQ (Conv inputs, decode tail excluded), no further exclusions,
  for each calibration method (one calibration pass serves all four);
* ``int8 default`` — what ``yolo-edge export --int8`` ships: default method and the
  ``--max-map-drop 1.0`` loop;
* ``int8 plain`` — plain PTQ: every op type onnxruntime quantizes, nothing excluded (the decode
  tail, boxes and scores quantized too), default method where a histogram exists, min/max elsewhere.

Calibration time: the one statistics pass over the images (inference + ranges + histograms), and
the extra time each method takes to choose its ranges from them. Results go to ``--out`` as JSON
and Markdown with the command that made them; models, statistics and the report to ``--work``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout without installing

METHODS = ("minmax", "entropy", "percentile", "mse")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="checkpoint (default: the bundled one)")
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--calib", default="synthetic:calib")
    ap.add_argument("--calib-images", type=int, default=512)
    ap.add_argument("--val", default="synthetic:val")
    ap.add_argument("--val-images", type=int, default=None, help="default: all (200)")
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--max-map-drop", type=float, default=1.0)
    ap.add_argument("--out", default="benchmarks/results", help="where int8_accuracy.{json,md} go")
    ap.add_argument("--work", default="runs/benchmarks/int8", help="models, statistics and the report of the run")
    args = ap.parse_args(argv)

    import onnx

    from yolo_edge.export import export_onnx
    from yolo_edge.precision.calibration import ImageSet
    from yolo_edge.precision.graph import copy_model, find_decode_tail, prepare, strip_nms
    from yolo_edge.precision.int8 import Int8Config, activation_inputs, quantizable_nodes, quantize_qdq
    from yolo_edge.precision.pipeline import (PrecisionConfig, _Subset, evaluate_onnx, load_or_collect_stats,
                                              run_precision, stats_key)
    from yolo_edge.export.metadata import get_spec, set_metadata
    from yolo_edge.spec import NmsSpec
    from yolo_edge.util import sha256_file

    out = Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    results_dir = Path(args.out)
    results_dir.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    fp32 = export_onnx(args.model, out / "model.onnx", imgsz=args.imgsz, verbose=False)
    src = onnx.load(str(fp32))
    spec = get_spec(src)
    raw = prepare(strip_nms(src))
    tail = find_decode_tail(raw)
    nodes = quantizable_nodes(raw, exclude=tail.nodes)
    acts = activation_inputs(raw, nodes)

    # calibration: one pass, timed; then each method's range selection, timed
    calib = ImageSet(args.calib, args.calib_images)
    hashes = calib.hashes()
    key = stats_key(sha256_file(fp32), spec.letterbox, hashes)
    stats_path = out / "calibration.stats.npz"
    t = time.perf_counter()
    stats, _ = load_or_collect_stats(raw, calib, spec.letterbox, list(acts), key, stats_path, reuse=False)
    pass_s = time.perf_counter() - t
    timing = {"images": stats.n_images, "pass_seconds": round(pass_s, 2), "inference_and_stats_seconds":
              round(stats.seconds, 2), "method_seconds": {}}
    amaxes = {}
    for m in METHODS:
        t = time.perf_counter()
        amaxes[m] = stats.amax(m, names=acts)
        timing["method_seconds"][m] = round(time.perf_counter() - t, 3)
    print(f"calibration: {stats.n_images} images in {pass_s:.1f} s (one pass for every method); range selection "
          + ", ".join(f"{m} {s:.2f} s" for m, s in timing["method_seconds"].items()), flush=True)

    val = ImageSet(args.val, args.val_images)
    val_ds = _Subset(val.dataset, val.indices)
    eval_spec = spec.replace(nms=NmsSpec(flavour="none"))

    def evaluate(model, precision, tag):
        p = out / f"eval.{tag}.onnx"
        m = copy_model(model)
        set_metadata(m, eval_spec.replace(precision=precision))
        onnx.save(m, str(p))
        r = evaluate_onnx(p, val_ds, desc=f"val {tag}")
        p.unlink()
        return r

    rows = []
    # the default job (FP32, FP16, INT8 with budget): reuses the statistics saved above (same key)
    cfg = PrecisionConfig(out_dir=out, calib=args.calib, calib_images=args.calib_images, val=args.val,
                          val_images=args.val_images, max_map_drop=args.max_map_drop)
    t = time.perf_counter()
    job = run_precision(fp32, cfg)
    job_s = time.perf_counter() - t
    by = {r.precision: r for r in job.rows}
    fp32_map = by["fp32"].map50_95
    for r in job.rows:
        rows.append({"row": r.precision if r.precision != "int8" else "int8 default", "map50_95": r.map50_95,
                     "map50": r.map50, "size_mb": r.size_mb, "latency_ms": r.latency_ms,
                     "excluded": [e["node"] for e in job.excluded] if r.precision == "int8" else None})
    for m in args.methods:
        q = quantize_qdq(raw, amaxes[m], Int8Config(method=m), tail.nodes)
        r = evaluate(q, "int8", m)
        rows.append({"row": f"int8 {m}", "map50_95": r.map50_95, "map50": r.map50})
        print(f"int8 {m}: mAP50-95 {100 * r.map50_95:.2f}", flush=True)
    plain_amax = {k: v.absmax for k, v in stats.tensors.items()}
    plain_amax.update(stats.amax(cfg.method, names=acts))
    q = quantize_qdq(raw, plain_amax, Int8Config(op_types=()), ())
    r = evaluate(q, "int8", "plain")
    rows.append({"row": "int8 plain PTQ (all ops, nothing excluded)", "map50_95": r.map50_95, "map50": r.map50})
    for row in rows:
        row["delta_map50_95"] = None if row["map50_95"] is None else 100 * (row["map50_95"] - fp32_map)

    result = {"command": " ".join(["python", "benchmarks/int8_accuracy.py", *(argv or sys.argv[1:])]),
              "model": str(args.model or "bundled"), "imgsz": args.imgsz, "calibration": timing,
              "val": {"source": args.val, "images": len(val_ds)}, "default_job_seconds": round(job_s, 1),
              "rows": rows, "machine": platform.platform(), "python": platform.python_version(),
              "total_seconds": round(time.perf_counter() - t_all, 1)}
    (results_dir / "int8_accuracy.json").write_text(json.dumps(result, indent=1))
    lines = [f"# INT8 accuracy ({result['model']}, {args.imgsz} px, {len(val_ds)} validation images)", "",
             f"`{result['command']}`", "",
             "| model | mAP50-95 | mAP50 | ΔmAP50-95 (points) |", "|---|---:|---:|---:|"]
    for row in rows:
        f = (lambda v: "—" if v is None else f"{100 * v:.2f}")
        d = "—" if row["delta_map50_95"] is None else f"{row['delta_map50_95']:+.2f}"
        lines.append(f"| {row['row']} | {f(row['map50_95'])} | {f(row['map50'])} | {d} |")
    lines += ["", f"Calibration: {stats.n_images} images, one pass {pass_s:.1f} s; range selection "
              + ", ".join(f"{m} {s:.2f} s" for m, s in timing["method_seconds"].items()) + ".",
              f"Default job (`yolo-edge export --int8` after export): {job_s:.0f} s; layers it kept in higher "
              f"precision: {', '.join(e['node'] for e in job.excluded) or 'none'}.", ""]
    (results_dir / "int8_accuracy.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
