"""GStreamer pipeline strings for ``cv2.VideoCapture(pipeline, cv2.CAP_GSTREAMER)`` on Jetson.

Pure string builders (no numpy, no GStreamer import): each function returns one ``gst-launch``
style description whose last element is an ``appsink`` that hands OpenCV 8-bit BGR frames::

    cap = cv2.VideoCapture(csi_pipeline(sensor_id=0, width=1280, height=720, fps=60), cv2.CAP_GSTREAMER)

Element chains follow NVIDIA's *Accelerated GStreamer* guide in the Jetson Linux Developer Guide
(https://docs.nvidia.com/jetson/archives/r35.6.1/DeveloperGuide/SD/Multimedia/AcceleratedGstreamer.html):

* CSI camera capture: ``nvarguscamerasrc ! video/x-raw(memory:NVMM),width=..,height=..,
  format=NV12,framerate=N/1 ! ...`` (section "Camera Capture with GStreamer-1.0");
* hardware decode: ``... ! h264parse ! nvv4l2decoder ! ...`` (section "Video Decode Examples";
  ``nvv4l2decoder`` is the gst-v4l2 decoder on NVDEC). Its sink also takes ``image/jpeg``, and the
  boolean property ``mjpeg=1`` (``gst-inspect-1.0 nvv4l2decoder`` on a Jetson) selects the MJPEG
  path used here for USB webcams. JPEG into the v4l2 decoder must go through ``jpegparse`` first,
  and Jetson Thor has no JPEG/MJPEG hardware decode (DeepStream 9.2 developer guide,
  "Gst-nvvideo4linux2", decoder notes), so there MJPEG is decoded by ``jpegdec`` on the CPU;
* ``rtspsrc protocols=tcp|udp`` picks the RTSP lower transport (GStreamer ``rtspsrc`` reference,
  property ``protocols``, flags ``GstRTSPLowerTrans``; default: try UDP first, then TCP);
* ``nvvidconv`` copies NVMM (device) buffers to system memory and converts colour; its
  ``flip-method`` property (0..7, section "Video Rotation with GStreamer-1.0") rotates or mirrors.

``nvvidconv`` cannot write 3-byte BGR, so the chain ends ``nvvidconv ! video/x-raw,format=BGRx !
videoconvert ! video/x-raw,format=BGR ! appsink`` - the conversion used by JetsonHacks'
CSI-Camera samples (https://github.com/JetsonHacksNano/CSI-Camera) and NVIDIA's forum answers for
OpenCV. ``appsink drop=true max-buffers=1 sync=false`` keeps only the newest frame, so a slow
detector sees fresh frames instead of a growing backlog.

Software fallbacks (``hw_decode=False``) use the stock GStreamer decoders (``jpegdec``,
``avdec_h264``/``avdec_h265`` from gst-libav) and work on any Linux machine with GStreamer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from ..errors import YoloEdgeError

#: ``nvvidconv flip-method`` values (NVIDIA Accelerated GStreamer guide, "Video Rotation").
FLIP_METHODS: dict[int, str] = {
    0: "identity (no rotation)",
    1: "counter-clockwise 90 degrees",
    2: "rotate 180 degrees",
    3: "clockwise 90 degrees",
    4: "horizontal flip",
    5: "upper-right diagonal flip",
    6: "vertical flip",
    7: "upper-left diagonal flip",
}

#: RTSP payload codecs: codec -> (depayloader, parser, software decoder). Aliases map to these.
CODECS: dict[str, tuple[str, str, str]] = {
    "h264": ("rtph264depay", "h264parse", "avdec_h264"),
    "h265": ("rtph265depay", "h265parse", "avdec_h265"),
}
#: ``rtspsrc protocols`` values this module writes (``--rtsp-transport``)
RTSP_PROTOCOLS = ("tcp", "udp")
_CODEC_ALIASES = {"h264": "h264", "h.264": "h264", "avc": "h264", "h265": "h265", "h.265": "h265", "hevc": "h265"}

#: The sink every pipeline ends with: newest frame only, no clock sync.
APPSINK = "appsink drop=true max-buffers=1 sync=false"
_BGR_CAPS = "video/x-raw,format=BGR"
_NV_TO_BGR = ("nvvidconv", "video/x-raw,format=BGRx", "videoconvert", _BGR_CAPS, APPSINK)
_SW_TO_BGR = ("videoconvert", _BGR_CAPS, APPSINK)

# characters that force double quotes around a property value in a launch description
_NEEDS_QUOTES = re.compile(r"[\s!,;=()\[\]{}'\\]")


class PipelineError(YoloEdgeError):
    """A camera/stream argument cannot be turned into a GStreamer pipeline."""


# --- validation -------------------------------------------------------------------------------
def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise PipelineError(f"{name} must be a positive integer, got {value!r}")
    return value


def _non_negative_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PipelineError(f"{name} must be an integer >= 0, got {value!r}")
    return value


def _framerate(fps: Any) -> str:
    """``30`` -> ``30/1``; ``29.97`` -> ``30000/1001``; ``7.5`` -> ``15/2`` (GStreamer framerates are
    fractions)."""
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not fps > 0 or fps != fps or fps == float("inf"):
        raise PipelineError(f"fps must be a positive number, got {fps!r}")
    if float(fps).is_integer():
        return f"{int(fps)}/1"
    ntsc = round(fps * 1.001)  # 29.97 -> 30000/1001, 59.94 -> 60000/1001 (the NTSC rates cameras report)
    if abs(fps - ntsc / 1.001) < 5e-3:
        return f"{ntsc * 1000}/1001"
    frac = Fraction(fps).limit_denominator(1000)
    return f"{frac.numerator}/{frac.denominator}"


def _flip(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value not in FLIP_METHODS:
        choices = ", ".join(f"{k}={v}" for k, v in FLIP_METHODS.items())
        raise PipelineError(f"flip_method must be an integer 0..7 ({choices}), got {value!r}")
    return value


def _codec(codec: Any) -> str:
    key = _CODEC_ALIASES.get(str(codec).strip().lower()) if isinstance(codec, str) else None
    if key is None:
        raise PipelineError(f"unknown codec {codec!r}: expected one of {', '.join(sorted(_CODEC_ALIASES))}")
    return key


def quote_value(value: str, what: str = "value") -> str:
    """A property value as GStreamer's launch parser reads it: bare when plain, in double quotes
    when it holds spaces or launch-syntax characters (``!``, ``,``, ``=`` ...). A double quote,
    a backslash before one, or a control character cannot be represented and is refused."""
    if not isinstance(value, str) or not value.strip():
        raise PipelineError(f"{what} must be a non-empty string, got {value!r}")
    if '"' in value or any(ord(c) < 32 for c in value):
        raise PipelineError(f"{what} must not contain double quotes or control characters: {value!r}")
    return f'"{value}"' if _NEEDS_QUOTES.search(value) else value


def _join(elements) -> str:
    return " ! ".join(elements)


# --- builders ---------------------------------------------------------------------------------
def csi_pipeline(sensor_id: int = 0, width: int = 1920, height: int = 1080, fps: float = 30,
                 flip_method: int = 0, sensor_mode: int | None = None) -> str:
    """MIPI CSI camera through libargus (``nvarguscamerasrc``) to BGR frames.

    ``width``/``height``/``fps`` must be a mode the sensor offers (``nvargus`` picks the sensor mode
    from them unless ``sensor_mode`` names one). Frames arrive as NV12 in NVMM memory; ``nvvidconv``
    applies ``flip_method`` (see :data:`FLIP_METHODS`) and copies them to system memory::

        nvarguscamerasrc sensor-id=0 ! video/x-raw(memory:NVMM),width=1920,height=1080,
        framerate=30/1,format=NV12 ! nvvidconv flip-method=0 ! video/x-raw,format=BGRx !
        videoconvert ! video/x-raw,format=BGR ! appsink drop=true max-buffers=1 sync=false
    """
    sensor_id = _non_negative_int("sensor_id", sensor_id)
    width, height = _positive_int("width", width), _positive_int("height", height)
    rate = _framerate(fps)
    flip = _flip(flip_method)
    src = f"nvarguscamerasrc sensor-id={sensor_id}"
    if sensor_mode is not None:
        src += f" sensor-mode={_non_negative_int('sensor_mode', sensor_mode)}"
    caps = f"video/x-raw(memory:NVMM),width={width},height={height},framerate={rate},format=NV12"
    nvvidconv = f"nvvidconv flip-method={flip}"
    return _join([src, caps, nvvidconv, *_NV_TO_BGR[1:]])


def usb_pipeline(device: str = "/dev/video0", width: int = 1280, height: int = 720, fps: float = 30,
                 mjpeg: bool = True, hw_decode: bool = True) -> str:
    """USB (V4L2) camera to BGR frames.

    ``mjpeg=True`` asks the camera for Motion-JPEG (most UVC webcams reach full frame rate at
    720p/1080p only in MJPEG) and decodes it on the Jetson's NVJPG engine with
    ``jpegparse ! nvv4l2decoder mjpeg=1`` (``hw_decode=True``; not on Thor, see
    :func:`jpeg_hw_decode_available`) or on the CPU with ``jpegdec``.
    ``mjpeg=False`` asks for raw YUYV (``video/x-raw,format=YUY2``), converted by ``nvvidconv``
    (``hw_decode=True``) or ``videoconvert``::

        v4l2src device=/dev/video0 ! image/jpeg,width=1280,height=720,framerate=30/1 ! jpegparse !
        nvv4l2decoder mjpeg=1 ! nvvidconv ! video/x-raw,format=BGRx ! videoconvert !
        video/x-raw,format=BGR ! appsink drop=true max-buffers=1 sync=false
    """
    src = f"v4l2src device={quote_value(device, 'device')}"
    width, height = _positive_int("width", width), _positive_int("height", height)
    rate = _framerate(fps)
    if mjpeg:
        caps = f"image/jpeg,width={width},height={height},framerate={rate}"
        chain = ([src, caps, "jpegparse", "nvv4l2decoder mjpeg=1", *_NV_TO_BGR] if hw_decode
                 else [src, caps, "jpegdec", *_SW_TO_BGR])
    else:
        caps = f"video/x-raw,format=YUY2,width={width},height={height},framerate={rate}"
        chain = [src, caps, *_NV_TO_BGR] if hw_decode else [src, caps, *_SW_TO_BGR]
    return _join(chain)


def rtsp_pipeline(url: str, latency: int = 200, codec: str = "h264", hw_decode: bool = True,
                  protocols: str | None = None) -> str:
    """RTSP (H.264 or H.265 over RTP) to BGR frames.

    ``latency`` is ``rtspsrc``'s jitter-buffer size in milliseconds (lower: fresher frames, more
    risk of artefacts on a lossy network). ``protocols``: ``"tcp"`` (RTP interleaved in the RTSP
    connection: no lost packets, so no smeared frames on a busy network), ``"udp"``, or None /
    ``"auto"`` for rtspsrc's default (UDP first). Hardware path: ``nvv4l2decoder`` (NVDEC) then
    ``nvvidconv``; software path: ``avdec_h264``/``avdec_h265`` then ``videoconvert``::

        rtspsrc location=rtsp://cam/stream latency=200 protocols=tcp ! rtph264depay ! h264parse !
        nvv4l2decoder ! nvvidconv ! video/x-raw,format=BGRx ! videoconvert !
        video/x-raw,format=BGR ! appsink drop=true max-buffers=1 sync=false
    """
    if not isinstance(url, str) or not re.match(r"^rtsps?://\S", url.strip(), re.IGNORECASE):
        raise PipelineError(f"an RTSP location starts with rtsp:// or rtsps://, got {url!r}")
    latency = _non_negative_int("latency", latency)
    depay, parse, sw_dec = CODECS[_codec(codec)]
    src = f"rtspsrc location={quote_value(url.strip(), 'url')} latency={latency}"
    if protocols not in (None, "auto"):
        if protocols not in RTSP_PROTOCOLS:
            raise PipelineError(f"RTSP transport must be one of {', '.join(RTSP_PROTOCOLS)} or auto, got {protocols!r}")
        src += f" protocols={protocols}"
    tail = ["nvv4l2decoder", *_NV_TO_BGR] if hw_decode else [sw_dec, *_SW_TO_BGR]
    return _join([src, depay, parse, *tail])


# --- sources ----------------------------------------------------------------------------------
_CSI_KEYS = {"width": "width", "height": "height", "fps": "fps", "framerate": "fps", "flip": "flip_method",
             "flip_method": "flip_method", "flip-method": "flip_method", "sensor_mode": "sensor_mode",
             "sensor-mode": "sensor_mode", "mode": "sensor_mode"}


def parse_csi_url(url: str) -> dict:
    """``csi://0?width=1280&height=720&fps=60&flip=2`` -> keyword arguments of :func:`csi_pipeline`:
    ``{"sensor_id": 0, "width": 1280, "height": 720, "fps": 60, "flip_method": 2}``.

    The host is the sensor id (``csi://`` alone means sensor 0). Query keys: ``width``,
    ``height``, ``fps`` (or ``framerate``), ``flip`` (or ``flip_method``), ``sensor_mode`` (or
    ``mode``). Values are validated as :func:`csi_pipeline` would; unknown keys are an error.
    """
    if not isinstance(url, str) or not url.lower().startswith("csi://"):
        raise PipelineError(f"a CSI camera is written csi://SENSOR_ID[?width=..&height=..&fps=..&flip=..], got {url!r}")
    parts = urlsplit(url.strip())
    sensor = (parts.netloc or "0") + parts.path.strip("/")
    if not sensor.isdigit():
        raise PipelineError(f"CSI sensor id must be a number (csi://0, csi://1), got {sensor!r} in {url!r}")
    out: dict[str, Any] = {"sensor_id": int(sensor)}
    for key, raw in parse_qsl(parts.query, keep_blank_values=True):
        name = _CSI_KEYS.get(key.lower())
        if name is None:
            raise PipelineError(f"unknown CSI option {key!r} in {url!r}: use width, height, fps, flip, sensor_mode")
        try:
            value: Any = float(raw) if name == "fps" else int(raw)
        except ValueError:
            raise PipelineError(f"CSI option {key}={raw!r} in {url!r} is not a number") from None
        if name == "fps" and float(value).is_integer():
            value = int(value)
        out[name] = value
    csi_pipeline(**out)  # validate every value now, with the builder's messages
    return out


_BUILDER_OPTS = {
    "csi": {"width", "height", "fps", "flip_method", "sensor_mode"},
    "usb": {"width", "height", "fps", "mjpeg", "hw_decode"},
    "rtsp": {"latency", "codec", "hw_decode", "protocols"},
}
_ALL_OPTS = set().union(*_BUILDER_OPTS.values())


def source_kind(source: str) -> str | None:
    """``"csi"``, ``"usb"`` (``/dev/videoN`` or a camera index ``N``), ``"rtsp"``, or None (a
    file, an HTTP URL ...)."""
    s = str(source).strip().lower()
    if s.startswith("csi://"):
        return "csi"
    if s.startswith(("rtsp://", "rtsps://")):
        return "rtsp"
    if re.match(r"^(/dev/video)?\d+$", s):
        return "usb"
    return None


def source_to_pipeline(source: str, **opts) -> str | None:
    """The GStreamer pipeline for a camera/stream ``source``, or None when OpenCV should open the
    source itself (a video file, an HTTP URL ...).

    ``csi://N?...`` -> :func:`csi_pipeline` (query values override ``opts``); ``/dev/videoN`` or a
    camera index ``N`` (read as ``/dev/videoN``) -> :func:`usb_pipeline`; ``rtsp://``/``rtsps://``
    -> :func:`rtsp_pipeline`. ``opts`` are keyword
    arguments of those builders; one that does not apply to this kind of source (``latency`` for a
    CSI camera) is ignored, one that no builder knows is an error.
    """
    unknown = set(opts) - _ALL_OPTS
    if unknown:
        raise PipelineError(f"unknown pipeline option(s) {sorted(unknown)}; known: {sorted(_ALL_OPTS)}")
    kind = source_kind(source)
    if kind is None:
        return None
    kw = {k: v for k, v in opts.items() if k in _BUILDER_OPTS[kind] and v is not None}
    source = str(source).strip()
    if kind == "csi":
        return csi_pipeline(**{**kw, **parse_csi_url(source)})
    if kind == "usb":
        return usb_pipeline(source if source.startswith("/") else f"/dev/video{int(source)}", **kw)
    return rtsp_pipeline(source, **kw)


# --- USB cameras: what does it offer? ----------------------------------------------------------
#: the SoC of Jetson Thor in ``/proc/device-tree/compatible`` (``nvidia,tegra264``; raw board
#: report in rbonghi/jetson_stats issue #711)
THOR_SOC = "tegra264"
DEVICE_TREE_COMPATIBLE = "/proc/device-tree/compatible"


def jpeg_hw_decode_available(compatible_path: str = DEVICE_TREE_COMPATIBLE) -> bool:
    """False on Jetson Thor, which has no JPEG/MJPEG decode in ``nvv4l2decoder`` (DeepStream 9.2
    guide, Gst-nvvideo4linux2); True on the other Jetsons (and when the device tree is unreadable)."""
    try:
        with open(compatible_path, "rb") as f:
            text = f.read().decode("ascii", "replace")
    except OSError:
        return True
    return THOR_SOC not in text


@dataclass(frozen=True)
class CameraMode:
    """One capture mode a V4L2 camera offers: pixel format (FourCC as ``v4l2-ctl`` prints it,
    ``MJPG``/``YUYV``), size and frame rate."""

    fourcc: str
    width: int
    height: int
    fps: float

    def __str__(self) -> str:
        return f"{self.fourcc} {self.width}x{self.height}@{self.fps:g}"


_V4L2_FORMAT = re.compile(r"^\s*\[\d+\]:\s*'(\w+)'")
_V4L2_SIZE = re.compile(r"^\s*Size:\s*Discrete\s+(\d+)x(\d+)")
_V4L2_INTERVAL = re.compile(r"^\s*Interval:\s*Discrete\s+[\d.]+s\s*\(([\d.]+)\s*fps\)")


def parse_v4l2_formats(text: str) -> list[CameraMode]:
    """``v4l2-ctl -d DEV --list-formats-ext`` output -> the discrete modes it lists, in order.

    The tool (v4l-utils) prints a ``[i]: 'MJPG' (Motion-JPEG, compressed)`` line per pixel format,
    then ``Size: Discrete 1280x720`` lines, each followed by ``Interval: Discrete 0.033s (30.000
    fps)`` lines. Stepwise/continuous sizes (rare on UVC webcams) are not listed.
    """
    modes: list[CameraMode] = []
    fourcc, size = None, None
    for line in (text or "").splitlines():
        m = _V4L2_FORMAT.match(line)
        if m:
            fourcc, size = m.group(1), None
            continue
        m = _V4L2_SIZE.match(line)
        if m and fourcc:
            size = (int(m.group(1)), int(m.group(2)))
            continue
        m = _V4L2_INTERVAL.match(line)
        if m and fourcc and size:
            mode = CameraMode(fourcc, size[0], size[1], float(m.group(1)))
            if mode not in modes:
                modes.append(mode)
    return modes


#: pixel formats the USB pipelines read, in order of preference (MJPG reaches full frame rate)
_USB_FOURCCS = ("MJPG", "YUYV")


def choose_usb_mode(modes: list[CameraMode], width: int | None = None, height: int | None = None,
                    fps: float | None = None) -> CameraMode | None:
    """The mode to ask a USB camera for, or None when it offers nothing the pipelines can read at
    the requested size/rate.

    Only ``MJPG`` and ``YUYV`` modes count. Requested values must match (fps within 0.5); what is not
    requested is chosen: the size closest to 1280x720, then the highest frame rate, then MJPG.
    """
    def ok(m: CameraMode) -> bool:
        return (m.fourcc in _USB_FOURCCS and (width is None or m.width == width)
                and (height is None or m.height == height) and (fps is None or abs(m.fps - fps) <= 0.5))

    usable = [m for m in modes if ok(m)]
    if not usable:
        return None
    return min(usable, key=lambda m: (abs(m.width * m.height - 1280 * 720), -m.fps, _USB_FOURCCS.index(m.fourcc)))


def _run_v4l2_ctl(cmd: list[str], timeout: float) -> tuple[int, str]:
    import subprocess

    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                           errors="replace")
    except subprocess.TimeoutExpired:
        return 124, ""
    return p.returncode, p.stdout


def probe_usb_modes(device: str, runner=None, timeout: float = 5.0) -> list[CameraMode] | None:
    """The modes ``v4l2-ctl`` lists for ``device``; None when the tool is missing or fails
    (``sudo apt-get install v4l-utils``). ``runner(cmd, timeout) -> (returncode, stdout)`` is
    injectable for tests."""
    cmd = ["v4l2-ctl", "-d", str(device), "--list-formats-ext"]
    if runner is None:
        runner = _run_v4l2_ctl
    try:
        code, out = runner(cmd, timeout)
    except OSError:  # FileNotFoundError: no v4l-utils
        return None
    return parse_v4l2_formats(out) if code == 0 else None


def usb_auto_pipeline(device: str, width: int | None = None, height: int | None = None, fps: float | None = None,
                      modes: list[CameraMode] | None = None, jpeg_hw: bool = True) -> tuple[str | None, str]:
    """The GStreamer pipeline ``--gstreamer auto`` uses for a USB camera, and a one-line note.

    ``modes`` is what the camera offers (:func:`probe_usb_modes`; None: unknown). Returns
    ``(None, why)`` when GStreamer should not be used - the camera offers no matching MJPG/YUYV
    mode, or its modes are unknown - so the caller opens it with OpenCV's V4L2 backend instead of
    forcing a format the camera may not have. MJPEG is decoded by NVJPG (``jpegparse !
    nvv4l2decoder mjpeg=1``) when ``jpeg_hw``, else by ``jpegdec``; YUYV is converted by
    ``nvvidconv``.
    """
    want = "x".join(str(v) for v in (width, height) if v) + (f"@{fps:g}" if fps else "")
    if modes is None:
        return None, (f"cannot list the modes of {device} (v4l2-ctl from v4l-utils is missing or failed): "
                      "opening it with OpenCV's V4L2 backend (CPU decode); sudo apt-get install v4l-utils "
                      "lets yolo-edge pick a hardware-decoded mode, --gstreamer off keeps this choice quiet")
    mode = choose_usb_mode(modes, width, height, fps)
    if mode is None:
        offered = ", ".join(map(str, modes[:12])) + (" ..." if len(modes) > 12 else "") or "nothing"
        return None, (f"{device} offers no MJPG/YUYV mode{' ' + want if want else ''} (it offers: {offered}): "
                      "opening it with OpenCV's V4L2 backend instead")
    fps_out = int(mode.fps) if float(mode.fps).is_integer() else mode.fps
    pipeline = usb_pipeline(device, mode.width, mode.height, fps_out, mjpeg=mode.fourcc == "MJPG",
                            hw_decode=jpeg_hw or mode.fourcc != "MJPG")
    how = ("NVJPG" if jpeg_hw else "CPU (jpegdec: no JPEG hardware decode on this Jetson)") if mode.fourcc == "MJPG" \
        else "nvvidconv"
    return pipeline, f"{device}: {mode} through GStreamer, decoded by {how}"


# --- OpenCV -----------------------------------------------------------------------------------
def gstreamer_in_build_info(build_info: str) -> bool:
    """True when ``cv2.getBuildInformation()`` text lists ``GStreamer: YES ...`` under Video I/O.

    OpenCV prints e.g. ``    GStreamer:                   YES (1.16.3)`` or ``GStreamer: NO``. The
    ``opencv-python`` wheels from PyPI are built without GStreamer; JetPack's ``python3-opencv``
    (``nvidia-opencv``) has it.
    """
    m = re.search(r"^\s*GStreamer:\s*(\S+)", build_info or "", re.MULTILINE)
    return bool(m and m.group(1).upper().startswith("YES"))


def opencv_has_gstreamer() -> bool:
    """Whether the installed OpenCV can open ``cv2.CAP_GSTREAMER`` pipelines (False without cv2)."""
    try:
        import cv2
    except ImportError:
        return False
    return gstreamer_in_build_info(cv2.getBuildInformation())


__all__ = ["APPSINK", "CODECS", "FLIP_METHODS", "RTSP_PROTOCOLS", "CameraMode", "PipelineError", "choose_usb_mode",
           "csi_pipeline", "gstreamer_in_build_info", "jpeg_hw_decode_available", "opencv_has_gstreamer",
           "parse_csi_url", "parse_v4l2_formats", "probe_usb_modes", "quote_value", "rtsp_pipeline", "source_kind",
           "source_to_pipeline", "usb_auto_pipeline", "usb_pipeline"]
