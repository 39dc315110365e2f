"""Real TensorRT on a real GPU (skipped here: markers needs_trt + needs_cuda). These replace the old
``test_real_build_and_parity_against_onnxruntime``, which asserted ``not r.strict and r.passed`` (it
could not fail) on a random-weight model.

They use the bundled trained model (``yolo11n-synth.pt``), both NMS flavours, and strict budgets:

* FP32 engine = ONNX Runtime on the same ONNX (TF32 off): level 1 at 1e-4, level 2 one to one;
* FP16 engine: level-2 match rate >= 0.98, mAP50-95 within 0.3 points of ONNX Runtime FP32;
* INT8 engine: level-2 match rate >= 0.95, mAP50-95 within the export budget (1.0 point) of FP32;
* ``--nms trt`` (EfficientNMS_TRT): loads in a fresh process (plugins registered), level-2 match
  rate >= 0.98 against the ``--nms onnx`` ONNX (the plugin's tie and threshold rules differ);
* INMSLayer cap: an NMS-only graph with 80 x 8400 candidates at score 0.001 gives exactly what ONNX
  Runtime gives (the graph pre-selects; NvInfer.h INMSLayer caps at 5000).

Run all of them (and the field report) on the device:  python -m pytest tests/test_trt_device.py -v
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.needs_trt, pytest.mark.needs_cuda]

IMGSZ = 320
DATA = "synthetic:val"
IMAGES = 64
MATCH = {"fp32": 1.0, "fp16": 0.98, "int8": 0.95}
MAP_BUDGET = {"fp32": 0.05, "fp16": 0.3}
INT8_EXPORT_BUDGET = 1.0  # yolo-edge export --int8 --max-map-drop (default)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """{(nms, precision): onnx path} of the bundled model, exported as `yolo-edge export --int8` does."""
    pytest.importorskip("torch")
    from yolo_edge.export import export_onnx
    from yolo_edge.precision import PrecisionConfig, run_precision
    from yolo_edge.spec import NmsSpec

    root = tmp_path_factory.mktemp("device")
    out = {}
    for nms in ("onnx", "trt", "none"):
        d = root / nms
        fp32 = export_onnx(None, d / "model.onnx", imgsz=(IMGSZ, IMGSZ), nms=NmsSpec(nms), verbose=False)
        # the budget loop holds the INT8 ONNX within INT8_EXPORT_BUDGET of FP32 on these validation images
        # (not for EfficientNMS_TRT, which ONNX Runtime cannot run)
        res = run_precision(fp32, PrecisionConfig(out_dir=str(d), calib="synthetic:calib", calib_images=128,
                                                  val=None if nms == "trt" else DATA, val_images=IMAGES,
                                                  max_map_drop=INT8_EXPORT_BUDGET, show_progress=False,
                                                  build_engines=False))
        assert res.within_budget is not False, res.table()
        out.update({(nms, "fp32"): fp32, (nms, "fp16"): res.paths["fp16"], (nms, "int8"): res.paths["int8"]})
    return out


@pytest.fixture(scope="module")
def engines(models):
    from yolo_edge.trt import BuildConfig, build

    out = {}
    for key, onnx_path in models.items():
        p = Path(onnx_path)
        out[key] = build(BuildConfig(p, p.with_suffix(".engine"), max_batch=4), log=None)
    return out


def _rate(r) -> float:
    m = r.metrics
    return m.get("det_matched", 0) / max(m.get("det_a", 0), m.get("det_b", 0), 1)


@pytest.mark.parametrize("nms", ["onnx", "none"])
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_engine_against_onnxruntime(models, engines, nms, precision):
    from yolo_edge.evaluate.parity import parity
    from yolo_edge.trt import verify

    res = engines[(nms, precision)]
    m = verify(res.engine)
    assert m["precision"] == precision and res.report is not None and res.report.detailed
    if precision == "int8":
        assert res.report.counts().get("INT8", 0) > 0, res.report.table()
    r = parity(models[(nms, precision)], res.engine, data=DATA, max_images=IMAGES, levels=(1, 2, 3),
               budget_map=MAP_BUDGET.get(precision, INT8_EXPORT_BUDGET))
    print(r.table())
    assert _rate(r) >= MATCH[precision], r.table()
    if precision == "fp32":
        assert r.strict and r.passed, r.table()
    delta = r.metrics["map50_95_b"] - r.metrics["map50_95_a"]
    assert delta >= -MAP_BUDGET.get(precision, INT8_EXPORT_BUDGET), r.table()
    if precision == "int8":  # within the export budget of the FP32 model, not only of its own ONNX
        r32 = parity(models[(nms, "fp32")], res.engine, data=DATA, max_images=IMAGES, levels=(3,),
                     budget_map=INT8_EXPORT_BUDGET)
        assert r32.passed, r32.table()


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_efficient_nms_engine(models, engines, precision):
    from yolo_edge.evaluate.parity import parity

    engine = engines[("trt", precision)].engine
    code = ("import sys; from yolo_edge.runtime.trt_runner import TrtRunner; r = TrtRunner(sys.argv[1]); "
            "r.activate(); print(r.output_names)")
    p = subprocess.run([sys.executable, "-c", code, str(engine)], capture_output=True, text=True)
    assert p.returncode == 0 and "det_classes" in p.stdout, p.stderr  # a fresh process: plugins registered
    r = parity(models[("onnx", precision)], engine, data=DATA, max_images=IMAGES, levels=(2, 3),
               budget_map=MAP_BUDGET.get(precision, INT8_EXPORT_BUDGET))
    print(r.table())
    assert _rate(r) >= max(0.98 if precision == "fp32" else MATCH[precision] - 0.02, 0.9), r.table()
    assert r.metrics["map50_95_b"] - r.metrics["map50_95_a"] >= -MAP_BUDGET.get(precision, INT8_EXPORT_BUDGET)


def test_inms_cap_does_not_change_detections(tmp_path):
    """80 classes x 8400 anchors at score 0.001: TensorRT == ONNX Runtime on the same file."""
    import onnx
    import onnxruntime as ort

    from yolo_edge.export.nms import nms_model
    from yolo_edge.runtime.trt_runner import TrtRunner
    from yolo_edge.spec import NmsSpec
    from yolo_edge.trt import BuildConfig, build

    spec = NmsSpec("onnx", score_threshold=0.001, iou_threshold=0.7, max_det=300)
    path = tmp_path / "nms.onnx"
    onnx.save(nms_model(spec, 80, 8400), str(path))
    build(BuildConfig(path, tmp_path / "nms.engine", max_batch=2), log=None)
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 600, (2, 8400, 2)).astype(np.float32)
    boxes = np.concatenate([xy, xy + rng.uniform(4, 120, (2, 8400, 2)).astype(np.float32)], -1)
    scores = (rng.random((2, 8400, 80), dtype=np.float32) ** 6).astype(np.float32)
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"in_boxes": boxes, "in_scores": scores})
    with TrtRunner(tmp_path / "nms.engine", check_manifest=False) as r:
        got = r.infer({"in_boxes": boxes, "in_scores": scores})
    np.testing.assert_array_equal(got["num_dets"], want[0])
    np.testing.assert_array_equal(got["det_classes"], want[3])
    np.testing.assert_allclose(got["det_scores"], want[2], atol=1e-6)
    np.testing.assert_allclose(got["det_boxes"], want[1], atol=1e-3)


def test_implicit_int8_and_runner(models, tmp_path):
    from yolo_edge.runtime.trt_runner import TrtRunner
    from yolo_edge.trt import BuildConfig, build
    from yolo_edge.trt.compat import TrtVersion, tensorrt

    cache = Path(models[("none", "fp32")]).parent / "calibration.cache"
    if not TrtVersion.of(tensorrt()).calibrators or not cache.is_file():
        pytest.skip("implicit INT8 needs TensorRT <= 10 and a calibration cache for its version")
    engine = tmp_path / "implicit.engine"
    build(BuildConfig(models[("none", "fp32")], engine, calibration_cache=cache, max_batch=2), log=None)
    x = np.random.default_rng(0).random((3, 3, IMGSZ, IMGSZ), dtype=np.float32)  # 3 > max batch 2: chunked
    with TrtRunner(engine) as r:
        out = r.infer({"images": x})
    assert out["boxes"].shape[0] == 3 and np.isfinite(out["scores"]).all()


def test_doctor_on_the_device(tmp_path):
    from yolo_edge.trt.doctor import DoctorConfig, run_doctor

    rep = run_doctor(DoctorConfig(out=tmp_path, imgsz=IMGSZ, max_images=16, calib_images=32))
    print(rep.markdown())
    assert rep.exit_code == 0, rep.markdown()
