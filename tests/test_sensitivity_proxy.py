"""The budget loop's ranking proxy: each layer's own output noise-to-signal ratio, against numpy."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from yolo_edge.precision.int8 import Int8Config, fake_quant, quantize_qdq  # noqa: E402
from yolo_edge.precision.sensitivity import layer_output_sqnr  # noqa: E402


def two_convs(seed=0):
    rng = np.random.default_rng(seed)
    w1 = rng.normal(0, 1, (8, 3, 1, 1)).astype(np.float32)
    w2 = (rng.normal(0, 1, (4, 8, 1, 1)) * np.array([1, 1, 1, 30])[:, None, None, None]).astype(np.float32)
    g = helper.make_graph(
        [helper.make_node("Conv", ["x", "w1"], ["h"], name="c1"), helper.make_node("Relu", ["h"], ["r"], name="relu"),
         helper.make_node("Conv", ["r", "w2"], ["y"], name="c2")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 4, 4])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m, w1, w2


def conv1x1(x, w):
    return np.einsum("oc,bchw->bohw", w[:, :, 0, 0], x)


def test_layer_nsr_matches_numpy():
    m, w1, w2 = two_convs()
    x = np.random.default_rng(1).uniform(0, 1, (1, 3, 4, 4)).astype(np.float32)
    h = np.maximum(conv1x1(x, w1), 0)
    amax = {"x": float(np.abs(x).max()), "r": 0.5 * float(h.max())}  # r clipped at half: c2 suffers
    q = quantize_qdq(m, amax, Int8Config(shift="off"), ())  # the symmetric grid of fake_quant below (test_shift.py: shifted)
    got = {s.node: s.error for s in layer_output_sqnr(m, q, [x])}

    def wq(w):
        return fake_quant(w, np.abs(w).reshape(w.shape[0], -1).max(axis=1) / 127, axis=0)

    # c1: quantized input and weights vs FP32, on the FP32 input
    y1 = conv1x1(x, w1)
    e1 = conv1x1(fake_quant(x, amax["x"] / 127), wq(w1)) - y1
    # c2 reads the activations of the Q/DQ graph (c1 quantized), in INT8 and in FP32
    r_q = np.maximum(conv1x1(fake_quant(x, amax["x"] / 127), wq(w1)), 0)
    y2 = conv1x1(r_q, w2)
    e2 = conv1x1(fake_quant(r_q, amax["r"] / 127), wq(w2)) - y2
    assert got["c1"] == pytest.approx((e1 ** 2).sum() / (y1 ** 2).sum(), rel=1e-3)
    assert got["c2"] == pytest.approx((e2 ** 2).sum() / (y2 ** 2).sum(), rel=1e-3)
    assert got["c2"] > got["c1"]  # the clipped layer ranks first
