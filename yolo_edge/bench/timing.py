"""Timing: warm-up, a timed loop over the three stages of a detector, percentiles.

    pipe = DetectorStages(detector)                      # or the reference pipeline
    times = time_stages(pipe, batches, runs=100, warmup=10)
    times["e2e"].p50, times["infer"].p99                 # milliseconds

A *stage pipeline* is anything with

* ``preprocess(images) -> (x, metas)`` — letterbox a list of ``uint8`` BGR images into one batch;
* ``forward(x) -> raw`` — the model (``runner.infer``: decoded boxes/scores or NMS outputs);
* ``postprocess(raw, metas) -> list[Detections]`` — NMS when the model has none, unletterbox.

Each iteration of the loop times the three stages separately and the whole iteration (``e2e``,
wall time from the first image in to the last ``Detections`` out). Iterations before ``warmup``
are run and discarded. Percentiles use numpy's default (linear interpolation between order
statistics), in milliseconds.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass
from typing import Callable, Iterable, Sequence

import numpy as np

STAGES = ("pre", "infer", "post")
PERCENTILES = (50, 90, 99)


@dataclass(frozen=True)
class Stats:
    """Summary of one stage's durations, in milliseconds."""

    n: int
    mean: float
    p50: float
    p90: float
    p99: float
    min: float
    max: float

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Stats":
        return cls(**{k: d[k] for k in ("n", "mean", "p50", "p90", "p99", "min", "max")})


def percentiles(samples: Iterable[float], qs: Sequence[float] = PERCENTILES) -> list[float]:
    """``np.percentile`` (linear interpolation) of ``samples`` at each ``q`` in ``qs``."""
    a = np.asarray(list(samples), np.float64)
    if a.size == 0:
        raise ValueError("no samples")
    return [float(v) for v in np.percentile(a, qs)]


def summarize(seconds: Iterable[float]) -> Stats:
    """Durations in seconds -> :class:`Stats` in milliseconds."""
    ms = np.asarray(list(seconds), np.float64) * 1e3
    if ms.size == 0:
        raise ValueError("no samples")
    p50, p90, p99 = percentiles(ms)
    return Stats(int(ms.size), float(ms.mean()), p50, p90, p99, float(ms.min()), float(ms.max()))


class StageTimer:
    """Collects per-iteration stage durations.

        timer = StageTimer()
        for i in range(n):
            with timer.stage("pre"): ...
            with timer.stage("infer"): ...
            timer.lap(keep=i >= warmup)     # ends the iteration (e2e = time since the last lap)
        timer.stats()                       # {"pre": Stats, "infer": Stats, "e2e": Stats}
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter):
        self.clock = clock
        self.samples: dict[str, list[float]] = {}
        self._current: dict[str, float] = {}
        self._start = clock()

    @contextlib.contextmanager
    def stage(self, name: str):
        t = self.clock()
        try:
            yield
        finally:
            self._current[name] = self._current.get(name, 0.0) + self.clock() - t

    def lap(self, keep: bool = True) -> None:
        """End one iteration; record it when ``keep`` (warm-up iterations pass ``keep=False``)."""
        now = self.clock()
        if keep:
            for name, v in self._current.items():
                self.samples.setdefault(name, []).append(v)
            self.samples.setdefault("e2e", []).append(now - self._start)
        self._current = {}
        self._start = self.clock()

    def stats(self) -> dict[str, Stats]:
        return {name: summarize(v) for name, v in self.samples.items()}


def time_stages(pipeline, batches: Sequence[Sequence[np.ndarray]], runs: int, warmup: int = 0,
                desc: str | None = None, on_iteration: Callable[[int], None] | None = None) -> dict[str, Stats]:
    """Run ``warmup + runs`` iterations of pre -> infer -> post over ``batches`` (cycled).

    Returns ``{"pre", "infer", "post", "e2e"}`` -> :class:`Stats` (ms) over the ``runs`` timed
    iterations. ``desc`` shows a progress bar.
    """
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    if not batches:
        raise ValueError("no input batches")
    from ..deps import progress

    timer = StageTimer()
    total = warmup + runs
    it = range(total)
    if desc:
        it = progress(it, total=total, desc=desc, unit="it")
    timer.lap(keep=False)
    for i in it:
        images = batches[i % len(batches)]
        with timer.stage("pre"):
            x, metas = pipeline.preprocess(images)
        with timer.stage("infer"):
            raw = pipeline.forward(x)
        with timer.stage("post"):
            pipeline.postprocess(raw, metas)
        timer.lap(keep=i >= warmup)
        if on_iteration is not None:
            on_iteration(i)
    return timer.stats()


def make_batches(images: Sequence[np.ndarray], batch: int, n_batches: int | None = None) -> list[list[np.ndarray]]:
    """Batches of ``batch`` images cycling through ``images`` (enough to use each image once, at least one)."""
    if not images:
        raise ValueError("no images")
    n = n_batches or max(1, -(-len(images) // batch))
    return [[images[(k * batch + i) % len(images)] for i in range(batch)] for k in range(n)]


class DetectorStages:
    """A :class:`~yolo_edge.runtime.Detector` split into the three timed stages, doing exactly what
    ``Detector.__call__`` does (a static-batch model gets larger batches in chunks: ``Detector.forward``)."""

    def __init__(self, detector):
        self.det = detector
        self.runner = detector.runner

    def preprocess(self, images):
        return self.det.preprocess(images)

    def forward(self, x: np.ndarray) -> dict[str, np.ndarray]:
        return self.det.forward(x)

    def postprocess(self, raw, metas):
        return [d.unletterbox(m) for d, m in zip(self.det.postprocess(raw), metas)]


__all__ = ["DetectorStages", "PERCENTILES", "STAGES", "StageTimer", "Stats", "make_batches", "percentiles",
           "summarize", "time_stages"]
