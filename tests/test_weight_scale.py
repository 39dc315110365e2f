"""Per-channel INT8 weight scales (``qdq.quantize_weight``, ``Int8Config.weight_scale``).

``mse`` picks, for each output channel, the clipping ``r * max|w|`` (r from 0.6 to 1.0 in steps of
0.01) whose INT8 weights are closest to the float weights. Checked against a slow per-channel search
written here, with the INT8 weights decoded by ``onnx.reference``'s DequantizeLinear, and through the
graph ``quantize_qdq`` writes (ONNX Runtime); ``max`` is ``max|w| / 127``.
"""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto as T, helper as h, numpy_helper as nh  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

from yolo_edge.errors import YoloEdgeError  # noqa: E402
from yolo_edge.precision.int8 import Int8Config, quantize_qdq  # noqa: E402
from yolo_edge.precision.qdq import quantize_weight  # noqa: E402


def _dequantize(q, s, axis):
    """INT8 weights back to float by ONNX's DequantizeLinear (onnx.reference)."""
    node = h.make_node("DequantizeLinear", ["q", "s"], ["y"], **({} if axis is None else {"axis": axis}))
    return ReferenceEvaluator(node).run(None, {"q": q, "s": np.asarray(s, np.float32)})[0]


def _slow_best(channel: np.ndarray) -> tuple[float, float]:
    """(best squared error, max-scale squared error) of one channel: every clipping tried in turn."""
    amax = float(np.abs(channel).max())
    errs = []
    for k in range(41):
        s = np.float32((0.6 + 0.01 * k) * amax / 127.0)
        q = np.clip(np.round(channel / s), -127, 127)  # numpy rounds half to even, as QuantizeLinear
        errs.append(float(((q * s - channel).astype(np.float64) ** 2).sum()))
    return min(errs), errs[-1]


@pytest.mark.parametrize("shape, axis", [((16, 8, 3, 3), 0), ((200, 10), 1), ((40, 50), None)])
def test_mse_scales_are_the_best_clipping_of_each_channel(shape, axis):
    rng = np.random.default_rng(1)
    w = rng.standard_t(2, shape).astype(np.float32) * 0.05  # heavy tails
    # and every other channel's values halfway between max|w| / 127's steps: there a slightly clipped
    # scale beats max
    wc = np.moveaxis(w, 0 if axis is None else axis, 0)
    for c in range(0, wc.shape[0], 2):
        half = (rng.integers(0, 60, wc[c].shape) + 0.5) * rng.choice([-1.0, 1.0], wc[c].shape)
        half.reshape(-1)[0] = 127.0
        wc[c] = half * 0.05 / 127
    q, s = quantize_weight(w, axis, "mse")
    assert q.dtype == np.int8 and q.shape == w.shape and np.abs(q.astype(int)).max() <= 127
    deq = _dequantize(q, s, axis)
    chans = [w] if axis is None else [np.take(w, c, axis=axis) for c in range(w.shape[axis])]
    got = [deq] if axis is None else [np.take(deq, c, axis=axis) for c in range(w.shape[axis])]
    clipped = 0
    for wc, dc in zip(chans, got):
        best, at_max = _slow_best(wc)
        err = float(((dc - wc).astype(np.float64) ** 2).sum())
        assert err <= best * (1 + 1e-4) + 1e-12, (err, best)
        assert err <= at_max * (1 + 1e-6) + 1e-12
        clipped += best < at_max * (1 - 1e-3)
    assert clipped > 0  # the search did more than the max scale on these weights


def test_max_scales_are_max_over_127():
    w = np.random.default_rng(2).standard_normal((4, 3, 3, 3)).astype(np.float32)
    w[2] = 0.0
    q, s = quantize_weight(w, 0, "max")
    want = np.abs(w).reshape(4, -1).max(axis=1) / 127.0
    np.testing.assert_allclose(s[[0, 1, 3]], want[[0, 1, 3]], rtol=1e-7)
    assert s[2] == 1.0 and not q[2].any()  # an all-zero channel: scale 1, weights 0
    np.testing.assert_array_equal(np.abs(q.reshape(4, -1)).max(axis=1)[[0, 1, 3]], 127)


def test_unknown_weight_scale_is_refused():
    with pytest.raises(YoloEdgeError, match="weight scale"):
        quantize_weight(np.ones((2, 2), np.float32), 0, "median")
    with pytest.raises(YoloEdgeError, match="weight scale"):
        Int8Config(weight_scale="median")


def _one_conv(w):
    c = w.shape[0]
    g = h.make_graph([h.make_node("Conv", ["x", "w", "b"], ["y"], name="conv", pads=[1, 1, 1, 1])], "one",
                     [h.make_tensor_value_info("x", T.FLOAT, [1, w.shape[1], 8, 8])],
                     [h.make_tensor_value_info("y", T.FLOAT, [1, c, 8, 8])],
                     [nh.from_array(w, "w"), nh.from_array(np.zeros(c, np.float32), "b")])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def _run(m, x):
    s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, {"x": x})[0]


@pytest.mark.parametrize("weight_scale", ["mse", "max"])
def test_the_qdq_graph_convolves_with_the_chosen_int8_weights(weight_scale):
    """ONNX Runtime on the Q/DQ graph = ONNX Runtime on the float graph whose weights are the slow
    search's (or max|w|/127's) INT8 weights, decoded; the activation range is wide enough that the
    input quantization is the same in both (the input is already on its grid)."""
    rng = np.random.default_rng(4)
    w = (rng.standard_t(2, (8, 4, 3, 3)) * 0.1).astype(np.float32)
    x = (np.round(rng.uniform(-1, 1, (1, 4, 8, 8)) * 127) / 127).astype(np.float32)
    # shift off: x here spans [-1, 1], not an image in [0, 1] (the shifted grid assumes DESIGN §2 inputs)
    q = quantize_qdq(_one_conv(w), {"x": 1.0}, Int8Config(weight_scale=weight_scale, shift="off"))
    assert Int8Config(weight_scale=weight_scale).algorithm()["weight_scale"] == weight_scale
    want_w = np.empty_like(w)
    for c in range(8):
        amax = float(np.abs(w[c]).max())
        ratios = [0.6 + 0.01 * k for k in range(41)] if weight_scale == "mse" else [1.0]
        best = None
        for r in reversed(ratios):
            s = np.float32(r * amax / 127.0)
            d = np.clip(np.round(w[c] / s), -127, 127) * s
            e = float(((d - w[c]).astype(np.float64) ** 2).sum())
            if best is None or e < best[0] * (1 - 1e-6):
                best = (e, d)
        want_w[c] = best[1]
    np.testing.assert_allclose(_run(q, x), _run(_one_conv(want_w), x), rtol=1e-4, atol=1e-5)


def test_default_is_mse_and_the_cli_flag_reaches_the_config():
    from yolo_edge.precision import cli, qdq

    assert Int8Config().weight_scale == qdq.DEFAULT_WEIGHT_SCALE == cli.DEFAULT_WEIGHT_SCALE == "mse"
    assert cli.WEIGHT_SCALES == qdq.WEIGHT_SCALES
    assert Int8Config(placement="conv").algorithm()["weight_scale"] == "max"  # onnxruntime's quantizer
    import argparse

    p = argparse.ArgumentParser()
    cli.add_precision_args(p)
    from pathlib import Path

    for argv, want in (([], "mse"), (["--int8-weight-scale", "max"], "max")):
        cfg = cli.config_from_args(p.parse_args(["--int8", *argv]), Path("out"), "m", fp16=True, int8=True)
        assert cfg.weight_scale == want and cfg.int8_config().algorithm()["weight_scale"] == want
