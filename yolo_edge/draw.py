"""Annotate images with detections (OpenCV's built-in Hershey font: nothing to download)."""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from .detections import Detections


def colour(class_id: int) -> tuple[int, int, int]:
    """A stable, distinct BGR colour per class (golden-ratio hue walk)."""
    hue = int((class_id * 0.618033988749895 % 1.0) * 179)
    bgr = cv2.cvtColor(np.uint8([[[hue, 200, 255]]]), cv2.COLOR_HSV2BGR)[0, 0]
    return int(bgr[0]), int(bgr[1]), int(bgr[2])


def draw_detections(image: np.ndarray, dets: Detections, names: Sequence[str] = (),
                    thickness: int | None = None) -> np.ndarray:
    """Return a copy of ``image`` (uint8 BGR) with boxes and ``name score`` labels."""
    out = np.ascontiguousarray(image).copy()
    h, w = out.shape[:2]
    t = thickness or max(1, round(0.002 * (h + w)))
    font_scale = max(0.35, 0.0007 * (h + w))
    for box, score, cid in dets:
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        c = colour(cid)
        cv2.rectangle(out, (x1, y1), (x2, y2), c, t, cv2.LINE_AA)
        label = f"{names[cid] if cid < len(names) else cid} {score:.2f}"
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, max(1, t - 1))
        ty = y1 - 2 if y1 - th - base - 2 >= 0 else y1 + th + base + 2
        cv2.rectangle(out, (x1, ty - th - base), (x1 + tw + 2, ty + base - 1), c, -1)
        cv2.putText(out, label, (x1 + 1, ty - 1), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (255, 255, 255),
                    max(1, t - 1), cv2.LINE_AA)
    return out
