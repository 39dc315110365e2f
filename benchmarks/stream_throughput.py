"""Pipelined stream throughput on a video file (issue 7 goal).

    python benchmarks/stream_throughput.py                     # bundled n model, ONNX Runtime CPU, 300 frames
    python benchmarks/stream_throughput.py --model model.onnx --frames 600 --size 1920 1080

Exports the bundled checkpoint to ONNX (NMS embedded, 640) in a temporary folder unless ``--model``
is given, writes a synthetic-scene video (MJPG, ``--size``), then runs ``yolo-edge run``'s pipeline
(capture ∥ detect ∥ render) over every frame twice:

* ``jsonl``: JSON Lines only (render = serialise one record);
* ``jsonl+video``: JSON Lines and an annotated MP4 (render = draw + overlay + encode).

For each it reports the per-stage means (capture, pre, infer, post, detect = pre+infer+post,
render), end-to-end FPS, the ideal FPS of the slowest stage (1000 / its mean ms) and their ratio.
Goal: ratio ≥ 90 %. It also prints the sequential FPS (one frame at a time through all stages),
which is what the pipeline buys, and samples the process RSS every 25 frames of a longer run to
show that memory stays flat (``--rss-frames``; plot ``stream_rss.png``).

Writes ``stream_throughput.{md,json}`` and ``stream_rss.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout without installing

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def make_video(path: Path, frames: int, size: tuple[int, int]) -> Path:
    import cv2

    from yolo_edge.data import load_dataset

    ds = load_dataset("synthetic:val")
    w, h = size
    imgs = [cv2.resize(ds[i].image, (w, h)) for i in range(min(50, len(ds)))]
    wr = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (w, h))
    for i in range(frames):
        wr.write(imgs[i % len(imgs)])
    wr.release()
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="model file (default: bundled checkpoint exported to ONNX, NMS embedded)")
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--size", type=int, nargs=2, default=(1280, 720), metavar=("W", "H"))
    ap.add_argument("--rss-frames", type=int, default=1500, help="frames of the memory run (0: skip)")
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args(argv)

    from yolo_edge.bench.device import cpu_cores, cpu_model
    from yolo_edge.bench.worker import current_rss_mb
    from yolo_edge.runtime import Detector, load_runner
    from yolo_edge.stream import JsonlSink, Sink, StreamConfig, VideoFileSource, VideoSink, run_stream

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.model:
            model = Path(args.model)
        else:
            from yolo_edge.export import export_onnx

            model = export_onnx(None, tmp / "model.onnx", imgsz=(640, 640), verbose=False)
        video = make_video(tmp / "in.avi", args.frames, tuple(args.size))
        det = Detector(load_runner(model))
        rows = []
        with det:
            det(VideoFileSource(video).open().read().image)  # warm-up (session, caches)
            for name, sinks in (("jsonl", lambda: [JsonlSink(tmp / "d.jsonl")]),
                                ("jsonl+video", lambda: [JsonlSink(tmp / "d.jsonl"), VideoSink(tmp / "a.mp4")])):
                s = run_stream(VideoFileSource(video), det, sinks(), StreamConfig(progress=True, handle_signals=False))
                st = {k: v["mean_ms"] for k, v in s.stages.items()}
                sequential = 1000.0 / (st["capture"] + st["detect"] + st["render"])
                rows.append({"outputs": name, "frames": s.processed, "fps": s.fps, "ideal_fps": s.ideal_fps,
                             "ratio": s.efficiency, "bottleneck": s.bottleneck, "sequential_fps": sequential,
                             "stages_ms": st, "latency_p50_ms": s.latency["p50_ms"]})
                print(s.table(), "\n")

            rss = []
            if args.rss_frames:
                class RssSink(Sink):
                    def write(self, result):
                        if result.frame.index % 25 == 0:
                            rss.append((result.frame.index, current_rss_mb()))

                long_video = make_video(tmp / "long.avi", args.rss_frames, tuple(args.size))
                run_stream(VideoFileSource(long_video), det, [RssSink(), VideoSink(tmp / "long.mp4")],
                           StreamConfig(progress=True, handle_signals=False))

    cmd = "python benchmarks/stream_throughput.py " + " ".join(argv if argv is not None else sys.argv[1:])
    machine = f"{cpu_model()}, {cpu_cores()} cores, no GPU used"
    lines = [f"### Pipelined stream throughput — `{cmd.strip()}`", "",
             f"Model `{Path(args.model).name if args.model else 'bundled yolo11n-synth, ONNX fp32, NMS embedded, 640'}`, "
             f"ONNX Runtime CPU, video {args.size[0]}x{args.size[1]} MJPG, {args.frames} frames, machine: {machine}.",
             "Goal: end-to-end FPS ≥ 90 % of 1000 / (slowest stage mean ms).", "",
             "| outputs | capture ms | pre ms | infer ms | post ms | render ms | FPS | ideal FPS (slowest) | ratio "
             "| sequential FPS |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        st = r["stages_ms"]
        lines.append(f"| {r['outputs']} | {st['capture']:.1f} | {st['pre']:.1f} | {st['infer']:.1f} | {st['post']:.1f} "
                     f"| {st['render']:.1f} | {r['fps']:.2f} | {r['ideal_fps']:.2f} ({r['bottleneck']}) "
                     f"| {100 * r['ratio']:.0f} % | {r['sequential_fps']:.2f} |")
    if rss:
        first = [m for i, m in rss if i >= 100] or [rss[0][1]]
        lines += ["", f"Memory over {args.rss_frames} frames (annotated video written): RSS {first[0]:.0f} MB "
                      f"after 100 frames, {rss[-1][1]:.0f} MB at the end, max {max(m for _, m in rss):.0f} MB "
                      "(`stream_rss.png`)."]
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3))
        ax.plot([i for i, _ in rss], [m for _, m in rss])
        ax.set_xlabel("frame")
        ax.set_ylabel("RSS (MB)")
        ax.set_ylim(0, max(m for _, m in rss) * 1.2)
        ax.set_title("yolo-edge run: process memory over a long video")
        fig.tight_layout()
        fig.savefig(out / "stream_rss.png", dpi=100)
    md = "\n".join(lines) + "\n"
    (out / "stream_throughput.md").write_text(md)
    (out / "stream_throughput.json").write_text(json.dumps({"command": cmd.strip(), "machine": machine,
                                                            "rows": rows, "rss_mb": rss}, indent=1))
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
