"""Camera and video streams: sources, sinks and the pipelined runner (capture ∥ detect ∥ render).

    from yolo_edge.stream import open_source, run_stream, JsonlSink, VideoSink
    summary = run_stream(open_source("rtsp://cam/stream"), detector, [JsonlSink("dets.jsonl")])
    summary = run_multi([open_source(u) for u in urls], detector, [JsonlSink("dets.jsonl")])  # batched
"""

from .multi import MultiStreamConfig, MultiStreamSummary, read_sources_file, run_multi
from .pipeline import Channel, RollingStats, StreamConfig, StreamSummary, pipelined_fps, run_stream
from .sinks import (FfmpegSink, FrameResult, JsonlSink, MosaicSink, PerSourceSink, Sink, StreamInfo, VideoSink,
                    WindowSink, frame_record, make_multi_sinks, make_sinks)
from .sources import (Backoff, CaptureSource, CorruptFrame, Frame, FrameList, ImageFolderSource, Source,
                      VideoFileSource, open_source)

__all__ = [
    "Backoff", "CaptureSource", "Channel", "CorruptFrame", "FfmpegSink", "Frame", "FrameList", "FrameResult",
    "ImageFolderSource", "JsonlSink", "MosaicSink", "MultiStreamConfig", "MultiStreamSummary", "PerSourceSink",
    "RollingStats", "Sink", "Source", "StreamConfig", "StreamInfo",
    "StreamSummary", "VideoFileSource", "VideoSink", "WindowSink", "frame_record", "make_multi_sinks", "make_sinks",
    "open_source", "pipelined_fps", "read_sources_file", "run_multi", "run_stream",
]
