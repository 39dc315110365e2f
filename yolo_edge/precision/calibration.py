"""Calibration data and activation statistics (numpy; onnxruntime when collecting).

Calibration images come from an image folder, a dataset or a video (anything
:func:`yolo_edge.data.load_dataset` opens), go through the one letterbox, and are identified by
the SHA-1 of their decoded pixels, so that overlap with an evaluation set is caught whatever the
file names (:func:`check_disjoint`).

:func:`collect_stats` runs the FP32 graph once over the images and records, per tensor:

* the exact ``min`` and ``max`` of every float activation (``ReduceMin``/``ReduceMax`` added to the
  graph, so ONNX Runtime reduces the full tensors), used for the FP16 overflow check, for the
  TensorRT legacy cache of tensors outside the Q/DQ set, and for ``minmax`` calibration;
* for the tensors that get quantized, the signed histogram ONNX Runtime's calibrators build
  (:mod:`yolo_edge.precision.amax`: grid set by the first image, equal-width growth), counted
  exactly above ``tau`` and from a strided sample below it, from which ``entropy``, ``percentile``
  and ``mse`` choose their ``amax``.

One pass serves every method: :meth:`CalibrationStats.amax` computes the ranges of any method
from the same statistics, so switching method or excluding layers never re-runs calibration
(``auto`` adds a few inferences: :func:`yolo_edge.precision.sensitivity.auto_amax`).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from ..deps import progress, require
from ..errors import YoloEdgeError
from ..spec import LetterboxSpec
from .amax import ENTROPY_BINS, FINE, SignedHistogram, entropy_amax, mse_amax, percentile_amax

BASE_METHODS = ("minmax", "entropy", "percentile", "mse")
METHODS = (*BASE_METHODS, "auto")  # auto: per tensor, by layer-output error (sensitivity.auto_amax)
DEFAULT_METHOD = "entropy"  # chosen on real COCO images and the synthetic set: README "INT8 calibration methods"
DEFAULT_PERCENTILE = 99.99
HIST_BINS = 2 * (ENTROPY_BINS // 2) * FINE  # signed sub-bins of the first image's range
SAMPLE_STRIDE = 32  # at most: one value in 32 of the bulk (|x| <= tau) is histogrammed, the tail exactly
MIN_SAMPLES = 32768  # values per image below which a tensor is histogrammed whole
TAIL_QUANTILE = 0.995  # tau: this quantile of |x| on the first image; the 0.5 % above it are counted exactly
SAMPLES_PER_IMAGE = MIN_SAMPLES  # (kept for the statistics key)
DEFAULT_CALIB_IMAGES = 512
STATS_VERSION = 2


# --- calibration images ------------------------------------------------------------------------
def image_hash(image: np.ndarray) -> str:
    """SHA-1 of a decoded image (shape and pixels): the identity used for disjointness checks."""
    img = np.ascontiguousarray(image)
    h = hashlib.sha1(f"{img.shape}|{img.dtype}".encode())
    h.update(img.tobytes())
    return h.hexdigest()


def spread_indices(total: int, n: int | None) -> list[int]:
    """``n`` indices spread evenly over ``range(total)`` (all of them when ``n`` is None or >= total)."""
    if n is None or n >= total:
        return list(range(total))
    if n <= 0:
        return []
    return sorted({int(round(v)) for v in np.linspace(0, total - 1, n)})


class ImageSet:
    """A list of images drawn from a dataset, a folder or a video, with their hashes.

    Args:
        source: anything :func:`yolo_edge.data.load_dataset` accepts (``synthetic:calib``, a folder,
            a YOLO or COCO dataset, a video file) or a :class:`~yolo_edge.data.Dataset`.
        n: number of images, spread evenly over the source (video: every k-th frame); None = all.
    """

    def __init__(self, source, n: int | None = DEFAULT_CALIB_IMAGES):
        from ..data import load_dataset
        from ..data.folders import VideoFrames

        self.source = source if isinstance(source, str) else repr(source)
        ds = load_dataset(source)
        if isinstance(ds, VideoFrames) and n is not None and n < len(ds):
            step = max(1, len(ds) // n)  # sequential reads with a stride: no seeking
            ds = VideoFrames(ds.path, step=step, max_frames=n)
            self.indices = list(range(len(ds)))
        else:
            self.indices = spread_indices(len(ds), n)
        if not self.indices:
            raise YoloEdgeError(f"no images in {self.source}")
        self.dataset = ds
        self._hashes: list[str] | None = None

    def __len__(self) -> int:
        return len(self.indices)

    def __repr__(self) -> str:
        return f"ImageSet({self.source!r}, n={len(self)})"

    def head(self, n: int) -> "ImageSet":
        """The first ``n`` images of this set (same spacing), as a new set."""
        import copy

        from ..data.folders import VideoFrames

        out = copy.copy(self)
        out.indices = self.indices[:n]
        out._hashes = self._hashes[:n] if self._hashes is not None else None
        if isinstance(self.dataset, VideoFrames):
            out.dataset = VideoFrames(self.dataset.path, step=self.dataset.step, max_frames=len(out.indices))
        return out

    def images(self) -> Iterator[np.ndarray]:
        """Yield the images (uint8 BGR) in order; records their hashes on the first full pass."""
        from ..data.folders import VideoFrames

        hashes = []
        if isinstance(self.dataset, VideoFrames):
            it = (s.image for s in self.dataset)
        else:
            it = (self.dataset[i].image for i in self.indices)
        for img in it:
            hashes.append(image_hash(img))
            yield img
        if self._hashes is None and len(hashes) == len(self.indices):
            self._hashes = hashes

    def hashes(self, desc: str | None = None) -> list[str]:
        """Per-image SHA-1 (computed once; reads every image when not known yet)."""
        if self._hashes is None:
            bar = progress(self.images(), total=len(self), desc=desc or "hash", unit="img",
                           disable=desc is None)
            for _ in bar:
                pass
        return list(self._hashes or [])

    def batches(self, size: int | tuple[int, int] | LetterboxSpec, batch: int = 8,
                fixed: bool = False) -> Iterator[np.ndarray]:
        """Letterboxed float32 batches ``(B, 3, H, W)`` through the shared letterbox. With ``fixed``
        (a model exported with a static batch) the last batch is completed by repeating its last image."""
        for x, _ in self.counted_batches(size, batch, fixed):
            yield x

    def counted_batches(self, size, batch: int = 8, fixed: bool = False) -> Iterator[tuple[np.ndarray, int]]:
        """Like :meth:`batches`, yielding ``(batch, number of real images in it)``."""
        from ..letterbox import letterbox_batch

        chunk = []
        for img in self.images():
            chunk.append(img)
            if len(chunk) == batch:
                yield letterbox_batch(chunk, size)[0], batch
                chunk = []
        if chunk:
            n = len(chunk)
            if fixed:
                chunk += [chunk[-1]] * (batch - n)
            yield letterbox_batch(chunk, size)[0], n


def data_hash(hashes: Iterable[str]) -> str:
    """SHA-256 of the sorted image hashes: the calibration set's identity (order does not matter)."""
    h = hashlib.sha256()
    for x in sorted(hashes):
        h.update(x.encode())
        h.update(b"\n")
    return h.hexdigest()


def check_disjoint(calib_hashes: Sequence[str], eval_hashes: Sequence[str], *, force: bool = False,
                   calib_name: str = "calibration", eval_name: str = "evaluation") -> list[int]:
    """Refuse calibration images that also appear in the evaluation set (DESIGN §6).

    Returns the positions of overlapping calibration images (empty when disjoint). Raises
    :class:`YoloEdgeError` on overlap unless ``force``.
    """
    ev = set(eval_hashes)
    overlap = [i for i, h in enumerate(calib_hashes) if h in ev]
    if overlap and not force:
        raise YoloEdgeError(
            f"{len(overlap)} of {len(calib_hashes)} {calib_name} images also appear in {eval_name} "
            f"(first: calibration image #{overlap[0]}): calibration and evaluation images must be disjoint; "
            "choose other images, or pass --force-overlap to proceed anyway"
        )
    return overlap


class CalibrationReader:
    """An onnxruntime ``CalibrationDataReader`` over letterboxed batches of an :class:`ImageSet`.

    ``get_next()`` returns ``{input_name: (B, 3, H, W) float32}`` or None at the end; ``rewind()``
    starts over. (Duck-typed: ``isinstance(reader, CalibrationDataReader)`` holds through its
    subclass hook, and importing this module needs no onnxruntime.)
    """

    def __init__(self, images: ImageSet, size, batch: int = 8, input_name: str = "images"):
        self.images, self.size, self.batch, self.input_name = images, size, batch, input_name
        self._it: Iterator[np.ndarray] | None = None

    def __len__(self) -> int:
        return math.ceil(len(self.images) / self.batch)

    def rewind(self) -> None:
        self._it = None

    def get_next(self):
        if self._it is None:
            self._it = self.images.batches(self.size, self.batch)
        x = next(self._it, None)
        return None if x is None else {self.input_name: x}

    def __iter__(self):
        self.rewind()
        while (item := self.get_next()) is not None:
            yield item


# --- statistics ------------------------------------------------------------------------------
@dataclass
class TensorStats:
    """Statistics of one activation tensor over the calibration images.

    Attributes:
        name: tensor name.
        min, max: exact extremes over every element of every image (``min`` may come from the
            histogram for tensors with a static lower bound, see :func:`collect_stats`).
        signed: the signed-value histogram (:class:`~yolo_edge.precision.amax.SignedHistogram`,
            ONNX Runtime's grid); empty when the tensor was not histogrammed.
        tau: values with ``|x| > tau`` are counted exactly on every image, the others from a strided
            sample (see :func:`collect_stats`); ``-1`` before the first image.
    """

    name: str
    min: float = math.inf
    max: float = -math.inf
    signed: SignedHistogram = field(default_factory=SignedHistogram)
    n_images: int = 0
    min_exact: bool = True
    tau: float = -1.0

    @property
    def absmax(self) -> float:
        return float(max(abs(self.min), abs(self.max))) if math.isfinite(self.min) else 0.0

    @property
    def hist(self) -> np.ndarray:
        """Counts of ``|x|`` in equal bins over ``[0, top]`` (empty without a histogram)."""
        return self.signed.abs_hist() if self.signed else np.zeros(0, np.int64)

    @property
    def top(self) -> float:
        return self.signed.top if self.signed else 0.0

    @property
    def n_samples(self) -> int:
        return self.signed.total if self.signed else 0

    @property
    def has_hist(self) -> bool:
        return bool(self.signed) and self.signed.total > 0

    def edges(self) -> np.ndarray:
        h = self.hist
        return np.linspace(0.0, self.top, h.size + 1)

    def add(self, lo: float, hi: float, values: np.ndarray | None = None, *, weight: int = 1,
            amax: float | None = None) -> None:
        """Record one image (or batch): its extremes, and ``values`` into the histogram, each counted
        ``weight`` times (a strided sample stands for ``weight`` values)."""
        self.min = min(self.min, float(lo))
        self.max = max(self.max, float(hi))
        if values is None:
            return
        a = max(abs(float(lo)), abs(float(hi)), float(amax or 0.0))
        self.signed.add(values, amax=a, weight=weight)

    def percentile(self, p: float) -> float:
        """The ``p``-th percentile of ``|x|`` (linear inside a bin); exact max for p >= 100."""
        if not self.has_hist or p >= 100:
            return self.absmax
        return percentile_amax(self.hist, self.signed.unit, p, self.absmax)

    def saturation(self, amax: float) -> float:
        """Fraction of values with ``|x| > amax``: what INT8 clips."""
        if not self.has_hist:
            return 0.0 if amax >= self.absmax else float("nan")
        h = self.hist
        pos = amax / self.signed.unit
        i = int(pos)
        if i >= h.size:
            return 0.0
        above = h[i + 1:].sum() + h[i] * (1.0 - (pos - i))
        return float(above / h.sum())

    def amax(self, method: str = DEFAULT_METHOD, percentile: float = DEFAULT_PERCENTILE) -> float:
        """The clipping range ``amax`` chosen by ``method`` (``minmax`` without a histogram).
        ``auto`` needs the model: see :meth:`CalibrationStats.amax`."""
        if method not in METHODS or method == "auto":
            raise YoloEdgeError(f"unknown calibration method {method!r}; choose from {', '.join(BASE_METHODS)}")
        full = self.absmax
        if method == "minmax" or not self.has_hist or full == 0.0:
            return full
        if method == "percentile":
            a = self.percentile(percentile)
        elif method == "entropy":
            a = entropy_amax(self.signed, self.min, self.max)
        else:
            a = mse_amax(self.hist, self.signed.unit, full)
        return float(min(max(a, full * 1e-3, 1e-8), full))

    def to_dict(self, bins: int = 128) -> dict:
        """JSON-ready summary; the ``|x|`` histogram re-binned to about ``bins`` bins."""
        d = {"name": self.name, "min": self.min, "max": self.max, "images": self.n_images,
             "min_exact": self.min_exact}
        if self.has_hist:
            h = self.hist
            f = max(1, h.size // bins)
            n = (h.size // f) * f
            d["hist"] = h[:n].reshape(-1, f).sum(axis=1).tolist()
            d["hist_top"] = n * self.signed.unit
        return d


class CalibrationStats:
    """Per-tensor statistics of one calibration pass (see the module doc).

    Attributes:
        tensors: ``{name: TensorStats}``.
        hashes: per-image SHA-1 of the calibration images, in order.
        letterbox: the preprocessing the images went through.
        seconds: wall time of the pass.
    """

    def __init__(self, tensors: dict[str, TensorStats], hashes: Sequence[str] = (),
                 letterbox: LetterboxSpec | None = None, seconds: float = 0.0, source: str = ""):
        self.tensors = tensors
        self.hashes = list(hashes)
        self.letterbox = letterbox or LetterboxSpec()
        self.seconds = float(seconds)
        self.source = source

    @property
    def n_images(self) -> int:
        return len(self.hashes)

    @property
    def data_hash(self) -> str:
        return data_hash(self.hashes)

    def histogrammed(self) -> list[str]:
        return [k for k, v in self.tensors.items() if v.has_hist]

    def amax(self, method: str = DEFAULT_METHOD, percentile: float = DEFAULT_PERCENTILE,
             names: Iterable[str] | None = None) -> dict[str, float]:
        """``{tensor: amax}`` by ``method`` (tensors without a histogram always use min/max). ``auto``
        needs the model: :func:`yolo_edge.precision.sensitivity.auto_amax`."""
        keys = self.tensors if names is None else [n for n in names if n in self.tensors]
        return {k: self.tensors[k].amax(method, percentile) for k in keys}

    def absmax(self) -> dict[str, float]:
        return {k: v.absmax for k, v in self.tensors.items()}

    # -- persistence (npz: histograms are arrays) ---------------------------------------------
    def save(self, path) -> Path:
        from ..util import atomic_write

        meta = {"version": STATS_VERSION, "hashes": self.hashes, "seconds": self.seconds, "source": self.source,
                "letterbox": {"size": list(self.letterbox.size), "pad_value": self.letterbox.pad_value,
                              "scaleup": self.letterbox.scaleup, "interpolation": self.letterbox.interpolation},
                "tensors": [{"name": t.name, "min": t.min, "max": t.max, "unit": t.signed.unit, "tau": t.tau,
                             "n": t.n_images,
                             "exact": t.min_exact} for t in self.tensors.values()]}
        arrays = {f"h{i}": t.signed.counts for i, t in enumerate(self.tensors.values())}
        path = Path(path)
        with atomic_write(path) as f:
            np.savez_compressed(f, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8), **arrays)
        return path

    @classmethod
    def load(cls, path) -> "CalibrationStats":
        with np.load(path) as z:
            meta = json.loads(bytes(z["meta"]).decode())
            if meta.get("version") != STATS_VERSION:
                raise YoloEdgeError(f"{path}: calibration statistics of another version; recalibrate")
            tensors = {}
            for i, t in enumerate(meta["tensors"]):
                tensors[t["name"]] = TensorStats(t["name"], t["min"], t["max"],
                                                 SignedHistogram(z[f"h{i}"].astype(np.int64), t["unit"]),
                                                 t.get("n", 0), t.get("exact", True), t.get("tau", -1.0))
        lb = meta["letterbox"]
        return cls(tensors, meta["hashes"], LetterboxSpec(size=tuple(lb["size"]), pad_value=lb["pad_value"],
                                                          scaleup=lb["scaleup"], interpolation=lb["interpolation"]),
                   meta.get("seconds", 0.0), meta.get("source", ""))


def _stride_for(size: int, inner: int | None, max_stride: int = SAMPLE_STRIDE, min_samples: int = MIN_SAMPLES) -> int:
    """The sampling stride of a tensor of ``size`` values per image: 1 (everything) for small
    tensors, else up to ``max_stride`` keeping at least ``min_samples`` values, coprime with ``inner``
    (the spatial size) so that samples do not line up with rows or channels."""
    k = max(1, min(max_stride, size // max(1, min_samples)))
    if inner and k > 1:
        while math.gcd(k, inner) != 1:
            k += 1
    return k


SILU_MIN = -0.2784645427610738  # min over x of x * sigmoid(x)
_SAME_RANGE = {"Concat", "Split", "Slice", "MaxPool", "Resize", "Reshape", "Transpose", "Squeeze", "Unsqueeze",
               "Flatten", "Identity", "AveragePool", "GlobalMaxPool", "GlobalAveragePool", "Upsample"}


def lower_bounds(model, input_bounds: dict[str, float] | None = None) -> dict[str, float]:
    """Static lower bounds of tensors, where the graph guarantees one: ``images`` >= 0 (DESIGN §2),
    Sigmoid/Softmax/Relu >= 0, SiLU (``x * Sigmoid(x)``) >= -0.2785, sums of bounded tensors, and
    ops that only move or select values (Concat, Split, MaxPool, Resize, Reshape, ...).

    A tensor with a bound needs no exact minimum for symmetric INT8 as long as its maximum exceeds
    ``|bound|``: ``amax = max(|min|, |max|)`` is then the maximum."""
    bounds = dict(input_bounds if input_bounds is not None else {i.name: 0.0 for i in model.graph.input[:1]})
    sig_src = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "Sigmoid"}
    inits = {t.name for t in model.graph.initializer}
    for n in model.graph.node:
        ins = [i for i in n.input if i and i not in inits]
        op, b = n.op_type, None
        if op in ("Sigmoid", "Softmax", "Relu"):
            b = 0.0
        elif op == "Mul" and len(n.input) == 2 and (sig_src.get(n.input[1]) == n.input[0]
                                                    or sig_src.get(n.input[0]) == n.input[1]):
            b = SILU_MIN
        elif op in _SAME_RANGE and ins and all(i in bounds for i in (ins if op == "Concat" else ins[:1])):
            b = min(bounds[i] for i in (ins if op == "Concat" else ins[:1]))
        elif op == "Add" and len(ins) == 2 and all(i in bounds for i in ins):
            b = bounds[ins[0]] + bounds[ins[1]]
        if b is not None:
            for o in n.output:
                bounds[o] = b
    return bounds


def augment_for_stats(model, minmax: Sequence[str], sampled: Sequence[str], max_only: Sequence[str] = ()):
    """A copy of ``model`` with extra outputs, and its sampling strides ``{tensor: k}``:

    * ``<t>::min`` and ``<t>::max`` (ReduceMin/ReduceMax) for every tensor of ``minmax``;
    * ``<t>::max`` alone for every tensor of ``max_only`` (GlobalMaxPool on 4-D tensors, which ONNX
      Runtime runs in its blocked layout: much cheaper than ReduceMax there);
    * for every tensor of ``sampled``: ``<t>::sample``, one value in ``k`` of the flattened tensor
      (strided ``Slice``), and ``<t>::tail``, every value with ``|x| > tau`` (``Compress``), where
      ``tau`` is the scalar graph input ``<t>::tau`` (``-1``: every value).
    """
    onnx = require("onnx")
    from onnx import TensorProto, helper, numpy_helper

    from .graph import copy_model, static_sizes, tensor_types

    m = copy_model(model)
    g = m.graph
    sizes = static_sizes(model)
    types = tensor_types(model)

    def rank(t):
        return len(types[t].type.tensor_type.shape.dim) if t in types else -1

    del g.output[:]
    g.initializer.append(numpy_helper.from_array(np.array([-1], np.int64), "stats::flat"))
    g.initializer.append(numpy_helper.from_array(np.array([0], np.int64), "stats::axis"))
    g.initializer.append(numpy_helper.from_array(np.array([np.iinfo(np.int64).max], np.int64), "stats::end"))
    for t in minmax:
        for op, suffix in (("ReduceMin", "min"), ("ReduceMax", "max")):
            out = f"{t}::{suffix}"
            g.node.append(helper.make_node(op, [t], [out], name=f"stats::{suffix}::{t}", keepdims=0))
            g.output.append(helper.make_tensor_value_info(out, TensorProto.FLOAT, []))
    for t in max_only:
        if t in set(minmax):
            continue
        out = f"{t}::max"
        if rank(t) == 4:
            g.node.append(helper.make_node("GlobalMaxPool", [t], [out], name=f"stats::max::{t}"))
            g.output.append(helper.make_tensor_value_info(out, TensorProto.FLOAT, [None, None, 1, 1]))
        else:
            g.node.append(helper.make_node("ReduceMax", [t], [out], name=f"stats::max::{t}", keepdims=0))
            g.output.append(helper.make_tensor_value_info(out, TensorProto.FLOAT, []))
    strides = {}
    for i, t in enumerate(sampled):
        dims = types[t].type.tensor_type.shape.dim if t in types else []
        inner = None
        if len(dims) >= 3 and all(d.HasField("dim_value") for d in dims[2:]):
            inner = int(np.prod([d.dim_value for d in dims[2:]]))
        k = strides[t] = _stride_for(sizes.get(t, MIN_SAMPLES * SAMPLE_STRIDE), inner)
        flat = f"{t}::flat"
        g.node.append(helper.make_node("Reshape", [t, "stats::flat"], [flat], name=f"stats::flat::{t}"))
        out = f"{t}::sample"
        if k == 1:
            g.node.append(helper.make_node("Identity", [flat], [out], name=f"stats::sample::{t}"))
        else:
            start = numpy_helper.from_array(np.array([(i * 7919) % k], np.int64), f"stats::start{i}")
            step = numpy_helper.from_array(np.array([k], np.int64), f"stats::step{i}")
            g.initializer.extend([start, step])
            g.node.append(helper.make_node("Slice", [flat, start.name, "stats::end", "stats::axis", step.name], [out],
                                           name=f"stats::sample::{t}"))
        g.output.append(helper.make_tensor_value_info(out, TensorProto.FLOAT, [None]))
        if k > 1:
            tau = f"{t}::tau"
            g.input.append(helper.make_tensor_value_info(tau, TensorProto.FLOAT, []))
            g.node.append(helper.make_node("Abs", [flat], [f"{t}::abs"], name=f"stats::abs::{t}"))
            g.node.append(helper.make_node("Greater", [f"{t}::abs", tau], [f"{t}::big"], name=f"stats::big::{t}"))
            g.node.append(helper.make_node("Compress", [flat, f"{t}::big"], [f"{t}::tail"], name=f"stats::tail::{t}"))
            g.output.append(helper.make_tensor_value_info(f"{t}::tail", TensorProto.FLOAT, [None]))
    onnx.checker.check_model(m)
    return m, strides


def ort_session(model, threads: int | None = None):
    """An onnxruntime CPU session for an ``onnx.ModelProto`` or a path."""
    ort = require("onnxruntime")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    src = model if isinstance(model, (str, Path)) else model.SerializeToString()
    return ort.InferenceSession(str(src) if isinstance(src, Path) else src, opts, providers=["CPUExecutionProvider"])


def collect_stats(model, images: ImageSet, size: LetterboxSpec, *, sampled: Sequence[str] = (),
                  minmax: Sequence[str] | None = None, full_range_images: int = 32, batch: int = 2,
                  show_progress: bool = True) -> CalibrationStats:
    """One pass of the FP32 ``model`` over ``images``.

    * ``sampled`` tensors (those INT8 quantizes): exact maximum over every image and the signed
      histogram on ONNX Runtime's grid (:class:`~yolo_edge.precision.amax.SignedHistogram`). The
      first image is histogrammed whole; it also sets ``tau``, the 99.5th percentile of its ``|x|``.
      On every later image the values with ``|x| > tau`` (the tail, where the ranges are decided)
      are counted exactly, and the bulk from a strided sample of one value in ``k <= 32``, each
      counted ``k`` times (small tensors: every value). This reproduces ONNX Runtime's full-tensor
      histograms' ``amax`` (``tests/test_calibration_ref.py``) at a fraction of the cost. The
      minimum is exact where the graph gives no lower bound (:func:`lower_bounds`), else the
      histogram's (``amax`` is the maximum either way).
    * ``minmax`` tensors (default: every float activation): exact min and max over the first
      ``full_range_images`` images (for the FP16 overflow check and the TensorRT legacy cache),
      so that the full pass stays about as fast as plain inference.

    The first image runs alone (it sets the histogram grid, as the first batch does in ONNX
    Runtime's calibrator fed one image at a time); then batches of ``batch`` (ONNX Runtime on CPU
    is memory-bound at 640 px and gets no faster per image with larger batches). A model exported
    with a static batch runs at that batch.
    """
    from ..letterbox import letterbox_batch
    from .graph import fixed_batch as _fixed, float_activations

    fixed_batch = _fixed(model)
    batch = fixed_batch or batch

    minmax = list(float_activations(model) if minmax is None else minmax)
    sampled = list(dict.fromkeys(sampled))
    bounds = lower_bounds(model)
    unbounded = [t for t in sampled if t not in bounds]
    full_m, strides = augment_for_stats(model, list(dict.fromkeys([*minmax, *sampled])), sampled)
    fast_m, _ = augment_for_stats(model, unbounded, sampled, max_only=sampled)
    full, fast = ort_session(full_m), ort_session(fast_m)
    stats = {t: TensorStats(t) for t in dict.fromkeys([*minmax, *sampled])}
    seen = {t: 0 for t in stats}
    t0 = time.perf_counter()
    bar = progress(total=len(images), desc="calibrate", unit="img", disable=not show_progress)
    done = 0

    def chunks():
        chunk, first = [], fixed_batch is None
        for img in images.images():
            chunk.append(img)
            if len(chunk) == (1 if first else batch):
                yield chunk, len(chunk)
                chunk, first = [], False
        if chunk:
            n = len(chunk)
            if fixed_batch is not None:
                chunk += [chunk[-1]] * (batch - n)
            yield chunk, n

    for imgs, n_real in chunks():
        x = letterbox_batch(imgs, size)[0]
        sess = full if done < full_range_images else fast
        names = [o.name for o in sess.get_outputs()]
        feeds = {sess.get_inputs()[0].name: x}
        for i in sess.get_inputs()[1:]:
            feeds[i.name] = np.array(stats[i.name[: -len("::tau")]].tau, np.float32)
        outs = dict(zip(names, sess.run(names, feeds)))
        frac = n_real / x.shape[0]
        for t, st in stats.items():
            hi = outs.get(f"{t}::max")
            if hi is None:
                continue
            hi = float(np.max(hi))
            sample = outs.get(f"{t}::sample")
            lo = outs.get(f"{t}::min")
            if sample is None:
                st.add(np.min(lo), hi)
            else:
                tail = outs.get(f"{t}::tail")
                k = strides[t]
                if frac < 1:  # a static batch completed with repeats: drop their share
                    sample = sample[: max(1, int(sample.size * frac))]
                    tail = None if tail is None else tail[: int(tail.size * frac)]
                if lo is None:  # bounded below: the smallest value the histogram sees
                    lo = min(sample.min() if sample.size else hi, tail.min() if tail is not None and tail.size else hi)
                lo = float(np.min(lo))
                if k == 1 or st.tau < 0:  # whole tensor (small, or the first image: tau = -1 takes every value)
                    st.add(lo, hi, sample if k == 1 else tail)
                    if k > 1:
                        a = np.abs(tail)
                        st.tau = float(np.quantile(a, TAIL_QUANTILE)) if a.size else 0.0
                else:
                    st.add(lo, hi, tail)
                    st.add(lo, hi, sample[np.abs(sample) <= st.tau], weight=k)
            seen[t] += n_real
        done += n_real
        if bar is not None and hasattr(bar, "update"):
            bar.update(n_real)
    if bar is not None and hasattr(bar, "close"):
        bar.close()
    for t, st in stats.items():
        st.n_images = seen[t]
        st.min_exact = t not in sampled or t in unbounded or st.n_images <= full_range_images
    return CalibrationStats(stats, images.hashes(), size, time.perf_counter() - t0, images.source)
