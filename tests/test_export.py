"""Export: torch -> ONNX parity (DESIGN §6 levels 1–2), embedded NMS against the numpy oracle,
dynamic and static batch, metadata, the EfficientNMS_TRT graph and its numpy model, bring-your-own
YOLO ONNX (a real trained YOLOv8 shipped by a PyPI package, synthetic YOLOv5/YOLOv8 graphs), and
the user errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import _fit_batchnorm

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from yolo_edge import __version__  # noqa: E402
from yolo_edge.cli import main  # noqa: E402
from yolo_edge.detections import Detections  # noqa: E402
from yolo_edge.errors import CheckpointError, ModelFormatError, YoloEdgeError  # noqa: E402
from yolo_edge.export import adapt_onnx, add_nms, efficient_nms_reference, export_onnx, trt_attributes  # noqa: E402
from yolo_edge.export.nms import nms_nodes, node_attributes  # noqa: E402
from yolo_edge.export.onnx_export import check_onnx  # noqa: E402
from yolo_edge.letterbox import letterbox_batch  # noqa: E402
from yolo_edge.postprocess import from_nms_outputs, postprocess  # noqa: E402
from yolo_edge.spec import NmsSpec  # noqa: E402
from yolo_edge.util import sha256_file  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NC, IMGSZ = 80, 320
NMS = NmsSpec("onnx", score_threshold=0.2, iou_threshold=0.45, max_det=100)
NMS_NAMES = ["num_dets", "det_boxes", "det_scores", "det_classes"]


# --- helpers ----------------------------------------------------------------------------------
def session(model_or_path, extra_outputs=()):
    """ORT session; ``extra_outputs`` exposes intermediate tensors (e.g. the boxes/scores fed to NMS)."""
    m = onnx.load(str(model_or_path)) if isinstance(model_or_path, (str, Path)) else model_or_path
    for name in extra_outputs:
        m.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def run_nms_and_inputs(path, x):
    """NMS outputs of an embedded-NMS model and the exact boxes/scores its NMS saw."""
    s = session(path, ["boxes", "scores"])
    num, db, ds, dc, boxes, scores = s.run(None, {"images": x})
    return from_nms_outputs(num, db, ds, dc), boxes, scores, (num, db, ds, dc)


def assert_same(a: Detections, b: Detections, box_atol=1e-4, score_atol=1e-5):
    """One to one, in order: same count, same classes, boxes and scores within tolerance."""
    assert len(a) == len(b), (len(a), len(b))
    np.testing.assert_array_equal(a.class_ids, b.class_ids)
    np.testing.assert_allclose(a.xyxy, b.xyxy, rtol=0, atol=box_atol)
    np.testing.assert_allclose(a.scores, b.scores, rtol=0, atol=score_atol)


def iou(a, b):
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(iw, 0) * max(ih, 0)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def match_level2(a: Detections, b: Detections, min_iou=0.9):
    """DESIGN §6 level 2: greedy match by class and IoU >= 0.9; returns (unmatched a, unmatched b,
    max box delta, max score delta)."""
    used, box_d, score_d, unmatched = set(), 0.0, 0.0, 0
    for box, score, cls in a:
        cands = [j for j in range(len(b)) if j not in used and b.class_ids[j] == cls and iou(box, b.xyxy[j]) >= min_iou]
        if not cands:
            unmatched += 1
            continue
        j = max(cands, key=lambda j: iou(box, b.xyxy[j]))
        used.add(j)
        box_d = max(box_d, float(np.abs(box - b.xyxy[j]).max()))
        score_d = max(score_d, abs(score - float(b.scores[j])))
    return unmatched, len(b) - len(used), box_d, score_d


@pytest.fixture(scope="module")
def images(photos):
    """Real photos (5, incl. grayscale) and synthetic validation scenes (3)."""
    out = dict(photos)
    from yolo_edge.data import synthetic_split

    val = synthetic_split("val", n=3)
    out.update({f"synthetic{i}": val[i].image for i in range(3)})
    return out


def make_checkpoint(path, photos, var_scale: float, head_std: tuple[float, float] | None, cls_bias: float):
    """A random-weight n model (80 classes) made to behave more like a trained one for these tests.

    Straight from init its features are nearly constant (every anchor gets the same scores: ties
    everywhere), so the BatchNorm statistics are calibrated on the photos (train-mode pass,
    cumulative average) with the variances multiplied by ``var_scale``. With ``head_std = (box,
    cls)`` each output channel of the last head convs is standardised to that spread (class logits
    around ``cls_bias``). ``var_scale=1`` without standardising gives rich, image-dependent outputs
    (0 to 75k candidates, saturated scores) from a numerically chaotic net (float32 and float64
    differ by ~1 px); ``var_scale=2`` with ``head_std=(1, 1.2)`` is well conditioned (~7e-4 px) with
    ~300 candidates and ~90 detections per image, as a trained model has."""
    from yolo_edge.model import YOLO, save_checkpoint

    torch.manual_seed(0)
    model = YOLO.from_scale("n", nc=NC)
    x = torch.from_numpy(letterbox_batch(list(photos.values()), 192)[0])
    _fit_batchnorm(model, x)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_var.mul_(var_scale)
        feats = model(x) if head_std else [None] * 3
        for box, cls, f in zip(model.head.box, model.head.cls, feats):
            if head_std:
                for conv, out, std, mean in ((box[-1], f[:, :64], head_std[0], 0.0),
                                             (cls[-1], f[:, 64:], head_std[1], cls_bias)):
                    mu, sd = out.mean(dim=(0, 2, 3)), out.std(dim=(0, 2, 3)).clamp(min=1e-12)
                    conv.weight.mul_((std / sd).view(-1, 1, 1, 1))
                    conv.bias.copy_((conv.bias - mu) * std / sd + mean)
            else:
                cls[-1].bias.fill_(cls_bias)
    save_checkpoint(path, model)
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, photos):
    """Well conditioned: for torch vs ONNX Runtime parity (levels 1 and 2)."""
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "rand80.pt", photos, 2.0, (1.0, 1.2), -6.0)


@pytest.fixture(scope="module")
def rich_checkpoint(tmp_path_factory, photos):
    """Rich outputs (0 to 75k candidates per image, exact ties at 1.0, overlapping boxes): for
    embedded NMS vs the numpy reference, which compares on the very tensors the graph fed to NMS."""
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "rich80.pt", photos, 1.0, None, -4.0)


@pytest.fixture(scope="module")
def exports(checkpoint, rich_checkpoint, tmp_path_factory):
    """At 320 with dynamic batch: the checkpoint with NMS embedded (with the progress log) and raw,
    and the rich checkpoint with NMS embedded."""
    d = tmp_path_factory.mktemp("onnx")
    log: list[str] = []
    nms = export_onnx(checkpoint, d / "m.onnx", imgsz=IMGSZ, nms=NMS, log=log.append)
    raw = export_onnx(checkpoint, d / "m.raw.onnx", imgsz=IMGSZ, nms=NmsSpec("none", 0.2, 0.45), simplify=False,
                      verbose=False)
    rich = export_onnx(rich_checkpoint, d / "rich.onnx", imgsz=IMGSZ, nms=NMS, simplify=False, verbose=False)
    return {"nms": nms, "raw": raw, "rich": rich, "log": log}


@pytest.fixture(scope="module")
def batch8(images):
    x, metas = letterbox_batch(list(images.values()), IMGSZ)
    return x, metas


# --- export: graph, checker, metadata ---------------------------------------------------------
def test_export_graph_contract_and_progress(exports):
    log = exports["log"]
    stages = [line.split()[0] for line in log]
    assert stages[:3] == ["load", "export", "simplify"] and "add" in stages and stages[-1] == "write", log
    assert all(line.rstrip().endswith(")") and " s" in line for line in log if not line.startswith(" "))
    for key in ("nms", "raw"):
        m = onnx.load(str(exports[key]))
        check_onnx(m)  # onnx.checker, full check with shape inference
        assert m.opset_import[0].version >= 17
        assert not [n for n in m.graph.node if n.op_type == "BatchNormalization"], "BatchNorm not fused"
        (inp,) = m.graph.input
        dims = [d.dim_value or d.dim_param for d in inp.type.tensor_type.shape.dim]
        assert inp.name == "images" and dims == ["batch", 3, IMGSZ, IMGSZ]
    outs = {o.name: (o.type.tensor_type.elem_type, [d.dim_value or d.dim_param for d in o.type.tensor_type.shape.dim])
            for o in onnx.load(str(exports["nms"])).graph.output}
    T = onnx.TensorProto
    assert list(outs) == NMS_NAMES
    assert outs == {"num_dets": (T.INT32, ["batch", 1]), "det_boxes": (T.FLOAT, ["batch", 100, 4]),
                    "det_scores": (T.FLOAT, ["batch", 100]), "det_classes": (T.INT32, ["batch", 100])}
    raw_outs = [o.name for o in onnx.load(str(exports["raw"])).graph.output]
    assert raw_outs == ["boxes", "scores"]


def test_metadata_round_trip(exports, checkpoint):
    from yolo_edge.runtime.ort_runner import OrtRunner

    spec = OrtRunner(exports["nms"]).spec
    assert spec.names == tuple(f"class{i}" for i in range(NC))
    assert spec.imgsz == (IMGSZ, IMGSZ) and spec.letterbox.pad_value == 114
    assert spec.nms == NMS and spec.precision == "fp32" and spec.scale == "n"
    assert spec.strides == (8, 16, 32) and spec.reg_max == 16
    assert spec.checkpoint_sha256 == sha256_file(checkpoint) and spec.version == __version__
    assert OrtRunner(exports["raw"]).spec.nms.flavour == "none"


# --- parity level 1: raw tensors -------------------------------------------------------------
def test_raw_parity_torch_vs_onnxruntime(exports, checkpoint, batch8):
    """boxes/scores within 1e-4 relative. A coordinate near 0 px or a score near 0 has no useful
    relative error, so an absolute floor is added: 1e-3 px for boxes, 1e-6 for scores."""
    from yolo_edge.model import load_checkpoint

    x = batch8[0][:3]
    model = load_checkpoint(checkpoint).fuse()
    with torch.no_grad():
        tb, ts = (t.numpy() for t in model.infer(torch.from_numpy(x)))
    for ob, os_ in (session(exports["raw"]).run(None, {"images": x}),  # --nms none, not simplified
                    run_nms_and_inputs(exports["nms"], x)[1:3]):  # simplified, fed to the embedded NMS
        assert ob.shape == tb.shape == (3, 2100, 4) and os_.shape == ts.shape == (3, 2100, NC)
        np.testing.assert_allclose(ob, tb, rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(os_, ts, rtol=1e-4, atol=1e-6)


# --- embedded NMS vs the numpy reference ------------------------------------------------------
def test_embedded_nms_equals_numpy_reference(exports, batch8):
    """On 5 photos + 3 synthetic scenes in one dynamic batch of 8: ONNX Runtime's embedded NMS equals
    ``postprocess`` one to one, on the very boxes/scores the graph fed to NMS (two checkpoints), and
    on those of the separately exported raw model."""
    x, _ = batch8
    candidates = kept = 0
    for key in ("rich", "nms"):
        dets, boxes, scores, (num, db, ds, dc) = run_nms_and_inputs(exports[key], x)
        for i in range(len(x)):
            ref = postprocess(boxes[i], scores[i], NMS)
            assert_same(dets[i], ref)
            candidates += int((scores[i] > NMS.score_threshold).sum())
            kept += len(ref)
            n = int(num[i, 0])  # padding rows: box 0, score 0, class 0
            assert not db[i, n:].any() and not ds[i, n:].any() and not dc[i, n:].any()
        if key == "rich":
            assert (num == NMS.max_det).any() and (num < NMS.max_det).any()  # capped and padded images
    assert kept >= 500 and candidates >= 5 * kept, (kept, candidates)  # many detections, many suppressed
    raw_boxes, raw_scores = session(exports["raw"]).run(None, {"images": x})
    for i, d in enumerate(from_nms_outputs(*session(exports["nms"]).run(None, {"images": x}))):
        assert_same(d, postprocess(raw_boxes[i], raw_scores[i], NMS))


def test_dynamic_batch_same_image_alone_and_in_batches(exports, batch8):
    """Batch 1, 3 and 8 from a graph exported at batch 1: each image gets its own K rows, nothing is
    capped or left unfiltered, and an image gives the same detections alone and in a batch."""
    x, _ = batch8
    s = session(exports["rich"])
    alone = [from_nms_outputs(*s.run(None, {"images": x[i:i + 1]}))[0] for i in range(len(x))]
    three = from_nms_outputs(*s.run(None, {"images": x[:3]}))
    eight = from_nms_outputs(*s.run(None, {"images": x}))
    assert len(three) == 3 and len(eight) == 8
    assert sum(len(d) for d in alone) > 0
    for i in range(8):
        assert_same(eight[i], alone[i])
        if i < 3:
            assert_same(three[i], alone[i])


def test_export_640_several_batch_sizes(rich_checkpoint, photos, tmp_path):
    """Export at 640 (batch axis dynamic), run batch 1 and 3: equal to the numpy reference."""
    path = export_onnx(rich_checkpoint, tmp_path / "m640.onnx", imgsz=640, nms=NMS, simplify=False, verbose=False)
    x, _ = letterbox_batch([photos["square"], photos["wide"], photos["portrait"]], 640)
    dets, boxes, scores, _ = run_nms_and_inputs(path, x)
    assert boxes.shape == (3, 8400, 4)
    one = from_nms_outputs(*session(path).run(None, {"images": x[1:2]}))[0]
    assert_same(one, dets[1])
    for i in range(3):
        assert_same(dets[i], postprocess(boxes[i], scores[i], NMS))
    assert sum(len(d) for d in dets) > 0


def test_static_batch_export(checkpoint, exports, images, tmp_path):
    from yolo_edge.runtime import Detector
    from yolo_edge.runtime.ort_runner import OrtRunner

    path = export_onnx(checkpoint, tmp_path / "static2.onnx", imgsz=IMGSZ, nms=NMS, dynamic_batch=False, batch=2,
                       simplify=False, verbose=False)
    m = onnx.load(str(path))
    assert [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim] == [2, 3, IMGSZ, IMGSZ]
    assert [d.dim_value for d in m.graph.output[1].type.tensor_type.shape.dim] == [2, 100, 4]
    runner = OrtRunner(path)
    assert runner.fixed_batch == 2
    with runner, pytest.raises(YoloEdgeError, match="batch size mismatch"):
        runner.infer({"images": np.zeros((1, 3, IMGSZ, IMGSZ), np.float32)})
    imgs = [images["square"], images["gray"], images["synthetic0"]]  # 3 images: the Detector pads to 2 + 2
    with Detector(OrtRunner(path)) as static, Detector(OrtRunner(exports["nms"])) as dynamic:
        for a, b in zip(static(imgs), dynamic(imgs)):
            assert_same(a, b)


# --- parity level 2: detections through the Detector -------------------------------------------
def test_detector_onnx_equals_detector_torch(exports, checkpoint, images):
    from yolo_edge.runtime import Detector
    from yolo_edge.runtime.ort_runner import OrtRunner
    from yolo_edge.runtime.torch_runner import TorchRunner

    imgs = list(images.values())
    with Detector(OrtRunner(exports["nms"])) as d_onnx, \
            Detector(TorchRunner(checkpoint, imgsz=IMGSZ), nms=NMS) as d_torch:
        a, b = d_onnx(imgs), d_torch(imgs)
    total = 0
    for da, db in zip(a, b):
        unmatched_a, unmatched_b, box_d, score_d = match_level2(da, db)
        assert (unmatched_a, unmatched_b) == (0, 0) and len(da) == len(db)
        assert box_d < 1e-2 and score_d < 1e-5  # source pixels (up to 2x the input pixels)
        total += len(da)
    assert total >= 50


# --- the NMS graph on inputs built for its edge cases ------------------------------------------
def _nms_only(spec, boxes, scores):
    from yolo_edge.export.nms import nms_model

    s = session(nms_model(spec))
    return from_nms_outputs(*s.run(None, {"in_boxes": boxes, "in_scores": scores}))


@pytest.mark.parametrize("agnostic", [False, True])
def test_nms_graph_edge_cases(agnostic):
    """Exactly at the thresholds (strict ``>`` both), an empty image, C*A < K, mixed batch."""
    box = [[0, 0, 10, 10], [0, 0, 10, 5], [20, 20, 30, 30], [40, 40, 50, 50]]  # IoU(0, 1) = 0.5 exactly
    boxes = np.array([box, box, box], np.float32)
    scores = np.array([[[0.9, 0.1], [0.8, 0.8], [0.5, 0.5], [0.5, 0.3]],  # 0.5 ties, 0.3 == threshold
                       [[0.1, 0.0], [0.2, 0.3], [0.0, 0.1], [0.3, 0.3]],  # nothing above the threshold
                       [[0.31, 0.9], [0.9, 0.31], [0.7, 0.7], [0.6, 0.6]]], np.float32)
    spec = NmsSpec("onnx", score_threshold=0.3, iou_threshold=0.5, max_det=10, class_agnostic=agnostic)  # C*A=8 < K
    got = _nms_only(spec, boxes, scores)
    for i in range(3):
        assert_same(got[i], postprocess(boxes[i], scores[i], spec), box_atol=0, score_atol=0)
    assert len(got[1]) == 0
    if not agnostic:
        assert len(got[0]) == 6 and 0.3 not in got[0].scores.tolist()  # IoU == 0.5 does not suppress
    tighter = NmsSpec("onnx", score_threshold=0.3, iou_threshold=0.49, max_det=2, class_agnostic=agnostic)
    for i, d in enumerate(_nms_only(tighter, boxes, scores)):
        assert_same(d, postprocess(boxes[i], scores[i], tighter), box_atol=0, score_atol=0)


# --- --nms trt: structure, and a numpy model of EfficientNMS ---------------------------------
def test_trt_flavour_graph_structure(exports, tmp_path):
    """``--nms trt`` is the raw graph plus one plugin node (what export_onnx does after simplify)."""
    from yolo_edge.export.onnx_export import save_onnx

    spec = NmsSpec("trt", score_threshold=0.3, iou_threshold=0.6, max_det=50)
    path = save_onnx(add_nms(onnx.load(str(exports["raw"])), spec), tmp_path / "trt.onnx")
    m = onnx.load(str(path))
    (node,) = nms_nodes(m)
    assert node.op_type == "EfficientNMS_TRT" and node.domain == ""
    assert list(node.input) == ["boxes", "scores"] and list(node.output) == NMS_NAMES
    attrs = node_attributes(node)
    assert attrs == pytest.approx(trt_attributes(spec))  # floats stored as float32
    assert attrs["score_threshold"] == pytest.approx(0.3) and attrs["iou_threshold"] == pytest.approx(0.6)
    assert attrs["max_output_boxes"] == 50 and attrs["class_agnostic"] == 0 and attrs["background_class"] == -1
    assert attrs["box_coding"] == 0 and attrs["score_activation"] == 0 and attrs["plugin_version"] == "1"
    producers = {o: n.op_type for n in m.graph.node for o in n.output}
    assert "boxes" in producers and "scores" in producers  # wired to the decoded tensors
    dims = {o.name: [d.dim_value or d.dim_param for d in o.type.tensor_type.shape.dim] for o in m.graph.output}
    assert dims == {"num_dets": ["batch", 1], "det_boxes": ["batch", 50, 4], "det_scores": ["batch", 50],
                    "det_classes": ["batch", 50]}
    check_onnx(m)  # the graph up to the plugin passes onnx.checker
    node.input[0] = "nowhere"
    with pytest.raises(YoloEdgeError, match="malformed EfficientNMS_TRT wiring"):
        check_onnx(m)
    from yolo_edge.runtime.ort_runner import OrtRunner

    with pytest.raises(ModelFormatError, match="only TensorRT runs"):
        OrtRunner(path)  # ONNX Runtime has no EfficientNMS_TRT: a clear error, not a crash


def test_efficient_nms_reference_agrees_with_postprocess(exports, batch8):
    """Where TensorRT's semantics and ours coincide (no exact ties, nothing exactly at a threshold,
    at most 4096 candidates), the numpy model of EfficientNMS_TRT returns our detections."""
    x, _ = batch8
    thr, iou_thr = NMS.score_threshold, NMS.iou_threshold
    compared = 0
    for key in ("nms", "rich"):
        _, boxes, scores, _ = run_nms_and_inputs(exports[key], x)
        num, db, ds, dc = efficient_nms_reference(boxes, scores, thr, iou_thr, NMS.max_det)
        for i, d in enumerate(from_nms_outputs(num, db, ds, dc)):
            cand = scores[i][scores[i] >= np.float32(thr)]
            if cand.size > 4096 or np.unique(cand).size < cand.size or (cand == np.float32(thr)).any():
                continue  # where the documented differences apply (the rich model saturates at 1.0)
            assert_same(d, postprocess(boxes[i], scores[i], NMS), box_atol=0, score_atol=0)
            compared += len(d) > 0
    assert compared >= 4


def test_efficient_nms_reference_documents_the_differences():
    boxes = np.array([[[0, 0, 10, 10], [0, 0, 10, 5], [20, 20, 30, 30], [40, 40, 50, 50]]], np.float32)
    scores = np.array([[[0.9], [0.8], [0.5], [0.3]]], np.float32)  # IoU(box0, box1) = 0.5 exactly
    ours = postprocess(boxes[0], scores[0], NmsSpec(score_threshold=0.3, iou_threshold=0.5))
    num, _, ds, _ = efficient_nms_reference(boxes, scores, 0.3, 0.5, 10)
    assert list(ours.scores) == pytest.approx([0.9, 0.8, 0.5])  # ours: score > thr, IoU > thr suppresses
    assert num[0, 0] == 3 and list(ds[0, :3]) == pytest.approx([0.9, 0.5, 0.3])  # TRT: >= and >=
    # only the 4096 best candidates take part in TensorRT's NMS
    rng = np.random.default_rng(0)
    xy = np.stack(np.meshgrid(np.arange(80), np.arange(60)), -1).reshape(-1, 2)[:4500] * 20.0
    many_boxes = np.concatenate([xy, xy + 10], 1)[None].astype(np.float32)
    many_scores = rng.uniform(0.5, 1, (1, 4500, 1)).astype(np.float32)
    num, *_ = efficient_nms_reference(many_boxes, many_scores, 0.25, 0.5, 4500)
    assert num[0, 0] == 4096
    # below a 0.007 threshold the dense kernel lets sub-threshold scores through as -32768
    num, _, ds, _ = efficient_nms_reference(boxes, scores * np.float32(0.001), 0.0004, 0.5, 6)
    assert num[0, 0] == 3 and list(ds[0, :3]) == pytest.approx([0.0009, 0.0005, -32768])  # 0.0003 < 0.0004


# --- bring your own model ---------------------------------------------------------------------
def yolo_like_onnx(path, layout="yolov5", A=64, C=3, opset=17, seed=0, ties=False, names=None, hw=(64, 64)):
    """A tiny ONNX with a YOLO head layout and known outputs: ``base + mean(image) * delta``.

    Boxes are xywh (pixels) in clusters so that NMS has work; scores in (0, 1). With ``ties`` the
    scores are multiples of 1/4 with objectness 1, so many (anchor, class) pairs tie exactly.
    Returns the base prediction ``(A, 4 + C [+1])`` in yolov5 channel order."""
    from onnx import TensorProto as T
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(seed)
    centres = rng.uniform(12, hw[1] - 12, (6, 2))
    cxy = centres[rng.integers(0, 6, A)] + rng.normal(0, 2, (A, 2))
    wh = rng.uniform(8, 20, (A, 2))
    if ties:
        obj = np.ones((A, 1))
        cls = rng.integers(1, 4, (A, C)) / 4.0
    else:
        obj = rng.uniform(0.3, 1.0, (A, 1))
        cls = rng.uniform(0.0, 1.0, (A, C))
    base = np.concatenate([cxy, wh, obj, cls], 1).astype(np.float32)  # (A, 5 + C)
    delta = np.zeros_like(base)
    delta[:, :2] = 1.0  # boxes move with the image mean, scores stay put
    if layout == "yolov8":
        b, dl = (np.concatenate([t[:, :4], t[:, 5:]], 1).T[None] for t in (base, delta))  # no objectness
    elif layout == "yolov5":
        b, dl = base[None], delta[None]
    else:  # rank-2 output: not a YOLO layout
        b, dl = base, delta
    nodes = [helper.make_node("ReduceMean", ["images"], ["m"], axes=[1, 2, 3], keepdims=1),
             helper.make_node("Reshape", ["m", "shape"], ["m3"]),
             helper.make_node("Mul", ["m3", "delta"], ["md"]),
             helper.make_node("Add", ["base", "md"], ["output0"])]
    shape = np.array([-1, 1, 1] if b.ndim == 3 else [1, 1], np.int64)
    g = helper.make_graph(
        nodes, "yolo_like",
        [helper.make_tensor_value_info("images", T.FLOAT, ["batch", 3, *hw])],
        [helper.make_tensor_value_info("output0", T.FLOAT, None)],
        initializer=[numpy_helper.from_array(b, "base"), numpy_helper.from_array(dl.astype(np.float32), "delta"),
                     numpy_helper.from_array(shape, "shape")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    if names is not None:
        p = m.metadata_props.add()
        p.key, p.value = "names", repr(dict(enumerate(names)))
    onnx.save(m, str(path))
    return base


def numpy_decode(raw, layout):
    """Reference decode of a raw YOLO output batch -> boxes (B, A, 4) xyxy, scores (B, A, C)."""
    x = raw.transpose(0, 2, 1) if layout == "yolov8" else raw
    xy, wh = x[..., :2], x[..., 2:4]
    boxes = np.concatenate([xy - wh / 2, xy + wh / 2], -1)
    scores = x[..., 4:] if layout == "yolov8" else x[..., 5:] * x[..., 4:5]
    return boxes, scores


@pytest.mark.parametrize("layout", ["yolov5", "yolov8"])
def test_adapter_synthetic_layouts(tmp_path, layout):
    src = tmp_path / f"{layout}.onnx"
    yolo_like_onnx(src, layout)
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, (3, 3, 64, 64)).astype(np.float32)
    raw = session(src).run(None, {"images": x})[0]
    ref_boxes, ref_scores = numpy_decode(raw, layout)

    spec = NmsSpec("onnx", score_threshold=0.3, iou_threshold=0.4, max_det=20)
    none = adapt_onnx(src, tmp_path / "none.onnx", fmt=layout, nms=NmsSpec("none"), names="a,b,c", verbose=False)
    boxes, scores = session(none).run(None, {"images": x})
    np.testing.assert_allclose(boxes, ref_boxes, rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-6, atol=1e-7)

    out = adapt_onnx(src, tmp_path / "nms.onnx", fmt="auto", nms=spec, verbose=False)  # auto finds the layout
    dets, b2, s2, _ = run_nms_and_inputs(out, x)
    suppressed = 0
    for i in range(3):
        ref = postprocess(b2[i], s2[i], spec)
        assert_same(dets[i], ref)
        suppressed += int((s2[i] > 0.3).sum()) - len(ref)
    assert sum(len(d) for d in dets) >= 10 and suppressed > 0
    from yolo_edge.runtime.ort_runner import OrtRunner

    r = OrtRunner(out)
    assert r.spec.names == ("class0", "class1", "class2") and r.spec.imgsz == (64, 64)
    assert r.spec.nms == spec and r.spec.extra["source_format"] == layout
    assert OrtRunner(none).spec.names == ("a", "b", "c")


def test_adapter_ties_and_class_agnostic(tmp_path):
    """Exact score ties across anchors and classes: order and choice equal ``postprocess`` (ONNX
    TopK puts the lower index first: class, then anchor); class-agnostic NMS too."""
    src12 = tmp_path / "ties12.onnx"
    yolo_like_onnx(src12, "yolov5", A=48, C=3, ties=True, opset=12)  # the opset-12 forms of the graph
    src = tmp_path / "ties.onnx"
    yolo_like_onnx(src, "yolov5", A=48, C=3, ties=True)
    x = np.full((2, 3, 64, 64), 0.5, np.float32)
    for agnostic, src in ((False, src12), (False, src), (True, src)):
        spec = NmsSpec("onnx", score_threshold=0.2, iou_threshold=0.3, max_det=30, class_agnostic=agnostic)
        out = adapt_onnx(src, tmp_path / f"t{agnostic}{src.stem}.onnx", nms=spec, verbose=False)
        dets, boxes, scores, _ = run_nms_and_inputs(out, x)
        for i in range(2):
            ref = postprocess(boxes[i], scores[i], spec)
            assert len(np.unique(ref.scores)) < len(ref)  # ties are really there
            assert_same(dets[i], ref, box_atol=0, score_atol=0)


def test_adapter_real_yolov8(tmp_path, images, nudenet_onnx):
    """A real, trained YOLOv8n exported by Ultralytics 8.2 (the NudeNet detector, from PyPI):
    names and input size come from its own metadata, the decode equals numpy on its raw output, the
    embedded NMS equals ``postprocess``, and it finds the faces in two portraits."""
    from yolo_edge.runtime import Detector
    from yolo_edge.runtime.ort_runner import OrtRunner

    src = nudenet_onnx
    nms_path = adapt_onnx(src, tmp_path / "y8.onnx", fmt="yolov8", nms=NmsSpec("onnx", 0.25, 0.45), verbose=False)
    raw_path = adapt_onnx(src, tmp_path / "y8.raw.onnx", fmt="yolov8", nms=NmsSpec("none"), verbose=False)
    spec = OrtRunner(nms_path).spec
    assert len(spec.names) == 18 and spec.names[1] == "FACE_FEMALE" and spec.imgsz == (320, 320)
    assert spec.extra["source_format"] == "yolov8" and "pytorch" in spec.extra["source_producer"]

    x, _ = letterbox_batch(list(images.values()), 320)
    raw = session(src).run(None, {"images": x})[0]  # (8, 22, 2100)
    ref_boxes, ref_scores = numpy_decode(raw, "yolov8")
    boxes, scores = session(raw_path).run(None, {"images": x})
    np.testing.assert_allclose(boxes, ref_boxes, rtol=1e-6, atol=1e-4)
    np.testing.assert_array_equal(scores, ref_scores)
    dets, b2, s2, _ = run_nms_and_inputs(nms_path, x)
    for i in range(len(x)):
        assert_same(dets[i], postprocess(b2[i], s2[i], spec.nms))

    faces = {"square": (224, 132), "portrait": (264, 240)}  # astronaut, Grace Hopper: face centre (x, y)
    with Detector(OrtRunner(nms_path)) as det:
        for key, (cx, cy) in faces.items():
            d = det(images[key]).sorted()
            assert len(d) and spec.names[d.class_ids[0]] == "FACE_FEMALE" and d.scores[0] > 0.6
            x1, y1, x2, y2 = d.xyxy[0]
            assert x1 < cx < x2 and y1 < cy < y2


# --- user errors ----------------------------------------------------------------------------------
def _bad_layout(tmp):
    p = tmp / "rank2.onnx"
    yolo_like_onnx(p, "rank2")
    return adapt_onnx, (p,), {}


def _names_mismatch(tmp):
    p = tmp / "v5.onnx"
    yolo_like_onnx(p, "yolov5")
    return adapt_onnx, (p,), {"names": ["a", "b"]}


def _metadata_mismatch(tmp):
    p = tmp / "v8meta.onnx"
    yolo_like_onnx(p, "yolov8", names=["a", "b", "c", "d"])
    return adapt_onnx, (p,), {}


def _wrong_format(tmp):
    p = tmp / "v5b.onnx"
    yolo_like_onnx(p, "yolov5")
    return adapt_onnx, (p,), {"fmt": "yolov8"}


def _old_opset(tmp):
    p = tmp / "old.onnx"
    yolo_like_onnx(p, "yolov5", opset=11)
    return adapt_onnx, (p,), {}


def _already_nms(tmp):
    p = tmp / "v5c.onnx"
    yolo_like_onnx(p, "yolov5")
    once = adapt_onnx(p, tmp / "once.onnx", verbose=False)
    return adapt_onnx, (once,), {}


def _missing_onnx(tmp):
    return adapt_onnx, (tmp / "nope.onnx",), {}


def _missing_ckpt(tmp):
    return export_onnx, (tmp / "nope.pt", tmp / "o.onnx"), {}


def _junk_ckpt(tmp):
    (tmp / "junk.pt").write_text("not a checkpoint")
    return export_onnx, (tmp / "junk.pt", tmp / "o.onnx"), {}


def _onnx_as_ckpt(tmp):
    (tmp / "m.onnx").write_bytes(b"x")
    return export_onnx, (tmp / "m.onnx", tmp / "o.onnx"), {}


def _export_old_opset(tmp):
    return export_onnx, (tmp / "any.pt", tmp / "o.onnx"), {"opset": 12}


@pytest.mark.parametrize("make, error, message", [
    (_bad_layout, ModelFormatError, r"unrecognised YOLO output layout \[64, 8\]"),
    (_names_mismatch, ModelFormatError, r"class count mismatch: .* 3 classes but --names lists 2"),
    (_metadata_mismatch, ModelFormatError, r"class count mismatch: .* 3 classes but the model's metadata lists 4"),
    (_wrong_format, ModelFormatError, r"not the yolov8 layout .*use --format yolov5"),
    (_old_opset, ModelFormatError, r"opset 11, but embedded NMS needs opset >= 12"),
    (_already_nms, ModelFormatError, r"already ends in NMS"),
    (_missing_onnx, ModelFormatError, r"ONNX file not found"),
    (_missing_ckpt, CheckpointError, r"checkpoint not found"),
    (_junk_ckpt, CheckpointError, r"not a yolo-edge checkpoint"),
    (_onnx_as_ckpt, CheckpointError, r"is an ONNX file.*--from-onnx"),
    (_export_old_opset, YoloEdgeError, r"opset 12 is too old"),
])
def test_user_errors(tmp_path, make, error, message):
    fn, args, kwargs = make(tmp_path)
    with pytest.raises(error, match=message):
        fn(*args, verbose=False, **kwargs)


def test_imgsz_must_fit_the_strides(checkpoint, tmp_path):
    with pytest.raises(YoloEdgeError, match="multiples of the largest stride 32"):
        export_onnx(checkpoint, tmp_path / "o.onnx", imgsz=(300, 320), verbose=False)
    assert not (tmp_path / "o.onnx").exists()


def test_add_nms_refuses_old_opset():
    from onnx import TensorProto as T
    from onnx import helper

    nodes = [helper.make_node("Identity", ["b"], ["boxes"]), helper.make_node("Identity", ["s"], ["scores"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("b", T.FLOAT, [1, 10, 4]),
                                helper.make_tensor_value_info("s", T.FLOAT, [1, 10, 2])],
                          [helper.make_tensor_value_info("boxes", T.FLOAT, [1, 10, 4]),
                           helper.make_tensor_value_info("scores", T.FLOAT, [1, 10, 2])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 11)])
    with pytest.raises(ModelFormatError, match="opset 11"):
        add_nms(m, NmsSpec("onnx"))


# --- CLI ------------------------------------------------------------------------------------
def test_cli_from_onnx_and_one_line_errors(tmp_path, capsys):
    src = tmp_path / "v5.onnx"
    yolo_like_onnx(src, "yolov5")
    out = tmp_path / "v5.nms.onnx"
    rc = main(["export", "--from-onnx", str(src), "--format", "yolov5", "--names", "x,y,z", "--conf", "0.3",
               "--max-det", "10", "--out", str(out)])
    cap = capsys.readouterr()
    assert rc == 0 and out.is_file() and f"wrote {out}" in cap.out
    assert "decode" in cap.err and "add NMS" in cap.err  # progress lines
    from yolo_edge.runtime.ort_runner import read_spec

    spec = read_spec(out)
    assert spec.names == ("x", "y", "z") and spec.nms == NmsSpec("onnx", 0.3, 0.45, 10)

    rc = main(["export", "--from-onnx", str(src), "--names", "x,y", "--out", str(tmp_path / "bad.onnx"), "-q"])
    err = capsys.readouterr().err
    assert rc == 1 and "class count mismatch" in err and err.count("\n") == 1 and "Traceback" not in err
    rc = main(["export", "--model", str(tmp_path / "none.pt"), "--imgsz", "320", "320", "320"])
    assert rc == 1 and "--imgsz takes N or H W" in capsys.readouterr().err


def test_export_wrapper_script_and_light_import():
    """``python export/export.py --help`` works without installing; the CLI module imports no torch/onnx."""
    r = subprocess.run([sys.executable, str(ROOT / "export" / "export.py"), "--help"], capture_output=True, text=True,
                       cwd=ROOT.parent, env={"PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    assert "usage: yolo-edge export" in r.stdout and "--nms {onnx,trt,none}" in r.stdout
    code = ("import sys; sys.path.insert(0, %r); import yolo_edge.export.cli, yolo_edge.export; "
            "print(sorted(m for m in ('torch', 'onnx', 'onnxruntime') if m in sys.modules))" % str(ROOT))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stderr
