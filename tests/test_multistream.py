"""Several sources batched through one detector (``yolo-edge run SRC [SRC …]``, issue 17).

References: single-source runs (``run_stream``) and ``Detector`` called frame by frame on the same
decoded frames; the loopback servers' own counts of frames sent; OpenCV reading back the videos.
Assertions are on counts and ordering, never on timings.
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

from stream_servers import MjpegServer, free_port, pattern_frame, wait_port
from test_stream import assert_records_match, read_jsonl, read_video, write_video
from yolo_edge.detections import Detections
from yolo_edge.errors import YoloEdgeError
from yolo_edge.stream import (Backoff, FrameList, JsonlSink, MultiStreamConfig, Sink, StreamConfig, open_source,
                              read_sources_file, run_multi, run_stream)
from yolo_edge.stream.multi import SourceSlots
from yolo_edge.stream.sinks import MosaicSink, tile_grid

ROOT = Path(__file__).resolve().parents[1]


class BatchFakeDetector:
    """Letterbox like the real one; one box per image whose score encodes the image's mean pixel
    (so a result can be traced back to its frame); records the batch sizes it saw."""

    names = ("thing",)

    def __init__(self, delay: float = 0.0):
        from yolo_edge.spec import LetterboxSpec

        self.delay = delay
        self.spec = LetterboxSpec((64, 64))
        self.batches: list[int] = []

    def preprocess(self, images):
        from yolo_edge.letterbox import letterbox_batch

        return letterbox_batch(images, self.spec)

    def forward(self, batch):
        self.batches.append(batch.shape[0])
        if self.delay:
            time.sleep(self.delay)
        return {"mean": batch.reshape(batch.shape[0], -1).mean(1)}

    def postprocess(self, out):
        return [Detections(np.array([[8, 8, 40, 40]], np.float32), np.array([m], np.float32), np.array([0]))
                for m in out["mean"]]


class RecordSink(Sink):
    """Keeps (source_index, frame index) of every written result, in order; counts batches."""

    def __init__(self, needs_image: bool = False):
        self.needs_image = needs_image
        self.results: list[tuple[int, int]] = []
        self.batches = 0
        self.closed = False
        self.infos = None

    def open(self, info):
        self.infos = info.sources

    def write(self, result):
        self.results.append((result.source_index, result.frame.index))

    def end_batch(self):
        self.batches += 1

    def close(self):
        self.closed = True

    def count(self, i: int) -> int:
        return sum(1 for s, _ in list(self.results) if s == i)


def _wait(pred, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return False


def _cfg(**kw) -> MultiStreamConfig:
    return MultiStreamConfig(progress=False, handle_signals=False, **kw)


# --- the batcher -----------------------------------------------------------------------------------
def test_slots_take_one_frame_per_source_round_robin_past_the_cap():
    slots = SourceSlots([False] * 3, maxsize=8)
    for k in range(4):
        for i in range(3):
            slots.put(i, (i, k))
    got = [slots.take(2, 0.0) for _ in range(6)]
    # at most one frame per source per batch, each source's frames in order, no source starved
    assert [[f for _, f in b] for b in got] == [[(0, 0), (1, 0)], [(0, 1), (2, 0)], [(1, 1), (2, 1)],
                                                [(0, 2), (1, 2)], [(0, 3), (2, 2)], [(1, 3), (2, 3)]]
    for i in range(3):
        slots.close(i)
    assert slots.take(2, 0.0) is None


def test_slots_latest_policy_per_source():
    slots = SourceSlots([True, False], maxsize=4)
    for k in range(5):
        slots.put(0, k)
    for k in range(3):
        slots.put(1, k)
    assert slots.dropped == [4, 0]
    assert slots.take(2, 0.0) == [(0, 4), (1, 0)]


def test_slots_wait_for_a_silent_source_only_once():
    """A source that misses one batch deadline is not waited for again until it delivers: with a
    60 s timeout the later batches return at once (a batcher that waited would hang the test)."""
    slots = SourceSlots([True, True], maxsize=1)
    slots.put(0, "a0")
    assert slots.take(2, 0.05) == [(0, "a0")] and slots.stalled == [False, True]
    out = []

    def more():
        for k in range(3):
            slots.put(0, f"a{k + 1}")
            out.append(slots.take(2, 60.0))

    t = threading.Thread(target=more, daemon=True)
    t.start()
    t.join(20)
    assert not t.is_alive() and out == [[(0, "a1")], [(0, "a2")], [(0, "a3")]]
    slots.put(1, "b0")  # back: waited for again
    assert slots.stalled == [False, False]
    slots.put(0, "a4")
    assert slots.take(2, 60.0) == [(0, "a4"), (1, "b0")]


# --- detections equal single-source runs ----------------------------------------------------------
@pytest.fixture(scope="module")
def scenes():
    from yolo_edge.data import load_dataset

    ds = load_dataset("synthetic:val")
    return [cv2.resize(ds[i].image, (320, 240)) for i in range(9)]


@pytest.fixture(scope="module")
def onnx_models(tmp_path_factory):
    """The bundled checkpoint exported at 320: dynamic batch, and static batch 2 (padded)."""
    pytest.importorskip("onnxruntime")
    from yolo_edge.export import export_onnx

    d = tmp_path_factory.mktemp("m")
    return {"dynamic": export_onnx(None, d / "dyn.onnx", imgsz=(320, 320), verbose=False),
            "static2": export_onnx(None, d / "b2.onnx", imgsz=(320, 320), dynamic_batch=False, batch=2,
                                   verbose=False)}


@pytest.mark.parametrize("kind", ["dynamic", "static2"])
def test_three_sources_give_the_detections_of_single_source_runs(tmp_path, scenes, onnx_models, kind):
    """Three videos of different content and length through one batched detector: each source's
    JSON records equal a single-source run over the same file, field by field, and Detector
    called on each frame. The static batch-2 model serves 3 sources in padded batches of ≤ 2."""
    from yolo_edge.runtime import Detector, load_runner

    videos = [write_video(tmp_path / f"v{k}.avi", [scenes[(k * 3 + j) % 9] for j in range(5 + 2 * k)])
              for k in range(3)]
    det = Detector(load_runner(onnx_models[kind]))
    with det:
        singles = []
        for k, v in enumerate(videos):
            run_stream(open_source(str(v)), det, [JsonlSink(tmp_path / f"s{k}.jsonl")],
                       StreamConfig(progress=False, handle_signals=False))
            singles.append(read_jsonl(tmp_path / f"s{k}.jsonl"))
        sink = RecordSink()
        s = run_multi([open_source(str(v)) for v in videos], det, [JsonlSink(tmp_path / "m.jsonl"), sink],
                      _cfg(), names=["a", None, "c"])
        multi = read_jsonl(tmp_path / "m.jsonl")
        assert s.batch == (2 if kind == "static2" else 3) and max(s.mean_batch, 1) > 1
        for k in range(3):
            mine = [r for r in multi if r["source_index"] == k]
            assert [r["frame"] for r in mine] == list(range(5 + 2 * k))
            assert {r["source"] for r in mine} == {["a", str(videos[1]), "c"][k]}
            for m, one in zip(mine, singles[k]):
                assert m["detections"] == one["detections"]  # exactly: same numbers, same order
                assert (m["width"], m["height"], m["frame"]) == (one["width"], one["height"], one["frame"])
            assert_records_match(mine, [read_video(videos[k])[j] for j in range(len(mine))], det)
            assert s.sources[k]["processed"] == 5 + 2 * k and s.sources[k]["status"] == "ended"
    assert s.processed == 21 and sink.closed and len(sink.infos) == 3


# --- a network source dies and comes back --------------------------------------------------------
def test_one_of_four_network_sources_killed_and_restarted():
    """Four loopback MJPEG cameras; camera 3 goes down mid-run and comes back. With a deliberately
    long batch timeout (0.5 s), the three others keep delivering while it is down — each gets at
    least half the frames its server sent in that window (a batcher that waited for the dead one on
    every batch would get ~2 of 25 a second) — and camera 3 resumes with its frames in order."""
    servers = [MjpegServer([pattern_frame(i + 10 * k) for i in range(10)], fps=25).start() for k in range(4)]
    for s in servers:
        assert wait_port(s.port)
    srcs = [open_source(s.url, open_timeout_s=5, read_timeout_s=3, backoff=Backoff(0.2, 2, 1.0)) for s in servers]
    sink = RecordSink()
    box = {}

    def go():
        try:
            box["summary"] = run_multi(srcs, BatchFakeDetector(delay=0.005), [sink], _cfg(batch_timeout_ms=500))
        except BaseException as e:  # noqa: BLE001
            box["error"] = e

    t = threading.Thread(target=go, daemon=True)
    t.start()
    try:
        assert _wait(lambda: all(sink.count(i) >= 10 for i in range(4)), 30), "not every camera delivered"
        servers[3].stop()
        time.sleep(1.0)  # camera 3's read fails; from here on it is down
        c0, sent0 = [sink.count(i) for i in range(3)], [servers[i].sent for i in range(3)]
        down3 = sink.count(3)
        time.sleep(3.0)
        c1, sent1 = [sink.count(i) for i in range(3)], [servers[i].sent for i in range(3)]
        assert sink.count(3) == down3
        servers[3].start()
        assert _wait(lambda: sink.count(3) >= down3 + 10, 30), "camera 3 did not resume"
    finally:
        for s in srcs:
            s.interrupt()
        t.join(20)
        for s in servers:
            s.stop()
    assert "error" not in box, box.get("error")
    for i in range(3):
        got, sent = c1[i] - c0[i], sent1[i] - sent0[i]
        assert got >= 10 and got >= 0.5 * sent, (i, got, sent)
    summary = box["summary"]
    assert [s["reconnects"] for s in summary.sources] == [0, 0, 0, 1]
    for i in range(4):  # each camera's frames in order, none twice
        idx = [f for s, f in sink.results if s == i]
        assert idx == sorted(set(idx)) and summary.sources[i]["processed"] == len(idx)


# --- a source that never opens ---------------------------------------------------------------------
def test_dead_source_at_start_fails_naming_it_or_is_skipped(tmp_path):
    cam = MjpegServer([pattern_frame(i) for i in range(5)], fps=25).start()
    assert wait_port(cam.port)
    port = free_port()
    dead_url = f"http://127.0.0.1:{port}/stream.mjpg"

    def sources():
        return [open_source(cam.url, open_timeout_s=5, read_timeout_s=3),
                open_source(dead_url, open_timeout_s=0.5, backoff=Backoff(0.2, 2, 0.5))]

    try:
        with pytest.raises(YoloEdgeError, match=rf"source 1 \({dead_url}\).*--skip-dead"):
            run_multi(sources(), BatchFakeDetector(), [RecordSink()], _cfg())

        # --skip-dead: the live one runs; the dead one is retried and joins when its server comes up
        srcs, sink, box, msgs = sources(), RecordSink(), {}, []
        t = threading.Thread(target=lambda: box.update(s=run_multi(srcs, BatchFakeDetector(), [sink],
                                                                   _cfg(skip_dead=True), on_status=msgs.append)),
                             daemon=True)
        t.start()
        assert _wait(lambda: sink.count(0) >= 10, 30)
        assert sink.count(1) == 0 and any("did not open, skipped" in m for m in msgs)
        late = MjpegServer([pattern_frame(0)], fps=25, port=port).start()
        try:
            assert _wait(lambda: sink.count(1) >= 5, 30), msgs
        finally:
            for s in srcs:
                s.interrupt()
            t.join(20)
            late.stop()
        assert [s["status"] for s in box["s"].sources] == ["ended", "ended"]  # interrupted: no more frames
        assert box["s"].sources[1]["processed"] >= 5 and box["s"].sources[1]["error"] is None
        assert any("is up, joining" in m for m in msgs)

        # every source dead: an error even with --skip-dead
        with pytest.raises(YoloEdgeError, match="every source is dead"):
            run_multi([open_source(dead_url.replace(str(port), str(free_port())), open_timeout_s=0.3)],
                      BatchFakeDetector(), [], _cfg(skip_dead=True))
    finally:
        cam.stop()


def test_source_failing_mid_run_ends_only_itself():
    """A camera gone for good (past its reconnect timeout) ends that source; the others finish."""
    cam = MjpegServer([pattern_frame(0)], fps=25).start()
    assert wait_port(cam.port)
    frames = FrameList([pattern_frame(i) for i in range(60)], name="file")
    src = open_source(cam.url, open_timeout_s=5, read_timeout_s=2, reconnect_timeout_s=0.5,
                      backoff=Backoff(0.2, 2, 0.3))
    sink = RecordSink()
    stopper = threading.Thread(target=lambda: (_wait(lambda: sink.count(1) >= 3, 20), cam.stop()), daemon=True)
    stopper.start()
    s = run_multi([frames, src], BatchFakeDetector(delay=0.05), [sink], _cfg(latest=False))
    assert s.sources[0]["processed"] == 60 and s.sources[0]["status"] == "ended"
    assert s.sources[1]["status"] == "failed" and "no reconnect within 0.5" in s.sources[1]["error"]


# --- memory ----------------------------------------------------------------------------------------
def test_memory_stays_flat_with_several_sources():
    """Peak traced memory of 3 x 1000 frames is within a few MB of 3 x 100 (frames, annotated
    copies, per-source statistics and the mosaic are not accumulated)."""
    frame = pattern_frame(0, size=(480, 640))

    class Null(Sink):
        def write(self, result):
            pass

    def peak(n):
        tracemalloc.start()
        run_multi([FrameList([frame] * n, name=f"s{k}") for k in range(3)], BatchFakeDetector(),
                  [RecordSink(needs_image=True), MosaicSink(Null(), 3, (320, 180))], _cfg(overlay=True))
        p = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return p

    short, long = peak(100), peak(1000)
    assert long - short < 6 * 2**20, (short, long)  # 2700 more frames of 0.9 MB each would be 2.4 GB


# --- outputs and the CLI ---------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("a.mp4\nrtsp://10.0.0.2/s door\n# comment\n\n", [("a.mp4", None), ("rtsp://10.0.0.2/s", "door")]),
    ("v4l2src ! videoconvert ! appsink\tdesk\n", [("v4l2src ! videoconvert ! appsink", "desk")]),
    ("v4l2src ! videoconvert ! appsink\n", [("v4l2src ! videoconvert ! appsink", None)]),
])
def test_sources_file(tmp_path, text, expected):
    p = tmp_path / "s.txt"
    p.write_text(text)
    assert read_sources_file(p) == expected


@pytest.mark.parametrize("text, message", [("", "no sources"), ("a.mp4 x\nb.mp4 x\n", "unique")])
def test_sources_file_errors(tmp_path, text, message):
    p = tmp_path / "s.txt"
    p.write_text(text)
    with pytest.raises(YoloEdgeError, match=message):
        read_sources_file(p)


def test_cli_several_sources_jsonl_pattern_videos_mosaic_and_summary(tmp_path, scenes):
    """`run a b --sources FILE`: one JSONL with source fields, one video per source from the
    pattern, a mosaic with --tile, per-source numbers in the summary."""
    from yolo_edge.cli import main

    vids = [write_video(tmp_path / f"v{k}.avi", [scenes[(j + k) % 9] for j in range(3 + k)]) for k in range(3)]
    lst = tmp_path / "cams.txt"
    lst.write_text(f"{vids[2]} yard\n")
    out = tmp_path / "o"
    rc = main(["run", str(vids[0]), str(vids[1]), "--sources", str(lst), "--imgsz", "256", "256",
               "--jsonl", str(out / "d.jsonl"), "--video", str(out / "a_{source}.mp4"),
               "--summary", str(out / "s.json")])
    assert rc == 0
    recs = read_jsonl(out / "d.jsonl")
    for k, label in enumerate(["0", "1", "yard"]):
        mine = [r for r in recs if r["source_index"] == k]
        assert [r["frame"] for r in mine] == list(range(3 + k))
        assert len(read_video(out / f"a_{label}.mp4")) == 3 + k
    assert {r["source"] for r in recs if r["source_index"] == 2} == {"yard"}
    s = json.loads((out / "s.json").read_text())
    assert [x["processed"] for x in s["sources"]] == [3, 4, 5] and s["processed"] == 12
    assert {"fps", "dropped", "reconnects", "latency", "corrupt"} <= set(s["sources"][0])

    rc = main(["run", str(vids[0]), str(vids[1]), str(vids[2]), "--imgsz", "256", "256", "--video",
               str(out / "mosaic.mp4"), "--tile", "--tile-size", "160", "90"])
    assert rc == 0
    mosaic = read_video(out / "mosaic.mp4")
    rows, cols = tile_grid(3)
    assert mosaic[0].shape[:2] == (rows * 90, cols * 160) and 5 <= len(mosaic) <= 12


@pytest.mark.parametrize("extra, message", [
    (["--video", "out.mp4"], "{source}"),
    (["--batch", "0"], "--batch"),
])
def test_cli_several_sources_user_errors(tmp_path, scenes, extra, message, capsys):
    from yolo_edge.cli import main

    v = write_video(tmp_path / "v.avi", scenes[:2])
    assert main(["run", str(v), str(v), "--imgsz", "256", "256", *extra]) == 1
    assert message in capsys.readouterr().err


def test_cli_dead_source_at_start(tmp_path, scenes, capsys):
    from yolo_edge.cli import main

    v = write_video(tmp_path / "v.avi", scenes[:3])
    dead = f"http://127.0.0.1:{free_port()}/x.mjpg"
    base = ["run", str(v), dead, "--imgsz", "256", "256", "--open-timeout", "0.5", "--summary",
            str(tmp_path / "s.json")]
    assert main(base) == 1
    err = capsys.readouterr().err
    assert dead in err and "--skip-dead" in err
    assert main(base + ["--skip-dead", "--duration", "3"]) == 0
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["sources"][0]["processed"] == 3 and s["sources"][1]["status"] in ("dead", "stopped")
    assert s["sources"][1]["processed"] == 0


def test_sigterm_finalizes_every_output(tmp_path, scenes):
    """SIGTERM mid-run with two sources: exit 0, every JSON line complete, each per-source video
    renamed and playable with one frame per record of its source."""
    vids = [write_video(tmp_path / f"long{k}.avi", [scenes[(i + k) % 9] for i in range(300)]) for k in range(2)]
    jsonl = tmp_path / "d.jsonl"
    env = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
    proc = subprocess.Popen([sys.executable, "-m", "yolo_edge.cli", "run", str(vids[0]), str(vids[1]), "--imgsz",
                             "256", "256", "--jsonl", str(jsonl), "--video", str(tmp_path / "a_{source}.mp4")],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert _wait(lambda: jsonl.exists() and jsonl.read_text().count("\n") >= 6, 120), proc.stderr
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopped by signal" in out
    records = read_jsonl(jsonl)
    assert 6 <= len(records) < 600
    for k in range(2):
        mine = [r["frame"] for r in records if r["source_index"] == k]
        assert mine == list(range(len(mine)))
        assert not (tmp_path / f"a_{k}.partial.mp4").exists()
        assert len(read_video(tmp_path / f"a_{k}.mp4")) == len(mine)
