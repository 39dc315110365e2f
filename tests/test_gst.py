"""GStreamer pipeline strings (yolo_edge.stream.gst): element chains as NVIDIA documents them,
argument validation, csi:// URLs, and - where PyGObject + GStreamer are installed - that the
software pipelines parse with Gst.parse_launch.

Reference chains (element names in order) come from NVIDIA's Accelerated GStreamer guide
(Jetson Linux Developer Guide, docs.nvidia.com/jetson/archives/r35.6.1/DeveloperGuide/SD/Multimedia/
AcceleratedGstreamer.html): CSI capture ``nvarguscamerasrc ! video/x-raw(memory:NVMM),...,format=NV12
! nvvidconv``, hardware decode ``... ! h264parse ! nvv4l2decoder ! nvvidconv``, MJPEG decode
``nvv4l2decoder mjpeg=1``; and the OpenCV hand-off ``nvvidconv ! video/x-raw,format=BGRx !
videoconvert ! video/x-raw,format=BGR ! appsink`` from JetsonHacks' CSI-Camera samples.
"""

from __future__ import annotations

import pytest

from yolo_edge.errors import YoloEdgeError
from yolo_edge.stream.gst import (APPSINK, FLIP_METHODS, CameraMode, PipelineError, choose_usb_mode, csi_pipeline,
                                  gstreamer_in_build_info, jpeg_hw_decode_available, opencv_has_gstreamer,
                                  parse_csi_url, parse_v4l2_formats, probe_usb_modes, rtsp_pipeline, source_kind,
                                  source_to_pipeline, usb_auto_pipeline, usb_pipeline)

CAPS = "caps"  # placeholder name for a caps filter in the expected chains

# NVIDIA-documented chains, with caps filters as CAPS
TO_BGR_NV = ["nvvidconv", CAPS, "videoconvert", CAPS, "appsink"]
TO_BGR_SW = ["videoconvert", CAPS, "appsink"]
CHAIN_CSI = ["nvarguscamerasrc", CAPS, "nvvidconv", CAPS, "videoconvert", CAPS, "appsink"]
# JPEG into the v4l2 decoder goes through jpegparse (DeepStream 9.2 guide, Gst-nvvideo4linux2 notes)
CHAIN_USB_MJPEG_HW = ["v4l2src", CAPS, "jpegparse", "nvv4l2decoder", *TO_BGR_NV]
CHAIN_USB_MJPEG_SW = ["v4l2src", CAPS, "jpegdec", *TO_BGR_SW]
CHAIN_USB_RAW_HW = ["v4l2src", CAPS, *TO_BGR_NV]
CHAIN_USB_RAW_SW = ["v4l2src", CAPS, *TO_BGR_SW]
CHAIN_RTSP_H264_HW = ["rtspsrc", "rtph264depay", "h264parse", "nvv4l2decoder", *TO_BGR_NV]
CHAIN_RTSP_H265_HW = ["rtspsrc", "rtph265depay", "h265parse", "nvv4l2decoder", *TO_BGR_NV]
CHAIN_RTSP_H264_SW = ["rtspsrc", "rtph264depay", "h264parse", "avdec_h264", *TO_BGR_SW]
CHAIN_RTSP_H265_SW = ["rtspsrc", "rtph265depay", "h265parse", "avdec_h265", *TO_BGR_SW]


def _split_props(text: str) -> list[str]:
    """Split ``a=1 b="x y"`` on spaces outside double quotes."""
    out, cur, quoted = [], "", False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == " " and not quoted:
            if cur:
                out.append(cur)
            cur = ""
        else:
            cur += ch
    if cur:
        out.append(cur)
    return out


def parse(pipeline: str) -> list[tuple[str, dict]]:
    """``"a x=1 ! video/x-raw,format=BGR ! b"`` -> ``[("a", {"x": "1"}), (CAPS, {"media": "video/x-raw",
    "format": "BGR"}), ("b", {})]`` (quotes around values removed)."""
    out = []
    for part in pipeline.split(" ! "):
        part = part.strip()
        head = part.split(" ", 1)[0].split(",", 1)[0]
        if "/" in head:  # caps: media[(features)],key=value,...
            media, *fields = part.split(",")
            out.append((CAPS, {"media": media, **dict(f.split("=", 1) for f in fields)}))
        else:
            name, *props = _split_props(part)
            out.append((name, {k: v.strip('"') for k, v in (p.split("=", 1) for p in props)}))
    return out


def names(pipeline: str) -> list[str]:
    return [n for n, _ in parse(pipeline)]


def _ends_in_bgr_appsink(pipeline: str) -> None:
    elements = parse(pipeline)
    assert elements[-2] == (CAPS, {"media": "video/x-raw", "format": "BGR"})
    assert elements[-1] == ("appsink", {"drop": "true", "max-buffers": "1", "sync": "false"})
    assert pipeline.endswith(APPSINK)


# --- element chains -----------------------------------------------------------------------------
def test_csi_chain_is_nvidias():
    p = csi_pipeline(sensor_id=1, width=1280, height=720, fps=60, flip_method=2)
    assert names(p) == CHAIN_CSI
    el = parse(p)
    assert el[0] == ("nvarguscamerasrc", {"sensor-id": "1"})
    assert el[1][1] == {"media": "video/x-raw(memory:NVMM)", "width": "1280", "height": "720",
                        "framerate": "60/1", "format": "NV12"}
    assert el[2] == ("nvvidconv", {"flip-method": "2"})
    assert el[3][1] == {"media": "video/x-raw", "format": "BGRx"}
    _ends_in_bgr_appsink(p)


def test_csi_defaults_and_sensor_mode():
    el = parse(csi_pipeline())
    assert el[0] == ("nvarguscamerasrc", {"sensor-id": "0"})
    assert (el[1][1]["width"], el[1][1]["height"], el[1][1]["framerate"]) == ("1920", "1080", "30/1")
    assert el[2] == ("nvvidconv", {"flip-method": "0"})
    assert parse(csi_pipeline(sensor_mode=3))[0] == ("nvarguscamerasrc", {"sensor-id": "0", "sensor-mode": "3"})


@pytest.mark.parametrize("fps, rate", [(30, "30/1"), (60.0, "60/1"), (29.97, "30000/1001"), (59.94, "60000/1001"),
                                       (7.5, "15/2")])
def test_framerate_is_a_fraction(fps, rate):
    assert parse(csi_pipeline(fps=fps))[1][1]["framerate"] == rate
    assert parse(usb_pipeline(fps=fps))[1][1]["framerate"] == rate


@pytest.mark.parametrize("kwargs, chain, caps", [
    ({}, CHAIN_USB_MJPEG_HW, {"media": "image/jpeg", "width": "1280", "height": "720", "framerate": "30/1"}),
    ({"hw_decode": False}, CHAIN_USB_MJPEG_SW, {"media": "image/jpeg", "width": "1280", "height": "720",
                                                 "framerate": "30/1"}),
    ({"mjpeg": False}, CHAIN_USB_RAW_HW, {"media": "video/x-raw", "format": "YUY2", "width": "1280", "height": "720",
                                          "framerate": "30/1"}),
    ({"mjpeg": False, "hw_decode": False}, CHAIN_USB_RAW_SW, {"media": "video/x-raw", "format": "YUY2",
                                                              "width": "1280", "height": "720", "framerate": "30/1"}),
])
def test_usb_chains(kwargs, chain, caps):
    p = usb_pipeline("/dev/video1", **kwargs)
    assert names(p) == chain
    el = parse(p)
    assert el[0] == ("v4l2src", {"device": "/dev/video1"})
    assert el[1][1] == caps
    if "nvv4l2decoder" in chain:
        assert el[2] == ("jpegparse", {}) and el[3] == ("nvv4l2decoder", {"mjpeg": "1"})
    if "nvvidconv" in chain:
        i = chain.index("nvvidconv")
        assert el[i + 1][1] == {"media": "video/x-raw", "format": "BGRx"}
    _ends_in_bgr_appsink(p)


@pytest.mark.parametrize("codec, hw, chain", [
    ("h264", True, CHAIN_RTSP_H264_HW), ("h265", True, CHAIN_RTSP_H265_HW),
    ("h264", False, CHAIN_RTSP_H264_SW), ("h265", False, CHAIN_RTSP_H265_SW),
    ("H.264", True, CHAIN_RTSP_H264_HW), ("hevc", False, CHAIN_RTSP_H265_SW), ("avc", False, CHAIN_RTSP_H264_SW),
])
def test_rtsp_chains(codec, hw, chain):
    p = rtsp_pipeline("rtsp://192.168.1.10:554/stream1", latency=100, codec=codec, hw_decode=hw)
    assert names(p) == chain
    assert parse(p)[0] == ("rtspsrc", {"location": "rtsp://192.168.1.10:554/stream1", "latency": "100"})
    if hw:
        assert ("nvv4l2decoder", {}) in parse(p)  # plain H.264/H.265 decode: no mjpeg property
    _ends_in_bgr_appsink(p)


@pytest.mark.parametrize("transport, expected", [("tcp", "tcp"), ("udp", "udp"), ("auto", None), (None, None)])
def test_rtsp_transport_reaches_rtspsrc(transport, expected):
    """--rtsp-transport sets rtspsrc's `protocols` (GStreamer rtspsrc reference: flags
    GstRTSPLowerTrans; unset = UDP first), not only the FFmpeg path."""
    for hw in (True, False):
        el = parse(rtsp_pipeline("rtsp://cam/s", protocols=transport, hw_decode=hw))[0]
        assert el[0] == "rtspsrc" and el[1].get("protocols") == expected
    el = parse(source_to_pipeline("rtsp://cam/s", protocols=transport))[0]
    assert el[1].get("protocols") == expected
    assert "protocols" not in parse(source_to_pipeline("/dev/video0", protocols=transport))[0][1]


def test_rtsp_transport_is_validated():
    with pytest.raises(PipelineError, match="RTSP transport must be one of tcp, udp"):
        rtsp_pipeline("rtsp://cam/s", protocols="tcp;rm -rf")


@pytest.mark.parametrize("url, shown", [
    ("rtsp://cam/my stream", '"rtsp://cam/my stream"'),  # spaces: quoted
    ("rtsp://u:p@cam/live?channel=1&subtype=0", '"rtsp://u:p@cam/live?channel=1&subtype=0"'),  # '=' is launch syntax
    ("rtsps://cam/live", "rtsps://cam/live"),  # plain: bare
])
def test_locations_are_quoted_when_needed(url, shown):
    assert rtsp_pipeline(url).startswith(f"rtspsrc location={shown} latency=200 ! ")
    assert parse(rtsp_pipeline(url))[0][1]["location"] == url


def test_device_with_space_is_quoted():
    assert usb_pipeline("/dev/v4l/by-id/usb-My Cam-video-index0").startswith(
        'v4l2src device="/dev/v4l/by-id/usb-My Cam-video-index0" ! ')


def test_flip_methods_are_nvvidconvs_eight():
    assert sorted(FLIP_METHODS) == list(range(8))
    for k in FLIP_METHODS:
        assert ("nvvidconv", {"flip-method": str(k)}) in parse(csi_pipeline(flip_method=k))


# --- validation ---------------------------------------------------------------------------------
@pytest.mark.parametrize("fn, kwargs, match", [
    (csi_pipeline, {"width": 0}, "width must be a positive integer"),
    (csi_pipeline, {"height": -720}, "height must be a positive integer"),
    (csi_pipeline, {"width": 1280.5}, "width must be a positive integer"),
    (csi_pipeline, {"width": True}, "width must be a positive integer"),
    (csi_pipeline, {"fps": 0}, "fps must be a positive number"),
    (csi_pipeline, {"fps": -30}, "fps must be a positive number"),
    (csi_pipeline, {"fps": float("nan")}, "fps must be a positive number"),
    (csi_pipeline, {"fps": "30"}, "fps must be a positive number"),
    (csi_pipeline, {"flip_method": 8}, r"flip_method must be an integer 0\.\.7"),
    (csi_pipeline, {"flip_method": -1}, r"flip_method must be an integer 0\.\.7"),
    (csi_pipeline, {"sensor_id": -1}, "sensor_id must be an integer >= 0"),
    (csi_pipeline, {"sensor_mode": -2}, "sensor_mode must be an integer >= 0"),
    (usb_pipeline, {"width": 0}, "width must be a positive integer"),
    (usb_pipeline, {"fps": 0.0}, "fps must be a positive number"),
    (usb_pipeline, {"device": ""}, "device must be a non-empty string"),
    (usb_pipeline, {"device": '/dev/video"0'}, "must not contain double quotes"),
    (rtsp_pipeline, {"url": "http://cam/stream"}, "starts with rtsp:// or rtsps://"),
    (rtsp_pipeline, {"url": "rtsp://cam/stream", "codec": "vp9"}, "unknown codec 'vp9'"),
    (rtsp_pipeline, {"url": "rtsp://cam/stream", "codec": None}, "unknown codec None"),
    (rtsp_pipeline, {"url": "rtsp://cam/stream", "latency": -1}, "latency must be an integer >= 0"),
    (rtsp_pipeline, {"url": 'rtsp://cam/"x"'}, "must not contain double quotes"),
    (rtsp_pipeline, {"url": "rtsp://cam/a\nb"}, "control characters"),
])
def test_invalid_arguments(fn, kwargs, match):
    with pytest.raises(PipelineError, match=match) as e:
        fn(**kwargs)
    assert isinstance(e.value, YoloEdgeError)  # the CLI prints it as one line


# --- csi:// and sources -------------------------------------------------------------------------
@pytest.mark.parametrize("url, expected", [
    ("csi://0?width=1280&height=720&fps=60&flip=2", {"sensor_id": 0, "width": 1280, "height": 720, "fps": 60,
                                                     "flip_method": 2}),
    ("csi://1", {"sensor_id": 1}),
    ("csi://", {"sensor_id": 0}),
    ("CSI://0?framerate=29.97&mode=4", {"sensor_id": 0, "fps": 29.97, "sensor_mode": 4}),
    ("csi://0?flip_method=6", {"sensor_id": 0, "flip_method": 6}),
])
def test_parse_csi_url(url, expected):
    assert parse_csi_url(url) == expected


@pytest.mark.parametrize("url, match", [
    ("csi://cam0", "sensor id must be a number"),
    ("csi://0?width=wide", "is not a number"),
    ("csi://0?exposure=3", "unknown CSI option 'exposure'"),
    ("csi://0?flip=9", r"flip_method must be an integer 0\.\.7"),
    ("csi://0?width=0", "width must be a positive integer"),
    ("/dev/video0", "csi://SENSOR_ID"),
])
def test_parse_csi_url_errors(url, match):
    with pytest.raises(PipelineError, match=match):
        parse_csi_url(url)


@pytest.mark.parametrize("source, kind", [("csi://0", "csi"), ("/dev/video2", "usb"), ("rtsp://h/s", "rtsp"),
                                          ("RTSPS://h/s", "rtsp"), ("video.mp4", None), ("0", "usb"),
                                          ("http://h/stream.mjpg", None), ("/dev/video", None)])
def test_source_kind(source, kind):
    assert source_kind(source) == kind


def test_source_to_pipeline():
    assert source_to_pipeline("csi://1?width=1280&height=720", fps=60) == csi_pipeline(1, 1280, 720, 60)
    # URL query wins over keyword defaults; options of other kinds are ignored
    assert source_to_pipeline("csi://0?fps=15", fps=60, latency=50) == csi_pipeline(fps=15)
    assert source_to_pipeline("/dev/video0", width=640, height=480, hw_decode=False, flip_method=2) == \
        usb_pipeline("/dev/video0", 640, 480, hw_decode=False)
    assert source_to_pipeline("rtsp://cam/s", codec="h265", latency=0, width=640) == \
        rtsp_pipeline("rtsp://cam/s", latency=0, codec="h265")
    assert source_to_pipeline("rtsp://cam/s", latency=None) == rtsp_pipeline("rtsp://cam/s")  # None = default
    assert source_to_pipeline(" 2 ") == usb_pipeline("/dev/video2")  # a camera index is /dev/videoN
    for other in ("clip.mp4", "http://cam/video.mjpg", "rtmp://cam/live"):
        assert source_to_pipeline(other, width=640) is None  # OpenCV opens these itself
    with pytest.raises(PipelineError, match="unknown pipeline option"):
        source_to_pipeline("csi://0", widht=640)


# --- USB cameras: probe what they offer -----------------------------------------------------------
# `v4l2-ctl -d /dev/video0 --list-formats-ext` (v4l-utils) of a laptop's integrated UVC camera, in the
# tool's layout (format lines, "Size: Discrete", "Interval: Discrete ... (N fps)"), as posted in public
# issues; trimmed to a few sizes.
V4L2_MJPG_AND_YUYV = """ioctl: VIDIOC_ENUM_FMT
\tType: Video Capture

\t[0]: 'MJPG' (Motion-JPEG, compressed)
\t\tSize: Discrete 1280x720
\t\t\tInterval: Discrete 0.033s (30.000 fps)
\t\tSize: Discrete 640x480
\t\t\tInterval: Discrete 0.033s (30.000 fps)
\t[1]: 'YUYV' (YUYV 4:2:2)
\t\tSize: Discrete 1280x720
\t\t\tInterval: Discrete 0.100s (10.000 fps)
\t\tSize: Discrete 640x480
\t\t\tInterval: Discrete 0.033s (30.000 fps)
\t\t\tInterval: Discrete 0.067s (15.000 fps)
"""
# a camera without 1280x720@30 MJPEG: raw YUYV only, VGA
V4L2_YUYV_ONLY = """ioctl: VIDIOC_ENUM_FMT
\tType: Video Capture

\t[0]: 'YUYV' (YUYV 4:2:2)
\t\tSize: Discrete 640x480
\t\t\tInterval: Discrete 0.033s (30.000 fps)
\t\tSize: Discrete 320x240
\t\t\tInterval: Discrete 0.033s (30.000 fps)
"""


def test_parse_v4l2_formats():
    assert parse_v4l2_formats(V4L2_MJPG_AND_YUYV) == [
        CameraMode("MJPG", 1280, 720, 30.0), CameraMode("MJPG", 640, 480, 30.0),
        CameraMode("YUYV", 1280, 720, 10.0), CameraMode("YUYV", 640, 480, 30.0), CameraMode("YUYV", 640, 480, 15.0)]
    assert parse_v4l2_formats("") == [] and parse_v4l2_formats("garbage\n") == []


@pytest.mark.parametrize("text, want, expected", [
    (V4L2_MJPG_AND_YUYV, {}, CameraMode("MJPG", 1280, 720, 30.0)),
    (V4L2_MJPG_AND_YUYV, {"width": 640, "height": 480}, CameraMode("MJPG", 640, 480, 30.0)),  # MJPG before YUYV
    (V4L2_MJPG_AND_YUYV, {"width": 640, "height": 480, "fps": 15}, CameraMode("YUYV", 640, 480, 15.0)),
    (V4L2_MJPG_AND_YUYV, {"width": 1920, "height": 1080}, None),
    (V4L2_YUYV_ONLY, {}, CameraMode("YUYV", 640, 480, 30.0)),
    (V4L2_YUYV_ONLY, {"fps": 60}, None),
])
def test_choose_usb_mode(text, want, expected):
    assert choose_usb_mode(parse_v4l2_formats(text), **want) == expected


def test_auto_does_not_force_720p_mjpeg_on_every_camera():
    # a YUYV-only VGA camera gets a YUYV VGA pipeline, not 1280x720@30 MJPEG
    p, note = usb_auto_pipeline("/dev/video0", modes=parse_v4l2_formats(V4L2_YUYV_ONLY))
    assert names(p) == ["v4l2src", CAPS, *TO_BGR_NV]
    assert parse(p)[1][1] == {"media": "video/x-raw", "format": "YUY2", "width": "640", "height": "480",
                              "framerate": "30/1"}
    assert "YUYV 640x480@30" in note
    # a mode the camera lacks, or a camera whose modes cannot be listed: no pipeline, an honest note
    p, note = usb_auto_pipeline("/dev/video0", 1920, 1080, 30, modes=parse_v4l2_formats(V4L2_MJPG_AND_YUYV))
    assert p is None and "offers no MJPG/YUYV mode 1920x1080@30" in note and "MJPG 1280x720@30" in note
    assert "V4L2 backend" in note and "busy" not in note
    p, note = usb_auto_pipeline("/dev/video0", modes=None)
    assert p is None and "v4l-utils" in note


def test_auto_mjpeg_decoder_per_jetson():
    modes = parse_v4l2_formats(V4L2_MJPG_AND_YUYV)
    p, note = usb_auto_pipeline("/dev/video2", modes=modes, jpeg_hw=True)
    assert names(p) == CHAIN_USB_MJPEG_HW and "NVJPG" in note
    p, note = usb_auto_pipeline("/dev/video2", modes=modes, jpeg_hw=False)  # Thor: no JPEG hardware decode
    assert names(p) == CHAIN_USB_MJPEG_SW and "jpegdec" in note


def test_jpeg_hw_decode_available(tmp_path):
    # /proc/device-tree/compatible is NUL-separated; Thor reports nvidia,tegra264 (jetson_stats #711)
    thor = tmp_path / "thor"
    thor.write_bytes(b"nvidia,p4071-0000+p3834-0008\x00nvidia,p3834-0008\x00nvidia,tegra264\x00")
    orin = tmp_path / "orin"
    orin.write_bytes(b"nvidia,p3768-0000+p3767-0005\x00nvidia,p3767-0005\x00nvidia,tegra234\x00")
    assert jpeg_hw_decode_available(str(thor)) is False
    assert jpeg_hw_decode_available(str(orin)) is True
    assert jpeg_hw_decode_available(str(tmp_path / "absent")) is True


def test_probe_usb_modes_with_a_fake_v4l2_ctl():
    calls = []

    def runner(cmd, timeout):
        calls.append(cmd)
        return 0, V4L2_YUYV_ONLY

    assert probe_usb_modes("/dev/video3", runner=runner)[0] == CameraMode("YUYV", 640, 480, 30.0)
    assert calls == [["v4l2-ctl", "-d", "/dev/video3", "--list-formats-ext"]]

    def missing(cmd, timeout):
        raise FileNotFoundError("v4l2-ctl")

    assert probe_usb_modes("/dev/video3", runner=missing) is None
    assert probe_usb_modes("/dev/video3", runner=lambda c, t: (1, "")) is None


# --- OpenCV build -------------------------------------------------------------------------------
JETPACK_OPENCV = """
  Video I/O:
    FFMPEG:                      YES
      avcodec:                   YES (58.54.100)
    GStreamer:                   YES (1.16.3)
    v4l/v4l2:                    YES (linux/videodev2.h)
"""
PIP_WHEEL_OPENCV = """
  Video I/O:
    FFMPEG:                      YES
    GStreamer:                   NO
    v4l/v4l2:                    YES (linux/videodev2.h)
"""


def test_gstreamer_in_build_info():
    assert gstreamer_in_build_info(JETPACK_OPENCV) is True
    assert gstreamer_in_build_info(PIP_WHEEL_OPENCV) is False
    assert gstreamer_in_build_info("") is False


def test_opencv_has_gstreamer_reads_this_opencv():
    cv2 = pytest.importorskip("cv2")
    assert opencv_has_gstreamer() is gstreamer_in_build_info(cv2.getBuildInformation())


# --- real GStreamer (optional) ------------------------------------------------------------------
def test_gstreamer_parses_the_pipelines():
    """With PyGObject + GStreamer: the software pipelines build (every element and property known),
    and every caps string of the NVIDIA pipelines parses (NVIDIA's elements exist only on a Jetson)."""
    gi = pytest.importorskip("gi")
    try:
        gi.require_version("Gst", "1.0")
        from gi.repository import GLib, Gst
    except (ValueError, ImportError):
        pytest.skip("GStreamer introspection data not installed")
    Gst.init(None)
    software = [usb_pipeline(hw_decode=False), usb_pipeline("/dev/my cam", mjpeg=False, hw_decode=False),
                rtsp_pipeline("rtsp://u:p@cam/live?ch=1 x", hw_decode=False),
                rtsp_pipeline("rtsp://cam/s", codec="h265", hw_decode=False)]
    needed = {n for p in software for n in names(p) if n != CAPS}
    missing = sorted(n for n in needed if Gst.ElementFactory.find(n) is None)
    if missing:
        pytest.skip(f"GStreamer plugins missing here: {missing}")
    for p in software:
        try:
            pipe = Gst.parse_launch(p)
        except GLib.Error as e:  # pragma: no cover - a bug in the builder
            pytest.fail(f"{p}: {e.message}")
        built = {e.get_factory().get_name(): e for e in pipe.iterate_elements()}
        assert set(built) == {n for n in names(p) if n != CAPS} | {"capsfilter"}
        sink = built["appsink"]
        assert (sink.get_property("drop"), sink.get_property("max-buffers"), sink.get_property("sync")) == \
            (True, 1, False)
        if "rtspsrc" in built:  # the quoted location arrives whole
            assert built["rtspsrc"].get_property("location") == parse(p)[0][1]["location"]
    for p in (csi_pipeline(fps=29.97), usb_pipeline(), rtsp_pipeline("rtsp://cam/s")):
        for part in p.split(" ! "):
            if parse(part)[0][0] == CAPS:
                assert Gst.Caps.from_string(part) is not None, part
