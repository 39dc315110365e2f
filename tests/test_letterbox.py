"""Letterbox geometry against an independent reading of the output tensor."""

from __future__ import annotations

import numpy as np
import pytest

from yolo_edge.errors import ImageError
from yolo_edge.letterbox import (LetterboxMeta, centre_in_content, letterbox, letterbox_batch, read_image,
                                 scale_boxes_to_input, unletterbox)
from yolo_edge.spec import LetterboxSpec

PAD = 114 / 255


def content_region(tensor: np.ndarray) -> tuple[int, int, int, int]:
    """Find the non-padding region of a letterboxed tensor by looking at its pixels only."""
    not_pad = np.any(np.abs(tensor - np.float32(PAD)) > 1e-6, axis=0)  # (H, W)
    rows, cols = np.flatnonzero(not_pad.any(axis=1)), np.flatnonzero(not_pad.any(axis=0))
    return cols[0], rows[0], cols[-1] + 1, rows[-1] + 1


def known_boxes(h: int, w: int) -> np.ndarray:
    return np.array([[0, 0, w, h], [w * 0.1, h * 0.2, w * 0.5, h * 0.9], [w * 0.75, h * 0.05, w * 0.99, h * 0.3]],
                    np.float32)


def solid(h, w, value=(30, 200, 60)):
    img = np.empty((h, w, 3), np.uint8)
    img[:] = value
    return img


@pytest.mark.parametrize("shape", [(1, 1), (4320, 7680), (7680, 4320), (640, 640), (33, 1000), (480, 640)])
@pytest.mark.parametrize("size", [(640, 640), (384, 640)])
def test_round_trip_synthetic_shapes(shape, size):
    img = solid(*shape)
    t, meta = letterbox(img, size)
    assert t.shape == (3, *size) and t.dtype == np.float32 and t.flags.c_contiguous
    x1, y1, x2, y2 = content_region(t)
    h, w = shape
    rx, ry = (x2 - x1) / w, (y2 - y1) / h
    # padding centred (to within one pixel) and aspect ratio kept
    assert abs(x1 - (size[1] - x2)) <= 1 and abs(y1 - (size[0] - y2)) <= 1
    assert abs(rx - ry) <= 1.0 / min(h, w) + 1.0 / min(x2 - x1, y2 - y1)
    boxes = known_boxes(h, w)
    in_input = boxes.copy()
    in_input[:, [0, 2]] = boxes[:, [0, 2]] * rx + x1
    in_input[:, [1, 3]] = boxes[:, [1, 3]] * ry + y1
    np.testing.assert_allclose(scale_boxes_to_input(boxes, meta), in_input, atol=1e-2)
    back = unletterbox(in_input, meta)
    assert np.abs(back - boxes).max() <= 0.5


def test_round_trip_on_photos(photos):
    """Paint a rectangle on real photos of several aspect ratios, find it again in the tensor."""
    for name, photo in photos.items():
        img = np.ascontiguousarray(photo if photo.ndim == 3 else np.stack([photo] * 3, -1)).copy()
        h, w = img.shape[:2]
        box = np.array([round(w * 0.23), round(h * 0.31), round(w * 0.61), round(h * 0.72)])
        img[box[1]:box[3], box[0]:box[2]] = (255, 0, 255)  # magenta: B=255, G=0, R=255
        t, meta = letterbox(img, 640)
        r, g, b = t
        mask = (r > 0.9) & (b > 0.9) & (g < 0.1)
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        found = np.array([[cols[0], rows[0], cols[-1] + 1, rows[-1] + 1]], np.float32)
        back = unletterbox(found, meta)[0]
        # edge pixels blend magenta with the photo, so the tensor locates an edge to one input pixel
        scale = min(meta.scale)
        assert np.abs(back - box).max() <= 1.0 / scale + 1e-3, (name, back, box, scale)


@pytest.mark.parametrize("size", [640, (384, 640)])
def test_round_trip_photo_geometry(photos, size):
    """Known boxes mapped with the content region read off the tensor come back within 0.5 px."""
    for name, photo in photos.items():
        t, meta = letterbox(photo, size)
        x1, y1, x2, y2 = content_region(t)
        h, w = photo.shape[:2]
        boxes = known_boxes(h, w)
        in_input = boxes.copy()
        in_input[:, [0, 2]] = boxes[:, [0, 2]] * (x2 - x1) / w + x1
        in_input[:, [1, 3]] = boxes[:, [1, 3]] * (y2 - y1) / h + y1
        assert np.abs(unletterbox(in_input, meta) - boxes).max() <= 0.5, name


def test_values_rgb_scaled_chw():
    img = np.zeros((2, 4, 3), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = 10, 20, 30  # BGR
    t, meta = letterbox(img, (2, 4))
    assert meta.pad == (0, 0) and meta.new_shape == (2, 4)
    np.testing.assert_allclose(t[:, 0, 0], [30 / 255, 20 / 255, 10 / 255], rtol=1e-6)


def test_no_scaleup():
    t, meta = letterbox(solid(100, 200), LetterboxSpec(size=(640, 640), scaleup=False))
    assert meta.new_shape == (100, 200) and meta.pad == (220, 270)


@pytest.mark.parametrize("image, expected", [
    (np.full((5, 6), 200, np.uint8), (200, 200, 200)),  # grayscale replicated
    (np.full((5, 6, 1), 7, np.uint8), (7, 7, 7)),
    (np.dstack([np.full((5, 6), c, np.uint8) for c in (10, 20, 30, 0)]), (10, 20, 30)),  # BGRA: alpha dropped
    (np.full((5, 6, 3), 65535, np.uint16), (255, 255, 255)),  # 16-bit scaled, not truncated
    (np.full((5, 6, 3), 257 * 100, np.uint16), (100, 100, 100)),
])
def test_converted_inputs(image, expected):
    t, _ = letterbox(image, (5, 6))
    np.testing.assert_allclose(t[:, 2, 3], np.array(expected[::-1]) / 255, rtol=1e-6)


@pytest.mark.parametrize("image, message", [
    (np.zeros((5, 6, 3), np.float32), "uint8 or uint16"),
    (np.zeros((5, 6, 2), np.uint8), "shape"),
    (np.zeros((0, 6, 3), np.uint8), "empty"),
    (np.zeros((2, 5, 6, 3), np.uint8), "shape"),
    ([[1, 2]], "numpy"),
])
def test_rejected_inputs(image, message):
    with pytest.raises(ImageError, match=message):
        letterbox(image, 64)


def test_centre_in_padding_dropped_by_detections():
    from yolo_edge.detections import Detections

    _, meta = letterbox(solid(100, 200), 640)  # content rows 160..480
    assert meta.pad == (0, 160)
    dets = Detections([[10, 10, 50, 50], [10, 150, 50, 200], [10, 470, 60, 520]], [0.9, 0.8, 0.7], [0, 1, 2])
    keep = centre_in_content(dets.xyxy, meta)
    assert keep.tolist() == [False, True, False]
    out = dets.unletterbox(meta)
    assert out.class_ids.tolist() == [1]
    np.testing.assert_allclose(out.xyxy[0], [10 / 3.2, 0, 50 / 3.2, 40 / 3.2], atol=1e-4)  # clipped at y=0


def test_batch_equals_single(photos):
    imgs = [photos["landscape"], photos["portrait"], photos["gray"]]
    batch, metas = letterbox_batch(imgs, 320)
    for i, im in enumerate(imgs):
        t, m = letterbox(im, 320)
        np.testing.assert_array_equal(batch[i], t)
        assert m == metas[i]


def test_read_image_errors(tmp_path):
    with pytest.raises(ImageError, match="not found"):
        read_image(tmp_path / "missing.jpg")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(ImageError, match="cannot decode"):
        read_image(bad)


def test_read_image_16bit_png(tmp_path):
    import cv2

    img = (np.arange(12 * 10 * 3, dtype=np.uint16).reshape(12, 10, 3) * 180)
    cv2.imwrite(str(tmp_path / "a.png"), img)
    out = read_image(tmp_path / "a.png")
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, np.round(img.astype(np.float64) * 255 / 65535).astype(np.uint8))


def test_meta_is_value_object():
    m = LetterboxMeta(orig_shape=(100, 200), input_shape=(640, 640), new_shape=(320, 640), pad=(0, 160))
    assert m.scale == (3.2, 3.2) and m.content_box() == (0, 160, 640, 480)
