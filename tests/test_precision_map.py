"""The precision map (``yolo-edge info --precision``): hand-built graphs whose expected precision per
node, FLOPs and FP32 islands are written out by hand from TensorRT's rules (strongly typed: a DQ's
output takes its scale's type, Cast sets the type, other ops inherit, a Conv fed by DQ on data and
weights runs INT8; 8.6: builder flags), and ModelOpt's INT8 output when it is on this machine."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto as T, helper as h, numpy_helper as nh  # noqa: E402

from yolo_edge.errors import YoloEdgeError  # noqa: E402
from yolo_edge.precision.precision_map import normalize_trt, precision_map  # noqa: E402

F16, F32 = T.FLOAT16, T.FLOAT
NP = {F16: np.float16, F32: np.float32}
MODELOPT = Path("/work/scratch/modelopt")
DATA = Path(__file__).parent / "data"


def _model(nodes, inputs, outputs, inits, opset=19):
    m = h.make_model(h.make_graph(nodes, "g", inputs, outputs, inits), opset_imports=[h.make_opsetid("", opset)])
    m.ir_version = 9
    onnx.checker.check_model(m, full_check=True)
    return m


def qdq_conv_graph(scale_type=F16, io_type=F16):
    """x (1,4,8,8) -> Q/DQ -> Conv(8 out, 3x3, pad 1; INT8 weights -> DQ) -> Sigmoid -> Mul (SiLU)
    -> Cast(FP32) -> Add(const) -> y.  All Q/DQ scales in ``scale_type``."""
    st = NP[scale_type]
    rng = np.random.default_rng(0)
    inits = [nh.from_array(np.array(0.02, st), "s"), nh.from_array(np.array(0, np.int8), "z"),
             nh.from_array(rng.integers(-127, 128, (8, 4, 3, 3)).astype(np.int8), "wq"),
             nh.from_array(np.full(8, 0.01, st), "ws"), nh.from_array(np.zeros(8, np.int8), "wz"),
             nh.from_array(np.full((1, 8, 1, 1), 0.5, np.float32), "c")]
    nodes = [h.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], name="q"),
             h.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"], name="dq"),
             h.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], name="wdq", axis=0),
             h.make_node("Conv", ["xd", "wd"], ["c1"], name="conv", pads=[1, 1, 1, 1]),
             h.make_node("Sigmoid", ["c1"], ["sg"], name="sigmoid"),
             h.make_node("Mul", ["c1", "sg"], ["act"], name="mul"),
             h.make_node("Cast", ["act"], ["a32"], name="cast", to=F32),
             h.make_node("Add", ["a32", "c"], ["y"], name="add")]
    return _model(nodes, [h.make_tensor_value_info("x", io_type, [1, 4, 8, 8])],
                  [h.make_tensor_value_info("y", F32, [1, 8, 8, 8])], inits)


CONV_FLOPS = 2 * (8 * 8 * 8) * (4 * 3 * 3)  # 2 * out elements * (Cin * kH * kW)
ELEMS = 8 * 8 * 8


def by_node(pm):
    return {n.node: n for n in pm.nodes}


@pytest.mark.parametrize("trt", ["10", "11"])
def test_strongly_typed_fp16_scales(trt):
    pm = precision_map(qdq_conv_graph(F16), trt, tail=())
    got = {k: v.precision for k, v in by_node(pm).items()}
    assert got == {"q": "qdq", "dq": "qdq", "wdq": "qdq", "conv": "int8", "sigmoid": "fp16", "mul": "fp16",
                   "cast": "fp32", "add": "fp32"}
    n = by_node(pm)
    assert n["conv"].flops == CONV_FLOPS and n["sigmoid"].flops == ELEMS and n["add"].flops == ELEMS
    f = pm.flops_by_precision()
    assert f == {"int8": CONV_FLOPS, "fp16": 2 * ELEMS, "bf16": 0, "fp32": 2 * ELEMS}
    assert pm.conv_int8_share == 1.0
    # one FP32 island: cast -> add (connected), not in a tail here
    assert [i["nodes"] for i in pm.islands] == [["cast", "add"]]
    assert [n.node for n in pm.fp32_outside_tail] == ["cast", "add"]
    # declared as the decode tail, the island is expected and nothing is FP32 outside it
    pm_tail = precision_map(qdq_conv_graph(F16), trt, tail={"cast", "add"})
    assert pm_tail.fp32_outside_tail == [] and pm_tail.islands[0]["tail"] is True


def test_strongly_typed_fp32_scales_put_everything_between_int8_layers_in_fp32():
    pm = precision_map(qdq_conv_graph(F32, io_type=F32), "10", tail=())
    got = {k: v.precision for k, v in by_node(pm).items()}
    assert got["conv"] == "int8"
    assert got["sigmoid"] == got["mul"] == got["cast"] == got["add"] == "fp32"
    assert pm.shares()["fp16"] == 0.0
    assert [i["nodes"] for i in pm.islands] == [["sigmoid", "mul", "cast", "add"]]


@pytest.mark.parametrize("flag, other", [(True, "fp16"), (False, "fp32")])
def test_trt86_builder_flags(flag, other):
    pm = precision_map(qdq_conv_graph(F32, io_type=F32), "8.6", fp16_flag=flag, tail=())
    got = {k: v.precision for k, v in by_node(pm).items()}
    assert got["conv"] == "int8"
    assert got["sigmoid"] == got["mul"] == got["cast"] == got["add"] == other
    assert pm.summary()["fp16_flag"] is flag


def test_conv_without_dq_on_its_data_input_is_not_int8():
    """Only the weight comes from DQ: TensorRT has no INT8 input, the conv runs in the input's type."""
    m = qdq_conv_graph(F16)
    conv = next(n for n in m.graph.node if n.name == "conv")
    conv.input[0] = "x"
    pm = precision_map(m, "10", tail=())
    assert by_node(pm)["conv"].precision == "fp16"
    assert pm.conv_int8_share == 0.0


def test_dq_maxpool_q_is_int8_and_shape_arithmetic_is_not_counted():
    """DQ -> MaxPool -> Q runs as one INT8 op; Shape -> Cast(float) -> Mul -> Floor -> Cast(int64) (the
    size computation of a Resize) is folded at build time and never an FP32 island."""
    inits = [nh.from_array(np.array(0.1, np.float16), "s"), nh.from_array(np.array(0, np.int8), "z"),
             nh.from_array(np.array([1, 1, 2, 2], np.float32), "two"),
             nh.from_array(np.array([], np.float32), "roi")]
    nodes = [h.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], name="q0"),
             h.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"], name="dq0"),
             h.make_node("MaxPool", ["xd"], ["p"], name="pool", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             h.make_node("QuantizeLinear", ["p", "s", "z"], ["pq"], name="q1"),
             h.make_node("DequantizeLinear", ["pq", "s", "z"], ["pd"], name="dq1"),
             h.make_node("Shape", ["pd"], ["shp"], name="shape"),
             h.make_node("Cast", ["shp"], ["shpf"], name="cast_f", to=F32),
             h.make_node("Mul", ["shpf", "two"], ["sz"], name="mul_sz"),
             h.make_node("Floor", ["sz"], ["szf"], name="floor"),
             h.make_node("Cast", ["szf"], ["szi"], name="cast_i", to=T.INT64),
             h.make_node("Resize", ["pd", "roi", "", "szi"], ["y"], name="resize", mode="nearest")]
    m = _model(nodes, [h.make_tensor_value_info("x", F16, [1, 2, 4, 4])],
               [h.make_tensor_value_info("y", F16, [1, 2, 8, 8])], inits)
    pm = precision_map(m, "10", tail=())
    got = {k: v.precision for k, v in by_node(pm).items()}
    assert got["pool"] == "int8" and by_node(pm)["pool"].flops == 2 * 4 * 4 * 9
    assert got["resize"] == "fp16"  # reads a DQ but writes a graph output (no Q after it)
    assert all(got[k] == "shape" for k in ("shape", "cast_f", "mul_sz", "floor", "cast_i"))
    assert pm.islands == [] and pm.shares()["fp32"] == 0.0
    # ONNX Runtime agrees the graph is valid and runs it (FP16 Q/DQ on the CPU)
    s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    assert s.run(None, {"x": np.ones((1, 2, 4, 4), np.float16)})[0].shape == (1, 2, 8, 8)


def test_two_fp32_regions_are_two_islands():
    inits = [nh.from_array(np.ones((2, 2, 1, 1), np.float32), "w")]
    nodes = [h.make_node("Relu", ["x"], ["a"], name="relu_a"),
             h.make_node("Cast", ["a"], ["a16"], name="to16", to=F16),
             h.make_node("Sigmoid", ["a16"], ["b"], name="sig16"),
             h.make_node("Cast", ["b"], ["b32"], name="to32", to=F32),
             h.make_node("Conv", ["b32", "w"], ["y"], name="conv32")]
    m = _model(nodes, [h.make_tensor_value_info("x", F32, [1, 2, 3, 3])],
               [h.make_tensor_value_info("y", F32, [1, 2, 3, 3])], inits, opset=17)
    pm = precision_map(m, "10", tail=())
    got = {k: v.precision for k, v in by_node(pm).items()}
    assert got == {"relu_a": "fp32", "to16": "fp16", "sig16": "fp16", "to32": "fp32", "conv32": "fp32"}
    assert sorted(i["nodes"] for i in pm.islands) == [["relu_a"], ["to32", "conv32"]]
    assert by_node(pm)["conv32"].flops == 2 * (2 * 3 * 3) * 2


@pytest.mark.parametrize("given, want", [("8.6", "8.6"), ("8.6.1", "8.6"), (10, "10"), ("10.3", "10"), ("11", "11")])
def test_normalize_trt(given, want):
    assert normalize_trt(given) == want


def test_normalize_trt_rejects_unknown():
    with pytest.raises(YoloEdgeError):
        normalize_trt("7.2")


def test_cli_info_precision_json(tmp_path, capsys):
    from yolo_edge.cli import main

    p = tmp_path / "m.onnx"
    onnx.save(qdq_conv_graph(F16), str(p))
    assert main(["info", "--precision", str(p), "--trt", "10", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["trt"] == "10" and out["conv_flops_int8_share"] == 1.0
    assert out["flops_share"]["int8"] == pytest.approx(CONV_FLOPS / (CONV_FLOPS + 4 * ELEMS), abs=1e-6)
    assert main(["info", "--precision", str(p), "--trt", "8.6"]) == 0
    assert "TensorRT 8.6 (builder flag INT8 only)" in capsys.readouterr().out
    assert main(["info", "--precision", str(tmp_path / "m.pt")]) == 1


# --- ModelOpt's output (written by another tool; only where it exists on this machine) ---------
def _modelopt_files():
    return sorted(MODELOPT.glob("**/*.onnx")) if MODELOPT.is_dir() else []


@pytest.mark.skipif(not _modelopt_files(), reason="no ModelOpt INT8 output in /work/scratch/modelopt")
@pytest.mark.parametrize("path", _modelopt_files(), ids=lambda p: p.name)
def test_modelopt_output(path):
    """ModelOpt INT8 (``high_precision_dtype="fp16"``): its convolutions are INT8 under TensorRT 10, and
    where ModelOpt put Q/DQ on an Add or a MaxPool the map sees DQ -> op inputs."""
    m = onnx.load(str(path))
    if not any(n.op_type == "DequantizeLinear" for n in m.graph.node):
        pytest.skip(f"{path.name} has no Q/DQ")
    pm = precision_map(m, "10")
    prod = {o: n for n in m.graph.node for o in n.output}
    for n in pm.nodes:
        node = next(x for x in m.graph.node if x.name == n.node)
        if n.op_type == "Conv":
            fed = all(prod.get(i) is not None and prod[i].op_type == "DequantizeLinear" for i in node.input[:2])
            assert (n.precision == "int8") == fed, n.node
    assert pm.conv_int8_share > 0.9


def test_modelopt_bundled_extract():
    """ModelOpt 0.47's INT8 output for our bundled model (``high_precision_dtype="fp16"``; a structure-only
    extract, weights replaced by zeros of the same shape: tests/data/modelopt_bundled_int8_structure.onnx).
    ModelOpt converts the whole graph to FP16 with FP32 casts only at the outputs: under TensorRT 10 every
    convolution fed by DQ on input and weights is INT8, the only FP32 nodes are the two output casts
    (the tail), and under 8.6 without the FP16 flag everything between INT8 layers would be FP32."""
    m = onnx.load(str(DATA / "modelopt_bundled_int8_structure.onnx"))
    prod = {o: n for n in m.graph.node for o in n.output}
    convs = [n for n in m.graph.node if n.op_type == "Conv"]
    fed = {n.name for n in convs if all(i in prod and prod[i].op_type == "DequantizeLinear" for i in n.input[:2])}
    pm = precision_map(m, "10")
    got = by_node(pm)
    assert {n.name for n in convs if got[n.name].precision == "int8"} == fed and len(fed) >= 0.9 * len(convs)
    assert sorted(n.node for n in pm.nodes if n.precision == "fp32") == ["boxes_cast_to_fp32", "scores_cast_to_fp32"]
    assert pm.fp32_outside_tail == [] and pm.conv_int8_share > 0.95
    # a Conv's FLOPs: 2 * output elements * (Cin/group * kH * kW), the weight shape being the
    # ConstantOfShape input that stands in for the weights
    shape_init = {t.name: nh.to_array(t) for t in m.graph.initializer}
    for c in convs[:5]:
        src = c.input[1]
        while src in prod and prod[src].op_type != "ConstantOfShape":
            src = prod[src].input[0]
        k = int(np.prod(shape_init[prod[src].input[0]].tolist()[1:]))
        assert got[c.name].flops > 0 and got[c.name].flops % (2 * k) == 0
    pm86 = precision_map(m, "8.6")
    assert len(pm86.fp32_outside_tail) > 100


@pytest.mark.skipif(not (MODELOPT / "yolov5n.modelopt-entropy-fp16.onnx").is_file()
                    or not (Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "yolov5n.onnx").is_file(),
                    reason="ModelOpt's yolov5n output or ../shared/data absent")
def test_our_placement_quantizes_the_adds_and_maxpools_modelopt_does():
    """On yolov5n, ModelOpt puts DQ on 7 of the 10 Adds (the C3 residual Adds) and on the 3 MaxPools;
    our placement picks the same nodes (ModelOpt quantizes both Add inputs, we the residual one, as
    TensorRT's placement guide recommends)."""
    from yolo_edge.precision.graph import find_decode_tail, prepare
    from yolo_edge.precision.int8 import Int8Config
    from yolo_edge.precision.qdq import qdq_sites

    mo = onnx.load(str(MODELOPT / "yolov5n.modelopt-entropy-fp16.onnx"))
    prod = {o: n for n in mo.graph.node for o in n.output}
    theirs = {n.name for n in mo.graph.node if n.op_type in ("Add", "MaxPool")
              and any(i in prod and prod[i].op_type == "DequantizeLinear" for i in n.input)}
    raw = prepare(str(Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "yolov5n.onnx"))
    sites = qdq_sites(raw, Int8Config(), find_decode_tail(raw).nodes)
    ops = {n.name: n.op_type for n in raw.graph.node}
    ours = {n for uses in sites.values() for n, _ in uses if ops[n] in ("Add", "MaxPool")}
    assert len(theirs) == 10 and ours == theirs
