"""Many cameras, one engine: several sources batched through one detector.

::

    source 0 ─ capture thread ─► slot 0 ─┐
    source 1 ─ capture thread ─► slot 1 ─┼─► batcher: up to B frames, one per source ─► letterbox → runner.infer
    …                                    │   (waits ≤ batch_timeout for the slow ones)   → NMS/unletterbox ─► render → sinks
    source N ─ capture thread ─► slot N ─┘

* Each source has its own capture thread, latest-frame policy (live sources hold one frame, a newer
  one replaces it and counts as ``dropped``; files queue every frame), reconnect back-off (the
  source's own) and corrupt-frame count.
* The batcher takes at most one frame per source per batch, so frames of one source stay in order.
  B = the number of live sources, capped by the engine's static batch or ``batch`` (a dynamic
  model's default cap is the detector's ``max_batch``). It waits at most ``batch_timeout_ms``
  for the sources that have no frame yet; a source that missed that deadline counts as *stalled*
  and is not waited for again until it delivers a frame, so a dead or reconnecting camera costs the
  others one timeout, not one per batch. Sources beyond the cap are served round-robin.
* One detector: a static-batch model gets the batch padded (:meth:`Detector.forward`), a dynamic
  one gets exactly the frames there are.
* A source that fails while running (a camera unplugged, a stream past its reconnect timeout) ends
  that source only; the others go on and the summary says why it ended. A source that never opens
  fails the run at start, unless ``skip_dead``: then it is reported ``dead``, and live sources
  (cameras, streams) keep being retried in the background and join when they come up.
* Ctrl-C / SIGTERM stop every capture, let the queued frames finish and close every sink.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Sequence

from ..detections import Detections
from ..errors import YoloEdgeError
from .pipeline import Channel, RollingStats, StreamConfig, StreamSummary, _END, draw_overlay, supervise
from .sinks import FrameResult, Sink, StreamInfo
from .sources import Backoff, CorruptFrame, Frame, Source


@dataclass
class MultiStreamConfig(StreamConfig):
    """:class:`StreamConfig` plus batching.

    Attributes:
        batch: most frames per inference (default: the engine's static batch, else the detector's
            ``max_batch``); a static engine takes no more than its batch.
        batch_timeout_ms: how long a batch waits for sources that have no frame yet.
        skip_dead: a source that does not open at start is reported and skipped instead of failing
            the run; live ones are retried in the background.
        max_frames: stop each source after this many processed frames (per source).
    """

    batch: int | None = None
    batch_timeout_ms: float = 40.0
    skip_dead: bool = False


class RateMeter:
    """Frames per second over the last ``window`` frames (bounded memory)."""

    def __init__(self, window: int = 64):
        self.times: deque[float] = deque(maxlen=window)

    def tick(self, t: float | None = None) -> None:
        self.times.append(time.perf_counter() if t is None else t)

    def fps(self) -> float:
        if len(self.times) < 2:
            return 0.0
        span = self.times[-1] - self.times[0]
        return (len(self.times) - 1) / span if span > 0 else 0.0


class SourceSlots:
    """Per-source frame buffers behind one lock, and the batch assembly.

    ``latest[i]``: source ``i`` holds one frame and a newer one replaces it (``dropped[i]``);
    otherwise its ``put`` waits while ``maxsize`` frames are queued.
    """

    def __init__(self, latest: Sequence[bool], maxsize: int = 4):
        n = len(latest)
        self.latest = list(latest)
        self.maxsize = [1 if lt else max(1, maxsize) for lt in latest]
        self.items: list[deque] = [deque() for _ in range(n)]
        self.closed = [False] * n
        self.stalled = [False] * n
        self.dropped = [0] * n
        self._aborted = False
        self._rr = 0
        self._cv = threading.Condition()

    def put(self, i: int, item) -> bool:
        """Queue a frame of source ``i``; False once that source (or everything) is closed."""
        with self._cv:
            q = self.items[i]
            while not self.latest[i] and len(q) >= self.maxsize[i] and not (self.closed[i] or self._aborted):
                self._cv.wait(0.1)
            if self.closed[i] or self._aborted:
                return False
            if len(q) >= self.maxsize[i]:
                q.popleft()
                self.dropped[i] += 1
            q.append(item)
            self.stalled[i] = False
            self._cv.notify_all()
            return True

    def close(self, i: int, discard: bool = False) -> None:
        """Source ``i`` delivers no more; its queued frames are still taken unless ``discard``."""
        with self._cv:
            self.closed[i] = True
            if discard:
                self.items[i].clear()
            self._cv.notify_all()

    def abort(self) -> None:
        with self._cv:
            self._aborted = True
            for q in self.items:
                q.clear()
            self._cv.notify_all()

    def take(self, max_n: int, timeout_s: float) -> list[tuple[int, object]] | None:
        """Up to ``max_n`` ``(source index, frame)``, at most one per source. Waits for a first
        frame, then up to ``timeout_s`` for the other sources that are open and not stalled.
        ``None`` once every source is closed and drained (or on abort)."""
        with self._cv:
            n = len(self.items)
            while not self._aborted and not any(self.items) and not all(self.closed):
                self._cv.wait(0.1)
            if self._aborted or not any(self.items):
                return None
            deadline = time.monotonic() + timeout_s
            while True:
                ready = [i for i in range(n) if self.items[i]]
                waiting = [i for i in range(n) if not self.items[i] and not self.closed[i] and not self.stalled[i]]
                if len(ready) >= max_n or not waiting or self._aborted:
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    for i in waiting:  # not waited for again until it delivers
                        self.stalled[i] = True
                    break
                self._cv.wait(left)
            if self._aborted:
                return None
            ready = [i for i in range(n) if self.items[i]]
            order = sorted(ready, key=lambda i: (i - self._rr) % n)[:max_n]  # round-robin past the cap
            self._rr = (order[-1] + 1) % n
            picked = [(i, self.items[i].popleft()) for i in sorted(order)]
            self._cv.notify_all()
            return picked


@dataclass
class MultiStreamSummary(StreamSummary):
    """:class:`StreamSummary` over all sources (``fps`` = total), plus ``sources``: one dict per
    source (``index``, ``name``, ``uri``, ``status``, ``captured``, ``processed``, ``dropped``,
    ``corrupt``, ``reconnects``, ``fps``, ``latency`` p50/p99 ms, ``error``), the batch cap, the
    timeout and ``mean_batch`` (frames per inference)."""

    sources: list = field(default_factory=list)
    batch: int = 1
    batch_timeout_ms: float = 0.0
    mean_batch: float = 0.0

    def table(self) -> str:
        lines = [super().table(), f"batch up to {self.batch} (mean {self.mean_batch:.2f} frames), "
                                  f"timeout {self.batch_timeout_ms:g} ms",
                 f"{'#':>2} {'name':<24} {'status':<8} {'FPS':>7} {'processed':>9} {'dropped':>8} {'corrupt':>7} "
                 f"{'reconn':>6} {'lat p50':>8} {'p99':>8}"]
        for s in self.sources:
            lat = s["latency"]
            lines.append(f"{s['index']:>2} {s['name'][:24]:<24} {s['status']:<8} {s['fps']:7.2f} {s['processed']:9d} "
                         f"{s['dropped']:8d} {s['corrupt']:7d} {s['reconnects']:6d} {lat['p50_ms']:8.1f} "
                         f"{lat['p99_ms']:8.1f}" + (f"  ({s['error']})" if s.get("error") else ""))
        return "\n".join(lines)


def open_all(sources: Sequence[Source], names: Sequence[str], skip_dead: bool,
             warn: Callable[[str], None]) -> list[str | None]:
    """Open every source at once (each may take its open timeout). Returns, per source, ``None``
    when it opened or the reason it did not. Without ``skip_dead`` a source that did not open
    closes the others and raises."""
    errors: list[str | None] = [None] * len(sources)

    def one(i: int) -> None:
        try:
            sources[i].open()
        except YoloEdgeError as e:
            errors[i] = str(e)

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(len(sources))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    dead = [i for i, e in enumerate(errors) if e]
    if dead and (not skip_dead or len(dead) == len(sources)):
        for i, s in enumerate(sources):
            if errors[i] is None:
                s.close()
        what = "; ".join(f"source {i} ({names[i]}): {errors[i]}" for i in dead)
        hint = "every source is dead" if skip_dead else "fix or remove it, or pass --skip-dead to run without it"
        raise YoloEdgeError(f"{what} — {hint}")
    for i in dead:
        warn(f"source {i} ({names[i]}) did not open, skipped"
             + (" (retrying in the background)" if sources[i].live else "") + f": {errors[i]}")
    return errors


def run_multi(sources: Sequence[Source], detector, sinks: Sequence[Sink] = (),
              config: MultiStreamConfig | None = None, names: Sequence[str | None] | None = None,
              on_status: Callable[[str], None] | None = None) -> MultiStreamSummary:
    """Run ``detector`` over several ``sources`` at once, batching their frames; see the module doc.

    Args:
        sources: unopened (or opened) sources; their order is ``source_index``.
        detector: a :class:`~yolo_edge.runtime.Detector` (``preprocess``, ``forward``, ``postprocess``).
        sinks: get every frame's :class:`FrameResult` (``source_index`` set) and ``end_batch()``
            after each batch; opened with a :class:`StreamInfo` whose ``sources`` has one per source.
        names: display names (``None`` entries: the source's own name).
        on_status: receives warnings and periodic status lines (default: stderr).
    """
    cfg = config or MultiStreamConfig()
    n = len(sources)
    if n == 0:
        raise YoloEdgeError("no sources")
    disp = [(names[i] if names and names[i] else None) or sources[i].name for i in range(n)]
    status = on_status or (lambda msg: print(f"yolo-edge run: {msg}", file=sys.stderr))
    latest = [s.live if cfg.latest is None else cfg.latest for s in sources]
    sinks = list(sinks)
    det_names = tuple(getattr(detector, "names", ()))
    need_image = any(s.needs_image for s in sinks)
    runner = getattr(detector, "runner", None)
    fixed = getattr(runner, "fixed_batch", None)
    if not fixed and getattr(runner, "batch_range", None) and int(runner.batch_range[1]) > 0:
        fixed = int(runner.batch_range[1])  # a TensorRT optimization profile's largest batch
    if cfg.batch is not None and cfg.batch < 1:
        raise YoloEdgeError(f"--batch must be >= 1, got {cfg.batch}")
    if fixed and cfg.batch and cfg.batch > fixed:
        raise YoloEdgeError(f"the model takes batches up to {fixed}: --batch must be <= {fixed} "
                            "(or re-export/rebuild it with a larger or dynamic batch)")
    cap = max(1, min(n, cfg.batch or fixed or getattr(detector, "max_batch", n) or n))
    if cfg.batch_timeout_ms < 0:
        raise YoloEdgeError(f"--batch-timeout-ms must be >= 0, got {cfg.batch_timeout_ms}")

    open_errors = open_all(sources, disp, cfg.skip_dead, status)
    slots = SourceSlots(latest, cfg.queue_size)
    q_results = Channel(cfg.queue_size)  # batches of FrameResult
    st = {k: RollingStats() for k in ("capture", "pre", "infer", "post", "detect", "render")}
    lat_all = RollingStats()
    lat = [RollingStats() for _ in range(n)]
    rate = [RateMeter() for _ in range(n)]
    rate_all = RateMeter(256)
    captured, processed, corrupt, written = [0] * n, [0] * n, [0] * n, [0] * n
    state = ["dead" if e else "running" for e in open_errors]
    src_err: list[str | None] = list(open_errors)
    batches = RollingStats()
    stop = threading.Event()
    errors: list[BaseException] = []
    stopped_by = ["end"]

    def request_stop(reason: str) -> None:
        if not stop.is_set():
            stopped_by[0] = reason
            stop.set()
            for s in sources:
                s.interrupt()

    def abort(reason: str = "abort") -> None:
        request_stop(reason)
        slots.abort()
        q_results.abort()

    def fail(e: BaseException, stage: str) -> None:
        errors.append(e)
        request_stop("error")
        if stage in ("detect", "render"):
            slots.abort()
        if stage == "render":
            q_results.abort()

    def capture(i: int) -> None:
        src = sources[i]
        try:
            if open_errors[i]:
                if not src.live:
                    return
                delays = iter((getattr(src, "backoff", None) or Backoff()).delays())
                while not stop.is_set():
                    try:
                        src.open()
                        state[i], src_err[i] = "running", None
                        status(f"source {i} ({disp[i]}) is up, joining the batch")
                        break
                    except YoloEdgeError:
                        stop.wait(next(delays))
            while not stop.is_set():
                t0 = time.perf_counter()
                try:
                    frame = src.read()
                except CorruptFrame:
                    corrupt[i] += 1
                    continue
                if frame is None:
                    break
                st["capture"].add((time.perf_counter() - t0) * 1e3)
                captured[i] += 1
                if not slots.put(i, frame):
                    break
            if state[i] == "running":
                state[i] = "stopped" if stop.is_set() else "ended"
        except YoloEdgeError as e:  # this source is gone (unplugged, past its reconnect timeout): the rest go on
            state[i], src_err[i] = "failed", str(e)
            status(f"source {i} ({disp[i]}) stopped: {e}")
        except BaseException as e:  # noqa: BLE001 - a bug: stop everything, re-raised by run_multi
            fail(e, "capture")
        finally:
            slots.close(i)

    def detect() -> None:
        try:
            while True:
                picked = slots.take(cap, cfg.batch_timeout_ms / 1e3)
                if picked is None:
                    break
                if cfg.max_frames is not None:
                    picked = [(i, f) for i, f in picked if processed[i] < cfg.max_frames]
                    if not picked:
                        continue
                idx = [i for i, _ in picked]
                frames: list[Frame] = [f for _, f in picked]
                t0 = time.perf_counter()
                batch, metas = detector.preprocess([f.image for f in frames])
                t1 = time.perf_counter()
                out = detector.forward(batch)
                t2 = time.perf_counter()
                dets: list[Detections] = detector.postprocess(out)[:len(frames)]
                if len(dets) != len(frames):
                    raise RuntimeError(f"detector returned {len(dets)} results for a batch of {len(frames)}")
                dets = [d.unletterbox(m) for d, m in zip(dets, metas)]
                t3 = time.perf_counter()
                ms = {"pre": (t1 - t0) * 1e3, "infer": (t2 - t1) * 1e3, "post": (t3 - t2) * 1e3}
                for k, v in ms.items():
                    st[k].add(v)
                st["detect"].add((t3 - t0) * 1e3)
                batches.add(len(frames))
                results = [FrameResult(f, d, ms, source_index=i, source_name=disp[i])
                           for i, f, d in zip(idx, frames, dets)]
                for i in idx:
                    processed[i] += 1
                    if cfg.max_frames is not None and processed[i] >= cfg.max_frames:
                        slots.close(i, discard=True)
                        sources[i].interrupt()
                if not q_results.put(results):
                    break
                if cfg.max_frames is not None and all(
                        processed[i] >= cfg.max_frames or state[i] in ("dead", "failed") for i in range(n)):
                    if stopped_by[0] == "end":
                        stopped_by[0] = "max_frames"
        except BaseException as e:  # noqa: BLE001
            fail(e, "detect")
        finally:
            q_results.close()

    bar = None
    total = sum(s.length or 0 for s in sources) if not any(s.live for s in sources) else 0
    if cfg.progress and total:
        from ..deps import progress

        bar = progress(total=min(total, cfg.max_frames * n) if cfg.max_frames else total, desc="stream",
                       unit="frame")

    def total_line() -> str:
        live = sum(st_ == "running" for st_ in state)
        return (f"total {rate_all.fps():5.1f} FPS  {live}/{n} live  batch {batches.mean if batches.n else 0:.1f}/{cap}  "
                f"infer {st['infer'].mean:.1f} ms")

    def source_line(i: int) -> str:
        return (f"[{i}] {disp[i][:32]}  {rate[i].fps():5.1f} FPS  dropped {slots.dropped[i]}  "
                f"corrupt {corrupt[i]}  reconnects {sources[i].reconnects}")

    def render() -> None:
        import cv2  # noqa: F401  (draw needs it)

        from ..draw import draw_detections

        try:
            while True:
                results = q_results.get()
                if results is _END:
                    break
                for res in results:
                    t0 = time.perf_counter()
                    i = res.source_index
                    now = time.perf_counter()
                    rate[i].tick(now)
                    rate_all.tick(now)
                    if need_image:
                        res.annotated = draw_detections(res.frame.image, res.detections, det_names)
                        if cfg.overlay:
                            draw_overlay(res.annotated, [source_line(i), total_line()])
                    for s in sinks:
                        s.write(res)
                    written[i] += 1
                    st["render"].add((time.perf_counter() - t0) * 1e3)
                    ms = (time.time() - res.frame.timestamp) * 1e3
                    lat[i].add(ms)
                    lat_all.add(ms)
                    if bar is not None:
                        bar.update(1)
                for s in sinks:
                    s.end_batch()
                if any(s.stop_requested for s in sinks):
                    request_stop("sink")
        except BaseException as e:  # noqa: BLE001
            fail(e, "render")

    info = StreamInfo(source=f"{n} sources", fps=max((s.fps for s in sources if s.fps), default=None),
                      names=det_names, live=any(s.live for s in sources),
                      sources=tuple(StreamInfo(source=disp[i], fps=sources[i].fps, names=det_names,
                                               live=sources[i].live) for i in range(n)))
    threads = [threading.Thread(target=capture, args=(i,), name=f"yolo-edge-capture-{i}", daemon=True)
               for i in range(n)]
    threads += [threading.Thread(target=f, name=f"yolo-edge-{f.__name__}", daemon=True) for f in (detect, render)]

    def close_sources():
        for s in sources:
            s.close()

    wall, close_errors = supervise(threads, sinks, info, cfg, request_stop=request_stop, abort=abort, status=status,
                                   status_line=lambda: " | ".join([total_line()] + [source_line(i) for i in range(n)]),
                                   close=close_sources, bar=bar)
    if errors:
        raise errors[0]
    if close_errors:
        raise close_errors[0]

    per_source = [{"index": i, "name": disp[i], "uri": sources[i].name, "status": state[i],
                   "live": sources[i].live, "latest_policy": latest[i], "captured": captured[i],
                   "processed": processed[i], "written": written[i], "dropped": slots.dropped[i],
                   "corrupt": corrupt[i], "reconnects": sources[i].reconnects,
                   "fps": written[i] / wall if wall > 0 else 0.0, "latency": lat[i].summary(), "error": src_err[i]}
                  for i in range(n)]
    summary = MultiStreamSummary(
        source=f"{n} sources", live=info.live, latest_policy=any(latest), captured=sum(captured),
        processed=sum(processed), dropped=sum(slots.dropped), corrupt=sum(corrupt),
        reconnects=sum(s.reconnects for s in sources), wall_s=wall,
        fps=sum(written) / wall if wall > 0 else 0.0, stages={k: v.summary() for k, v in st.items()},
        latency=lat_all.summary(), stopped_by=stopped_by[0], sources=per_source, batch=cap,
        batch_timeout_ms=cfg.batch_timeout_ms, mean_batch=batches.mean if batches.n else 0.0)
    # frames/s each thread allows: capture runs one thread per source, detect a batch at a time
    rates = {}
    if st["capture"].n and st["capture"].mean > 0:
        rates["capture"] = 1000.0 * n / st["capture"].mean
    if st["detect"].n and st["detect"].mean > 0:
        rates["detect"] = 1000.0 * summary.mean_batch / st["detect"].mean
    if st["render"].n and st["render"].mean > 0:
        rates["render"] = 1000.0 / st["render"].mean
    if rates:
        summary.bottleneck = min(rates, key=rates.get)
        summary.ideal_fps = rates[summary.bottleneck]
        summary.efficiency = summary.fps / summary.ideal_fps
    return summary


def read_sources_file(path) -> list[tuple[str, str | None]]:
    """``--sources FILE``: one source per line, ``URI`` or ``URI NAME`` (the name is the last
    whitespace-separated word; a GStreamer pipeline, which has spaces, is named after a tab).
    Blank lines and lines starting with ``#`` are skipped. Names must be unique."""
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise YoloEdgeError(f"--sources {path}: no such file (one source per line: URI [name])")
    out: list[tuple[str, str | None]] = []
    for line in p.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "\t" in line:
            uri, name = (x.strip() for x in line.rsplit("\t", 1))
        elif " ! " not in line and len(line.split()) == 2:
            uri, name = line.split()
        else:
            uri, name = line, None
        out.append((uri, name or None))
    if not out:
        raise YoloEdgeError(f"--sources {path}: no sources in it (one per line: URI [name])")
    names = [nm for _, nm in out if nm]
    dup = sorted({nm for nm in names if names.count(nm) > 1})
    if dup:
        raise YoloEdgeError(f"--sources {path}: names must be unique, repeated: {', '.join(dup)}")
    return out
