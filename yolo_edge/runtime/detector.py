"""``Detector``: image in, ``Detections`` in source pixels out, the same way for every runner."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..detections import Detections
from ..letterbox import LetterboxMeta, letterbox_batch
from ..postprocess import from_nms_outputs, postprocess
from ..spec import NmsSpec
from .base import Runner


class Detector:
    """letterbox → runner.infer → (numpy NMS when the model has none) → unletterbox.

    Args:
        runner: any :class:`Runner`; activated on first use (or use ``with Detector(...)``).
        nms: thresholds for models without embedded NMS; defaults to the model's metadata.
            Models with NMS embedded use their baked-in thresholds (changing them needs a re-export).
    """

    def __init__(self, runner: Runner, nms: NmsSpec | None = None, max_batch: int = 8):
        self.runner = runner
        self.spec = runner.spec
        self.nms = nms or self.spec.nms
        self.max_batch = runner.fixed_batch or max_batch
        self.layout = runner.output_layout

    @property
    def names(self) -> tuple[str, ...]:
        return self.spec.names

    def __enter__(self):
        self.runner.__enter__()
        return self

    def __exit__(self, *exc):
        self.runner.__exit__(*exc)

    def preprocess(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, list[LetterboxMeta]]:
        return letterbox_batch(images, self.spec.letterbox)

    def forward(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Runner outputs for a letterboxed batch ``(B, 3, H, W)``. A static-batch model runs it in
        chunks of its batch, the last one padded with zeros: rows past ``B`` are padding."""
        if not self.runner.is_active:
            self.runner.activate()
        fixed = self.runner.fixed_batch
        if fixed and batch.shape[0] > fixed:
            parts = [self.forward(batch[i:i + fixed]) for i in range(0, batch.shape[0], fixed)]
            return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        if fixed and batch.shape[0] < fixed:
            pad = np.zeros((fixed - batch.shape[0], *batch.shape[1:]), batch.dtype)
            batch = np.concatenate([batch, pad])
        return self.runner.infer({self.runner.inputs[0].name: batch})

    def infer(self, batch: np.ndarray) -> list[Detections]:
        """Letterboxed batch ``(B, 3, H, W)`` → Detections in input pixels, one per image."""
        return self.postprocess(self.forward(batch))[:batch.shape[0]]

    def postprocess(self, out: dict[str, np.ndarray]) -> list[Detections]:
        if self.layout == "nms":
            return from_nms_outputs(out["num_dets"], out["det_boxes"], out["det_scores"], out["det_classes"])
        return [postprocess(b, s, self.nms) for b, s in zip(out["boxes"], out["scores"])]

    def __call__(self, images):
        """One image (``uint8`` BGR array) → Detections; a list of images → list of Detections."""
        single = isinstance(images, np.ndarray) and images.ndim in (2, 3)
        imgs = [images] if single else list(images)
        results: list[Detections] = []
        step = self.max_batch
        for i in range(0, len(imgs), step):
            batch, metas = self.preprocess(imgs[i:i + step])
            dets = self.infer(batch)
            results += [d.unletterbox(m) for d, m in zip(dets, metas)]
        return results[0] if single else results
