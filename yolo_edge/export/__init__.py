"""torch -> ONNX export, NMS embedding and adapters for third-party YOLO ONNX (DESIGN §1–2).

    from yolo_edge.export import export_onnx, adapt_onnx, add_nms
    export_onnx("yolo11n.pt", "yolo11n.onnx", imgsz=640, nms=NmsSpec("onnx"))
    adapt_onnx("yolov8n.onnx", "yolov8n.nms.onnx", fmt="yolov8")

Importing this package imports neither torch nor onnx; the functions do when called.
"""

from __future__ import annotations

from .adapters import FORMATS, adapt_onnx
from .metadata import build_spec, get_spec, read_ultralytics_metadata, set_metadata
from .nms import MIN_NMS_OPSET, add_nms, efficient_nms_reference, nms_model, trt_attributes
from .onnx_export import DEFAULT_OPSET, export_onnx

__all__ = [
    "DEFAULT_OPSET", "FORMATS", "MIN_NMS_OPSET", "adapt_onnx", "add_nms", "build_spec", "efficient_nms_reference",
    "export_onnx", "get_spec", "nms_model", "read_ultralytics_metadata", "set_metadata", "trt_attributes",
]
