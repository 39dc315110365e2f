"""Where stream results go: JSON Lines, an annotated video file, an on-screen window, RTSP/UDP out.

Every sink has ``open(info) / write(result) / close()``. ``close`` finalizes the output (a video
file is written under a temporary name and renamed when complete; JSON Lines are flushed line by
line, so a killed process still leaves every finished frame on disk).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..detections import Detections
from ..errors import YoloEdgeError
from ..redact import redact_url
from .sources import Frame


@dataclass(frozen=True)
class StreamInfo:
    """What sinks know before the first frame: the source, its nominal fps and the class names."""

    source: str
    fps: float | None
    names: tuple[str, ...] = ()
    live: bool = False
    sources: tuple["StreamInfo", ...] = ()  # several sources batched together: one info per source


@dataclass
class FrameResult:
    """One processed frame.

    Attributes:
        frame: the captured :class:`Frame` (``image`` in source pixels).
        detections: boxes in source pixels.
        stage_ms: this frame's time per stage (``pre``, ``infer``, ``post``) in milliseconds.
        annotated: the frame with boxes and overlay drawn, when a sink needs pixels.
        source_index: which source (0 when there is one), in the order they were given.
        source_name: the source's display name (its ``--sources`` name), ``None``: ``frame.source``.
    """

    frame: Frame
    detections: Detections
    stage_ms: dict = field(default_factory=dict)
    annotated: np.ndarray | None = None
    source_index: int = 0
    source_name: str | None = None


class Sink:
    """Base class. ``needs_image``: the pipeline renders an annotated frame for this sink."""

    needs_image = False
    stop_requested = False  # a sink may ask the pipeline to stop (window closed, 'q' pressed)

    def open(self, info: StreamInfo) -> None:
        pass

    def write(self, result: FrameResult) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def end_batch(self) -> None:
        """Called after the results of one batch were written (several sources batched together)."""

    def close(self) -> None:
        pass


def frame_record(result: FrameResult, names: Sequence[str] = ()) -> dict:
    """The JSON Lines record of one frame: frame index (counted per source), capture timestamp,
    source (``source`` name and ``source_index``), image size and detections (``box`` x1, y1, x2, y2
    in original pixels, ``score``, ``class_id``, ``class_name``)."""
    f = result.frame
    return {
        "frame": f.index,
        "timestamp": round(f.timestamp, 6),
        "source": redact_url(result.source_name or f.source),
        "source_index": result.source_index,
        "width": int(f.image.shape[1]),
        "height": int(f.image.shape[0]),
        "latency_ms": {k: round(v, 3) for k, v in result.stage_ms.items()},
        "detections": result.detections.to_list(names),
    }


class JsonlSink(Sink):
    """One JSON record per processed frame (see :func:`frame_record`), flushed per line.
    ``append=True`` keeps earlier records (a service that restarts must not lose them)."""

    def __init__(self, path, fsync_every: int = 0, append: bool = False):
        self.path = Path(path)
        self.fsync_every = fsync_every
        self.append = append
        self._fh = None
        self._names: tuple[str, ...] = ()
        self.count = 0

    def open(self, info: StreamInfo) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._names = info.names
        self._fh = open(self.path, "a" if self.append else "w", encoding="utf-8", buffering=1)

    def write(self, result: FrameResult) -> None:
        self._fh.write(json.dumps(frame_record(result, self._names), separators=(",", ":")) + "\n")
        self.count += 1
        if self.fsync_every and self.count % self.fsync_every == 0:
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None


FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}


class VideoSink(Sink):
    """Annotated frames to a video file, written to ``<name>.partial<suffix>`` and renamed on close
    (a file with the final name is always complete). Frames of another size are resized to the
    first frame's size (a network source may come back at another resolution)."""

    needs_image = True

    def __init__(self, path, fps: float | None = None, fourcc: str | None = None):
        self.path = Path(path)
        if self.path.suffix.lower() not in FOURCC and not fourcc:
            raise YoloEdgeError(f"video output {self.path}: use one of {', '.join(sorted(FOURCC))}")
        self.fourcc = fourcc or FOURCC[self.path.suffix.lower()]
        self.fps = fps
        self.tmp = self.path.with_name(f"{self.path.stem}.partial{self.path.suffix}")
        self._writer = None
        self._size: tuple[int, int] | None = None
        self.count = 0

    def open(self, info: StreamInfo) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fps = self.fps or (info.fps if info.fps and 0 < info.fps <= 240 else 25.0)

    def write(self, result: FrameResult) -> None:
        import cv2

        img = result.annotated if result.annotated is not None else result.frame.image
        h, w = img.shape[:2]
        if self._writer is None:
            self._size = (w, h)
            self._writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*self.fourcc), self.fps, (w, h))
            if not self._writer.isOpened():
                self._writer = None
                raise YoloEdgeError(f"cannot write video {self.path} with codec {self.fourcc}")
        if (w, h) != self._size:
            img = cv2.resize(img, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(np.ascontiguousarray(img))
        self.count += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
            os.replace(self.tmp, self.path)


class WindowSink(Sink):
    """An OpenCV window; ``q`` or Esc stops the run."""

    needs_image = True

    def __init__(self, title: str = "yolo-edge"):
        self.title = title

    def open(self, info: StreamInfo) -> None:
        import cv2

        try:
            cv2.namedWindow(self.title, cv2.WINDOW_NORMAL)
        except cv2.error:
            raise YoloEdgeError("this OpenCV has no GUI (opencv-python-headless, or no display): "
                                "install opencv-python or JetPack's OpenCV, or write --video/--jsonl instead") from None

    def write(self, result: FrameResult) -> None:
        import cv2

        cv2.imshow(self.title, result.annotated if result.annotated is not None else result.frame.image)
        if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
            self.stop_requested = True

    def close(self) -> None:
        import cv2

        try:
            cv2.destroyWindow(self.title)
        except cv2.error:
            pass


def ffmpeg_exe() -> str | None:
    """An ffmpeg binary: on PATH, else the one shipped by the ``imageio-ffmpeg`` package."""
    exe = shutil.which("ffmpeg")
    if exe:
        return exe
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:  # noqa: BLE001 - not installed, or no binary for this platform
        return None


class FfmpegSink(Sink):
    """Annotated frames re-encoded by an ffmpeg subprocess and sent to ``rtsp://`` (to an RTSP
    server such as MediaMTX), ``udp://`` / ``tcp://`` / ``srt://`` (MPEG-TS), or a ``.ts`` file.

    H.264 (libx264, ``ultrafast``/``zerolatency``) when the ffmpeg build has it, else MPEG-4 part 2.
    """

    needs_image = True

    def __init__(self, url: str, fps: float | None = None, bitrate: str = "4M", exe: str | None = None):
        self.url = str(url)
        self.fps = fps
        self.bitrate = bitrate
        self.exe = exe or ffmpeg_exe()
        if not self.exe:
            raise YoloEdgeError("RTSP/UDP output needs ffmpeg: apt install ffmpeg, or pip install imageio-ffmpeg")
        self._proc: subprocess.Popen | None = None
        self._size: tuple[int, int] | None = None
        self.count = 0

    def _format(self) -> list[str]:
        if self.url.startswith(("rtsp://", "rtsps://")):
            return ["-f", "rtsp", "-rtsp_transport", "tcp"]
        return ["-f", "mpegts"]

    def _codec(self) -> list[str]:
        try:
            encoders = subprocess.run([self.exe, "-hide_banner", "-encoders"], capture_output=True,
                                      text=True, timeout=20).stdout
        except (OSError, subprocess.TimeoutExpired):
            encoders = ""
        if "libx264" in encoders:
            return ["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-pix_fmt", "yuv420p"]
        return ["-c:v", "mpeg4", "-q:v", "5"]

    def open(self, info: StreamInfo) -> None:
        self.fps = self.fps or (info.fps if info.fps and 0 < info.fps <= 240 else 25.0)

    def _start(self, w: int, h: int) -> None:
        cmd = [self.exe, "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24",
               "-s", f"{w}x{h}", "-r", f"{self.fps:g}", "-i", "-", *self._codec(), "-b:v", self.bitrate,
               *self._format(), self.url]
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        self._size = (w, h)

    def write(self, result: FrameResult) -> None:
        import cv2

        img = result.annotated if result.annotated is not None else result.frame.image
        h, w = img.shape[:2]
        if self._proc is None:
            self._start(w, h)
        if (w, h) != self._size:
            img = cv2.resize(img, self._size, interpolation=cv2.INTER_AREA)
        try:
            self._proc.stdin.write(np.ascontiguousarray(img).tobytes())
        except (BrokenPipeError, OSError):
            err = self._proc.stderr.read().decode(errors="replace").strip() if self._proc.stderr else ""
            raise YoloEdgeError(redact_url(f"ffmpeg output to {self.url} stopped: {err or 'broken pipe'}")) from None
        self.count += 1

    def close(self) -> None:
        if self._proc is None:
            return
        try:
            self._proc.stdin.close()
            self._proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            self._proc.kill()
            self._proc.wait()
        finally:
            self._proc = None


class PerSourceSink(Sink):
    """One sink per source (e.g. a video file each): ``make(i)`` builds source ``i``'s sink; results
    are routed by :attr:`FrameResult.source_index`."""

    def __init__(self, make, n_sources: int):
        self.sinks: list[Sink] = [make(i) for i in range(n_sources)]
        self.needs_image = any(s.needs_image for s in self.sinks)
        self._opened: list[Sink] = []

    def open(self, info: StreamInfo) -> None:
        subs = info.sources or (info,) * len(self.sinks)
        for s, sub in zip(self.sinks, subs):
            s.open(sub)
            self._opened.append(s)

    def write(self, result: FrameResult) -> None:
        self.sinks[result.source_index].write(result)

    @property
    def stop_requested(self) -> bool:  # type: ignore[override]
        return any(s.stop_requested for s in self.sinks)

    def close(self) -> None:
        errors = []
        for s in self._opened:
            try:
                s.close()
            except Exception as e:  # noqa: BLE001 - close every file, report the first failure
                errors.append(e)
        self._opened = []
        if errors:
            raise errors[0]


def tile_grid(n: int) -> tuple[int, int]:
    """(rows, cols) of a near-square mosaic of ``n`` cells, wider than tall."""
    cols = max(1, int(np.ceil(np.sqrt(n))))
    return int(np.ceil(n / cols)), cols


def fit_into(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` scaled to fit ``size`` (W, H) keeping its aspect ratio, centred on black."""
    import cv2

    w, h = size
    ih, iw = image.shape[:2]
    r = min(w / iw, h / ih)
    nw, nh = max(1, round(iw * r)), max(1, round(ih * r))
    cell = np.zeros((h, w, 3), np.uint8)
    x, y = (w - nw) // 2, (h - nh) // 2
    cell[y:y + nh, x:x + nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
    return cell


class MosaicSink(Sink):
    """Every source's latest annotated frame tiled into one mosaic (row-major, in source order),
    one mosaic per batch, handed to ``inner`` (a video file, a window, an ffmpeg stream). A source
    that has not delivered yet is a black cell."""

    needs_image = True

    def __init__(self, inner: Sink, n_sources: int, cell: tuple[int, int] = (640, 360)):
        self.inner, self.n, self.cell = inner, n_sources, (int(cell[0]), int(cell[1]))
        self.rows, self.cols = tile_grid(n_sources)
        w, h = self.cell
        self._canvas = np.zeros((self.rows * h, self.cols * w, 3), np.uint8)
        self._dirty = False
        self.count = 0

    def open(self, info: StreamInfo) -> None:
        fps = max((s.fps for s in info.sources if s.fps and 0 < s.fps <= 240), default=info.fps)
        self.inner.open(StreamInfo(source="mosaic", fps=fps, names=info.names, live=info.live))

    def write(self, result: FrameResult) -> None:
        i = result.source_index
        w, h = self.cell
        r, c = divmod(i, self.cols)
        img = result.annotated if result.annotated is not None else result.frame.image
        self._canvas[r * h:(r + 1) * h, c * w:(c + 1) * w] = fit_into(img, self.cell)
        self._dirty = True

    def end_batch(self) -> None:
        if not self._dirty:
            return
        import time

        frame = Frame(self._canvas, self.count, time.time(), "mosaic")
        self.inner.write(FrameResult(frame, Detections.empty(), annotated=self._canvas))
        self.count += 1
        self._dirty = False

    @property
    def stop_requested(self) -> bool:  # type: ignore[override]
        return self.inner.stop_requested

    def close(self) -> None:
        self.inner.close()


def source_label(name: str | None, index: int) -> str:
    """What ``{source}`` becomes in an output pattern: the source's name (file-name safe), else its index."""
    import re

    if not name:
        return str(index)
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or str(index)


def make_multi_sinks(n_sources: int, labels: Sequence[str], jsonl=None, video=None, tile: bool = False,
                     tile_size: tuple[int, int] = (640, 360), show: bool = False, stream_out=None,
                     append: bool = False) -> list[Sink]:
    """The sinks for several sources: one JSON Lines file (records carry ``source``); ``video`` as a
    pattern with ``{source}`` (one file per source, ``labels[i]`` filled in) or, with ``tile``, one
    mosaic video; ``--rtsp-out`` and the window show the mosaic."""
    sinks: list[Sink] = []
    if jsonl:
        sinks.append(JsonlSink(jsonl, append=append))
    if video:
        if tile:
            sinks.append(MosaicSink(VideoSink(video), n_sources, tile_size))
        elif "{source}" in str(video):
            paths = [str(video).replace("{source}", labels[i]) for i in range(n_sources)]
            if len(set(paths)) != len(paths):
                raise YoloEdgeError(f"--video {video}: two sources give the same file name; name them in --sources")
            sinks.append(PerSourceSink(lambda i: VideoSink(paths[i]), n_sources))
        else:
            raise YoloEdgeError(f"--video {video} with {n_sources} sources: put {{source}} in the name "
                                "(out_{source}.mp4: one file per source) or add --tile (one mosaic video)")
    if stream_out:
        sinks.append(MosaicSink(FfmpegSink(stream_out), n_sources, tile_size))
    if show:
        sinks.append(MosaicSink(WindowSink(), n_sources, tile_size))
    return sinks


def make_sinks(jsonl=None, video=None, show: bool = False, stream_out=None, fps: float | None = None,
               append: bool = False) -> list[Sink]:
    """The sinks the CLI flags ask for."""
    sinks: list[Sink] = []
    if jsonl:
        sinks.append(JsonlSink(jsonl, append=append))
    if video:
        sinks.append(VideoSink(video, fps=fps))
    if stream_out:
        sinks.append(FfmpegSink(stream_out, fps=fps))
    if show:
        sinks.append(WindowSink())
    return sinks
