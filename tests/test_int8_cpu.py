"""The ONNX Runtime CPU INT8 target (``--int8-target ort-cpu``, ``<name>.int8-cpu.onnx``).

Checked against ONNX Runtime itself: the graph it runs after its own optimizations (written through
``SessionOptions.optimized_model_filepath``) has integer kernels (QLinearConv ...) where the
TensorRT-target graph has float convolutions; outputs stay close to FP32 on real photos with a real,
trained detector (the Ultralytics YOLOv8n shipped in the ``nudenet`` package) and, when
``../shared/data`` is present, with YOLOv5n on coco128. No timing assertions: speed is measured by
``benchmarks/int8_cpu.py``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from yolo_edge.export.adapters import adapt_onnx  # noqa: E402
from yolo_edge.letterbox import letterbox_batch  # noqa: E402
from yolo_edge.precision.calibration import (CalibrationStats, ImageSet, TensorStats, collect_stats,  # noqa: E402
                                             lower_bounds, ort_session)
from yolo_edge.precision.graph import find_decode_tail, prepare, strip_nms  # noqa: E402
from yolo_edge.precision.int8 import Int8Config, activation_inputs, quantizable_nodes, quantize_qdq  # noqa: E402
from yolo_edge.precision.int8_cpu import (CPU_OP_TYPES, CpuInt8Config, activation_ranges, cpu_features,  # noqa: E402
                                          int8_kernel_note, optimized_model, quantize_cpu, quantized_tensors)
from yolo_edge.spec import NmsSpec  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _run(model, x):
    s = ort_session(model)
    return dict(zip([o.name for o in s.get_outputs()], s.run(None, {s.get_inputs()[0].name: x})))


def _ops(model) -> dict:
    out: dict[str, int] = {}
    for n in model.graph.node:
        out[n.op_type] = out.get(n.op_type, 0) + 1
    return out


def _folder(images, d: Path) -> str:
    """An image folder of ``images`` (PNG, lossless) for :class:`ImageSet`."""
    import cv2

    d.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images):
        cv2.imwrite(str(d / f"{i}.png"), img)
    return str(d)


@pytest.fixture(scope="module")
def y8(tmp_path_factory, photos, nudenet_onnx):
    """Real YOLOv8n (nudenet), NMS stripped; CPU-target and TensorRT-target INT8 graphs calibrated on
    three photos; the other two photos held out."""
    src = nudenet_onnx
    d = tmp_path_factory.mktemp("y8")
    path = adapt_onnx(src, d / "y8.onnx", fmt="yolov8", nms=NmsSpec("onnx", 0.25, 0.45), verbose=False)
    raw = prepare(strip_nms(onnx.load(str(path))))
    tail = find_decode_tail(raw)
    imgs = [photos[k] for k in ("landscape", "square", "portrait", "wide")]
    calib, held = imgs[:2] + imgs[3:], imgs[2:3]
    tensors = quantized_tensors(raw, CPU_OP_TYPES, tail.nodes)
    nodes = quantizable_nodes(raw, exclude=tail.nodes)
    acts = activation_inputs(raw, nodes)
    stats = collect_stats(raw, ImageSet(_folder(calib, d / "calib"), None), (320, 320), sampled=[*tensors, *acts],
                          show_progress=False)
    cpu = quantize_cpu(raw, activation_ranges(stats, tensors, lower=lower_bounds(raw)), CpuInt8Config(), tail.nodes)
    trt = quantize_qdq(raw, stats.amax(names=acts), Int8Config(), tail.nodes)
    return {"raw": raw, "tail": tail, "cpu": cpu, "trt": trt, "held": held, "calib": calib, "dir": d, "path": path,
            "stats": stats, "tensors": tensors}


def test_ort_fuses_the_cpu_target_into_integer_kernels(y8):
    """What ONNX Runtime runs after its optimizations: every non-tail convolution as QLinearConv and
    the SiLU/residual/concat ops as QLinear* in the CPU target; float Conv in the TensorRT target."""
    raw, tail = y8["raw"], y8["tail"]
    n_conv = sum(n.op_type == "Conv" and n.name not in set(tail.nodes) for n in raw.graph.node)
    cpu = _ops(optimized_model(y8["cpu"], y8["dir"] / "cpu.optimized.onnx"))
    trt = _ops(optimized_model(y8["trt"], y8["dir"] / "trt.optimized.onnx"))
    assert (y8["dir"] / "cpu.optimized.onnx").is_file()  # the file ONNX Runtime wrote
    assert cpu.get("QLinearConv", 0) == n_conv > 50
    assert cpu.get("QLinearSigmoid", 0) > 40 and cpu.get("QLinearMul", 0) > 40
    assert cpu.get("QLinearConcat", 0) > 5 and cpu.get("QLinearAdd", 0) > 0
    # between layers the data stays 8-bit: few Q/DQ left (graph input, decode tail)
    assert cpu.get("QuantizeLinear", 0) + cpu.get("DequantizeLinear", 0) < 12
    # the TensorRT-target graph: no integer convolution, Q/DQ everywhere (this is why it is slow on a CPU)
    assert trt.get("QLinearConv", 0) == 0 and trt.get("Conv", 0) + trt.get("FusedConv", 0) >= n_conv


def test_cpu_target_types_u8_activations_s8_per_channel_weights(y8):
    q = y8["cpu"]
    inits = {t.name: t for t in q.graph.initializer}
    prod = {o: n for n in q.graph.node for o in n.output}
    from onnx import TensorProto, numpy_helper

    tail = set(y8["tail"].nodes)  # the DFL expectation conv stays float
    convs = [n for n in q.graph.node if n.op_type == "Conv" and n.name not in tail]
    assert len(convs) > 50
    for n in convs:
        x_dq, w_dq = prod[n.input[0]], prod[n.input[1]]
        assert x_dq.op_type == w_dq.op_type == "DequantizeLinear"
        assert inits[w_dq.input[0]].data_type == TensorProto.INT8
        w = numpy_helper.to_array(inits[w_dq.input[0]])
        assert numpy_helper.to_array(inits[w_dq.input[1]]).shape == (w.shape[0],)  # per output channel
        assert not numpy_helper.to_array(inits[w_dq.input[2]]).any()  # symmetric weights
        zp = inits.get(x_dq.input[2])
        assert zp is not None and zp.data_type == TensorProto.UINT8  # asymmetric uint8 activations
        if len(n.input) > 2:  # INT32 bias (QLinearConv needs it)
            assert inits[prod[n.input[2]].input[0]].data_type == TensorProto.INT32


def test_decode_tail_stays_float(y8):
    q, tail = y8["cpu"], y8["tail"]
    prod = {o: n for n in q.graph.node for o in n.output}
    by = {n.name: n for n in q.graph.node}
    for name in tail.nodes:
        node = by[name]
        assert node.op_type not in ("QuantizeLinear", "DequantizeLinear")
        for i in node.input:
            p = prod.get(i)
            assert p is None or p.op_type != "QuantizeLinear"
    outs = {o.name for o in q.graph.output}
    assert outs == {"boxes", "scores"} and all(prod[o].op_type != "DequantizeLinear" for o in outs)


def test_cpu_target_close_to_fp32_on_held_out_photos(y8):
    """A real detector on a real photo not used for calibration: the confident detections of FP32
    are found by INT8-CPU with the same class, near the same box and score."""
    from yolo_edge.postprocess import postprocess  # numpy reference NMS
    from yolo_edge.export.metadata import get_spec

    spec = get_spec(onnx.load(str(y8["path"]))).nms
    x, _ = letterbox_batch(y8["held"], 320)
    a, b = _run(y8["raw"], x), _run(y8["cpu"], x)
    conf = a["scores"].max(-1) > 0.3
    assert conf.sum() >= 3
    err = np.abs(a["scores"] - b["scores"])[conf]
    assert np.median(err) < 0.05 and err.max() < 0.25
    ref = postprocess(a["boxes"][0], a["scores"][0], spec)
    got = postprocess(b["boxes"][0], b["scores"][0], spec)
    assert len(ref) > 0
    for i in range(len(ref)):
        same = got.class_ids == ref.class_ids[i]
        assert same.any()
        bx = got.xyxy[same]
        r = ref.xyxy[i]
        iw = np.clip(np.minimum(bx[:, 2], r[2]) - np.maximum(bx[:, 0], r[0]), 0, None)
        ih = np.clip(np.minimum(bx[:, 3], r[3]) - np.maximum(bx[:, 1], r[1]), 0, None)
        inter = iw * ih
        iou = inter / ((bx[:, 2] - bx[:, 0]) * (bx[:, 3] - bx[:, 1]) + (r[2] - r[0]) * (r[3] - r[1]) - inter)
        assert iou.max() > 0.8


def test_ranges_cover_the_observed_minmax_and_clip_by_method():
    st = TensorStats("t")
    rng = np.random.default_rng(0)
    for _ in range(4):
        s = np.concatenate([rng.normal(0, 1, 4000), [40.0]]).astype(np.float32)
        st.add(float(s.min()), float(s.max()), s)
    stats = CalibrationStats({"t": st, "pos": TensorStats("pos", -0.1, 3.0, n_images=4, min_exact=False)})
    r = activation_ranges(stats, ["t", "pos"], "minmax", lower={"pos": -0.2785})
    assert r["t"] == (pytest.approx(st.min), pytest.approx(40.0))
    assert r["pos"] == (pytest.approx(-0.2785), pytest.approx(3.0))  # sampled min -> the static bound
    lo, hi = activation_ranges(stats, ["t"], "percentile", 99.0)["t"]
    assert hi < 5.0 and lo >= st.min  # the outlier is clipped


def test_cpu_features_and_note():
    f = cpu_features()
    assert set(f) == {"machine", "model", "features"}
    assert "VNNI" in int8_kernel_note({"machine": "x86_64", "model": "", "features": ["avx2", "avx512_vnni"]})
    assert "reduce-range" in int8_kernel_note({"machine": "x86_64", "model": "", "features": ["avx2"]})
    assert "dot-product" in int8_kernel_note({"machine": "aarch64", "model": "", "features": ["asimddp"]})


def test_job_writes_the_cpu_target_and_runners_load_it(tmp_path, photos, capsys, nudenet_onnx):
    """``yolo-edge calibrate --int8-target ort-cpu`` on the real YOLOv8n: ``<name>.int8-cpu.onnx``
    with the four-output NMS contract, metadata naming the target, loaded like any ONNX."""
    from yolo_edge.cli import main
    from yolo_edge.runtime import Detector, load_runner

    src = nudenet_onnx
    fp32 = adapt_onnx(src, tmp_path / "y8.onnx", fmt="yolov8", nms=NmsSpec("onnx", 0.25, 0.45), verbose=False)
    rc = main(["calibrate", str(fp32), "--out-dir", str(tmp_path), "--calib", "synthetic:calib", "--calib-images", "4",
               "--val", "none", "--int8-target", "ort-cpu", "--quiet"])
    assert rc == 0
    out = tmp_path / "y8.int8-cpu.onnx"
    assert out.is_file() and not (tmp_path / "y8.int8.onnx").exists()
    printed = capsys.readouterr().out
    assert "int8-cpu" in printed
    assert "head guard" not in printed  # the TensorRT target's head guard: no TensorRT file, no guard
    runner = load_runner(out)
    info = runner.spec.extra["precision"]
    assert runner.spec.precision == "int8" and info["target"] == "ort-cpu"
    assert info["activations"].startswith("uint8") and info["ort_integer_ops"] > 50
    assert [o.name for o in onnx.load(str(out)).graph.output] == ["num_dets", "det_boxes", "det_scores", "det_classes"]
    with Detector(runner) as det:
        d = det(photos["portrait"])
    with Detector(load_runner(fp32)) as det:
        ref = det(photos["portrait"])
    assert len(ref) > 0 and abs(len(d) - len(ref)) <= max(1, len(ref) // 3)
    assert json.loads(json.dumps(info))  # metadata is JSON


def test_cli_rejects_unknown_target():
    from yolo_edge.precision.pipeline import PrecisionConfig, run_precision
    from yolo_edge.errors import YoloEdgeError

    with pytest.raises(YoloEdgeError, match="int8 target"):
        run_precision(__file__, PrecisionConfig(int8_target="npu"))


@pytest.mark.slow
def test_yolov5n_on_coco128_close_to_fp32(tmp_path):
    """YOLOv5n (COCO-trained) calibrated on the first 16 coco128 images, checked on 4 of the last 64:
    score SQNR and the confident boxes stay close to FP32."""
    src, coco = DATA / "yolov5n.onnx", DATA / "coco128"
    if not src.is_file() or not coco.is_dir():
        pytest.skip("../shared/data (yolov5n.onnx, coco128) not present")
    from yolo_edge.bench.int8_cpu import coco128_split
    from yolo_edge.precision.report import sqnr_db

    calib_dir, val_dir = coco128_split(coco, tmp_path)
    path = adapt_onnx(src, tmp_path / "v5n.onnx", fmt="yolov5", nms=NmsSpec("none"), verbose=False)
    raw = prepare(strip_nms(onnx.load(str(path))))
    tail = find_decode_tail(raw)
    tensors = quantized_tensors(raw, CPU_OP_TYPES, tail.nodes)
    stats = collect_stats(raw, ImageSet(str(calib_dir), 16), (640, 640), sampled=tensors, show_progress=False)
    q = quantize_cpu(raw, activation_ranges(stats, tensors, "minmax", lower=lower_bounds(raw)), CpuInt8Config(), tail.nodes)
    assert _ops(optimized_model(q)).get("QLinearConv", 0) >= 57
    val = ImageSet(str(val_dir), 4)
    xs = list(val.batches((640, 640), 1, fixed=True))  # the source ONNX has a static batch of 1
    ra, rb = [_run(raw, x) for x in xs], [_run(q, x) for x in xs]
    a = {k: np.concatenate([o[k] for o in ra]) for k in ("boxes", "scores")}
    b = {k: np.concatenate([o[k] for o in rb]) for k in ("boxes", "scores")}
    assert sqnr_db(a["scores"], b["scores"]) > 15
    conf = a["scores"].max(-1) > 0.5
    assert conf.sum() > 10
    err = np.abs(a["boxes"] - b["boxes"])[conf]
    assert np.median(err) < 3.0  # pixels at 640


def test_shape_arithmetic_is_never_quantized():
    """An exported Upsample computes its output size in float (``Floor(40.0)`` ... ``Concat`` ->
    ``Cast``). Quantizing that Concat with a clipped range turns 40 into 39 and breaks the graph; it
    must be left out, whatever the ranges say."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32), "w")
    w2 = numpy_helper.from_array(rng.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32), "w2")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1], strides=[2, 2]),  # 8x8
        helper.make_node("Conv", ["x", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),  # 16x16
        helper.make_node("Constant", [], ["h"], name="h", value=numpy_helper.from_array(np.array(16.0, np.float32))),
        helper.make_node("Floor", ["h"], ["hf"], name="floor"),
        helper.make_node("Constant", [], ["nc"], name="nc", value=numpy_helper.from_array(np.array([1.0, 4.0], np.float32))),
        helper.make_node("Unsqueeze", ["hf", "ax"], ["hu"], name="unsq"),
        helper.make_node("Concat", ["nc", "hu", "hu"], ["size_f"], name="size_concat", axis=0),
        helper.make_node("Cast", ["size_f"], ["size"], name="cast", to=TensorProto.INT64),
        helper.make_node("Resize", ["c", "", "", "size"], ["up"], name="resize", mode="nearest"),
        helper.make_node("Concat", ["up", "c2"], ["y"], name="cat", axis=1),
    ]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 16, 16])],
                          [w, w2, numpy_helper.from_array(np.array([0], np.int64), "ax")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m = onnx.shape_inference.infer_shapes(m)
    ranges = {t: (-3.0, 3.0) for t in ("x", "c", "c2", "up", "y")}
    ranges.update({"size_f": (0.0, 15.9), "hf": (0.0, 15.9), "hu": (0.0, 15.9)})  # clipped like a percentile
    assert "size_concat" not in {n for n in quantized_nodes_of(m)}
    q = quantize_cpu(m, ranges, CpuInt8Config(), ())
    x = rng.random((1, 3, 16, 16), np.float32)
    y = _run(q, x)["y"]
    assert y.shape == (1, 8, 16, 16)
    prod = {o: n for n in q.graph.node for o in n.output}
    assert prod["size_f"].op_type == "Concat"  # not rewired through Q/DQ


def quantized_nodes_of(m):
    from yolo_edge.precision.int8_cpu import shape_nodes

    ts = set(quantized_tensors(m))
    return [n.name for n in m.graph.node if n.name not in set(shape_nodes(m)) and set(n.output) & ts]


def test_both_targets_from_one_calibration_pass(tmp_path, nudenet_onnx):
    """``--int8-target both``: the TensorRT file and the CPU file, one statistics file, one report
    that carries the CPU target's decisions; the two graphs differ where the issue says they must."""
    from yolo_edge.cli import main
    from yolo_edge.runtime.ort_runner import read_spec

    src = nudenet_onnx
    fp32 = adapt_onnx(src, tmp_path / "y8.onnx", fmt="yolov8", nms=NmsSpec("onnx", 0.25, 0.45), verbose=False)
    rc = main(["calibrate", str(fp32), "--out-dir", str(tmp_path), "--calib", "synthetic:calib", "--calib-images", "4",
               "--val", "none", "--int8-target", "both", "--quiet"])
    assert rc == 0
    trt, cpu = read_spec(tmp_path / "y8.int8.onnx"), read_spec(tmp_path / "y8.int8-cpu.onnx")
    assert trt.extra["precision"]["target"] == "trt" and cpu.extra["precision"]["target"] == "ort-cpu"
    assert trt.extra["precision"]["calibration"]["stats_key"] == cpu.extra["precision"]["calibration"]["stats_key"]
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["int8_cpu"]["target"] == "ort-cpu" and report["int8"]["target"] == "trt"
    t = _ops(optimized_model(str(tmp_path / "y8.int8.onnx")))
    c = _ops(optimized_model(str(tmp_path / "y8.int8-cpu.onnx")))
    assert t.get("QLinearConv", 0) == 0 < c.get("QLinearConv", 0)


def test_budget_keeps_the_head_float_first_then_stops(y8):
    """Over budget, the first step keeps the head's last convs float together; when that is within
    budget no sensitivity ranking or further exclusion is spent (evaluation faked: mAP depends on
    whether the head convs are still quantized)."""
    from types import SimpleNamespace

    from yolo_edge.precision.cpu_target import RANK_OPS, run_cpu_target
    from yolo_edge.precision.int8_cpu import quantized_nodes

    raw, tail, stats = y8["raw"], y8["tail"], y8["stats"]
    head = set(tail.head)
    calls = []

    def evaluate(m):
        q = set(quantized_nodes(m, RANK_OPS))
        calls.append(q)
        return SimpleNamespace(map50_95=0.500 if q & head else 0.598)

    res = run_cpu_target(raw, tail, stats, method="percentile", percentile=99.99, fp32_result=SimpleNamespace(map50_95=0.60),
                         evaluate=evaluate, max_map_drop=1.0, sensitivity="auto",
                         sensitivity_batches=lambda: pytest.fail("no ranking needed"), show_progress=False)
    assert len(calls) == 2 and calls[0] & head and not calls[1] & head
    assert {e["node"] for e in res.excluded} == head and res.result.map50_95 == 0.598
    assert res.budget["within_budget"] and res.budget["steps"][0]["kept"]
    assert not set(quantized_nodes(res.model, RANK_OPS)) & head
    assert res.info["excluded"] == res.excluded


def test_calibration_method_chosen_on_the_validation_split(y8):
    """No method given: percentile, minmax and entropy are all tried and the most accurate kept (the
    evaluation is faked: the second model evaluated scores highest)."""
    from types import SimpleNamespace

    from yolo_edge.precision.cpu_target import AUTO_METHODS, run_cpu_target

    scores = iter([0.50, 0.598, 0.55])
    seen = []

    def evaluate(m):
        seen.append(m)
        return SimpleNamespace(map50_95=next(scores))

    res = run_cpu_target(y8["raw"], y8["tail"], y8["stats"], method=None, percentile=99.99,
                         fp32_result=SimpleNamespace(map50_95=0.60), evaluate=evaluate, max_map_drop=1.0,
                         show_progress=False)
    assert AUTO_METHODS == ("percentile", "minmax", "entropy") and len(seen) == 3
    assert res.model is seen[1] and res.info["method"] == "minmax"
    assert [t["method"] for t in res.info["method_trials"]] == ["percentile", "minmax", "entropy"]
    # the two graphs differ only in their activation ranges
    s0 = {i.name: i for i in seen[0].graph.initializer if i.name.endswith("_scale")}
    s1 = {i.name: i for i in seen[1].graph.initializer if i.name.endswith("_scale")}
    assert s0.keys() == s1.keys() and any(s0[k].raw_data != s1[k].raw_data or s0[k].float_data != s1[k].float_data
                                          for k in s0)


def test_ort_recipe_peer_row_is_onnx_runtimes_own_fused_graph(tmp_path, photos, nudenet_onnx):
    """The benchmark's "ONNX Runtime quantize_static" row (issue 13's reference recipe): uint8
    activations, int8 per-channel weights, the decode tail float; ONNX Runtime's own optimizer makes
    QLinearConv of it; the NMS copy has the four outputs and finds what the FP32 model finds."""
    from yolo_edge.bench.artifacts import nms_free_copy
    from yolo_edge.bench.int8_cpu import ort_recipe_int8
    from yolo_edge.letterbox import letterbox
    from yolo_edge.precision.int8_cpu import fused_op_counts
    from yolo_edge.runtime import Detector, load_runner

    nms = NmsSpec("onnx", 0.25, 0.45)
    fp32 = adapt_onnx(nudenet_onnx, tmp_path / "y8.onnx", fmt="yolov8", nms=nms, verbose=False)
    raw = nms_free_copy(fp32, tmp_path / "eval" / "y8.onnx")
    batches = [letterbox(photos[k], 320)[0][None] for k in ("landscape", "square", "wide")]
    q_raw, q_nms = ort_recipe_int8(raw, tmp_path / "ort" / "y8.int8-ort.onnx", batches, nms=nms)
    m = onnx.load(str(q_raw))
    inits = {t.name: t for t in m.graph.initializer}
    zps = [inits[n.input[2]] for n in m.graph.node if n.op_type == "QuantizeLinear" and n.input[2] in inits]
    assert zps and all(z.data_type == onnx.TensorProto.UINT8 for z in zps)
    # the decode tail runs float: nothing it computes is quantized again (it reads the head convs'
    # 8-bit outputs through DequantizeLinear, as in ONNX Runtime's recipe)
    tail = set(find_decode_tail(prepare(strip_nms(onnx.load(str(fp32))))).nodes)
    tail_out = {o for n in m.graph.node if n.name in tail for o in n.output}
    assert tail_out and not [n.name for n in m.graph.node if n.op_type == "QuantizeLinear" and n.input[0] in tail_out]
    assert fused_op_counts(q_raw).get("QLinearConv", 0) > 50
    assert [o.name for o in onnx.load(str(q_nms)).graph.output] == list(
        ("num_dets", "det_boxes", "det_scores", "det_classes"))
    with Detector(load_runner(q_nms)) as det:
        d = det(photos["portrait"])
    with Detector(load_runner(fp32)) as det:
        ref = det(photos["portrait"])
    assert len(ref) > 0 and abs(len(d) - len(ref)) <= max(1, len(ref) // 3)
