"""Training augmentations in network-input space (numpy + OpenCV, no torch).

Every sample starts from the one letterbox (:mod:`yolo_edge.letterbox`) so training sees the
same geometry, padding and interpolation as inference; augmentations then act on the
letterboxed ``uint8`` BGR image ``(S, S, 3)`` and its boxes, ``float32 (N, 4)`` xyxy in input
pixels. Boxes are transformed exactly (corners through the same matrix as the pixels), clipped
to the output, and dropped when they get thinner than ``min_size`` pixels or keep less than
``min_area_frac`` of their transformed area.

Deployment-friendly by default: zoom 0.5-1.5, translation 10 %, horizontal flips, HSV jitter;
no rotation or shear (cameras on edge devices are upright), mosaic optional.

The random affine can render straight into a crop window (``out_size`` smaller than the input
size): the pixels are those of the full-size augmented image inside the window, without
rendering the rest. Training on such crops keeps every object at its inference pixel scale
while the network (fully convolutional) does a fraction of the work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

PAD_VALUE = 114


@dataclass
class AugmentConfig:
    """Augmentation strengths. Probabilities in [0, 1]; gains as in YOLOv8."""

    scale: float = 0.5  # zoom gain uniform in [1 - scale, 1 + scale]
    translate: float = 0.1  # shift up to this fraction of the input size
    degrees: float = 0.0  # rotation, uniform in [-degrees, degrees]
    shear: float = 0.0  # shear in degrees
    fliplr: float = 0.5  # probability of a horizontal flip
    hsv_h: float = 0.015  # hue gain (fraction of the hue circle)
    hsv_s: float = 0.7  # saturation gain
    hsv_v: float = 0.4  # value gain
    mosaic: float = 0.0  # probability of a 4-image mosaic
    min_size: float = 2.0  # drop boxes thinner than this (pixels) after the transform
    min_area_frac: float = 0.2  # drop boxes keeping less than this fraction of their area after clipping
    max_aspect: float = 20.0  # drop boxes more elongated than this after clipping
    crop_object_bias: float = 0.75  # probability that a crop window is centred near a random object


# ----------------------------------------------------------------------------- boxes


def transform_boxes(boxes: np.ndarray, M: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine ``M`` to xyxy boxes ``(N, 4)``; the result encloses the 4 moved corners
    (exact for scale, translation and flips; the enclosing box under rotation or shear)."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    if len(boxes) == 0:
        return boxes.copy()
    x1, y1, x2, y2 = boxes.T
    xs = np.stack([x1, x2, x2, x1], axis=1)  # (N, 4) corner x
    ys = np.stack([y1, y1, y2, y2], axis=1)  # (N, 4) corner y
    M = np.asarray(M, np.float64)
    tx = M[0, 0] * xs + M[0, 1] * ys + M[0, 2]
    ty = M[1, 0] * xs + M[1, 1] * ys + M[1, 2]
    return np.stack([tx.min(1), ty.min(1), tx.max(1), ty.max(1)], axis=1).astype(np.float32)


def clip_boxes(boxes: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Clip xyxy boxes to an image of ``size = (h, w)``."""
    h, w = size
    out = np.asarray(boxes, np.float32).reshape(-1, 4).copy()
    out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0, w)
    out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, h)
    return out


def box_candidates(before: np.ndarray, after: np.ndarray, min_size: float = 2.0,
                   min_area_frac: float = 0.2, max_aspect: float = 20.0) -> np.ndarray:
    """Boolean mask of boxes worth keeping: ``after`` (clipped) at least ``min_size`` wide and
    high, at least ``min_area_frac`` of ``before`` (transformed, unclipped), not too elongated."""
    w0, h0 = before[:, 2] - before[:, 0], before[:, 3] - before[:, 1]
    w1, h1 = after[:, 2] - after[:, 0], after[:, 3] - after[:, 1]
    aspect = np.maximum(w1 / (h1 + 1e-9), h1 / (w1 + 1e-9))
    return (w1 >= min_size) & (h1 >= min_size) & (w1 * h1 >= min_area_frac * w0 * h0 + 1e-9) & (aspect < max_aspect)


# ----------------------------------------------------------------------------- pixel ops


def hflip(image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror left-right: x -> w - x for the pixels and the boxes."""
    w = image.shape[1]
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    flipped = boxes.copy()
    flipped[:, 0] = w - boxes[:, 2]
    flipped[:, 2] = w - boxes[:, 0]
    return np.ascontiguousarray(image[:, ::-1]), flipped


def hsv_jitter(image: np.ndarray, rng: np.random.Generator, h: float = 0.015, s: float = 0.7,
               v: float = 0.4) -> np.ndarray:
    """Random hue shift and saturation / value gains of a uint8 BGR image, in place (YOLOv8 LUTs).
    Pass a view (e.g. the content region of a letterbox) to leave the padding untouched."""
    if not (h or s or v) or image.size == 0:
        return image
    gain = rng.uniform(-1, 1, 3) * (h, s, v) + 1
    hue, sat, val = cv2.split(cv2.cvtColor(image, cv2.COLOR_BGR2HSV))
    x = np.arange(256, dtype=np.float32)
    lut_h = ((x * gain[0]) % 180).astype(np.uint8)
    lut_s = np.clip(x * gain[1], 0, 255).astype(np.uint8)
    lut_v = np.clip(x * gain[2], 0, 255).astype(np.uint8)
    hsv = cv2.merge((cv2.LUT(hue, lut_h), cv2.LUT(sat, lut_s), cv2.LUT(val, lut_v)))
    cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR, dst=image)
    return image


def affine_matrix(center: tuple[float, float], out_center: tuple[float, float], scale: float = 1.0,
                  degrees: float = 0.0, shear: float = 0.0) -> np.ndarray:
    """2x3 matrix that rotates/scales/shears about ``center`` and puts it at ``out_center``."""
    a = math.radians(degrees)
    R = np.array([[math.cos(a) * scale, math.sin(a) * scale, 0],
                  [-math.sin(a) * scale, math.cos(a) * scale, 0],
                  [0, 0, 1]], np.float64)
    sh = math.tan(math.radians(shear))
    S = np.array([[1, sh, 0], [0, 1, 0], [0, 0, 1]], np.float64)
    C = np.array([[1, 0, -center[0]], [0, 1, -center[1]], [0, 0, 1]], np.float64)
    T = np.array([[1, 0, out_center[0]], [0, 1, out_center[1]], [0, 0, 1]], np.float64)
    return (T @ S @ R @ C)[:2]


def warp(image: np.ndarray, M: np.ndarray, out_size: tuple[int, int]) -> np.ndarray:
    """Render ``image`` through the 2x3 affine ``M`` into ``out_size = (h, w)``, padding 114.

    ``M`` acts on continuous coordinates (the image spans ``[0, w] x [0, h]``, as boxes do);
    OpenCV's matrix acts on pixel centres ``p = x - 0.5``, so it gets ``A (p + 0.5) + t - 0.5``.
    """
    h, w = out_size
    A, t = M[:, :2], M[:, 2]
    M_pix = np.concatenate([A, (t + A.sum(axis=1) * 0.5 - 0.5)[:, None]], axis=1)
    return cv2.warpAffine(image, M_pix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=(PAD_VALUE,) * 3)


def mosaic4(images: list[np.ndarray], boxes: list[np.ndarray], classes: list[np.ndarray]):
    """Tile four equally sized letterboxed images into a 2x2 canvas ``(2H, 2W, 3)``.

    Returns ``(canvas, boxes (N, 4) in canvas pixels, classes (N,))``. The random affine then
    picks a window around a random centre of the canvas (see :class:`Augmenter`).
    """
    if len(images) != 4:
        raise ValueError(f"mosaic needs 4 images, got {len(images)}")
    H, W = images[0].shape[:2]
    canvas = np.empty((2 * H, 2 * W, 3), np.uint8)
    out_boxes, out_cls = [], []
    for k, (im, bx, cl) in enumerate(zip(images, boxes, classes)):
        if im.shape[:2] != (H, W):
            raise ValueError(f"mosaic images must share one size, got {im.shape[:2]} and {(H, W)}")
        ox, oy = (k % 2) * W, (k // 2) * H
        canvas[oy : oy + H, ox : ox + W] = im
        out_boxes.append(np.asarray(bx, np.float32).reshape(-1, 4) + np.array([ox, oy, ox, oy], np.float32))
        out_cls.append(np.asarray(cl).reshape(-1))
    return canvas, np.concatenate(out_boxes), np.concatenate(out_cls)


# ----------------------------------------------------------------------------- pipeline


class Augmenter:
    """Random affine (+ optional crop window), flip and HSV for one letterboxed sample.

    ``aug(image, boxes, classes, rng, out_size=None, extra=None) -> (image, boxes, classes)``

    * ``image``: letterboxed uint8 BGR ``(S, S, 3)``; ``boxes`` xyxy input pixels ``(N, 4)``;
      ``classes`` ``(N,)``.
    * ``out_size``: ``(h, w)`` of a crop window of the full-size augmented image (default: full).
    * ``extra``: three more ``(image, boxes, classes[, content])`` samples to tile with this one
      into a mosaic first. The caller decides (with probability ``cfg.mosaic``, see
      :meth:`wants_mosaic`) so that it loads the extra samples only when they are used.
    * ``content``: optional ``(x1, y1, x2, y2)`` image region of the letterbox: HSV jitter is
      applied there only, so the padding keeps the inference value 114.
    """

    def __init__(self, cfg: AugmentConfig | None = None):
        self.cfg = cfg or AugmentConfig()

    def __call__(self, image, boxes, classes, rng: np.random.Generator, out_size=None, extra=None, content=None):
        cfg = self.cfg
        S_h, S_w = image.shape[:2]
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        classes = np.asarray(classes).reshape(-1)
        out_h, out_w = out_size if out_size is not None else (S_h, S_w)

        # colour first, on image content only (padding stays 114 as at inference)
        if content is not None:
            x1, y1, x2, y2 = content
            hsv_jitter(image[y1:y2, x1:x2], rng, cfg.hsv_h, cfg.hsv_s, cfg.hsv_v)
        else:
            hsv_jitter(image, rng, cfg.hsv_h, cfg.hsv_s, cfg.hsv_v)

        src, src_boxes, src_cls = image, boxes, classes
        center = (S_w / 2, S_h / 2)
        if extra is not None:
            for e in extra:
                x1, y1, x2, y2 = e[3] if len(e) > 3 and e[3] is not None else (0, 0, S_w, S_h)
                hsv_jitter(e[0][y1:y2, x1:x2], rng, cfg.hsv_h, cfg.hsv_s, cfg.hsv_v)
            src, src_boxes, src_cls = mosaic4(
                [image] + [e[0] for e in extra], [boxes] + [e[1] for e in extra], [classes] + [e[2] for e in extra]
            )
            center = (rng.uniform(0.5, 1.5) * S_w, rng.uniform(0.5, 1.5) * S_h)  # random mosaic centre

        # full-size affine: about the centre, then shifted by the translation
        gain = rng.uniform(1 - cfg.scale, 1 + cfg.scale)
        angle = rng.uniform(-cfg.degrees, cfg.degrees) if cfg.degrees else 0.0
        shear = rng.uniform(-cfg.shear, cfg.shear) if cfg.shear else 0.0
        out_c = (S_w / 2 + rng.uniform(-cfg.translate, cfg.translate) * S_w,
                 S_h / 2 + rng.uniform(-cfg.translate, cfg.translate) * S_h)
        M = affine_matrix(center, out_c, gain, angle, shear)
        if rng.random() < cfg.fliplr:  # mirror in the full output frame: x -> S_w - x
            M = np.array([[-1, 0, S_w], [0, 1, 0]], np.float64) @ np.vstack([M, [0, 0, 1]])
        full = transform_boxes(src_boxes, M)
        keep = box_candidates(full, clip_boxes(full, (S_h, S_w)), cfg.min_size, cfg.min_area_frac, cfg.max_aspect)
        full, src_cls_kept = full[keep], src_cls[keep]

        # crop window inside the full output frame (pixels of the window only are rendered)
        ox, oy = 0.0, 0.0
        if (out_h, out_w) != (S_h, S_w):
            ox, oy = self._window(full, (S_h, S_w), (out_h, out_w), rng)
            M = M.copy()
            M[0, 2] -= ox
            M[1, 2] -= oy
            full = full - np.array([ox, oy, ox, oy], np.float32)

        out = warp(src, M, (out_h, out_w))
        clipped = clip_boxes(full, (out_h, out_w))
        keep = box_candidates(full, clipped, cfg.min_size, cfg.min_area_frac, cfg.max_aspect)
        return out, clipped[keep], src_cls_kept[keep]

    def wants_mosaic(self, rng: np.random.Generator) -> bool:
        """Draw whether this sample becomes a mosaic (probability ``cfg.mosaic``)."""
        return self.cfg.mosaic > 0 and rng.random() < self.cfg.mosaic

    def _window(self, boxes, full_size, out_size, rng) -> tuple[int, int]:
        """Origin (x, y) of a crop window: around a random object with probability
        ``crop_object_bias``, else uniform. Integer so pixels stay on the grid."""
        (H, W), (h, w) = full_size, out_size
        max_x, max_y = max(W - w, 0), max(H - h, 0)
        if len(boxes) and rng.random() < self.cfg.crop_object_bias:
            b = boxes[rng.integers(len(boxes))]
            cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
            x = rng.uniform(cx - w * 0.9, cx - w * 0.1)  # the object centre lands in the middle 80 %
            y = rng.uniform(cy - h * 0.9, cy - h * 0.1)
        else:
            x, y = rng.uniform(0, max_x), rng.uniform(0, max_y)
        return int(np.clip(round(x), 0, max_x)), int(np.clip(round(y), 0, max_y))
