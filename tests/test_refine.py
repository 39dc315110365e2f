"""End-to-end range refinement (``yolo_edge/precision/refine.py``), checked against ONNX Runtime.

* the PyTorch interpreter of the ONNX graph gives ONNX Runtime's outputs, on a small detector
  (Conv with asymmetric pads, MaxPool, nearest Resize, Concat, Reshape, Transpose, Split, Slice, box
  decode) and on a graph of the other supported operators, and on the real yolov5n when
  ../shared/data is there;
* its fake quantization is ONNX's QuantizeLinear + DequantizeLinear (``onnx.reference``: round half
  to even, saturation at -128 / 127), and with the Q/DQ sites and INT8 weights of ``quantize_qdq`` it
  reproduces ONNX Runtime running that Q/DQ graph;
* the output loss is the hand-computed score and IoU terms;
* from ranges sabotaged to 5 % of the tensors' maxima, refinement lowers the output error *as ONNX
  Runtime measures it on other images* with the Q/DQ graph ``quantize_qdq`` writes;
* an operator it cannot run, or no PyTorch, leaves the calibrated ranges and a note.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

from onnx import TensorProto as T, helper as h, numpy_helper as nh  # noqa: E402

from yolo_edge.precision.int8 import Int8Config, quantize_qdq  # noqa: E402
from yolo_edge.precision.qdq import qdq_sites  # noqa: E402
from yolo_edge.precision.refine import (TorchGraph, UnsupportedGraph, ste_fake_quant, output_loss,  # noqa: E402
                                        refine_amax)

sys.path.insert(0, str(Path(__file__).parent))
from onnx_blocks import conv_silu  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RNG = np.random.default_rng(3)
C = 3  # classes of the toy detector


def _conv(name, x, cin, cout, k=3, stride=1, pads=None, silu=True):
    return conv_silu(name, x, cin, cout, RNG, k=k, stride=stride, pads=pads, silu=silu,
                     w_scale=1.5 / np.sqrt(cin * k * k))


def _const(name, arr):
    return nh.from_array(np.asarray(arr), name)


def toy_detector(size=32):
    """x (1,3,S,S) -> stem (asymmetric pads, stride 2) -> conv -> MaxPool -> Resize x2 -> Concat with
    the stem -> residual Add -> 1x1 head (4 + C channels) -> boxes (1, N, 4) xyxy and scores (1, N, C)."""
    nodes, inits = [], []
    n, i, y0 = _conv("stem", "x", 3, 8, k=3, stride=2, pads=[0, 0, 1, 1])
    nodes += n; inits += i  # noqa: E702
    n, i, y1 = _conv("c1", y0, 8, 8)
    nodes += n; inits += i  # noqa: E702
    nodes.append(h.make_node("MaxPool", [y1], ["mp"], name="mp", kernel_shape=[2, 2], strides=[2, 2]))
    inits.append(_const("up.scales", np.array([1, 1, 2, 2], np.float32)))
    nodes.append(h.make_node("Resize", ["mp", "", "up.scales"], ["up"], name="up", mode="nearest",
                             coordinate_transformation_mode="asymmetric", nearest_mode="floor"))
    nodes.append(h.make_node("Concat", ["up", y0], ["cat"], name="cat", axis=1))
    n, i, y2 = _conv("c2", "cat", 16, 8, k=1)
    nodes += n; inits += i  # noqa: E702
    nodes.append(h.make_node("Add", [y0, y2], ["res"], name="res"))
    n, i, yh = _conv("head", "res", 8, 4 + C, k=1, silu=False)
    nodes += n; inits += i  # noqa: E702
    g = size // 2
    inits += [_const("shape", np.array([1, 4 + C, g * g], np.int64)), _const("split", np.array([4, C], np.int64)),
              _const("stride", np.array(float(size), np.float32)), _const("s0", np.array([0], np.int64)),
              _const("s2", np.array([2], np.int64)), _const("s4", np.array([4], np.int64)),
              _const("ax2", np.array([2], np.int64)), _const("half", np.array(0.5, np.float32))]
    nodes += [h.make_node("Reshape", [yh, "shape"], ["flat"], name="flat"),
              h.make_node("Transpose", ["flat"], ["tr"], name="tr", perm=[0, 2, 1]),
              h.make_node("Split", ["tr", "split"], ["box_raw", "cls_raw"], name="split", axis=2),
              h.make_node("Sigmoid", ["box_raw"], ["box_sig"], name="box_sig"),
              h.make_node("Mul", ["box_sig", "stride"], ["box_px"], name="box_px"),
              h.make_node("Slice", ["box_px", "s0", "s2", "ax2"], ["cxy"], name="cxy"),
              h.make_node("Slice", ["box_px", "s2", "s4", "ax2"], ["wh"], name="wh"),
              h.make_node("Mul", ["wh", "half"], ["hwh"], name="hwh"),
              h.make_node("Sub", ["cxy", "hwh"], ["xy1"], name="xy1"),
              h.make_node("Add", ["cxy", "hwh"], ["xy2"], name="xy2"),
              h.make_node("Concat", ["xy1", "xy2"], ["boxes"], name="boxes", axis=2),
              h.make_node("Sigmoid", ["cls_raw"], ["scores"], name="scores")]
    m = h.make_model(h.make_graph(nodes, "toy", [h.make_tensor_value_info("x", T.FLOAT, [1, 3, size, size])],
                                  [h.make_tensor_value_info("boxes", T.FLOAT, [1, g * g, 4]),
                                   h.make_tensor_value_info("scores", T.FLOAT, [1, g * g, C])], inits),
                     opset_imports=[h.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def _ort(model, x):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    s = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})


def _images(n, size=32, seed=0):
    r = np.random.default_rng(seed)
    out = []
    for _ in range(n):  # smooth blobs on a background: structured, like images, not white noise
        yy, xx = np.mgrid[:size, :size] / size
        img = np.stack([0.5 + 0.4 * np.sin(2 * np.pi * (r.uniform(0.5, 2) * xx + r.uniform(0.5, 2) * yy + r.uniform()))
                        for _ in range(3)])
        out.append(img[None].astype(np.float32))
    return out


def test_interpreter_matches_onnxruntime_on_a_small_detector():
    m = toy_detector()
    for x in _images(3):
        ref = _ort(m, x)
        got = TorchGraph(m).run(torch.from_numpy(x), quantize=False)
        for a, b in zip(got, ref):
            np.testing.assert_allclose(a.numpy(), b, rtol=1e-4, atol=1e-4)


def test_interpreter_matches_onnxruntime_on_the_other_operators():
    x = h.make_tensor_value_info("x", T.FLOAT, [1, 2, 4, 6])
    inits = [_const("w", RNG.standard_normal((6, 5)).astype(np.float32)), _const("two", np.array(2.0, np.float32)),
             _const("idx", np.array([2, 0], np.int64)), _const("ax", np.array([1], np.int64)),
             _const("ax0", np.array([0], np.int64)), _const("three", np.array(3.0, np.float32))]
    nodes = [h.make_node("MatMul", ["x", "w"], ["mm"]),
             h.make_node("Softmax", ["mm"], ["sm"], axis=-1),
             h.make_node("ReduceSum", ["sm", "ax"], ["rs"], keepdims=1),
             h.make_node("Pow", ["rs", "two"], ["pw"]),
             h.make_node("Div", ["pw", "three"], ["dv"]),
             h.make_node("Mul", ["dv", "three"], ["m3"]),
             h.make_node("Floor", ["m3"], ["fl"]),
             h.make_node("Gather", ["mm", "idx"], ["ga"], axis=3),
             h.make_node("Shape", ["ga"], ["shp"]),
             h.make_node("Cast", ["shp"], ["shf"], to=T.FLOAT),
             h.make_node("Squeeze", ["fl", "ax"], ["sq"]),
             h.make_node("Unsqueeze", ["sq", "ax0"], ["us"]),
             h.make_node("Tanh", ["us"], ["th"]),
             h.make_node("Relu", ["th"], ["y"]),
             h.make_node("Identity", ["shf"], ["shape_f"])]
    m = h.make_model(h.make_graph(nodes, "ops", [x], [h.make_tensor_value_info("y", T.FLOAT, None),
                                                       h.make_tensor_value_info("ga", T.FLOAT, None),
                                                       h.make_tensor_value_info("shape_f", T.FLOAT, None)], inits),
                     opset_imports=[h.make_opsetid("", 17)])
    m.ir_version = 8
    xv = (RNG.standard_normal((1, 2, 4, 6)) * 3).astype(np.float32)
    ref = _ort(m, xv)
    got = TorchGraph(m).run(torch.from_numpy(xv), quantize=False)
    for a, b in zip(got, ref):
        np.testing.assert_allclose(a.numpy(), b, rtol=1e-5, atol=1e-5)


def test_interpreter_matches_onnxruntime_on_the_anchor_grid_operators():
    """Range, ConstantOfShape and Expand, as Ultralytics' YOLOv8 export builds its anchor grid from a
    feature map's shape (the sizes come from Shape, so the interpreter must compute them too)."""
    x = h.make_tensor_value_info("x", T.FLOAT, [1, 2, 3, 5])
    inits = [_const("zero", np.array(0, np.int64)), _const("one", np.array(1, np.int64)),
             _const("half", np.array(0.5, np.float32)), _const("i2", np.array([2], np.int64)),
             _const("i3", np.array([3], np.int64)), _const("i4", np.array([4], np.int64)),
             _const("fstart", np.array(0.25, np.float32)), _const("fstep", np.array(0.5, np.float32))]
    nodes = [h.make_node("Shape", ["x"], ["shp"]),
             h.make_node("Gather", ["shp", "i2"], ["hh"], axis=0),
             h.make_node("Gather", ["shp", "i3"], ["ww"], axis=0),
             h.make_node("Squeeze", ["ww"], ["w0"]),
             h.make_node("Range", ["zero", "w0", "one"], ["rx"]),  # int64 0..W-1
             h.make_node("Cast", ["rx"], ["rxf"], to=T.FLOAT),
             h.make_node("Add", ["rxf", "half"], ["cx"]),
             h.make_node("Cast", ["w0"], ["wf"], to=T.FLOAT),
             h.make_node("Range", ["fstart", "wf", "fstep"], ["fr"]),  # float steps
             h.make_node("Concat", ["hh", "ww"], ["hw"], axis=0),
             h.make_node("Expand", ["cx", "hw"], ["grid"]),  # (W,) -> (H, W)
             h.make_node("ConstantOfShape", ["hw"], ["ones"], value=h.make_tensor("v", T.FLOAT, [1], [1.5])),
             h.make_node("ConstantOfShape", ["i4"], ["zeros"]),  # default: float 0
             h.make_node("Mul", ["grid", "ones"], ["g2"]),
             h.make_node("Add", ["x", "g2"], ["y"])]
    m = h.make_model(h.make_graph(nodes, "grid", [x], [h.make_tensor_value_info("y", T.FLOAT, None),
                                                        h.make_tensor_value_info("fr", T.FLOAT, None),
                                                        h.make_tensor_value_info("zeros", T.FLOAT, None),
                                                        h.make_tensor_value_info("rx", T.INT64, None)], inits),
                     opset_imports=[h.make_opsetid("", 17)])
    m.ir_version = 8
    xv = RNG.standard_normal((1, 2, 3, 5)).astype(np.float32)
    ref = _ort(m, xv)
    got = TorchGraph(m).run(torch.from_numpy(xv), quantize=False)
    assert [tuple(g.shape) for g in got] == [r.shape for r in ref] == [(1, 2, 3, 5), (10,), (4,), (5,)]
    for a, b in zip(got, ref):
        assert a.numpy().dtype == b.dtype
        np.testing.assert_allclose(a.numpy(), b, rtol=1e-6, atol=1e-6)


def test_unknown_operator_is_refused_by_name():
    x = h.make_tensor_value_info("x", T.FLOAT, [1, 4])
    m = h.make_model(h.make_graph([h.make_node("Erf", ["x"], ["y"])], "g", [x],
                                  [h.make_tensor_value_info("y", T.FLOAT, [1, 4])]))
    with pytest.raises(UnsupportedGraph, match="Erf"):
        TorchGraph(m)


def test_fake_quant_is_onnx_quantize_dequantize():
    from onnx.reference import ReferenceEvaluator

    s = np.float32(0.1)
    # ties (k + 0.5) * s round to even; beyond +-12.7 / -12.8 saturates to 127 / -128
    x = np.array([0.05, 0.15, 0.25, -0.05, -0.15, -0.25, 1.0, 12.74, 12.76, 50.0, -12.8, -12.86, -50.0,
                  0.0, 3.14159], np.float32)
    x = np.concatenate([x, (RNG.standard_normal(200) * 5).astype(np.float32)])
    g = h.make_graph([h.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
                      h.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])], "qdq",
                     [h.make_tensor_value_info("x", T.FLOAT, [x.size])], [h.make_tensor_value_info("y", T.FLOAT, [x.size])],
                     [nh.from_array(np.asarray(s), "s"), nh.from_array(np.asarray(0, np.int8), "z")])
    ref = ReferenceEvaluator(h.make_model(g, opset_imports=[h.make_opsetid("", 19)])).run(None, {"x": x})[0]
    got = ste_fake_quant(torch.from_numpy(x), torch.tensor(s * 127.0)).numpy()
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)


def by_name_q(q):
    return {n.name: n for n in q.graph.node}


def _quant_setup(m, amax_scale=None, images=None, weight_scale="mse"):
    cfg = Int8Config(placement="trt", weight_scale=weight_scale)
    sites = {t: [n for n, _ in uses] for t, uses in qdq_sites(m, cfg).items()}
    weighted = sorted({n for cs in sites.values() for n in cs if n in {x.name for x in m.graph.node
                                                                        if x.op_type == "Conv"}})
    if images is None:
        images = _images(4)
    absmax = {}
    probe = onnx.ModelProto()
    probe.CopyFrom(m)
    for t in sites:
        probe.graph.output.append(h.make_tensor_value_info(t, T.FLOAT, None))
    for x in images:
        outs = _ort(probe, x)[2:]
        for t, v in zip(sites, outs):
            absmax[t] = max(absmax.get(t, 0.0), float(np.abs(v).max()))
    amax = {t: v * (amax_scale or 1.0) for t, v in absmax.items()}
    return cfg, sites, weighted, amax


@pytest.mark.parametrize("weight_scale", ["max", "mse"])
def test_fake_quantized_graph_reproduces_onnxruntime_on_the_qdq_graph(weight_scale):
    m = toy_detector()
    if weight_scale == "mse":  # c1's weights sit halfway between max's INT8 steps: a slightly clipped scale wins
        tr = np.random.default_rng(8)
        t = next(t for t in m.graph.initializer if t.name == "c1.w")
        w = nh.to_array(t)
        steps = (tr.integers(0, 60, w.shape) + 0.5) * tr.choice([-1.0, 1.0], w.shape)
        steps.reshape(len(w), -1)[:, 0] = 127.0  # the channel's maximum: max|w| / 127 is one step
        t.CopyFrom(nh.from_array((steps * 0.18 / 127).astype(np.float32), t.name))
    cfg, sites, weighted, amax = _quant_setup(m, weight_scale=weight_scale)
    q = quantize_qdq(m, amax, cfg)
    by = {n.name: n for n in m.graph.node}
    quant = {(c, i): t for t, cs in sites.items() for c in cs for i, nm in enumerate(by[c].input) if nm == t}
    from yolo_edge.precision.qdq import shift_bounds

    lower = shift_bounds(m, {t: cs for t, cs in sites.items() if t in amax}, cfg.shift)
    assert lower  # the default config shifts the grids of the bounded tensors: the interpreter must too
    g = TorchGraph(m, quant, weighted, weight_scale, lower=lower)
    # the interpreter's weights are the INT8 weights of the Q/DQ graph, decoded by ONNX's DequantizeLinear
    # (with mse, the scales differ from max's on some channels: the check can tell the two apart)
    from onnx.reference import ReferenceEvaluator

    qinits = {t.name: nh.to_array(t) for t in q.graph.initializer}
    differ = 0
    for node in weighted:
        dq = next(n for n in q.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in qinits
                  and n.output[0] in by_name_q(q)[node].input)
        want = ReferenceEvaluator(dq).run(None, {k: qinits[k] for k in dq.input})[0]
        np.testing.assert_array_equal(g._wq[node].numpy(), want)
        w = nh.to_array(next(t for t in m.graph.initializer if t.name == by[node].input[1]))
        differ += not np.array_equal(qinits[dq.input[1]], np.abs(w).reshape(len(w), -1).max(axis=1) / np.float32(127))
    assert (differ == 0) if weight_scale == "max" else (differ > 0)
    am = {t: torch.tensor(v) for t, v in amax.items()}
    for x in _images(3, seed=5):
        fp32, ref = _ort(m, x), _ort(q, x)
        got = [v.numpy() for v in g.run(torch.from_numpy(x), am)]
        for a, b, f in zip(got, ref, fp32):
            quant_err = np.abs(b - f).mean()
            assert quant_err > 0  # quantization does change the outputs
            # the same quantization: what is left is float rounding (a value on a rounding tie), far below it
            assert np.abs(a - b).mean() < 0.05 * quant_err, (np.abs(a - b).mean(), quant_err)


def test_output_loss_is_the_hand_computed_score_and_iou_terms():
    fb = torch.tensor([[[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 4.0, 4.0], [5.0, 5.0, 6.0, 6.0]]])
    qb = torch.tensor([[[0.0, 0.0, 10.0, 5.0], [1.0, 1.0, 5.0, 5.0], [0.0, 0.0, 1.0, 1.0]]])
    fs = torch.tensor([[[0.9, 0.1], [0.2, 0.3], [0.01, 0.02]]])
    qs = torch.tensor([[[0.8, 0.1], [0.2, 0.5], [0.03, 0.02]]])
    # score: 0.1^2 + 0.2^2 + 0.02^2; boxes: anchor 0 (best score 0.9) IoU 50/100, anchor 1 (0.3) IoU 9/23,
    # anchor 2 (0.02 < 0.05) not counted
    want = (0.01 + 0.04 + 0.0004) + 0.9 * (1 - 0.5) + 0.3 * (1 - 9 / 23)
    assert float(output_loss(torch, (qb, qs), (fb, fs))) == pytest.approx(want, rel=1e-5)


def test_refinement_repairs_sabotaged_ranges_on_images_it_did_not_see():
    """Ranges at 5 % of each tensor's maximum clip almost everything. Refined on 8 images, the Q/DQ
    graph quantize_qdq writes with the refined ranges must be closer to FP32 on 4 other images, as
    ONNX Runtime runs both graphs, than the one with the sabotaged ranges."""
    m = toy_detector()
    cfg, sites, weighted, bad = _quant_setup(m, amax_scale=0.05)
    calib, held_out = _images(8, seed=11), _images(4, seed=12)
    r = refine_amax(m, sites, bad, weighted, calib, epochs=8, lr=0.1, accumulate=1)
    assert r.final_loss < r.initial_loss and r.images == 8

    def ort_error(amax):
        q = quantize_qdq(m, amax, cfg)
        err = 0.0
        for x in held_out:
            (fb, fs), (qb, qs) = _ort(m, x), _ort(q, x)
            err += np.abs(qs - fs).mean() + np.abs(qb - fb).mean() / 32
        return err

    before, after = ort_error(bad), ort_error(r.amax)
    assert after < 0.7 * before, (before, after)
    assert all(r.amax[t] > bad[t] for t in bad)  # clipping that hard: every range must open up


def test_refinement_keeps_the_ranges_when_it_cannot_lower_the_loss():
    m = toy_detector()
    _, sites, weighted, amax = _quant_setup(m)
    r = refine_amax(m, sites, amax, weighted, _images(2), epochs=1, lr=0.0)
    assert r.amax == amax


def test_job_keeps_calibrated_ranges_with_a_note_when_the_graph_cannot_be_refined(monkeypatch):
    from yolo_edge.precision import pipeline, refine

    def refuse(*a, **k):
        raise refine.UnsupportedGraph("operators not supported by the refinement interpreter: Foo")

    monkeypatch.setattr(refine, "refine_amax", refuse)

    class Calib:
        def head(self, n):
            return self

        def batches(self, *a, **k):
            return iter([np.zeros((1, 3, 8, 8), np.float32)])

    class Spec:
        letterbox = 8

    notes = []
    cfg = pipeline.PrecisionConfig(show_progress=False)
    amax = {"t": 1.0}
    got, r = pipeline._refine(toy_detector(), {"t": ["c1"]}, amax, ["c1"], set(), Calib(), cfg, Spec(), None,
                              notes, False)
    assert got is amax and r is None and notes == ["activation ranges not refined: operators not supported by "
                                                   "the refinement interpreter: Foo"]


def test_cli_flag_defaults_to_the_module_constant():
    import argparse

    from yolo_edge.precision import cli, refine

    assert cli.REFINE_IMAGES == refine.REFINE_IMAGES
    p = argparse.ArgumentParser()
    cli.add_int8_args(p)
    assert p.parse_args([]).int8_refine == refine.REFINE_IMAGES
    assert p.parse_args(["--int8-refine", "0"]).int8_refine == 0
    with pytest.raises(SystemExit):
        p.parse_args(["--int8-refine", "-1"])


@pytest.mark.skipif(not (DATA / "yolov5n.onnx").is_file() or not (DATA / "coco128").is_dir(),
                    reason="../shared/data (yolov5n.onnx, coco128) not present")
def test_interpreter_matches_onnxruntime_on_real_yolov5n(tmp_path):
    from yolo_edge.export.adapters import adapt_onnx
    from yolo_edge.letterbox import letterbox
    from yolo_edge.precision.graph import prepare, strip_nms
    from yolo_edge.spec import NmsSpec

    p = adapt_onnx(DATA / "yolov5n.onnx", tmp_path / "v5n.onnx", fmt="yolov5", nms=NmsSpec(), verbose=False)
    raw = prepare(strip_nms(onnx.load(str(p))))
    import PIL.Image

    img = np.asarray(PIL.Image.open(sorted((DATA / "coco128" / "images" / "train").iterdir())[0]).convert("RGB"))
    x = letterbox(img, 640)[0][None]
    ref = _ort(raw, x)
    got = TorchGraph(raw).run(torch.from_numpy(x), quantize=False)
    np.testing.assert_allclose(got[1].numpy(), ref[1], atol=1e-4)  # scores
    np.testing.assert_allclose(got[0].numpy(), ref[0], atol=0.05)  # boxes in pixels (0..640)


def test_outputs_that_are_not_boxes_and_scores_are_refused():
    """A graph whose outputs are not (boxes, scores) cannot be scored by the output loss: refused by
    name, so the job keeps the calibrated ranges instead of failing."""
    x = h.make_tensor_value_info("x", T.FLOAT, [1, 3, 8, 8])
    n, i, y = _conv("c", "x", 3, 4)
    m = h.make_model(h.make_graph(n, "g", [x], [h.make_tensor_value_info(y, T.FLOAT, [1, 4, 8, 8])], i),
                     opset_imports=[h.make_opsetid("", 17)])
    with pytest.raises(UnsupportedGraph, match="not boxes"):
        refine_amax(m, {"x": ["c"]}, {"x": 1.0}, ["c"], [np.zeros((1, 3, 8, 8), np.float32)])
