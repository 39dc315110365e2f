"""Stream layer: sources, sinks, the pipelined runner, reconnects and clean shutdown.

References: ``Detector`` called frame by frame on the same decoded frames (JSON Lines are checked
record by record), numpy for percentiles, OpenCV reading back what the sinks wrote.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import cv2
import numpy as np
import pytest

from stream_servers import FfmpegTcpServer, MjpegServer, free_port, pattern_frame, wait_port
from yolo_edge.detections import Detections
from yolo_edge.errors import YoloEdgeError
from yolo_edge.stream import (Backoff, Channel, FfmpegSink, FrameList, JsonlSink, RollingStats, Sink,
                              StreamConfig, VideoSink, open_source, run_stream)
from yolo_edge.stream.sinks import ffmpeg_exe
from yolo_edge.stream.sources import CaptureSource, ImageFolderSource, VideoFileSource

ROOT = Path(__file__).resolve().parents[1]


# --- helpers -----------------------------------------------------------------------------------
class FakeDetector:
    """Letterbox like the real one; 'infer' sleeps ``delay`` s; one box per frame at a known place."""

    names = ("thing",)

    def __init__(self, delay: float = 0.0, fail_at: int | None = None):
        from yolo_edge.spec import LetterboxSpec

        self.delay, self.fail_at, self.calls = delay, fail_at, 0
        self.spec = LetterboxSpec((64, 64))

    def preprocess(self, images):
        from yolo_edge.letterbox import letterbox_batch

        return letterbox_batch(images, self.spec)

    def forward(self, batch):
        self.calls += 1
        if self.fail_at is not None and self.calls >= self.fail_at:
            raise RuntimeError("boom in infer")
        if self.delay:
            time.sleep(self.delay)
        return {}

    def postprocess(self, out):
        return [Detections(np.array([[8, 8, 40, 40]], np.float32), np.array([0.9], np.float32), np.array([0]))]


class ListSink(Sink):
    needs_image = True

    def __init__(self):
        self.results, self.opened, self.closed = [], False, False

    def open(self, info):
        self.opened = True

    def write(self, result):
        self.results.append((result.frame.index, result.annotated is not None))

    def close(self):
        self.closed = True


def write_video(path: Path, frames, fps: float = 25.0, fourcc: str = "MJPG") -> Path:
    h, w = frames[0].shape[:2]
    wr = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    for f in frames:
        wr.write(f)
    wr.release()
    return path


def read_video(path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        out.append(f)
    cap.release()
    return out


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


@pytest.fixture(scope="module")
def scenes():
    """Synthetic scenes with objects the bundled model detects, resized to 320x240."""
    from yolo_edge.data import load_dataset

    ds = load_dataset("synthetic:val")
    return [cv2.resize(ds[i].image, (320, 240)) for i in range(8)]


@pytest.fixture(scope="module")
def detector():
    import torch

    from yolo_edge.assets import default_checkpoint
    from yolo_edge.runtime import Detector, load_runner

    torch.set_num_threads(1)
    det = Detector(load_runner(default_checkpoint(), imgsz=(256, 256)))
    with det:
        yield det


def assert_records_match(records, frames, det, indices=None):
    """Each JSON record equals Detector(frame) on the same frame: boxes to 0.01 px (2 decimals are
    written), scores to 1e-4, classes exactly."""
    assert len(records) == len(frames)
    for k, (rec, frame) in enumerate(zip(records, frames)):
        ref = det(frame)
        assert rec["frame"] == (indices[k] if indices else k)
        assert (rec["height"], rec["width"]) == frame.shape[:2]
        got = rec["detections"]
        assert len(got) == len(ref), f"frame {k}: {len(got)} vs {len(ref)} detections"
        for g, (box, score, cid) in zip(got, ref):
            np.testing.assert_allclose(g["box"], box, atol=0.011)
            assert abs(g["score"] - score) < 1e-4 and g["class_id"] == cid
            assert g["class_name"] == det.names[cid]


# --- building blocks ---------------------------------------------------------------------------
def test_rolling_stats_percentiles_match_numpy_and_stay_bounded():
    rng = np.random.default_rng(0)
    values = rng.exponential(5.0, 5000)
    st = RollingStats(window=1000)
    for v in values:
        st.add(float(v))
    assert st.n == 5000 and len(st.recent) == 1000
    assert st.mean == pytest.approx(values.mean())
    for q in (50, 90, 99):
        assert st.percentile(q) == pytest.approx(np.percentile(values[-1000:], q))
    assert np.isnan(RollingStats().mean) and np.isnan(RollingStats().percentile(50))


def test_channel_latest_policy_replaces_oldest_and_counts():
    ch = Channel(1, latest=True)
    for i in range(5):
        assert ch.put(i)
    assert ch.dropped == 4 and len(ch) == 1
    ch.close()
    assert ch.get() == 4
    from yolo_edge.stream.pipeline import _END

    assert ch.get() is _END
    assert not ch.put(9)  # closed: discarded


def test_channel_blocks_when_full_and_close_drains():
    from yolo_edge.stream.pipeline import _END

    ch = Channel(2)
    ch.put(1), ch.put(2)
    t = threading.Thread(target=ch.put, args=(3,))
    t.start()
    time.sleep(0.3)
    assert t.is_alive() and len(ch) == 2  # producer waits for room: nothing is dropped
    assert ch.get() == 1
    t.join(2)
    ch.close()
    assert [ch.get(), ch.get(), ch.get()] == [2, 3, _END]
    ab = Channel(2)
    ab.put(1)
    ab.abort()
    assert ab.get() is _END


def test_backoff_doubles_to_cap():
    d = Backoff(0.5, 2.0, 3.0).delays()
    assert [next(d) for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]


# --- sources -----------------------------------------------------------------------------------
@pytest.mark.parametrize("spec, kind", [
    ("0", CaptureSource), ("/dev/video3", CaptureSource), ("rtsp://10.0.0.2/live", CaptureSource),
    ("http://cam.local/mjpg", CaptureSource), ("tcp://127.0.0.1:9000", CaptureSource),
    ("udp://@:5000", CaptureSource),
])
def test_open_source_dispatch(spec, kind):
    src = open_source(spec, gstreamer="off")
    assert isinstance(src, kind) and src.live and src.name == spec
    assert src.network == ("://" in spec)


@pytest.mark.parametrize("spec, message", [
    ("", "empty source"),
    ("no/such/file.mp4", "source not found"),
    ("ftp://host/x", "unsupported source scheme"),
])
def test_open_source_errors(spec, message):
    with pytest.raises(YoloEdgeError, match=message):
        open_source(spec)


def test_csi_without_gstreamer_says_so():
    from yolo_edge.stream import gst

    if gst.opencv_has_gstreamer():
        pytest.skip("this OpenCV has GStreamer")
    with pytest.raises(YoloEdgeError, match="GStreamer"):
        open_source("csi://0")


def test_camera_that_never_opens_fails_fast_naming_the_device():
    t0 = time.monotonic()
    with pytest.raises(YoloEdgeError, match="/dev/video97"):
        open_source("/dev/video97").open()
    with pytest.raises(YoloEdgeError, match="/dev/video96"):
        open_source("96").open()  # an index is named as its device
    assert time.monotonic() - t0 < 10  # no reconnect loop for a camera that never opened


def test_stream_that_never_opens_fails_naming_the_url():
    url = f"tcp://127.0.0.1:{free_port()}"
    with pytest.raises(YoloEdgeError, match=url.replace(".", r"\.")):
        open_source(url, open_timeout_s=1.0, backoff=Backoff(0.2, 2, 0.5)).open()


def test_video_file_source_reads_every_frame_then_ends(tmp_path):
    frames = [pattern_frame(i) for i in range(12)]
    path = write_video(tmp_path / "v.avi", frames)
    ref = read_video(path)
    with VideoFileSource(path) as src:
        got = list(src)
    assert [f.index for f in got] == list(range(12)) and not src.live
    for f, r in zip(got, ref):
        assert np.array_equal(f.image, r)


def test_image_folder_counts_corrupt_file(tmp_path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), pattern_frame(i))
    (tmp_path / "1b.jpg").write_bytes(b"not a jpeg")
    src = ImageFolderSource(tmp_path)
    from yolo_edge.stream import CorruptFrame

    out = []
    for _ in range(4):
        try:
            out.append(src.read().index)
        except CorruptFrame as e:
            out.append(("corrupt", e.index))
    assert out == [0, 1, ("corrupt", 2), 3] and src.read() is None  # sorted: 0, 1, 1b, 2


# --- the pipeline ------------------------------------------------------------------------------
def test_video_file_jsonl_matches_detector_frame_by_frame(tmp_path, scenes, detector):
    frames = [scenes[i % len(scenes)] for i in range(10)]
    path = write_video(tmp_path / "in.avi", frames)
    decoded = read_video(path)  # what any reader of the file sees (MJPG is lossy)
    jsonl, video = tmp_path / "out" / "d.jsonl", tmp_path / "out" / "a.mp4"
    summary = run_stream(open_source(path), detector, [JsonlSink(jsonl), VideoSink(video)],
                         StreamConfig(progress=False))
    assert (summary.captured, summary.processed, summary.dropped, summary.corrupt) == (10, 10, 0, 0)
    assert not summary.latest_policy and summary.stopped_by == "end"
    records = read_jsonl(jsonl)
    assert sum(len(r["detections"]) for r in records) > 0
    assert_records_match(records, decoded, detector)
    out = read_video(video)
    assert len(out) == 10 and out[0].shape == decoded[0].shape
    assert not (tmp_path / "out" / "a.partial.mp4").exists()


def test_image_folder_with_corrupt_file_matches_detector(tmp_path, scenes, detector):
    for i in range(4):
        cv2.imwrite(str(tmp_path / f"img{i}.png"), scenes[i])
    (tmp_path / "img1_broken.jpg").write_bytes(b"\xff\xd8 truncated")
    jsonl = tmp_path / "d.jsonl"
    summary = run_stream(open_source(tmp_path), detector, [JsonlSink(jsonl)], StreamConfig(progress=False))
    assert summary.corrupt == 1 and summary.processed == 4
    # the broken file is index 2 in sorted order (img0, img1, img1_broken, img2, img3)
    assert_records_match(read_jsonl(jsonl), scenes[:4], detector, indices=[0, 1, 3, 4])


def test_live_source_uses_latest_frame_policy():
    frames = [pattern_frame(i) for i in range(60)]
    sink = ListSink()
    src = FrameList(frames, live=True, fps=200)
    s = run_stream(src, FakeDetector(delay=0.03), [sink], StreamConfig(progress=False))
    assert s.latest_policy and s.captured == 60
    assert s.dropped > 0 and s.processed + s.dropped == s.captured  # every frame is processed or counted
    idx = [i for i, _ in sink.results]
    assert idx == sorted(idx) and len(idx) == s.processed and idx[-1] == 59  # the newest frame is never lost
    assert sink.opened and sink.closed and all(a for _, a in sink.results)


def test_file_source_processes_every_frame_even_when_slow():
    frames = [pattern_frame(i) for i in range(15)]
    sink = ListSink()
    s = run_stream(FrameList(frames), FakeDetector(delay=0.01), [sink], StreamConfig(progress=False))
    assert s.dropped == 0 and [i for i, _ in sink.results] == list(range(15))
    assert s.bottleneck == "detect" and set(s.stages) >= {"capture", "pre", "infer", "post", "render"}


def test_corrupt_frames_are_skipped_and_counted():
    frames = [pattern_frame(0), None, pattern_frame(2), np.zeros((0, 0, 3), np.uint8), pattern_frame(4)]
    sink = ListSink()
    s = run_stream(FrameList(frames), FakeDetector(), [sink], StreamConfig(progress=False))
    assert s.corrupt == 2 and [i for i, _ in sink.results] == [0, 2, 4]


@pytest.mark.parametrize("cfg, reason, n", [
    (StreamConfig(max_frames=5, progress=False), "max_frames", 5),
    (StreamConfig(duration_s=0.5, progress=False), "duration", None),
])
def test_run_stops_on_limits(cfg, reason, n):
    frames = [pattern_frame(i) for i in range(400)]
    sink = ListSink()
    s = run_stream(FrameList(frames), FakeDetector(delay=0.01), [sink], cfg)
    assert s.stopped_by == reason and sink.closed
    assert len(sink.results) == s.processed and s.processed < 400
    if n is not None:
        assert s.processed == n


def test_stage_error_is_raised_after_outputs_are_finalized(tmp_path):
    frames = [pattern_frame(i) for i in range(30)]
    video = tmp_path / "partial.mp4"
    with pytest.raises(RuntimeError, match="boom"):
        run_stream(FrameList(frames), FakeDetector(fail_at=6), [VideoSink(video)], StreamConfig(progress=False))
    assert len(read_video(video)) == 5  # the frames done before the failure are a playable file


def test_memory_stays_flat_over_long_runs():
    """Peak traced memory of a 1500-frame run is within a few MB of a 150-frame run (frames,
    annotated copies and statistics are not accumulated)."""
    frame = pattern_frame(0, size=(480, 640))

    def peak(n):
        tracemalloc.start()
        run_stream(FrameList([frame] * n), FakeDetector(), [ListSink()], StreamConfig(progress=False, overlay=True))
        p = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return p

    short, long = peak(150), peak(1500)
    assert long - short < 4 * 2**20, (short, long)  # 1350 more frames of 0.9 MB each would be 1.2 GB


# --- sinks ---------------------------------------------------------------------------------------
def test_ffmpeg_sink_writes_a_readable_stream(tmp_path):
    exe = ffmpeg_exe()
    if exe is None:
        pytest.skip("no ffmpeg binary")
    out = tmp_path / "out.ts"
    frames = [pattern_frame(i) for i in range(20)]
    s = run_stream(FrameList(frames, fps=20), FakeDetector(), [FfmpegSink(str(out))], StreamConfig(progress=False))
    got = read_video(out)
    assert s.processed == 20 and len(got) == 20 and got[0].shape == frames[0].shape


def test_video_sink_rejects_unknown_suffix(tmp_path):
    with pytest.raises(YoloEdgeError, match=".mp4"):
        VideoSink(tmp_path / "x.gif")


# --- network streams on loopback: drop, reconnect, resume --------------------------------------
def _run_in_thread(src, det, sink, cfg):
    box = {}

    def target():
        try:
            box["summary"] = run_stream(src, det, [sink], cfg)
        except BaseException as e:  # noqa: BLE001
            box["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    return t, box


def _wait(pred, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return False


def test_http_mjpeg_stream_reconnects_after_server_restart():
    server = MjpegServer([pattern_frame(i) for i in range(10)], fps=25).start()
    assert wait_port(server.port)
    sink = ListSink()
    events = []
    src = open_source(server.url, open_timeout_s=5, read_timeout_s=3, backoff=Backoff(0.2, 2, 1.0),
                      on_event=lambda k, m: events.append(k))
    t, box = _run_in_thread(src, FakeDetector(), sink, StreamConfig(progress=False, handle_signals=False))
    try:
        assert _wait(lambda: len(sink.results) >= 10, 20), "no frames before the drop"
        server.stop()
        time.sleep(1.0)
        before = len(sink.results)
        server.start()
        assert _wait(lambda: len(sink.results) >= before + 10, 30), f"no frames after restart: {events}"
    finally:
        src.interrupt()
        t.join(15)
        server.stop()
    assert "error" not in box, box.get("error")
    s = box["summary"]
    assert s.reconnects >= 1 and events[:2] == ["drop", "reconnected"]
    assert s.processed == len(sink.results) > before


def test_ffmpeg_tcp_stream_killed_and_restarted_mid_run(tmp_path):
    exe = ffmpeg_exe()
    if exe is None:
        pytest.skip("no ffmpeg binary")
    video = write_video(tmp_path / "loop.avi", [pattern_frame(i) for i in range(25)], fps=25)
    server = FfmpegTcpServer(exe, str(video)).start()  # serves one client: no port probe (it would take it)
    sink = ListSink()
    src = open_source(server.url, open_timeout_s=10, read_timeout_s=3, backoff=Backoff(0.2, 2, 1.0))
    t, box = _run_in_thread(src, FakeDetector(), sink, StreamConfig(progress=False, handle_signals=False))
    try:
        assert _wait(lambda: len(sink.results) >= 10, 30), "no frames before the kill"
        server.kill()  # the encoder crashes mid-stream
        time.sleep(1.0)
        before = len(sink.results)
        server.start()
        assert _wait(lambda: len(sink.results) >= before + 10, 40), "no frames after the restart"
    finally:
        src.interrupt()
        t.join(15)
        server.kill()
    assert "error" not in box, box.get("error")
    assert box["summary"].reconnects >= 1 and box["summary"].processed > before


def test_dropped_stream_gives_up_after_reconnect_timeout():
    server = MjpegServer([pattern_frame(0)], fps=25).start()
    assert wait_port(server.port)
    sink = ListSink()
    src = open_source(server.url, open_timeout_s=5, read_timeout_s=2, reconnect_timeout_s=1.0,
                      backoff=Backoff(0.2, 2, 0.5))
    t, box = _run_in_thread(src, FakeDetector(), sink, StreamConfig(progress=False, handle_signals=False))
    assert _wait(lambda: len(sink.results) >= 3, 20)
    server.stop()
    t.join(30)
    assert isinstance(box.get("error"), YoloEdgeError) and "no reconnect within 1" in str(box["error"])
    assert sink.closed


# --- the CLI -------------------------------------------------------------------------------------
def test_cli_run_on_folder_writes_jsonl_and_summary(tmp_path, scenes, detector):
    from yolo_edge.cli import main

    src = tmp_path / "imgs"
    src.mkdir()
    for i in range(3):
        cv2.imwrite(str(src / f"{i}.png"), scenes[i])
    out = tmp_path / "o"
    rc = main(["run", str(src), "--imgsz", "256", "256", "--jsonl", str(out / "d.jsonl"),
               "--summary", str(out / "s.json")])
    assert rc == 0
    assert_records_match(read_jsonl(out / "d.jsonl"), scenes[:3], detector)
    assert json.loads((out / "s.json").read_text())["processed"] == 3


@pytest.mark.parametrize("argv, message", [
    (["run", "/nonexistent/video.mp4"], "source not found"),
    (["run", "/dev/video95"], "/dev/video95"),
    (["run", "0", "--max-frames", "0"], "--max-frames"),
])
def test_cli_run_user_errors(argv, message, capsys):
    from yolo_edge.cli import main

    assert main(argv) == 1
    assert message in capsys.readouterr().err


def test_sigterm_finalizes_outputs(tmp_path, scenes):
    """SIGTERM mid-run: exit 0, every JSON line complete, the video renamed and playable with one
    frame per JSON record."""
    video_in = write_video(tmp_path / "long.avi", [scenes[i % len(scenes)] for i in range(300)])
    jsonl, video = tmp_path / "d.jsonl", tmp_path / "a.mp4"
    env = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
    proc = subprocess.Popen([sys.executable, "-m", "yolo_edge.cli", "run", str(video_in), "--imgsz", "256", "256",
                             "--jsonl", str(jsonl), "--video", str(video)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert _wait(lambda: jsonl.exists() and jsonl.read_text().count("\n") >= 3, 120), proc.stderr
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopped by signal" in out
    records = read_jsonl(jsonl)
    assert 3 <= len(records) < 300 and [r["frame"] for r in records] == list(range(len(records)))
    assert video.exists() and not (tmp_path / "a.partial.mp4").exists()
    assert len(read_video(video)) == len(records)


def test_jsonl_append_keeps_earlier_records(tmp_path):
    """A restarted service appends (--append); without it a new run starts a fresh file."""
    path = tmp_path / "d.jsonl"
    for append, expected in ((False, 3), (True, 6), (False, 3)):
        run_stream(FrameList([pattern_frame(i) for i in range(3)]), FakeDetector(), [JsonlSink(path, append=append)],
                   StreamConfig(progress=False))
        assert [r["frame"] for r in read_jsonl(path)] == [0, 1, 2] * (expected // 3)


@pytest.mark.parametrize("url, transport, expected", [
    ("rtsp://10.0.0.2/live", "tcp", "rtsp_transport;tcp"),
    ("rtsp://10.0.0.2/live", "udp", "rtsp_transport;udp"),
    ("rtsp://10.0.0.2/live", "auto", None),
    ("http://10.0.0.2/mjpg", "tcp", None),
])
def test_rtsp_transport_reaches_opencv_ffmpeg_options(monkeypatch, url, transport, expected):
    """OpenCV's FFmpeg backend reads OPENCV_FFMPEG_CAPTURE_OPTIONS when a capture opens: it must
    hold the transport then, and be restored afterwards."""
    seen = []

    class FakeCapture:
        def __init__(self, *a):
            seen.append(os.environ.get("OPENCV_FFMPEG_CAPTURE_OPTIONS"))

        def isOpened(self):  # noqa: N802
            return False

        def release(self):
            pass

    monkeypatch.delenv("OPENCV_FFMPEG_CAPTURE_OPTIONS", raising=False)
    monkeypatch.setattr(cv2, "VideoCapture", FakeCapture)
    src = open_source(url, rtsp_transport=transport, open_timeout_s=0.0)
    with pytest.raises(YoloEdgeError, match="cannot open stream"):
        src.open()
    assert seen == [expected] and "OPENCV_FFMPEG_CAPTURE_OPTIONS" not in os.environ
    monkeypatch.setenv("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;udp|stimeout;5000000")
    seen.clear()
    with pytest.raises(YoloEdgeError):
        open_source(url, rtsp_transport=transport, open_timeout_s=0.0).open()
    assert seen == ["rtsp_transport;udp|stimeout;5000000"]  # the user's own setting wins


def test_cli_run_power_reports_fps_per_watt(tmp_path, scenes, detector):
    """--power samples tegrastats (here a fake printing real Orin Nano lines) over the run; the
    summary's FPS/W is its FPS over the mean input-rail power."""
    import shlex

    from test_jetson import ORIN_NANO_BUSY, fake_tegrastats

    from yolo_edge.cli import main
    from yolo_edge.jetson.tegrastats import parse_line

    src = tmp_path / "imgs"
    src.mkdir()
    for i in range(2):
        cv2.imwrite(str(src / f"{i}.png"), scenes[i])
    script = fake_tegrastats(tmp_path, [ORIN_NANO_BUSY])
    cmd = shlex.join([sys.executable, str(script), "--interval", "50"])
    out = tmp_path / "s.json"
    assert main(["run", str(src), "--imgsz", "256", "256", "--power", "--power-interval", "50",
                 "--tegrastats-cmd", cmd, "--summary", str(out)]) == 0
    s = json.loads(out.read_text())
    watts = parse_line(ORIN_NANO_BUSY).total_power_w
    assert s["power"]["n_samples"] >= 1 and s["power"]["mean_power_w"] == pytest.approx(watts)
    assert s["power"]["fps_per_watt"] == pytest.approx(s["fps"] / watts)
