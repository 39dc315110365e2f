"""Datasets (numpy and OpenCV only; no torch).

Every dataset has ``len(ds)``, ``ds[i] -> Sample``, iteration, ``names`` and ``summary``
(a :class:`LabelSummary` of every bad label with file and line). Readers: :class:`YoloTxtDataset`,
:class:`CocoJsonDataset`, :class:`ImageFolder`, :class:`VideoFrames`; the offline default is
:class:`SyntheticScenes` (canonical splits via :func:`synthetic_split`). :func:`load_dataset`
opens any of them from a string; :func:`letterboxed` and :func:`iter_batches` feed them through
the one letterbox.
"""

from .base import IMAGE_SUFFIXES, PROBLEM_KINDS, Dataset, Issue, LabelSummary, Sample, UnreadableImage
from .coco import CocoJsonDataset
from .factory import load_dataset
from .folders import VIDEO_SUFFIXES, ImageFolder, VideoFrames
from .loader import LetterboxedDataset, iter_batches, letterboxed
from .synthetic import (
    DEFAULT_SHAPES,
    SPLITS,
    SYNTHETIC_NAMES,
    Scene,
    SceneConfig,
    SyntheticScenes,
    render_scene,
    synthetic_split,
)
from .yolo import YoloTxtDataset, parse_yolo_labels, write_yolo_dataset

__all__ = [
    "CocoJsonDataset", "DEFAULT_SHAPES", "Dataset", "IMAGE_SUFFIXES", "ImageFolder", "Issue",
    "LabelSummary", "LetterboxedDataset", "PROBLEM_KINDS", "SPLITS", "SYNTHETIC_NAMES", "Sample",
    "Scene", "SceneConfig", "SyntheticScenes", "UnreadableImage", "VIDEO_SUFFIXES", "VideoFrames",
    "YoloTxtDataset", "iter_batches", "letterboxed", "load_dataset", "parse_yolo_labels",
    "render_scene", "synthetic_split", "write_yolo_dataset",
]
