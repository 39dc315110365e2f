"""COCO detection json reader (:class:`CocoJsonDataset`)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..errors import DatasetError
from .base import Dataset, Sample, decodes, load_image, looks_like_image


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def default_images_dir(json_path: Path) -> Path:
    """Where a COCO json's images are assumed to be when not given: a sibling ``images/``, the
    ``images/`` next to the json's folder (``annotations/x.json`` layout), else the json's folder."""
    for d in (json_path.parent / "images", json_path.parent.parent / "images"):
        if d.is_dir():
            return d
    return json_path.parent


class CocoJsonDataset(Dataset):
    """A COCO detection json plus its images.

    Category ids are mapped to contiguous class indices in order of increasing id; ``names`` are
    the category names in that order, ``coco_ids[k]`` is the category id of class ``k`` and
    ``category_to_class`` the inverse, so results can be written back in COCO ids. Boxes
    ``[x, y, w, h]`` become ``xyxy`` in source pixels. ``Sample.image_id`` is the COCO image id.

    Args:
        json_path: the annotation file.
        images_dir: folder the ``file_name`` entries are relative to (see :func:`default_images_dir`
            when None).
        strict: raise :class:`DatasetError` on the first problem instead of skipping it.
        tolerance: pixels a box may stick out of the image (per ``width`` / ``height`` in the json)
            before it is rejected; accepted boxes are clipped.
        include_crowd: keep ``iscrowd=1`` annotations (skipped by default, counted in ``n_crowd``).
        verify_images: decode every image at construction instead of checking the file signature.

    Problems are reported with the json file and the entry (``annotations[i] (id N)``; json has
    no useful line numbers, so ``line`` is 0): malformed entries, bbox outside the image,
    non-positive size, unknown category, annotation referring to a missing image, image file
    missing or unreadable.
    """

    def __init__(self, json_path, images_dir=None, strict: bool = False, tolerance: float = 1.0,
                 include_crowd: bool = False, verify_images: bool = False):
        jp = Path(json_path)
        if not jp.is_file():
            raise DatasetError(f"COCO json not found: {jp}")
        images_dir = Path(images_dir) if images_dir is not None else default_images_dir(jp)
        if not images_dir.is_dir():
            raise DatasetError(f"images directory not found: {images_dir} (for {jp})")
        super().__init__(str(jp))
        self.strict = bool(strict)
        self.json_path, self.images_dir = jp, images_dir
        try:
            data = json.loads(jp.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DatasetError(f"{jp}: not a readable json file: {e}") from e
        if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
                or not isinstance(data.get("categories"), list):
            raise DatasetError(f"{jp}: not a COCO detection file (needs 'images' and 'categories' lists)")
        anns = data.get("annotations") or []
        if not isinstance(anns, list):
            raise DatasetError(f"{jp}: 'annotations' must be a list")

        cats = {}
        for i, c in enumerate(data["categories"]):
            if not isinstance(c, dict) or not _is_int(c.get("id")) or "name" not in c:
                self._problem("malformed", jp, 0, f"categories[{i}]: needs an integer 'id' and a 'name'")
            elif c["id"] in cats:
                self._problem("malformed", jp, 0, f"categories[{i}]: duplicate category id {c['id']}")
            else:
                cats[c["id"]] = str(c["name"])
        self.coco_ids: tuple[int, ...] = tuple(sorted(cats))
        self.names = tuple(cats[k] for k in self.coco_ids)
        self.category_to_class: dict[int, int] = {cid: k for k, cid in enumerate(self.coco_ids)}

        check = decodes if verify_images else looks_like_image
        images: dict[int, dict] = {}  # coco id -> {path, size, boxes, classes}
        listed: set = set()
        for i, im in enumerate(data["images"]):
            if not isinstance(im, dict) or not _is_int(im.get("id")) \
                    or not isinstance(im.get("file_name"), str) or not im["file_name"]:
                self._problem("malformed", jp, 0, f"images[{i}]: needs an integer 'id' and a 'file_name'")
                continue
            iid = im["id"]
            if iid in listed:
                self._problem("malformed", jp, 0, f"images[{i}]: duplicate image id {iid}")
                continue
            listed.add(iid)
            path = images_dir / im["file_name"]
            if not path.is_file():
                self._problem("missing_image", path, 0,
                              f"listed in {jp.name} as images[{i}] (id {iid}) but missing")
                continue
            if not check(str(path)):
                self._problem("unreadable_image", path, 0,
                              f"images[{i}] (id {iid}) is not a readable image (skipped)")
                continue
            w, h = im.get("width"), im.get("height")
            size = (float(w), float(h)) if _is_num(w) and _is_num(h) and w > 0 and h > 0 else None
            images[iid] = {"path": str(path), "size": size, "boxes": [], "classes": []}

        self.n_crowd = 0
        for i, a in enumerate(anns):
            where = f"annotations[{i}]" + (f" (id {a.get('id')})" if isinstance(a, dict) and "id" in a else "")
            if not isinstance(a, dict):
                self._problem("malformed", jp, 0, f"{where}: not an object")
                continue
            iid = a.get("image_id")
            if not _is_int(iid) or iid not in images:
                # annotations of a listed but missing image were reported with the image
                if not _is_int(iid) or iid not in listed:
                    self._problem("label_without_image", jp, 0, f"{where}: image_id {iid!r} is not in 'images'")
                continue
            if a.get("iscrowd") and not include_crowd:
                self.n_crowd += 1
                continue
            cid = a.get("category_id")
            if not _is_int(cid) or cid not in self.category_to_class:
                self._problem("unknown_class", jp, 0, f"{where}: unknown category_id {cid!r}")
                continue
            bbox = a.get("bbox")
            if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
                n = len(bbox) if isinstance(bbox, (list, tuple)) else type(bbox).__name__
                self._problem("field_count", jp, 0, f"{where}: bbox must be [x, y, w, h], got {n}")
                continue
            if not all(_is_num(v) for v in bbox):
                self._problem("not_numeric", jp, 0, f"{where}: bbox {bbox!r} has a non-numeric value")
                continue
            x, y, bw, bh = (float(v) for v in bbox)
            if bw <= 0 or bh <= 0:
                self._problem("non_positive_size", jp, 0,
                              f"{where}: bbox width {bw:g} and height {bh:g} must be > 0")
                continue
            x1, y1, x2, y2 = x, y, x + bw, y + bh
            size = images[iid]["size"]
            if size is not None:
                W, H = size
                t = tolerance
                if x1 < -t or y1 < -t or x2 > W + t or y2 > H + t:
                    self._problem("out_of_range", jp, 0,
                                  f"{where}: bbox {bbox!r} outside the {W:g}x{H:g} image {iid}")
                    continue
                x1, y1, x2, y2 = max(x1, 0.0), max(y1, 0.0), min(x2, W), min(y2, H)
            images[iid]["boxes"].append((x1, y1, x2, y2))
            images[iid]["classes"].append(self.category_to_class[cid])

        if not images:
            raise DatasetError(f"{jp}: no usable images (images dir {images_dir})\n{self.summary}")
        self._items = [
            (iid, r["path"], np.asarray(r["classes"], np.int32),
             np.asarray(r["boxes"], np.float32).reshape(-1, 4))
            for iid, r in images.items()
        ]
        self.image_ids: tuple[int, ...] = tuple(iid for iid, *_ in self._items)
        self.summary.n_images = len(self._items)
        self.summary.n_boxes = sum(len(c) for _, _, c, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def _load(self, index: int) -> Sample:
        iid, path, cls, xyxy = self._items[index]
        img = load_image(path)
        h, w = img.shape[:2]
        xyxy = xyxy.copy()
        xyxy[:, [0, 2]] = np.clip(xyxy[:, [0, 2]], 0, w)
        xyxy[:, [1, 3]] = np.clip(xyxy[:, [1, 3]], 0, h)
        return Sample(img, xyxy, cls, image_id=iid, path=path)
