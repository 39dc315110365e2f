"""``load_dataset``: one string names any dataset the commands accept."""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import DatasetError
from .base import IMAGE_SUFFIXES, Dataset
from .coco import CocoJsonDataset
from .folders import VIDEO_SUFFIXES, ImageFolder, VideoFrames
from .synthetic import SPLITS, synthetic_split
from .yolo import YoloTxtDataset, labels_dir_for

FORMS = (
    "synthetic:<train|val|calib>[:N]",
    "a YOLO dataset directory (images/ + labels/)",
    "an image folder",
    "a COCO json (path.json or path.json:images_dir)",
    f"a video file ({', '.join(VIDEO_SUFFIXES)})",
)


def _help() -> str:
    return "expected one of: " + "; ".join(FORMS)


def _synthetic(spec: str) -> Dataset:
    parts = spec.split(":")
    if len(parts) not in (2, 3) or parts[1] not in SPLITS:
        raise DatasetError(
            f"bad synthetic dataset {spec!r}: use synthetic:<split>[:N] with split one of "
            f"{', '.join(SPLITS)} (train = seed 0, val = seed 1, calib = seed 2; disjoint by seed)"
        )
    n = None
    if len(parts) == 3:
        try:
            n = int(parts[2])
        except ValueError:
            n = -1
        if n <= 0:
            raise DatasetError(f"bad synthetic dataset {spec!r}: N must be a positive integer, got {parts[2]!r}")
    return synthetic_split(parts[1], n)


def is_yolo_dir(path: Path) -> bool:
    """True when ``path`` is a YOLO dataset root or an ``images`` directory with sibling labels."""
    if (path / "images").is_dir() and (path / "labels").is_dir():
        return True
    labels = labels_dir_for(path)
    return labels is not None and labels != path and labels.is_dir()


def load_dataset(spec, *, strict: bool = False) -> Dataset:
    """Open the dataset that ``spec`` names.

    Forms:

    * ``synthetic:train``, ``synthetic:val``, ``synthetic:calib`` — the canonical synthetic
      splits (seeds 0, 1, 2; disjoint); ``synthetic:train:2000`` overrides the image count.
    * a directory — :class:`YoloTxtDataset` if it is a YOLO root (``images/`` + ``labels/``) or an
      ``.../images/...`` directory with a matching ``.../labels/...``, else :class:`ImageFolder`.
    * ``path.json`` or ``path.json:images_dir`` — :class:`CocoJsonDataset` (images default to a
      sibling ``images/`` or the json's folder).
    * a video file (``.mp4``, ``.avi``, ``.mkv``, ``.mov``, ...) — :class:`VideoFrames`.

    A :class:`Dataset` instance is returned as is. ``strict`` goes to the labelled readers.
    Anything else raises :class:`DatasetError` saying what is accepted.
    """
    if isinstance(spec, Dataset):
        return spec
    if not isinstance(spec, (str, os.PathLike)):
        raise DatasetError(f"a dataset is named by a string or path, got {type(spec).__name__}; {_help()}")
    s = os.fspath(spec)
    if not s:
        raise DatasetError(f"empty dataset name; {_help()}")
    p = Path(s)
    if (s == "synthetic" or s.startswith("synthetic:")) and not p.exists():
        return _synthetic(s)
    if not p.exists():
        m = re.match(r"^(.+\.json):(.+)$", s, re.I)
        if m and Path(m.group(1)).is_file():
            return CocoJsonDataset(m.group(1), m.group(2), strict=strict)
        raise DatasetError(f"dataset not found: {s}; {_help()}")
    if p.is_dir():
        if is_yolo_dir(p):
            return YoloTxtDataset(p, strict=strict)
        return ImageFolder(p)
    suffix = p.suffix.lower()
    if suffix == ".json":
        return CocoJsonDataset(p, strict=strict)
    if suffix in VIDEO_SUFFIXES:
        return VideoFrames(p)
    if suffix in IMAGE_SUFFIXES:
        raise DatasetError(f"{s} is a single image, not a dataset; put it in a folder and pass the folder")
    raise DatasetError(f"cannot tell what kind of dataset {s} is; {_help()}")
