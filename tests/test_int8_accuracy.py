"""Accuracy of the whole INT8 job on a real detector: yolov5n (COCO) on coco128 images.

The job (``run_precision``, default method) calibrates on images of the calibration split and is
scored by pycocotools on images of the validation split (the project convention: sorted names,
first 64 calibrate, last 64 validate; here 16 of each to keep the suite fast). It must stay within
``MAX_DROP`` points of FP32 — and a quantizer whose activation ranges are wrong must not: the
same job with sabotaged ranges (x0.02 everywhere; entropy's amax half what it should be) is run too and has to
fail that check, so the check is known to bite.

Skipped when ``../shared/data`` is absent.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("pycocotools")

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
pytestmark = pytest.mark.skipif(not (DATA / "yolov5n.onnx").is_file() or not (DATA / "coco128").is_dir(),
                                reason="../shared/data (yolov5n.onnx, coco128) not present")

N = 16  # images per split
MAX_DROP = 2.0  # mAP50-95 points; the default job measures about -0.5 on 64 images (README), sabotage -5 … -36


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    """coco128 split by the convention, as two YOLO datasets of links; and the adapted yolov5n."""
    from yolo_edge.export.adapters import adapt_onnx
    from yolo_edge.spec import NmsSpec

    root = tmp_path_factory.mktemp("coco128")
    names = sorted(p.name for p in (DATA / "coco128" / "images" / "train").iterdir())
    parts = {"calib": names[:64][:: 64 // N], "val": names[64:][:: 64 // N]}
    for split, files in parts.items():
        (root / split / "images").mkdir(parents=True)
        (root / split / "labels").mkdir(parents=True)
        for f in files:
            (root / split / "images" / f).symlink_to(DATA / "coco128" / "images" / "train" / f)
            lab = DATA / "coco128" / "labels" / "train" / (Path(f).stem + ".txt")
            if lab.is_file():
                (root / split / "labels" / lab.name).symlink_to(lab)
        (root / split / "data.yaml").symlink_to(DATA / "coco128" / "data.yaml")
    model = adapt_onnx(DATA / "yolov5n.onnx", root / "yolov5n.onnx", fmt="yolov5", nms=NmsSpec(), verbose=False)
    return root, model


def run_job(splits, out, method=None):
    from yolo_edge.precision.pipeline import PrecisionConfig, run_precision

    root, model = splits
    cfg = PrecisionConfig(out_dir=out, fp16=False, calib=str(root / "calib"), calib_images=None,
                          val=str(root / "val"), max_map_drop=None, sensitivity="never", latency_runs=1,
                          report_images=1, show_progress=False, build_engines=False, bootstrap=0,
                          **({"method": method} if method else {}))
    res = run_precision(model, cfg)
    by = {r.precision: r for r in res.rows}
    return 100.0 * (by["int8"].map50_95 - by["fp32"].map50_95), by["fp32"].map50_95


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory):
    """One output folder for every job: the sabotaged jobs reuse the calibration statistics (same
    key), the sabotage is in the ranges chosen from them."""
    return tmp_path_factory.mktemp("job")


@pytest.fixture(scope="module")
def honest(splits, out_dir):
    return run_job(splits, out_dir)


def test_default_int8_job_is_accurate_on_real_images(honest):
    drop, fp32 = honest
    print(f"default INT8 job: ΔmAP50-95 {drop:+.2f} points on {N} coco128 validation images")
    assert fp32 > 0.25  # yolov5n on coco128 images scores ~0.35-0.37: the set-up is right
    assert drop >= -MAX_DROP, f"INT8 lost {-drop:.2f} mAP50-95 points on real COCO images"


@pytest.mark.parametrize("sabotage", ["ranges x0.02", "entropy x0.5"])
def test_a_sabotaged_quantizer_fails_the_accuracy_check(splits, out_dir, monkeypatch, sabotage, honest):
    from yolo_edge.precision import amax as amax_mod
    from yolo_edge.precision import calibration

    if sabotage == "ranges x0.02":
        real = calibration.CalibrationStats.amax
        monkeypatch.setattr(calibration.CalibrationStats, "amax",
                            lambda self, *a, **k: {t: 0.02 * v for t, v in real(self, *a, **k).items()})
        method = None
    else:
        real = amax_mod.entropy_amax
        monkeypatch.setattr(calibration, "entropy_amax", lambda *a, **k: 0.5 * real(*a, **k))
        method = "entropy"
    drop, _ = run_job(splits, out_dir, method)
    print(f"{sabotage}: ΔmAP50-95 {drop:+.2f} points")
    assert drop < -MAX_DROP, f"{sabotage}: INT8 only lost {-drop:.2f} points; the check would not catch it"
