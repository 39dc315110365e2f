"""Training: task-aligned assigner, CIoU + DFL + BCE losses, augmentations, trainer (torch).

    from yolo_edge.train import TrainConfig, train, val
    best = train(TrainConfig(epochs=30, train_crop=320, max_train_minutes=60))
    print(val(best, "synthetic:val").summary_line())
"""

from yolo_edge.train.assigner import Assignment, TaskAlignedAssigner
from yolo_edge.train.augment import AugmentConfig, Augmenter
from yolo_edge.train.loss import DetectionLoss, LossGains, bbox_iou, dfl_loss
from yolo_edge.train.trainer import ModelEMA, TrainConfig, TrainSamples, collate, train, val

__all__ = [
    "Assignment",
    "AugmentConfig",
    "Augmenter",
    "DetectionLoss",
    "LossGains",
    "ModelEMA",
    "TaskAlignedAssigner",
    "TrainConfig",
    "TrainSamples",
    "bbox_iou",
    "collate",
    "dfl_loss",
    "train",
    "val",
]
