"""Loopback stream servers for the reconnect tests: an HTTP MJPEG server (Python) and an ffmpeg
MPEG-TS-over-TCP server (the ffmpeg binary of the imageio-ffmpeg package). Both can be stopped and
restarted on the same port mid-run, like a camera or encoder that reboots."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.05)
    return False


class MjpegServer:
    """``http://127.0.0.1:PORT/stream.mjpg`` serving ``frames`` in a loop at ``fps`` as
    ``multipart/x-mixed-replace`` (what IP cameras and ESP32/Raspberry Pi MJPEG streamers send)."""

    def __init__(self, frames, fps: float = 30.0, port: int | None = None):
        self.jpegs = [cv2.imencode(".jpg", f)[1].tobytes() for f in frames]
        self.fps = fps
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/stream.mjpg"
        self.sent = 0
        self._httpd = None
        self._stopping = threading.Event()

    def start(self) -> "MjpegServer":
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # quiet
                pass

            def do_GET(self):  # noqa: N802
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                i = 0
                try:
                    while not server._stopping.is_set():
                        jpg = server.jpegs[i % len(server.jpegs)]
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\n"
                                         + f"Content-Length: {len(jpg)}\r\n\r\n".encode() + jpg + b"\r\n")
                        server.sent += 1
                        i += 1
                        time.sleep(1.0 / server.fps)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._stopping.clear()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._stopping.set()
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
            time.sleep(2.0 / self.fps)  # handler loops see the flag and close their sockets


class FfmpegTcpServer:
    """ffmpeg reading ``video`` in real time, looping, serving MPEG-TS on ``tcp://127.0.0.1:PORT``
    to one client (``?listen=1``). :meth:`kill` is a hard crash (SIGKILL)."""

    def __init__(self, exe: str, video: str, port: int | None = None):
        self.exe, self.video = exe, video
        self.port = port or free_port()
        self.url = f"tcp://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "FfmpegTcpServer":
        cmd = [self.exe, "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", self.video,
               "-c:v", "mpeg4", "-q:v", "5", "-f", "mpegts", f"tcp://127.0.0.1:{self.port}?listen=1"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return self

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


def pattern_frame(i: int, size=(240, 320)) -> np.ndarray:
    """A frame whose content changes with ``i`` (a moving square on a gradient)."""
    h, w = size
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
    img[..., 1] = np.linspace(0, 255, h, dtype=np.uint8)[:, None]
    x = (i * 7) % (w - 40)
    img[60:100, x:x + 40] = (0, 0, 255)
    return img
