"""TensorRT layer: engine build per TensorRT version (8.6 / 10.x / 11.x) against a recording fake of
the ``tensorrt`` module, manifests and their checks, trtexec lines, the engine inspector report and
the TensorRT runner's buffers (fake CUDA). Real builds and inference run under ``needs_trt`` /
``needs_cuda`` at the end of the file.

The ONNX models here are hand-made graphs with the yolo-edge I/O contract (images -> boxes, scores)
in FP32, FP16 and INT8 Q/DQ form, so these tests need onnx but not torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

sys.path.insert(0, str(Path(__file__).parent))
from fake_tensorrt import COMPUTES, FakeCuda, calls, called, fake_engine_bytes, make_fake_trt  # noqa: E402

from yolo_edge.cli import main  # noqa: E402
from yolo_edge.errors import ModelFormatError, YoloEdgeError  # noqa: E402
from yolo_edge.spec import LetterboxSpec, ModelSpec, NmsSpec  # noqa: E402
from yolo_edge.trt import (BuildConfig, EngineMismatch, build, check_manifest, current_environment,  # noqa: E402
                           parse_engine_information, parse_tegra_release, plan_build, read_manifest,
                           trtexec_command, verify)
from yolo_edge.trt.manifest import manifest_path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
VERSIONS = {"8.6": "8.6.1.6", "10": "10.3.0.26", "11": "11.0.0.7"}
ENV = {"tensorrt": None, "cuda": "12.2", "cudnn": "8.9.4", "gpu": "Fake GPU", "compute_capability": "8.7",
       "l4t": None, "jetpack": None}
NAMES = ("a", "b", "c")


def env_for(version: str, **changes) -> dict:
    return {**ENV, "tensorrt": version, **changes}


# --- hand-made yolo-edge ONNX models ------------------------------------------------------------
def make_onnx(path: Path, precision: str = "fp32", batch: int | None = None, size: int = 16) -> Path:
    """images (B, 3, S, S) -> boxes (B, A, 4), scores (B, A, 3) with A = (S/4)^2, as FP32, FP16
    (casts + float16 weights) or INT8 (QuantizeLinear/DequantizeLinear on activations and weights)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    a = (size // 4) ** 2
    nodes, inits = [], []
    wb = (rng.standard_normal((4, 3, 4, 4)) * 0.2).astype(np.float32)
    ws = (rng.standard_normal((3, 3, 4, 4)) * 0.2).astype(np.float32)
    x = "images"
    if precision == "fp16":
        nodes.append(helper.make_node("Cast", [x], ["x16"], to=TensorProto.FLOAT16, name="cast_in"))
        x = "x16"
        wb, ws = wb.astype(np.float16), ws.astype(np.float16)
    inits += [numpy_helper.from_array(wb, "wb"), numpy_helper.from_array(ws, "ws")]
    wb_in, ws_in = "wb", "ws"
    if precision == "int8":
        inits += [numpy_helper.from_array(np.array(1 / 127, np.float32), "s_x"),
                  numpy_helper.from_array(np.array(0, np.int8), "z"),
                  numpy_helper.from_array(np.array(0.01, np.float32), "s_w"),
                  numpy_helper.from_array(np.clip(np.round(wb / 0.01), -127, 127).astype(np.int8), "wb_q"),
                  numpy_helper.from_array(np.clip(np.round(ws / 0.01), -127, 127).astype(np.int8), "ws_q")]
        nodes += [helper.make_node("QuantizeLinear", [x, "s_x", "z"], ["x_q"], name="q_in"),
                  helper.make_node("DequantizeLinear", ["x_q", "s_x", "z"], ["x_dq"], name="dq_in"),
                  helper.make_node("DequantizeLinear", ["wb_q", "s_w", "z"], ["wb_dq"], name="dq_wb"),
                  helper.make_node("DequantizeLinear", ["ws_q", "s_w", "z"], ["ws_dq"], name="dq_ws")]
        x, wb_in, ws_in = "x_dq", "wb_dq", "ws_dq"
    shape = "shape_b"
    inits.append(numpy_helper.from_array(np.array([0, 0, -1], np.int64), shape))
    nodes += [helper.make_node("Conv", [x, wb_in], ["fb"], kernel_shape=[4, 4], strides=[4, 4], name="conv_boxes"),
              helper.make_node("Conv", [x, ws_in], ["fs"], kernel_shape=[4, 4], strides=[4, 4], name="conv_scores")]
    tail_b, tail_s = "fb", "fs"
    if precision == "fp16":
        nodes += [helper.make_node("Cast", ["fb"], ["fb32"], to=TensorProto.FLOAT, name="cast_b"),
                  helper.make_node("Cast", ["fs"], ["fs32"], to=TensorProto.FLOAT, name="cast_s")]
        tail_b, tail_s = "fb32", "fs32"
    inits.append(numpy_helper.from_array(np.array(size / 2, np.float32), "half"))
    nodes += [helper.make_node("Reshape", [tail_b, shape], ["rb"], name="reshape_b"),
              helper.make_node("Transpose", ["rb"], ["tb"], perm=[0, 2, 1], name="transpose_b"),
              helper.make_node("Sigmoid", ["tb"], ["sb"], name="sigmoid_b"),
              helper.make_node("Mul", ["sb", "half"], ["boxes"], name="mul_b"),
              helper.make_node("Sigmoid", [tail_s], ["ss"], name="sigmoid_s"),
              helper.make_node("Reshape", ["ss", shape], ["rs"], name="reshape_s"),
              helper.make_node("Transpose", ["rs"], ["scores"], perm=[0, 2, 1], name="transpose_s")]
    b = batch if batch else "batch"
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [b, 3, size, size])],
        [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [b, a, 4]),
         helper.make_tensor_value_info("scores", TensorProto.FLOAT, [b, a, 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    extra = {"precision": {"mode": precision, "calibration": {"data_sha256": "d" * 64, "images": 32}}} \
        if precision != "fp32" else {}
    spec = ModelSpec(names=NAMES, letterbox=LetterboxSpec(size=(size, size)), strides=(4,), nms=NmsSpec("none"),
                     precision=precision, extra=extra)
    onnx.helper.set_model_props(model, {"yolo_edge": spec.to_json()})
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("onnx")
    return {p: make_onnx(d / ("model.onnx" if p == "fp32" else f"model.{p}.onnx"), p) for p in ("fp32", "fp16", "int8")}


@pytest.fixture
def fake(monkeypatch):
    """make(version) -> a fake tensorrt installed as sys.modules['tensorrt']."""
    def make(version="10", **kw):
        trt = make_fake_trt(VERSIONS.get(version, version), **kw)
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        return trt
    return make


def do_build(trt, onnx_path, tmp_path, env=None, **kw):
    cfg = BuildConfig(onnx_path, tmp_path / (Path(onnx_path).stem + ".engine"), **kw)
    return build(cfg, trt=trt, env=env or env_for(trt.__version__), log=None)


def flag_names(trt, name: str) -> list[str]:
    return [a[0].name for a, _ in calls(trt, name)]


# --- the fake follows NVIDIA's API lists ----------------------------------------------------------
@pytest.mark.parametrize("version, expr, exists", [
    ("8.6", "trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH", True),
    ("8.6", "trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED", False),
    ("8.6", "trt.BuilderFlag.FP16", True),
    ("8.6", "trt.IInt8EntropyCalibrator2", True),
    ("8.6", "trt.Builder(trt.Logger()).build_engine", True),
    ("8.6", "trt.Builder(trt.Logger()).create_builder_config().max_workspace_size", True),
    ("10", "trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED", True),
    ("10", "trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH", True),  # deprecated, ignored
    ("10", "trt.BuilderFlag.INT8", True),  # weak typing deprecated, not removed
    ("10", "trt.BuilderFlag.STRICT_TYPES", False),
    ("10", "trt.Builder(trt.Logger()).build_engine", False),
    ("10", "trt.Builder(trt.Logger()).create_builder_config().max_workspace_size", False),
    ("10", "trt.IInt8EntropyCalibrator2", True),
    ("11", "trt.BuilderFlag.FP16", False),
    ("11", "trt.BuilderFlag.INT8", False),
    ("11", "trt.BuilderFlag.TF32", True),
    ("11", "trt.IInt8EntropyCalibrator2", False),
    ("11", "trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH", False),
    ("11", "trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED", True),
    ("11", "trt.Builder(trt.Logger()).create_builder_config().int8_calibrator", False),
    ("11", "trt.Builder(trt.Logger()).platform_has_fast_fp16", False),
])
def test_fake_follows_the_api_lists(version, expr, exists):
    trt = make_fake_trt(VERSIONS[version])
    if exists:
        try:
            eval(expr, {"trt": trt})
        except NotImplementedError:  # in the API of that version, not implemented by the fake
            pass
    else:
        with pytest.raises(AttributeError):
            eval(expr, {"trt": trt})


def test_fake_engine_and_context_api_per_version():
    for version, removed in (("10", ["num_bindings", "get_binding_shape", "get_profile_shape"]),
                             ("11", ["device_memory_size", "num_bindings"])):
        trt = make_fake_trt(VERSIONS[version])
        eng = trt.Runtime(trt.Logger()).deserialize_cuda_engine(fake_engine_bytes(
            trt.__version__, [("images", (1, 3, 8, 8), "FLOAT")], [("boxes", (1, 8, 4), "FLOAT"),
                                                                   ("scores", (1, 8, 3), "FLOAT")]))
        ctx = eng.create_execution_context()
        for name in removed:
            with pytest.raises(AttributeError):
                getattr(eng, name)
        with pytest.raises(AttributeError):
            ctx.execute_async_v2  # noqa: B018 - removed in 10
        assert eng.num_io_tensors == 3 and ctx.execute_async_v3
    trt = make_fake_trt(VERSIONS["8.6"])
    eng = trt.Runtime(trt.Logger()).deserialize_cuda_engine(fake_engine_bytes(
        trt.__version__, [("images", (1, 3, 8, 8), "FLOAT")], [("boxes", (1, 8, 4), "FLOAT")]))
    with pytest.raises(NotImplementedError):  # exists in 8.6 (deprecated), the fake does not implement it
        eng.num_bindings  # noqa: B018
    insp = eng.create_engine_inspector()
    assert insp.execution_context is None  # the only context property of the 8.6.1 binding (pyCore.cpp)
    for attr in ("context", "engine"):
        with pytest.raises(AttributeError):
            getattr(insp, attr)


# --- build paths per version -----------------------------------------------------------------------
@pytest.mark.parametrize("version, precision, network_flags, builder_flags, mode", [
    ("8.6", "fp32", 1 << 0, [], "builder-flags"),
    ("8.6", "fp16", 1 << 0, ["FP16", "OBEY_PRECISION_CONSTRAINTS"], "builder-flags"),  # FP32 tail pinned
    ("8.6", "int8", 1 << 0, ["INT8"], "builder-flags"),
    ("10", "fp32", 1 << 1, [], "strongly-typed"),
    ("10", "fp16", 1 << 1, [], "strongly-typed"),
    ("10", "int8", 1 << 1, [], "strongly-typed"),
    ("11", "fp16", 0, [], "strongly-typed"),
    ("11", "int8", 0, [], "strongly-typed"),
])
def test_build_path_per_version(models, tmp_path, version, precision, network_flags, builder_flags, mode):
    trt = make_fake_trt(VERSIONS[version])
    res = do_build(trt, models[precision], tmp_path)
    assert [a for a, _ in calls(trt, "Builder.create_network")] == [(network_flags,)]
    assert flag_names(trt, "IBuilderConfig.set_flag") == builder_flags
    assert flag_names(trt, "IBuilderConfig.clear_flag") == ["TF32"]
    assert calls(trt, "IBuilderConfig.profiling_verbosity=")[0][0][0].name == "DETAILED"
    assert "Builder.build_serialized_network" in called(trt) and "Builder.build_engine" not in called(trt)
    assert "IBuilderConfig.int8_calibrator=" not in called(trt)
    assert res.plan.precision == precision and res.plan.mode == mode
    assert res.engine.is_file() and res.manifest == manifest_path(res.engine)
    m = read_manifest(res.engine)
    assert (m["precision"], m["precision_mode"], m["environment"]["tensorrt"]) == (precision, mode, trt.__version__)


def test_build_int8_report_shows_int8_layers(models, tmp_path):
    trt = make_fake_trt(VERSIONS["10"])
    res = do_build(trt, models["int8"], tmp_path)
    counts = res.report.counts()
    assert counts["INT8"] == 2 and res.report.detailed
    assert json.loads(res.layers.read_text())["Layers"]
    # the inspector saw an execution context with the opt shape, so formats are known
    assert calls(trt, "EngineInspector.execution_context=")
    assert calls(trt, "IExecutionContext.set_input_shape")[0][0] == ("images", (1, 3, 16, 16))
    assert read_manifest(res.engine)["layers"]["counts"] == counts
    res16 = do_build(make_fake_trt(VERSIONS["8.6"]), models["fp16"], tmp_path)
    assert res16.report.counts()["FP16"] == 3  # two FP16 convs + the input cast; the FP32 tail is pinned


def test_build_11_report_schema(models, tmp_path):
    res = do_build(make_fake_trt(VERSIONS["11"]), models["int8"], tmp_path)
    data = json.loads(res.layers.read_text())
    assert "I/O Tensors" in data and "Bindings" not in data
    assert res.report.counts()["INT8"] == 2 and res.report.io_tensors == ("images", "boxes", "scores")


def test_fp16_fallback_only_for_weak_typing(models, tmp_path):
    trt = make_fake_trt(VERSIONS["8.6"])
    do_build(trt, models["int8"], tmp_path, fp16_fallback=True)
    assert flag_names(trt, "IBuilderConfig.set_flag") == ["INT8", "FP16"]
    trt = make_fake_trt(VERSIONS["10"])
    res = do_build(trt, models["int8"], tmp_path, fp16_fallback=True)
    assert flag_names(trt, "IBuilderConfig.set_flag") == []
    assert any("ignored" in n for n in res.notes)


def test_tf32_kept_when_asked(models, tmp_path):
    trt = make_fake_trt(VERSIONS["10"])
    do_build(trt, models["fp32"], tmp_path, tf32=True)
    assert "IBuilderConfig.clear_flag" not in called(trt)


# --- implicit INT8 (calibration cache) -----------------------------------------------------------------
def write_calib_cache(path: Path, onnx_path: Path, trt_version: str, onnx_sha: str | None = None) -> Path:
    from yolo_edge.precision.cache import CacheKey, write_cache
    from yolo_edge.util import sha256_file

    key = CacheKey(onnx_sha or sha256_file(onnx_path), {"size": [16, 16]}, "e" * 64, 32, {"method": "entropy"})
    return write_cache(path, {"images": 1 / 127, "fb": 0.05, "fs": 0.04}, key, trt_version=trt_version)


@pytest.mark.parametrize("version, network_flags", [("8.6", 1 << 0), ("10", 0)])
def test_implicit_int8_with_calibration_cache(models, tmp_path, version, network_flags):
    trt = make_fake_trt(VERSIONS[version])
    cache = write_calib_cache(tmp_path / "calibration.cache", models["fp32"], VERSIONS[version])
    res = do_build(trt, models["fp32"], tmp_path, calibration_cache=cache)
    assert [a for a, _ in calls(trt, "Builder.create_network")] == [(network_flags,)]  # weakly typed
    assert flag_names(trt, "IBuilderConfig.set_flag") == ["INT8"]
    (cal,), _ = calls(trt, "IBuilderConfig.int8_calibrator=")[0]
    assert isinstance(cal, trt.IInt8EntropyCalibrator2)
    assert cal.read_calibration_cache() == cache.read_bytes() and cal.get_batch(["images"]) is None
    assert calls(trt, "IBuilderConfig.set_calibration_profile")
    m = read_manifest(res.engine)
    assert m["precision_mode"] == "implicit-int8" and m["calibration"]["data_sha256"] == "e" * 64
    assert m["calibration"]["calibrator"] == "IInt8EntropyCalibrator2"
    assert ("deprecated" in " ".join(res.notes)) == (version == "10")


def test_implicit_int8_refused_on_11_and_when_stale(models, tmp_path):
    cache = write_calib_cache(tmp_path / "c11.cache", models["fp32"], VERSIONS["11"])
    with pytest.raises(YoloEdgeError, match=r"removed implicit INT8.*model\.int8\.onnx"):
        do_build(make_fake_trt(VERSIONS["11"]), models["fp32"], tmp_path, calibration_cache=cache)
    stale = write_calib_cache(tmp_path / "stale.cache", models["fp32"], VERSIONS["10"], onnx_sha="f" * 64)
    with pytest.raises(YoloEdgeError, match="calibrated on another ONNX"):
        do_build(make_fake_trt(VERSIONS["10"]), models["fp32"], tmp_path, calibration_cache=stale)
    other = write_calib_cache(tmp_path / "c86.cache", models["fp32"], VERSIONS["8.6"])
    with pytest.raises(YoloEdgeError, match="written for TensorRT tag 8601"):
        do_build(make_fake_trt(VERSIONS["10"]), models["fp32"], tmp_path, calibration_cache=other)
    with pytest.raises(YoloEdgeError, match="goes with the FP32 ONNX"):
        do_build(make_fake_trt(VERSIONS["10"]), models["int8"], tmp_path, calibration_cache=write_calib_cache(
            tmp_path / "q.cache", models["int8"], VERSIONS["10"]))
    (tmp_path / "nokey.cache").write_text("TRT-100300-EntropyCalibration2\nimages: 3c010204\n")
    with pytest.raises(YoloEdgeError, match="no readable key"):
        do_build(make_fake_trt(VERSIONS["10"]), models["fp32"], tmp_path, calibration_cache=tmp_path / "nokey.cache")


# --- profile, workspace, timing cache, DLA, parser errors --------------------------------------------
def test_profile_and_workspace(models, tmp_path):
    trt = make_fake_trt(VERSIONS["10"])
    res = do_build(trt, models["fp32"], tmp_path, min_batch=1, opt_batch=2, max_batch=4, workspace_mib=256)
    assert calls(trt, "IOptimizationProfile.set_shape") == [
        (("images", (1, 3, 16, 16), (2, 3, 16, 16), (4, 3, 16, 16)), {})]
    ((pool, size),), = [a for a, _ in calls(trt, "IBuilderConfig.set_memory_pool_limit")],
    assert (pool.name, size) == ("WORKSPACE", 256 << 20)
    assert read_manifest(res.engine)["profile"] == {"images": {"min": [1, 3, 16, 16], "opt": [2, 3, 16, 16],
                                                               "max": [4, 3, 16, 16]}}
    trt = make_fake_trt(VERSIONS["10"])
    do_build(trt, models["fp32"], tmp_path)  # defaults: 1/1/8, TensorRT's workspace
    assert calls(trt, "IOptimizationProfile.set_shape")[0][0][3] == (8, 3, 16, 16)
    assert "IBuilderConfig.set_memory_pool_limit" not in called(trt)
    with pytest.raises(YoloEdgeError, match="min <= opt <= max"):
        do_build(trt, models["fp32"], tmp_path, min_batch=4, max_batch=2)


def test_static_batch_onnx(tmp_path):
    static = make_onnx(tmp_path / "static.onnx", batch=2)
    trt = make_fake_trt(VERSIONS["10"])
    res = do_build(trt, static, tmp_path)
    assert "Builder.create_optimization_profile" not in called(trt)
    assert read_manifest(res.engine)["profile"] == {"images": {"static": [2, 3, 16, 16]}}
    with pytest.raises(YoloEdgeError, match="static batch of 2"):
        do_build(trt, static, tmp_path, max_batch=8)


def test_timing_cache_read_and_updated(models, tmp_path):
    trt = make_fake_trt(VERSIONS["10"])
    do_build(trt, models["fp32"], tmp_path)
    cache = tmp_path / "timing.cache"
    assert cache.read_text().splitlines() == ["FAKE-TIMING-CACHE 10.3.0.26", "timings for model.onnx"]
    assert calls(trt, "IBuilderConfig.create_timing_cache")[0][0] == (b"",)
    trt = make_fake_trt(VERSIONS["10"])
    do_build(trt, models["fp16"], tmp_path)
    assert calls(trt, "IBuilderConfig.create_timing_cache")[0][0][0].startswith(b"FAKE-TIMING-CACHE")
    assert cache.read_text().count("timings for") == 2
    trt = make_fake_trt(VERSIONS["10"])
    do_build(trt, models["fp32"], tmp_path, timing_cache=None)
    assert "IBuilderConfig.create_timing_cache" not in called(trt)
    trt = make_fake_trt(VERSIONS["10"])
    do_build(trt, models["fp32"], tmp_path, timing_cache=tmp_path / "other" / "t.cache")
    assert (tmp_path / "other" / "t.cache").is_file()


def test_dla_options(models, tmp_path):
    trt = make_fake_trt(VERSIONS["10"], dla_cores=2)
    res = do_build(trt, models["int8"], tmp_path, dla_core=1)
    assert calls(trt, "IBuilderConfig.default_device_type=")[0][0][0].name == "DLA"
    assert calls(trt, "IBuilderConfig.DLA_core=")[0][0] == (1,)
    # DLA on 10.x: weakly typed with FP16/INT8 flags (strong typing forbids the flags DLA needs)
    assert flag_names(trt, "IBuilderConfig.set_flag") == ["INT8", "FP16", "GPU_FALLBACK"]
    assert [a for a, _ in calls(trt, "Builder.create_network")] == [(0,)]
    assert calls(trt, "IOptimizationProfile.set_shape")[0][0][3] == (1, 3, 16, 16)  # DLA default: batch 1
    assert read_manifest(res.engine)["build"]["dla_core"] == 1
    trt = make_fake_trt(VERSIONS["8.6"], dla_cores=2)
    do_build(trt, models["fp16"], tmp_path, dla_core=0, gpu_fallback=False)
    assert flag_names(trt, "IBuilderConfig.set_flag") == ["FP16", "OBEY_PRECISION_CONSTRAINTS"]
    with pytest.raises(YoloEdgeError, match="has 0 DLA core"):
        do_build(make_fake_trt(VERSIONS["10"]), models["int8"], tmp_path, dla_core=0)
    with pytest.raises(YoloEdgeError, match="DLA runs FP16 and INT8 only"):
        do_build(make_fake_trt(VERSIONS["10"], dla_cores=2), models["fp32"], tmp_path, dla_core=0)


def test_parser_errors_are_listed(models, tmp_path):
    trt = make_fake_trt(VERSIONS["10"], parse_errors=[("Unsupported operator: FooBar", 7), ("Invalid weights", 9)])
    with pytest.raises(ModelFormatError, match=r"cannot parse .*Unsupported operator: FooBar \(node 7\); "
                                               r"Invalid weights \(node 9\)"):
        do_build(trt, models["fp32"], tmp_path)
    assert not (tmp_path / "model.engine").exists()


def test_metadata_precision_must_match_the_graph(tmp_path):
    p = make_onnx(tmp_path / "m.onnx", "fp32")
    m = onnx.load(str(p))
    spec = ModelSpec.from_json(m.metadata_props[0].value).replace(precision="int8")
    m.metadata_props[0].value = spec.to_json()
    onnx.save(m, str(p))
    with pytest.raises(ModelFormatError, match="no QuantizeLinear"):
        plan_build(BuildConfig(p), "10.3")


# --- trtexec -----------------------------------------------------------------------------------------
def test_trtexec_lines_per_version(models, tmp_path):
    def line(version, onnx_path, **kw):
        cfg = BuildConfig(onnx_path, tmp_path / "m.engine", max_batch=4, workspace_mib=1024,
                          timing_cache=tmp_path / "t.cache", **kw)
        return trtexec_command(plan_build(cfg, version), shell=True)

    shapes = "--minShapes=images:1x3x16x16 --optShapes=images:1x3x16x16 --maxShapes=images:4x3x16x16"
    common = (f"{shapes} --memPoolSize=workspace:1024 --timingCacheFile={tmp_path}/t.cache")
    tail = f"--profilingVerbosity=detailed --exportLayerInfo={tmp_path}/m.engine.layers.json"
    head = f"trtexec --onnx={models['fp16']} --saveEngine={tmp_path}/m.engine {common}"
    l86 = line("8.6.1", models["fp16"])
    assert l86.startswith(f"{head} --fp16 --precisionConstraints=obey --layerPrecisions=cast_b:fp32,cast_s:fp32,")
    assert "--layerOutputTypes=cast_b:fp32," in l86 and "mul_b:fp32" in l86 and "conv_boxes" not in l86
    assert l86.endswith(f"--noTF32 {tail}")
    assert line("10.3.0", models["fp16"]) == f"{head} --stronglyTyped --noTF32 {tail}"
    assert line("11.0", models["fp16"]) == f"{head} --noTF32 {tail}"
    assert "--int8 --noTF32" in line("8.6", models["int8"])
    assert "--stronglyTyped" in line("10.3", models["int8"]) and "--int8" not in line("10.3", models["int8"])
    cache = write_calib_cache(tmp_path / "calibration.cache", models["fp32"], "8.6.1")
    implicit = line("8.6.1", models["fp32"], calibration_cache=cache, fp16_fallback=True)
    assert f"--int8 --calib={cache} --fp16 --noTF32" in implicit and "--stronglyTyped" not in implicit
    dla = line("10.3", models["int8"], dla_core=0, tf32=True, opt_level=5)
    assert dla.endswith(f"--fp16 --int8 --useDLACore=0 --allowGPUFallback --builderOptimizationLevel=5 {tail}")
    assert "--stronglyTyped" not in dla  # DLA on 10.x needs the precision flags
    assert "--workspace=" not in dla and "--noTF32" not in dla


def test_cli_print_trtexec_without_tensorrt(models, tmp_path, capsys):
    rc = main(["build", str(models["int8"]), "--out", str(tmp_path / "x.engine"), "--print-trtexec",
               "--target-trt", "8.6", "--max-batch", "2"])
    out = capsys.readouterr().out
    assert rc == 0 and out.startswith("trtexec ") and "--int8" in out and "maxShapes=images:2x3x16x16" in out
    assert "--adopt" in out
    assert main(["build", str(models["int8"]), "--print-trtexec", "--target-trt", "11"]) == 0
    assert "--int8" not in capsys.readouterr().out
    assert main(["build", str(models["fp32"]), "--print-trtexec", "--target-trt", "11", "--calib-cache",
                 str(tmp_path / "none.cache")]) == 1
    assert "removed implicit INT8" in capsys.readouterr().err
    from yolo_edge.deps import available

    if not available("tensorrt"):  # building needs TensorRT: the error says how to get a trtexec line instead
        assert main(["build", str(models["fp32"]), "--out", str(tmp_path / "y.engine")]) == 1
        err = capsys.readouterr().err
        assert "pip install 'yolo-edge[trt]'" in err and "--print-trtexec --target-trt" in err and "\n" not in err.strip()


# --- manifest -------------------------------------------------------------------------------------------
def test_manifest_contents_and_checks(models, tmp_path):
    trt = make_fake_trt(VERSIONS["10"])
    res = do_build(trt, models["int8"], tmp_path, max_batch=4)
    m = read_manifest(res.engine)
    from yolo_edge import __version__
    from yolo_edge.util import sha256_file

    assert m["yolo_edge"] == __version__ and m["nms"] == "none" and m["precision"] == "int8"
    assert m["engine"]["sha256"] == sha256_file(res.engine)
    assert m["onnx"]["sha256"] == sha256_file(models["int8"])
    assert (res.engine.parent / m["onnx"]["path"]).resolve() == models["int8"].resolve()
    assert m["calibration"]["data_sha256"] == "d" * 64  # from the ONNX's precision metadata
    assert ModelSpec.from_dict(m["spec"]).names == NAMES
    assert m["build"]["trtexec"].startswith("trtexec --onnx=") and "--stronglyTyped" in m["build"]["trtexec"]
    assert m["build"]["command"].startswith("yolo-edge build ") and "--max-batch 4" in m["build"]["command"]
    for k in ("tensorrt", "cuda", "cudnn", "gpu", "compute_capability", "l4t", "jetpack"):
        assert k in m["environment"]

    here = env_for(trt.__version__)
    assert check_manifest(m, here) == []
    assert verify(res.engine, here)["precision"] == "int8"
    diffs = check_manifest(m, env_for("10.4.0.1", gpu="NVIDIA RTX 4090", compute_capability="8.9", cuda="13.0",
                                      l4t="36.4.0"))
    assert [d.key for d in diffs] == ["tensorrt", "gpu", "compute_capability", "cuda", "l4t"]
    assert str(diffs[0]) == "TensorRT: built with 10.3.0.26, here 10.4.0.1"
    assert check_manifest(m, env_for("10.3.0.1", cuda="12.6", gpu=None)) == []  # same 10.3.0, CUDA 12, GPU unknown
    with pytest.raises(EngineMismatch) as e:
        verify(res.engine, env_for("8.6.1.6", compute_capability="8.9"))
    msg = str(e.value)
    assert "TensorRT: built with 10.3.0.26, here 8.6.1.6" in msg and "GPU compute capability" in msg
    assert f"Rebuild it here: yolo-edge build {models['int8']}" in msg and "\n" not in msg


def test_manifest_detects_changed_files(tmp_path):
    src = make_onnx(tmp_path / "m.onnx")
    trt = make_fake_trt(VERSIONS["10"])
    res = do_build(trt, src, tmp_path)
    here = env_for(trt.__version__)
    data = res.engine.read_bytes()
    res.engine.write_bytes(data + b" ")
    with pytest.raises(EngineMismatch, match="engine file.*replaced or modified"):
        verify(res.engine, here)
    res.engine.write_bytes(data)
    make_onnx(src, size=32)  # re-exported since the build
    with pytest.raises(EngineMismatch, match="ONNX m.onnx.*re-exported since the build"):
        verify(res.engine, here)
    src.unlink()  # deployed without the ONNX: nothing to compare
    assert verify(res.engine, here)
    manifest_path(res.engine).unlink()
    with pytest.raises(EngineMismatch, match="has no manifest.*--no-manifest-check"):
        verify(res.engine, here)
    manifest_path(res.engine).write_text("{not json")
    with pytest.raises(EngineMismatch, match="not readable JSON"):
        read_manifest(res.engine)


@pytest.mark.parametrize("text, l4t, jetpack, board", [
    ("# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64, DATE: Tue Aug  1 19:57:35 UTC "
     "2023\n# KERNEL_VARIANT: oot\nTARGET_USERSPACE_LIB_DIR=nvidia\n", "35.4.1", "5.1.2", "t186ref"),
    ("# R36 (release), REVISION: 3.0, GCID: 36191598, BOARD: generic, EABI: aarch64, DATE: Mon May  6 17:34:21 UTC "
     "2024\n", "36.3.0", "6.0", "generic"),
    ("# R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: t210ref, EABI: aarch64, DATE: Sat Feb 19 17:05:08 UTC "
     "2022\n", "32.7.1", "4.6.1", "t210ref"),
    ("# R99 (release), REVISION: 1, BOARD: x\n", "99.1.0", None, "x"),
])
def test_parse_tegra_release(text, l4t, jetpack, board):
    assert parse_tegra_release(text) == {"l4t": l4t, "jetpack": jetpack, "board": board}


def test_current_environment(tmp_path):
    rel = tmp_path / "nv_tegra_release"
    rel.write_text("# R36 (release), REVISION: 4.0, GCID: 1, BOARD: generic, EABI: aarch64, DATE: x\n")
    trt = make_fake_trt(VERSIONS["10"])
    env = current_environment(trt, FakeCuda(gpu="Orin", compute_capability="8.7", cuda="12.6"), tegra_release=rel)
    assert env["tensorrt"] == "10.3.0.26" and env["gpu"] == "Orin" and env["compute_capability"] == "8.7"
    assert (env["cuda"], env["l4t"], env["jetpack"]) == ("12.6", "36.4.0", "6.1")
    env = current_environment(trt, FakeCuda(), tegra_release=tmp_path / "missing")
    assert env["l4t"] is None and env["jetpack"] is None


# --- inspector --------------------------------------------------------------------------------------
# Shaped like the DETAILED engine information in NVIDIA's developer guide ("Engine Inspector") for
# TensorRT 8.x/10.x: a Q/DQ network with an INT8 convolution, FP16 layers and an FP32 decode tail.
SAMPLE_10 = {
    "Layers": [
        {"Name": "Reformatting CopyNode for Input Tensor 0 to /model.0/conv/Conv", "LayerType": "Reformat",
         "Inputs": [{"Name": "images", "Location": "Device", "Dimensions": [1, 3, 640, 640],
                     "Format/Datatype": "Row major linear FP32 format"}],
         "Outputs": [{"Name": "Reformatted Input Tensor 0 to /model.0/conv/Conv", "Location": "Device",
                      "Dimensions": [1, 3, 640, 640], "Format/Datatype": "Four wide channel vectorized row major Int8 "
                                                                         "format"}],
         "ParameterType": "Reformat", "Origin": "REFORMAT", "TacticValue": "0x0000000000000000"},
        {"Name": "/model.0/conv/Conv + PWN(/model.0/act/Sigmoid, /model.0/act/Mul)", "LayerType": "CaskConvolution",
         "Inputs": [{"Name": "Reformatted Input Tensor 0 to /model.0/conv/Conv", "Location": "Device",
                     "Dimensions": [1, 3, 640, 640], "Format/Datatype": "Four wide channel vectorized row major Int8 "
                                                                        "format"}],
         "Outputs": [{"Name": "/model.0/act/Mul_output_0", "Location": "Device", "Dimensions": [1, 16, 320, 320],
                      "Format/Datatype": "Thirty-two wide channel vectorized row major Int8 format."}],
         "ParameterType": "Convolution", "Kernel": [3, 3], "PaddingMode": "kEXPLICIT_ROUND_DOWN",
         "PrePadding": [1, 1], "PostPadding": [1, 1], "Stride": [2, 2], "Dilation": [1, 1], "OutMaps": 16,
         "Groups": 1, "Weights": {"Type": "Int8", "Count": 432}, "Bias": {"Type": "Float", "Count": 16},
         "AllowSparse": 0, "Activation": "NONE", "HasBias": 1, "HasReLU": 0,
         "TacticName": "sm87_xmma_fprop_implicit_gemm_interleaved_i8i8_i8i32_f32_nchw_vect_c_32kcrs_vect_c_32",
         "TacticValue": "0x2e8ab2d4d1c4a8b0"},
        {"Name": "/model.23/cv3.0/cv3.0.2/Conv", "LayerType": "CaskConvolution",
         "Inputs": [{"Name": "/model.23/cv3.0/cv3.0.1/act/Mul_output_0", "Location": "Device",
                     "Dimensions": [1, 64, 80, 80], "Format/Datatype": "Channel major FP16 format where channel % 8 == 0"}],
         "Outputs": [{"Name": "/model.23/cv3.0/cv3.0.2/Conv_output_0", "Location": "Device",
                      "Dimensions": [1, 80, 80, 80], "Format/Datatype": "Channel major FP16 format where channel % 8 "
                                                                         "== 0"}],
         "ParameterType": "Convolution", "TacticValue": "0x1"},
        {"Name": "/model.23/dfl/Softmax", "LayerType": "CaskSoftMax",
         "Inputs": [{"Name": "/model.23/dfl/Transpose_output_0", "Location": "Device", "Dimensions": [1, 4, 16, 8400],
                     "Format/Datatype": "Row major linear FP32 format"}],
         "Outputs": [{"Name": "/model.23/dfl/Softmax_output_0", "Location": "Device", "Dimensions": [1, 4, 16, 8400],
                      "Format/Datatype": "Row major linear FP32 format"}], "TacticValue": "0x2"},
        {"Name": "/model.23/Concat", "LayerType": "NoOp",
         "Inputs": [{"Name": "x", "Location": "Device", "Dimensions": [-1, 144, 80, 80],
                     "Format/Datatype": "N/A due to dynamic shapes"}],
         "Outputs": [{"Name": "y", "Location": "Device", "Dimensions": [-1, 144, 8400],
                      "Format/Datatype": "N/A due to dynamic shapes"}], "TacticValue": "0x0"},
    ],
    "Bindings": ["images", "boxes", "scores"],
}
# TensorRT 11.x: "I/O Tensors" replaces "Bindings"; DataType and Format are separate fields.
SAMPLE_11 = {
    "Layers": [
        {"Name": "/model.0/conv/Conv", "LayerType": "CaskConvolution",
         "Inputs": [{"Name": "images_q", "Location": "Device", "Dimensions": [1, 3, 640, 640], "DataType": "Int8",
                     "Format": "Four wide channel vectorized row major Int8 format (kCHW4)"}],
         "Outputs": [{"Name": "c0", "Location": "Device", "Dimensions": [1, 16, 320, 320], "DataType": "Int8",
                      "Format": "Thirty-two wide channel vectorized row major Int8 format (kCHW32)"}]},
        {"Name": "/model.23/dfl/Softmax", "LayerType": "CaskSoftMax",
         "Inputs": [{"Name": "t", "Location": "Device", "Dimensions": [1, 4, 16, 8400], "DataType": "Float",
                     "Format": "Row major linear FP32 format (kLINEAR)"}],
         "Outputs": [{"Name": "s", "Location": "Device", "Dimensions": [1, 4, 16, 8400], "DataType": "Float",
                      "Format": "Row major linear FP32 format (kLINEAR)"}]},
    ],
    "I/O Tensors": [{"Name": "images", "IOMode": "Input", "DataType": "Float", "Dimensions": [1, 3, 640, 640],
                     "Location": "Device", "IsShapeInferenceIO": False},
                    {"Name": "num_dets", "IOMode": "Output", "DataType": "Int32", "Dimensions": [1, 1],
                     "Location": "Device", "IsShapeInferenceIO": False}],
}


def test_parse_engine_information_10():
    r = parse_engine_information(json.dumps(SAMPLE_10))
    assert [l.precision for l in r.layers] == ["FP32", "INT8", "FP16", "FP32", "unknown"]
    conv = r.layers[1]
    assert conv.inputs[0].label == "INT8 CHW4" and conv.outputs[0].label == "INT8 CHW32"
    assert r.layers[2].inputs[0].label == "FP16 HWC8" and r.layers[3].outputs[0].format == "LINEAR"
    assert r.layers[4].inputs[0].label == "N/A due to dynamic shapes"
    assert r.counts() == {"FP16": 1, "FP32": 1, "INT8": 1}
    assert r.n_reformat == 1 and r.io_tensors == ("images", "boxes", "scores")
    assert r.summary() == "3 compute layers: FP16 1, FP32 1, INT8 1; plus 2 reformat/shuffle/no-op layers (1 reformats)"
    table = r.table()
    assert "| 1 | /model.0/conv/Conv + PWN(/model.0/act/Sigmoid, /model.0/act/Mul) | CaskConvolution | INT8 |" in table
    assert r.to_dict()["layers"][1]["tactic"].startswith("sm87_xmma")


def test_parse_engine_information_11_and_names_only():
    r = parse_engine_information(SAMPLE_11)
    assert r.counts() == {"FP32": 1, "INT8": 1} and r.io_tensors == ("images", "num_dets")
    assert r.layers[0].inputs[0].label == "INT8 CHW4" and r.layers[1].outputs[0].format == "LINEAR"
    names_only = parse_engine_information({"Layers": ["conv1 + relu", "pool"], "Bindings": ["x", "y"]})
    assert not names_only.detailed and "without detailed profiling verbosity" in names_only.summary()
    with pytest.raises(YoloEdgeError, match="no 'Layers'"):
        parse_engine_information("{}")


def test_cli_build_and_inspect_with_fake(models, tmp_path, fake, capsys):
    trt = fake("10")
    engine = tmp_path / "cli.engine"
    rc = main(["build", str(models["int8"]), "--out", str(engine), "--max-batch", "2", "--workspace", "64"])
    out = capsys.readouterr().out
    assert rc == 0 and "built" in out and "INT8 2" in out
    assert calls(trt, "IOptimizationProfile.set_shape")[0][0][3] == (2, 3, 16, 16)
    layers = engine.with_name(engine.name + ".layers.json")
    assert main(["inspect", str(layers), "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "| CaskConvolution | INT8 |" in out and json.loads((tmp_path / "r.json").read_text())["counts"]["INT8"] == 2
    assert main(["inspect", str(engine)]) == 0  # through the (fake) TensorRT runtime
    assert "INT8" in capsys.readouterr().out
    # --adopt: an engine built elsewhere on this machine gets its manifest
    manifest_path(engine).unlink()
    assert main(["build", str(models["int8"]), "--out", str(engine), "--max-batch", "2", "--adopt"]) == 0
    assert read_manifest(engine)["build"]["adopted"] is True


# --- TrtRunner -----------------------------------------------------------------------------------------
def synthetic_engine(tmp_path, trt, compute="decoded", profile=((1, 3, 8, 8), (2, 3, 8, 8), (4, 3, 8, 8)),
                     manifest=True, name="s.engine"):
    if compute == "decoded":
        outs = [("boxes", (-1, 8, 4), "FLOAT"), ("scores", (-1, 8, 3), "FLOAT")]
    else:
        outs = [("num_dets", (-1, 1), "INT32"), ("det_boxes", (-1, 5, 4), "FLOAT"), ("det_scores", (-1, 5), "FLOAT"),
                ("det_classes", (-1, 5), "INT32")]
    in_shape = (-1, 3, 8, 8) if profile else (2, 3, 8, 8)
    if not profile:
        outs = [(n, (2, *s[1:]), d) for n, s, d in outs]
    path = tmp_path / name
    path.write_bytes(fake_engine_bytes(trt.__version__, [("images", in_shape, "FLOAT")], outs,
                                       {"images": profile} if profile else None, compute))
    if manifest:
        from yolo_edge.trt.manifest import make_manifest, write_manifest

        spec = ModelSpec(names=NAMES, letterbox=LetterboxSpec(size=(8, 8)),
                         nms=NmsSpec("none" if compute == "decoded" else "onnx"))
        onnx_stub = tmp_path / "absent.onnx"
        write_manifest(path, make_manifest(engine_path=path, onnx_path=onnx_stub, onnx_sha256="0" * 64, spec=spec,
                                           precision="fp32", mode="strongly-typed", profile={},
                                           environment=env_for(trt.__version__), build={"command": "yolo-edge build x"}))
    return path


@pytest.mark.parametrize("version", ["8.6", "10", "11"])
def test_trt_runner_buffers_and_outputs(tmp_path, version):
    from yolo_edge.runtime.trt_runner import TrtRunner

    trt = make_fake_trt(VERSIONS[version])
    cuda = trt._fake_cuda
    path = synthetic_engine(tmp_path, trt)
    r = TrtRunner(path, cuda=cuda, trt=trt, env=env_for(trt.__version__))
    assert r.spec.names == NAMES and r.output_layout == "decoded" and r.fixed_batch is None
    assert [(t.name, t.shape) for t in r.inputs] == [("images", (None, 3, 8, 8))] and r.batch_range == (1, 4)
    x = np.random.default_rng(1).random((3, 3, 8, 8), dtype=np.float32)
    with r:
        # buffers at the profile's largest shapes, pinned host + device, addresses set once per tensor
        assert [op for op in cuda.ops if op[0] == "host_empty"] == [
            ("host_empty", (4, 3, 8, 8), "float32"), ("host_empty", (4, 8, 4), "float32"),
            ("host_empty", (4, 8, 3), "float32")]
        cuda.ops.clear()
        out = r.infer({"images": x})
        kinds = [op[0] for op in cuda.ops]
        assert kinds == ["htod", "execute", "dtoh", "dtoh", "sync"]
        want = COMPUTES["decoded"]({"images": x})
        for k in ("boxes", "scores"):
            np.testing.assert_array_equal(out[k], want[k])
        assert calls(trt, "IExecutionContext.set_input_shape")[-1][0] == ("images", (3, 3, 8, 8))
        ptrs = {a[0]: a[1] for a, _ in calls(trt, "IExecutionContext.set_tensor_address")}
        assert set(ptrs) == {"images", "boxes", "scores"} and len(set(ptrs.values())) == 3
        (handle,), _ = calls(trt, "IExecutionContext.execute_async_v3")[-1]
        assert handle == r.stream.handle
        big = np.random.default_rng(2).random((6, 3, 8, 8), dtype=np.float32)  # > profile max 4: two chunks
        out = r.infer({"images": big})
        np.testing.assert_array_equal(out["boxes"], COMPUTES["decoded"]({"images": big})["boxes"])
        assert out["boxes"].shape == (6, 8, 4)
        with pytest.raises(YoloEdgeError, match="must be float32"):
            r.infer({"images": x.astype(np.float16)})
    assert not cuda.mem and not r.is_active  # everything freed
    assert "execute_async_v2" not in " ".join(called(trt))


def test_trt_runner_nms_outputs_and_detector(tmp_path):
    from yolo_edge.runtime import Detector
    from yolo_edge.runtime.trt_runner import TrtRunner

    trt = make_fake_trt(VERSIONS["10"])
    path = synthetic_engine(tmp_path, trt, compute="nms")
    r = TrtRunner(path, cuda=trt._fake_cuda, trt=trt, env=env_for(trt.__version__))
    assert r.output_layout == "nms"
    x = np.random.default_rng(3).random((2, 3, 8, 8), dtype=np.float32)
    with r:
        out = r.infer({"images": x})
    want = COMPUTES["nms"]({"images": x})
    for k, v in want.items():
        assert out[k].dtype == v.dtype
        np.testing.assert_array_equal(out[k], v)
    det = Detector(r)
    with det:
        d = det.infer(x)
    assert [len(i) for i in d] == [1, 2]


def test_trt_runner_static_batch_and_errors(tmp_path, monkeypatch):
    from yolo_edge.runtime.trt_runner import TrtRunner

    trt = make_fake_trt(VERSIONS["10"])
    static = synthetic_engine(tmp_path, trt, profile=None, name="static.engine")
    r = TrtRunner(static, cuda=trt._fake_cuda, trt=trt, env=env_for(trt.__version__))
    assert r.fixed_batch == 2
    with r, pytest.raises(YoloEdgeError, match="batch size mismatch"):
        r.infer({"images": np.zeros((1, 3, 8, 8), np.float32)})

    path = synthetic_engine(tmp_path, trt, manifest=False, name="bare.engine")
    with pytest.raises(EngineMismatch, match="has no manifest"):
        TrtRunner(path, cuda=trt._fake_cuda, trt=trt, env=env_for(trt.__version__))
    r = TrtRunner(path, check_manifest=False, cuda=trt._fake_cuda, trt=trt)
    assert r.spec.imgsz == (8, 8) and r.spec.names == () and r.spec.nms.flavour == "none"
    monkeypatch.setenv("YOLO_EDGE_NO_MANIFEST_CHECK", "1")
    assert TrtRunner(path, cuda=trt._fake_cuda, trt=trt).spec.imgsz == (8, 8)
    monkeypatch.delenv("YOLO_EDGE_NO_MANIFEST_CHECK")

    checked = synthetic_engine(tmp_path, trt, name="checked.engine")
    with pytest.raises(EngineMismatch, match="GPU: built with Fake GPU, here Orin.*Rebuild it here: yolo-edge build x"):
        TrtRunner(checked, cuda=trt._fake_cuda, trt=trt, env=env_for(trt.__version__, gpu="Orin"))
    other = make_fake_trt(VERSIONS["11"])  # another TensorRT cannot deserialize it
    with pytest.raises(YoloEdgeError, match="cannot deserialize"):
        TrtRunner(checked, check_manifest=False, cuda=other._fake_cuda, trt=other)
    with pytest.raises(YoloEdgeError, match="engine not found"):
        TrtRunner(tmp_path / "nope.engine", cuda=trt._fake_cuda, trt=trt)


def test_load_runner_dispatches_engines(tmp_path, fake, monkeypatch):
    from yolo_edge.runtime import load_runner
    from yolo_edge.trt import cuda as cuda_mod

    trt = fake("10")
    path = synthetic_engine(tmp_path, trt)
    monkeypatch.setattr(cuda_mod, "get_backend", lambda name=None, device=0: trt._fake_cuda)
    monkeypatch.setattr("yolo_edge.trt.manifest.TEGRA_RELEASE", tmp_path / "none")
    monkeypatch.setenv("YOLO_EDGE_NO_MANIFEST_CHECK", "1")
    r = load_runner(path)
    assert r.name == "tensorrt" and r.spec.names == NAMES


# --- imports stay light -------------------------------------------------------------------------------
def test_trt_layer_imports_nothing_heavy():
    code = ("import sys; import yolo_edge.trt, yolo_edge.trt.cli, yolo_edge.runtime.trt_runner, "
            "yolo_edge.evaluate.parity, yolo_edge.evaluate.parity_cli, yolo_edge.trt.readiness, yolo_edge.trt.doctor\n"
            "from yolo_edge.cli import main\n"
            "for c in ('check', 'doctor', 'build'):\n"
            "    try:\n        main([c, '--help'])\n    except SystemExit as e:\n        assert e.code == 0\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorrt', 'pycuda', 'cuda', 'torch', 'onnx', "
            "'onnxruntime')]\nassert not bad, bad\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "--print-trtexec" in r.stdout


# --- real TensorRT: tests/test_trt_device.py (bundled trained model, both NMS flavours, strict budgets) ---
