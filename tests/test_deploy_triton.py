"""`yolo-edge deploy triton`: the written config.pbtxt parses with Triton's own schema
(tritonclient's model_config_pb2 + protobuf text_format) for ONNX and TensorRT, static and dynamic
batch, and its tensors match what ONNX Runtime actually produces for the same model."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("torch")
pb = pytest.importorskip("tritonclient.grpc.model_config_pb2")
text_format = pytest.importorskip("google.protobuf.text_format")

sys.path.insert(0, str(Path(__file__).parent))
from deploy_models import IMGSZ, deploy_models, fake_engine  # noqa: E402

from yolo_edge.cli import main  # noqa: E402
from yolo_edge.deploy.triton import TritonOptions, parse_config, write_triton_repository  # noqa: E402
from yolo_edge.errors import YoloEdgeError  # noqa: E402
from yolo_edge.spec import METADATA_KEY, ModelSpec  # noqa: E402

TYPES = {np.dtype(np.float32): pb.TYPE_FP32, np.dtype(np.int32): pb.TYPE_INT32}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return deploy_models(tmp_path_factory)


def read_config(model_dir: Path):
    """Parse with Triton's schema directly (not through the code under test)."""
    cfg = pb.ModelConfig()
    text_format.Parse((model_dir / "config.pbtxt").read_text(), cfg)
    return cfg


def ort_reference(path, batch: int):
    """What the model really takes and returns: input shape, output names/dtypes/shapes, metadata."""
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((batch, 3, IMGSZ, IMGSZ), dtype=np.float32)
    outs = sess.run(None, {sess.get_inputs()[0].name: x})
    meta = sess.get_modelmeta().custom_metadata_map[METADATA_KEY]
    return sess, [(o.name, a) for o, a in zip(sess.get_outputs(), outs)], meta


def test_dynamic_batch_onnx_config_matches_the_model(models, tmp_path):
    opts = TritonOptions(name="synth", max_batch=4, max_queue_delay_us=250, instances=3, kind="cpu")
    d = write_triton_repository(models["nms"], tmp_path / "repo", opts)
    cfg = read_config(d)
    sess, outs, meta = ort_reference(models["nms"], batch=3)
    assert cfg.name == "synth" and cfg.platform == "onnxruntime_onnx"
    assert (d / "1" / "model.onnx").read_bytes() == Path(models["nms"]).read_bytes()
    assert cfg.max_batch_size == 4
    (inp,) = cfg.input
    assert inp.name == sess.get_inputs()[0].name and inp.data_type == pb.TYPE_FP32
    assert list(inp.dims) == [3, IMGSZ, IMGSZ]  # batch axis left out (max_batch_size > 0)
    assert [o.name for o in cfg.output] == [n for n, _ in outs]
    assert [o.name for o in cfg.output] == ["num_dets", "det_boxes", "det_scores", "det_classes"]
    for o, (_, arr) in zip(cfg.output, outs):
        assert list(o.dims) == list(arr.shape[1:]), o.name
        assert o.data_type == TYPES[arr.dtype], o.name
    assert cfg.output[0].data_type == pb.TYPE_INT32  # num_dets INT32 (DESIGN §2)
    assert cfg.WhichOneof("scheduling_choice") == "dynamic_batching"
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 250
    (group,) = cfg.instance_group
    assert group.count == 3 and group.kind == pb.ModelInstanceGroup.KIND_CPU
    spec = ModelSpec.from_json(cfg.parameters["yolo_edge"].string_value)
    assert spec == ModelSpec.from_json(meta)
    assert "pad 114" in cfg.parameters["preprocess"].string_value


def test_static_batch_onnx_uses_full_shape_and_no_dynamic_batching(models, tmp_path):
    d = write_triton_repository(models["static"], tmp_path / "repo", TritonOptions(max_queue_delay_us=10))
    cfg = read_config(d)
    _, outs, _ = ort_reference(models["static"], batch=2)
    assert cfg.max_batch_size == 0
    assert list(cfg.input[0].dims) == [2, 3, IMGSZ, IMGSZ]
    assert [list(o.dims) for o in cfg.output] == [list(a.shape) for _, a in outs]
    assert not cfg.HasField("dynamic_batching")
    assert cfg.instance_group[0].kind == pb.ModelInstanceGroup.KIND_GPU


def test_decoded_model_outputs(models, tmp_path):
    d = write_triton_repository(models["decoded"], tmp_path / "repo")
    cfg = read_config(d)
    _, outs, _ = ort_reference(models["decoded"], batch=1)
    assert [(o.name, list(o.dims)) for o in cfg.output] == [(n, list(a.shape[1:])) for n, a in outs]


def test_ort_tensorrt_accelerator(models, tmp_path):
    d = write_triton_repository(models["nms"], tmp_path / "repo", TritonOptions(ort_trt=True, fp16=True))
    (acc,) = read_config(d).optimization.execution_accelerators.gpu_execution_accelerator
    assert acc.name == "tensorrt" and acc.parameters["precision_mode"] == "FP16"
    with pytest.raises(YoloEdgeError, match="--ort-trt"):
        TritonOptions(fp16=True)
    with pytest.raises(YoloEdgeError, match="GPU instances"):
        write_triton_repository(models["nms"], tmp_path / "r2", TritonOptions(ort_trt=True, kind="cpu"))


@pytest.mark.parametrize("profile, max_batch, dims0", [
    ({"images": {"min": [1, 3, 160, 160], "opt": [4, 3, 160, 160], "max": [16, 3, 160, 160]}}, 16, [3, 160, 160]),
    ({"images": {"static": [4, 3, 160, 160]}}, 0, [4, 3, 160, 160]),
])
def test_tensorrt_plan(models, tmp_path, profile, max_batch, dims0):
    import onnx

    from yolo_edge.export import get_spec

    spec = get_spec(onnx.load(str(models["nms"])))
    engine = fake_engine(tmp_path, spec, profile)
    d = write_triton_repository(engine, tmp_path / "repo", TritonOptions(name="yolo_trt", trt_version="10.3"))
    cfg = read_config(d)
    assert cfg.platform == "tensorrt_plan" and (d / "1" / "model.plan").is_file()
    assert cfg.max_batch_size == max_batch
    assert list(cfg.input[0].dims) == dims0
    k = spec.nms.max_det
    body = [[1], [k, 4], [k], [k]]
    want = body if max_batch else [[4] + b for b in body]
    assert [list(o.dims) for o in cfg.output] == want
    assert [o.data_type for o in cfg.output] == [pb.TYPE_INT32, pb.TYPE_FP32, pb.TYPE_FP32, pb.TYPE_INT32]
    assert cfg.HasField("dynamic_batching") == bool(max_batch)
    with pytest.raises(YoloEdgeError, match="TensorRT 10.3.0.*TensorRT 8.6"):
        write_triton_repository(engine, tmp_path / "r2", TritonOptions(trt_version="8.6.1"))
    with pytest.raises(YoloEdgeError, match="GPU only"):
        write_triton_repository(engine, tmp_path / "r3", TritonOptions(kind="cpu"))


def test_schema_catches_what_string_checks_would_not(tmp_path):
    good = ('name: "m"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 2\n'
            'input [{ name: "images" data_type: TYPE_FP32 dims: [3, 8, 8] }]\n')
    parse_config(good)
    for bad in (good + "max_queue_delay_us: 3\n",  # a field Triton does not have
                good.replace("TYPE_FP32", "TYPE_FLOAT32"),  # an enum value Triton does not have
                good.replace("max_batch_size: 2", "max_batch_size: two")):
        with pytest.raises(YoloEdgeError, match="Triton's ModelConfig schema"):
            parse_config(bad)
    static = good.replace("max_batch_size: 2", "max_batch_size: 0") + "dynamic_batching { }\n"
    with pytest.raises(YoloEdgeError, match="max_batch_size > 0"):
        parse_config(static)


def test_refuses_trt_nms_onnx_and_foreign_models(models, tmp_path):
    import onnx

    from yolo_edge.export import get_spec, set_metadata
    from yolo_edge.spec import NmsSpec

    m = onnx.load(str(models["nms"]))
    set_metadata(m, get_spec(m).replace(nms=NmsSpec("trt")))
    onnx.save(m, str(tmp_path / "trt_nms.onnx"))
    with pytest.raises(YoloEdgeError, match="EfficientNMS_TRT"):
        write_triton_repository(tmp_path / "trt_nms.onnx", tmp_path / "repo")
    del m.metadata_props[:]
    onnx.save(m, str(tmp_path / "plain.onnx"))
    with pytest.raises(YoloEdgeError, match="no yolo_edge metadata"):
        write_triton_repository(tmp_path / "plain.onnx", tmp_path / "repo")


def test_cli(models, tmp_path, capsys):
    rc = main(["deploy", "triton", str(models["nms"]), "--out", str(tmp_path / "repo"), "--name", "y",
               "--max-queue-delay-us", "500", "--instances", "2", "--kind", "cpu"])
    assert rc == 0
    cfg = read_config(tmp_path / "repo" / "y")
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 500 and cfg.instance_group[0].count == 2
    assert main(["deploy", "triton", str(tmp_path / "missing.onnx"), "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model not found" in err[0]
    assert json.loads(cfg.parameters["yolo_edge"].string_value)["names"]
