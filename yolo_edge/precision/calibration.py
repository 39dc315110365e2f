"""Calibration data and activation statistics (numpy; onnxruntime when collecting).

Calibration images come from an image folder, a dataset or a video (anything
:func:`yolo_edge.data.load_dataset` opens), go through the one letterbox, and are identified by
the SHA-1 of their decoded pixels, so that overlap with an evaluation set is caught whatever the
file names (:func:`check_disjoint`).

:func:`collect_stats` runs the FP32 graph once over the images and records, per tensor:

* the exact ``min`` and ``max`` of every float activation (``ReduceMin``/``ReduceMax`` added to the
  graph, so ONNX Runtime reduces the full tensors), used for the FP16 overflow check, for the
  TensorRT legacy cache of tensors outside the Q/DQ set, and for ``minmax`` calibration;
* a histogram of ``|x|`` (2048 bins) for the tensors that get quantized, over a fixed-stride
  sample of each tensor (about ``samples_per_image`` values per image, taken in the graph with a
  strided ``Slice``), from which ``percentile``, ``entropy`` and ``mse`` choose their ``amax``.

One pass serves every method: :meth:`CalibrationStats.amax` computes the ranges of any method
from the same statistics, so switching method or excluding layers never re-runs calibration.
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

METHODS = ("minmax", "entropy", "percentile", "mse")
DEFAULT_METHOD = "minmax"  # measured best for YOLO on the synthetic set (benchmarks/int8_accuracy.py): clipping
# the activations (entropy, percentile) costs the detector far more than the coarser resolution of min/max
DEFAULT_PERCENTILE = 99.99
HIST_BINS = 2048
SAMPLES_PER_IMAGE = 8192
DEFAULT_CALIB_IMAGES = 512
STATS_VERSION = 1


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
        min, max: exact extremes over every element of every image.
        hist: counts of ``|x|`` in ``len(hist)`` equal bins over ``[0, top]`` (sampled elements);
            empty when the tensor was not histogrammed.
        top: upper edge of the histogram.
    """

    name: str
    min: float = math.inf
    max: float = -math.inf
    hist: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    top: float = 0.0
    n_images: int = 0
    min_exact: bool = True

    @property
    def absmax(self) -> float:
        return float(max(abs(self.min), abs(self.max))) if math.isfinite(self.min) else 0.0

    @property
    def n_samples(self) -> int:
        return int(self.hist.sum())

    @property
    def has_hist(self) -> bool:
        return self.hist.size > 0 and self.hist.sum() > 0

    def edges(self) -> np.ndarray:
        return np.linspace(0.0, self.top, self.hist.size + 1)

    def add(self, lo: float, hi: float, sample: np.ndarray | None = None, bins: int = HIST_BINS) -> None:
        self.min = min(self.min, float(lo))
        self.max = max(self.max, float(hi))
        if sample is None:
            return
        amax = max(abs(float(lo)), abs(float(hi)))
        if self.hist.size == 0:
            self.hist = np.zeros(bins, np.int64)
            self.top = amax if amax > 0 else 1e-8
        while amax > self.top:  # double the range: merge bin pairs, exact
            h = self.hist.reshape(-1, 2).sum(axis=1)
            self.hist = np.concatenate([h, np.zeros(h.size, np.int64)])
            self.top *= 2.0
        a = np.abs(sample.astype(np.float32, copy=False).ravel())
        idx = np.minimum((a * (self.hist.size / self.top)).astype(np.int64), self.hist.size - 1)
        self.hist += np.bincount(idx, minlength=self.hist.size)

    def percentile(self, p: float) -> float:
        """The ``p``-th percentile of ``|x|`` (linear inside a bin); exact max for p >= 100."""
        if not self.has_hist or p >= 100:
            return self.absmax
        cdf = np.cumsum(self.hist) / self.hist.sum()
        i = int(np.searchsorted(cdf, p / 100.0))
        lo_c = cdf[i - 1] if i > 0 else 0.0
        frac = (p / 100.0 - lo_c) / max(cdf[i] - lo_c, 1e-12)
        w = self.top / self.hist.size
        return float(min((i + frac) * w, self.absmax))

    def saturation(self, amax: float) -> float:
        """Fraction of (sampled) values with ``|x| > amax``: what INT8 clips."""
        if not self.has_hist:
            return 0.0 if amax >= self.absmax else float("nan")
        w = self.top / self.hist.size
        pos = amax / w
        i = int(pos)
        if i >= self.hist.size:
            return 0.0
        above = self.hist[i + 1:].sum() + self.hist[i] * (1.0 - (pos - i))
        return float(above / self.hist.sum())

    def amax(self, method: str = DEFAULT_METHOD, percentile: float = DEFAULT_PERCENTILE) -> float:
        """The clipping range ``amax`` chosen by ``method`` (``minmax`` without a histogram)."""
        if method not in METHODS:
            raise YoloEdgeError(f"unknown calibration method {method!r}; choose from {', '.join(METHODS)}")
        full = self.absmax
        if method == "minmax" or not self.has_hist or full == 0.0:
            return full
        if method == "percentile":
            a = self.percentile(percentile)
        elif method == "entropy":
            a = entropy_amax(self.hist, self.top)
        else:
            a = mse_amax(self.hist, self.top)
        return float(min(max(a, full * 1e-3, 1e-8), full))

    def to_dict(self, bins: int = 128) -> dict:
        """JSON-ready summary; the histogram re-binned to ``bins`` bins."""
        d = {"name": self.name, "min": self.min, "max": self.max, "images": self.n_images,
             "min_exact": self.min_exact}
        if self.has_hist:
            f = max(1, self.hist.size // bins)
            d["hist"] = self.hist.reshape(-1, f).sum(axis=1).tolist()
            d["hist_top"] = self.top
        return d


def entropy_amax(hist: np.ndarray, top: float, num_bits: int = 8, start_bin: int = 128, stride: int = 1) -> float:
    """TensorRT-style entropy calibration: the ``amax`` minimising KL(P || Q) between the histogram
    of ``|x|`` clipped at a candidate edge (outliers folded into the last bin) and the same
    distribution quantized to ``2**(num_bits-1)`` levels, each level spread evenly over the
    non-empty source bins it covers (the algorithm of NVIDIA's pytorch-quantization
    ``_compute_amax_entropy``). Ties go to the larger range.

    Closed form per candidate ``i`` (``b`` the bins, ``t`` the mass beyond ``i``, ``P`` the total,
    ``Q = sum(b[:i])``, ``L_g`` the level of quantized bin ``g`` and ``S_g`` its mass)::

        KL = (sum_{j<i-1} b_j log b_j + b~ log b~) / P - log P
             - (sum_g S_g log L_g + t log L_last) / P + log Q,        b~ = b_{i-1} + t

    so every candidate costs O(levels) with cumulative sums instead of O(bins)."""
    bins = hist.astype(np.float64).copy()
    n = bins.size
    if n < 2 or bins.sum() <= 0:
        return float(top)
    bins[0] = bins[1]  # the spike at zero (SiLU floor, padding) would dominate the KL
    nq = 1 << (num_bits - 1)
    csum = np.concatenate([[0.0], np.cumsum(bins)])
    with np.errstate(divide="ignore", invalid="ignore"):
        blogb = np.where(bins > 0, bins * np.log(np.where(bins > 0, bins, 1.0)), 0.0)
    cbl = np.concatenate([[0.0], np.cumsum(blogb)])
    cnz = np.concatenate([[0.0], np.cumsum(bins > 0)])
    P = csum[-1]
    i = np.arange(max(min(start_bin, n), nq), n + 1, stride).astype(np.int64)  # candidates
    bnd = -((-np.arange(nq + 1)[None, :] * i[:, None]) // nq)  # ceil(g * i / nq): (K, nq + 1)
    S = csum[bnd[:, 1:]] - csum[bnd[:, :-1]]  # mass per level
    C = cnz[bnd[:, 1:]] - cnz[bnd[:, :-1]]  # non-empty source bins per level
    with np.errstate(divide="ignore", invalid="ignore"):
        L = np.where(C > 0, S / np.maximum(C, 1.0), 0.0)
        slogl = np.where(S > 0, S * np.log(np.where(L > 0, L, 1.0)), 0.0).sum(axis=1)
        t = P - csum[i]
        last = bins[i - 1]
        bt = last + t
        a = (cbl[i - 1] + np.where(bt > 0, bt * np.log(np.where(bt > 0, bt, 1.0)), 0.0)) / P - np.log(P)
        l_last = L[:, -1]
        b = (slogl + np.where(t > 0, t * np.log(np.where(l_last > 0, l_last, 1.0)), 0.0)) / P - np.log(csum[i])
        kl = a - b
    kl = np.where((t > 0) & (last <= 0), np.inf, kl)  # outliers land on an empty bin: Q = 0 there
    kl = np.where(csum[i] > 0, kl, np.inf)
    if not np.isfinite(kl).any():
        return float(top)
    k = len(kl) - 1 - int(np.argmin(kl[::-1]))
    return float(i[k] * top / n)


def _entropy_amax_loop(hist: np.ndarray, top: float, num_bits: int = 8, start_bin: int = 128) -> float:
    """The slow, obviously-correct loop :func:`entropy_amax` is tested against."""
    bins = hist.astype(np.float64).copy()
    n = bins.size
    bins[0] = bins[1]
    nq = 1 << (num_bits - 1)
    best_i, best_kl = n, np.inf
    for i in range(start_bin, n + 1):
        p = bins[:i].copy()
        p[-1] += bins[i:].sum()
        q = np.zeros(i)
        for g in range(nq):
            members = [jj for jj in range(i) if (jj * nq) // i == g]
            nonzero = [jj for jj in members if bins[jj] > 0]
            for jj in nonzero:
                q[jj] = sum(bins[k] for k in members) / len(nonzero)
        p /= p.sum()
        if q.sum() <= 0:
            continue
        q /= q.sum()
        if np.any((p > 0) & (q <= 0)):
            continue
        m = p > 0
        kl = float(np.sum(p[m] * np.log(p[m] / q[m])))
        if kl <= best_kl:
            best_kl, best_i = kl, i
    return float(best_i * top / n)


def mse_amax(hist: np.ndarray, top: float, num_bits: int = 8, candidates: int = 256) -> float:
    """The ``amax`` minimising the expected squared error of symmetric INT8 fake quantization over
    the histogram (bin centres stand for their values)."""
    n = hist.size
    w = top / n
    centres = (np.arange(n) + 0.5) * w
    counts = hist.astype(np.float64)
    keep = counts > 0
    centres, counts = centres[keep], counts[keep]
    if counts.size == 0:
        return float(top)
    qmax = (1 << (num_bits - 1)) - 1
    cand = np.linspace(top / candidates, top, candidates)  # (K,)
    scale = cand[:, None] / qmax
    q = np.clip(np.round(centres[None, :] / scale), -qmax - 1, qmax) * scale
    err = ((q - centres[None, :]) ** 2 * counts[None, :]).sum(axis=1)
    return float(cand[int(np.argmin(err))])


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
        """``{tensor: amax}`` by ``method`` (tensors without a histogram always use min/max)."""
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
                "tensors": [{"name": t.name, "min": t.min, "max": t.max, "top": t.top, "n": t.n_images,
                             "exact": t.min_exact} for t in self.tensors.values()]}
        arrays = {f"h{i}": t.hist for i, t in enumerate(self.tensors.values())}
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
                tensors[t["name"]] = TensorStats(t["name"], t["min"], t["max"], z[f"h{i}"].astype(np.int64), t["top"],
                                                 t.get("n", 0), t.get("exact", True))
        lb = meta["letterbox"]
        return cls(tensors, meta["hashes"], LetterboxSpec(size=tuple(lb["size"]), pad_value=lb["pad_value"],
                                                          scaleup=lb["scaleup"], interpolation=lb["interpolation"]),
                   meta.get("seconds", 0.0), meta.get("source", ""))


def _stride_for(size: int, target: int, inner: int | None) -> int:
    """A sampling stride giving about ``target`` values out of ``size``, coprime with ``inner``
    (the spatial size) so that samples do not line up with rows or channels."""
    k = max(1, size // max(1, target))
    if inner:
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


def augment_for_stats(model, minmax: Sequence[str], sampled: Sequence[str], samples_per_image: int = SAMPLES_PER_IMAGE,
                      max_only: Sequence[str] = ()):
    """A copy of ``model`` with extra outputs:

    * ``<t>::min`` and ``<t>::max`` (ReduceMin/ReduceMax) for every tensor of ``minmax``;
    * ``<t>::max`` alone for every tensor of ``max_only`` (GlobalMaxPool on 4-D tensors, which ONNX
      Runtime runs in its blocked layout: much cheaper than ReduceMax there);
    * ``<t>::sample`` (a strided 1-D sample of about ``samples_per_image`` values per image) for
      every tensor of ``sampled``.
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
    for i, t in enumerate(sampled):
        dims = types[t].type.tensor_type.shape.dim if t in types else []
        inner = None
        if len(dims) >= 3 and all(d.HasField("dim_value") for d in dims[2:]):
            inner = int(np.prod([d.dim_value for d in dims[2:]]))
        k = _stride_for(sizes.get(t, samples_per_image), samples_per_image, inner)
        start = numpy_helper.from_array(np.array([(i * 7919) % k], np.int64), f"stats::start{i}")
        step = numpy_helper.from_array(np.array([k], np.int64), f"stats::step{i}")
        g.initializer.extend([start, step])
        flat = f"{t}::flat"
        g.node.append(helper.make_node("Reshape", [t, "stats::flat"], [flat], name=f"stats::flat::{t}"))
        out = f"{t}::sample"
        g.node.append(helper.make_node("Slice", [flat, start.name, "stats::end", "stats::axis", step.name], [out],
                                       name=f"stats::sample::{t}"))
        g.output.append(helper.make_tensor_value_info(out, TensorProto.FLOAT, [None]))
    onnx.checker.check_model(m)
    return m


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
                  samples_per_image: int = SAMPLES_PER_IMAGE, bins: int = HIST_BINS,
                  show_progress: bool = True) -> CalibrationStats:
    """One pass of the FP32 ``model`` over ``images``.

    * ``sampled`` tensors (those INT8 quantizes): exact maximum over every image, ``|x|``
      histogram of a strided sample, and the minimum — exact where the graph gives no lower bound
      (:func:`lower_bounds`), else from the sample (``amax`` is the maximum either way).
    * ``minmax`` tensors (default: every float activation): exact min and max over the first
      ``full_range_images`` images (for the FP16 overflow check and the TensorRT legacy cache),
      so that the full pass stays about as fast as plain inference.

    Batches are small on purpose: ONNX Runtime on CPU is memory-bound at 640 px and gets no
    faster per image with larger batches. A model exported with a static batch runs at that batch.
    """
    from .graph import fixed_batch as _fixed, float_activations

    fixed_batch = _fixed(model)
    batch = fixed_batch or batch

    minmax = list(float_activations(model) if minmax is None else minmax)
    sampled = list(dict.fromkeys(sampled))
    bounds = lower_bounds(model)
    unbounded = [t for t in sampled if t not in bounds]
    full = ort_session(augment_for_stats(model, list(dict.fromkeys([*minmax, *sampled])), sampled, samples_per_image))
    fast = ort_session(augment_for_stats(model, unbounded, sampled, samples_per_image, max_only=sampled))
    stats = {t: TensorStats(t) for t in dict.fromkeys([*minmax, *sampled])}
    seen = {t: 0 for t in stats}
    t0 = time.perf_counter()
    bar = progress(total=len(images), desc="calibrate", unit="img", disable=not show_progress)
    done = 0
    for x, n_real in images.counted_batches(size, batch, fixed=fixed_batch is not None):
        sess = full if done < full_range_images else fast
        names = [o.name for o in sess.get_outputs()]
        outs = dict(zip(names, sess.run(names, {sess.get_inputs()[0].name: x})))
        for t, st in stats.items():
            hi = outs.get(f"{t}::max")
            if hi is None:
                continue
            sample = outs.get(f"{t}::sample")
            if sample is not None and n_real < x.shape[0]:  # drop the repeated images' share of the sample
                sample = sample[: max(1, sample.size * n_real // x.shape[0])]
            lo = outs.get(f"{t}::min")
            if lo is None:  # bounded below: the sample's minimum (amax comes from the exact max)
                lo = sample.min() if sample is not None and sample.size else np.max(hi)
            st.add(np.min(lo), np.max(hi), sample, bins)
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
