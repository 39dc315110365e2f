"""The pipelined stream runner: capture ∥ detect ∥ render, three threads joined by bounded queues.

::

    Source.read ──► [channel 1] ──► letterbox → runner.infer → NMS/unletterbox ──► [channel 2] ──► draw → sinks
      capture                               detect (pre + infer + post)                        render

* Live sources (cameras, network streams) use the **latest-frame policy**: channel 1 holds one
  frame and a newer frame replaces an unprocessed one, so latency never builds up; the replaced
  frames are counted as ``dropped``. Files and folders process every frame (channel 1 blocks).
* Results are never dropped: channel 2 blocks, so every detected frame reaches every sink.
* Ctrl-C / SIGTERM stop capture, let queued frames finish and close the sinks (files finalized);
  a second Ctrl-C abandons the queued frames. An error in any stage stops all three and is
  re-raised after the sinks are closed.
* Statistics keep a bounded window of recent samples, so memory stays flat on long runs.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import numpy as np

from ..detections import Detections
from ..redact import redact_url
from .sinks import FrameResult, Sink, StreamInfo
from .sources import CorruptFrame, FrameList, Source

_END = object()


class RollingStats:
    """Count and mean over all samples; percentiles over the last ``window`` samples (bounded memory)."""

    def __init__(self, window: int = 2048):
        self.recent: deque[float] = deque(maxlen=window)
        self.n = 0
        self.total = 0.0

    def add(self, value: float) -> None:
        self.recent.append(value)
        self.n += 1
        self.total += value

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else float("nan")

    def percentile(self, q: float) -> float:
        return float(np.percentile(np.fromiter(self.recent, float), q)) if self.recent else float("nan")

    def summary(self) -> dict:
        return {"n": self.n, "mean_ms": self.mean, "p50_ms": self.percentile(50), "p90_ms": self.percentile(90),
                "p99_ms": self.percentile(99)}


class Channel:
    """A bounded FIFO between two stages.

    ``latest=True``: ``put`` never blocks; when full, the oldest item is replaced (and counted in
    ``dropped``). Otherwise ``put`` waits for room. ``close()`` lets the consumer drain what is
    queued and then get ``_END``; ``abort()`` wakes everybody and discards the queue.
    """

    def __init__(self, maxsize: int = 4, latest: bool = False):
        self.maxsize = max(1, maxsize)
        self.latest = latest
        self._items: deque = deque()
        self._cv = threading.Condition()
        self._closed = False
        self._aborted = False
        self.dropped = 0
        self.high_water = 0

    def put(self, item) -> bool:
        """Queue ``item``; False if the channel was closed or aborted (the item is discarded)."""
        with self._cv:
            while not self.latest and len(self._items) >= self.maxsize and not (self._closed or self._aborted):
                self._cv.wait(0.1)
            if self._closed or self._aborted:
                return False
            if self.latest and len(self._items) >= self.maxsize:
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            self.high_water = max(self.high_water, len(self._items))
            self._cv.notify_all()
            return True

    def get(self):
        """The next item, or ``_END`` once closed and drained (or aborted)."""
        with self._cv:
            while not self._items and not (self._closed or self._aborted):
                self._cv.wait(0.1)
            if self._aborted or not self._items:
                return _END
            item = self._items.popleft()
            self._cv.notify_all()
            return item

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()

    def abort(self) -> None:
        with self._cv:
            self._aborted = True
            self._items.clear()
            self._cv.notify_all()

    def __len__(self) -> int:
        return len(self._items)


@dataclass
class StreamConfig:
    """How to run a stream.

    Attributes:
        latest: latest-frame policy; ``None`` = on for live sources, off for files and folders.
        queue_size: capacity of the capture → detect channel when every frame is processed (the
            latest-frame policy always holds one), and of the detect → render channel.
        max_frames: stop after this many processed frames.
        duration_s: stop after this many seconds.
        overlay: draw FPS and per-stage latency on annotated frames.
        handle_signals: SIGINT/SIGTERM stop cleanly (only from the main thread).
        progress: a progress bar for finite sources, a status line every ``status_every_s`` for live ones.
    """

    latest: bool | None = None
    queue_size: int = 4
    max_frames: int | None = None
    duration_s: float | None = None
    overlay: bool = True
    handle_signals: bool = True
    progress: bool = True
    status_every_s: float = 10.0


@dataclass
class StreamSummary:
    """End-of-run numbers. ``stages``: per-stage ms (``capture``, ``pre``, ``infer``, ``post``,
    ``detect`` = pre + infer + post, ``render``); ``latency``: capture → written, ms.
    ``ideal_fps`` = 1000 / slowest thread stage mean (capture, detect, render); ``efficiency`` =
    ``fps / ideal_fps``."""

    source: str
    live: bool
    latest_policy: bool
    captured: int = 0
    processed: int = 0
    dropped: int = 0
    corrupt: int = 0
    reconnects: int = 0
    wall_s: float = 0.0
    fps: float = 0.0
    stages: dict = field(default_factory=dict)
    latency: dict = field(default_factory=dict)
    bottleneck: str = ""
    ideal_fps: float = 0.0
    efficiency: float = 0.0
    stopped_by: str = "end"
    power: dict | None = None  # Jetson: tegrastats summary over the run + "fps_per_watt"

    def __post_init__(self):
        self.source = redact_url(self.source)

    def to_dict(self) -> dict:
        return asdict(self)

    def table(self) -> str:
        lines = [f"source {self.source} ({'live' if self.live else 'file'}, "
                 f"{'latest-frame' if self.latest_policy else 'every frame'}), stopped by {self.stopped_by}",
                 f"frames: {self.captured} captured, {self.processed} processed, {self.dropped} dropped, "
                 f"{self.corrupt} corrupt, {self.reconnects} reconnects in {self.wall_s:.1f} s",
                 f"{'stage':<8} {'mean ms':>8} {'p50':>8} {'p90':>8} {'p99':>8}"]
        for name, s in list(self.stages.items()) + [("latency", self.latency)]:
            if s and s.get("n"):
                lines.append(f"{name:<8} {s['mean_ms']:8.2f} {s['p50_ms']:8.2f} {s['p90_ms']:8.2f} {s['p99_ms']:8.2f}")
        lines.append(f"throughput {self.fps:.2f} FPS; slowest stage {self.bottleneck} -> ideal {self.ideal_fps:.2f} FPS "
                     f"({100 * self.efficiency:.0f} % of it)")
        if self.power:
            w, fpw = self.power.get("mean_power_w"), self.power.get("fps_per_watt")
            lines.append(f"power {'n/a' if w is None else f'{w:.2f} W'} ({self.power.get('power_source') or 'no rails'}, "
                         f"{self.power.get('n_samples', 0)} tegrastats samples) -> "
                         f"{'n/a' if fpw is None else f'{fpw:.2f} FPS/W'}")
        return "\n".join(lines)


def draw_overlay(image: np.ndarray, lines: Sequence[str]) -> np.ndarray:
    """Draw text lines on a dark band at the top-left of ``image`` (in place; returns it)."""
    import cv2

    h, w = image.shape[:2]
    scale = max(0.4, 0.0006 * (h + w))
    thick = max(1, round(scale * 1.5))
    y = 0
    for text in map(redact_url, lines):
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        cv2.rectangle(image, (0, y), (tw + 8, y + th + base + 6), (0, 0, 0), -1)
        cv2.putText(image, text, (4, y + th + 3), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA)
        y += th + base + 6
    return image


class _Signals:
    """First SIGINT/SIGTERM: graceful stop; second: abort. Restores the old handlers on exit."""

    def __init__(self, stop: Callable[[], None], abort: Callable[[], None], enabled: bool):
        self.stop, self.abort = stop, abort
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.count = 0
        self._old: dict = {}

    def _handler(self, signum, _frame):
        self.count += 1
        if self.count == 1:
            print(f"\nyolo-edge: {signal.Signals(signum).name}: stopping (finishing queued frames; again to abort)",
                  file=sys.stderr)
            self.stop()
        else:
            self.abort()

    def __enter__(self):
        if self.enabled:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def supervise(threads: Sequence[threading.Thread], sinks: Sequence[Sink], info: StreamInfo, cfg: StreamConfig, *,
              request_stop: Callable[[str], None], abort: Callable[[str], None], status: Callable[[str], None],
              status_line: Callable[[], str], close: Callable[[], None], bar=None) -> tuple[float, list]:
    """Run a pipeline's threads: open every sink, start the threads under the signal handlers, stop
    after ``cfg.duration_s``, print ``status_line()`` every ``cfg.status_every_s`` for a live source, and
    join them; then, whatever happened, close the progress bar, every opened sink and (``close``) the
    sources. Returns ``(wall seconds, sink close errors)``; the caller raises its thread errors first."""
    opened: list[Sink] = []
    close_errors: list[BaseException] = []
    try:
        for s in sinks:
            s.open(info)
            opened.append(s)
        t_start = time.perf_counter()
        with _Signals(lambda: request_stop("signal"), lambda: abort("signal"), cfg.handle_signals):
            for t in threads:
                t.start()
            next_status = time.monotonic() + cfg.status_every_s
            while any(t.is_alive() for t in threads):
                threads[-1].join(0.1)
                if cfg.duration_s is not None and time.perf_counter() - t_start >= cfg.duration_s:
                    request_stop("duration")
                if info.live and cfg.progress and time.monotonic() >= next_status:
                    next_status += cfg.status_every_s
                    status(status_line())
            for t in threads:
                t.join()
        wall = time.perf_counter() - t_start
    finally:
        if bar is not None:
            bar.close()
        for s in opened:
            try:
                s.close()
            except Exception as e:  # noqa: BLE001 - close every sink, report the first failure
                close_errors.append(e)
        close()
    return wall, close_errors


def run_stream(source: Source, detector, sinks: Sequence[Sink] = (), config: StreamConfig | None = None,
               on_status: Callable[[str], None] | None = None) -> StreamSummary:
    """Run ``detector`` over ``source`` into ``sinks``; returns the :class:`StreamSummary`.

    Args:
        source: an unopened or opened :class:`~yolo_edge.stream.sources.Source`.
        detector: a :class:`~yolo_edge.runtime.Detector` (or anything with ``preprocess``,
            ``forward``, ``postprocess`` and ``names``).
        sinks: where results go; each is opened before the first frame and closed at the end.
        on_status: receives a status line now and then for live sources (default: stderr).
    """
    cfg = config or StreamConfig()
    latest = source.live if cfg.latest is None else cfg.latest
    sinks = list(sinks)
    names = tuple(getattr(detector, "names", ()))
    need_image = any(s.needs_image for s in sinks)
    status = on_status or (lambda msg: print(msg, file=sys.stderr))

    q_frames = Channel(1 if latest else cfg.queue_size, latest=latest)
    q_results = Channel(cfg.queue_size)
    st = {k: RollingStats() for k in ("capture", "pre", "infer", "post", "detect", "render")}
    lat = RollingStats()
    counters = {"captured": 0, "processed": 0, "corrupt": 0, "written": 0}
    stop = threading.Event()
    errors: list[BaseException] = []
    stopped_by = ["end"]

    def request_stop(reason: str) -> None:
        if not stop.is_set():
            stopped_by[0] = reason
            stop.set()
            source.interrupt()

    def abort(reason: str = "abort") -> None:
        request_stop(reason)
        q_frames.abort()
        q_results.abort()

    def fail(e: BaseException, stage: str) -> None:
        """Stop everything upstream of the failed stage; what is downstream still drains, so
        frames already detected reach the sinks."""
        errors.append(e)
        request_stop("error")
        if stage in ("detect", "render"):
            q_frames.abort()
        if stage == "render":
            q_results.abort()

    def capture() -> None:
        try:
            while not stop.is_set():
                t0 = time.perf_counter()
                try:
                    frame = source.read()
                except CorruptFrame:
                    counters["corrupt"] += 1
                    continue
                if frame is None:
                    break
                st["capture"].add((time.perf_counter() - t0) * 1e3)
                counters["captured"] += 1
                if not q_frames.put(frame):
                    break
        except BaseException as e:  # noqa: BLE001 - re-raised by run_stream
            fail(e, "capture")
        finally:
            q_frames.close()

    def detect() -> None:
        try:
            while True:
                frame = q_frames.get()
                if frame is _END:
                    break
                if cfg.max_frames is not None and counters["processed"] >= cfg.max_frames:
                    request_stop("max_frames")
                    continue  # drain
                t0 = time.perf_counter()
                batch, metas = detector.preprocess([frame.image])
                t1 = time.perf_counter()
                out = detector.forward(batch)
                t2 = time.perf_counter()
                dets: Detections = detector.postprocess(out)[0].unletterbox(metas[0])
                t3 = time.perf_counter()
                ms = {"pre": (t1 - t0) * 1e3, "infer": (t2 - t1) * 1e3, "post": (t3 - t2) * 1e3}
                for k, v in ms.items():
                    st[k].add(v)
                st["detect"].add((t3 - t0) * 1e3)
                counters["processed"] += 1
                if not q_results.put(FrameResult(frame, dets, ms)):
                    break
                if cfg.max_frames is not None and counters["processed"] >= cfg.max_frames:
                    request_stop("max_frames")
        except BaseException as e:  # noqa: BLE001
            fail(e, "detect")
        finally:
            q_results.close()

    bar = None
    if cfg.progress and not source.live and source.length:
        from ..deps import progress

        total = min(source.length, cfg.max_frames) if cfg.max_frames else source.length
        bar = progress(total=total, desc="stream", unit="frame")

    t_start = time.perf_counter()

    def overlay_lines() -> list[str]:
        el = time.perf_counter() - t_start
        fps = counters["written"] / el if el > 0 else 0.0
        return [f"{fps:5.1f} FPS  pre {st['pre'].mean:.1f}  infer {st['infer'].mean:.1f}  post {st['post'].mean:.1f} ms",
                f"dropped {q_frames.dropped}  corrupt {counters['corrupt']}  reconnects {source.reconnects}"]

    def render() -> None:
        import cv2  # noqa: F401  (draw needs it; imported here once)

        from ..draw import draw_detections

        try:
            while True:
                res = q_results.get()
                if res is _END:
                    break
                t0 = time.perf_counter()
                if need_image:
                    res.annotated = draw_detections(res.frame.image, res.detections, names)
                    if cfg.overlay:
                        draw_overlay(res.annotated, overlay_lines())
                for s in sinks:
                    s.write(res)
                counters["written"] += 1
                st["render"].add((time.perf_counter() - t0) * 1e3)
                lat.add((time.time() - res.frame.timestamp) * 1e3)
                if bar is not None:
                    bar.update(1)
                if any(s.stop_requested for s in sinks):
                    request_stop("sink")
        except BaseException as e:  # noqa: BLE001
            fail(e, "render")

    source.open()
    info = StreamInfo(source=source.name, fps=source.fps, names=names, live=source.live)
    threads = [threading.Thread(target=f, name=f"yolo-edge-{f.__name__}", daemon=True)
               for f in (capture, detect, render)]
    wall, close_errors = supervise(threads, sinks, info, cfg, request_stop=request_stop, abort=abort,
                                   status=status, status_line=lambda: " | ".join(overlay_lines()),
                                   close=source.close, bar=bar)
    if errors:
        raise errors[0]
    if close_errors:
        raise close_errors[0]

    summary = StreamSummary(source=source.name, live=source.live, latest_policy=latest,
                            captured=counters["captured"], processed=counters["processed"],
                            dropped=q_frames.dropped, corrupt=counters["corrupt"], reconnects=source.reconnects,
                            wall_s=wall, fps=counters["written"] / wall if wall > 0 else 0.0,
                            stages={k: v.summary() for k, v in st.items()}, latency=lat.summary(),
                            stopped_by=stopped_by[0])
    thread_stages = {k: st[k].mean for k in ("capture", "detect", "render") if st[k].n}
    if thread_stages:
        summary.bottleneck = max(thread_stages, key=thread_stages.get)
        slowest = thread_stages[summary.bottleneck]
        summary.ideal_fps = 1000.0 / slowest if slowest > 0 else 0.0
        summary.efficiency = summary.fps / summary.ideal_fps if summary.ideal_fps else 0.0
    return summary


def pipelined_fps(detector, frames: Sequence[np.ndarray], **config) -> dict:
    """Pipelined throughput of ``detector`` over in-memory ``frames`` (every frame, no sinks).
    Returns :meth:`StreamSummary.to_dict` (``fps``, ``stages``, ``ideal_fps``, ``efficiency``...)."""
    cfg = StreamConfig(handle_signals=False, progress=False, overlay=False, **config)
    return run_stream(FrameList(list(frames)), detector, (), cfg).to_dict()
