"""Training: task-aligned assigner, CIoU + DFL + BCE losses, augmentations, trainer (torch).

    from yolo_edge.train import TrainConfig, train, val
    best = train(TrainConfig(epochs=30, train_crop=320, max_train_minutes=60))
    print(val(best, "synthetic:val").summary_line())

Names are imported on first use, so ``import yolo_edge.train.cli`` (the ``yolo-edge train``
parser) does not import torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Assignment": "assigner",
    "TaskAlignedAssigner": "assigner",
    "AugmentConfig": "augment",
    "Augmenter": "augment",
    "DetectionLoss": "loss",
    "LossGains": "loss",
    "bbox_iou": "loss",
    "dfl_loss": "loss",
    "ModelEMA": "trainer",
    "TrainConfig": "trainer",
    "TrainSamples": "trainer",
    "collate": "trainer",
    "train": "trainer",
    "val": "trainer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"yolo_edge.train.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'yolo_edge.train' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
