"""What kind of media file is this? A cheap look at the first bytes (no decoding), so that a file
that is not a video at all is told apart from a video OpenCV cannot decode."""

from __future__ import annotations

from pathlib import Path

# container -> test on the first 16 bytes (and the 189th for MPEG-TS)
_SIGNATURES = (
    ("mp4/mov", lambda b: b[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip")),
    ("matroska/webm", lambda b: b[:4] == b"\x1a\x45\xdf\xa3"),
    ("avi", lambda b: b[:4] == b"RIFF" and b[8:12] in (b"AVI ", b"AVIX")),
    ("mpeg-ps", lambda b: b[:4] == b"\x00\x00\x01\xba"),
    ("mpeg-es", lambda b: b[:4] == b"\x00\x00\x01\xb3"),
    ("flv", lambda b: b[:3] == b"FLV"),
    ("asf/wmv", lambda b: b[:4] == b"\x30\x26\xb2\x75"),
    ("ogg", lambda b: b[:4] == b"OggS"),
    ("h264/h265 stream", lambda b: b[:4] == b"\x00\x00\x00\x01" or b[:3] == b"\x00\x00\x01"),
)


def video_container(path) -> str | None:
    """The container a video file's first bytes announce, or None (not a video we know, or empty)."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
            f.seek(188)
            ts = f.read(1)
    except OSError:
        return None
    if len(head) < 12:
        return None
    if head[:1] == b"\x47" and ts == b"\x47":
        return "mpeg-ts"
    for name, test in _SIGNATURES:
        if test(head):
            return name
    return None


def unopenable_video_message(path) -> str:
    """Why OpenCV could not open ``path``, with what to do next."""
    p = Path(path)
    if p.stat().st_size == 0:
        return f"cannot open video {p}: the file is empty"
    kind = video_container(p)
    if kind is None:
        return (f"cannot open video {p}: it is not a video file (no known container signature; "
                "a renamed or damaged file?)")
    return (f"cannot open video {p} ({kind}): the file is damaged or truncated (an .mp4 whose recording never "
            "finished has no index), or OpenCV has no codec for it: re-encode it, e.g. "
            "ffmpeg -i in -c:v libx264 out.mp4")
