"""``Detections``: the one result type every stage passes (numpy only)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np


@dataclass(frozen=True, eq=False)
class Detections:
    """Detections of one image.

    Attributes:
        xyxy: ``float32 (N, 4)`` boxes ``(x1, y1, x2, y2)``, ``x1 <= x2``, ``y1 <= y2``, in the
            pixel frame of whatever image they refer to (input pixels before
            :meth:`unletterbox`, source pixels after).
        scores: ``float32 (N,)`` confidences in ``[0, 1]``.
        class_ids: ``int32 (N,)`` class indices ``>= 0``.
    """

    xyxy: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray

    def __post_init__(self):
        xyxy = np.asarray(self.xyxy, dtype=np.float32)
        if xyxy.size == 0:
            xyxy = xyxy.reshape(0, 4)
        scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        class_ids = np.asarray(self.class_ids)
        if xyxy.ndim != 2 or xyxy.shape[1] != 4:
            raise ValueError(f"xyxy must have shape (N, 4), got {xyxy.shape}")
        n = xyxy.shape[0]
        if scores.shape != (n,):
            raise ValueError(f"scores must have shape ({n},) to match xyxy, got {scores.shape}")
        if class_ids.size and not np.issubdtype(class_ids.dtype, np.integer):
            if not np.all(np.equal(np.mod(class_ids, 1), 0)):
                raise ValueError("class_ids must be integers")
        class_ids = class_ids.astype(np.int32).reshape(-1)
        if class_ids.shape != (n,):
            raise ValueError(f"class_ids must have shape ({n},) to match xyxy, got {class_ids.shape}")
        if n and class_ids.min() < 0:
            raise ValueError("class_ids must be >= 0")
        object.__setattr__(self, "xyxy", np.ascontiguousarray(xyxy))
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "class_ids", class_ids)

    @classmethod
    def empty(cls) -> "Detections":
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32))

    @classmethod
    def concatenate(cls, items: Sequence["Detections"]) -> "Detections":
        if not items:
            return cls.empty()
        return cls(
            np.concatenate([d.xyxy for d in items]),
            np.concatenate([d.scores for d in items]),
            np.concatenate([d.class_ids for d in items]),
        )

    def __len__(self) -> int:
        return self.xyxy.shape[0]

    def __getitem__(self, index) -> "Detections":
        """Index with an int, slice, integer array or boolean mask; always returns Detections."""
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        return Detections(self.xyxy[index], self.scores[index], self.class_ids[index])

    def __iter__(self):
        for i in range(len(self)):
            yield self.xyxy[i], float(self.scores[i]), int(self.class_ids[i])

    def __repr__(self) -> str:
        return f"Detections(n={len(self)})"

    @property
    def area(self) -> np.ndarray:
        return (self.xyxy[:, 2] - self.xyxy[:, 0]) * (self.xyxy[:, 3] - self.xyxy[:, 1])

    def sorted(self) -> "Detections":
        """Highest score first (stable)."""
        return self[np.argsort(-self.scores, kind="stable")]

    def filter(self, min_score: float = 0.0, classes: Sequence[int] | None = None) -> "Detections":
        keep = self.scores >= min_score
        if classes is not None:
            keep &= np.isin(self.class_ids, np.asarray(list(classes)))
        return self[keep]

    def unletterbox(self, meta) -> "Detections":
        """Map from letterboxed input pixels to source pixels (clipped), dropping detections
        whose centre lies in the padding (DESIGN §3)."""
        from .letterbox import centre_in_content, unletterbox

        kept = self[centre_in_content(self.xyxy, meta)]
        return Detections(unletterbox(kept.xyxy, meta), kept.scores, kept.class_ids)

    def to_list(self, names: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """JSON-ready records: ``{"box": [x1, y1, x2, y2], "score", "class_id", "class_name"}``."""
        out = []
        for box, score, cid in self:
            rec = {"box": [round(float(v), 2) for v in box], "score": round(score, 5), "class_id": cid}
            if names is not None:
                rec["class_name"] = names[cid] if cid < len(names) else str(cid)
            out.append(rec)
        return out
