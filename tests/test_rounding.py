"""GPTQ rounding of the INT8 weights (``precision/rounding.py``).

The numpy core is held to a slow Optimal-Brain-Quantization loop written here (the inverse of the
remaining columns' Hessian recomputed by ``np.linalg.inv`` at every step, no Cholesky, no blocks);
the layer-output error to a direct sum over input vectors; the gathered ``H`` to inputs probed with
ONNX Runtime and unfolded by hand; the written graph to ``onnx.reference``'s DequantizeLinear and
ONNX Runtime.
"""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto as T, helper as h, numpy_helper as nh  # noqa: E402

from yolo_edge.errors import YoloEdgeError  # noqa: E402
from yolo_edge.precision.int8 import Int8Config, quantize_qdq  # noqa: E402
from yolo_edge.precision.qdq import quantize_weight  # noqa: E402
from yolo_edge.precision.rounding import gptq_int8, output_error  # noqa: E402


def _slow_obq(w, hm, s, damp=0.01):
    """Round column after column; after each, the remaining columns absorb the error through the
    inverse of H restricted to the columns not yet rounded (OBQ's update, recomputed from scratch)."""
    w = np.array(w, np.float64)
    hm = np.array(hm, np.float64)
    hm = hm + damp * np.mean(np.diag(hm)) * np.eye(len(hm))
    d = w.shape[1]
    q = np.zeros_like(w)
    for i in range(d):
        rest = np.arange(i, d)
        hinv = np.linalg.inv(hm[np.ix_(rest, rest)])
        q[:, i] = np.clip(np.round(w[:, i] / s), -127, 127)
        err = (w[:, i] - q[:, i] * s) / hinv[0, 0]
        w[:, rest] -= np.outer(err, hinv[0, :])
    return q


def _layer(rng, cout=6, d=13, n=400):
    """Weights, inputs with strongly correlated features (as neighbouring pixels are) and scales."""
    base = rng.standard_normal((n, 3))
    x = base @ rng.standard_normal((3, d)) + 0.1 * rng.standard_normal((n, d))
    w = rng.standard_normal((cout, d)).astype(np.float32)
    s = (np.abs(w).max(axis=1) / 127.0 * 8).astype(np.float32)  # coarse steps: rounding matters
    return w, x, s


@pytest.mark.parametrize("block", [128, 4])  # one block, and lazy updates across blocks
def test_gptq_is_the_slow_obq_reference(block):
    rng = np.random.default_rng(0)
    w, x, s = _layer(rng)
    hm = x.T @ x / len(x)
    got = gptq_int8(w, hm, s, block=block)
    want = _slow_obq(w, hm, s.astype(np.float64))
    assert got.dtype == np.int8
    np.testing.assert_array_equal(got, want.astype(np.int8))
    nearest = np.clip(np.round(w / s[:, None]), -127, 127)
    assert (got != nearest).mean() > 0.05  # not nearest rounding under another name


def test_output_error_is_the_mean_squared_layer_output_error_and_gptq_lowers_it():
    rng = np.random.default_rng(1)
    w, xx, s = _layer(rng, cout=8, d=20, n=4000)
    x, x2 = xx[:2000], xx[2000:]
    hm = x.T @ x / len(x)
    nearest = np.clip(np.round(w / s[:, None]), -127, 127)
    direct = float((((w - nearest * s[:, None]) @ x.T) ** 2).sum(axis=0).mean())
    assert output_error(w, nearest, s, hm) == pytest.approx(direct, rel=1e-6)
    q = gptq_int8(w, hm, s)
    # on held-out inputs from the same distribution too, not only on the ones H came from
    h2 = x2.T @ x2 / len(x2)
    assert output_error(w, q, s, hm) < 0.5 * output_error(w, nearest, s, hm)
    assert output_error(w, q, s, h2) < 0.5 * output_error(w, nearest, s, h2)


def test_inputs_that_are_always_zero_do_not_disturb_the_others():
    rng = np.random.default_rng(2)
    w, x, s = _layer(rng)
    x[:, 3] = 0.0
    hm = x.T @ x / len(x)
    q = gptq_int8(w, hm, s)
    assert np.all(q[:, 3] == 0)
    keep = np.arange(w.shape[1]) != 3
    np.testing.assert_array_equal(q[:, keep], gptq_int8(w[:, keep], hm[np.ix_(keep, keep)], s))


def test_shapes_that_do_not_fit_are_refused():
    with pytest.raises(ValueError):
        gptq_int8(np.zeros((2, 3)), np.eye(4), np.ones(2))


# --- the graph -------------------------------------------------------------------------------

torch = pytest.importorskip("torch")

from test_refine import _images, _ort, _quant_setup, toy_detector  # noqa: E402

from yolo_edge.precision.refine import TorchGraph  # noqa: E402
from yolo_edge.precision.rounding import gptq_weights  # noqa: E402


def _unfold(x, w_shape, pads, strides):
    """im2col written out: one column per output position, (Cin, kh, kw) order."""
    c, kh, kw = w_shape[1:]
    xp = np.pad(x[0], ((0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    cols = []
    for i in range(0, xp.shape[1] - kh + 1, strides[0]):
        for j in range(0, xp.shape[2] - kw + 1, strides[1]):
            cols.append(xp[:, i:i + kh, j:j + kw].reshape(-1))
    return np.asarray(cols, np.float64).T


def test_gptq_weights_use_each_layers_real_inputs_and_reach_the_qdq_graph():
    m = toy_detector()
    cfg, sites, weighted, amax = _quant_setup(m, weight_scale="mse")
    images = _images(4, seed=3)
    r = gptq_weights(m, weighted, images, "mse")
    by = {n.name: n for n in m.graph.node}
    inits = {t.name: nh.to_array(t) for t in m.graph.initializer}
    convs = [n for n in weighted if by[n].op_type == "Conv"]
    assert sorted(r.error_before) == sorted(convs) and len(r.weights) == len(convs)
    # H from the inputs ONNX Runtime computes, unfolded by hand
    probe = onnx.ModelProto()
    probe.CopyFrom(m)
    for n in convs:
        probe.graph.output.append(h.make_tensor_value_info(by[n].input[0], T.FLOAT, None))
    outs = [_ort(probe, x)[2:] for x in images]
    changed = 0
    for k, name in enumerate(convs):
        node = by[name]
        w = inits[node.input[1]]
        attrs = {a.name: h.get_attribute_value(a) for a in node.attribute}
        cols = np.concatenate([_unfold(o[k], w.shape, attrs.get("pads", [0] * 4), attrs.get("strides", [1, 1]))
                               for o in outs], axis=1)
        href = cols @ cols.T / cols.shape[1]
        q, s = r.weights[node.input[1]]
        q0, s0 = quantize_weight(w, 0, "mse")
        np.testing.assert_array_equal(s, s0)  # the scales are the weight-scale method's
        w2 = w.reshape(len(w), -1)
        assert output_error(w2, q.reshape(len(w), -1), s, href) <= output_error(w2, q0.reshape(len(w), -1), s, href) + 1e-9
        assert r.error_before[name] == pytest.approx(output_error(w2, q0.reshape(len(w), -1), s, href), rel=1e-4)
        changed += int((q != q0).sum())
    assert changed > 0
    # the Q/DQ graph carries exactly these INT8 weights, and the interpreter runs the same graph
    import dataclasses

    cfg = dataclasses.replace(cfg, int8_weights=r.weights)
    assert cfg.algorithm()["weight_rounding"] == "gptq" and cfg == dataclasses.replace(cfg, int8_weights=None)
    qm = quantize_qdq(m, amax, cfg)
    qinits = {t.name: nh.to_array(t) for t in qm.graph.initializer}
    for wname, (q, s) in r.weights.items():
        np.testing.assert_array_equal(qinits[f"{wname}_quantized"], q)
        np.testing.assert_array_equal(qinits[f"{wname}_scale"], s)
    quant = {(c, i): t for t, cs in sites.items() for c in cs for i, nm in enumerate(by[c].input) if nm == t}
    from yolo_edge.precision.qdq import shift_bounds

    # the shifted grids' bias fold uses the rounded weights too (shift_activations): the interpreter agrees
    lower = shift_bounds(m, {t: cs for t, cs in sites.items() if t in amax}, cfg.shift)
    g = TorchGraph(m, quant, weighted, "mse", r.weights, lower=lower)
    am = {t: torch.tensor(v) for t, v in amax.items()}
    for x in _images(2, seed=9):
        fp32, ref = _ort(m, x), _ort(qm, x)
        got = [v.numpy() for v in g.run(torch.from_numpy(x), am)]
        for a, b, f in zip(got, ref, fp32):
            assert np.abs(a - b).mean() < 0.05 * np.abs(b - f).mean()


def test_a_rounded_weight_of_the_wrong_shape_is_refused():
    m = toy_detector()
    cfg, sites, weighted, amax = _quant_setup(m)
    w = next(n for n in m.graph.node if n.name == weighted[0]).input[1]
    bad = {w: (np.zeros((1, 1, 1, 1), np.int8), np.ones(1, np.float32))}
    with pytest.raises(YoloEdgeError, match="does not match"):
        quantize_qdq(m, amax, Int8Config(int8_weights=bad))


def test_cli_flag_reaches_the_config_and_mirrors_the_module():
    import argparse
    from pathlib import Path

    from yolo_edge.precision import cli, rounding
    from yolo_edge.precision.pipeline import PrecisionConfig, run_precision

    assert cli.WEIGHT_ROUNDINGS == rounding.WEIGHT_ROUNDINGS
    assert cli.DEFAULT_WEIGHT_ROUNDING == rounding.DEFAULT_WEIGHT_ROUNDING == PrecisionConfig().weight_rounding
    p = argparse.ArgumentParser()
    cli.add_precision_args(p)
    for argv, want in (([], rounding.DEFAULT_WEIGHT_ROUNDING), (["--int8-weight-rounding", "nearest"], "nearest"),
                       (["--int8-weight-rounding", "gptq"], "gptq")):
        cfg = cli.config_from_args(p.parse_args(["--int8", *argv]), Path("out"), "m", fp16=True, int8=True)
        assert cfg.weight_rounding == want
    with pytest.raises(YoloEdgeError, match="weight rounding"):
        run_precision("missing.onnx", PrecisionConfig(weight_rounding="stochastic"))
