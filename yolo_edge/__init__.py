"""yolo-edge: YOLO from PyTorch to verified FP32/FP16/INT8 inference on Jetson and desktop GPUs.

The base package is numpy + OpenCV only; torch, onnx, onnxruntime and tensorrt are imported
lazily by the modules that need them.
"""

from .detections import Detections
from .errors import MissingDependency, YoloEdgeError
from .letterbox import LetterboxMeta, letterbox, unletterbox
from .spec import LetterboxSpec, ModelSpec, NmsSpec

__version__ = "0.1.0"

__all__ = [
    "Detections", "LetterboxMeta", "LetterboxSpec", "MissingDependency", "ModelSpec", "NmsSpec",
    "YoloEdgeError", "__version__", "letterbox", "unletterbox",
]
