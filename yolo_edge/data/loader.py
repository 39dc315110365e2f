"""Datasets through the shared letterbox: single samples and batches (numpy only).

Nothing here resizes by itself: every tensor comes from :func:`yolo_edge.letterbox.letterbox`
or :func:`yolo_edge.letterbox.letterbox_batch`.
"""

from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np

from ..letterbox import LetterboxMeta, letterbox, letterbox_batch
from ..spec import LetterboxSpec
from .base import Sample



class LetterboxedDataset:
    """Wrap a dataset: ``ds[i] -> (tensor (3, H, W) float32, LetterboxMeta, Sample)``.

    ``Sample.xyxy`` stays in source pixels; map boxes into the input with
    :func:`yolo_edge.letterbox.scale_boxes_to_input` and back with ``unletterbox``.
    """

    def __init__(self, ds, size: int | tuple[int, int] | LetterboxSpec = 640):
        self.ds, self.size = ds, size

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(getattr(self.ds, "names", ()))

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, index: int) -> tuple[np.ndarray, LetterboxMeta, Sample]:
        s = self.ds[index]
        tensor, meta = letterbox(s.image, self.size)
        return tensor, meta, s

    def __iter__(self) -> Iterator[tuple[np.ndarray, LetterboxMeta, Sample]]:
        return letterboxed(self.ds, self.size)


def letterboxed(
    samples: Iterable[Sample], size: int | tuple[int, int] | LetterboxSpec = 640
) -> Iterator[tuple[np.ndarray, LetterboxMeta, Sample]]:
    """Yield ``(tensor (3, H, W), meta, sample)`` for every sample of ``samples`` (a dataset or
    any iterable of :class:`Sample`), in order."""
    for s in samples:
        tensor, meta = letterbox(s.image, size)
        yield tensor, meta, s


def iter_batches(
    samples: Iterable[Sample],
    batch_size: int,
    size: int | tuple[int, int] | LetterboxSpec = 640,
    drop_last: bool = False,
) -> Iterator[tuple[np.ndarray, list[LetterboxMeta], list[Sample]]]:
    """Yield ``(batch (B, 3, H, W) float32, metas, samples)`` with ``B = batch_size`` (the last
    batch may be smaller unless ``drop_last``)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    chunk: list[Sample] = []
    for s in samples:
        chunk.append(s)
        if len(chunk) == batch_size:
            batch, metas = letterbox_batch([c.image for c in chunk], size)
            yield batch, metas, chunk
            chunk = []
    if chunk and not drop_last:
        batch, metas = letterbox_batch([c.image for c in chunk], size)
        yield batch, metas, chunk
