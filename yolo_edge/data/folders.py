"""Unlabelled sources: image folders (calibration) and video files. ``names`` is ``()`` and
every sample has no boxes."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from ..errors import DatasetError
from ..letterbox import to_bgr_uint8
from .base import IMAGE_SUFFIXES, Dataset, Sample, decodes, list_images, load_image, looks_like_image

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv")


class ImageFolder(Dataset):
    """All images under ``root`` (suffixes in :data:`~yolo_edge.data.base.IMAGE_SUFFIXES`),
    sorted by path.

    Files that are not readable images are reported in ``summary`` and skipped. By default the
    check at construction reads only the file signature; ``verify=True`` decodes every image
    (slower, and also catches truncated files). An image that still fails to decode later raises
    :class:`~yolo_edge.data.base.UnreadableImage` from ``ds[i]``; iteration reports and skips it.
    """

    def __init__(self, root, recursive: bool = True, verify: bool = False):
        root = Path(root)
        if not root.is_dir():
            raise DatasetError(f"image folder not found: {root}")
        super().__init__(str(root))
        check = decodes if verify else looks_like_image
        self.paths: list[str] = []
        for p in list_images(str(root), recursive):
            if check(p):
                self.paths.append(p)
            else:
                self._problem("unreadable_image", p, 0, "not a readable image (skipped)")
        if not self.paths:
            raise DatasetError(
                f"no readable images in {root} (looked for {', '.join(IMAGE_SUFFIXES)}"
                f"{'' if recursive else ', not recursing'})"
            )
        self.summary.n_images = len(self.paths)

    def __len__(self) -> int:
        return len(self.paths)

    def _load(self, index: int) -> Sample:
        path = self.paths[index]
        return Sample(load_image(path), image_id=index, path=path)


class VideoFrames(Dataset):
    """Frames of a video file, via ``cv2.VideoCapture``.

    Args:
        path: the video file.
        step: keep every ``step``-th frame (frames ``0, step, 2 * step, ...``).
        max_frames: stop after this many kept frames.

    ``Sample.image_id`` is the frame number in the file. The length comes from the container's
    frame count; iteration reads sequentially and stops early if the file holds fewer frames.
    Random access seeks (slower; exact for intra-frame codecs such as MJPG).
    """

    def __init__(self, path, step: int = 1, max_frames: int | None = None):
        p = Path(path)
        if step < 1:
            raise ValueError(f"step must be >= 1, got {step}")
        if max_frames is not None and max_frames < 0:
            raise ValueError(f"max_frames must be >= 0, got {max_frames}")
        if not p.is_file():
            raise DatasetError(f"video file not found: {p}")
        super().__init__(str(p))
        self.path, self.step, self.max_frames = str(p), int(step), max_frames
        cap = self._open()
        try:
            total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
            self.fps = float(cap.get(cv2.CAP_PROP_FPS)) or 0.0
            if total <= 0:  # no frame count in the container: count by reading
                total = 0
                while cap.grab():
                    total += 1
        finally:
            cap.release()
        if total <= 0:
            raise DatasetError(f"video has no frames: {p}")
        self.total_frames = total
        n = -(-total // self.step)
        self._n = n if max_frames is None else min(n, int(max_frames))
        self.summary.n_images = self._n
        self._cap: cv2.VideoCapture | None = None
        self._next = 0  # frame number the cached capture will read next

    def _open(self) -> cv2.VideoCapture:
        cap = cv2.VideoCapture(self.path)
        if not cap.isOpened():
            cap.release()
            raise DatasetError(
                f"cannot open video {self.path}: OpenCV has no backend/codec for it "
                "(check the file, or re-encode it, e.g. ffmpeg -i in -c:v libx264 out.mp4)"
            )
        return cap

    def __len__(self) -> int:
        return self._n

    def _frame(self, img: np.ndarray, frame_no: int) -> Sample:
        return Sample(to_bgr_uint8(img), image_id=frame_no, path=self.path)

    def _load(self, index: int) -> Sample:
        frame_no = index * self.step
        if self._cap is None:
            self._cap, self._next = self._open(), 0
        if frame_no != self._next:
            if not self._cap.set(cv2.CAP_PROP_POS_FRAMES, frame_no):
                raise DatasetError(f"cannot seek to frame {frame_no} in {self.path}")
        ok, img = self._cap.read()
        if not ok or img is None:
            self._next = -1
            raise DatasetError(f"cannot read frame {frame_no} of {self.path} ({self.total_frames} reported)")
        self._next = frame_no + 1
        return self._frame(img, frame_no)

    def __iter__(self) -> Iterator[Sample]:
        cap = self._open()
        try:
            frame_no = 0
            for _ in range(self._n):
                ok, img = cap.read()
                if not ok or img is None:
                    return
                yield self._frame(img, frame_no)
                for _ in range(self.step - 1):
                    if not cap.grab():
                        return
                frame_no += self.step
        finally:
            cap.release()

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
