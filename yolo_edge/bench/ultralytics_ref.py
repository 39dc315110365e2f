"""Ultralytics' own ONNX predictor on our exported model, when ``ultralytics`` is installed.

Ultralytics' ``YOLO("model.onnx")`` expects its own output layout: one tensor ``output0``
``(B, 4 + nc, A)`` holding ``cx, cy, w, h`` in input pixels, then the class scores, with its
metadata (``names``, ``stride``, ``imgsz``, ``task``) in ``metadata_props``. :func:`to_ultralytics_layout`
rewrites our NMS-free graph (``boxes (B, A, 4)`` xyxy, ``scores (B, A, C)``) into that layout with
three ONNX nodes; Ultralytics then does its own letterbox, ONNX Runtime inference and its own NMS,
exactly as a user of that package would run the same weights.

Not installed -> :func:`available` says why, and the benchmark lists the row as skipped.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import numpy as np

from ..detections import Detections
from ..errors import YoloEdgeError
from ..spec import NmsSpec


def available() -> tuple[bool, str]:
    """``(True, version)`` when ``ultralytics`` can be imported, else ``(False, reason)``."""
    from ..deps import available as has

    if not has("ultralytics"):
        return False, "ultralytics is not installed (pip install ultralytics)"
    from .device import package_version

    return True, package_version("ultralytics") or "?"


def _free_name(graph, name: str) -> None:
    """Rename the tensor ``name`` (wherever it is produced, read or described) to ``<name>_src``."""
    new = f"{name}_src"
    for n in graph.node:
        for seq in (n.input, n.output):
            for i, t in enumerate(seq):
                if t == name:
                    seq[i] = new
    for v in (*graph.value_info, *graph.output, *graph.input):
        if v.name == name:
            v.name = new


def to_ultralytics_layout(src, dst, names: Sequence[str], imgsz, stride: int = 32) -> Path:
    """Write ``dst``: the NMS-free yolo-edge ONNX ``src`` with the Ultralytics output ``output0``."""
    from ..deps import require

    onnx = require("onnx")
    from onnx import TensorProto, helper

    from ..export.metadata import set_prop
    from ..precision.graph import strip_nms
    from ..util import atomic_path

    m = strip_nms(onnx.load(str(src)))
    g = m.graph
    _free_name(g, "output0")  # a YOLOv5 export already has a tensor of that name
    opset = max((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), default=17)
    if opset < 13:
        raise YoloEdgeError(f"{src}: opset {opset} < 13; re-export with --opset 13 or newer")
    two = helper.make_tensor("ul_split_2_2", TensorProto.INT64, [2], [2, 2])
    half = helper.make_tensor("ul_half", TensorProto.FLOAT, [], [0.5])
    g.initializer.extend([two, half])
    g.node.extend([
        helper.make_node("Split", ["boxes", "ul_split_2_2"], ["ul_p1", "ul_p2"], axis=2, name="ul_split"),
        helper.make_node("Add", ["ul_p1", "ul_p2"], ["ul_sum"], name="ul_add"),
        helper.make_node("Mul", ["ul_sum", "ul_half"], ["ul_c"], name="ul_centre"),
        helper.make_node("Sub", ["ul_p2", "ul_p1"], ["ul_wh"], name="ul_wh"),
        helper.make_node("Concat", ["ul_c", "ul_wh", "scores"], ["ul_cat"], axis=2, name="ul_concat"),
        helper.make_node("Transpose", ["ul_cat"], ["output0"], perm=[0, 2, 1], name="ul_transpose"),
    ])
    del g.output[:]
    g.output.append(helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", 4 + len(names), "anchors"]))
    h, w = (int(v) for v in imgsz)
    for k, v in {"names": repr({i: n for i, n in enumerate(names)}), "stride": str(int(stride)),
                 "imgsz": repr([h, w]), "task": "detect", "batch": "1", "author": "yolo-edge (benchmark adapter)",
                 "description": "yolo-edge model in the Ultralytics output layout"}.items():
        set_prop(m, k, v)
    with atomic_path(Path(dst)) as tmp:
        onnx.save(m, str(tmp))
    return Path(dst)


def ultralytics_int8(src, dst, batches: Sequence[np.ndarray]) -> Path:
    """Ultralytics' own INT8 ONNX recipe (``yolo export format=onnx quantize=8``:
    ``ultralytics.utils.export.onnx.onnx_int8_quantize``, ultralytics 8.4) applied to ``src``, an
    FP32 ONNX, with ``batches`` (letterboxed float ``(B, 3, H, W)`` in [0, 1], our calibration
    images) as its calibration data. The recipe is ONNX Runtime's ``quantize_static`` with its
    defaults (QDQ, int8 activations and weights, per-tensor, MinMax) on every Conv/Gemm/MatMul and
    nothing else. Ultralytics' dataloader yields uint8 letterboxed images and its
    ``Exporter._transform_fn`` divides them by 255; the images are handed over the same way."""
    ok, why = available()
    if not ok:
        raise YoloEdgeError(why)
    from ultralytics.utils.export.onnx import onnx_int8_quantize  # type: ignore[import-not-found]

    items = [{"img": np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)} for x in batches]

    def transform(item):  # = ultralytics Exporter._transform_fn on a dynamic-batch graph
        im = item["img"].astype(np.float32) / 255.0
        return im[None] if im.ndim == 3 else im

    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    return Path(onnx_int8_quantize(str(src), str(dst), items, transform))


class UltralyticsPredictor:
    """``ultralytics.YOLO(onnx)`` behind a Detector-like call: images -> list of Detections.

    ``speed`` after each call holds Ultralytics' own per-stage milliseconds (preprocess, inference,
    postprocess), summed over the images of the call.
    """

    name = "ultralytics"

    def __init__(self, onnx_path, names: Sequence[str], imgsz, nms: NmsSpec | None = None, device: str = "cpu"):
        ok, why = available()
        if not ok:
            raise YoloEdgeError(why)
        from ultralytics import YOLO  # type: ignore[import-not-found]

        self.model = YOLO(str(onnx_path), task="detect")
        self.names = tuple(names)
        self.imgsz = tuple(int(v) for v in imgsz)
        self.nms = nms or NmsSpec()
        self.device = device
        self.speed: dict[str, float] = {}

    def __call__(self, images):
        single = isinstance(images, np.ndarray) and images.ndim in (2, 3)
        imgs = [images] if single else list(images)
        results = self.model.predict(imgs, imgsz=list(self.imgsz), conf=self.nms.score_threshold,
                                     iou=self.nms.iou_threshold, max_det=self.nms.max_det, device=self.device,
                                     verbose=False, rect=False)  # fixed-size input: no rect padding
        out, speed = [], {"preprocess": 0.0, "inference": 0.0, "postprocess": 0.0}
        for r in results:
            b = r.boxes
            out.append(Detections(b.xyxy.cpu().numpy(), b.conf.cpu().numpy(), b.cls.cpu().numpy().astype(np.int32)))
            for k in speed:
                speed[k] += float((r.speed or {}).get(k) or 0.0)
        self.speed = speed
        return out[0] if single else out

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def time_ultralytics(pred: UltralyticsPredictor, batches, runs: int, warmup: int = 0, desc: str | None = None):
    """The timing loop of :func:`yolo_edge.bench.timing.time_stages` for Ultralytics: e2e is our wall
    clock around ``predict``, the stages are Ultralytics' own ``speed`` numbers."""
    from ..deps import progress
    from .timing import summarize

    samples: dict[str, list[float]] = {"pre": [], "infer": [], "post": [], "e2e": []}
    it = range(warmup + runs)
    if desc:
        it = progress(it, total=warmup + runs, desc=desc, unit="it")
    for i in it:
        images = batches[i % len(batches)]
        t = time.perf_counter()
        pred(list(images))
        dt = time.perf_counter() - t
        if i >= warmup:
            samples["e2e"].append(dt)
            for ours, theirs in (("pre", "preprocess"), ("infer", "inference"), ("post", "postprocess")):
                samples[ours].append(pred.speed.get(theirs, 0.0) / 1e3)
    return {k: summarize(v) for k, v in samples.items()}


__all__ = ["UltralyticsPredictor", "available", "time_ultralytics", "to_ultralytics_layout", "ultralytics_int8"]
