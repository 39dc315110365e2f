"""Frame sources: video files, image folders, USB cameras, RTSP / HTTP MJPEG / TCP / UDP streams and
Jetson CSI cameras, behind one small interface.

``open_source("rtsp://cam/stream")`` returns a :class:`Source`; ``source.read()`` returns the next
:class:`Frame` (uint8 BGR), ``None`` at the end of a finite source, and raises :class:`CorruptFrame`
for a frame that could not be decoded (the caller counts it and reads on).

Live sources (cameras, network streams) have ``live = True``: the pipeline applies its latest-frame
policy to them. Network sources that drop reconnect with exponential back-off; a source that never
opens fails fast with a :class:`~yolo_edge.errors.YoloEdgeError` naming the device or URL.
"""

from __future__ import annotations

import glob
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import cv2
import numpy as np

from ..data.base import IMAGE_SUFFIXES, list_images
from ..errors import ImageError, YoloEdgeError
from ..letterbox import read_image, to_bgr_uint8
from ..redact import redact_url

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".m4v", ".ts", ".mts", ".webm", ".mpg", ".mpeg", ".wmv", ".flv")
NETWORK_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "tcp://", "udp://", "srt://")


@dataclass(frozen=True)
class Frame:
    """One captured frame.

    Attributes:
        image: ``uint8 (H, W, 3)`` BGR.
        index: frame number in the source: every frame the source delivered counts, including
            frames the pipeline later drops, so gaps in ``index`` show drops.
        timestamp: wall-clock capture time (``time.time()``, seconds).
        source: the source's name.
    """

    image: np.ndarray
    index: int
    timestamp: float
    source: str = ""


class CorruptFrame(Exception):
    """A frame that could not be decoded; the pipeline skips and counts it."""

    def __init__(self, index: int, reason: str):
        super().__init__(f"frame {index}: {reason}")
        self.index, self.reason = index, reason


def check_frame(image, index: int) -> np.ndarray:
    """Validate a decoded frame: uint8 BGR ``(H, W, 3)``; gray/BGRA/16-bit are converted."""
    if image is None or not isinstance(image, np.ndarray) or image.size == 0:
        raise CorruptFrame(index, "empty frame")
    if image.ndim not in (2, 3) or min(image.shape[:2]) < 2:
        raise CorruptFrame(index, f"not an image (shape {image.shape})")
    try:
        return to_bgr_uint8(image)
    except (ImageError, ValueError) as e:
        raise CorruptFrame(index, str(e)) from None


class Source:
    """A stream of frames. Use as a context manager, or call :meth:`open` / :meth:`close`.

    Attributes:
        name: what the user passed (device, URL or path).
        live: frames arrive in real time (camera, network): the pipeline may drop stale ones.
        fps: the source's nominal frame rate, or ``None`` when unknown.
        length: number of frames for finite sources, else ``None``.
        reconnects: how many times the source reconnected after a drop.
    """

    live: bool = False

    def __init__(self, name: str):
        self.name = redact_url(name)  # shown in errors, events, JSON Lines, summaries: never a password
        self.fps: float | None = None
        self.length: int | None = None
        self.reconnects = 0
        self._index = 0
        self._stop = threading.Event()

    def open(self) -> "Source":
        return self

    def read(self) -> Frame | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        pass

    def interrupt(self) -> None:
        """End the stream: a live source's :meth:`read` returns ``None`` from now on, and a read
        waiting in a reconnect back-off gives up."""
        self._stop.set()

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc):
        self.close()

    def __iter__(self):
        while True:
            try:
                frame = self.read()
            except CorruptFrame:
                continue
            if frame is None:
                return
            yield frame

    def _next_frame(self, image) -> Frame:
        index = self._index
        self._index += 1
        return Frame(check_frame(image, index), index, time.time(), self.name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, live={self.live})"


class FrameList(Source):
    """Frames from memory (tests, benchmarks). ``live=True`` with ``fps`` paces them like a camera."""

    def __init__(self, images: Sequence[np.ndarray], name: str = "frames", live: bool = False,
                 fps: float | None = None):
        super().__init__(name)
        self.images, self.live, self.fps = images, live, fps
        self.length = len(images)
        self._t0: float | None = None

    def read(self) -> Frame | None:
        i = self._index
        if i >= len(self.images):
            return None
        if self.live and self.fps:
            if self._t0 is None:
                self._t0 = time.perf_counter()
            delay = self._t0 + i / self.fps - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        img = self.images[i]
        if img is None:
            self._index += 1
            raise CorruptFrame(i, "empty frame")
        return self._next_frame(img)


class ImageFolderSource(Source):
    """Images of a folder in sorted order (recursively). An unreadable file is a corrupt frame."""

    def __init__(self, path, recursive: bool = True):
        super().__init__(str(path))
        root = Path(path)
        if not root.is_dir():
            raise YoloEdgeError(f"not a directory: {root}")
        self.files = list_images(str(root), recursive=recursive)
        if not self.files:
            raise YoloEdgeError(f"no images in {root} (looked for {', '.join(IMAGE_SUFFIXES)})")
        self.length = len(self.files)

    def read(self) -> Frame | None:
        i = self._index
        if i >= len(self.files):
            return None
        try:
            img = read_image(self.files[i])
        except ImageError as e:
            self._index += 1
            raise CorruptFrame(i, str(e)) from None
        return self._next_frame(img)


def _opencv_version(text: str | None = None) -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", text if text is not None else getattr(cv2, "__version__", "0.0"))
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def _capture_params(open_timeout_s: float, read_timeout_s: float, backend: int | None = None,
                    opencv_version: str | None = None) -> list[int]:
    """``[CAP_PROP_OPEN_TIMEOUT_MSEC, ms, CAP_PROP_READ_TIMEOUT_MSEC, ms]`` where the backend takes them.

    The GStreamer backend reads these properties only since OpenCV 4.7 (opencv/opencv pull request
    #22919); before that (JetPack 5 ships OpenCV 4.5.4) a property the backend does not use makes
    ``VideoCapture(..., params)`` refuse to open, so none are passed there.
    """
    if backend == cv2.CAP_GSTREAMER and _opencv_version(opencv_version) < (4, 7):
        return []
    params = []
    if hasattr(cv2, "CAP_PROP_OPEN_TIMEOUT_MSEC"):
        params += [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(open_timeout_s * 1000)]
    if hasattr(cv2, "CAP_PROP_READ_TIMEOUT_MSEC"):
        params += [cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(read_timeout_s * 1000)]
    return params


class VideoFileSource(Source):
    """A video file, every frame in order. A frame that fails to decode before the container's
    frame count is reached is counted as corrupt and skipped (up to ``max_bad_run`` in a row)."""

    def __init__(self, path, realtime: bool = False, max_bad_run: int = 25, on_event=None):
        super().__init__(str(path))
        self.truncated = False
        self.on_event = on_event or (lambda kind, msg: None)
        if not Path(path).is_file():
            raise YoloEdgeError(f"video file not found: {path}")
        self.realtime = realtime  # pace reads at the file's fps and behave like a camera
        self.live = realtime
        self.max_bad_run = max_bad_run
        self._cap: cv2.VideoCapture | None = None
        self._t0: float | None = None

    def open(self) -> "VideoFileSource":
        if self._cap is None:
            cap = cv2.VideoCapture(self.name, cv2.CAP_FFMPEG)
            if not cap.isOpened():
                cap.release()
                from ..mediafile import unopenable_video_message

                raise YoloEdgeError(unopenable_video_message(self.name))
            self._cap = cap
            self.fps = float(cap.get(cv2.CAP_PROP_FPS)) or None
            n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
            self.length = n if n > 0 else None
        return self

    def read(self) -> Frame | None:
        if self._cap is None:
            self.open()
        if self.realtime and self.fps:
            if self._t0 is None:
                self._t0 = time.perf_counter()
            delay = self._t0 + self._index / self.fps - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        ok, img = self._cap.read()
        if ok and img is not None:
            return self._next_frame(img)
        # end of file, or a frame that did not decode? Past the reported length it is the end.
        bad, delivered = 0, self._index
        while self.length is not None and self._index < self.length - 1 and bad < self.max_bad_run:
            i = self._index
            self._index += 1
            bad += 1
            if self._cap.grab():
                raise CorruptFrame(i, "frame did not decode")
        if self.length is not None and self._index < self.length - 1 and not self.truncated:
            self.truncated = True  # a file that ends early is damaged: say so instead of ending as if complete
            self.on_event("truncated", f"video {self.name} ended after {delivered} of {self.length} frames: "
                                       "the file is truncated or damaged")
        return None

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


@dataclass
class Backoff:
    """Exponential back-off between reconnect attempts: ``initial · factor^k``, capped at ``maximum``."""

    initial: float = 0.5
    factor: float = 2.0
    maximum: float = 10.0

    def delays(self) -> Iterable[float]:
        d = self.initial
        while True:
            yield d
            d = min(d * self.factor, self.maximum)


class CaptureSource(Source):
    """A live ``cv2.VideoCapture``: USB camera, network stream or GStreamer pipeline.

    Args:
        target: what ``cv2.VideoCapture`` opens (index, device path, URL or GStreamer pipeline).
        name: what the user typed (used in messages).
        backend: ``cv2.CAP_*`` API preference.
        network: reconnect with back-off when the stream drops.
        open_timeout_s: how long the first connection may take before giving up (fail fast).
        read_timeout_s: a read that blocks longer counts as a drop.
        reconnect_timeout_s: stop reconnecting after this long without a frame (``None``: never).
        backoff: delays between reconnect attempts.
        on_event: optional callback ``(kind, message)`` for "drop"/"reconnected" notices.
        ffmpeg_options: FFmpeg demuxer options for the FFMPEG backend, OpenCV's
            ``OPENCV_FFMPEG_CAPTURE_OPTIONS`` syntax (``"rtsp_transport;tcp"``); a value the user
            already exported in that variable wins.
    """

    live = True

    def __init__(self, target, name: str, backend: int = cv2.CAP_ANY, network: bool = False,
                 open_timeout_s: float = 10.0, read_timeout_s: float = 10.0,
                 reconnect_timeout_s: float | None = None, backoff: Backoff | None = None,
                 width: int | None = None, height: int | None = None, fps: float | None = None,
                 on_event: Callable[[str, str], None] | None = None, ffmpeg_options: str | None = None):
        super().__init__(name)
        self.ffmpeg_options = ffmpeg_options
        self.target, self.backend, self.network = target, backend, network
        self.open_timeout_s, self.read_timeout_s = open_timeout_s, read_timeout_s
        self.reconnect_timeout_s = reconnect_timeout_s
        self.backoff = backoff or Backoff()
        self.want = (width, height, fps)
        self.on_event = on_event or (lambda kind, msg: None)
        self._cap: cv2.VideoCapture | None = None

    def _try_open(self) -> cv2.VideoCapture | None:
        params = _capture_params(self.open_timeout_s, self.read_timeout_s, self.backend) if self.network else []
        key = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
        set_env = bool(self.ffmpeg_options) and self.backend == cv2.CAP_FFMPEG and key not in os.environ
        if set_env:  # OpenCV reads it when the capture opens
            os.environ[key] = self.ffmpeg_options
        try:
            cap = (cv2.VideoCapture(self.target, self.backend, params) if params
                   else cv2.VideoCapture(self.target, self.backend))
        finally:
            if set_env:
                os.environ.pop(key, None)
        if not cap.isOpened():
            cap.release()
            return None
        w, h, fps = self.want
        if w:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, w)
        if h:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, h)
        if fps:
            cap.set(cv2.CAP_PROP_FPS, fps)
        self.fps = float(cap.get(cv2.CAP_PROP_FPS)) or None
        return cap

    def open(self) -> "CaptureSource":
        if self._cap is not None:
            return self
        deadline = time.monotonic() + (self.open_timeout_s if self.network else 0.0)
        delays = iter(self.backoff.delays())
        while True:
            cap = self._try_open()
            if cap is not None:
                self._cap = cap
                return self
            if time.monotonic() >= deadline or self._stop.is_set():
                raise YoloEdgeError(self._never_opened())
            self._stop.wait(min(next(delays), max(0.0, deadline - time.monotonic())))

    def _never_opened(self) -> str:
        if self.backend == cv2.CAP_GSTREAMER and not self.network:
            return (f"GStreamer pipeline for {self.name} did not start: `{self.target}`. The camera may not offer "
                    f"this format (v4l2-ctl -d {self.name} --list-formats-ext), be busy, or the pipeline's elements "
                    "may be missing (gst-inspect-1.0); --gstreamer off opens it with OpenCV's V4L2 backend")
        if not self.network:
            dev = self.name
            m = re.fullmatch(r"(?:/dev/video)?(\d+)", str(dev))
            path = f"/dev/video{m.group(1)}" if m else str(dev)
            present = sorted(glob.glob("/dev/video*"))
            if str(path).startswith("/dev/") and not os.path.exists(path):
                return (f"camera {path} does not exist (video devices here: {', '.join(present) or 'none'})")
            return (f"cannot open camera {path}: busy, no permission (add yourself to the 'video' group) "
                    f"or not a capture device (video devices here: {', '.join(present) or 'none'})")
        return (f"cannot open stream {self.name} within {self.open_timeout_s:g} s: check the URL, "
                "that the server is up and reachable, and the credentials")

    def read(self) -> Frame | None:
        """The next frame; ``None`` once stopped (:meth:`interrupt`) while reconnecting."""
        while True:
            if self._stop.is_set():
                return None
            if self._cap is None:
                self.open()
            ok, img = self._cap.read()
            if ok and img is not None:
                return self._next_frame(img)
            if ok:
                i = self._index
                self._index += 1
                raise CorruptFrame(i, "empty frame")
            if not self.network:
                raise YoloEdgeError(f"camera {self.name} stopped delivering frames (unplugged?)")
            self._reconnect()
            if self._cap is None:
                return None

    def _reconnect(self) -> None:
        """Reopen with back-off until a frame source is back, the timeout passes or we are stopped."""
        self._cap.release()
        self._cap = None
        self.on_event("drop", f"stream {self.name} dropped; reconnecting")
        start = time.monotonic()
        for delay in self.backoff.delays():
            if self._stop.is_set():
                return
            if self.reconnect_timeout_s is not None and time.monotonic() - start > self.reconnect_timeout_s:
                raise YoloEdgeError(f"stream {self.name} is gone: no reconnect within "
                                    f"{self.reconnect_timeout_s:g} s")
            if self._stop.wait(delay):
                return
            cap = self._try_open()
            if cap is not None:
                self._cap = cap
                self.reconnects += 1
                self.on_event("reconnected", f"stream {self.name} back after {time.monotonic() - start:.1f} s")
                return

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


def _is_device(spec: str) -> bool:
    return bool(re.fullmatch(r"\d+|/dev/video\d+", spec))


def open_source(spec, *, realtime: bool = False, gstreamer: str = "auto", width: int | None = None,
                height: int | None = None, fps: float | None = None, open_timeout_s: float = 10.0,
                read_timeout_s: float = 10.0, reconnect_timeout_s: float | None = None,
                backoff: Backoff | None = None, on_event=None, rtsp_transport: str = "tcp") -> Source:
    """Make the :class:`Source` for what the user typed (the source is not opened yet).

    Args:
        spec: a video file; a folder of images; a camera index or ``/dev/videoN``; ``rtsp://``,
            ``http(s)://`` (MJPEG), ``tcp://``, ``udp://`` URLs; ``csi://N[?width=&height=&fps=&flip=]``
            for a Jetson CSI camera; or a raw GStreamer pipeline ending in ``appsink``.
        realtime: read a video file at its own frame rate with the live (latest-frame) policy.
        gstreamer: ``"auto"`` uses GStreamer (hardware decode on Jetson) for USB/RTSP when OpenCV was
            built with it and we are on a Jetson - for a USB camera only in a mode it offers (probed
            with ``v4l2-ctl``; else OpenCV's V4L2 backend, with a notice through ``on_event``);
            ``"on"`` forces it, ``"off"`` never.
        width, height, fps: requested capture format for cameras.
        open_timeout_s: fail if the source does not open within this time.
        read_timeout_s: a network read blocked this long counts as a drop.
        reconnect_timeout_s: give up a dropped network stream after this long (``None``: retry forever).
        rtsp_transport: ``tcp`` (default: no lost packets, so no smeared frames on busy networks),
            ``udp`` (lowest latency) or ``auto`` (the library's choice: UDP first) for ``rtsp://``, via
            FFmpeg (``rtsp_transport``) or GStreamer (``rtspsrc protocols``).
    """
    if gstreamer not in ("auto", "on", "off"):
        raise YoloEdgeError(f"gstreamer must be auto, on or off, got {gstreamer!r}")
    if rtsp_transport not in ("tcp", "udp", "auto"):
        raise YoloEdgeError(f"rtsp_transport must be tcp, udp or auto, got {rtsp_transport!r}")
    s = str(spec).strip()
    if not s:
        raise YoloEdgeError("empty source")
    common = dict(open_timeout_s=open_timeout_s, read_timeout_s=read_timeout_s,
                  reconnect_timeout_s=reconnect_timeout_s, backoff=backoff, on_event=on_event)
    opts = {k: v for k, v in (("width", width), ("height", height), ("fps", fps)) if v}

    if s.startswith("csi://") or "appsink" in s or (gstreamer != "off" and _use_gst(s, gstreamer)):
        from . import gst

        if not gst.opencv_has_gstreamer():
            raise YoloEdgeError(
                f"source {redact_url(s)!r} needs OpenCV built with GStreamer; this OpenCV has none "
                "(on Jetson use JetPack's python3-opencv, see jetson/README.md)")
        network = s.startswith(NETWORK_SCHEMES)
        pipeline = None
        if "appsink" in s:
            pipeline = s
        elif _is_device(s) and gstreamer == "auto":  # probe the camera instead of forcing 720p30 MJPEG on it
            device = s if s.startswith("/") else f"/dev/video{int(s)}"
            pipeline, note = gst.usb_auto_pipeline(device, width, height, fps, modes=gst.probe_usb_modes(device),
                                                   jpeg_hw=gst.jpeg_hw_decode_available())
            if on_event is not None:
                on_event("notice", note)
        elif s.startswith(("rtsp://", "rtsps://")):
            pipeline = gst.source_to_pipeline(s, protocols=rtsp_transport, **opts)
        else:
            usb_hw = {"hw_decode": gst.jpeg_hw_decode_available()} if _is_device(s) else {}
            pipeline = gst.source_to_pipeline(s, **opts, **usb_hw)
        if pipeline is not None:
            return CaptureSource(pipeline, s, cv2.CAP_GSTREAMER, network=network, **common)
    if s.startswith(NETWORK_SCHEMES):
        opts_ff = (f"rtsp_transport;{rtsp_transport}" if s.startswith(("rtsp://", "rtsps://"))
                   and rtsp_transport != "auto" else None)
        return CaptureSource(s, s, cv2.CAP_FFMPEG, network=True, ffmpeg_options=opts_ff, **common)
    if _is_device(s):
        target = int(s) if s.isdigit() else s
        backend = cv2.CAP_V4L2 if os.name == "posix" and hasattr(cv2, "CAP_V4L2") else cv2.CAP_ANY
        return CaptureSource(target, s, backend, network=False, **opts, **common)
    p = Path(s)
    if p.is_dir():
        return ImageFolderSource(p)
    if p.is_file():
        if p.suffix.lower() in IMAGE_SUFFIXES:
            return FrameList([read_image(p)], name=s)
        return VideoFileSource(p, realtime=realtime, on_event=on_event)
    if "://" in s:
        raise YoloEdgeError(f"unsupported source scheme in {redact_url(s)!r} (use rtsp://, http(s)://, tcp://, udp://, csi://)")
    raise YoloEdgeError(f"source not found: {redact_url(s)} (a video file, an image folder, a camera index or /dev/videoN, "
                        "or an rtsp:// / http:// / csi:// URL)")


def _use_gst(spec: str, mode: str) -> bool:
    """GStreamer for USB/RTSP: forced by ``on``; with ``auto`` only on a Jetson whose OpenCV has it."""
    if not (_is_device(spec) or spec.startswith(("rtsp://", "rtsps://"))):
        return False
    if mode == "on":
        return True
    if not Path("/etc/nv_tegra_release").exists():
        return False
    from . import gst

    return gst.opencv_has_gstreamer()
