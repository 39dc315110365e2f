"""TensorRT Q/DQ placement (``Int8Config(placement="trt")``) and its FP16-scale twin.

* on a graph with only convolutions the placement equals onnxruntime.quantization's (the reference
  quantizer: same Q/DQ sites, same INT8 weights, same scales);
* on a hand-built residual block the skip input of the Add and the MaxPool input get Q/DQ, the
  convolution branch of the Add and constant Adds do not (written out by hand);
* the FP16-scale twin is the same quantization apart from the scales' dtype, runs in ONNX Runtime,
  and agrees with the FP32-scale graph;
* on the real yolov5n (skipped without ../shared/data): 7 of 10 Adds and 3 of 3 MaxPools get Q/DQ
  (ModelOpt 0.47 places the same counts, issue 12) and, by the precision map, the TensorRT 10 graph
  has >= 95 % of convolution FLOPs in INT8 and no FP32 node outside the decode tail.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxruntime.quantization")

from onnx import TensorProto as T, helper as h, numpy_helper as nh  # noqa: E402

from yolo_edge.precision.int8 import Int8Config, qdq_layers, quantize_qdq  # noqa: E402
from yolo_edge.precision.precision_map import precision_map  # noqa: E402
from yolo_edge.precision.qdq import (fp16_scale_twin, insert_qdq, qdq_sites, quantize_weight,  # noqa: E402
                                     residual_inputs, same_quantization)

sys.path.insert(0, str(Path(__file__).parent))
from onnx_blocks import conv_silu  # noqa: E402

YOLOV5N = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "yolov5n.onnx"
RNG = np.random.default_rng(0)


def conv(name, x, cin, cout, k=3, silu=True):
    return conv_silu(name, x, cin, cout, RNG, k=k, silu=silu)


def model(nodes, inits, out, c_out, size=8):
    m = h.make_model(h.make_graph(nodes, "g", [h.make_tensor_value_info("x", T.FLOAT, [1, 4, size, size])],
                                  [h.make_tensor_value_info(out, T.FLOAT, [1, c_out, size, size])], inits),
                     opset_imports=[h.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def residual_block():
    """x -> c0 -> [skip] -> c1 -> c2 -> Add(skip, c2) -> MaxPool -> Add(const) -> c3.
    Also an Add of two independent branches (c4, c5 from c0's output), which is not residual."""
    n0, i0, y0 = conv("c0", "x", 4, 8)
    n1, i1, y1 = conv("c1", y0, 8, 8, k=1)
    n2, i2, y2 = conv("c2", y1, 8, 8)
    n4, i4, y4 = conv("c4", y0, 8, 8, k=1)
    n5, i5, y5 = conv("c5", y0, 8, 8, k=1)
    bias = nh.from_array(np.full((1, 8, 1, 1), 0.1, np.float32), "bias")
    nodes = n0 + n1 + n2 + n4 + n5 + [
        h.make_node("Add", [y0, y2], ["res"], name="add_res"),
        h.make_node("Add", [y4, y5], ["br"], name="add_branches"),
        h.make_node("Add", ["res", "br"], ["sum"], name="add_sum"),
        h.make_node("MaxPool", ["sum"], ["pool"], name="pool", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        h.make_node("Add", ["pool", "bias"], ["pb"], name="add_const")]
    n3, i3, y3 = conv("c3", "pb", 8, 6, silu=False)
    return model(nodes + n3, i0 + i1 + i2 + i4 + i5 + [bias] + i3, y3, 6)


def amax_of(m, x, names):
    """Max |value| of each tensor on input x (ONNX Runtime, FP32)."""
    from yolo_edge.precision.graph import expose

    s = ort.InferenceSession(expose(m, names).SerializeToString(), providers=["CPUExecutionProvider"])
    outs = dict(zip([o.name for o in s.get_outputs()], s.run(None, {"x": x})))
    return {n: float(np.abs(outs[n]).max()) for n in names}


def dq_feeds(m):
    """{(consumer, input index): 'act' | 'weight'} for every DequantizeLinear output a node reads."""
    prod = {o: n for n in m.graph.node for o in n.output}
    out = {}
    for n in m.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        for i, t in enumerate(n.input):
            p = prod.get(t)
            if p is not None and p.op_type == "DequantizeLinear":
                q = prod.get(p.input[0])
                out[(n.name, i)] = "act" if q is not None and q.op_type == "QuantizeLinear" else "weight"
    return out


X = RNG.random((1, 4, 8, 8), dtype=np.float32)


def test_conv_only_graph_matches_onnxruntime_quantizer():
    n0, i0, y0 = conv("c0", "x", 4, 8)
    n1, i1, y1 = conv("c1", y0, 8, 8)
    n2, i2, y2 = conv("c2", y1, 8, 6, silu=False)
    m = model(n0 + n1 + n2, i0 + i1 + i2, y2, 6)
    amax = amax_of(m, X, ["x", y0, y1])
    ours = quantize_qdq(m, amax, Int8Config(placement="trt", shift="off"))  # the symmetric grid ORT writes
    ref = quantize_qdq(m, amax, Int8Config(placement="conv"))  # onnxruntime.quantization.quantize_static
    assert dq_feeds(ours) == dq_feeds(ref)
    lo, lr = qdq_layers(ours), qdq_layers(ref)
    assert lo.keys() == lr.keys() == {"c0", "c1", "c2"}
    for k in lo:
        np.testing.assert_array_equal(lo[k].weight_q, lr[k].weight_q)
        np.testing.assert_allclose(lo[k].weight_scales, lr[k].weight_scales, rtol=1e-6)
        assert lo[k].scales.keys() == lr[k].scales.keys()
        for t in lo[k].scales:
            assert lo[k].scales[t] == pytest.approx(lr[k].scales[t], rel=1e-6)
    s1 = ort.InferenceSession(ours.SerializeToString(), providers=["CPUExecutionProvider"])
    s2 = ort.InferenceSession(ref.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(s1.run(None, {"x": X})[0], s2.run(None, {"x": X})[0], rtol=1e-4, atol=1e-5)


def test_quantize_weight_against_obvious_loop():
    w = RNG.standard_normal((3, 2, 2, 2)).astype(np.float32)
    w[1] = 0.0
    q, s = quantize_weight(w, 0)
    for c in range(3):
        m = max(abs(float(v)) for v in w[c].ravel())
        sc = m / 127 if m > 0 else 1.0
        assert s[c] == pytest.approx(sc, rel=1e-7)
        for a, b in zip(q[c].ravel(), w[c].ravel()):
            assert a == max(-127, min(127, round(float(b) / sc)))


def test_residual_add_and_maxpool_placement():
    m = residual_block()
    assert residual_inputs(m) == {"add_res": 0}  # input 0 (c0's output) is the skip; c2 is the fused branch
    sites = qdq_sites(m, Int8Config())
    want = {("c0", 0), ("c1", 0), ("c2", 0), ("c4", 0), ("c5", 0), ("c3", 0), ("add_res", 0), ("pool", 0)}
    assert {s for uses in sites.values() for s in uses} == want
    names = list(sites)
    q = quantize_qdq(m, amax_of(m, X, names), Int8Config())
    feeds = dq_feeds(q)
    assert {k for k, v in feeds.items() if v == "act"} == want
    assert {k for k, v in feeds.items() if v == "weight"} == {(c, 1) for c in ("c0", "c1", "c2", "c3", "c4", "c5")}
    assert ("add_res", 1) not in feeds and ("add_branches", 0) not in feeds and ("add_const", 0) not in feeds
    # one pair per tensor: the skip tensor feeds c1, c4, c5 and the Add through the same DequantizeLinear
    skip_dq = {q.graph.node[i].input[0] for i, n in enumerate(q.graph.node) if n.name in ("c1", "c4", "c5")}
    assert len(skip_dq) == 1
    add = next(n for n in q.graph.node if n.name == "add_res")
    assert add.input[0] in skip_dq
    # excluded nodes get none
    q2 = quantize_qdq(m, amax_of(m, X, names), Int8Config(exclude=("pool", "add_res")))
    f2 = dq_feeds(q2)
    assert ("pool", 0) not in f2 and ("add_res", 0) not in f2 and ("c1", 0) in f2


def test_fp16_twin_same_quantization_runs_and_agrees():
    from yolo_edge.precision.fp16 import convert_fp16

    m = residual_block()
    names = list(qdq_sites(m, Int8Config()))
    q32 = quantize_qdq(m, amax_of(m, X, names), Int8Config())
    q16 = fp16_scale_twin(q32, convert_fp16(m).model)
    assert same_quantization(q32, q16) == []
    assert max(o.version for o in q16.opset_import if o.domain in ("", "ai.onnx")) >= 19
    scales16 = [nh.to_array(t) for t in q16.graph.initializer if t.name.endswith("scale")]
    assert scales16 and all(s.dtype == np.float16 for s in scales16)
    # the sabotaged twin (one INT8 weight changed) is caught
    bad = onnx.ModelProto()
    bad.CopyFrom(q16)
    t = next(t for t in bad.graph.initializer if t.data_type == T.INT8 and len(t.dims) == 4)
    arr = nh.to_array(t).copy()
    arr.flat[0] = arr.flat[0] + 1 if arr.flat[0] < 127 else 126
    t.CopyFrom(nh.from_array(arr, t.name))
    assert any("INT8 weights differ" in d for d in same_quantization(q32, bad))
    # both run in ONNX Runtime and agree within FP16 precision
    y32 = ort.InferenceSession(q32.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": X})[0]
    y16 = ort.InferenceSession(q16.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": X})[0]
    err = np.abs(y16.astype(np.float32) - y32).max() / np.abs(y32).max()
    assert err < 0.05
    # precision map: the TensorRT 10 graph keeps everything between INT8 convolutions in FP16
    pm16, pm32 = precision_map(q16, "10"), precision_map(q32, "10")
    assert pm16.conv_int8_share == pm32.conv_int8_share == 1.0
    assert pm16.fp32_outside_tail == []  # only the output Cast back to FP32, which is the "tail" here
    assert [n.node for n in pm16.nodes if n.precision == "fp32"] == ["graph_output_cast0"]
    assert {n.op_type for n in pm32.fp32_outside_tail} >= {"Sigmoid", "Mul", "Add", "MaxPool"}


# --- the real yolov5n --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def yolov5n():
    if not YOLOV5N.is_file():
        pytest.skip("../shared/data/yolov5n.onnx is not on this machine")
    from yolo_edge.precision.graph import find_decode_tail, prepare

    raw = prepare(str(YOLOV5N))
    return raw, find_decode_tail(raw)


def test_yolov5n_placement_counts_and_precision_map(yolov5n):
    from yolo_edge.precision.fp16 import convert_fp16

    raw, tail = yolov5n
    cfg = Int8Config()
    sites = qdq_sites(raw, cfg, tail.nodes)
    uses = {n for u in sites.values() for n, _ in u}
    ops = {n.name: n.op_type for n in raw.graph.node}
    assert sum(ops[n] == "Add" for n in uses) == 7 and sum(t == "Add" for t in ops.values()) == 10
    assert sum(ops[n] == "MaxPool" for n in uses) == 3 == sum(t == "MaxPool" for t in ops.values())
    x = np.random.default_rng(1).random((1, 3, 640, 640), dtype=np.float32)
    from yolo_edge.precision.graph import expose

    s = ort.InferenceSession(expose(raw, list(sites)).SerializeToString(), providers=["CPUExecutionProvider"])
    outs = dict(zip([o.name for o in s.get_outputs()], s.run(None, {"images": x})))
    amax = {t: float(np.abs(outs[t]).max()) for t in sites}
    q32 = quantize_qdq(raw, amax, cfg, tail.nodes)
    q16 = fp16_scale_twin(q32, convert_fp16(raw, None, tail=tail.nodes).model)
    assert same_quantization(q32, q16) == []
    pm = precision_map(q16, "10")  # decode tail found in the Q/DQ graph itself
    assert pm.conv_int8_share >= 0.95
    assert [n.node for n in pm.fp32_outside_tail] == []
    old = quantize_qdq(raw, {t: amax[t] for t in sites if any(ops[n] == "Conv" for n, _ in sites[t])},
                       Int8Config(placement="conv"), tail.nodes)
    pm_old = precision_map(old, "10", tail=set(tail.nodes))
    assert len(pm_old.fp32_outside_tail) > 100  # SiLU, Concat, Add, MaxPool, Resize: all FP32 before


# --- the job writes both INT8 files ------------------------------------------------------------
def test_job_writes_fp16_scale_and_fp32_scale_int8(tmp_path):
    """``run_precision`` (placement trt) on the bundled model at 128 px: ``model.int8.onnx`` (FP16
    scales, TensorRT >= 10) and ``model.int8.fp32scales.onnx`` (TensorRT 8.6, ONNX Runtime) carry the
    same quantization, say which TensorRT they are for, both run in ONNX Runtime with NMS, and the
    report has the precision map (TensorRT 10: convolutions INT8, no FP32 outside the decode tail)."""
    import json

    pytest.importorskip("torch")
    from yolo_edge.export import export_onnx
    from yolo_edge.runtime.ort_runner import read_spec
    from yolo_edge.precision.graph import strip_nms
    from yolo_edge.precision.pipeline import PrecisionConfig, run_precision
    from yolo_edge.spec import NmsSpec

    fp32 = export_onnx(None, tmp_path / "model.onnx", imgsz=(128, 128), nms=NmsSpec("onnx", 0.25, 0.45, 20),
                       verbose=False)
    res = run_precision(fp32, PrecisionConfig(out_dir=tmp_path, fp16=False, calib="synthetic:calib", calib_images=4,
                                              val=None, sensitivity="never", latency_runs=1, report_images=1,
                                              show_progress=False))
    p16, p32 = res.paths["int8"], res.paths["int8_fp32scales"]
    assert p16.name == "model.int8.onnx" and p32.name == "model.int8.fp32scales.onnx"
    i16, i32 = read_spec(p16).extra["precision"], read_spec(p32).extra["precision"]
    assert i16["tensorrt"].startswith(">= 10") and i16["scales"] == "float16" and i16["twin"] == p32.name
    assert i32["tensorrt"].startswith("8.6") and i32["scales"] == "float32" and i32["placement"] == "trt"
    m16, m32 = onnx.load(str(p16)), onnx.load(str(p32))
    assert same_quantization(strip_nms(m32), strip_nms(m16)) == []
    x = np.random.default_rng(0).random((1, 3, 128, 128), dtype=np.float32)
    outs = []
    for m in (m32, m16):
        s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        outs.append(dict(zip([o.name for o in s.get_outputs()], s.run(None, {s.get_inputs()[0].name: x}))))
    assert set(outs[0]) == set(outs[1]) == {"num_dets", "det_boxes", "det_scores", "det_classes"}
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    pm = report["precision_map"]
    assert set(pm) == {p16.name, p32.name}
    assert pm[p16.name]["10"]["conv_flops_int8_share"] >= 0.95
    assert pm[p16.name]["10"]["fp32_nodes_outside_tail"] == []
    assert pm[p32.name]["8.6"]["fp32_nodes_outside_tail"]  # INT8 flag only: FP32 between INT8 layers
    assert pm[p32.name]["8.6 --fp16-fallback"]["fp32_nodes_outside_tail"] == []
    assert "Precision map" in (tmp_path / "report" / "report.html").read_text()


# --- the head guard ------------------------------------------------------------------------------
def pyramid_head():
    """A stride-1 stem and three prediction convs at 16x16, 8x8 and 4x4, feeding one output through
    a decode-like Reshape/Concat (the tail). FLOPs by hand (2 x output elements x Cin x k x k):
    stem 2*8*256*4*9 = 147456, body 2*8*256*8*9 = 294912, p16 2*6*256*8 = 24576, p8 2*6*64*8 = 6144,
    p4 2*6*16*8 = 1536."""
    n0, i0, y0 = conv("stem", "x", 4, 8)
    n1, i1, y1 = conv("body", y0, 8, 8)
    nodes, inits, outs = n0 + n1, i0 + i1, []
    src = y1
    for k, size in enumerate((16, 8, 4)):
        if k:
            nodes.append(h.make_node("MaxPool", [src], [f"down{k}"], name=f"down{k}", kernel_shape=[2, 2],
                                     strides=[2, 2]))
            src = f"down{k}"
        n, i, y = conv(f"p{size}", src, 8, 6, k=1, silu=False)
        shape = nh.from_array(np.array([1, 6, -1], np.int64), f"shape{k}")
        nodes += n + [h.make_node("Reshape", [y, shape.name], [f"flat{k}"], name=f"flat{k}")]
        inits += i + [shape]
        outs.append(f"flat{k}")
    nodes.append(h.make_node("Concat", outs, ["out"], name="cat", axis=2))
    m = h.make_model(h.make_graph(nodes, "g", [h.make_tensor_value_info("x", T.FLOAT, [1, 4, 16, 16])],
                                  [h.make_tensor_value_info("out", T.FLOAT, [1, 6, 336])], inits),
                     opset_imports=[h.make_opsetid("", 17)])
    m.ir_version = 8
    return m


@pytest.mark.parametrize("share, want", [
    (0.0, []),  # off
    (0.04, []),  # the finest level alone (24576 / 474624 = 5.2 %) does not fit: nothing, not a coarser one
    (0.07, ["p16", "p8", "p4"]),  # 32256 / 474624 = 6.80 %
    (0.06, ["p16"]),  # 5.2 %: the finest level only (with p8: 6.5 %)
    (0.066, ["p16", "p8"]),  # 30720 / 474624 = 6.47 % (with p4: 6.80 %, over)
    (0.5, ["p16", "p8", "p4"]),
])
def test_head_guard_takes_the_finest_levels_within_the_flop_share(share, want):
    from yolo_edge.precision.graph import find_decode_tail
    from yolo_edge.precision.int8 import quantizable_nodes
    from yolo_edge.precision.qdq import head_guard

    m = pyramid_head()
    tail = find_decode_tail(m)
    assert set(tail.head) == {"p16", "p8", "p4"}
    assert head_guard(m, tail.head, quantizable_nodes(m, exclude=tail.nodes), share) == want


def test_head_guard_keeps_the_prediction_conv_float_and_the_rest_int8():
    """The guarded conv reads the float tensor (no DQ on its input or weights); the other convs
    still read DQ outputs; the FP32 graph runs the same in ONNX Runtime."""
    from yolo_edge.precision.graph import find_decode_tail
    from yolo_edge.precision.int8 import quantizable_nodes
    from yolo_edge.precision.qdq import head_guard

    m = pyramid_head()
    tail = find_decode_tail(m)
    guard = head_guard(m, tail.head, quantizable_nodes(m, exclude=tail.nodes), 0.06)
    x = RNG.random((1, 4, 16, 16), dtype=np.float32)
    sites = qdq_sites(m, Int8Config(exclude=tuple(guard)), tail.nodes)
    q = quantize_qdq(m, amax_of(m, x, list(sites)), Int8Config(exclude=tuple(guard)), tail.nodes)
    feeds = dq_feeds(q)
    assert ("p16", 0) not in feeds and ("p16", 1) not in feeds
    assert feeds[("p8", 0)] == "act" and feeds[("p8", 1)] == "weight" and feeds[("body", 0)] == "act"


def test_yolov5n_head_guard_is_the_stride_8_conv_and_keeps_95_percent_int8(yolov5n):
    """On yolov5n the stride-8 prediction conv is 4.7 % of the convolution FLOPs: the guard keeps it
    FP16 and the TensorRT 10 precision map still has >= 95 % of the conv FLOPs INT8 and no FP32 node
    outside the decode tail (issue 12's goal)."""
    from yolo_edge.precision.fp16 import convert_fp16
    from yolo_edge.precision.int8 import quantizable_nodes
    from yolo_edge.precision.qdq import head_guard

    raw, tail = yolov5n
    guard = head_guard(raw, tail.head, quantizable_nodes(raw, exclude=tail.nodes))
    assert guard == ["/model.24/m.0/Conv"]
    cfg = Int8Config(exclude=tuple(guard))
    sites = qdq_sites(raw, cfg, tail.nodes)
    q32 = quantize_qdq(raw, {t: 4.0 for t in sites}, cfg, tail.nodes)
    pm = precision_map(fp16_scale_twin(q32, convert_fp16(raw, None, tail=tail.nodes).model), "10")
    assert 0.95 <= pm.conv_int8_share < 0.96
    assert [n.node for n in pm.fp32_outside_tail] == []
    assert {n.node: n.precision for n in pm.nodes}["/model.24/m.0/Conv"] == "fp16"


def test_cli_head_guard_default_is_the_library_default():
    """precision/cli.py keeps its own copy (no numpy import at CLI start-up): the two must agree,
    and `export --int8` hands it to the job."""
    import argparse

    from yolo_edge.precision import cli
    from yolo_edge.precision.qdq import HEAD_GUARD_SHARE

    assert cli.HEAD_GUARD_SHARE == HEAD_GUARD_SHARE
    p = argparse.ArgumentParser()
    cli.add_int8_args(p)
    assert p.parse_args([]).int8_head_guard == HEAD_GUARD_SHARE
    assert p.parse_args(["--int8-head-guard", "0"]).int8_head_guard == 0.0
    with pytest.raises(SystemExit):
        p.parse_args(["--int8-head-guard", "1.5"])
