"""Deserialized engines and their I/O tensors, through the tensor-name API (TensorRT 8.5+, 10.x, 11.x:
``num_io_tensors``, ``get_tensor_name``, ``get_tensor_mode``, ``get_tensor_shape``,
``get_tensor_dtype``, ``get_tensor_profile_shape``; the binding API is gone in 10)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import YoloEdgeError
from .compat import TrtVersion, dims, init_plugins, make_logger, nptype, tensorrt


@dataclass(frozen=True)
class IOTensor:
    name: str
    is_input: bool
    shape: tuple  # -1 for dynamic axes
    dtype: np.dtype
    profile: tuple | None = None  # inputs with dynamic axes: (min, opt, max) of profile 0


def load_engine(path, trt=None, verbose: bool = False):
    """``(trt, runtime, engine)`` of a serialized engine file."""
    path = Path(path)
    trt = trt or tensorrt()
    TrtVersion.of(trt).require_supported()
    logger = make_logger(trt, verbose)
    init_plugins(trt, logger, required=False)  # engines with EfficientNMS_TRT need the registry
    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(path.read_bytes())
    if engine is None:
        raise YoloEdgeError(f"TensorRT {trt.__version__} cannot deserialize {path}: it was built by another TensorRT "
                            "version or for another GPU, or it needs a plugin library that is not loaded (see the "
                            "TensorRT error above); rebuild it with yolo-edge build")
    return trt, runtime, engine


def io_tensors(engine, trt) -> list[IOTensor]:
    out = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
        shape = dims(engine.get_tensor_shape(name))
        profile = None
        if is_input and any(d < 0 for d in shape):
            profile = tuple(dims(s) for s in engine.get_tensor_profile_shape(name, 0))
        out.append(IOTensor(name, is_input, shape, nptype(trt, engine.get_tensor_dtype(name)), profile))
    return out
