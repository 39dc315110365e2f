"""Parity (DESIGN §6): a tiny checkpoint against its ONNX export passes levels 1–3; a perturbed
second model fails with exit code 2 and a table that says why; NMS-embedded models skip level 1;
FP16/INT8-style pairs report drift; a (fake) TensorRT engine runs through the TensorRT runner and
matches ONNX Runtime."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import _fit_batchnorm

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("pycocotools")

sys.path.insert(0, str(Path(__file__).parent))
from fake_tensorrt import make_fake_trt  # noqa: E402

from yolo_edge.cli import main  # noqa: E402
from yolo_edge.errors import YoloEdgeError  # noqa: E402
from yolo_edge.evaluate.parity import ParityConfig, ParityResult, _level3, parity  # noqa: E402
from yolo_edge.spec import NmsSpec  # noqa: E402

DATA = "synthetic:val"
N = 4


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models: one torch thread is faster, and kind to a busy machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A random 8-class YOLO11n at 64 px whose BatchNorm statistics were measured on a few images
    (so activations do not vanish and scores differ between anchors), its raw-output ONNX, the same
    ONNX with NMS embedded, and a copy of the ONNX with one weight tensor perturbed."""
    from yolo_edge.data import SYNTHETIC_NAMES, load_dataset
    from yolo_edge.export import add_nms, export_onnx, get_spec, set_metadata
    from yolo_edge.letterbox import letterbox_batch
    from yolo_edge.model import YOLO, ModelConfig, save_checkpoint

    d = tmp_path_factory.mktemp("parity")
    torch.manual_seed(0)
    model = YOLO(ModelConfig(scale="n", nc=len(SYNTHETIC_NAMES), names=list(SYNTHETIC_NAMES)))
    calib = load_dataset("synthetic:calib")
    x, _ = letterbox_batch([calib[i].image for i in range(32)], 64)
    _fit_batchnorm(model, torch.from_numpy(x))
    with torch.no_grad():
        for level in model.head.cls:
            level[-1].weight.mul_(0.1)
            level[-1].bias.fill_(0.0)
    ckpt = d / "tiny.pt"
    save_checkpoint(ckpt, model, imgsz=[64, 64])
    raw = export_onnx(ckpt, d / "tiny.onnx", imgsz=64, nms=NmsSpec("none"), simplify=False, verbose=False)

    m = onnx.load(str(raw))
    nms = NmsSpec("onnx", score_threshold=0.25, iou_threshold=0.45, max_det=100)
    m = add_nms(m, nms)
    set_metadata(m, get_spec(m).replace(nms=nms))
    onnx.save(m, str(d / "tiny.nms.onnx"))

    m = onnx.load(str(raw))
    w = next(i for i in m.graph.initializer if len(i.dims) == 4)  # the first conv's weights
    arr = onnx.numpy_helper.to_array(w) * 1.3
    w.CopyFrom(onnx.numpy_helper.from_array(arr.astype(np.float32), w.name))
    onnx.save(m, str(d / "perturbed.onnx"))
    return {"pt": ckpt, "onnx": raw, "nms": d / "tiny.nms.onnx", "perturbed": d / "perturbed.onnx"}


def statuses(res: ParityResult, level: int) -> list[str]:
    return [c.status for c in res.checks if c.level == level]


def test_checkpoint_vs_onnx_passes(models):
    res = parity(models["pt"], models["onnx"], data=DATA, max_images=N, batch=N)
    print(res.table())
    assert res.strict and res.passed and res.exit_code == 0
    assert statuses(res, 1) == ["pass", "pass"]
    assert res.metrics["raw_boxes_rel"] < 1e-4 and res.metrics["raw_scores_rel"] < 1e-4
    assert res.metrics["det_a"] == res.metrics["det_b"] == res.metrics["det_matched"] > 0
    assert res.metrics["det_only_a"] == res.metrics["det_only_b"] == 0
    assert statuses(res, 3)[0] == "pass" and abs(res.metrics["map50_95_a"] - res.metrics["map50_95_b"]) < 0.5
    table = res.table()
    assert "| 1 raw tensors | boxes: max abs(A-B) / max abs(A) |" in table and table.rstrip().endswith("**PASS**")
    assert "tiny.pt (torch, fp32, raw boxes/scores)" in table and "tiny.onnx (onnxruntime, fp32" in table


def test_perturbed_model_fails_and_says_why(models, tmp_path, capsys):
    out = tmp_path / "parity.json"
    rc = main(["parity", str(models["pt"]), str(models["perturbed"]), "--data", DATA, "--max-images", str(N),
               "--level", "1,2", "--json", str(out)])
    text = capsys.readouterr().out
    assert rc == 2
    assert "| FAIL |" in text and "\n**FAIL**\n" in text
    assert "- FAIL level 1 (boxes: max abs(A-B) / max abs(A)): boxes differ by" in text and "budget 1e-04" in text
    assert "- FAIL level 2 (detections matched (class, IoU >= 0.9)):" in text and "has no match in" in text
    data = json.loads(out.read_text())
    assert data["passed"] is False and data["strict"] is True
    assert {c["level"] for c in data["checks"] if c["status"] == "FAIL"} == {1, 2}


def test_drift_report_for_non_strict_pairs(models):
    res = parity(models["pt"], models["perturbed"], data=DATA, max_images=N, levels=(1, 2), strict=False)
    assert not res.strict and res.passed
    assert statuses(res, 1) == ["drift", "drift"] and statuses(res, 2)[0] == "drift"
    assert res.metrics["raw_boxes_rel"] > 1e-3 and "drift report" in res.table()


def test_nms_embedded_skips_level_1(models):
    res = parity(models["pt"], models["nms"], data=DATA, max_images=N, levels=(1, 2))
    assert statuses(res, 1) == ["skip"] and any("level 1 skipped: tiny.nms.onnx has NMS embedded" in n
                                                for n in res.notes)
    assert statuses(res, 2)[0] == "pass" and res.metrics["det_matched"] > 0, res.table()


def test_level3_budget():
    def result(m):
        return SimpleNamespace(map50_95=m, map50=m + 0.2, ap_small=float("nan"), ap_medium=m, ap_large=m)

    for b, status in ((0.385, "FAIL"), (0.395, "pass"), (0.45, "pass")):
        res = ParityResult("a", "b", "d", 1, True)
        _level3(res, {"A": result(0.40), "B": result(b)}, ParityConfig(budget_map=1.0))
        assert res.checks[0].status == status
    res = ParityResult("a", "b", "d", 1, True)
    _level3(res, {"A": result(0.40), "B": result(0.385)}, ParityConfig(budget_map=1.0))
    assert "B's mAP50-95 is 1.50 points below A's" in res.failures()[0].why
    assert [c.a for c in res.checks][-2:] == ["40.00", "40.00"] and res.checks[2].a == "-"  # AP small undefined


def test_unlabelled_data_skips_level_3(models, tmp_path):
    import cv2

    from yolo_edge.data import load_dataset

    ds = load_dataset(DATA)
    for i in range(2):
        cv2.imwrite(str(tmp_path / f"{i}.png"), ds[i].image)
    res = parity(models["pt"], models["onnx"], data=str(tmp_path), levels=(2, 3))
    assert statuses(res, 3) == ["skip"] and any("no labels" in n for n in res.notes) and res.passed


def test_user_errors(models, capsys):
    with pytest.raises(YoloEdgeError, match="levels must be among"):
        ParityConfig(levels=(4,))
    with pytest.raises(YoloEdgeError, match="model not found"):
        parity(models["pt"], "missing.onnx", data=DATA, max_images=1)
    assert main(["parity", str(models["pt"]), str(models["onnx"]), "--level", "one"]) == 1
    assert "--level takes a list" in capsys.readouterr().err


def test_parity_against_a_fake_tensorrt_engine(models, tmp_path):
    """The TensorRT runner (fake TensorRT 10.x running the graph with ONNX Runtime, fake CUDA
    buffers) is held to FP32 parity with ONNX Runtime at levels 1–2, raw and NMS-embedded."""
    from yolo_edge.runtime.trt_runner import TrtRunner
    from yolo_edge.trt import BuildConfig, build

    trt = make_fake_trt("10.3.0.26")
    env = {"tensorrt": trt.__version__, "gpu": "Fake GPU", "compute_capability": "8.7", "cuda": "12.2"}
    for key in ("onnx", "nms"):
        res = build(BuildConfig(models[key], tmp_path / f"{key}.engine", max_batch=2), trt=trt, env=env, log=None)
        runner = TrtRunner(res.engine, cuda=trt._fake_cuda, trt=trt, env=env)
        assert runner.spec.names == tuple(runner.spec.names) and runner.spec.nc == 8
        r = parity(models[key], runner, data=DATA, max_images=3, batch=3, levels=(1, 2))  # 3 > max batch: chunks
        assert r.passed and r.strict, r.table()
        assert "tensorrt, fp32" in r.b
        if key == "onnx":
            assert r.metrics["raw_boxes_rel"] == 0.0
        assert r.metrics["det_matched"] == r.metrics["det_a"] > 0
