"""TensorRT: engine build, provenance manifests, engine inspection, trtexec lines, CUDA buffers.

The only package that imports ``tensorrt``, ``pycuda`` or ``cuda`` (always lazily: importing it
needs neither). The TensorRT runner (:mod:`yolo_edge.runtime.trt_runner`) gets its TensorRT and
CUDA handles from here.

    from yolo_edge.trt import BuildConfig, build
    build(BuildConfig("model.int8.onnx", max_batch=8))    # model.int8.engine + .manifest.json
"""

from __future__ import annotations

from .build import BuildConfig, BuildPlan, BuildResult, adopt_engine, build, build_engine, plan_build, read_onnx
from .compat import TrtVersion
from .inspect import EngineReport, inspect_engine, parse_engine_information
from .manifest import (EngineMismatch, check_files, check_manifest, current_environment, manifest_path,
                       parse_tegra_release, read_manifest, verify)
from .trtexec import trtexec_command

__all__ = [
    "BuildConfig", "BuildPlan", "BuildResult", "EngineMismatch", "EngineReport", "TrtVersion", "adopt_engine", "build",
    "build_engine", "check_files", "check_manifest", "current_environment", "inspect_engine", "manifest_path",
    "parse_engine_information", "parse_tegra_release", "plan_build", "read_manifest", "read_onnx", "trtexec_command",
    "verify",
]
