"""What every dataset yields (:class:`Sample`), how it reports bad labels (:class:`LabelSummary`),
and the small base class the readers share (numpy and OpenCV only)."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterator, NamedTuple

import cv2
import numpy as np

from ..errors import DatasetError, ImageError
from ..letterbox import read_image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

# Problem kinds a reader can report, with a short description for the summary table.
PROBLEM_KINDS: dict[str, str] = {
    "field_count": "wrong number of fields",
    "not_numeric": "non-numeric or non-finite value",
    "unknown_class": "class id unknown or out of range",
    "out_of_range": "box outside the image",
    "non_positive_size": "zero or negative width/height",
    "label_without_image": "label without an image",
    "image_without_label": "image without a label file (kept as an empty image)",
    "missing_image": "image listed but file missing",
    "unreadable_image": "image file unreadable (skipped)",
    "malformed": "malformed entry",
}


@dataclass(eq=False)
class Sample:
    """One image and its ground truth.

    Attributes:
        image: ``uint8`` BGR ``(h, w, 3)``.
        xyxy: ``float32 (N, 4)`` boxes ``(x1, y1, x2, y2)`` in source pixels, continuous
            coordinates (the image spans ``[0, w] x [0, h]``, pixel ``j`` covers ``[j, j + 1]``).
        class_ids: ``int32 (N,)`` contiguous class indices into the dataset's ``names``.
        image_id: an integer id (the COCO image id for COCO json, the frame number for video,
            otherwise the index in the dataset).
        path: the source file, ``""`` for synthetic images.
    """

    image: np.ndarray
    xyxy: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    class_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    image_id: int = 0
    path: str = ""

    def __post_init__(self):
        if not (isinstance(self.image, np.ndarray) and self.image.dtype == np.uint8
                and self.image.ndim == 3 and self.image.shape[2] == 3):
            got = getattr(self.image, "shape", type(self.image).__name__)
            raise ValueError(f"Sample.image must be uint8 BGR (h, w, 3), got {got}")
        self.xyxy = np.ascontiguousarray(np.asarray(self.xyxy, np.float32).reshape(-1, 4))
        self.class_ids = np.asarray(self.class_ids, np.int32).reshape(-1)
        if self.class_ids.shape[0] != self.xyxy.shape[0]:
            raise ValueError(
                f"class_ids must have shape ({self.xyxy.shape[0]},) to match xyxy, got {self.class_ids.shape}"
            )
        self.image_id = int(self.image_id)
        self.path = str(self.path)

    @property
    def shape(self) -> tuple[int, int]:
        """``(h, w)`` of the image."""
        return self.image.shape[0], self.image.shape[1]


class Issue(NamedTuple):
    """One reported problem; ``line`` is 1-based, 0 when it concerns a whole file or entry."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line > 0 else self.file
        return f"{where}: {self.message}"


class LabelSummary:
    """What a reader found: images and boxes kept, and every problem with file and line.

    ``counts`` maps each problem kind (keys of :data:`PROBLEM_KINDS`) to how often it occurred;
    ``issues`` lists ``(file, line, message)`` in the order found; ``by_kind(kind)`` filters them.
    """

    def __init__(self, source: str = ""):
        self.source = str(source)
        self.n_images = 0
        self.n_boxes = 0
        self.counts: Counter[str] = Counter()
        self._issues: list[tuple[str, Issue]] = []

    def add(self, kind: str, file, line: int, message: str) -> Issue:
        if kind not in PROBLEM_KINDS:
            raise ValueError(f"unknown problem kind {kind!r}; expected one of {list(PROBLEM_KINDS)}")
        issue = Issue(os.fspath(file), int(line), message)
        self.counts[kind] += 1
        self._issues.append((kind, issue))
        return issue

    @property
    def issues(self) -> list[Issue]:
        return [issue for _, issue in self._issues]

    def by_kind(self, kind: str) -> list[Issue]:
        return [issue for k, issue in self._issues if k == kind]

    @property
    def n_problems(self) -> int:
        return len(self._issues)

    @property
    def ok(self) -> bool:
        return not self._issues

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {
            "source": self.source,
            "images": self.n_images,
            "boxes": self.n_boxes,
            "counts": dict(self.counts),
            "issues": [
                {"kind": k, "file": i.file, "line": i.line, "message": i.message} for k, i in self._issues
            ],
        }

    def __str__(self) -> str:
        return self.report()

    def report(self, max_issues: int = 20) -> str:
        """Readable report: totals, a count per problem kind, then the first ``max_issues`` issues."""
        head = f"{self.source or 'dataset'}: {self.n_images} images, {self.n_boxes} boxes kept"
        if self.ok:
            return head + ", no problems"
        lines = [head + f", {self.n_problems} problems"]
        for kind, desc in PROBLEM_KINDS.items():
            if self.counts[kind]:
                lines.append(f"  {self.counts[kind]:6d}  {kind:<20s} {desc}")
        for _, issue in self._issues[:max_issues]:
            lines.append(f"  {issue}")
        if self.n_problems > max_issues:
            lines.append(f"  ... and {self.n_problems - max_issues} more")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"LabelSummary(images={self.n_images}, boxes={self.n_boxes}, problems={dict(self.counts)})"


class Dataset:
    """Base class: ``len(ds)``, ``ds[i] -> Sample``, iteration, ``names`` and ``summary``.

    Subclasses implement ``__len__`` and ``_load(i)``. Iteration skips images that turn out to be
    unreadable when loaded (recording them in ``summary``) unless ``strict`` is set, in which case
    it raises like indexing does.
    """

    names: tuple[str, ...] = ()
    strict: bool = False

    def __init__(self, source: str = ""):
        self.summary = LabelSummary(source)

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def _load(self, index: int) -> Sample:  # pragma: no cover - abstract
        raise NotImplementedError

    def __getitem__(self, index: int) -> Sample:
        n = len(self)
        if not isinstance(index, (int, np.integer)):
            raise TypeError(f"dataset indices must be integers, got {type(index).__name__}")
        i = int(index) + n if index < 0 else int(index)
        if not 0 <= i < n:
            raise IndexError(f"index {index} out of range for a dataset of {n} samples")
        return self._load(i)

    def __iter__(self) -> Iterator[Sample]:
        for i in range(len(self)):
            try:
                yield self[i]
            except UnreadableImage as e:
                if self.strict:
                    raise
                reported = self.__dict__.setdefault("_reported_unreadable", set())
                if e.path not in reported:  # once, however often the dataset is iterated
                    reported.add(e.path)
                    self.summary.add("unreadable_image", e.path, 0, str(e.reason))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={len(self)}, names={len(self.names)}, source={self.summary.source!r})"

    def _problem(self, kind: str, file, line: int, message: str) -> None:
        """Record a problem; in strict mode raise it as a DatasetError naming file:line."""
        issue = self.summary.add(kind, file, line, message)
        if self.strict:
            raise DatasetError(f"{issue} (strict mode; pass strict=False to skip bad labels)")


class UnreadableImage(DatasetError):
    """An image listed by a dataset cannot be decoded."""

    def __init__(self, path: str, reason: str):
        self.path, self.reason = path, reason
        super().__init__(f"cannot read image {path}: {reason}")


def load_image(path: str) -> np.ndarray:
    """Read an image with the shared reader, raising :class:`UnreadableImage` on failure."""
    try:
        return read_image(path)
    except ImageError as e:
        raise UnreadableImage(path, str(e)) from e


def looks_like_image(path: str) -> bool:
    """Cheap check (file signature, no decode) that OpenCV can read ``path``."""
    try:
        return os.path.getsize(path) > 0 and bool(cv2.haveImageReader(path))
    except (OSError, cv2.error):
        return False


def decodes(path: str) -> bool:
    """Full check: the image decodes (at reduced resolution where the codec allows)."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError:
        return False
    if not data.size:
        return False
    return cv2.imdecode(data, cv2.IMREAD_REDUCED_COLOR_4) is not None


def list_images(root: str, recursive: bool = True) -> list[str]:
    """Image files under ``root`` (by suffix, case-insensitive), sorted by path."""
    out = []
    if recursive:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            out.extend(os.path.join(dirpath, f) for f in filenames if f.lower().endswith(IMAGE_SUFFIXES))
    else:
        out = [os.path.join(root, f) for f in os.listdir(root)
               if f.lower().endswith(IMAGE_SUFFIXES) and os.path.isfile(os.path.join(root, f))]
    return sorted(out)
