"""Shifted INT8 grids for activations with a static lower bound (precision/qdq.py ``shift_activations``).

The Q/DQ graph is held to a numpy reference written here (a plain convolution loop, the grid over
``[lower, amax]`` written out), and run by ONNX Runtime; the FP16-scale twin, the refinement's
interpreter, the sensitivity models and the report's SQNR views are checked against it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto as T, helper as h  # noqa: E402

from yolo_edge.errors import YoloEdgeError  # noqa: E402
from yolo_edge.precision.calibration import SILU_MIN  # noqa: E402
from yolo_edge.precision.int8 import Int8Config, quantize_qdq  # noqa: E402
from yolo_edge.precision.qdq import (SHIFTS, fp16_scale_twin, qdq_sites, quantize_weight, same_quantization,  # noqa: E402
                                     shift_bounds, shift_of, shifted_start, shifted_tensors)

sys.path.insert(0, str(Path(__file__).parent))
from onnx_blocks import conv_silu  # noqa: E402

RNG = np.random.default_rng(3)
X = RNG.random((1, 4, 8, 8), dtype=np.float32)


def graph():
    """x (image, >= 0) -> c0 (3x3) -> y0 (SiLU) read by c1 (1x1, SiLU) and c2 (3x3, no activation);
    y1 -> c3 (1x1); out = c2 + c3. Every quantized tensor is read by convolutions only."""
    n0, i0, y0 = conv_silu("c0", "x", 4, 8, RNG)
    n1, i1, y1 = conv_silu("c1", y0, 8, 8, RNG, k=1)
    n2, i2, y2 = conv_silu("c2", y0, 8, 6, RNG, silu=False)
    n3, i3, y3 = conv_silu("c3", y1, 8, 6, RNG, k=1, silu=False)
    nodes = n0 + n1 + n2 + n3 + [h.make_node("Add", [y2, y3], ["out"], name="add_out")]
    m = h.make_model(h.make_graph(nodes, "g", [h.make_tensor_value_info("x", T.FLOAT, [1, 4, 8, 8])],
                                  [h.make_tensor_value_info("out", T.FLOAT, [1, 6, 8, 8])], i0 + i1 + i2 + i3),
                     opset_imports=[h.make_opsetid("", 17)])
    m.ir_version = 8
    return m


AMAX = {"x": 1.0, "c0.y": 2.5, "c1.y": 1.7}


def run(m, x=X):
    return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


# --- the reference -------------------------------------------------------------------------------
def conv_ref(x, w, b, pad):
    """Stride-1 convolution, zero padding ``pad``, written as a sum over the kernel taps."""
    n, cin, hh, ww = x.shape
    k = w.shape[2]
    xp = np.zeros((n, cin, hh + 2 * pad, ww + 2 * pad))
    xp[:, :, pad:pad + hh, pad:pad + ww] = x
    out = np.zeros((n, w.shape[0], hh + 2 * pad - k + 1, ww + 2 * pad - k + 1))
    for i in range(k):
        for j in range(k):
            patch = xp[:, :, i:i + out.shape[2], j:j + out.shape[3]]
            out += np.einsum("nchw,oc->nohw", patch, w[:, :, i, j])
    return out + b.reshape(1, -1, 1, 1)


def grid(v, lower, amax):
    """INT8 on the grid over [lower, amax]: 254 steps, the offset a whole number of steps."""
    s = np.float32((amax - lower) / 254.0)
    c = np.float32(np.round((amax + lower) / (2 * s)) * s)
    return np.clip(np.round((v - c) / s), -128, 127) * s + c


def sym(v, amax):
    s = np.float32(amax / 127.0)
    return np.clip(np.round(v / s), -128, 127) * s


def silu(v):
    return v / (1.0 + np.exp(-v))


def reference(m, shift):
    """The INT8 graph's output: every site on its grid (shifted where ``shift`` says), INT8 weights."""
    from onnx import numpy_helper

    w = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in m.graph.initializer}

    def layer(name, v):
        q, s = quantize_weight(w[f"{name}.w"].astype(np.float32), 0, "mse")
        return conv_ref(v, q.astype(np.float64) * s.reshape(-1, 1, 1, 1), w[f"{name}.b"], w[f"{name}.w"].shape[2] // 2)

    def site(v, t, lower, any_padded_reader):
        on = shift == "all" or (shift == "unpadded" and not any_padded_reader)
        return grid(v, lower, AMAX[t]) if on else sym(v, AMAX[t])

    x = X.astype(np.float64)
    y0 = silu(layer("c0", site(x, "x", 0.0, True)))
    y1 = silu(layer("c1", site(y0, "c0.y", SILU_MIN, True)))
    y2 = layer("c2", site(y0, "c0.y", SILU_MIN, True))
    return y2 + layer("c3", site(y1, "c1.y", SILU_MIN, False))


# --- tests -----------------------------------------------------------------------------------------
def test_shift_of_puts_zero_on_a_grid_with_half_the_step():
    for lower, amax in ((0.0, 1.0), (SILU_MIN, 5.0), (SILU_MIN, 0.9), (-0.557, 12.0)):
        c, s = shift_of(amax, lower)
        assert s == pytest.approx((amax - lower) / 254, rel=1e-6)
        assert abs(c / s - round(c / s)) < 1e-3  # 0 is a level: padded borders dequantize to exactly 0
        assert c - 128 * s <= lower + s / 2 and c + 127 * s >= amax - s / 2  # the range is covered
        assert s < 0.51 * amax / 127 + 1e-9 or lower < -0.01 * amax  # about half the symmetric step
    with pytest.raises(YoloEdgeError):
        shift_of(0.0, 0.0)


@pytest.mark.parametrize("shift", ["all", "unpadded", "off"])
def test_shifted_graph_equals_the_reference(shift):
    m = graph()
    q = quantize_qdq(m, AMAX, Int8Config(shift=shift))
    want = reference(m, shift)
    got = run(q)
    scale = np.abs(want).max()
    assert np.abs(got - want).max() < 1e-3 * scale  # one level flipped by float rounding would show
    n_shifted = {"all": 4, "unpadded": 1, "off": 0}[shift]  # x, c0.y twice (padded and not), c1.y
    assert len(shifted_tensors(q)) == n_shifted
    assert sum(n.op_type == "Pad" for n in q.graph.node) == (2 if shift == "all" else 0)  # x, c0.y for c2
    assert sum(n.op_type == "Sub" for n in q.graph.node) == {"all": 3, "unpadded": 1, "off": 0}[shift]
    # and the shift helps: the output is closer to FP32 than the symmetric grids' (mean squared error)
    if shift != "off":
        fp32 = run(m)
        off = run(quantize_qdq(m, AMAX, Int8Config(shift="off")))
        assert ((got - fp32) ** 2).mean() < ((off - fp32) ** 2).mean()  # weight error dominates here


def test_a_wrong_bias_or_shift_is_caught_by_the_reference():
    """The reference test fails on a graph whose bias fold is dropped (mutation check)."""
    from onnx import numpy_helper

    m = graph()
    q = quantize_qdq(m, AMAX, Int8Config(shift="all"))
    bias = next(t for t in q.graph.initializer if t.name == "c1_shifted_bias")
    bias.CopyFrom(numpy_helper.from_array(np.zeros(8, np.float32), bias.name))
    want = reference(m, "all")
    assert np.abs(run(q) - want).max() > 1e-2 * np.abs(want).max()


def test_shift_bounds_only_for_tensors_read_by_convolutions():
    m = graph()
    uses = {t: [n for n, _ in u] for t, u in qdq_sites(m, Int8Config()).items()}
    assert shift_bounds(m, uses, "all") == {"x": 0.0, "c0.y": pytest.approx(SILU_MIN), "c1.y": pytest.approx(SILU_MIN)}
    assert shift_bounds(m, uses, "unpadded") == {"c1.y": pytest.approx(SILU_MIN)}  # c0.y: read by c2 (3x3) too
    assert shift_bounds(m, {"c0.y": ["c1"]}, "unpadded") == {"c0.y": pytest.approx(SILU_MIN)}
    assert shift_bounds(m, uses, "off") == {}
    assert shift_bounds(m, {"c0.y": ["c1", "add_out"]}, "all") == {}  # a non-conv reader
    assert shift_bounds(m, {"c2.c": ["c3"]}, "all") == {}  # no static lower bound
    with pytest.raises(YoloEdgeError, match="unknown activation shift"):
        shift_bounds(m, uses, "sideways")
    with pytest.raises(YoloEdgeError, match="unknown activation shift"):
        Int8Config(shift="sideways")


def test_fp16_twin_carries_the_shift_and_stays_fp16_for_tensorrt_10():
    from yolo_edge.precision.fp16 import convert_fp16
    from yolo_edge.precision.precision_map import precision_map

    m = graph()
    q32 = quantize_qdq(m, AMAX, Int8Config(shift="all"))
    q16 = fp16_scale_twin(q32, convert_fp16(m).model)
    assert same_quantization(q32, q16) == []
    assert shifted_tensors(q16).keys() == shifted_tensors(q32).keys()
    y32, y16 = run(q32), run(q16).astype(np.float32)
    assert np.abs(y16 - y32).max() < 0.03 * np.abs(y32).max()
    pm = precision_map(q16, "10")
    assert pm.conv_int8_share == 1.0
    assert [n.node for n in pm.nodes if n.precision == "fp32"] == ["graph_output_cast0"]
    assert {n.op_type for n in pm.nodes if n.precision == "fp16"} >= {"Pad", "Sub"}


def test_refinement_interpreter_simulates_the_shifted_graph():
    torch = pytest.importorskip("torch")
    from yolo_edge.precision.refine import TorchGraph

    m = graph()
    q = quantize_qdq(m, AMAX, Int8Config(shift="all"))
    sites = qdq_sites(m, Int8Config())
    quant = {(n, i): t for t, u in sites.items() for n, i in u}
    lower = shift_bounds(m, {t: [n for n, _ in u] for t, u in sites.items()}, "all")
    g = TorchGraph(m, quant, ["c0", "c1", "c2", "c3"], "mse", lower=lower)
    with torch.no_grad():
        got = g.run(torch.from_numpy(X), {t: torch.tensor(v) for t, v in AMAX.items()})[0].numpy()
    want = run(q)
    assert np.abs(got - want).max() < 1e-3 * np.abs(want).max()
    g_sym = TorchGraph(m, quant, ["c0", "c1", "c2", "c3"], "mse")
    with torch.no_grad():
        sym_out = g_sym.run(torch.from_numpy(X), {t: torch.tensor(v) for t, v in AMAX.items()})[0].numpy()
    assert np.abs(sym_out - want).max() > 1e-2 * np.abs(want).max()  # the shift is what makes them equal


def test_sensitivity_models_see_fp32_layers_on_shifted_inputs():
    from yolo_edge.precision.sensitivity import FLAG_PREFIX, local_error_model, switchable_model

    m = graph()
    q = quantize_qdq(m, AMAX, Int8Config(shift="all"))
    sw, flags = switchable_model(m, q)
    s = ort.InferenceSession(sw.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {f: np.array(False) for f in dict.fromkeys(flags.values())}
    off = s.run(None, {"x": X, **feeds})[0]
    on = s.run(None, {"x": X, **{f: np.array(True) for f in feeds}})[0]
    fp32 = run(m)
    assert np.abs(off - fp32).max() < 1e-5 * np.abs(fp32).max()  # all off: exactly the FP32 model
    assert np.abs(on - run(q)).max() < 1e-5 * np.abs(fp32).max()
    assert all(f.startswith(FLAG_PREFIX) for f in feeds)
    # the local clone of c0 (its input is the image, FP32 in both) is the FP32 layer
    le, nodes = local_error_model(m, q)
    s = ort.InferenceSession(le.SerializeToString(), providers=["CPUExecutionProvider"])
    err, ref = s.run(["err::c0", "ref::c0"], {"x": X})
    from onnx import numpy_helper

    w = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in m.graph.initializer}
    y_fp = conv_ref(X.astype(np.float64), w["c0.w"], w["c0.b"], 1)
    qw, sw_ = quantize_weight(w["c0.w"].astype(np.float32), 0, "mse")
    y_q = conv_ref(grid(X.astype(np.float64), 0.0, 1.0), qw * sw_.reshape(-1, 1, 1, 1), w["c0.b"], 1)
    assert float(ref) == pytest.approx(float((y_fp ** 2).sum()), rel=1e-4)
    assert float(err) == pytest.approx(float(((y_q - y_fp) ** 2).sum()), rel=1e-3)


def test_report_measures_shifted_sites_in_their_own_space():
    from yolo_edge.precision.int8 import qdq_layers
    from yolo_edge.precision.report import measure_sqnr, sqnr_db, unshifted_view

    m = graph()
    q = quantize_qdq(m, AMAX, Int8Config(shift="all"))
    pairs, scales = {}, {}
    for layer in qdq_layers(q).values():
        pairs.update(layer.activations)
        scales.update(layer.scales)
    view, pairs, scales, offsets = unshifted_view(q, pairs, scales)
    assert set(pairs) == {"x", "c0.y", "c1.y"} and set(offsets) == set(pairs)
    sq = measure_sqnr(m, view, pairs, [X], scales, offsets)
    # the image reaches its Q/DQ unchanged: measured and local SQNR agree, and equal the grid's
    want = sqnr_db(X, grid(X.astype(np.float64), 0.0, 1.0))
    assert sq["x"]["sqnr_db"] == pytest.approx(want, abs=0.05)
    assert sq["x"]["local_sqnr_db"] == pytest.approx(want, abs=0.05)
    assert sq["x"]["sqnr_db"] > sqnr_db(X, sym(X, 1.0)) + 5  # about 6 dB better than the symmetric grid


def test_cli_mirrors_the_shift_constants():
    import argparse

    from yolo_edge.precision import cli
    from yolo_edge.precision.pipeline import PrecisionConfig
    from yolo_edge.precision.qdq import DEFAULT_SHIFT

    assert cli.SHIFTS == SHIFTS
    assert cli.DEFAULT_SHIFT == DEFAULT_SHIFT == PrecisionConfig().shift == Int8Config().shift
    p = argparse.ArgumentParser()
    cli.add_precision_args(p)
    cfg = cli.config_from_args(p.parse_args(["--int8", "--int8-shift", "unpadded"]), Path("out"), "m",
                               fp16=True, int8=True)
    assert cfg.shift == "unpadded" and cfg.int8_config().algorithm()["shift"] == "unpadded"
    with pytest.raises(SystemExit):
        p.parse_args(["--int8-shift", "sideways"])


def test_shifted_grids_start_between_the_methods_range_and_the_max():
    amax = {"a": 2.0, "b": 2.0, "c": 3.0, "d": 1.0}
    absmax = {"a": 8.0, "b": 8.0, "c": 2.5, "d": 1.0}
    got = shifted_start(amax, {"a": SILU_MIN, "c": 0.0, "d": 0.0}, absmax)
    assert got == {"a": pytest.approx(4.0), "b": 2.0, "c": 3.0, "d": 1.0}  # only shifted ones, never below amax
