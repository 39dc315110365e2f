"""The TensorRT layer read against the real sources (issue 14), one test per finding, and the strict
fake they run on. Sources (cited again next to each fact in the code):

* NVIDIA/TensorRT tags v8.6.1 (a25ca8bb), v10.3.0 (c5b9de37), v11.1 (82d1dca8):
  ``python/src/infer/pyCore.cpp`` (EngineInspector ``execution_context``; ``create_timing_cache``),
  ``python/src/infer/pyPlugin.cpp`` (``init_libnvinfer_plugins``, plugin registry),
  ``include/NvInfer.h`` (INMSLayer top-K 5000/2000; ITopKLayer K up to 3840; IDequantizeLayer output type
  = scale type when strongly typed), ``plugin/efficientNMSPlugin/efficientNMSPlugin.cpp`` (creator keeps
  ``mParam``; ``iouThreshold > 0``), ``samples/common/sampleEngines.cpp`` (trtexec's calibrator is an
  ``IInt8EntropyCalibrator2``), ``tools/Polygraphy/polygraphy/backend/trt/loader.py`` (plugins initialised
  before parsing and deserializing).
* onnx/onnx-tensorrt branches 8.6-GA (ee0b139b) and 10.1-GA (96e78110): ``ModelImporter.cpp`` (8.6 calls
  ``initLibNvInferPlugins``), ``importerUtils.cpp`` (10.x ``importPluginCreator``: registry only),
  ``docs/operators.md`` (op x dtype table: ReduceSum FP32/FP16 on 8.6; TopK K < 3840 on 10.x).
* NVIDIA "Working with DLA", TensorRT 11.4.1 docs (DLA: last 10.x 10.7; none 11.0-11.3; 11.4.1 AGX Orin +
  JetPack 7.2.2).
"""

from __future__ import annotations

import json
import sys
import threading
import types
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

sys.path.insert(0, str(Path(__file__).parent))
from fake_tensorrt import calls, called, make_fake_trt  # noqa: E402
from test_trt import VERSIONS, do_build, env_for, make_onnx, write_calib_cache  # noqa: E402

from yolo_edge.cli import main  # noqa: E402
from yolo_edge.errors import ModelFormatError, YoloEdgeError  # noqa: E402
from yolo_edge.spec import NmsSpec  # noqa: E402
from yolo_edge.trt import BuildConfig, plan_build, trtexec_command  # noqa: E402


def nms_onnx(path: Path, spec: NmsSpec, classes: int = 3, anchors: int = 64) -> Path:
    from yolo_edge.export.nms import nms_model

    onnx.save(nms_model(spec, classes, anchors), str(path))
    return path


def nms_inputs(batch=2, anchors=64, classes=3, seed=0, low=0.0):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 200, (batch, anchors, 2)).astype(np.float32)
    wh = rng.uniform(4, 40, (batch, anchors, 2)).astype(np.float32)
    boxes = np.concatenate([xy, xy + wh], -1)
    scores = rng.uniform(low, 1, (batch, anchors, classes)).astype(np.float32) ** 3
    return boxes, scores


def ort_run(path, boxes, scores):
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return s.run(None, {"in_boxes": boxes, "in_scores": scores})


def engine_run(trt, engine_path, boxes, scores):
    """Deserialize (in this fake 'process') and run the engine through its own context."""
    rt = trt.Runtime(trt.Logger())
    eng = rt.deserialize_cuda_engine(Path(engine_path).read_bytes())
    assert eng is not None, trt._fake_log_lines
    return eng._compute({"in_boxes": boxes, "in_scores": scores})


# --- 1. plugins: init_libnvinfer_plugins before parsing and before deserializing ------------------------
@pytest.mark.parametrize("version", ["8.6", "10", "11"])
def test_1_efficient_nms_builds_and_loads_in_a_fresh_process(tmp_path, version):
    from yolo_edge.trt.engine import load_engine

    path = nms_onnx(tmp_path / "trt.onnx", NmsSpec("trt", 0.3, 0.5, 10))
    trt = make_fake_trt(VERSIONS[version])
    res = do_build(trt, path, tmp_path)  # 10/11: the parser finds EfficientNMS_TRT only in the registry
    order = called(trt)
    assert order.index("init_libnvinfer_plugins") < order.index("OnnxParser")
    fresh = make_fake_trt(VERSIONS[version])  # another process: empty plugin registry
    assert fresh.get_plugin_registry().plugin_creator_list == []
    _, _, engine = load_engine(res.engine, fresh)  # deserializing needs the registry on every version
    assert "init_libnvinfer_plugins" in called(fresh) and engine is not None
    boxes, scores = nms_inputs()
    from yolo_edge.export.nms import efficient_nms_reference

    out = engine._compute({"in_boxes": boxes, "in_scores": scores})
    for got, want in zip([out[k] for k in ("num_dets", "det_boxes", "det_scores", "det_classes")],
                         efficient_nms_reference(boxes, scores, 0.3, 0.5, 10)):
        np.testing.assert_array_equal(got, want)


# --- 2. INMSLayer caps NMS at 5000 candidates: the graph pre-selects ---------------------------------------
def test_2_inms_cap_engine_equals_onnxruntime_at_eval_thresholds(tmp_path):
    """20 classes x 1000 anchors = 20000 candidates > 5000 at score 0.001: the fake engine (INMSLayer
    sees only the best 5000 per image) must still return what ONNX Runtime returns for the same file."""
    spec = NmsSpec("onnx", score_threshold=0.001, iou_threshold=0.65, max_det=300)
    path = nms_onnx(tmp_path / "eval.onnx", spec, classes=20, anchors=1000)
    trt = make_fake_trt(VERSIONS["10"])
    res = do_build(trt, path, tmp_path)
    boxes, scores = nms_inputs(batch=2, anchors=1000, classes=20, seed=3)
    want = ort_run(path, boxes, scores)
    got = engine_run(trt, res.engine, boxes, scores)
    for name, w in zip(("num_dets", "det_boxes", "det_scores", "det_classes"), want):
        np.testing.assert_array_equal(got[name], w, err_msg=name)
    from yolo_edge.trt.readiness import check_onnx

    assert not [f for f in check_onnx(path, "10").findings if "INMSLayer" in f.message]


@pytest.mark.parametrize("agnostic", [False, True])
def test_2_preselection_keeps_detections_at_deploy_thresholds(agnostic):
    """At deploy thresholds the pre-selected graph equals the numpy reference on a large C x A."""
    from yolo_edge.postprocess import postprocess

    spec = NmsSpec("onnx", score_threshold=0.25, iou_threshold=0.45, max_det=100, class_agnostic=agnostic)
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = nms_onnx(Path(d) / "deploy.onnx", spec, classes=80, anchors=2100)
        boxes, scores = nms_inputs(batch=2, anchors=2100, classes=80, seed=5)
        scores = scores ** 4  # few candidates above 0.25, as a trained model gives
        n, b, s, c = ort_run(path, boxes, scores)
    for i in range(2):
        ref = postprocess(boxes[i], scores[i], spec)
        k = int(n[i, 0])
        assert k == len(ref) > 0
        np.testing.assert_array_equal(c[i, :k], ref.class_ids)
        np.testing.assert_allclose(s[i, :k], ref.scores, rtol=0, atol=0)
        np.testing.assert_allclose(b[i, :k], ref.xyxy, rtol=0, atol=0)


# --- 3. ReduceSum in float (8.6 table: FP32/FP16 only) ------------------------------------------------
def test_3_nms_graph_parses_on_86(tmp_path):
    path = nms_onnx(tmp_path / "m.onnx", NmsSpec("onnx", 0.25, 0.45, 100))
    reducers = [n for n in onnx.load(str(path)).graph.node if n.op_type == "ReduceSum"]
    assert reducers
    do_build(make_fake_trt(VERSIONS["8.6"]), path, tmp_path)  # the fake 8.6 parser refuses INT32 ReduceSum


# --- 4. FP16 on 8.6: the FP32 tail pinned ------------------------------------------------------------------
def test_4_fp16_on_86_pins_the_fp32_tail(tmp_path):
    fp16 = make_onnx(tmp_path / "model.fp16.onnx", "fp16")
    trt = make_fake_trt(VERSIONS["8.6"])
    res = do_build(trt, fp16, tmp_path)
    assert "OBEY_PRECISION_CONSTRAINTS" in [a[0].name for a, _ in calls(trt, "IBuilderConfig.set_flag")]
    prec = {l.name: l.precision for l in res.report.layers}
    for tail in ("sigmoid_b", "mul_b", "sigmoid_s", "transpose_s"):
        assert prec[tail] == "FP32", (tail, prec)
    assert prec["conv_boxes"] == "FP16"
    assert [a[0].name for a, _ in calls(trt, "ILayer.precision=")].count("FLOAT") >= 9


# --- 5. DLA by version ------------------------------------------------------------------------------------
def test_5_dla_gated_by_version(tmp_path):
    int8 = make_onnx(tmp_path / "model.int8.onnx", "int8")
    trt = make_fake_trt("10.3.0.26", dla_cores=2)
    res = do_build(trt, int8, tmp_path, dla_core=0)
    blob = json.loads(res.engine.read_bytes())
    assert blob["device"] == "DLA" and blob["dla_layers"] == 2  # strongly typed: 0 (silent GPU fallback)
    assert "STRONGLY_TYPED" not in blob["network_flags"] and {"INT8", "FP16"} <= set(blob["builder_flags"])
    for version in ("10.8.0", "10.13.0", "11.1.0", "11.4.0"):
        with pytest.raises(YoloEdgeError, match="DLA"):
            plan_build(BuildConfig(int8, dla_core=0), version)
        with pytest.raises(YoloEdgeError, match="10.7 was the last|Windows on ARM"):
            do_build(make_fake_trt(version if version.startswith("10") else "11.1.0", dla_cores=2), int8, tmp_path,
                     dla_core=0)
    plan = plan_build(BuildConfig(int8, dla_core=0), "11.4.1")
    assert plan.strongly_typed and any("JetPack 7.2.2" in n for n in plan.notes)


# --- 6. EfficientNMS: every attribute, every time -------------------------------------------------------------
def test_6_class_aware_after_agnostic_in_one_process(tmp_path):
    from yolo_edge.export.nms import trt_attributes

    assert set(trt_attributes(NmsSpec("trt"))) == {"background_class", "box_coding", "class_agnostic",
                                                   "iou_threshold", "max_output_boxes", "plugin_version",
                                                   "score_activation", "score_threshold"}
    trt = make_fake_trt(VERSIONS["10"])  # one process, one plugin creator
    a = do_build(trt, nms_onnx(tmp_path / "a.onnx", NmsSpec("trt", 0.3, 0.5, 10, class_agnostic=True)), tmp_path)
    b = do_build(trt, nms_onnx(tmp_path / "b.onnx", NmsSpec("trt", 0.3, 0.5, 10)), tmp_path)
    assert json.loads(a.engine.read_bytes())["plugins"][0]["params"]["class_agnostic"] == 1
    assert json.loads(b.engine.read_bytes())["plugins"][0]["params"]["class_agnostic"] == 0


# --- 7. limits rejected at export ------------------------------------------------------------------------------
@pytest.mark.parametrize("spec, match", [
    (NmsSpec("onnx", max_det=4000), "TopK limit"),
    (NmsSpec("trt", iou_threshold=0.0), "IoU threshold > 0"),
])
def test_7_export_rejects_what_tensorrt_cannot_build(tmp_path, spec, match):
    with pytest.raises(ModelFormatError, match=match):
        nms_onnx(tmp_path / "x.onnx", spec)


def test_7_fake_refuses_large_topk_and_zero_iou(tmp_path):
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8000])
    y = helper.make_tensor_value_info("v", TensorProto.FLOAT, [1, 4000])
    g = helper.make_graph([helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=1)], "t", [x], [y],
                          [numpy_helper.from_array(np.array([4000], np.int64), "k")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(tmp_path / "topk.onnx"))
    with pytest.raises(ModelFormatError, match="K must be a constant <= 3839"):
        do_build(make_fake_trt(VERSIONS["10"]), tmp_path / "topk.onnx", tmp_path)
    path = nms_onnx(tmp_path / "iou.onnx", NmsSpec("trt", 0.3, 0.5, 10))
    m = onnx.load(str(path))
    for a in m.graph.node[-1].attribute:
        if a.name == "iou_threshold":
            a.f = 0.0
    onnx.save(m, str(path))
    with pytest.raises(ModelFormatError, match="could not create plugin"):
        do_build(make_fake_trt(VERSIONS["10"]), path, tmp_path)


# --- 8. a timing cache TensorRT rejects ---------------------------------------------------------------------
def test_8_rejected_timing_cache_starts_fresh(tmp_path):
    fp32 = make_onnx(tmp_path / "model.onnx")
    do_build(make_fake_trt(VERSIONS["8.6"]), fp32, tmp_path)  # timing.cache of 8.6
    res = do_build(make_fake_trt(VERSIONS["10"]), fp32, tmp_path)  # 10.3 rejects it: create_timing_cache -> None
    assert any("rejected" in n for n in res.notes)
    assert (tmp_path / "timing.cache").read_text().startswith("FAKE-TIMING-CACHE 10.3.0.26")


# --- 9. CUDA backends: device per thread, one CUDA version source --------------------------------------------
def _fake_cudart(log):
    class Err(int):
        name = "cudaSuccess"

    ok = Err(0)

    def set_device(d):
        log.append(("cudaSetDevice", d, threading.get_ident()))
        return (ok,)

    prop = types.SimpleNamespace(name=b"Orin\0", major=8, minor=7)
    return types.SimpleNamespace(cudaSetDevice=set_device, cudaDriverGetVersion=lambda: (ok, 12020),
                                 cudaRuntimeGetVersion=lambda: (ok, 12060),
                                 cudaGetDeviceProperties=lambda d: (ok, prop))


def _fake_pycuda(monkeypatch):
    drv = types.ModuleType("pycuda.driver")
    dev = types.SimpleNamespace(compute_capability=lambda: (8, 7), name=lambda: "Orin",
                                retain_primary_context=lambda: types.SimpleNamespace(detach=lambda: None))
    drv.init = lambda: None
    drv.Device = lambda i: dev
    drv.get_driver_version = lambda: 12020
    drv.get_version = lambda: (12, 6, 0)
    pkg = types.ModuleType("pycuda")
    pkg.driver = drv
    monkeypatch.setitem(sys.modules, "pycuda", pkg)
    monkeypatch.setitem(sys.modules, "pycuda.driver", drv)


def test_9_cuda_python_sets_the_device_in_every_thread_and_backends_agree(monkeypatch):
    from yolo_edge.trt import cuda as cuda_mod

    log = []
    monkeypatch.setattr(cuda_mod, "_cudart", lambda: _fake_cudart(log))
    cp = cuda_mod.CudaPythonBackend(1)
    other = []

    def work():
        with cp.scope():
            other.append(threading.get_ident())
    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert ("cudaSetDevice", 1, other[0]) in log  # the worker thread got the device too
    _fake_pycuda(monkeypatch)
    pc = cuda_mod.PycudaBackend(0)
    a, b = cp.device_info(), pc.device_info()
    assert a["cuda"] == b["cuda"] == "12.2" and a["cuda_source"] == b["cuda_source"]
    from yolo_edge.trt.manifest import check_manifest

    assert check_manifest({"environment": {**env_for("10.3.0.26"), **a}}, {**env_for("10.3.0.26"), **b}) == []


# --- 10. trtexec calibrates with EntropyCalibration2 only -----------------------------------------------------
def test_10_print_trtexec_refuses_minmax_cache(tmp_path, capsys):
    from yolo_edge.precision.cache import CacheKey, write_cache
    from yolo_edge.util import sha256_file

    fp32 = make_onnx(tmp_path / "model.onnx")
    key = CacheKey(sha256_file(fp32), {"size": [16, 16]}, "e" * 64, 32, {"method": "minmax"})
    cache = write_cache(tmp_path / "mm.cache", {"images": 1 / 127}, key, trt_version="8.6.1",
                        algorithm="MinMaxCalibration")
    plan = plan_build(BuildConfig(fp32, calibration_cache=cache), "8.6.1")
    with pytest.raises(YoloEdgeError, match="IInt8EntropyCalibrator2"):
        trtexec_command(plan)
    assert main(["build", str(fp32), "--print-trtexec", "--target-trt", "8.6.1", "--calib-cache", str(cache)]) == 1
    assert "EntropyCalibrator2" in capsys.readouterr().err
    ok = write_calib_cache(tmp_path / "e.cache", fp32, "8.6.1")
    assert "--calib=" in trtexec_command(plan_build(BuildConfig(fp32, calibration_cache=ok), "8.6.1"), shell=True)


# --- 11. the inspector as the 8.6.1 binding has it -----------------------------------------------------------
def test_11_inspector_context_through_execution_context(tmp_path):
    trt = make_fake_trt(VERSIONS["8.6"])
    do_build(trt, make_onnx(tmp_path / "model.onnx"), tmp_path)
    assert calls(trt, "EngineInspector.execution_context=") and "EngineInspector.context=" not in called(trt)


# --- the fake itself -----------------------------------------------------------------------------------------
def test_fake_tables_registry_types_and_flags(tmp_path):
    trt = make_fake_trt(VERSIONS["10"])
    reg = trt.get_plugin_registry()
    assert reg.plugin_creator_list == [] and reg.get_plugin_creator("EfficientNMS_TRT", "1") is None
    assert trt.init_libnvinfer_plugins(trt.Logger(), "")
    assert [c.name for c in reg.plugin_creator_list] == ["EfficientNMS_TRT"]
    assert make_fake_trt("10.8.0", dla_cores=2).Builder(None).num_DLA_cores == 0
    assert make_fake_trt("10.7.0", dla_cores=2).Builder(None).num_DLA_cores == 2
    assert trt.Builder(None).create_builder_config().create_timing_cache(b"other TensorRT") is None
    data = json.loads((Path(__file__).parents[1] / "yolo_edge/trt/data/onnx_trt_ops.json").read_text())
    for key, branch in (("8.6", "8.6-GA"), ("10", "10.1-GA")):
        v = data["versions"][key]
        assert v["repo"] == "onnx/onnx-tensorrt" and v["branch"] == branch and len(v["commit"]) == 40
    assert data["versions"]["8.6"]["operators"]["ReduceSum"]["types"] == ["FP32", "FP16"]
    # DequantizeLinear's output type is its scale's type in a strongly typed network
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])]
    g = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT16, [1, 4])],
                          [numpy_helper.from_array(np.array(0.1, np.float16), "s"),
                           numpy_helper.from_array(np.array(0, np.int8), "z")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 19)])
    m.ir_version = 9
    onnx.save(m, str(tmp_path / "qdq16.onnx"))
    for version, flags in (("10", 1 << 1), ("11", 0)):
        t = make_fake_trt(VERSIONS[version])
        net = t.Builder(None).create_network(flags)
        assert t.OnnxParser(net, None).parse_from_file(str(tmp_path / "qdq16.onnx"))
        dq = net.get_layer(1)
        assert dq.get_output(0).dtype == t.DataType.HALF
    t = make_fake_trt(VERSIONS["8.6"])  # opset 19 is beyond 8.6's parser
    net = t.Builder(None).create_network(1)
    p = t.OnnxParser(net, None)
    assert not p.parse_from_file(str(tmp_path / "qdq16.onnx")) and "opset 19" in p.get_error(0).desc()
    # precision flags on a strongly typed network
    t = make_fake_trt(VERSIONS["10"])
    b = t.Builder(None)
    net = b.create_network(1 << 1)
    t.OnnxParser(net, None).parse_from_file(str(make_onnx(tmp_path / "m.onnx")))
    cfg = b.create_builder_config()
    cfg.set_flag(t.BuilderFlag.FP16)
    prof = b.create_optimization_profile()
    prof.set_shape("images", (1, 3, 16, 16), (1, 3, 16, 16), (1, 3, 16, 16))
    cfg.add_optimization_profile(prof)
    assert b.build_serialized_network(net, cfg) is None


# --- yolo-edge check --------------------------------------------------------------------------------------------
def test_check_refuses_ops_outside_the_tables(tmp_path, capsys):
    from onnx import TensorProto, helper

    from yolo_edge.trt.readiness import check_onnx

    g = helper.make_graph([helper.make_node("Unique", ["x"], ["y"]), helper.make_node("FancyOp", ["y"], ["z"])],
                          "u", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                          [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(tmp_path / "u.onnx"))
    for v in ("8.6", "10", "11"):
        r = check_onnx(tmp_path / "u.onnx", v)
        assert not r.ok and {f.op for f in r.errors} == {"Unique", "FancyOp"}
    assert main(["check", str(tmp_path / "u.onnx"), "--trt", "10"]) == 1
    assert "will NOT parse" in capsys.readouterr().out


def test_check_says_cpu_int8_is_not_a_tensorrt_file(tmp_path, capsys):
    """A uint8 Q/DQ model (ONNX Runtime's CPU INT8 form) is refused with a message, not a crash."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["xd"]),
             helper.make_node("Relu", ["xd"], ["y"])]
    g = helper.make_graph(nodes, "cpu8", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
                          [numpy_helper.from_array(np.array(0.1, np.float32), "s"),
                           numpy_helper.from_array(np.array(128, np.uint8), "z")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(tmp_path / "cpu.onnx"))
    assert main(["check", str(tmp_path / "cpu.onnx")]) == 1
    out = capsys.readouterr().out
    assert "not a TensorRT file" in out and out.count("will NOT parse") == 3


@pytest.fixture(scope="module")
def every_flavour(tmp_path_factory):
    """What `yolo-edge export` writes from the bundled model: NMS onnx / trt / none, and the FP16 and
    INT8 (Q/DQ) models of `--int8` (small size and few images: this is about graph structure)."""
    pytest.importorskip("torch")
    d = tmp_path_factory.mktemp("flavours")
    out = {}
    for nms in ("onnx", "trt", "none"):
        p = d / f"m_{nms}.onnx"
        args = ["export", "--nms", nms, "--imgsz", "160", "-q", "--out", str(p), "--int8", "--calib-images", "4",
                "--val", "none"]
        assert main(args) in (0, 2)
        out[nms] = p
    for f in sorted(d.glob("*.onnx")):
        out[f.name] = f
    return out


def test_check_passes_every_export_flavour_and_precision(every_flavour, capsys):
    from yolo_edge.trt.readiness import check_onnx

    files = sorted(set(every_flavour.values()))
    names = {f.name for f in files}
    assert {"m_onnx.onnx", "m_trt.onnx", "m_none.onnx"} <= names
    for nms in ("onnx", "trt", "none"):
        assert {f"m_{nms}.int8.onnx", f"m_{nms}.fp16.onnx"} <= names, names
    for f in files:
        for v in ("8.6", "10", "11"):
            r = check_onnx(f, v)
            if _made_for(f, v):
                assert r.ok, r.text()
                assert not [x for x in r.findings if x.level == "warning"], r.text()
            elif v == "8.6":  # the FP16-scale INT8 file (opset 19, TensorRT >= 10): refused, naming its twin
                assert not r.ok and ".int8.fp32scales.onnx" in r.text(), r.text()
            else:  # the FP32-scale twin parses on 10/11, with a warning naming the FP16-scale file
                assert r.ok and any(".int8.onnx" in x.message for x in r.findings if x.level == "warning"), r.text()
    made = {f.name: [v for v in ("8.6", "10", "11") if _made_for(f, v)] for f in files}
    assert made["m_onnx.int8.onnx"] == ["10", "11"] and made["m_onnx.int8.fp32scales.onnx"] == ["8.6"], made
    assert main(["check", str(every_flavour["m_trt.onnx"]), "--json", str(files[0].parent / "c.json")]) == 0
    rep = json.loads((files[0].parent / "c.json").read_text())
    assert [r["tensorrt"] for r in rep] == ["8.6", "10", "11"] and rep[0]["plugins"] == ["EfficientNMS_TRT v1"]


def _made_for(path, version: str) -> bool:
    """Whether the file's yolo_edge metadata (``extra.precision.tensorrt``, written by the INT8 job) names
    this TensorRT version; files without that entry are for every version."""
    import onnx

    raw = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}.get("yolo_edge")
    wanted = str(json.loads(raw).get("extra", {}).get("precision", {}).get("tensorrt", "")) if raw else ""
    if not wanted:
        return True
    return "8.6" in wanted if version == "8.6" else (">= 10" in wanted or version in wanted)


def test_every_flavour_builds_on_the_fake(every_flavour, tmp_path):
    for f in sorted(set(every_flavour.values())):
        for v in ("8.6", "10", "11"):
            if not _made_for(f, v):
                continue
            do_build(make_fake_trt(VERSIONS[v]), f, tmp_path, inspect=False)



# --- yolo-edge doctor ------------------------------------------------------------------------------------------
def test_doctor_without_tensorrt_reports_not_available(tmp_path, monkeypatch, capsys):
    pytest.importorskip("torch")
    import yolo_edge.deps as deps

    real = deps.available
    monkeypatch.setattr(deps, "available", lambda m: False if m.split(".")[0] == "tensorrt" else real(m))
    rc = main(["doctor", "--out", str(tmp_path), "--imgsz", "160", "--precisions", "fp32", "--nms", "onnx",
               "--max-images", "2"])
    out = capsys.readouterr().out
    assert rc == 0 and "not available" in out
    rep = json.loads((tmp_path / "doctor.json").read_text())
    st = {s["name"]: s for s in rep["steps"]}
    assert st["plugin registry"]["status"] == "not available" and "TensorRT is not installed" in \
        st["plugin registry"]["detail"]
    assert st["export nms=onnx"]["status"] == "ok" and st["check fp32 nms=onnx"]["status"] == "ok"
    assert st["build fp32 nms=onnx"]["status"] == "not available"
    assert st["versions"]["data"]["yolo-edge"] and (tmp_path / "doctor.md").read_text().startswith("# yolo-edge doctor")


def test_doctor_with_fake_tensorrt_builds_checks_parity_and_times(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    from fake_tensorrt import FakeCuda

    from yolo_edge.trt import cuda as cuda_mod
    from yolo_edge.trt.doctor import DoctorConfig, run_doctor

    trt = make_fake_trt(VERSIONS["10"])
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(cuda_mod, "get_backend", lambda name=None, device=0: trt._fake_cuda
                        if not isinstance(name, FakeCuda) else name)
    monkeypatch.setattr("yolo_edge.trt.manifest.TEGRA_RELEASE", tmp_path / "none")
    rep = run_doctor(DoctorConfig(out=tmp_path, imgsz=160, precisions=("fp32",), nms=("onnx", "trt"), max_images=2,
                                  iterations=2, trtexec=False), trt=trt)
    st = {s.name: s for s in rep.steps}
    assert st["plugin registry"].status == "ok" and "EfficientNMS_TRT v1" in st["plugin registry"].data["creators"]
    for nms in ("onnx", "trt"):
        assert st[f"build fp32 nms={nms}"].status == "ok", st[f"build fp32 nms={nms}"].detail
        assert st[f"timing fp32 nms={nms}"].status == "ok", st[f"timing fp32 nms={nms}"].detail
    assert st["parity fp32 nms=onnx"].status == "ok" and st["parity fp32 nms=onnx"].data["match_rate"] == 1.0
    assert st["parity fp32 nms=trt"].status in ("ok", "warn"), st["parity fp32 nms=trt"].detail
    assert rep.exit_code == 0 and json.loads(rep.json_path.read_text())["verdict"] == "ok"


def test_parse_trtexec_timing():
    from yolo_edge.trt.doctor import parse_trtexec_timing

    text = ("[I] Throughput: 812.55 qps\n[I] Latency: min = 1.2 ms, max = 2 ms, mean = 1.3 ms, median = 1.25 ms\n"
            "[I] GPU Compute Time: min = 1.1 ms, max = 1.9 ms, mean = 1.21 ms, median = 1.2 ms, "
            "percentile(90%) = 1.3 ms")
    assert parse_trtexec_timing(text) == {"gpu_compute_mean_ms": 1.21, "gpu_compute_median_ms": 1.2,
                                          "throughput_qps": 812.55}


def test_selftest_script_is_valid_bash():
    import subprocess

    script = Path(__file__).parents[1] / "jetson" / "selftest.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    assert "yolo-edge doctor" in script.read_text()
