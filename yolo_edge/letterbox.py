"""The one letterbox (DESIGN §3): image -> network input, and boxes back to the image.

Every path that feeds a model (calibration, evaluation, training validation, runners and
streams) calls :func:`letterbox`; every path that maps boxes back calls :func:`unletterbox`.

Conventions
-----------
* Input images are ``uint8`` BGR ``(h, w, 3)`` as OpenCV reads them. Grayscale ``(h, w)`` or
  ``(h, w, 1)`` is replicated to three channels, BGRA ``(h, w, 4)`` drops alpha, ``uint16``
  is scaled to 8 bits (``v * 255 / 65535``, rounded). Anything else raises :class:`ImageError`.
* Scale ``r = min(H / h, W / w)`` (``min(r, 1)`` when ``scaleup=False``); the resized size is
  ``(round(h * r), round(w * r))``, resized with ``cv2.INTER_LINEAR``.
* Padding is centred: ``left = (W - new_w) // 2``, ``top = (H - new_h) // 2``; the rest goes right
  and bottom. Pad value 114.
* Output is RGB, ``/ 255``, CHW, contiguous ``float32`` ``(3, H, W)``.
* Box coordinates are continuous pixel coordinates (the image spans ``[0, w] x [0, h]``). The
  mapping uses the per-axis scale actually applied (``new_w / w``, ``new_h / h``), so a round
  trip is exact up to float error.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .errors import ImageError
from .spec import LetterboxSpec

_INTERP = {"linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA}


@dataclass(frozen=True)
class LetterboxMeta:
    """Geometry of one letterbox: enough to map boxes both ways."""

    orig_shape: tuple[int, int]  # (h, w) of the source image
    input_shape: tuple[int, int]  # (H, W) of the network input
    new_shape: tuple[int, int]  # (new_h, new_w) of the resized image inside the padding
    pad: tuple[int, int]  # (left, top) padding in input pixels

    @property
    def scale(self) -> tuple[float, float]:
        """(rx, ry): input pixels per source pixel along x and y."""
        return self.new_shape[1] / self.orig_shape[1], self.new_shape[0] / self.orig_shape[0]

    def content_box(self) -> tuple[int, int, int, int]:
        """The region of the input holding image content, xyxy in input pixels."""
        left, top = self.pad
        return left, top, left + self.new_shape[1], top + self.new_shape[0]


def to_bgr_uint8(image: np.ndarray) -> np.ndarray:
    """Normalise an image array to ``uint8`` BGR ``(h, w, 3)`` or raise :class:`ImageError`."""
    if not isinstance(image, np.ndarray):
        raise ImageError(f"expected a numpy image array, got {type(image).__name__}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise ImageError(
            f"expected an image of shape (h, w), (h, w, 1), (h, w, 3) or (h, w, 4), got {image.shape}"
        )
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ImageError(f"image is empty: shape {image.shape}")
    if image.dtype == np.uint16:
        image = ((image.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ImageError(
            f"expected a uint8 or uint16 image, got dtype {image.dtype}; "
            "convert floats with (img * 255).round().astype(np.uint8)"
        )
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


def _spec(size) -> LetterboxSpec:
    if isinstance(size, LetterboxSpec):
        return size
    if isinstance(size, (int, np.integer)):
        return LetterboxSpec(size=(int(size), int(size)))
    return LetterboxSpec(size=tuple(size))


def letterbox(
    image: np.ndarray,
    size: int | tuple[int, int] | LetterboxSpec = 640,
    *,
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, LetterboxMeta]:
    """Letterbox one image.

    Args:
        image: ``uint8`` BGR ``(h, w, 3)`` (other layouts converted, see module doc).
        size: network input ``(H, W)``, an int for square, or a :class:`LetterboxSpec`.
        out: optional preallocated ``float32`` ``(3, H, W)`` array to write into.

    Returns:
        ``(tensor (3, H, W) float32 RGB in [0, 1], LetterboxMeta)``.
    """
    spec = _spec(size)
    img = to_bgr_uint8(image)
    h, w = img.shape[:2]
    H, W = spec.size
    r = min(H / h, W / w)
    if not spec.scaleup:
        r = min(r, 1.0)
    new_h = min(H, max(1, int(round(h * r))))
    new_w = min(W, max(1, int(round(w * r))))
    if (new_h, new_w) != (h, w):
        img = cv2.resize(img, (new_w, new_h), interpolation=_INTERP[spec.interpolation])
    left, top = (W - new_w) // 2, (H - new_h) // 2
    if (new_h, new_w) != (H, W):
        img = cv2.copyMakeBorder(
            img, top, H - new_h - top, left, W - new_w - left,
            cv2.BORDER_CONSTANT, value=(spec.pad_value,) * 3,
        )
    if out is None:
        out = np.empty((3, H, W), np.float32)
    elif out.shape != (3, H, W) or out.dtype != np.float32:
        raise ValueError(f"out must be float32 (3, {H}, {W}), got {out.dtype} {out.shape}")
    scale = np.float32(1.0 / 255.0)
    for c in range(3):  # BGR -> RGB while converting
        np.multiply(img[:, :, 2 - c], scale, out=out[c], casting="unsafe")
    meta = LetterboxMeta(orig_shape=(h, w), input_shape=(H, W), new_shape=(new_h, new_w), pad=(left, top))
    return out, meta


def letterbox_batch(images, size=640) -> tuple[np.ndarray, list[LetterboxMeta]]:
    """Letterbox several images into one ``(B, 3, H, W)`` float32 batch."""
    spec = _spec(size)
    batch = np.empty((len(images), 3, *spec.size), np.float32)
    metas = [letterbox(im, spec, out=batch[i])[1] for i, im in enumerate(images)]
    return batch, metas


def scale_boxes_to_input(boxes: np.ndarray, meta: LetterboxMeta) -> np.ndarray:
    """Map xyxy boxes from source pixels to letterboxed input pixels (inverse of unletterbox)."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    rx, ry = meta.scale
    left, top = meta.pad
    out = boxes.copy()
    out[:, [0, 2]] = boxes[:, [0, 2]] * rx + left
    out[:, [1, 3]] = boxes[:, [1, 3]] * ry + top
    return out


def unletterbox(boxes: np.ndarray, meta: LetterboxMeta, clip: bool = True) -> np.ndarray:
    """Map xyxy boxes ``(N, 4)`` from letterboxed input pixels to source pixels, clipped."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    rx, ry = meta.scale
    left, top = meta.pad
    out = np.empty_like(boxes)
    out[:, [0, 2]] = (boxes[:, [0, 2]] - left) / rx
    out[:, [1, 3]] = (boxes[:, [1, 3]] - top) / ry
    if clip:
        h, w = meta.orig_shape
        out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0, w)
        out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, h)
    return out


def centre_in_content(boxes: np.ndarray, meta: LetterboxMeta) -> np.ndarray:
    """Boolean mask: which input-pixel boxes have their centre on image content, not padding."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    x1, y1, x2, y2 = meta.content_box()
    cx = (boxes[:, 0] + boxes[:, 2]) * 0.5
    cy = (boxes[:, 1] + boxes[:, 3]) * 0.5
    return (cx >= x1) & (cx <= x2) & (cy >= y1) & (cy <= y2)


def read_image(path) -> np.ndarray:
    """Read an image file as uint8 BGR (16-bit, grayscale and alpha handled by letterbox)."""
    import os

    p = os.fspath(path)
    if not os.path.exists(p):
        raise ImageError(f"image not found: {p}")
    data = np.fromfile(p, dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise ImageError(f"cannot decode image: {p} (not an image, or a format OpenCV cannot read)")
    return to_bgr_uint8(img)
