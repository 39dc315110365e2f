"""Does the in-graph NMS pre-selection (issue 14, item 2) change detections or mAP?

TensorRT's INMSLayer considers only the best 5000 candidates of an image (NvInfer.h, INMSLayer), so
the ``--nms onnx`` graph now hands NonMaxSuppression at most 3839 (anchor, class) candidates
(TopK, K < 3840). This script exports the same model with the graph before the change (the
``_onnx_nms`` of commit bfc95e2, read from git) and after it, runs both in ONNX Runtime (CPU) and
reports:

* deploy thresholds (score 0.25, IoU 0.45, 100 per image): images whose detections differ at all;
* evaluation thresholds (score 0.001, IoU 0.6, 300 per image): mAP50-95 / mAP50 (pycocotools).

Models and data: the bundled yolo11n-synth.pt at 640 on synthetic:val; yolov5n.onnx (adapted, 640)
on coco128's last 64 images (sorted names; ../shared/data). One command:

    python benchmarks/nms_preselect.py --out benchmarks/results/nms_preselect.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OLD_COMMIT = "bfc95e2"
DEPLOY = dict(score_threshold=0.25, iou_threshold=0.45, max_det=100)
EVAL = dict(score_threshold=0.001, iou_threshold=0.6, max_det=300)


def old_onnx_nms():
    src = subprocess.check_output(["git", "-C", str(ROOT), "show", f"{OLD_COMMIT}:yolo_edge/export/nms.py"], text=True)
    src = src.replace("from ..deps", "from yolo_edge.deps").replace("from ..errors", "from yolo_edge.errors")
    src = src.replace("from ..spec", "from yolo_edge.spec")
    mod = types.ModuleType("old_nms")
    exec(compile(src, "old_nms.py", "exec"), mod.__dict__)
    return mod._onnx_nms


class Last:
    """The last ``n`` samples of a YOLO dataset (its items are in sorted file-name order)."""

    def __init__(self, ds, n):
        self.ds = ds
        self.idx = list(range(max(0, len(ds) - n), len(ds)))
        self.names = getattr(ds, "names", ())

    def __len__(self):
        return len(self.idx)

    def __getitem__(self, i):
        return self.ds[self.idx[i]]


def export(kind: str, spec, graph: str, d: Path, names, yolov5: Path) -> Path:
    import yolo_edge.export.nms as nms_mod

    new = nms_mod._onnx_nms
    if graph == "old":
        old = old_onnx_nms()
        nms_mod._onnx_nms = lambda G, b, s, n, *a: old(G, b, s, n)
    try:
        out = d / f"{kind}_{graph}_{spec.score_threshold}.onnx"
        if kind == "bundled":
            from yolo_edge.export import export_onnx

            return export_onnx(None, out, imgsz=(640, 640), nms=spec, verbose=False)
        from yolo_edge.export import adapt_onnx

        return adapt_onnx(yolov5, out, fmt="yolov5", nms=spec, names=tuple(names), verbose=False)
    finally:
        nms_mod._onnx_nms = new


def dataset(kind: str, coco: Path):
    from yolo_edge.data import load_dataset

    if kind == "bundled":
        return load_dataset("synthetic:val")
    return Last(load_dataset(str(coco)), 64)


def detections(path, ds):
    from yolo_edge.runtime import Detector
    from yolo_edge.runtime.ort_runner import OrtRunner

    out = []
    with Detector(OrtRunner(path)) as det:
        for s in range(0, len(ds), 8):
            out += det([ds[i].image for i in range(s, min(len(ds), s + 8))])
    return out


def main(argv=None):
    from yolo_edge.evaluate.validate import evaluate_detector
    from yolo_edge.runtime import Detector
    from yolo_edge.runtime.ort_runner import OrtRunner
    from yolo_edge.spec import NmsSpec

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--coco", default=str(ROOT.parent / "shared" / "data" / "coco128"))
    p.add_argument("--yolov5", default=str(ROOT.parent / "shared" / "data" / "yolov5n.onnx"))
    p.add_argument("--out", default=None)
    p.add_argument("--only", choices=("bundled", "yolov5n"), default=None, help="one model (merged into --out)")
    args = p.parse_args(argv)
    coco, yolov5 = Path(args.coco), Path(args.yolov5)
    kinds = ["bundled"] + (["yolov5n"] if coco.is_dir() and yolov5.is_file() else [])
    kinds = [k for k in kinds if args.only in (None, k)]
    results = {"command": "python benchmarks/nms_preselect.py" + (f" --out {args.out}" if args.out else ""),
               "machine": "2-core AMD EPYC VM, CPU only, ONNX Runtime CPUExecutionProvider (shared, under load)",
               "old_graph": f"yolo_edge/export/nms.py at {OLD_COMMIT}", "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        for kind in kinds:
            ds = dataset(kind, coco)
            r = {"data": "synthetic:val" if kind == "bundled" else "coco128 last 64 (sorted names)", "images": len(ds)}
            spec = NmsSpec("onnx", **DEPLOY)
            a, b = (detections(export(kind, spec, g, d, ds.names, yolov5), ds) for g in ("old", "new"))
            diff = [i for i, (x, y) in enumerate(zip(a, b)) if len(x) != len(y) or not (
                np.array_equal(x.class_ids, y.class_ids) and np.array_equal(x.scores, y.scores)
                and np.array_equal(x.xyxy, y.xyxy))]
            r["deploy"] = {**DEPLOY, "images_differing": len(diff), "detections_old": sum(map(len, a)),
                           "detections_new": sum(map(len, b))}
            spec = NmsSpec("onnx", **EVAL)
            for g in ("old", "new"):
                t0 = time.perf_counter()
                with Detector(OrtRunner(export(kind, spec, g, d, ds.names, yolov5))) as det:
                    ev = evaluate_detector(det, ds, desc=f"{kind} {g}")
                r[f"eval_{g}"] = {**EVAL, "map50_95": round(100 * ev.map50_95, 3), "map50": round(100 * ev.map50, 3),
                                  "seconds": round(time.perf_counter() - t0, 1)}
            r["delta_map50_95"] = round(r["eval_new"]["map50_95"] - r["eval_old"]["map50_95"], 3)
            results["models"][kind] = r
            print(json.dumps({kind: r}, indent=1), flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        if args.only and Path(args.out).is_file():  # keep the other model's numbers
            old = json.loads(Path(args.out).read_text())
            results["models"] = {**old.get("models", {}), **results["models"]}
            results["command"] = "python benchmarks/nms_preselect.py --out " + args.out
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
