"""Activation range (``amax``) algorithms over calibration histograms (numpy only).

The histogram (:class:`SignedHistogram`) is the one ONNX Runtime's calibrators build, kept finer:

* **signed values**, equal-width bins on a grid centred at zero; the bin width is fixed by the
  first image (``width = amax_0 / (ENTROPY_BINS / 2)`` for the entropy grid, split into
  ``FINE`` sub-bins), and a later image with a larger ``|x|`` adds whole entropy bins on both sides
  (the same width, never a re-binning): the growth rule of ``onnxruntime.quantization.calibrate.
  HistogramCollector.merge_histogram``. Summing each group of ``FINE`` sub-bins gives ONNX Runtime's
  128-bin entropy histogram exactly; folding the two halves gives the ``|x|`` histogram (bin width
  ``amax_0 / 2048``, ONNX Runtime's percentile histogram) that ``percentile`` and ``mse`` use.

Methods (each returns ``amax``, the symmetric INT8 clipping range):

* ``entropy`` (:func:`entropy_amax`) — ONNX Runtime's ``EntropyCalibrater`` (the calibrator
  NVIDIA ModelOpt's ONNX quantizer runs for ``calibration_method="entropy"``): 128 signed bins,
  128 quantized bins, the KL divergence of each symmetric window ``[-i, i + 1)`` bins around zero
  with the outliers folded into the end bins, both distributions smoothed, the window of least KL
  wins. Because the first image sets the bin width and the smallest window is 64 bins a side, the
  range it picks lies between about the first image's ``amax`` and the overall ``amax``: it clips
  the rare outliers that later images add, never the bulk.
* ``percentile`` (:func:`percentile_amax`) — the ``p``-th percentile of ``|x|``.
* ``mse`` (:func:`mse_amax`) — least expected squared error of symmetric INT8 fake quantization.
* ``minmax`` — the largest ``|x|`` seen (no histogram needed).

Every algorithm is checked against an independent reference in ``tests/test_calibration_ref.py``
(ONNX Runtime's own collector on the same tensors; a brute-force search for ``mse``).
"""

from __future__ import annotations

import math

import numpy as np

ENTROPY_BINS = 128  # onnxruntime EntropyCalibrater num_bins (signed, over [-amax_0, amax_0])
QUANTIZED_BINS = 128  # onnxruntime EntropyCalibrater num_quantized_bins
FINE = 16  # sub-bins per entropy bin: |x| bin width = amax_0 / (64 * 16) = amax_0 / 1024
SMOOTH_EPS = 1e-4  # onnxruntime.quantization.quant_utils.smooth_distribution


class SignedHistogram:
    """Counts of signed values on the grid ``[k * unit, (k + 1) * unit)``, ``k = -half .. half - 1``.

    ``unit`` is set by the first non-zero data (``amax_0 / (ENTROPY_BINS / 2 * FINE)``);
    :meth:`add` grows ``half`` by whole entropy bins (``FINE`` units) when a value falls outside.
    """

    __slots__ = ("counts", "unit", "zeros")

    def __init__(self, counts: np.ndarray | None = None, unit: float = 0.0):
        self.counts = np.zeros(0, np.int64) if counts is None else np.asarray(counts, np.int64)
        self.unit = float(unit)
        self.zeros = 0  # values seen before the grid existed (all zero)

    @property
    def half(self) -> int:
        return self.counts.size // 2

    @property
    def top(self) -> float:
        """Upper edge of the grid (``half * unit``): ONNX Runtime's current threshold."""
        return self.half * self.unit

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def __bool__(self) -> bool:
        return self.counts.size > 0 and self.unit > 0

    def add(self, values: np.ndarray, amax: float | None = None, weight: int = 1) -> None:
        """Add ``values`` (one image's tensor, or part of it), each counted ``weight`` times.
        ``amax``: the exact ``max |x|`` of that image when ``values`` is only part of it (the grid
        must cover the image, and grows by its ``amax``, whatever the part holds)."""
        v = np.asarray(values, np.float32).ravel()
        a = float(np.max(np.abs(v))) if v.size else 0.0
        a = max(a, float(amax or 0.0))
        if not self:
            if a <= 0.0:  # all zeros so far: they join the zero bin once a grid exists
                self.zeros += v.size * weight
                return
            half = (ENTROPY_BINS // 2) * FINE
            self.unit = a / half
            self.counts = np.zeros(2 * half, np.int64)
            self.counts[half] += self.zeros
            self.zeros = 0
        elif a > self.top:
            w = FINE * self.unit  # one entropy bin
            extra = int((a - self.top) // w + 1) * FINE  # onnxruntime: half_increased_bins = (new - old) // stride + 1
            self.counts = np.concatenate([np.zeros(extra, np.int64), self.counts, np.zeros(extra, np.int64)])
        if v.size:
            half = self.half
            idx = np.floor(v * np.float32(1.0 / self.unit)).astype(np.int64)
            idx += half
            np.clip(idx, 0, 2 * half - 1, out=idx)
            c = np.bincount(idx, minlength=2 * half)
            self.counts += c * weight if weight != 1 else c

    def entropy_hist(self) -> tuple[np.ndarray, np.ndarray]:
        """ONNX Runtime's entropy histogram: ``(counts, edges)`` with ``FINE`` units per bin."""
        c = self.counts.reshape(-1, FINE).sum(axis=1)
        n = c.size // 2
        return c, np.arange(-n, n + 1, dtype=np.float64) * (FINE * self.unit)

    def abs_hist(self) -> np.ndarray:
        """Counts of ``|x|`` in ``half`` bins of width ``unit`` over ``[0, top]``."""
        h = self.half
        return self.counts[h:] + self.counts[:h][::-1]


def _smooth(p: np.ndarray, eps: float = SMOOTH_EPS) -> np.ndarray | None:
    """onnxruntime's ``smooth_distribution`` on each row: zeros get ``eps``, the non-zeros give it back."""
    p = np.atleast_2d(p)
    zero = p == 0
    nz = p.shape[1] - zero.sum(axis=1)
    if np.any(nz == 0):
        return None
    eps1 = eps * zero.sum(axis=1).astype(np.float32) / nz.astype(np.float32)
    out = p.astype(np.float32)
    out += np.where(zero, np.float32(eps), -eps1[:, None].astype(np.float32))
    return out


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    """onnxruntime's ``entropy(p, q)`` in float32: both normalised, ``inf`` where q is 0 and p is not."""
    p = p.astype(np.float32)
    q = q.astype(np.float32)
    p = p / p.sum()
    q = q / q.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        r = p * np.log(p / q)
    r = np.where(p == 0, np.float32(0.0), r)
    r = np.where((p > 0) & (q > 0), r, np.where(p == 0, np.float32(0.0), np.float32(np.inf)))
    return float(np.sum(r, dtype=np.float32))


def entropy_threshold(hist: np.ndarray, edges: np.ndarray, vmin: float, vmax: float,
                      num_quantized_bins: int = QUANTIZED_BINS) -> tuple[float, float]:
    """``(low, high)`` of the symmetric window of least KL divergence (ONNX Runtime's algorithm).

    For ``i = nq/2 .. n/2`` bins around the zero bin: ``P`` is the window with the outliers of each
    side added to its end bins; ``Q`` merges the window (without outliers) into ``nq`` bins of
    ``len // nq`` source bins (the remainder joins the last), then spreads each merged count evenly,
    in integers, over the bins of its group where ``P`` is non-zero. Both are smoothed; the window of
    least ``KL(P || Q)`` gives ``(edges[zero - i], edges[zero + i + 1])``, clipped to ``[vmin, vmax]``.
    """
    hist = np.asarray(hist, np.int64)
    n = hist.size
    zero = n // 2
    hq = num_quantized_bins // 2
    csum = np.concatenate([[0], np.cumsum(hist)])
    windows, kls = [], []
    for i in range(hq, zero + 1):
        start, end = zero - i, min(zero + i + 1, n)
        sliced = hist[start:end]
        p = sliced.copy()
        p[0] += csum[start]
        p[-1] += csum[n] - csum[end]
        m = sliced.size // num_quantized_bins
        body = m * num_quantized_bins
        qb = sliced[:body].reshape(num_quantized_bins, m).sum(axis=1)
        qb[-1] += sliced[body:].sum()
        norm = (p[:body] != 0).reshape(num_quantized_bins, m).sum(axis=1)
        q = np.zeros(p.size, np.int64)
        per = np.where(norm > 0, qb / np.maximum(norm, 1), 0.0)
        q[:body] = np.repeat(per, m).astype(np.int64)  # onnxruntime assigns into an int64 array
        ps, qs = _smooth(p), _smooth(q)
        windows.append((start, end))
        kls.append(math.inf if ps is None or qs is None else _kl(ps[0], qs[0]))
    if not windows:  # fewer bins than quantized bins: the whole histogram
        return float(vmin), float(vmax)
    start, end = windows[int(np.argmin(np.asarray(kls, np.float32)))]  # the first minimum, as np.argmin
    lo, hi = float(edges[start]), float(edges[end])
    return max(lo, float(vmin)), min(hi, float(vmax))


def entropy_amax(h: SignedHistogram, vmin: float, vmax: float) -> float:
    """``amax`` of ONNX Runtime's entropy calibrator: ``max(|low|, |high|)`` of :func:`entropy_threshold`
    (what ``quantize_static`` makes of the range with symmetric activations)."""
    if not h:
        return max(abs(vmin), abs(vmax))
    hist, edges = h.entropy_hist()
    lo, hi = entropy_threshold(hist, edges, vmin, vmax)
    return max(abs(lo), abs(hi))


def percentile_amax(abs_hist: np.ndarray, unit: float, p: float, absmax: float) -> float:
    """The ``p``-th percentile of ``|x|``, linear inside its bin, at most ``absmax``."""
    total = abs_hist.sum()
    if total <= 0 or p >= 100:
        return float(absmax)
    cdf = np.cumsum(abs_hist) / total
    i = int(np.searchsorted(cdf, p / 100.0))
    i = min(i, abs_hist.size - 1)
    lo_c = cdf[i - 1] if i > 0 else 0.0
    frac = (p / 100.0 - lo_c) / max(cdf[i] - lo_c, 1e-12)
    return float(min((i + min(max(frac, 0.0), 1.0)) * unit, absmax))


def mse_amax(abs_hist: np.ndarray, unit: float, absmax: float | None = None, num_bits: int = 8,
             candidates: int = 512, spread: int = 8) -> float:
    """The ``amax`` minimising the expected squared error of symmetric INT8 fake quantization over
    the ``|x|`` histogram, among ``candidates`` ranges evenly spaced up to ``absmax``. Each bin's
    count is spread evenly over ``spread`` points inside it (values are not all at the bin centre:
    with a quantization step a few bins wide, that matters)."""
    counts = abs_hist.astype(np.float64)
    n = counts.size
    top = float(absmax) if absmax else n * unit
    keep = np.flatnonzero(counts > 0)
    if keep.size == 0:
        return top
    offs = (np.arange(spread) + 0.5) / spread
    vals = np.minimum(((keep[:, None] + offs[None, :]) * unit).ravel(), top)
    w = np.repeat(counts[keep] / spread, spread)
    qmax = (1 << (num_bits - 1)) - 1

    def errors(cand: np.ndarray) -> np.ndarray:
        err = np.empty(cand.size)
        step = max(1, 4_000_000 // max(1, vals.size))
        for k0 in range(0, cand.size, step):  # chunks of (step, points)
            sc = cand[k0:k0 + step, None] / qmax
            q = np.minimum(np.round(vals[None, :] / sc), qmax) * sc
            err[k0:k0 + step] = ((q - vals[None, :]) ** 2 * w[None, :]).sum(axis=1)
        return err

    # coarse grid of ``candidates // 8`` ranges, then ``candidates // 8`` more around the best: the
    # error curve is smooth at that scale, and the search costs a quarter of the full grid
    n0 = max(8, candidates // 8)
    coarse = np.linspace(top / n0, top, n0)
    i = int(np.argmin(errors(coarse)))
    lo, hi = coarse[max(i - 1, 0)] if i else top / candidates, coarse[min(i + 1, n0 - 1)]
    fine = np.linspace(lo, hi, n0 + 1)
    cand = np.concatenate([coarse, fine])
    err = np.concatenate([errors(coarse), errors(fine)])
    return float(cand[int(np.argmin(err))])


def fake_quant_error(x: np.ndarray, amax: float, num_bits: int = 8) -> float:
    """Mean squared error of symmetric INT8 quantize-dequantize of ``x`` at ``amax``."""
    qmax = (1 << (num_bits - 1)) - 1
    s = amax / qmax
    q = np.clip(np.round(x / s), -qmax - 1, qmax) * s
    return float(np.mean((q - x) ** 2))
