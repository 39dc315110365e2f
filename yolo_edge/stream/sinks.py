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


@dataclass
class FrameResult:
    """One processed frame.

    Attributes:
        frame: the captured :class:`Frame` (``image`` in source pixels).
        detections: boxes in source pixels.
        stage_ms: this frame's time per stage (``pre``, ``infer``, ``post``) in milliseconds.
        annotated: the frame with boxes and overlay drawn, when a sink needs pixels.
    """

    frame: Frame
    detections: Detections
    stage_ms: dict = field(default_factory=dict)
    annotated: np.ndarray | None = None


class Sink:
    """Base class. ``needs_image``: the pipeline renders an annotated frame for this sink."""

    needs_image = False
    stop_requested = False  # a sink may ask the pipeline to stop (window closed, 'q' pressed)

    def open(self, info: StreamInfo) -> None:
        pass

    def write(self, result: FrameResult) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        pass


def frame_record(result: FrameResult, names: Sequence[str] = ()) -> dict:
    """The JSON Lines record of one frame: frame index, capture timestamp, image size and
    detections (``box`` x1, y1, x2, y2 in original pixels, ``score``, ``class_id``, ``class_name``)."""
    f = result.frame
    return {
        "frame": f.index,
        "timestamp": round(f.timestamp, 6),
        "source": redact_url(f.source),
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
