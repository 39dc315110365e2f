"""Head-to-head: several pipelines timed *interleaved* in one process, so their ratio survives a
machine whose speed drifts during the run.

The rows of the benchmark run one after another, each in its own process. On a shared VM (or a
Jetson warming into thermal throttling) the machine's speed changes over minutes: seen here, the
same ONNX Runtime session ran 63 ms in one minute and 86 ms in the next, and a pipeline measured
last looked 15 % faster than one measured first. Ratios between rows inherit that drift.

:func:`interleaved` instead runs every pipeline on every image in each round, rotating the order
from round to round, so a slow minute costs every pipeline alike. The goal ratio of issue 8 (ONNX
Runtime CPU FP32 vs the reference notebook pipeline) and the comparison with Ultralytics come from
here when the rows involved ran.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np


def interleaved(pipelines: Mapping[str, Callable[[np.ndarray], Any]], images: Sequence[np.ndarray],
                rounds: int = 5, warmup: int = 2, clock: Callable[[], float] = time.perf_counter,
                progress: bool = False) -> dict[str, dict[str, float]]:
    """End-to-end time of each pipeline on single images, interleaved.

    Args:
        pipelines: name -> callable taking one uint8 BGR image (a Detector, the reference pipeline...).
        images: the images; each round runs every pipeline on all of them.
        rounds: rounds; round ``r`` starts with pipeline ``r mod n`` (rotation).
        warmup: untimed calls per pipeline first.
        clock: seconds (injectable for tests).

    Returns ``{name: {"p50_ms", "mean_ms", "p90_ms", "n"}}``.
    """
    if not pipelines:
        raise ValueError("no pipelines to compare")
    if rounds < 1 or not images:
        raise ValueError("need at least one round and one image")
    names = list(pipelines)
    for name in names:
        for i in range(warmup):
            pipelines[name](images[i % len(images)])
    times: dict[str, list[float]] = {n: [] for n in names}
    steps = range(rounds)
    if progress:
        from ..deps import progress as bar

        steps = bar(steps, total=rounds, desc="head-to-head", unit="round")
    for r in steps:
        k = r % len(names)
        for name in names[k:] + names[:k]:
            f = pipelines[name]
            for img in images:
                t = clock()
                f(img)
                times[name].append(clock() - t)
    out = {}
    for name, ts in times.items():
        a = np.asarray(ts) * 1e3
        out[name] = {"p50_ms": float(np.median(a)), "mean_ms": float(a.mean()), "p90_ms": float(np.percentile(a, 90)),
                     "n": int(a.size)}
    return out


def ratios(result: Mapping[str, Mapping[str, float]], baseline: str, key: str = "p50_ms") -> dict[str, float]:
    """Speed-up of every pipeline over ``baseline`` (baseline time / pipeline time)."""
    base = result[baseline][key]
    return {name: base / r[key] for name, r in result.items() if r[key] > 0}


__all__ = ["interleaved", "ratios"]
