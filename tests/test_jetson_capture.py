"""Capture on a Jetson, off a Jetson: what `open_source` hands OpenCV for USB and RTSP sources when
GStreamer is used (probed camera modes, rtspsrc protocols, Thor's software MJPEG decode) and which
capture properties go with it on each OpenCV version. cv2.VideoCapture is replaced by a recorder, so
no camera and no GStreamer are needed."""

from __future__ import annotations

import cv2
import pytest

from yolo_edge.stream import gst, sources
from yolo_edge.stream.gst import CameraMode

CAMERA_720P_MJPEG = [CameraMode("MJPG", 1280, 720, 30.0), CameraMode("YUYV", 640, 480, 30.0)]
CAMERA_VGA_YUYV = [CameraMode("YUYV", 640, 480, 30.0), CameraMode("YUYV", 320, 240, 30.0)]


class RecordingCapture:
    """Stands in for cv2.VideoCapture: records (target, backend, params) and never opens."""

    calls: list = []

    def __init__(self, target, backend=None, params=None):
        RecordingCapture.calls.append((target, backend, params))

    def isOpened(self):
        return False

    def release(self):
        pass


@pytest.fixture
def jetson_gst(monkeypatch):
    """A Jetson whose OpenCV has GStreamer; the camera's modes are set per test."""
    monkeypatch.setattr(sources, "_use_gst", lambda spec, mode: True)
    monkeypatch.setattr(gst, "opencv_has_gstreamer", lambda: True)
    monkeypatch.setattr(gst, "jpeg_hw_decode_available", lambda *a: True)
    RecordingCapture.calls = []
    monkeypatch.setattr(sources.cv2, "VideoCapture", RecordingCapture)
    state = {"modes": CAMERA_720P_MJPEG}
    monkeypatch.setattr(gst, "probe_usb_modes", lambda device, *a, **k: state["modes"])
    return state


def test_usb_auto_uses_a_mode_the_camera_has(jetson_gst):
    jetson_gst["modes"] = CAMERA_VGA_YUYV
    notes = []
    src = sources.open_source("/dev/video0", gstreamer="auto", on_event=lambda kind, msg: notes.append(msg))
    assert src.backend == cv2.CAP_GSTREAMER
    assert "video/x-raw,format=YUY2,width=640,height=480,framerate=30/1" in src.target
    assert "image/jpeg" not in src.target and "1280" not in src.target
    assert notes and "YUYV 640x480@30" in notes[0]


def test_usb_auto_720p_mjpeg_goes_through_jpegparse(jetson_gst):
    src = sources.open_source("0", gstreamer="auto")
    assert src.target.startswith("v4l2src device=/dev/video0 ! image/jpeg,width=1280,height=720,framerate=30/1 ! "
                                 "jpegparse ! nvv4l2decoder mjpeg=1 ! ")


def test_usb_auto_on_thor_decodes_mjpeg_on_the_cpu(jetson_gst, monkeypatch):
    monkeypatch.setattr(gst, "jpeg_hw_decode_available", lambda *a: False)
    src = sources.open_source("/dev/video0", gstreamer="auto")
    assert "jpegdec" in src.target and "nvv4l2decoder" not in src.target
    src = sources.open_source("/dev/video0", gstreamer="on")  # forced: still no NVJPG on Thor
    assert "jpegdec" in src.target and "nvv4l2decoder" not in src.target


@pytest.mark.parametrize("modes, why", [(None, "v4l-utils"), (CAMERA_VGA_YUYV, "offers no MJPG/YUYV mode 1920x1080")])
def test_usb_auto_falls_back_to_v4l2_with_an_honest_message(jetson_gst, modes, why):
    jetson_gst["modes"] = modes
    notes = []
    kw = {"width": 1920, "height": 1080} if modes else {}
    src = sources.open_source("/dev/video0", gstreamer="auto", on_event=lambda kind, msg: notes.append(msg), **kw)
    assert src.backend != cv2.CAP_GSTREAMER and src.target == "/dev/video0"
    assert len(notes) == 1 and why in notes[0] and "V4L2 backend" in notes[0]


def test_gstreamer_usb_failure_is_not_called_busy(jetson_gst):
    src = sources.open_source("/dev/video0", gstreamer="on")
    with pytest.raises(sources.YoloEdgeError) as e:
        src.open()
    msg = str(e.value)
    assert msg.startswith("GStreamer pipeline for /dev/video0 did not start")
    assert "--list-formats-ext" in msg and "--gstreamer off" in msg


@pytest.mark.parametrize("transport, expected", [("tcp", " protocols=tcp "), ("udp", " protocols=udp "),
                                                 ("auto", None)])
def test_rtsp_transport_reaches_gstreamer(jetson_gst, transport, expected):
    src = sources.open_source("rtsp://cam/stream", gstreamer="on", rtsp_transport=transport)
    assert src.backend == cv2.CAP_GSTREAMER and src.target.startswith("rtspsrc location=rtsp://cam/stream latency=200")
    if expected:
        assert expected in src.target
    else:
        assert "protocols=" not in src.target


# --- capture properties per OpenCV version ------------------------------------------------------
@pytest.mark.parametrize("version, backend, passed", [
    ("4.5.4", "CAP_GSTREAMER", False),  # JetPack 5's OpenCV: GStreamer timeouts came in 4.7 (opencv #22919)
    ("4.6.0", "CAP_GSTREAMER", False),
    ("4.7.0", "CAP_GSTREAMER", True),
    ("4.8.0", "CAP_GSTREAMER", True),   # JetPack 7's OpenCV
    ("4.5.4", "CAP_FFMPEG", True),
    ("4.10.0", "CAP_FFMPEG", True),
])
def test_capture_timeouts_only_where_the_backend_reads_them(version, backend, passed):
    params = sources._capture_params(5, 7, getattr(cv2, backend), opencv_version=version)
    if not (hasattr(cv2, "CAP_PROP_OPEN_TIMEOUT_MSEC") and hasattr(cv2, "CAP_PROP_READ_TIMEOUT_MSEC")):
        pytest.skip("this OpenCV has no timeout properties")
    expected = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 5000, cv2.CAP_PROP_READ_TIMEOUT_MSEC, 7000]
    assert params == (expected if passed else [])


def test_rtsp_over_gstreamer_on_opencv_454_opens_without_params(jetson_gst, monkeypatch):
    monkeypatch.setattr(sources.cv2, "__version__", "4.5.4")
    src = sources.open_source("rtsp://cam/stream", gstreamer="on", open_timeout_s=0.0)
    assert src._try_open() is None
    target, backend, params = RecordingCapture.calls[-1]
    assert backend == cv2.CAP_GSTREAMER and params is None  # VideoCapture(target, backend): nothing to refuse
    monkeypatch.setattr(sources.cv2, "__version__", "4.8.0")
    src._try_open()
    if hasattr(cv2, "CAP_PROP_OPEN_TIMEOUT_MSEC"):
        assert RecordingCapture.calls[-1][2][:2] == [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 0]
