"""``yolo-edge run SOURCE [SOURCE …]``: detect on video files, image folders, USB/CSI cameras or network
streams; several sources (or ``--sources FILE``) are batched through one detector (:mod:`.multi`)."""

from __future__ import annotations

import argparse
import json
import sys


def cmd_run(args) -> int:
    from ..cli import open_detector
    from ..errors import YoloEdgeError
    from ..redact import redact_url
    from ..util import atomic_write
    from .pipeline import StreamConfig, run_stream
    from .sinks import make_sinks
    from .sources import open_source

    if args.max_frames is not None and args.max_frames < 1:
        raise YoloEdgeError(f"--max-frames must be >= 1, got {args.max_frames}")
    if args.duration is not None and args.duration <= 0:
        raise YoloEdgeError(f"--duration must be > 0, got {args.duration}")
    if args.queue < 1:
        raise YoloEdgeError(f"--queue must be >= 1, got {args.queue}")
    from ..preflight import check_output_file

    for opt, path in (("--jsonl", args.jsonl), ("--video", args.video), ("--summary", args.summary)):
        if path:
            check_output_file(path, opt)  # before the source and the model are opened

    def on_event(kind: str, msg: str) -> None:
        print(f"yolo-edge run: {redact_url(msg)}", file=sys.stderr)

    specs: list[tuple[str, str | None]] = [(s, None) for s in [args.source, *args.more_sources] if s is not None]
    if args.sources:
        from .multi import read_sources_file

        specs += read_sources_file(args.sources)
    if not specs:
        raise YoloEdgeError("no source: give one or more SOURCE arguments or --sources FILE")
    multi = len(specs) > 1
    if not multi and (args.tile or args.skip_dead):
        raise YoloEdgeError("--tile and --skip-dead are for several sources")
    srcs = [open_source(spec, realtime=args.realtime, gstreamer=args.gstreamer, width=args.width,
                        height=args.height, fps=args.fps, open_timeout_s=args.open_timeout,
                        read_timeout_s=args.open_timeout, reconnect_timeout_s=args.reconnect_timeout,
                        on_event=on_event, rtsp_transport=args.rtsp_transport) for spec, _ in specs]
    show = args.show and not args.no_window
    if multi:
        from .sinks import make_multi_sinks, source_label

        labels = [source_label(name, i) for i, (_, name) in enumerate(specs)]
        sinks = make_multi_sinks(len(srcs), labels, jsonl=args.jsonl, video=args.video, tile=args.tile,
                                 tile_size=tuple(args.tile_size), show=show, stream_out=args.rtsp_out,
                                 append=args.append)
    else:
        sinks = make_sinks(jsonl=args.jsonl, video=args.video, show=show, stream_out=args.rtsp_out,
                           append=args.append)
    if not sinks:
        print("yolo-edge run: no output chosen (--jsonl, --video, --show, --rtsp-out); printing the summary only",
              file=sys.stderr)
    imgsz = tuple(args.imgsz) if args.imgsz else None
    det = open_detector(args.model, args.backend, args.device, imgsz, args)
    latest = True if args.latest else (False if args.every_frame else None)
    common = dict(latest=latest, queue_size=args.queue, max_frames=args.max_frames, duration_s=args.duration,
                  overlay=not args.no_overlay)
    if multi:
        from .multi import MultiStreamConfig, run_multi

        cfg = MultiStreamConfig(batch=args.batch, batch_timeout_ms=args.batch_timeout_ms, skip_dead=args.skip_dead,
                                **common)
        names = [name for _, name in specs]

        def run(det):
            return run_multi(srcs, det, sinks, cfg, names=names)
    else:
        cfg = StreamConfig(**common)

        def run(det):
            return run_stream(srcs[0], det, sinks, cfg)
    power = None
    if args.power:  # Jetson: tegrastats over the run gives W and FPS/W
        import shlex

        from ..jetson.tegrastats import TegrastatsReader

        cmd = shlex.split(args.tegrastats_cmd) if args.tegrastats_cmd else None
        power = TegrastatsReader(interval_ms=args.power_interval, command=cmd, max_samples=3600).start()
    try:
        with det:
            summary = run(det)
    finally:
        if power is not None:
            power.wait_for(1, timeout=3 * args.power_interval / 1000)  # a short run still gets a reading
            power.stop()
    if power is not None:
        from ..jetson.power import fps_per_watt

        p = power.summary().to_dict()
        w = p.get("mean_power_w")
        p["fps_per_watt"] = fps_per_watt(summary.fps, w) if w else None
        summary.power = p
    print(summary.table())
    if args.summary:
        with atomic_write(args.summary, "w") as f:
            json.dump(summary.to_dict(), f, indent=1)
    outs = [str(p) for p in (args.jsonl, args.video, args.summary) if p]
    if outs:
        print("wrote " + ", ".join(outs))
    return 0


def build_run(p) -> None:
    from ..cli import _model_arg, _nms_args
    from ..cli_types import image_size, positive_float, positive_int

    p.add_argument("source", nargs="?", metavar="SOURCE", help="one or more: video file | image folder | camera index or /dev/videoN | rtsp://… | "
                                             "http(s)://… (MJPEG) | tcp:// or udp:// | csi://N[?width=&height=&fps=&flip=] "
                                             "| a GStreamer pipeline ending in appsink; several are batched through "
                                             "one model")
    p.add_argument("more_sources", nargs="*", metavar="SOURCE", help=argparse.SUPPRESS)  # args.source stays one str
    p.add_argument("--sources", metavar="FILE", help="more sources, one per line: URI [name] (# comments)")
    _model_arg(p)
    _nms_args(p)
    p.add_argument("--imgsz", type=image_size, nargs=2, metavar=("H", "W"), help="input size (PyTorch models only)")
    out = p.add_argument_group("outputs")
    out.add_argument("--jsonl", help="JSON Lines: one record per frame (index, timestamp, boxes in source pixels)")
    out.add_argument("--append", action="store_true", help="append to an existing --jsonl file (services)")
    out.add_argument("--video", help="annotated video file (.mp4, .avi, .mkv), finalized on exit; several sources: "
                                     "a pattern with {source} (out_{source}.mp4: the source's name, else its "
                                     "index) or one mosaic with --tile")
    out.add_argument("--tile", action="store_true", help="several sources: --video/--rtsp-out/--show get one "
                                                         "mosaic of all sources (the window always does)")
    out.add_argument("--tile-size", type=int, nargs=2, default=(640, 360), metavar=("W", "H"),
                     help="mosaic cell size (default 640 360)")
    out.add_argument("--show", action="store_true", help="show an on-screen window (q / Esc stops)")
    out.add_argument("--no-window", action="store_true", help="never open a window (for services)")
    out.add_argument("--rtsp-out", metavar="URL", help="re-stream annotated video via ffmpeg: rtsp://server/path "
                                                        "(needs an RTSP server), udp://host:port or tcp://… (MPEG-TS)")
    out.add_argument("--summary", metavar="JSON", help="write the end-of-run summary (FPS, per-stage ms) as JSON")
    out.add_argument("--no-overlay", action="store_true", help="no FPS/latency text on annotated frames")
    run = p.add_argument_group("pipeline")
    pol = run.add_mutually_exclusive_group()
    pol.add_argument("--latest", action="store_true", help="drop stale frames (default for cameras and streams)")
    pol.add_argument("--every-frame", action="store_true", help="process every frame (default for files)")
    run.add_argument("--realtime", action="store_true", help="read a video file at its own fps, like a camera")
    run.add_argument("--queue", type=int, default=4, help="queue length between stages (every-frame mode)")
    run.add_argument("--max-frames", type=int, default=None, help="stop after N processed frames (per source)")
    run.add_argument("--batch", type=int, default=None, help="several sources: most frames per inference (default: "
                                                             "the engine's static batch, else 8)")
    run.add_argument("--batch-timeout-ms", type=float, default=40.0, help="several sources: how long a batch waits "
                                                                          "for a slow source (default 40)")
    run.add_argument("--skip-dead", action="store_true", help="several sources: a source that does not open at "
                                                              "start is skipped (cameras/streams retried in the "
                                                              "background) instead of failing the run")
    run.add_argument("--duration", type=float, default=None, help="stop after S seconds")
    pw = p.add_argument_group("power (Jetson)")
    pw.add_argument("--power", action="store_true", help="sample tegrastats during the run: mean W and FPS/W in the summary")
    pw.add_argument("--power-interval", type=positive_int, default=1000, metavar="MS", help="tegrastats interval (default 1000)")
    pw.add_argument("--tegrastats-cmd", default=None, metavar="CMD", help="tegrastats command (default: tegrastats "
                    "--interval MS; e.g. 'sudo tegrastats --interval 500')")
    cam = p.add_argument_group("source")
    cam.add_argument("--width", type=positive_int, help="camera capture width")
    cam.add_argument("--height", type=positive_int, help="camera capture height")
    cam.add_argument("--fps", type=positive_float, help="camera capture frame rate")
    cam.add_argument("--gstreamer", choices=["auto", "on", "off"], default="auto",
                     help="USB/RTSP through GStreamer (hardware decode on Jetson); auto: on Jetson when available")
    cam.add_argument("--rtsp-transport", choices=["tcp", "udp", "auto"], default="tcp",
                     help="RTSP over TCP (default: no lost packets, no smeared frames), UDP, or FFmpeg's choice")
    cam.add_argument("--open-timeout", type=positive_float, default=10.0, help="seconds a source may take to open")
    cam.add_argument("--reconnect-timeout", type=positive_float, default=None,
                     help="give up a dropped network stream after S seconds (default: keep trying)")


COMMANDS = [("run", cmd_run, "detect on a video, image folder, camera or network stream (pipelined)", build_run)]
