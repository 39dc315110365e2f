"""Is this file a model we can use? One-line answers for empty, truncated and foreign ONNX files,
checked when the file is read (before an export, a build or a calibration starts)."""

from __future__ import annotations

from pathlib import Path

from .errors import ModelFormatError

DETECTOR_OUTPUTS = (("num_dets", "det_boxes", "det_scores", "det_classes"), ("boxes", "scores"))


def check_onnx_proto(model, path) -> None:
    """Refuse an ONNX ``ModelProto`` that parsed but holds no model (an empty or cut-off file parses
    as an empty message, which would otherwise read as "opset 0")."""
    p = Path(path)
    if p.is_file() and p.stat().st_size == 0:
        raise ModelFormatError(f"{p} is empty (0 bytes): export it again (yolo-edge export)")
    graph = getattr(model, "graph", None)
    if graph is None or not len(graph.node) or not len(graph.output) or not len(model.opset_import):
        raise ModelFormatError(f"{p} holds no ONNX graph (an empty, truncated or non-ONNX file): export it again")


def check_detector_io(path, inputs, outputs) -> None:
    """A yolo-edge detector: one image input ``[B, 3, H, W]`` and the NMS or ``boxes``/``scores`` outputs
    (DESIGN §2). ``inputs``: ``[(name, shape)]``; ``outputs``: names."""
    names = set(outputs)
    if not any(set(group) <= names for group in DETECTOR_OUTPUTS):
        raise ModelFormatError(
            f"{path} is not a yolo-edge detector (outputs {sorted(names)}; expected {list(DETECTOR_OUTPUTS[0])} or "
            f"{list(DETECTOR_OUTPUTS[1])}): export one with yolo-edge export, or adapt a YOLO ONNX with "
            "yolo-edge export --from-onnx")
    if len(inputs) != 1 or len(inputs[0][1]) != 4 or inputs[0][1][1] not in (3, None):
        shown = [(n, list(s)) for n, s in inputs]
        raise ModelFormatError(f"{path} is not a yolo-edge detector: expected one image input [B, 3, H, W], got {shown}")
