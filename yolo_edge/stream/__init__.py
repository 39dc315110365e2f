"""Camera and video streams: sources, sinks and the pipelined runner (capture ∥ detect ∥ render).

    from yolo_edge.stream import open_source, run_stream, JsonlSink, VideoSink
    summary = run_stream(open_source("rtsp://cam/stream"), detector, [JsonlSink("dets.jsonl")])
"""

from .pipeline import Channel, RollingStats, StreamConfig, StreamSummary, pipelined_fps, run_stream
from .sinks import FfmpegSink, FrameResult, JsonlSink, Sink, StreamInfo, VideoSink, WindowSink, frame_record, make_sinks
from .sources import (Backoff, CaptureSource, CorruptFrame, Frame, FrameList, ImageFolderSource, Source,
                      VideoFileSource, open_source)

__all__ = [
    "Backoff", "CaptureSource", "Channel", "CorruptFrame", "FfmpegSink", "Frame", "FrameList", "FrameResult",
    "ImageFolderSource", "JsonlSink", "RollingStats", "Sink", "Source", "StreamConfig", "StreamInfo",
    "StreamSummary", "VideoFileSource", "VideoSink", "WindowSink", "frame_record", "make_sinks", "open_source",
    "pipelined_fps", "run_stream",
]
