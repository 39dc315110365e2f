"""The YOLO txt layout: reader (:class:`YoloTxtDataset`) and writer (:func:`write_yolo_dataset`).

Layout (Ultralytics convention)::

    root/images/<any/sub/dirs>/name.jpg
    root/labels/<any/sub/dirs>/name.txt     one line per object: "class cx cy w h"

``cx cy w h`` are normalised by the image width and height. An empty label file means an image
with no objects. Class names come from the ``names`` argument, else from ``dataset.json``
(``{"names": [...]}``), ``names.txt`` / ``classes.txt`` (one per line) or the ``names:`` entry of a
simple ``data.yaml`` next to ``images/``; failing all of these they are ``"0"``, ``"1"``, ...
up to the largest class id seen.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from ..errors import DatasetError
from .base import Dataset, Sample, decodes, list_images, load_image, looks_like_image

NAMES_FILES = ("dataset.json", "names.txt", "classes.txt", "data.yaml", "data.yml")


def parse_yolo_labels(
    text: str, nc: int | None = None, tolerance: float = 0.01
) -> tuple[np.ndarray, np.ndarray, list[tuple[int, str, str]]]:
    """Parse and validate the text of one YOLO label file.

    Args:
        text: file contents.
        nc: number of classes when known (class ids must be in ``[0, nc)``).
        tolerance: how far (normalised) a box may stick out of ``[0, 1]`` before it is rejected;
            accepted boxes are clipped to ``[0, 1]``.

    Returns:
        ``(class_ids int32 (N,), xyxy float32 (N, 4) normalised, problems)`` where ``problems``
        lists ``(line, kind, message)`` for every rejected line (1-based line numbers). Blank
        lines are ignored.
    """
    cls_out, box_out, problems = [], [], []
    lo, hi = -tolerance, 1.0 + tolerance
    for ln, raw in enumerate(text.splitlines(), 1):
        parts = raw.split()
        if not parts:
            continue
        if len(parts) != 5:
            hint = " (segmentation polygons are not supported)" if len(parts) > 5 else ""
            problems.append((ln, "field_count", f"expected 5 fields 'class cx cy w h', got {len(parts)}{hint}"))
            continue
        try:
            vals = [float(p) for p in parts]
        except ValueError:
            bad = next(p for p in parts if not _is_float(p))
            problems.append((ln, "not_numeric", f"non-numeric value {bad!r}"))
            continue
        if not all(math.isfinite(v) for v in vals):
            problems.append((ln, "not_numeric", f"non-finite value in {raw.strip()!r}"))
            continue
        c, cx, cy, w, h = vals
        if c < 0 or c != int(c):
            problems.append((ln, "unknown_class", f"class {parts[0]!r} is not a non-negative integer"))
            continue
        if nc is not None and c >= nc:
            problems.append((ln, "unknown_class", f"class {int(c)} out of range: {nc} classes (0..{nc - 1})"))
            continue
        if w <= 0 or h <= 0:
            problems.append((ln, "non_positive_size", f"width {parts[3]} and height {parts[4]} must be > 0"))
            continue
        x1, y1, x2, y2 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
        if not (lo <= cx <= hi and lo <= cy <= hi and x1 >= lo and y1 >= lo and x2 <= hi and y2 <= hi):
            problems.append((
                ln, "out_of_range",
                f"box cx={parts[1]} cy={parts[2]} w={parts[3]} h={parts[4]} extends outside [0, 1] "
                f"(x {x1:.4g}..{x2:.4g}, y {y1:.4g}..{y2:.4g})",
            ))
            continue
        cls_out.append(int(c))
        box_out.append((x1, y1, x2, y2))
    xyxy = np.clip(np.asarray(box_out, np.float32).reshape(-1, 4), 0.0, 1.0)
    return np.asarray(cls_out, np.int32), xyxy, problems


def _is_float(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _images_component(path: Path) -> int | None:
    parts = path.parts
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "images":
            return i
    return None


def labels_dir_for(images_dir: Path) -> Path | None:
    """Ultralytics convention: the last ``images`` path component replaced by ``labels``."""
    i = _images_component(images_dir)
    if i is None:
        return None
    parts = images_dir.parts
    return Path(*parts[:i], "labels", *parts[i + 1:])


def _dataset_root(images_dir: Path) -> Path:
    i = _images_component(images_dir)
    return Path(*images_dir.parts[:i]) if i else images_dir.parent


def read_names(directory: Path) -> tuple[str, ...] | None:
    """Class names from the first names file found in ``directory`` (see module doc), or None."""
    for fname in NAMES_FILES:
        p = directory / fname
        if not p.is_file():
            continue
        text = p.read_text(encoding="utf-8", errors="replace")
        if fname.endswith(".json"):
            try:
                names = json.loads(text).get("names")
            except (json.JSONDecodeError, AttributeError) as e:
                raise DatasetError(f"{p}: cannot read class names: {e}") from e
            if isinstance(names, dict):  # {"0": "person", ...}
                names = [names[k] for k in sorted(names, key=int)]
            if names:
                return tuple(str(n) for n in names)
        elif fname.endswith(".txt"):
            names = [ln.strip() for ln in text.splitlines() if ln.strip()]
            if names:
                return tuple(names)
        else:
            names = _yaml_names(text)
            if names:
                return names
    return None


def _yaml_names(text: str) -> tuple[str, ...] | None:
    """The ``names:`` entry of a simple data.yaml: ``names: [a, b]`` or a ``0: a`` block."""
    m = re.search(r"^names:\s*\[(.*?)\]", text, re.M | re.S)
    if m:
        items = [s.strip().strip("'\"") for s in m.group(1).split(",")]
        return tuple(s for s in items if s) or None
    m = re.search(r"^names:\s*\n((?:[ \t]+.*\n?)+)", text, re.M)
    if not m:
        return None
    names = {}
    for ln in m.group(1).splitlines():
        kv = re.match(r"\s*(\d+)\s*:\s*(.+?)\s*$", ln)
        if kv:
            names[int(kv.group(1))] = kv.group(2).strip("'\"")
        else:
            item = re.match(r"\s*-\s*(.+?)\s*$", ln)
            if item:
                names[len(names)] = item.group(1).strip("'\"")
    return tuple(names[k] for k in sorted(names)) or None


class YoloTxtDataset(Dataset):
    """Images plus YOLO txt labels.

    Args:
        root_or_images_dir: the dataset root (holding ``images/`` and ``labels/``) or an images
            directory whose path contains an ``images`` component (``.../images/train``); labels
            are looked up under the same path with that component replaced by ``labels``.
        names: class names; read from the dataset (see module doc) when None.
        strict: raise :class:`DatasetError` naming ``file:line`` on the first problem instead of
            reporting, counting and skipping it. In strict mode an image without a label file is
            an error (give background images an empty ``.txt``).
        tolerance: see :func:`parse_yolo_labels`.
        verify_images: decode every image once at construction (slower) instead of checking only
            the file signature; unreadable images are reported and dropped either way.

    Every bad label line is reported with file and line in ``summary`` and skipped; good lines of
    the same file are kept. A label file without an image is reported; an image without a label
    file is reported and kept as an image with no objects.
    """

    def __init__(self, root_or_images_dir, names: Sequence[str] | None = None, strict: bool = False,
                 tolerance: float = 0.01, verify_images: bool = False):
        root = Path(root_or_images_dir)
        if not root.is_dir():
            raise DatasetError(f"YOLO dataset directory not found: {root}")
        if (root / "images").is_dir():
            images_dir, labels_dir, ds_root = root / "images", root / "labels", root
        else:
            images_dir, labels_dir = root, labels_dir_for(root)
            if labels_dir is None:
                raise DatasetError(
                    f"cannot locate labels for {root}: expected a dataset root with images/ and labels/, "
                    "or an images directory on a path containing 'images' (labels under 'labels')"
                )
            ds_root = _dataset_root(root)  # the directory holding images/ and labels/
        if not labels_dir.is_dir():
            raise DatasetError(f"labels directory not found: {labels_dir} (for images in {images_dir})")
        super().__init__(str(root))
        self.strict = bool(strict)
        self.images_dir, self.labels_dir = images_dir, labels_dir

        if names is None:
            for d in dict.fromkeys([ds_root, images_dir, labels_dir, root]):
                names = read_names(d)
                if names:
                    break
        nc = len(names) if names else None

        image_paths = list_images(str(images_dir))
        if not image_paths:
            raise DatasetError(f"no images found in {images_dir}")
        label_paths = set()
        for dirpath, _, files in os.walk(labels_dir):
            label_paths.update(os.path.join(dirpath, f) for f in files if f.endswith(".txt"))
        label_paths.difference_update(str(labels_dir / f) for f in ("names.txt", "classes.txt"))

        self._items: list[tuple[str, np.ndarray, np.ndarray]] = []  # (image, class_ids, xyxy normalised)
        matched = set()
        check = decodes if verify_images else looks_like_image
        for img in image_paths:
            rel = os.path.relpath(img, images_dir)
            lbl = str(labels_dir / Path(rel).with_suffix(".txt"))
            if not check(img):
                self._problem("unreadable_image", img, 0, "not a readable image (skipped)")
                matched.add(lbl)
                continue
            if lbl not in label_paths:
                self._problem("image_without_label", img, 0,
                              f"no label file {lbl}; kept as an image with no objects")
                self._items.append((img, np.zeros(0, np.int32), np.zeros((0, 4), np.float32)))
                continue
            matched.add(lbl)
            try:
                text = Path(lbl).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                self._problem("malformed", lbl, 0, f"cannot read label file: {e}")
                continue
            cls, xyxy, problems = parse_yolo_labels(text, nc, tolerance)
            for ln, kind, msg in problems:
                self._problem(kind, lbl, ln, msg)
            self._items.append((img, cls, xyxy))
        for lbl in sorted(label_paths - matched):
            self._problem("label_without_image", lbl, 0, f"no image for this label file in {images_dir}")
        if not self._items:
            raise DatasetError(f"no usable images in {images_dir}\n{self.summary}")

        self.names_inferred = names is None  # no names file: the classes are just ids
        if names is None:
            top = max((int(c.max()) for _, c, _ in self._items if c.size), default=-1)
            names = tuple(str(i) for i in range(top + 1))
        self.names = tuple(str(n) for n in names)
        self.labelled = True
        self.summary.n_images = len(self._items)
        self.summary.n_boxes = sum(len(c) for _, c, _ in self._items)

    def restrict_classes(self, nc: int) -> int:
        """Drop the labels with class id >= ``nc`` (reported as ``unknown_class``); returns how many."""
        dropped = 0
        for k, (img, cls, xyxy) in enumerate(self._items):
            bad = cls >= nc
            if bad.any():
                lbl = self.labels_dir / Path(os.path.relpath(img, self.images_dir)).with_suffix(".txt")
                for c in cls[bad].tolist():
                    self._problem("unknown_class", lbl, 0, f"class {c} out of range: the model has {nc} classes "
                                                           f"(0..{nc - 1})")
                self._items[k] = (img, cls[~bad], xyxy[~bad])
                dropped += int(bad.sum())
        self.names = self.names[:nc]
        self.summary.n_boxes -= dropped
        return dropped

    def __len__(self) -> int:
        return len(self._items)

    def _load(self, index: int) -> Sample:
        path, cls, xyxy = self._items[index]
        img = load_image(path)
        h, w = img.shape[:2]
        return Sample(img, xyxy * np.array([w, h, w, h], np.float32), cls, image_id=index, path=path)


def write_yolo_dataset(ds, out_dir, image_format: str = "png", jpeg_quality: int = 95,
                       overwrite: bool = False) -> Path:
    """Write ``ds`` in the YOLO txt layout.

    Creates ``out_dir/images/NNNNNN.<png|jpg>``, ``out_dir/labels/NNNNNN.txt`` (``class cx cy w h``
    normalised, 6 decimals; an empty file for an image without objects), ``names.txt`` (one class
    per line) and ``dataset.json`` (``{"names": [...], "nc", "images", "boxes", "source"}``, written
    last). PNG keeps pixels exact; JPEG is smaller. Refuses a non-empty ``images/`` or ``labels/``
    unless ``overwrite``, which deletes them first (stale files would join the dataset).
    Returns ``out_dir``.
    """
    fmt = image_format.lower().lstrip(".")
    if fmt not in ("png", "jpg", "jpeg"):
        raise ValueError(f"image_format must be 'png' or 'jpg', got {image_format!r}")
    ext = ".png" if fmt == "png" else ".jpg"
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if ext == ".jpg" else []
    out = Path(out_dir)
    for sub in ("images", "labels"):
        d = out / sub
        if d.is_dir() and any(d.iterdir()):
            if not overwrite:
                raise DatasetError(f"{d} is not empty; pass overwrite=True to replace it")
            shutil.rmtree(d)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    names = tuple(getattr(ds, "names", ()))
    n_images = n_boxes = 0
    for i, s in enumerate(ds):
        stem = f"{i:06d}"
        ok, buf = cv2.imencode(ext, s.image, params)
        if not ok:
            raise DatasetError(f"cannot encode image {i} as {ext}")
        buf.tofile(str(out / "images" / (stem + ext)))
        h, w = s.image.shape[:2]
        b = s.xyxy.astype(np.float64)
        cx, cy = (b[:, 0] + b[:, 2]) / (2 * w), (b[:, 1] + b[:, 3]) / (2 * h)
        bw, bh = (b[:, 2] - b[:, 0]) / w, (b[:, 3] - b[:, 1]) / h
        lines = [f"{c} {x:.6f} {y:.6f} {ww:.6f} {hh:.6f}\n"
                 for c, x, y, ww, hh in zip(s.class_ids.tolist(), cx, cy, bw, bh)]
        (out / "labels" / (stem + ".txt")).write_text("".join(lines), encoding="utf-8")
        n_images += 1
        n_boxes += len(lines)
    (out / "names.txt").write_text("".join(f"{n}\n" for n in names), encoding="utf-8")
    meta = {"names": list(names), "nc": len(names), "images": n_images, "boxes": n_boxes,
            "source": repr(ds), "layout": "yolo-txt"}
    tmp = out / "dataset.json.tmp"
    tmp.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, out / "dataset.json")
    return out
