"""Precision: INT8 Q/DQ structure, FP16 keep-FP32 list and overflow check, calibration statistics and
methods, SQNR against a numpy quantize-dequantize, the TensorRT legacy cache and its key, the
calibration/evaluation overlap refusal, the report, and the --max-map-drop loop.

Small on purpose (128 px model, a few images): the full job at 640 px is run by
``benchmarks/int8_accuracy.py`` and by ``yolo-edge export --int8``."""

from __future__ import annotations

import json
import math
import struct

import numpy as np
import pytest
from conftest import _fit_batchnorm

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from yolo_edge.data import SYNTHETIC_NAMES  # noqa: E402
from yolo_edge.errors import YoloEdgeError  # noqa: E402
from yolo_edge.letterbox import letterbox_batch  # noqa: E402
from yolo_edge.precision import cache as cache_mod  # noqa: E402
from yolo_edge.precision.calibration import (  # noqa: E402
    DEFAULT_METHOD, CalibrationReader, CalibrationStats, ImageSet, check_disjoint, collect_stats, image_hash,
    lower_bounds, ort_session)
from yolo_edge.precision.fp16 import convert_fp16, overflow_tensors  # noqa: E402
from yolo_edge.precision.graph import find_decode_tail, prepare, strip_nms, tensor_types  # noqa: E402
from yolo_edge.precision.int8 import (  # noqa: E402
    Int8Config, activation_inputs, qdq_layers, quantizable_nodes, quantize_qdq)
from yolo_edge.precision.report import measure_sqnr, sqnr_db, unshifted_view  # noqa: E402
from yolo_edge.precision.sensitivity import (  # noqa: E402
    exclude_until_within_budget, layer_sensitivity, output_error, switchable_model)
from yolo_edge.spec import LetterboxSpec, NmsSpec  # noqa: E402

IMGSZ = 128
LB = LetterboxSpec((IMGSZ, IMGSZ))


# --- fixtures -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, photos):
    """A random-weight n model (the 8 synthetic classes) made to behave like a trained one: BatchNorm statistics
    measured on the photos, last head convs standardised (image-dependent boxes and scores)."""
    from yolo_edge.model import YOLO, save_checkpoint

    torch.manual_seed(0)
    model = YOLO.from_scale("n", nc=len(SYNTHETIC_NAMES), names=list(SYNTHETIC_NAMES))
    x = torch.from_numpy(letterbox_batch(list(photos.values()), IMGSZ)[0])
    _fit_batchnorm(model, x)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_var.mul_(2.0)
        for box, cls, f in zip(model.head.box, model.head.cls, model(x)):
            for conv, out, std, mean in ((box[-1], f[:, :64], 1.0, 0.0), (cls[-1], f[:, 64:], 1.5, -1.0)):
                mu, sd = out.mean(dim=(0, 2, 3)), out.std(dim=(0, 2, 3)).clamp(min=1e-12)
                conv.weight.mul_((std / sd).view(-1, 1, 1, 1))
                conv.bias.copy_((conv.bias - mu) * std / sd + mean)
    path = tmp_path_factory.mktemp("ckpt") / "tiny8.pt"
    save_checkpoint(path, model)
    return path


@pytest.fixture(scope="module")
def fp32_onnx(checkpoint, tmp_path_factory):
    from yolo_edge.export import export_onnx

    d = tmp_path_factory.mktemp("prec")
    return export_onnx(checkpoint, d / "model.onnx", imgsz=IMGSZ, nms=NmsSpec("onnx", 0.25, 0.45, 50), verbose=False)


@pytest.fixture(scope="module")
def graph(fp32_onnx):
    raw = prepare(strip_nms(onnx.load(str(fp32_onnx))))
    tail = find_decode_tail(raw)
    nodes = quantizable_nodes(raw, exclude=tail.nodes)
    return raw, tail, nodes, activation_inputs(raw, nodes)


@pytest.fixture(scope="module")
def stats(graph):
    raw, _, _, acts = graph
    return collect_stats(raw, ImageSet("synthetic:calib", 8), LB, sampled=list(acts), full_range_images=4,
                         show_progress=False)


@pytest.fixture(scope="module")
def qdq(graph, stats):
    raw, tail, _, acts = graph
    return quantize_qdq(raw, stats.amax(DEFAULT_METHOD, names=acts), Int8Config(), tail.nodes)


@pytest.fixture(scope="module")
def photo_batch(photos):
    return letterbox_batch(list(photos.values()), IMGSZ)[0]


def run(model, x):
    s = ort_session(model)
    return dict(zip([o.name for o in s.get_outputs()], s.run(None, {s.get_inputs()[0].name: x})))


def attr(node, name, default=None):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def const(model, name):
    for t in model.graph.initializer:
        if t.name == name:
            return numpy_helper.to_array(t)
    raise KeyError(name)


# --- graph --------------------------------------------------------------------------------------
def test_decode_tail_is_found_structurally(graph):
    raw, tail, nodes, _ = graph
    ops = {n.name: n.op_type for n in raw.graph.node}
    tail_ops = {ops[n] for n in tail.nodes}
    assert {"Softmax", "Sigmoid", "Concat"} <= tail_ops and "Conv" not in tail_ops
    assert len(tail.head) == 6 and all(ops[h] == "Conv" for h in tail.head)  # box + cls per level
    assert {"boxes", "scores"} <= set(tail.tensors)
    assert not set(nodes) & set(tail.nodes) and set(tail.head) <= set(nodes)


def test_decode_tail_includes_a_dfl_convolution():
    """Ultralytics writes the DFL expectation as a fixed 1x1 conv after a Softmax: it is decode, not head."""
    g = helper.make_graph(
        [helper.make_node("Conv", ["images", "w_head"], ["feat"], name="head"),
         helper.make_node("Reshape", ["feat", "shape"], ["r"], name="reshape"),
         helper.make_node("Softmax", ["r"], ["p"], name="softmax", axis=1),
         helper.make_node("Conv", ["p", "w_dfl"], ["dist"], name="dfl"),
         helper.make_node("Mul", ["dist", "stride"], ["boxes"], name="scale")],
        "dfl", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.zeros((64, 3, 1, 1), np.float32), "w_head"),
         numpy_helper.from_array(np.array([1, 16, 4, 16], np.int64), "shape"),
         numpy_helper.from_array(np.arange(16, dtype=np.float32).reshape(1, 16, 1, 1), "w_dfl"),
         numpy_helper.from_array(np.array(8.0, np.float32), "stride")])
    tail = find_decode_tail(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9))
    assert tail.nodes == ("reshape", "softmax", "dfl", "scale") and tail.head == ("head",)


def test_strip_nms_gives_the_raw_outputs(fp32_onnx, checkpoint, tmp_path, photo_batch):
    from yolo_edge.export import export_onnx

    raw_export = export_onnx(checkpoint, tmp_path / "raw.onnx", imgsz=IMGSZ, nms=NmsSpec("none"), verbose=False)
    stripped = strip_nms(onnx.load(str(fp32_onnx)))
    assert [o.name for o in stripped.graph.output] == ["boxes", "scores"]
    a, b = run(stripped, photo_batch), run(str(raw_export), photo_batch)
    np.testing.assert_allclose(a["boxes"], b["boxes"], atol=1e-3)
    np.testing.assert_allclose(a["scores"], b["scores"], atol=1e-5)


# --- INT8 structure -----------------------------------------------------------------------------
def test_qdq_structure_is_what_tensorrt_expects(graph, qdq):
    raw, tail, nodes, acts = graph
    prod = {o: n for n in qdq.graph.node for o in n.output}
    layers = qdq_layers(qdq)
    convs = [n for n in qdq.graph.node if n.op_type == "Conv"]
    quantized = [c for c in convs if c.name in layers]
    assert {c.name for c in quantized} == set(nodes)
    for c in quantized:
        # weight: INT8 initializer -> DequantizeLinear, per output channel (axis 0), zero-point 0
        dq = prod[c.input[1]]
        assert dq.op_type == "DequantizeLinear" and attr(dq, "axis", 1) == 0
        w = const(qdq, dq.input[0])
        scale, zp = const(qdq, dq.input[1]), const(qdq, dq.input[2])
        assert w.dtype == np.int8 and scale.shape == (w.shape[0],) and zp.dtype == np.int8 and not zp.any()
        assert np.abs(w).max() <= 127  # symmetric range
        # activation: x -> QuantizeLinear -> DequantizeLinear, per tensor, zero-point 0
        dqa = prod[c.input[0]]
        q = prod[dqa.input[0]]
        assert dqa.op_type == "DequantizeLinear" and q.op_type == "QuantizeLinear"
        for n in (q, dqa):
            assert const(qdq, n.input[1]).size == 1 and const(qdq, n.input[2]).dtype == np.int8
            assert not const(qdq, n.input[2]).any()
        # bias stays float (TensorRT has no INT32 DequantizeLinear); output not quantized
        if len(c.input) > 2:
            assert c.input[2] not in prod and const(qdq, c.input[2]).dtype == np.float32
        assert not any(c.output[0] in n.input for n in qdq.graph.node if n.op_type == "QuantizeLinear")
    # nothing quantized in or after the decode tail; boxes and scores never share a quantizer
    tail_names = set(tail.nodes)
    for n in qdq.graph.node:
        if n.name in tail_names:
            assert all(prod.get(i) is None or prod[i].op_type != "DequantizeLinear" for i in n.input), n.name
    head_out = {o for n in raw.graph.node if n.name in set(tail.head) for o in n.output}
    q_inputs = {n.input[0] for n in qdq.graph.node if n.op_type == "QuantizeLinear"}
    assert not q_inputs & (set(tail.tensors) | head_out)


def test_excluded_layer_reads_float(graph, stats):
    raw, tail, nodes, acts = graph
    victim = nodes[len(nodes) // 2]
    m = quantize_qdq(raw, stats.amax(names=acts), Int8Config(exclude=(victim,)), tail.nodes)
    prod = {o: n for n in m.graph.node for o in n.output}
    node = next(n for n in m.graph.node if n.name == victim)
    assert all(prod.get(i) is None or prod[i].op_type != "DequantizeLinear" for i in node.input)
    assert victim not in qdq_layers(m)


def test_int8_outputs_close_to_fp32_on_photos(graph, qdq, photo_batch):
    raw = graph[0]
    a, b = run(raw, photo_batch), run(qdq, photo_batch)
    assert sqnr_db(a["scores"], b["scores"]) > 15
    conf = a["scores"].max(-1) > 0.3
    assert conf.sum() > 20  # the test model is confident somewhere
    err = np.abs(a["boxes"] - b["boxes"])[conf]
    assert np.median(err) < 2.0 and err.max() < 16  # pixels at 128 px
    assert output_error((a["boxes"], a["scores"]), (b["boxes"], b["scores"])) < 0.1


# --- calibration statistics and methods ---------------------------------------------------------
def test_stats_exact_max_and_histogram(graph, stats):
    raw, _, _, acts = graph
    st = stats.tensors["images"]
    assert st.min >= 0.0 and 0.9 < st.max <= 1.0 and st.has_hist
    # the exact max of a deep tensor matches a direct run over the same images
    t = list(acts)[len(acts) // 2]
    from yolo_edge.precision.graph import expose

    full = np.concatenate(list(ImageSet("synthetic:calib", 8).batches(LB, 4)))
    direct = run(expose(raw, [t]), full)[t]
    assert stats.tensors[t].max == pytest.approx(float(direct.max()), rel=1e-6)
    assert stats.tensors[t].n_images == 8
    assert lower_bounds(raw)[list(acts)[1]] == pytest.approx(-0.27846, abs=1e-4)  # a SiLU output


# the calibration methods against their references: tests/test_calibration_ref.py


def test_stats_save_load_round_trip(stats, tmp_path):
    p = stats.save(tmp_path / "s.npz")
    back = CalibrationStats.load(p)
    assert back.hashes == stats.hashes and back.letterbox == stats.letterbox
    assert back.amax("entropy") == stats.amax("entropy")


def test_calibration_from_a_video_takes_frames_at_a_stride(tmp_path):
    import cv2

    path = tmp_path / "clip.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (96, 64))
    if not w.isOpened():
        pytest.skip("OpenCV has no MJPG writer here")
    for i in range(12):
        w.write(np.full((64, 96, 3), 20 * i, np.uint8))
    w.release()
    imgs = ImageSet(str(path), 4)
    frames = list(imgs.images())
    assert len(frames) == 4 and len(imgs.hashes()) == 4
    levels = [int(round(f.mean() / 20)) for f in frames]
    assert levels == [0, 3, 6, 9]  # spread over the clip, not the first four frames
    assert len(list(imgs.head(2).images())) == 2
    x = next(imgs.batches(LB, 4))
    assert x.shape == (4, 3, IMGSZ, IMGSZ)


def test_calibration_reader_is_an_ort_data_reader():
    from onnxruntime.quantization import CalibrationDataReader

    r = CalibrationReader(ImageSet("synthetic:calib", 3), LB, batch=2)
    assert isinstance(r, CalibrationDataReader) and len(r) == 2
    shapes = [item["images"].shape for item in r]
    assert shapes == [(2, 3, IMGSZ, IMGSZ), (1, 3, IMGSZ, IMGSZ)]
    r.rewind()
    assert r.get_next()["images"].dtype == np.float32


# --- SQNR -------------------------------------------------------------------------------------
def test_sqnr_of_the_input_equals_numpy_quantize_dequantize(graph, qdq, stats):
    raw = graph[0]
    layers = qdq_layers(qdq)
    pairs, scales = {}, {}
    for layer in layers.values():
        pairs.update(layer.activations)
        scales.update(layer.scales)
    x = np.concatenate(list(ImageSet("synthetic:calib", 2).batches(LB, 2)))
    view, pairs, scales, offsets = unshifted_view(qdq, pairs, scales)
    res = measure_sqnr(raw, view, pairs, [x], scales, offsets)
    # the image (>= 0) is on the shifted grid over [0, amax] (qdq.shift_activations): c a whole number of steps
    s, c = scales["images"], offsets["images"]
    amax = stats.tensors["images"].amax(DEFAULT_METHOD)
    assert s == pytest.approx(amax / 254, rel=1e-6) and c / s == pytest.approx(round(c / s), abs=1e-3)
    ref = np.clip(np.round((x - c) / s), -128, 127) * s + c  # the reference, written out
    expected = 10 * math.log10(float((x.astype(np.float64) ** 2).sum()) / float(((x - ref) ** 2).sum()))
    assert res["images"]["sqnr_db"] == pytest.approx(expected, abs=1e-3)  # the input has no upstream error
    assert res["images"]["local_sqnr_db"] == pytest.approx(expected, abs=1e-3)
    deep = [t for t in pairs if t != "images"]
    assert all(res[t]["sqnr_db"] <= res[t]["local_sqnr_db"] + 1.0 for t in deep)  # error accumulates
    assert {"boxes", "scores"} <= set(res)


# --- FP16 ---------------------------------------------------------------------------------------
def test_fp16_io_float32_tail_float32_and_close(graph, stats, photo_batch):
    raw, tail, _, _ = graph
    res = convert_fp16(raw, stats.absmax(), tail=tail.nodes)
    m = res.model
    onnx.checker.check_model(m, full_check=True)
    for v in (*m.graph.input, *m.graph.output):
        assert v.type.tensor_type.elem_type == TensorProto.FLOAT
    types = tensor_types(m)
    inits = {t.name: t for t in m.graph.initializer}
    for n in m.graph.node:
        if n.name in set(tail.nodes):  # kept nodes compute in FP32: every float input and output is FP32
            for t in (*n.input, *n.output):
                if t in inits:
                    assert inits[t].data_type != TensorProto.FLOAT16, (n.name, t)
                elif t in types:
                    assert types[t].type.tensor_type.elem_type != TensorProto.FLOAT16, (n.name, t)
        elif n.op_type == "Conv":
            assert inits[n.input[1]].data_type == TensorProto.FLOAT16
    # no lossy FP32 -> FP16 -> FP32 round trip left between kept nodes
    prod = {o: n for n in m.graph.node for o in n.output}
    for n in m.graph.node:
        if n.op_type == "Cast" and attr(n, "to") == TensorProto.FLOAT:
            src = prod.get(n.input[0])
            assert not (src is not None and src.op_type == "Cast" and prod.get(src.input[0]) is not None
                        and prod[src.input[0]].name in set(tail.nodes)), n.name
    kept = {k["node"] for k in res.kept}
    assert set(tail.nodes) <= kept
    a, b = run(raw, photo_batch), run(m, photo_batch)
    assert np.abs(a["scores"] - b["scores"]).max() < 0.02
    conf = a["scores"].max(-1) > 0.3
    assert np.abs(a["boxes"] - b["boxes"])[conf].max() < 1.0


def _overflow_graph():
    """images (B, 3, 16, 16) -> x * 1e5 ("big", beyond FP16) -> * 1e-5 -> conv 1x1 -> out."""
    g = helper.make_graph(
        [helper.make_node("Mul", ["images", "k_big"], ["big"], name="scale_up"),
         helper.make_node("Mul", ["big", "k_small"], ["small"], name="scale_down"),
         helper.make_node("Conv", ["small", "w"], ["out"], name="conv")],
        "overflow",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["B", 3, 16, 16])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["B", 2, 16, 16])],
        [numpy_helper.from_array(np.array(1e5, np.float32), "k_big"),
         numpy_helper.from_array(np.array(1e-5, np.float32), "k_small"),
         numpy_helper.from_array(np.full((2, 3, 1, 1), 0.5, np.float32), "w")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def test_fp16_overflow_check_keeps_the_node_fp32():
    m = _overflow_graph()
    st = collect_stats(m, ImageSet("synthetic:calib", 2), LetterboxSpec((16, 16)), show_progress=False)
    assert st.tensors["big"].absmax > 65504
    over = overflow_tensors(m, st.absmax())
    assert [o["tensor"] for o in over] == ["big"] and over[0]["producer"] == "scale_up"
    res = convert_fp16(m, st.absmax())
    kept = {k["node"]: k["reason"] for k in res.kept}
    assert "scale_up" in kept and "scale_down" in kept and "overflow" in kept["scale_up"]
    assert "conv" not in kept
    x = np.concatenate(list(ImageSet("synthetic:calib", 2).batches(LetterboxSpec((16, 16)), 2)))
    ref = run(m, x)["out"]
    out = run(res.model, x)["out"]
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, ref, rtol=2e-3, atol=2e-3)
    # "big" is FP32 in the checked model; without the check it would be FP16 (inf on a GPU: ONNX Runtime's
    # CPU provider computes Mul in FP32 between Casts, so the overflow cannot be shown by running it here)
    def output_type(model, node):
        out = next(n for n in model.graph.node if n.name == node).output[0]
        return tensor_types(model)[out].type.tensor_type.elem_type

    assert output_type(res.model, "scale_up") == TensorProto.FLOAT
    assert output_type(convert_fp16(m, None).model, "scale_up") == TensorProto.FLOAT16


# --- TensorRT cache and keys ---------------------------------------------------------------------
@pytest.mark.parametrize("version, tag", [("8.6.1", "8601"), ("8.5.3", "8503"), ("10.3.0", "100300"),
                                          ("10.14.1.48", "101401"), ("7.1.3", "7103"), ("8601", "8601")])
def test_trt_version_tag(version, tag):
    assert cache_mod.trt_version_tag(version) == tag


def _key(**changes):
    base = dict(onnx_sha256="a" * 64, preprocessing=cache_mod.preprocessing_of(LB), images_sha256="b" * 64,
                n_images=8, algorithm={"method": "entropy"})
    return cache_mod.CacheKey(**{**base, **changes})


def test_trt_cache_text_round_trip_and_stale_key(tmp_path):
    scales = {"images": 1.0 / 127, "/m/stem/act/Mul_output_0": 0.0421, "a: b": 3.5e-5, "zero": 0.0}
    path = cache_mod.write_cache(tmp_path / "calibration.cache", scales, _key(), trt_version="8.6.1")
    text = path.read_text()
    lines = text.splitlines()
    assert lines[0] == "TRT-8601-EntropyCalibration2"
    assert "images: 3c010204" in lines  # 1/127 as float32 bits, big-endian hex
    assert "zero: 0" in lines
    for line in lines[1:]:  # parse back by hand: hex -> float32 equals the scale
        name, value = line.rsplit(": ", 1)
        f = struct.unpack(">f", bytes.fromhex(value.rjust(8, "0")))[0]
        assert f == np.float32(scales[name])
    assert cache_mod.check_cache(path, _key()) == pytest.approx({k: float(np.float32(v)) for k, v in scales.items()})
    with pytest.raises(cache_mod.StaleCacheError, match="ONNX model"):
        cache_mod.check_cache(path, _key(onnx_sha256="c" * 64))
    with pytest.raises(cache_mod.StaleCacheError, match="image list"):
        cache_mod.check_cache(path, _key(images_sha256="d" * 64))
    with pytest.raises(cache_mod.StaleCacheError, match="algorithm"):
        cache_mod.check_cache(path, _key(algorithm={"method": "minmax"}))
    with pytest.raises(cache_mod.StaleCacheError, match="preprocessing"):
        cache_mod.check_cache(path, _key(preprocessing=cache_mod.preprocessing_of(LetterboxSpec((128, 128),
                                                                                                 pad_value=0))))
    path.write_text(text.replace("3c010204", "3c010205"))
    with pytest.raises(cache_mod.StaleCacheError, match="modified"):
        cache_mod.check_cache(path, _key())
    cache_mod.sidecar(path).unlink()
    with pytest.raises(cache_mod.StaleCacheError, match="no readable key"):
        cache_mod.check_cache(path, _key())


# --- calibration / evaluation overlap --------------------------------------------------------------
def test_overlap_refused_unless_forced(tmp_path):
    import cv2

    from yolo_edge.data import synthetic_split

    val = ImageSet("synthetic:val", 4)  # 4 images spread over the 200
    folder = tmp_path / "calib"
    folder.mkdir()
    cv2.imwrite(str(folder / "mine.png"), synthetic_split("calib", 1)[0].image)
    shared = val.dataset[val.indices[2]].image
    cv2.imwrite(str(folder / "renamed_val.png"), shared)  # a validation image under another name
    calib = ImageSet(str(folder), None)
    val_hashes = val.hashes()
    with pytest.raises(YoloEdgeError, match="--force-overlap"):
        check_disjoint(calib.hashes(), val_hashes)
    assert check_disjoint(calib.hashes(), val_hashes, force=True) == [1]
    assert image_hash(shared) in val_hashes
    # the canonical splits are disjoint (checked by hash, not assumed from the seeds)
    assert check_disjoint(ImageSet("synthetic:calib", 16).hashes(), ImageSet("synthetic:val", 16).hashes()) == []


def test_cli_refuses_overlap(fp32_onnx, tmp_path, capsys):
    import cv2

    from yolo_edge.cli import main
    from yolo_edge.data import synthetic_split

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(2):
        cv2.imwrite(str(folder / f"{i}.png"), synthetic_split("val", 2)[i].image)
    rc = main(["calibrate", str(fp32_onnx), "--calib", str(folder), "--val", "synthetic:val:2", "-q",
               "--out-dir", str(tmp_path / "out")])
    assert rc == 1
    err = capsys.readouterr().err
    assert "calibrate: error:" in err and "disjoint" in err and len(err.strip().splitlines()) == 1


# --- sensitivity and the budget loop -------------------------------------------------------------
def test_switchable_model_spans_fp32_to_int8(graph, qdq, photo_batch):
    raw, _, nodes, _ = graph
    sw, flags = switchable_model(raw, qdq)
    assert set(nodes) <= set(flags)
    x = photo_batch[:2]
    feeds = lambda on: {f: np.array(on) for f in set(flags.values())}  # noqa: E731
    s = ort_session(sw)
    names = [o.name for o in s.get_outputs()]
    off = dict(zip(names, s.run(None, {"images": x, **feeds(False)})))
    on = dict(zip(names, s.run(None, {"images": x, **feeds(True)})))
    a, b = run(raw, x), run(qdq, x)
    np.testing.assert_allclose(off["scores"], a["scores"], atol=1e-4)
    np.testing.assert_allclose(on["scores"], b["scores"], atol=1e-5)
    np.testing.assert_allclose(on["boxes"], b["boxes"], atol=1e-3)


def test_layer_sensitivity_ranks_every_layer(graph, qdq, photo_batch):
    raw, _, nodes, _ = graph
    ranking, full = layer_sensitivity(raw, qdq, [photo_batch[:2]], nodes[:6], show_progress=False)
    assert [r.node for r in ranking] and {r.node for r in ranking} == set(nodes[:6])
    assert all(r.error >= 0 for r in ranking) and full > 0
    assert ranking == sorted(ranking, key=lambda r: -r.error)


def test_output_error_is_zero_for_equal_outputs():
    rng = np.random.default_rng(0)
    b = rng.uniform(0, 100, (1, 10, 4)).astype(np.float32)
    b[..., 2:] += b[..., :2]
    s = rng.uniform(0, 1, (1, 10, 3)).astype(np.float32)
    assert output_error((b, s), (b, s)) == 0.0
    assert output_error((b, s), (b + 1, s)) > output_error((b, s), (b + 0.1, s)) > 0


def test_budget_loop_excludes_harmful_layers_until_within_budget():
    gains = {"a": 0.0, "b": 0.006, "c": 0.005, "d": 0.004}  # mAP (0..1) recovered by excluding each layer
    fp32, int8 = 0.60, 0.585  # 1.5 points below FP32

    def quantize(excluded):
        return tuple(excluded)

    def evaluate(model):
        return int8 + sum(gains[n] for n in model)

    res = exclude_until_within_budget(["b", "a", "c", "d"], quantize, evaluate, fp32, int8, max_drop=1.0)
    assert res.within_budget and res.excluded == ["b"] and res.reason == "within budget"
    res = exclude_until_within_budget(["a", "b", "c", "d"], quantize, evaluate, fp32, int8, max_drop=0.4)
    assert res.excluded == ["b", "c"] and res.within_budget
    assert [(s.node, s.kept) for s in res.steps] == [("a", False), ("b", True), ("c", True)]
    assert res.final_map == pytest.approx(0.596)
    res = exclude_until_within_budget(["a", "b", "c", "d"], quantize, evaluate, fp32, int8, max_drop=0.1,
                                      max_steps=2)
    assert not res.within_budget and res.excluded == ["b"] and "2 evaluations" in res.reason
    res = exclude_until_within_budget(["a"], quantize, evaluate, fp32, 0.599, max_drop=1.0)
    assert res.within_budget and not res.steps


def test_budget_loop_keeps_an_exclusion_only_when_it_also_brings_int8_closer_to_fp32():
    """With the agreement callback, an mAP gain that does not come with a rise in agreement with
    FP32's own detections (luck on the labelled objects) is reverted."""
    gains = {"a": 0.004, "b": 0.006, "c": 0.005}  # mAP (0..1) each exclusion appears to recover
    closer = {"a": 0.01, "b": -0.002, "c": 0.004}  # what it does to agreement with FP32
    fp32, int8 = 0.60, 0.585

    def evaluate(model):
        return int8 + sum(gains[n] for n in model)

    def agreement(model):
        return 0.90 + sum(closer[n] for n in model)

    res = exclude_until_within_budget(["b", "a", "c"], tuple, evaluate, fp32, int8, max_drop=0.4, model=(),
                                      agreement=agreement)
    assert [(s.node, s.kept) for s in res.steps] == [("b", False), ("a", True), ("c", True)]
    assert res.excluded == ["a", "c"] and res.final_map == pytest.approx(0.594) and not res.within_budget
    assert res.steps[2].agreement_before == pytest.approx(0.91) and res.steps[2].agreement_after == pytest.approx(0.914)
    assert res.steps[0].to_dict()["agreement_after"] == pytest.approx(0.898)
    # without it, the first mAP gain is kept
    res = exclude_until_within_budget(["b", "a", "c"], tuple, evaluate, fp32, int8, max_drop=0.4)
    assert res.excluded[0] == "b"


# --- the job, small ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def job(checkpoint, tmp_path_factory):
    """``yolo-edge export --int8`` end to end at 128 px, static batch 2, 8 calibration and 4 validation images,
    every INT8 setting its default (GPTQ weight rounding, shifted grids, refined ranges)."""
    from yolo_edge.cli import main

    out = tmp_path_factory.mktemp("job")
    rc = main(["export", "--int8", "--model", str(checkpoint), "--imgsz", str(IMGSZ), "--static", "--batch", "2",
               "--out", str(out / "model.onnx"), "--calib-images", "8", "--val-images", "4",
               "--max-map-drop", "none", "--quiet"])
    return rc, out


def test_job_writes_models_with_the_four_output_contract(job):
    from yolo_edge.runtime.ort_runner import read_spec

    rc, out = job
    assert rc == 0
    data_hash = json.loads((out / "calibration.stats.npz.json").read_text())["images_sha256"]
    for prec in ("fp16", "int8"):
        path = out / f"model.{prec}.onnx"
        s = ort_session(path)
        assert [o.name for o in s.get_outputs()] == ["num_dets", "det_boxes", "det_scores", "det_classes"]
        assert s.get_inputs()[0].type == "tensor(float)" and s.get_inputs()[0].shape[0] == 2
        spec = read_spec(path)
        assert spec.precision == prec and spec.nms.flavour == "onnx"
        assert spec.extra["precision"]["calibration"]["data_sha256"] == data_hash
    int8 = read_spec(out / "model.int8.onnx").extra["precision"]
    assert int8["method"] == DEFAULT_METHOD == "entropy" and int8["quantized_layers"]
    assert any(e["reason"].startswith("decode tail") for e in int8["excluded"])
    rows = json.loads((out / "report" / "report.json").read_text())["evaluation"]
    assert [r["precision"] for r in rows] == ["fp32", "fp16", "int8"]
    assert all(r["map50_95"] is not None and r["latency_ms"] > 0 for r in rows)
    assert rows[2]["size_mb"] < 0.4 * rows[0]["size_mb"]  # INT8 weights


def test_job_report_and_cache(job):
    _, out = job
    rep = out / "report"
    for name in ("report.json", "report.html", "ranges.png", "histograms.png", "sqnr.png"):
        assert (rep / name).stat().st_size > 0, name
    data = json.loads((rep / "report.json").read_text())
    assert set(data["flag_counts"]) == {"narrow_range", "heavy_saturation", "fp16_overflow_risk", "low_sqnr"}
    entries = data["tensors"]
    assert {e["tensor"] for e in entries} == {t for layer in data["layers"] for t in layer["inputs"]}
    sq = [e["sqnr_db"] for e in entries]
    assert sq == sorted(sq)  # worst first
    for k in ("min", "max", "amax", "percentiles_abs", "histogram", "saturation_pct", "sqnr_db", "flags"):
        assert k in entries[0]
    assert all(f in FLAG_NAMES for e in entries for f in e["flags"])
    assert "<img" in (rep / "report.html").read_text()
    header, scales = cache_mod.parse_trt_cache((out / "calibration.cache").read_text())
    assert header.startswith("TRT-") and scales["images"] > 0 and "boxes" not in scales
    key = cache_mod.read_key(out / "calibration.cache")
    assert cache_mod.check_cache(out / "calibration.cache", key) == scales


FLAG_NAMES = {"narrow_range", "heavy_saturation", "fp16_overflow_risk", "low_sqnr"}


def test_job_refines_the_ranges_and_the_report_shows_both(job):
    """The default job refines the calibrated ranges (precision/refine.py) on the calibration images, in
    the static batch of 2: the INT8 file's activation scales are the refined ranges / 127, the report
    keeps the calibrated range beside each (what the statistics give for entropy; on a shifted grid
    the geometric mean of that and the largest |x|, ``qdq.shifted_start``), and the ranges plot is
    drawn with both."""
    from yolo_edge.precision.int8 import activation_scales

    _, out = job
    info = read_spec_extra(out / "model.int8.onnx")
    assert info["refined"]["images"] == 8 and info["refined"]["kept"]
    assert info["refined"]["final_loss"] < info["refined"]["initial_loss"]
    data = json.loads((out / "report" / "report.json").read_text())
    assert data["calibration"]["refined"].startswith("8 images") and "refined ranges used" in data["calibration"]["refined"]
    from yolo_edge.precision.qdq import shifted_tensors

    f32 = onnx.load(str(out / "model.int8.fp32scales.onnx"))
    scales, shifts = activation_scales(f32), shifted_tensors(f32)
    by_source: dict[str, list[str]] = {}
    for z, sh in shifts.items():
        by_source.setdefault(sh["source"], []).append(z)
    entries = data["tensors"]
    for e in entries:  # refined from the calibrated ranges: entropy's, and on a shifted grid qdq.shifted_start's
        want = e["amax_by_method"]["entropy"]
        if e["tensor"] in by_source:  # the geometric mean of entropy's amax and max |x| on the calibration images
            want = math.sqrt(want * max(want, abs(e["min"]), abs(e["max"])))
        assert e["amax_calibrated"] == pytest.approx(want, rel=1e-5), e["tensor"]
        if e["tensor"] in by_source:  # a shifted grid (qdq.shift_activations): amax is its top, 2c - amax its bottom
            for z in by_source[e["tensor"]]:
                assert scales[z] == pytest.approx((e["amax"] - e["shift"]) / 127.0, rel=1e-5)
                assert shifts[z]["shift"] == pytest.approx(e["shift"], rel=1e-6)
        else:
            assert "shift" not in e and scales[e["tensor"]] == pytest.approx(e["amax"] / 127.0, rel=1e-6)
    assert sum(e["tensor"] in by_source for e in entries) >= len(entries) // 2  # SiLU outputs read by convs
    assert info["shift"]["mode"] == "all" and info["shift"]["tensors"].keys() == by_source.keys()
    # the legacy implicit-INT8 cache (symmetric) takes each tensor's chosen top, shifted or not
    _, cache_scales = cache_mod.parse_trt_cache((out / "calibration.cache").read_text())
    assert all(cache_scales[e["tensor"]] == pytest.approx(e["amax"] / 127.0, rel=1e-5) for e in entries)
    assert data["calibration"]["activation_shift"].startswith(f"all: {len(by_source)} of {len(entries)} tensors")
    assert sum(abs(e["amax"] / e["amax_calibrated"] - 1) > 0.01 for e in entries) >= len(entries) // 2


def test_job_rounds_the_weights_by_gptq_and_both_int8_files_carry_them(job):
    """The default ``--int8-weight-rounding gptq`` rounds the INT8 weights by GPTQ (precision/rounding.py) with
    the mse scales: the scales are those of nearest rounding, some levels differ from nearest, the rounding lowered
    each layer's output error on the calibration images, and the TensorRT 10/11 file (FP16 scales)
    carries the very INT8 weights of the FP32-scale file."""
    from onnx import numpy_helper

    from yolo_edge.precision.qdq import quantize_weight

    _, out = job
    info = read_spec_extra(out / "model.int8.onnx")
    r = info["weight_rounding"]
    raw = prepare(strip_nms(onnx.load(str(out / "model.onnx"))))
    grouped = {n.name for n in raw.graph.node if n.op_type == "Conv"
               and any(a.name == "group" and a.i > 1 for a in n.attribute)}
    quantized, guard = set(info["quantized_layers"]), set(info["head_guard"]["nodes"])
    assert grouped and grouped <= quantized | guard  # (the guard may keep these cheap convs FP16)
    # rounded before the guard chose its layers: every quantizable conv but the depthwise ones
    assert r["layers"] == len((quantized | guard) - grouped) and r["images"] == 8
    assert all(after <= before for before, after in r["error"].values())
    assert sum(after < before for before, after in r["error"].values()) >= r["layers"] // 2
    f32 = onnx.load(str(out / "model.int8.fp32scales.onnx"))
    f16 = onnx.load(str(out / "model.int8.onnx"))
    i32 = {t.name: numpy_helper.to_array(t) for t in f32.graph.initializer}
    i16 = {t.name: numpy_helper.to_array(t) for t in f16.graph.initializer}
    src = {t.name: numpy_helper.to_array(t) for t in raw.graph.initializer}
    differ = 0
    weights = [k for k in i32 if k.endswith("_quantized")]
    assert len(weights) == len(info["quantized_layers"])
    for k in weights:
        w = src[k[: -len("_quantized")]]
        q0, s0 = quantize_weight(w, 0, "mse")
        np.testing.assert_array_equal(i32[k[: -len("_quantized")] + "_scale"], s0)
        np.testing.assert_array_equal(i16[k], i32[k])
        differ += int((i32[k] != q0).sum())
    assert differ > 0


def test_job_keeps_the_sensitive_guards_layers_fp16_within_the_flop_share(job):
    """The default guard (sensitive): the layers it names read no DequantizeLinear in the TensorRT
    file, each has its reason, and the precision map still has >= 95 % of the conv FLOPs INT8."""
    import onnx

    from yolo_edge.precision.precision_map import precision_map
    from yolo_edge.runtime.ort_runner import read_spec

    rc, out = job
    info = read_spec(out / "model.int8.onnx").extra["precision"]
    g = info["head_guard"]
    assert g["policy"] == "sensitive" and g["share"] == 0.05 and g["nodes"]
    assert g["sensitive"]["flop_share"] <= 0.05 and g["sensitive"]["images"] == 8
    assert {e["node"] for e in info["excluded"] if e["reason"].startswith("guard:")} == set(g["nodes"])
    q = onnx.load(str(out / "model.int8.onnx"))
    prod = {o: n.op_type for n in q.graph.node for o in n.output}
    by = {n.name: n for n in q.graph.node}
    for name in g["nodes"]:
        assert all(prod.get(i) != "DequantizeLinear" for i in by[name].input), name
    kept = {e["node"] for e in info["excluded"]}  # the guard's, the decode tail's
    quantized = [n for n in q.graph.node if n.op_type == "Conv" and n.name not in kept]
    node_of = {o: n for n in q.graph.node for o in n.output}

    def reads_dq(t):  # through the explicit Pad of a shifted grid
        src = node_of.get(t)
        return src is not None and (src.op_type == "DequantizeLinear"
                                    or (src.op_type == "Pad" and reads_dq(src.input[0])))

    assert quantized and all(reads_dq(n.input[0]) for n in quantized)
    assert precision_map(out / "model.int8.onnx", "10").conv_int8_share >= 0.95


def test_job_without_pytorch_rounds_to_nearest_and_starts_the_shifted_grids_higher(job, tmp_path, monkeypatch):
    """On a device without PyTorch (a Jetson with ONNX Runtime only) the default job still writes both INT8
    files: GPTQ rounding and the refinement are skipped with a note each, every INT8 weight is its nearest
    level on the mse scale (``quantize_weight``, the independent reference), and each shifted grid's top
    is ``shifted_start`` of the calibrated range."""
    import sys

    from yolo_edge.precision.pipeline import PrecisionConfig, run_precision
    from yolo_edge.precision.qdq import quantize_weight

    _, out = job
    monkeypatch.setitem(sys.modules, "torch", None)  # ``import torch`` raises ImportError from here on
    res = run_precision(out / "model.onnx", PrecisionConfig(out_dir=tmp_path, fp16=False, calib="synthetic:calib",
                                                           calib_images=4, val=None, sensitivity="never",
                                                           latency_runs=1, report_images=1, show_progress=False))
    assert any(n.startswith("INT8 weights not rounded by gptq: PyTorch is not installed") for n in res.notes)
    assert any(n.startswith("activation ranges not refined: PyTorch is not installed") for n in res.notes)
    info = read_spec_extra(res.paths["int8_fp32scales"])
    assert info["weight_rounding"] == "nearest"
    m = onnx.load(str(res.paths["int8_fp32scales"]))
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    raw = prepare(strip_nms(onnx.load(str(out / "model.onnx"))))
    src = {t.name: numpy_helper.to_array(t) for t in raw.graph.initializer}
    weights = [k for k in inits if k.endswith("_quantized")]
    assert len(weights) == len(info["quantized_layers"])
    for k in weights:
        q0, _ = quantize_weight(src[k[: -len("_quantized")]], 0, "mse")
        np.testing.assert_array_equal(inits[k], q0)
    stats = json.loads((tmp_path / "report" / "report.json").read_text())
    shifted = [e for e in stats["tensors"] if "shift" in e]
    assert shifted and len(shifted) < len(stats["tensors"])
    for e in shifted:  # the geometric mean of entropy's amax and max |x|, to within the half step c is snapped by
        want = math.sqrt(e["amax_by_method"]["entropy"] * max(abs(e["min"]), abs(e["max"])))
        assert e["amax"] == pytest.approx(want, abs=0.5 * e["scale"] + 1e-6), e["tensor"]
    assert any(e["amax"] > e["amax_by_method"]["entropy"] + e["scale"] for e in shifted)  # not entropy's own


def read_spec_extra(path):
    from yolo_edge.runtime.ort_runner import read_spec

    return read_spec(path).extra["precision"]


def test_finish_exit_code_and_report_path(capsys, tmp_path):
    from yolo_edge.precision.cli import finish
    from yolo_edge.precision.pipeline import PrecisionResult, Row

    r = PrecisionResult([Row("fp32", "m.onnx", 10.0, 0.5, 0.7, None, 5.0), Row("int8", "q.onnx", 3.0, 0.48, 0.69,
                                                                                   -2.0, 7.0)],
                        {}, tmp_path / "report", False, 2.0, 1.0, 1.0)
    assert finish(r, 0.0) == 2
    cap = capsys.readouterr()
    assert "int8" in cap.out and "-2.00" in cap.out and str(tmp_path / "report" / "report.html") in cap.err
