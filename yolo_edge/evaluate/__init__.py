"""Evaluation: COCO box mAP through pycocotools and confidence calibration (ECE).

Backend-agnostic: the evaluator takes :class:`~yolo_edge.detections.Detections` from any runner.
Importing this package needs numpy only; pycocotools and matplotlib are imported when used.
"""

from .calibration_error import (
    ReliabilityDiagram,
    box_iou,
    expected_calibration_error,
    greedy_match,
    reliability_diagram,
)
from .coco import COCO_STATS_NAMES, DetectionEvaluator, EvalResult
from .plots import plot_pr_curves, plot_reliability

__all__ = [
    "COCO_STATS_NAMES",
    "DetectionEvaluator",
    "EvalResult",
    "ReliabilityDiagram",
    "box_iou",
    "expected_calibration_error",
    "greedy_match",
    "plot_pr_curves",
    "plot_reliability",
    "reliability_diagram",
]
