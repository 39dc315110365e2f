"""The Runner protocol: ``with runner: outputs = runner.infer({name: array})``.

A runner wraps one backend (PyTorch, ONNX Runtime, TensorRT). It configures itself in
``__init__``, acquires resources in :meth:`activate` and frees them in :meth:`deactivate`.
The base class validates input names, dtypes and shapes once for every backend.

Output layouts (DESIGN §2), named by :attr:`Runner.output_layout`:

* ``"nms"``: ``num_dets (B, 1)``, ``det_boxes (B, K, 4)``, ``det_scores (B, K)``, ``det_classes (B, K)``
* ``"decoded"``: ``boxes (B, A, 4)`` and ``scores (B, A, C)``
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from ..errors import YoloEdgeError
from ..spec import ModelSpec

NMS_OUTPUTS = ("num_dets", "det_boxes", "det_scores", "det_classes")
DECODED_OUTPUTS = ("boxes", "scores")


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple  # ints, or None / str for dynamic axes
    dtype: np.dtype


class Runner:
    """Base class of every backend runner."""

    name = "runner"

    def __init__(self, spec: ModelSpec, inputs: Sequence[TensorInfo], output_names: Sequence[str]):
        self.spec = spec
        self.inputs = list(inputs)
        self.output_names = list(output_names)
        self.is_active = False

    # -- lifecycle -------------------------------------------------------------------------
    def activate(self) -> None:
        self.is_active = True

    def deactivate(self) -> None:
        self.is_active = False

    def __enter__(self):
        if not self.is_active:
            self.activate()
        return self

    def __exit__(self, *exc):
        self.deactivate()

    # -- inference -------------------------------------------------------------------------
    @property
    def output_layout(self) -> str:
        names = set(self.output_names)
        if set(NMS_OUTPUTS) <= names:
            return "nms"
        if set(DECODED_OUTPUTS) <= names:
            return "decoded"
        raise YoloEdgeError(
            f"{self.name}: unrecognised outputs {self.output_names}; expected {list(NMS_OUTPUTS)} "
            f"or {list(DECODED_OUTPUTS)}"
        )

    @property
    def fixed_batch(self) -> int | None:
        """The batch size the model was built for, or None when the batch axis is dynamic."""
        b = self.inputs[0].shape[0]
        return b if isinstance(b, (int, np.integer)) and b > 0 else None

    def validate(self, feeds: Mapping[str, np.ndarray]) -> None:
        expected = {t.name: t for t in self.inputs}
        if set(feeds) != set(expected):
            raise YoloEdgeError(f"{self.name}: expected inputs {sorted(expected)}, got {sorted(feeds)}")
        for name, arr in feeds.items():
            info = expected[name]
            if not isinstance(arr, np.ndarray):
                raise YoloEdgeError(f"{self.name}: input '{name}' must be a numpy array, got {type(arr).__name__}")
            if arr.dtype != info.dtype:
                raise YoloEdgeError(f"{self.name}: input '{name}' must be {np.dtype(info.dtype)}, got {arr.dtype}")
            if arr.ndim != len(info.shape):
                raise YoloEdgeError(f"{self.name}: input '{name}' must have {len(info.shape)} dims "
                                    f"{_fmt(info.shape)}, got {arr.shape}")
            for axis, (want, got) in enumerate(zip(info.shape, arr.shape)):
                if isinstance(want, (int, np.integer)) and want > 0 and want != got:
                    what = "batch size" if axis == 0 else "input size"
                    hint = " (re-export with the size you need: yolo-edge export --imgsz H W)" if axis >= 2 else ""
                    raise YoloEdgeError(f"{self.name}: {what} mismatch for '{name}': model expects "
                                        f"{_fmt(info.shape)}, got {tuple(arr.shape)}{hint}")

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch. Returns ``{output name: array}``."""
        if not self.is_active:
            raise YoloEdgeError(f"{self.name} is not active: use `with runner:` or call activate()")
        self.validate(feeds)
        return self._infer(feeds)

    def _infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:  # pragma: no cover
        raise NotImplementedError


def _fmt(shape) -> str:
    return "(" + ", ".join(str(s) if isinstance(s, (int, np.integer)) and s > 0 else "?" for s in shape) + ")"
