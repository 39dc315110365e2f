"""Jetson helpers: tegrastats parsing and sampling, power modes, clocks, board facts, FPS/W.

Standard library only (no numpy, no TensorRT); every function that runs an NVIDIA tool takes an
injectable runner, so all of it is tested off a Jetson::

    from yolo_edge.jetson import TegrastatsReader, fps_per_watt
    with TegrastatsReader(interval_ms=500) as ts:
        fps = run_benchmark()
    print(fps_per_watt(fps, ts.summary().mean_power_w))
"""

from __future__ import annotations

from .power import (CommandResult, JetsonInfo, NotOnJetson, PowerMode, clocks_maxed, current_power_mode,
                    fps_per_watt, is_jetson, jetson_clocks, jetson_info, parse_jetson_clocks_show,
                    parse_nvpmodel_conf, parse_nvpmodel_query, power_modes, resolve_power_mode, run_command,
                    set_power_mode)
from .tegrastats import (PowerRail, TegrastatsParseError, TegrastatsReader, TegrastatsSample, TegrastatsSummary,
                         available, parse_line, summarize)

__all__ = [
    "CommandResult", "JetsonInfo", "NotOnJetson", "PowerMode", "PowerRail", "TegrastatsParseError",
    "TegrastatsReader", "TegrastatsSample", "TegrastatsSummary", "available", "clocks_maxed", "current_power_mode",
    "fps_per_watt", "is_jetson", "jetson_clocks", "jetson_info", "parse_jetson_clocks_show", "parse_line",
    "parse_nvpmodel_conf", "parse_nvpmodel_query", "power_modes", "resolve_power_mode", "run_command", "set_power_mode", "summarize",
]
