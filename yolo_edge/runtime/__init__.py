"""Runners (PyTorch, ONNX Runtime, TensorRT) behind one protocol, and the Detector."""

from __future__ import annotations

from pathlib import Path

from ..errors import YoloEdgeError
from .base import Runner, TensorInfo
from .detector import Detector

BACKENDS = {".pt": "torch", ".pth": "torch", ".onnx": "onnxruntime", ".engine": "tensorrt", ".plan": "tensorrt"}


def backend_for(path, backend: str | None = None) -> str:
    if backend:
        return backend
    suffix = Path(path).suffix.lower()
    if suffix not in BACKENDS:
        raise YoloEdgeError(f"cannot tell the backend of '{path}' from its suffix; use .pt, .onnx or .engine, "
                            "or pass --backend torch|onnxruntime|tensorrt")
    return BACKENDS[suffix]


def load_runner(path, backend: str | None = None, device: str = "cpu", imgsz=None) -> Runner:
    """Open a model file with the backend its suffix (or ``backend``) names; a
    ``grpc://HOST:PORT/MODEL`` or ``http://…`` URI opens a model on a Triton server."""
    if str(path).startswith(("grpc:/", "http:/", "https:/")):
        from .triton_runner import TritonRunner

        return TritonRunner(str(path))
    path = Path(path)
    if not path.exists():
        raise YoloEdgeError(f"model not found: {path}")
    kind = backend_for(path, backend)
    if kind == "torch":
        from .torch_runner import TorchRunner

        return TorchRunner(path, imgsz=imgsz, device=device)
    if kind in ("onnxruntime", "ort"):
        from .ort_runner import OrtRunner

        return OrtRunner(path, providers="cpu" if device == "cpu" else device)
    if kind in ("tensorrt", "trt"):
        from .trt_runner import TrtRunner  # type: ignore[import-not-found]

        return TrtRunner(path)
    raise YoloEdgeError(f"unknown backend '{kind}'; choose torch, onnxruntime or tensorrt")


__all__ = ["BACKENDS", "Detector", "Runner", "TensorInfo", "backend_for", "load_runner"]
